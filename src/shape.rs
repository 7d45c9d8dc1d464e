//! Shapes and dtypes, and every output-size formula.
//!
//! Dimension glossary (used everywhere, never mixed in one function):
//! - conv and pool code: `n` batch, `c_in`/`c_out` (pool: `c`) channels, `h, w` input size,
//!   `kh, kw` kernel size (pool window `k`), `oh, ow` output size, `stride`, `pad`, `dilation`.
//! - GEMM code: `m, k, n` with `C[m, n] = A[m, k] · B[k, n]`.

use std::fmt;

use crate::{Error, Result};

/// Element type of a tensor. Activations and parameters are `F32`; labels and argmax are `U32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer.
    U32,
}

/// Dimensions (row-major, NCHW for images) and element type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Sizes, outermost first.
    pub dims: Vec<usize>,
    /// Element type.
    pub dtype: DType,
}

impl Shape {
    /// An f32 shape.
    pub fn f32(dims: impl Into<Vec<usize>>) -> Self {
        Shape {
            dims: dims.into(),
            dtype: DType::F32,
        }
    }

    /// A u32 shape.
    pub fn u32(dims: impl Into<Vec<usize>>) -> Self {
        Shape {
            dims: dims.into(),
            dtype: DType::U32,
        }
    }

    /// The shape of a 0-d f32 tensor (`[]`, one element): a loss.
    pub fn scalar() -> Self {
        Shape::f32(Vec::new())
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// Size in bytes (every dtype is 4 bytes wide).
    pub fn bytes(&self) -> u64 {
        4 * self.numel() as u64
    }

    /// The four dims of an NCHW tensor, or a shape error for `op`.
    pub fn dims4(&self, op: &'static str, what: &str) -> Result<[usize; 4]> {
        <[usize; 4]>::try_from(self.dims.as_slice())
            .map_err(|_| Error::shape(op, format!("{what} must be 4-d [n, c, h, w], got {self}")))
    }

    /// The two dims of a matrix, or a shape error for `op`.
    pub fn dims2(&self, op: &'static str, what: &str) -> Result<[usize; 2]> {
        <[usize; 2]>::try_from(self.dims.as_slice())
            .map_err(|_| Error::shape(op, format!("{what} must be 2-d, got {self}")))
    }

    /// `dims4` for kernels, which only see shapes that passed `infer`.
    pub fn dims4_u32(&self) -> [u32; 4] {
        let d = &self.dims;
        debug_assert_eq!(d.len(), 4, "infer checked rank 4");
        [d[0] as u32, d[1] as u32, d[2] as u32, d[3] as u32]
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims)?;
        if self.dtype == DType::U32 {
            write!(f, " u32")?;
        }
        Ok(())
    }
}

/// Output size of a sliding window: `(size + 2·pad − dilation·(k − 1) − 1) / stride + 1`.
///
/// The same formula as PyTorch's `Conv2d` and `MaxPool2d` (floor mode).
pub fn window_out(
    size: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    op: &'static str,
) -> Result<usize> {
    if k == 0 || stride == 0 || dilation == 0 {
        return Err(Error::shape(
            op,
            format!("kernel {k}, stride {stride} and dilation {dilation} must all be positive"),
        ));
    }
    let span = dilation * (k - 1) + 1;
    if size + 2 * pad < span {
        return Err(Error::shape(
            op,
            format!("window of {span} (kernel {k}, dilation {dilation}) does not fit input size {size} with padding {pad}"),
        ));
    }
    Ok((size + 2 * pad - span) / stride + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_out_matches_pytorch() {
        assert_eq!(window_out(28, 5, 1, 2, 1, "conv2d").unwrap(), 28);
        assert_eq!(window_out(14, 5, 1, 0, 1, "conv2d").unwrap(), 10);
        assert_eq!(window_out(28, 2, 2, 0, 1, "max_pool2d").unwrap(), 14);
        assert_eq!(window_out(7, 3, 2, 1, 2, "conv2d").unwrap(), 3);
        assert!(window_out(3, 5, 1, 0, 1, "conv2d").is_err());
    }
}
