//! `softmax` and `log_softmax` along one dimension as layers (PyTorch's `nn.Softmax(dim)`,
//! `nn.LogSoftmax(dim)`), computed stably (the maximum subtracted first). Their backward ops
//! read the output `y`.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/softmax.wgsl`.
pub static SHADER: Shader = Shader::new(
    "softmax",
    include_str!("../../../shaders/softmax.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/softmax.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    outer: u32,
    c: u32,
    inner: u32,
    _pad: u32,
}

/// `y = softmax(x)` (or `log_softmax(x)`) along `dim`, same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax {
    /// The dimension normalised.
    pub dim: usize,
    /// `log_softmax` instead.
    pub log: bool,
}

/// `grad_x` of [`Softmax`] from `grad_y` and the forward output `y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxBackward(pub Softmax);

impl Softmax {
    fn params(self, x: &Shape) -> Params {
        Params {
            outer: x.dims[..self.dim].iter().product::<usize>() as u32,
            c: x.dims[self.dim] as u32,
            inner: x.dims[self.dim + 1..].iter().product::<usize>() as u32,
            _pad: 0,
        }
    }

    fn check(self, op: &'static str, x: &Shape) -> Result<()> {
        expect_dtype(op, "input", x, DType::F32)?;
        if self.dim >= x.dims.len() || x.dims[self.dim] == 0 {
            return Err(Error::shape(
                op,
                format!("dim {} is not a non-empty dimension of {x}", self.dim),
            ));
        }
        Ok(())
    }

    /// Calls `f` with the flat indices of every column along `dim`.
    fn for_each_column(self, x: &Shape, mut f: impl FnMut(&[usize])) {
        let p = self.params(x);
        let (c, inner) = (p.c as usize, p.inner as usize);
        let mut idx = vec![0; c];
        for o in 0..p.outer as usize {
            for k in 0..inner {
                for (j, slot) in idx.iter_mut().enumerate() {
                    *slot = (o * c + j) * inner + k;
                }
                f(&idx);
            }
        }
    }
}

impl OpDef for Softmax {
    fn name(&self) -> &'static str {
        if self.log {
            "log_softmax"
        } else {
            "softmax"
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        self.check(self.name(), inputs[0])?;
        Ok(vec![inputs[0].clone()])
    }

    // softmax: grad_x = y·(grad_y − Σ grad_y·y); log_softmax: grad_x = grad_y − eʸ·Σ grad_y.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let grad_x = cx.push(SoftmaxBackward(*self), &[grad_y, cx.output(0)])?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let p = self.params(inputs[0]);
        let entry = if self.log {
            "log_softmax_forward"
        } else {
            "softmax_forward"
        };
        KernelCall::per_element(&SHADER, entry, &p, (p.outer * p.inner) as usize)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let x = inputs[0].f32();
        let y = outputs[0].f32_mut();
        self.for_each_column(&inputs[0].shape, |col| {
            let m = col
                .iter()
                .map(|&i| f64::from(x[i]))
                .fold(f64::MIN, f64::max);
            let s: f64 = col.iter().map(|&i| (f64::from(x[i]) - m).exp()).sum();
            for &i in col {
                let shifted = f64::from(x[i]) - m;
                y[i] = if self.log {
                    shifted - s.ln()
                } else {
                    shifted.exp() / s
                } as f32;
            }
        });
    }
}

impl OpDef for SoftmaxBackward {
    fn name(&self) -> &'static str {
        if self.0.log {
            "log_softmax_backward"
        } else {
            "softmax_backward"
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        self.0.check(self.name(), inputs[1])?;
        if inputs[0] != inputs[1] {
            return Err(Error::shape(
                self.name(),
                format!("grad_y {} and y {} differ", inputs[0], inputs[1]),
            ));
        }
        Ok(vec![inputs[0].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let p = self.0.params(inputs[0]);
        KernelCall::per_element(&SHADER, self.name(), &p, (p.outer * p.inner) as usize)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (grad_y, y) = (inputs[0].f32(), inputs[1].f32());
        let grad_x = outputs[0].f32_mut();
        self.0.for_each_column(&inputs[0].shape, |col| {
            if self.0.log {
                let sum: f64 = col.iter().map(|&i| f64::from(grad_y[i])).sum();
                for &i in col {
                    grad_x[i] = (f64::from(grad_y[i]) - f64::from(y[i]).exp() * sum) as f32;
                }
            } else {
                let dot: f64 = col
                    .iter()
                    .map(|&i| f64::from(grad_y[i]) * f64::from(y[i]))
                    .sum();
                for &i in col {
                    grad_x[i] = (f64::from(y[i]) * (f64::from(grad_y[i]) - dot)) as f32;
                }
            }
        });
    }
}

impl Graph {
    /// `softmax(x, dim)`.
    pub fn softmax(&mut self, x: TensorId, dim: usize) -> Result<TensorId> {
        Ok(self.push(Softmax { dim, log: false }, &[x])?[0])
    }

    /// `log_softmax(x, dim)`.
    pub fn log_softmax(&mut self, x: TensorId, dim: usize) -> Result<TensorId> {
        Ok(self.push(Softmax { dim, log: true }, &[x])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    // Logits [n, classes], channels of a map, and a single class.
    for (dims, dim) in [
        (vec![7, 10], 1),
        (vec![2, 5, 3, 7], 1),
        (vec![3, 1], 1),
        (vec![4, 6, 5], 2),
    ] {
        for log in [false, true] {
            let op = Softmax { dim, log };
            let x = Shape::f32(dims.clone());
            res.push(CatalogEntry::new(op, vec![x.clone()]));
            let mut backward = CatalogEntry::new(SoftmaxBackward(op), vec![x.clone(), x]);
            // A real y: the forward of random logits.
            backward.prepare = Some(Box::new(move |inputs: &mut [CpuTensor]| {
                let logits = inputs[1].clone();
                inputs[1] = crate::ops::testing::run_reference(&op, &[logits])[0].clone();
            }));
            res.push(backward);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn columns_sum_to_one_and_logs_agree() {
        let x = CpuTensor::from_f32([2, 3], vec![1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0]);
        let y = run_reference(&Softmax { dim: 1, log: false }, std::slice::from_ref(&x));
        let want = [0.090_030_57, 0.244_728_48, 0.665_240_94];
        for (g, w) in y[0].f32()[..3].iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{g} vs {w}");
        }
        assert!(
            y[0].f32()[3..]
                .iter()
                .all(|&v| (v - 1.0 / 3.0).abs() < 1e-7),
            "stable"
        );
        let l = run_reference(&Softmax { dim: 1, log: true }, &[x]);
        for (lv, sv) in l[0].f32().iter().zip(y[0].f32()) {
            assert!((lv - sv.ln()).abs() < 1e-6);
        }
    }
}
