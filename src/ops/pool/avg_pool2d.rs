//! `avg_pool2d` over NCHW input: `kh`×`kw` window, per-axis stride and zero padding, floor or
//! ceil mode, padding counted in the divisor or not (PyTorch's `count_include_pad`).

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ir::{Pair, Pool2d};
use crate::ops::pool::window::PoolWindow;
use crate::ops::CatalogEntry;
use crate::shape::Shape;
use crate::{Error, Result};

/// `shaders/avg_pool2d.wgsl`.
pub static SHADER: Shader = Shader::new(
    "avg_pool2d",
    include_str!("../../../shaders/avg_pool2d.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/avg_pool2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    window: PoolWindow,
    /// 1 when padding counts in the divisor (`count_include_pad`).
    include_pad: u32,
    _pad: [u32; 3],
}

/// `y[n, c, i, j] = Σ window / divisor`, PyTorch's divisor: the window clipped to the padded
/// input with `count_include_pad` (padding counts as zeros), else its real inputs.
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d {
    /// The window geometry.
    pub pool: Pool2d,
    /// Padding counts in the divisor (PyTorch's default).
    pub count_include_pad: bool,
}

/// `grad_x` from `grad_y`; stores the input shape.
#[derive(Clone, Debug)]
pub struct AvgPool2dBackward {
    /// The forward op.
    pub pool: AvgPool2d,
    /// Shape of the forward input.
    pub x: Shape,
}

impl AvgPool2d {
    fn params(&self, x: &Shape, y: &Shape) -> Params {
        Params {
            window: self.pool.window(x, y),
            include_pad: u32::from(self.count_include_pad),
            _pad: [0; 3],
        }
    }

    /// Each output's divisor, for the references.
    fn divisors(&self, x: &Shape, y: &Shape) -> Vec<f64> {
        let [_, _, h, w] = x.dims4_u32().map(|v| v as usize);
        let [n, c, oh, ow] = y.dims4_u32().map(|v| v as usize);
        let mut res = Vec::with_capacity(y.numel());
        for _ in 0..n * c {
            for oy in 0..oh {
                let (y0, y1, py) = self.pool.span(0, oy, h);
                for ox in 0..ow {
                    let (x0, x1, px) = self.pool.span(1, ox, w);
                    let d = if self.count_include_pad {
                        py * px
                    } else {
                        (y1 - y0) * (x1 - x0)
                    };
                    res.push(d as f64);
                }
            }
        }
        res
    }
}

impl OpDef for AvgPool2d {
    fn name(&self) -> &'static str {
        "avg_pool2d"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        Ok(vec![self.pool.infer(self.name(), inputs[0])?])
    }

    // y = Σ window / d ⇒ each input gets grad_y/d from every window covering it.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let x = cx.shape(cx.input(0)).clone();
        let grad_x = cx.push(AvgPool2dBackward { pool: *self, x }, &[grad_y])?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        KernelCall::per_element(
            &SHADER,
            "avg_pool2d_forward",
            &self.params(inputs[0], outputs[0]),
            outputs[0].numel(),
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let x = inputs[0].f32();
        let mut acc = vec![0f64; outputs[0].shape.numel()];
        self.pool
            .for_each_window(&inputs[0].shape, &outputs[0].shape, |o, i| {
                acc[o] += f64::from(x[i])
            });
        let d = self.divisors(&inputs[0].shape, &outputs[0].shape);
        for ((y, a), d) in outputs[0].f32_mut().iter_mut().zip(acc).zip(d) {
            *y = (a / d) as f32;
        }
    }
}

impl OpDef for AvgPool2dBackward {
    fn name(&self) -> &'static str {
        "avg_pool2d_backward"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        let y = self.pool.pool.infer(self.name(), &self.x)?;
        if inputs[0] != &y {
            return Err(Error::shape(
                self.name(),
                format!("grad_y {} must be {y}", inputs[0]),
            ));
        }
        Ok(vec![self.x.clone()])
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        KernelCall::per_element(
            &SHADER,
            "avg_pool2d_backward",
            &self.pool.params(outputs[0], inputs[0]),
            outputs[0].numel(),
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let grad_y = inputs[0].f32();
        let d = self.pool.divisors(&self.x, &inputs[0].shape);
        let mut acc = vec![0f64; outputs[0].shape.numel()];
        self.pool
            .pool
            .for_each_window(&self.x, &inputs[0].shape, |o, i| {
                acc[i] += f64::from(grad_y[o]) / d[o]
            });
        for (g, a) in outputs[0].f32_mut().iter_mut().zip(acc) {
            *g = a as f32;
        }
    }
}

impl AvgPool2d {
    /// Average pooling over `pool` (a window alone, stride equal to it, or any [`Pool2d`]),
    /// padding counted in the divisor (PyTorch's default).
    pub fn new(pool: impl Into<Pool2d>) -> Self {
        AvgPool2d {
            pool: pool.into(),
            count_include_pad: true,
        }
    }

    /// PyTorch's `count_include_pad`: whether zero padding counts in each window's divisor.
    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.count_include_pad = on;
        self
    }
}

/// A window alone (`2`, `(3, 2)`) is average pooling with PyTorch's defaults.
impl<P: Pair> From<P> for AvgPool2d {
    fn from(k: P) -> Self {
        AvgPool2d::new(k)
    }
}

impl From<Pool2d> for AvgPool2d {
    fn from(pool: Pool2d) -> Self {
        AvgPool2d::new(pool)
    }
}

impl Graph {
    /// `F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad)` for
    /// `x: [n, c, h, w]`: `pool` is a window alone, any [`Pool2d`], or an [`AvgPool2d`] for
    /// `count_include_pad(false)` (`AvgPool2d::new(Pool2d::new(3).padding(1))
    /// .count_include_pad(false)`).
    pub fn avg_pool2d(&mut self, x: TensorId, pool: impl Into<AvgPool2d>) -> Result<TensorId> {
        Ok(self.push(pool.into(), &[x])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    // Both divisors on each geometry: padded, non-square, ceil mode with partial windows.
    for (h, w, pool) in [
        (5, 7, Pool2d::new(2).stride(2)),
        (9, 9, Pool2d::new(3).stride(2).padding(1)),
        (8, 6, Pool2d::new(3).stride(1).padding(1)),
        (7, 9, Pool2d::new((3, 2)).stride((2, 1)).padding((1, 1))),
        (6, 7, Pool2d::new(3).stride(2).padding(1).ceil_mode(true)),
        (
            5,
            8,
            Pool2d::new((2, 3))
                .stride((2, 3))
                .padding((1, 1))
                .ceil_mode(true),
        ),
    ] {
        for count_include_pad in [true, false] {
            let op = AvgPool2d {
                pool,
                count_include_pad,
            };
            let x = Shape::f32([2, 3, h, w]);
            let y = pool
                .infer("avg_pool2d", &x)
                .expect("catalog shapes are valid");
            res.push(CatalogEntry::new(op, vec![x.clone()]));
            res.push(CatalogEntry::new(
                AvgPool2dBackward { pool: op, x },
                vec![y],
            ));
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn reference_averages_with_zero_padding() {
        // 2×2 ones, k = 2, stride 1, pad 1: corners see one real element out of four.
        let x = CpuTensor::from_f32([1, 1, 2, 2], vec![1.0; 4]);
        let op = |count_include_pad| AvgPool2d {
            pool: Pool2d::new(2).stride(1).padding(1),
            count_include_pad,
        };
        let out = run_reference(&op(true), std::slice::from_ref(&x));
        assert_eq!(
            out[0].f32(),
            [0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]
        );
        // Without the padding in the divisor every window averages real ones.
        assert_eq!(run_reference(&op(false), &[x])[0].f32(), [1.0; 9]);
    }

    #[test]
    fn ceil_mode_sizes_and_divisors_match_pytorch() {
        // F.avg_pool2d(ones(1,1,5,5), 2, 2, ceil_mode=True): 3x3, the last row and column
        // average one real input each (divisor 2 counts the window clipped to the input).
        let x = CpuTensor::from_f32([1, 1, 5, 5], (0..25).map(|v| v as f32).collect());
        let op = AvgPool2d {
            pool: Pool2d::new(2).ceil_mode(true),
            count_include_pad: true,
        };
        let y = run_reference(&op, &[x]);
        assert_eq!(y[0].shape.dims, [1, 1, 3, 3]);
        // Window (0, 2) holds x[0,4] and x[1,4] = 4 and 9; window (2, 2) only x[4,4] = 24.
        assert_eq!(y[0].f32()[2], 6.5);
        assert_eq!(y[0].f32()[8], 24.0);
        // MaxPool2d(3, 2, ceil_mode=True) on 6 gives 3 (floor: 2); a window that would start
        // in the right padding is dropped: 5x8, window (2, 3), stride (2, 3), padding 1.
        let pool = Pool2d::new(3).stride(2).ceil_mode(true);
        assert_eq!(
            pool.infer("t", &Shape::f32([1, 1, 6, 6])).unwrap().dims,
            [1, 1, 3, 3]
        );
        let pool = Pool2d::new((2, 3))
            .stride((2, 3))
            .padding(1)
            .ceil_mode(true);
        assert_eq!(
            pool.infer("t", &Shape::f32([1, 1, 5, 8])).unwrap().dims,
            [1, 1, 3, 3]
        );
    }
}
