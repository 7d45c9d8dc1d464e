//! Losses that average an elementwise function of a prediction and a target (PyTorch's
//! `reduction='mean'`): `mse_loss`, `binary_cross_entropy_with_logits` and the binary
//! `hinge_loss` for targets in {−1, +1}. The forward sums on the GPU in one workgroup; the
//! backward gives the gradient of both the prediction and the target.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/pointwise_loss.wgsl`.
pub static SHADER: Shader = Shader::new(
    "pointwise_loss",
    include_str!("../../../shaders/pointwise_loss.wgsl"),
    size_of::<Params>(),
);

/// Invocations of the one reducing workgroup.
const REDUCE_WG: u32 = 256;

/// Mirrors `struct Params` in `shaders/pointwise_loss.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    numel: u32,
    kind: u32,
    _pad: [u32; 2],
}

/// Which elementwise function is averaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointwiseLoss {
    /// `(x − t)²` (PyTorch's `MSELoss`).
    Mse,
    /// `max(x, 0) − x·t + log(1 + e^−|x|)`, binary cross-entropy of the logit `x` against a
    /// target probability `t` (`BCEWithLogitsLoss`).
    BinaryCrossEntropyWithLogits,
    /// `max(0, 1 − t·x)` for targets `t` in {−1, +1}.
    Hinge,
}

/// The gradients of a [`PointwiseLoss`]: inputs `x, t, grad_loss`, outputs `grad_x, grad_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointwiseLossBackward(pub PointwiseLoss);

impl PointwiseLoss {
    fn kind(self) -> u32 {
        match self {
            PointwiseLoss::Mse => 0,
            PointwiseLoss::BinaryCrossEntropyWithLogits => 1,
            PointwiseLoss::Hinge => 2,
        }
    }

    fn f(self, x: f64, t: f64) -> f64 {
        match self {
            PointwiseLoss::Mse => (x - t) * (x - t),
            PointwiseLoss::BinaryCrossEntropyWithLogits => {
                x.max(0.0) - x * t + (-x.abs()).exp().ln_1p()
            }
            PointwiseLoss::Hinge => (1.0 - t * x).max(0.0),
        }
    }

    /// `(∂f/∂x, ∂f/∂t)`.
    fn df(self, x: f64, t: f64) -> (f64, f64) {
        match self {
            PointwiseLoss::Mse => (2.0 * (x - t), -2.0 * (x - t)),
            PointwiseLoss::BinaryCrossEntropyWithLogits => (1.0 / (1.0 + (-x).exp()) - t, -x),
            PointwiseLoss::Hinge if 1.0 - t * x > 0.0 => (-t, -x),
            PointwiseLoss::Hinge => (0.0, 0.0),
        }
    }

    fn params(self, x: &Shape) -> Params {
        Params {
            numel: x.numel() as u32,
            kind: self.kind(),
            _pad: [0; 2],
        }
    }

    fn check(self, op: &'static str, x: &Shape, t: &Shape) -> Result<()> {
        expect_dtype(op, "input", x, DType::F32)?;
        expect_dtype(op, "target", t, DType::F32)?;
        if x != t || x.numel() == 0 {
            return Err(Error::shape(
                op,
                format!("input {x} and target {t} must have the same, non-empty shape"),
            ));
        }
        Ok(())
    }
}

impl OpDef for PointwiseLoss {
    fn name(&self) -> &'static str {
        match self {
            PointwiseLoss::Mse => "mse_loss",
            PointwiseLoss::BinaryCrossEntropyWithLogits => "binary_cross_entropy_with_logits",
            PointwiseLoss::Hinge => "hinge_loss",
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        self.check(self.name(), inputs[0], inputs[1])?;
        Ok(vec![Shape::scalar()])
    }

    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_loss = cx.grad_output(0);
        let grads = cx.push(
            PointwiseLossBackward(*self),
            &[cx.input(0), cx.input(1), grad_loss],
        )?;
        cx.set_grad_input(0, grads[0]);
        cx.set_grad_input(1, grads[1]);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        KernelCall::grid(
            &SHADER,
            "pointwise_loss_forward",
            &self.params(inputs[0]),
            [1, 1, 1],
        )
        .with_overrides(&[("WG", f64::from(REDUCE_WG))])
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (x, t) = (inputs[0].f32(), inputs[1].f32());
        let sum: f64 = x
            .iter()
            .zip(t)
            .map(|(&x, &t)| self.f(f64::from(x), f64::from(t)))
            .sum();
        outputs[0].f32_mut()[0] = (sum / x.len() as f64) as f32;
    }
}

impl OpDef for PointwiseLossBackward {
    fn name(&self) -> &'static str {
        match self.0 {
            PointwiseLoss::Mse => "mse_loss_backward",
            PointwiseLoss::BinaryCrossEntropyWithLogits => {
                "binary_cross_entropy_with_logits_backward"
            }
            PointwiseLoss::Hinge => "hinge_loss_backward",
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 3)?;
        self.0.check(self.name(), inputs[0], inputs[1])?;
        if inputs[2] != &Shape::scalar() {
            return Err(Error::shape(
                self.name(),
                format!("grad_loss must be a scalar (0-d), got {}", inputs[2]),
            ));
        }
        Ok(vec![inputs[0].clone(), inputs[1].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let params = self.0.params(inputs[0]);
        KernelCall::per_element(
            &SHADER,
            "pointwise_loss_backward",
            &params,
            inputs[0].numel(),
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (x, t) = (inputs[0].f32(), inputs[1].f32());
        let scale = f64::from(inputs[2].f32()[0]) / x.len() as f64;
        for i in 0..x.len() {
            let (dx, dt) = self.0.df(f64::from(x[i]), f64::from(t[i]));
            outputs[0].f32_mut()[i] = (dx * scale) as f32;
            outputs[1].f32_mut()[i] = (dt * scale) as f32;
        }
    }
}

impl Graph {
    /// `F.mse_loss(x, t)`: the mean of `(x − t)²`; a 0-d scalar.
    pub fn mse_loss(&mut self, x: TensorId, t: TensorId) -> Result<TensorId> {
        Ok(self.push(PointwiseLoss::Mse, &[x, t])?[0])
    }

    /// `F.binary_cross_entropy_with_logits(x, t)`, mean; a 0-d scalar.
    pub fn binary_cross_entropy_with_logits(
        &mut self,
        x: TensorId,
        t: TensorId,
    ) -> Result<TensorId> {
        Ok(self.push(PointwiseLoss::BinaryCrossEntropyWithLogits, &[x, t])?[0])
    }

    /// The mean of `max(0, 1 − t·x)` for targets `t` in {−1, +1}; a 0-d scalar.
    pub fn hinge_loss(&mut self, x: TensorId, t: TensorId) -> Result<TensorId> {
        Ok(self.push(PointwiseLoss::Hinge, &[x, t])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    for loss in [
        PointwiseLoss::Mse,
        PointwiseLoss::BinaryCrossEntropyWithLogits,
        PointwiseLoss::Hinge,
    ] {
        // More elements than the reducing workgroup, and fewer.
        for dims in [vec![7, 5, 11], vec![3]] {
            let x = Shape::f32(dims);
            let targets = move |inputs: &mut [CpuTensor]| {
                // Targets of the loss's kind: probabilities, signs; predictions kept off the
                // hinge's kink at t·x = 1.
                for (i, t) in inputs[1].f32_mut().iter_mut().enumerate() {
                    *t = match loss {
                        PointwiseLoss::Mse => *t,
                        PointwiseLoss::BinaryCrossEntropyWithLogits => 0.5 + 0.5 * *t,
                        PointwiseLoss::Hinge => {
                            if i % 3 == 0 {
                                -1.0
                            } else {
                                1.0
                            }
                        }
                    };
                }
                if loss == PointwiseLoss::Hinge {
                    for v in inputs[0].f32_mut() {
                        *v *= 1.37;
                    }
                }
            };
            let mut forward = CatalogEntry::new(loss, vec![x.clone(), x.clone()]);
            forward.prepare = Some(Box::new(targets));
            res.push(forward);
            let mut backward = CatalogEntry::new(
                PointwiseLossBackward(loss),
                vec![x.clone(), x, Shape::scalar()],
            );
            backward.prepare = Some(Box::new(targets));
            res.push(backward);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    /// Values of PyTorch's `F.mse_loss`, `F.binary_cross_entropy_with_logits` and of the
    /// hinge's definition for x = [2, −1, 0.5], t = [1, 0, 1] (hinge: t = [1, −1, −1]).
    #[test]
    fn reference_values() {
        let x = CpuTensor::from_f32([3], vec![2.0, -1.0, 0.5]);
        let t = CpuTensor::from_f32([3], vec![1.0, 0.0, 1.0]);
        let mse = run_reference(&PointwiseLoss::Mse, &[x.clone(), t.clone()]);
        assert!((mse[0].f32()[0] - 2.25 / 3.0).abs() < 1e-7);
        let bce = run_reference(
            &PointwiseLoss::BinaryCrossEntropyWithLogits,
            &[x.clone(), t],
        );
        // (softplus(−2) + softplus(−1) + softplus(−0.5)) / 3
        let want = ((1.0 + (-2.0f64).exp()).ln()
            + (1.0 + (-1.0f64).exp()).ln()
            + (1.0 + (-0.5f64).exp()).ln())
            / 3.0;
        assert!((f64::from(bce[0].f32()[0]) - want).abs() < 1e-7);
        let signs = CpuTensor::from_f32([3], vec![1.0, -1.0, -1.0]);
        let hinge = run_reference(&PointwiseLoss::Hinge, &[x, signs]);
        // max(0, 1 − 2) + max(0, 1 − 1) + max(0, 1 + 0.5) = 1.5
        assert!((hinge[0].f32()[0] - 0.5).abs() < 1e-7);
    }
}
