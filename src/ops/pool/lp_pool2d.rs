//! `lp_pool2d`, power-average pooling (PyTorch's `LPPool2d`): `y = (Σ_window x^p)^(1/p)`,
//! `p = 1` a sum pool, `p = 2` the L2 norm of each window, large `p` toward max pooling.

use bytemuck::{Pod, Zeroable};

use crate::ir::Pool2d;
use crate::ir::{expect_arity, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::pool::window::PoolWindow;
use crate::ops::CatalogEntry;
use crate::shape::Shape;
use crate::{Error, Result};

/// `shaders/lp_pool2d.wgsl` (the pools' shared `Params`).
pub static SHADER: Shader = Shader::new(
    "lp_pool2d",
    include_str!("../../../shaders/lp_pool2d.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/lp_pool2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    window: PoolWindow,
    /// The norm's power `p`.
    norm: f32,
    _pad: [u32; 3],
}

/// `y[o] = ((kh·kw / d[o]) · Σ_window x^p)^(1/p)`, `d[o]` the window's real inputs (1 but
/// for a partial ceil-mode window, which PyTorch scales up so).
#[derive(Clone, Copy, Debug)]
pub struct LpPool2d {
    /// Window, stride and ceil mode; no padding (PyTorch's `LPPool2d` has none).
    pub pool: Pool2d,
    /// The power `p` (PyTorch's `norm_type`), positive.
    pub norm: f32,
}

/// `grad_x` from `grad_y`, `x` and `y`.
#[derive(Clone, Copy, Debug)]
pub struct LpPool2dBackward(pub LpPool2d);

/// `v^e` as `torch.pow` for f32: negative bases only for integer powers (NaN otherwise).
fn spow(v: f64, e: f64) -> f64 {
    if v == 0.0 {
        return if e == 0.0 { 1.0 } else { 0.0 };
    }
    let m = v.abs().powf(e);
    match (v > 0.0, e.fract() == 0.0) {
        (true, _) => m,
        (false, false) => f64::NAN,
        (false, true) if (e * 0.5).fract() != 0.0 => -m,
        (false, true) => m,
    }
}

impl LpPool2d {
    fn params(&self, x: &Shape, y: &Shape) -> Params {
        Params {
            window: self.pool.window(x, y),
            norm: self.norm,
            _pad: [0; 3],
        }
    }

    /// `kh·kw / d[o]` for each output.
    fn scales(&self, x: &Shape, y: &Shape) -> Vec<f64> {
        let [_, _, h, w] = x.dims4_u32().map(|v| v as usize);
        let [n, c, oh, ow] = y.dims4_u32().map(|v| v as usize);
        let area = (self.pool.k[0] * self.pool.k[1]) as f64;
        let mut res = Vec::with_capacity(y.numel());
        for _ in 0..n * c {
            for oy in 0..oh {
                let (y0, y1, _) = self.pool.span(0, oy, h);
                for ox in 0..ow {
                    let (x0, x1, _) = self.pool.span(1, ox, w);
                    res.push(area / ((y1 - y0) * (x1 - x0)) as f64);
                }
            }
        }
        res
    }
}

impl OpDef for LpPool2d {
    fn name(&self) -> &'static str {
        "lp_pool2d"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 1)?;
        if self.pool.pad != [0, 0] {
            return Err(Error::shape(
                op,
                format!("takes no padding, got {:?}", self.pool.pad),
            ));
        }
        if !(self.norm.is_finite() && self.norm > 0.0) {
            return Err(Error::shape(
                op,
                format!("the power p must be positive and finite, got {}", self.norm),
            ));
        }
        Ok(vec![self.pool.infer(op, inputs[0])?])
    }

    // y = (s·Σ x^p)^(1/p) ⇒ ∂y/∂x_i = s·x_i^(p−1) / y^(p−1) for each window covering i.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let grad_x = cx.push(
            LpPool2dBackward(*self),
            &[grad_y, cx.input(0), cx.output(0)],
        )?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        KernelCall::per_element(
            &SHADER,
            "lp_pool2d_forward",
            &self.params(inputs[0], outputs[0]),
            outputs[0].numel(),
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let x = inputs[0].f32();
        let p = f64::from(self.norm);
        let mut acc = vec![0f64; outputs[0].shape.numel()];
        self.pool
            .for_each_window(&inputs[0].shape, &outputs[0].shape, |o, i| {
                acc[o] += spow(f64::from(x[i]), p)
            });
        let scales = self.scales(&inputs[0].shape, &outputs[0].shape);
        for ((y, a), s) in outputs[0].f32_mut().iter_mut().zip(acc).zip(scales) {
            *y = spow(a * s, 1.0 / p) as f32;
        }
    }
}

impl OpDef for LpPool2dBackward {
    fn name(&self) -> &'static str {
        "lp_pool2d_backward"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 3)?;
        let y = self.0.infer(&[inputs[1]])?.remove(0);
        if inputs[0] != &y || inputs[2] != &y {
            return Err(Error::shape(
                op,
                format!(
                    "grad_y {} and y {} must both be {y} for input {}",
                    inputs[0], inputs[2], inputs[1]
                ),
            ));
        }
        Ok(vec![inputs[1].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        KernelCall::per_element(
            &SHADER,
            "lp_pool2d_backward",
            &self.0.params(inputs[1], inputs[0]),
            outputs[0].numel(),
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (grad_y, x, y) = (inputs[0].f32(), inputs[1].f32(), inputs[2].f32());
        let p = f64::from(self.0.norm);
        let scales = self.0.scales(&inputs[1].shape, &inputs[0].shape);
        let mut acc = vec![0f64; outputs[0].shape.numel()];
        self.0
            .pool
            .for_each_window(&inputs[1].shape, &inputs[0].shape, |o, i| {
                let yo = f64::from(y[o]);
                if yo != 0.0 {
                    acc[i] += f64::from(grad_y[o]) * scales[o] * spow(f64::from(x[i]), p - 1.0)
                        / spow(yo, p - 1.0);
                }
            });
        for (g, a) in outputs[0].f32_mut().iter_mut().zip(acc) {
            *g = a as f32;
        }
    }
}

impl Graph {
    /// `F.lp_pool2d(x, norm_type, kernel_size, stride, ceil_mode)` (no padding): `pool` is a
    /// window alone (stride equal to it) or any [`Pool2d`].
    pub fn lp_pool2d(
        &mut self,
        x: TensorId,
        norm: f32,
        pool: impl Into<Pool2d>,
    ) -> Result<TensorId> {
        let pool = pool.into();
        Ok(self.push(LpPool2d { pool, norm }, &[x])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    // Powers 1, 2, 3 and a fractional one; non-square, overlapping and ceil-mode windows.
    for (h, w, pool, norm) in [
        (5, 7, Pool2d::new(2), 2.0),
        (7, 6, Pool2d::new((3, 2)).stride((2, 1)), 3.0),
        (6, 7, Pool2d::new(3).stride(2).ceil_mode(true), 1.5),
        (5, 5, Pool2d::new(2).stride(1), 1.0),
    ] {
        let op = LpPool2d { pool, norm };
        let x = Shape::f32([2, 3, h, w]);
        let y = pool
            .infer("lp_pool2d", &x)
            .expect("catalog shapes are valid");
        // Positive inputs: a fractional power of a negative one is NaN, as in PyTorch.
        let positive = || {
            Some(Box::new(|inputs: &mut [CpuTensor]| {
                for v in inputs[0].f32_mut() {
                    *v = v.abs() + 0.25;
                }
            }) as crate::ops::PrepareInputs)
        };
        let mut entry = CatalogEntry::new(op, vec![x.clone()]);
        entry.prepare = positive();
        res.push(entry);
        let mut entry = CatalogEntry::new(LpPool2dBackward(op), vec![y.clone(), x, y]);
        // y must be the forward of x: make it so from the drawn x.
        entry.prepare = Some(Box::new(move |inputs: &mut [CpuTensor]| {
            for v in inputs[1].f32_mut() {
                *v = v.abs() + 0.25;
            }
            let out = crate::ops::testing::run_reference(&op, &[inputs[1].clone()]);
            inputs[2] = out[0].clone();
        }));
        res.push(entry);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn l2_pool_is_the_window_norm() {
        // One 2x2 window of 3, 4, 0, 0: its L2 norm is 5; p = 1 sums.
        let x = CpuTensor::from_f32([1, 1, 2, 2], vec![3.0, 4.0, 0.0, 0.0]);
        let l2 = LpPool2d {
            pool: Pool2d::new(2),
            norm: 2.0,
        };
        assert_eq!(run_reference(&l2, std::slice::from_ref(&x))[0].f32(), [5.0]);
        let l1 = LpPool2d {
            pool: Pool2d::new(2),
            norm: 1.0,
        };
        assert_eq!(run_reference(&l1, &[x])[0].f32(), [7.0]);
        assert!(LpPool2d {
            pool: Pool2d::new(2).padding(1),
            norm: 2.0
        }
        .infer(&[&Shape::f32([1, 1, 4, 4])])
        .is_err());
    }
}
