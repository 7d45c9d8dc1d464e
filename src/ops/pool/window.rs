//! What the pooling ops share: the window rules of [`Pool2d`] (PyTorch's output size with
//! `ceil_mode`, the checks, each window's span and the references' loop over windows) and
//! [`PoolWindow`], the geometry each pooling shader's `Params` starts with (each op appends
//! its own field).

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_dtype, Pool2d};
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// The first twelve fields of `struct Params` in `shaders/max_pool2d.wgsl`, `avg_pool2d.wgsl`
/// and `lp_pool2d.wgsl`: input and output sizes, window, stride, padding.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct PoolWindow {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
}

/// Output size along one axis, PyTorch's `pooling_output_shape` (dilation 1): with
/// `ceil_mode` a last partial window counts when it starts inside the input or its left
/// padding.
fn pool_out(size: usize, k: usize, stride: usize, pad: usize, ceil: bool) -> usize {
    let span = size + 2 * pad - k;
    let mut out = (span + if ceil { stride - 1 } else { 0 }) / stride + 1;
    if ceil && (out - 1) * stride >= size + pad {
        out -= 1;
    }
    out
}

impl Pool2d {
    /// Output shape for input `x`, checking the geometry.
    pub(crate) fn infer(&self, op: &'static str, x: &Shape) -> Result<Shape> {
        let [n, c, h, w] = x.dims4(op, "input")?;
        expect_dtype(op, "input", x, DType::F32)?;
        if self.k.contains(&0) || self.stride.contains(&0) {
            return Err(Error::shape(
                op,
                format!(
                    "window {:?} and stride {:?} must be positive",
                    self.k, self.stride
                ),
            ));
        }
        if (0..2).any(|a| 2 * self.pad[a] > self.k[a]) {
            return Err(Error::shape(
                op,
                format!(
                    "padding {:?} must be at most half the window {:?}",
                    self.pad, self.k
                ),
            ));
        }
        if (0..2).any(|a| [h, w][a] + 2 * self.pad[a] < self.k[a]) {
            return Err(Error::shape(
                op,
                format!(
                    "window {:?} does not fit input size {h}x{w} with padding {:?}",
                    self.k, self.pad
                ),
            ));
        }
        let out = |a: usize| {
            let size = [h, w][a];
            pool_out(size, self.k[a], self.stride[a], self.pad[a], self.ceil_mode)
        };
        Ok(Shape::f32([n, c, out(0), out(1)]))
    }

    /// The window geometry every pooling shader's `Params` starts with, from input `x` to
    /// output `y`.
    pub(crate) fn window(&self, x: &Shape, y: &Shape) -> PoolWindow {
        let ([n, c, h, w], [_, _, oh, ow]) = (x.dims4_u32(), y.dims4_u32());
        let u = |v: usize| v as u32;
        PoolWindow {
            n,
            c,
            h,
            w,
            oh,
            ow,
            kh: u(self.k[0]),
            kw: u(self.k[1]),
            sh: u(self.stride[0]),
            sw: u(self.stride[1]),
            ph: u(self.pad[0]),
            pw: u(self.pad[1]),
        }
    }

    /// The real input rows (or columns, `axis` 1) of window `o`, `start..end` clipped to the
    /// input, and the size of the window clipped to the padded input (PyTorch's divisor when
    /// padding counts).
    pub(crate) fn span(&self, axis: usize, o: usize, size: usize) -> (usize, usize, usize) {
        let start = o * self.stride[axis];
        let end = (start + self.k[axis]).min(size + 2 * self.pad[axis]);
        let padded = end - start;
        let p = self.pad[axis];
        (start.max(p) - p, end.min(size + p) - p, padded)
    }

    /// Calls `f(out_idx, in_idx)` for every (output, input-in-its-window) pair, padding skipped.
    pub(crate) fn for_each_window(&self, x: &Shape, y: &Shape, mut f: impl FnMut(usize, usize)) {
        let [_, _, h, w] = x.dims4_u32().map(|v| v as usize);
        let [n, c, oh, ow] = y.dims4_u32().map(|v| v as usize);
        for nc in 0..n * c {
            for oy in 0..oh {
                let (y0, y1, _) = self.span(0, oy, h);
                for ox in 0..ow {
                    let (x0, x1, _) = self.span(1, ox, w);
                    let out_idx = (nc * oh + oy) * ow + ox;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            f(out_idx, (nc * h + iy) * w + ix);
                        }
                    }
                }
            }
        }
    }
}
