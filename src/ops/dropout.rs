//! `dropout` in training: each element kept with probability `1 − p` and scaled by
//! `1 / (1 − p)` (PyTorch's inverted dropout), the mask drawn on the GPU from a hash of the
//! layer's seed, the step counter and the element index. Nothing is stored or uploaded per
//! step: the backward pass regenerates the mask, and the train program increments the
//! counter after it. In evaluation a dropout layer is the identity (no node at all).

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/dropout.wgsl`.
pub static SHADER: Shader = Shader::new(
    "dropout",
    include_str!("../../shaders/dropout.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/dropout.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    numel: u32,
    seed: u32,
    threshold: u32,
    scale: f32,
}

/// `y = x · keep / (1 − p)`: inputs `x` (any f32 shape) and `step` (`[1]` u32 state).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Probability of zeroing an element, in `[0, 1]`.
    pub p: f32,
    /// The layer's seed (layers of one model differ).
    pub seed: u32,
}

/// `grad_x = grad_y · keep / (1 − p)` with the forward's mask: inputs `grad_y`, `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutBackward(pub Dropout);

/// PCG's output permutation of `v` (as `shaders/dropout.wgsl`).
fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

impl Dropout {
    /// Elements whose hash is below this are dropped: `p · 2³²`, saturated.
    fn threshold(self) -> u32 {
        (f64::from(self.p) * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32
    }

    fn scale(self) -> f32 {
        if self.p < 1.0 {
            1.0 / (1.0 - self.p)
        } else {
            0.0
        }
    }

    fn kept(self, step: u32, i: usize) -> bool {
        pcg(i as u32 ^ pcg(self.seed ^ pcg(step))) >= self.threshold()
    }

    fn params(self, numel: usize) -> Params {
        Params {
            numel: numel as u32,
            seed: self.seed,
            threshold: self.threshold(),
            scale: self.scale(),
        }
    }

    fn check(self, op: &'static str, inputs: &[&Shape]) -> Result<()> {
        expect_arity(op, inputs, 2)?;
        if !(0.0..=1.0).contains(&self.p) {
            return Err(Error::shape(
                op,
                format!("p must be in [0, 1], got {}", self.p),
            ));
        }
        expect_dtype(op, "input", inputs[0], DType::F32)?;
        if inputs[1].dims != [1] || inputs[1].dtype != DType::U32 {
            return Err(Error::shape(
                op,
                format!("step must be [1] u32, got {}", inputs[1]),
            ));
        }
        Ok(())
    }

    /// `out[i] = v[i] · scale` where element `i` is kept, else 0.
    fn apply(self, v: &[f32], step: u32, out: &mut [f32]) {
        let scale = self.scale();
        for (i, (o, &x)) in out.iter_mut().zip(v).enumerate() {
            *o = if self.kept(step, i) { x * scale } else { 0.0 };
        }
    }
}

impl OpDef for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        self.check(self.name(), inputs)?;
        Ok(vec![inputs[0].clone()])
    }

    // y = x · keep·scale ⇒ grad_x = grad_y · keep·scale, the same mask.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let grad_x = cx.push(DropoutBackward(*self), &[grad_y, cx.input(1)])?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        KernelCall::per_element(&SHADER, "dropout_forward", &self.params(numel), numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        self.apply(inputs[0].f32(), inputs[1].u32()[0], outputs[0].f32_mut());
    }
}

impl OpDef for DropoutBackward {
    fn name(&self) -> &'static str {
        "dropout_backward"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        self.0.check(self.name(), inputs)?;
        Ok(vec![inputs[0].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        KernelCall::per_element(&SHADER, "dropout_backward", &self.0.params(numel), numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        self.0
            .apply(inputs[0].f32(), inputs[1].u32()[0], outputs[0].f32_mut());
    }
}

impl Graph {
    /// Training-mode `Dropout(p)` of any f32 `x`, its mask drawn from `seed` and the value of
    /// `step` (a `[1]` u32 state the train program must increment once per step).
    pub fn dropout(&mut self, x: TensorId, p: f32, seed: u32, step: TensorId) -> Result<TensorId> {
        Ok(self.push(Dropout { p, seed }, &[x, step])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    for (p, seed) in [(0.3, 7), (0.5, 1234), (0.9, 99)] {
        let op = Dropout { p, seed };
        let mut forward = CatalogEntry::new(op, vec![Shape::f32([3, 5, 7, 11]), Shape::u32([1])]);
        forward.u32_bound = 100_000;
        res.push(forward);
        let mut backward = CatalogEntry::new(
            DropoutBackward(op),
            vec![Shape::f32([1037]), Shape::u32([1])],
        );
        backward.u32_bound = 100_000;
        res.push(backward);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn keeps_about_one_minus_p_scaled_and_changes_with_the_step() {
        let x = CpuTensor::from_f32([10_000], vec![1.0; 10_000]);
        let op = Dropout { p: 0.3, seed: 5 };
        let at = |step: u32| {
            run_reference(&op, &[x.clone(), CpuTensor::from_u32([1], vec![step])])[0].clone()
        };
        let y = at(0);
        let kept = y.f32().iter().filter(|&&v| v != 0.0).count();
        assert!((6_800..=7_200).contains(&kept), "{kept} of 10,000 kept");
        assert!(y
            .f32()
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        assert_ne!(y, at(1), "the mask must change from step to step");
        assert_eq!(y, at(0), "and be the same for the same step");
        let other = Dropout { p: 0.3, seed: 6 };
        let y6 = run_reference(&other, &[x.clone(), CpuTensor::from_u32([1], vec![0])]);
        assert_ne!(y, y6[0], "layers with different seeds draw different masks");
    }

    #[test]
    fn p_zero_keeps_everything_and_p_one_drops_everything() {
        let x = CpuTensor::from_f32([257], (0..257).map(|i| i as f32 + 1.0).collect());
        let step = CpuTensor::from_u32([1], vec![3]);
        let keep_all = run_reference(&Dropout { p: 0.0, seed: 1 }, &[x.clone(), step.clone()]);
        assert_eq!(keep_all[0], x);
        let drop_all = run_reference(&Dropout { p: 1.0, seed: 1 }, &[x, step]);
        assert!(drop_all[0].f32().iter().all(|&v| v == 0.0));
    }
}
