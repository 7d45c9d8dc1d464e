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

/// Window geometry of a 2-d pool, as PyTorch's `MaxPool2d`/`AvgPool2d` arguments
/// (`ops::pool::max_pool2d` implements its rules); [`crate::ir::OpDef::absorb_max_pool`]
/// hands it to the op that may absorb the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    /// Window `[h, w]`.
    pub k: [usize; 2],
    /// Step between windows, `[h, w]`.
    pub stride: [usize; 2],
    /// Padding on both sides of each axis (at most half the window, as in PyTorch).
    pub pad: [usize; 2],
    /// Round the output size up rather than down: a last, partial window is kept when it
    /// starts inside the input or its left padding (PyTorch's `ceil_mode`).
    pub ceil_mode: bool,
}

impl Pool2d {
    /// A `k` window (one number or `(h, w)`) with stride `k` (PyTorch's default), no padding,
    /// floor mode.
    pub fn new(k: impl Pair) -> Self {
        let k = k.pair();
        Pool2d {
            k,
            stride: k,
            pad: [0, 0],
            ceil_mode: false,
        }
    }

    /// Stride (one number or `(h, w)`).
    pub fn stride(mut self, s: impl Pair) -> Self {
        self.stride = s.pair();
        self
    }

    /// Padding on both sides of each axis (one number or `(h, w)`).
    pub fn padding(mut self, p: impl Pair) -> Self {
        self.pad = p.pair();
        self
    }

    /// PyTorch's `ceil_mode`.
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }
}

/// A window alone (`2`, `(3, 2)`) is the pool with stride equal to the window, as PyTorch's
/// `MaxPool2d(k)`.
impl<P: Pair> From<P> for Pool2d {
    fn from(k: P) -> Self {
        Pool2d::new(k)
    }
}

/// A size or step along both spatial axes, `[h, w]`, from one number (square) or a pair, as
/// PyTorch's `int | tuple[int, int]` arguments.
pub trait Pair {
    /// `[h, w]`.
    fn pair(self) -> [usize; 2];
}

impl Pair for usize {
    fn pair(self) -> [usize; 2] {
        [self, self]
    }
}

impl Pair for (usize, usize) {
    fn pair(self) -> [usize; 2] {
        [self.0, self.1]
    }
}

impl Pair for [usize; 2] {
    fn pair(self) -> [usize; 2] {
        self
    }
}

/// A convolution's full geometry, as PyTorch's `Conv2d` arguments (the kernel size comes from
/// the weight): per-axis stride, zero padding and dilation, and channel groups. Square,
/// ungrouped geometries run on the tuned kernel families of [`Conv2dGeometry`]; the rest
/// (non-square, grouped, depthwise) on the general kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dSpec {
    /// Step between windows, `[h, w]`.
    pub stride: [usize; 2],
    /// Zero padding, `[h, w]` (each on both sides of its axis).
    pub pad: [usize; 2],
    /// Spacing of kernel taps, `[h, w]`.
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels split into `groups` blocks, output block
    /// `g` seeing input block `g` only (`groups == c_in` is a depthwise convolution).
    pub groups: usize,
}

impl Default for Conv2dSpec {
    fn default() -> Self {
        Conv2dSpec {
            stride: [1, 1],
            pad: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dSpec {
    /// Stride `s` (one number or `(h, w)`).
    pub fn stride(mut self, s: impl Pair) -> Self {
        self.stride = s.pair();
        self
    }

    /// Zero padding `p` (one number or `(h, w)`).
    pub fn padding(mut self, p: impl Pair) -> Self {
        self.pad = p.pair();
        self
    }

    /// Dilation `d` (one number or `(h, w)`).
    pub fn dilation(mut self, d: impl Pair) -> Self {
        self.dilation = d.pair();
        self
    }

    /// `groups` channel groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// The same geometry as a [`Conv2dGeometry`], when it is square and ungrouped.
    pub fn square(&self) -> Option<Conv2dGeometry> {
        let same = |[a, b]: [usize; 2]| (a == b).then_some(a);
        (self.groups == 1).then_some(())?;
        Some(Conv2dGeometry {
            stride: same(self.stride)?,
            pad: same(self.pad)?,
            dilation: same(self.dilation)?,
        })
    }
}

impl From<Conv2dGeometry> for Conv2dSpec {
    fn from(g: Conv2dGeometry) -> Self {
        Conv2dSpec {
            stride: [g.stride; 2],
            pad: [g.pad; 2],
            dilation: [g.dilation; 2],
            groups: 1,
        }
    }
}
