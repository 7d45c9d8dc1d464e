//! Window geometry of convolutions and pools: plain data that the op contract, the ops and the
//! generated kernels share. The rules (output sizes, checks) live with the ops that own them.

/// A convolution's window geometry, shared by its forward and backward ops and the kernels
/// generated for them (`ops::conv::conv2d` implements its rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Step between windows, both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Spacing of kernel taps.
    pub dilation: usize,
}

/// Window geometry of a 2-d pool (`ops::pool::max_pool2d` implements its rules), which
/// [`crate::ir::OpDef::absorb_max_pool`] hands to the op that may absorb the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    /// Window size (k×k).
    pub k: usize,
    /// Step between windows.
    pub stride: usize,
    /// Padding on every side (at most k/2, as in PyTorch).
    pub pad: usize,
}
