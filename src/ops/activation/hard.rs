//! The piecewise-linear activations of MobileNetV2/V3: `hardtanh` (ReLU6 is `hardtanh(0, 6)`),
//! `hardsigmoid` and `hardswish`, with PyTorch's definitions and its derivatives at the kinks.
//! Their backward ops read the input `x`.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/hard_activation.wgsl`.
pub static SHADER: Shader = Shader::new(
    "hard_activation",
    include_str!("../../../shaders/hard_activation.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/hard_activation.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    numel: u32,
    /// `hardtanh`'s bounds; unused by the others.
    min_val: f32,
    max_val: f32,
    _pad: u32,
}

/// A piecewise-linear activation, `y = f(x)` elementwise over any f32 shape (PyTorch's
/// `nn.Hardtanh(min_val, max_val)`, `nn.ReLU6`, `nn.Hardsigmoid`, `nn.Hardswish`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HardActivation {
    /// `clamp(x, min_val, max_val)`.
    Hardtanh {
        /// Lower bound (PyTorch's default: -1).
        min_val: f32,
        /// Upper bound (PyTorch's default: 1).
        max_val: f32,
    },
    /// `clamp(x / 6 + 1/2, 0, 1)`.
    Hardsigmoid,
    /// `x · clamp(x + 3, 0, 6) / 6`.
    Hardswish,
}

/// `grad_x` of a [`HardActivation`] from `grad_y` and the forward input `x`.
#[derive(Clone, Copy, Debug)]
pub struct HardActivationBackward(pub HardActivation);

impl HardActivation {
    /// PyTorch's `nn.ReLU6()`: `min(max(x, 0), 6)`.
    pub const RELU6: HardActivation = HardActivation::Hardtanh {
        min_val: 0.0,
        max_val: 6.0,
    };
    /// PyTorch's `nn.Hardtanh()`.
    pub const HARDTANH: HardActivation = HardActivation::Hardtanh {
        min_val: -1.0,
        max_val: 1.0,
    };

    fn bounds(self) -> (f32, f32) {
        match self {
            HardActivation::Hardtanh { min_val, max_val } => (min_val, max_val),
            _ => (0.0, 0.0),
        }
    }

    fn params(self, numel: usize) -> Params {
        let (min_val, max_val) = self.bounds();
        Params {
            numel: numel as u32,
            min_val,
            max_val,
            _pad: 0,
        }
    }

    fn check(self, op: &'static str) -> Result<()> {
        let (lo, hi) = self.bounds();
        if lo.is_finite() && hi.is_finite() && lo <= hi {
            Ok(())
        } else {
            Err(Error::shape(
                op,
                format!("min_val {lo} and max_val {hi} must be finite with min_val <= max_val"),
            ))
        }
    }

    fn apply(self, x: f32) -> f32 {
        let x = f64::from(x);
        (match self {
            HardActivation::Hardtanh { min_val, max_val } => {
                x.max(f64::from(min_val)).min(f64::from(max_val))
            }
            HardActivation::Hardsigmoid => (x / 6.0 + 0.5).clamp(0.0, 1.0),
            HardActivation::Hardswish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        }) as f32
    }

    /// dy/dx at `x`, with PyTorch's values at the kinks.
    fn derivative(self, x: f32) -> f32 {
        let x = f64::from(x);
        (match self {
            HardActivation::Hardtanh { min_val, max_val } => {
                f64::from(u8::from(x > f64::from(min_val) && x < f64::from(max_val)))
            }
            HardActivation::Hardsigmoid => {
                if x > -3.0 && x < 3.0 {
                    1.0 / 6.0
                } else {
                    0.0
                }
            }
            HardActivation::Hardswish => {
                if x <= -3.0 {
                    0.0
                } else if x >= 3.0 {
                    1.0
                } else {
                    x / 3.0 + 0.5
                }
            }
        }) as f32
    }
}

impl OpDef for HardActivation {
    fn name(&self) -> &'static str {
        match self {
            HardActivation::Hardtanh { .. } => "hardtanh",
            HardActivation::Hardsigmoid => "hardsigmoid",
            HardActivation::Hardswish => "hardswish",
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        self.check(self.name())?;
        expect_arity(self.name(), inputs, 1)?;
        expect_dtype(self.name(), "x", inputs[0], DType::F32)?;
        Ok(vec![inputs[0].clone()])
    }

    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let (grad_y, x) = (cx.grad_output(0), cx.input(0));
        let grad_x = cx.push(HardActivationBackward(*self), &[grad_y, x])?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn output_nonnegative(&self) -> bool {
        match *self {
            HardActivation::Hardtanh { min_val, .. } => min_val >= 0.0,
            HardActivation::Hardsigmoid => true,
            HardActivation::Hardswish => false,
        }
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let entry = match self {
            HardActivation::Hardtanh { .. } => "hardtanh_forward",
            HardActivation::Hardsigmoid => "hardsigmoid_forward",
            HardActivation::Hardswish => "hardswish_forward",
        };
        let numel = inputs[0].numel();
        KernelCall::per_element(&SHADER, entry, &self.params(numel), numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        for (y, &x) in outputs[0].f32_mut().iter_mut().zip(inputs[0].f32()) {
            *y = self.apply(x);
        }
    }
}

impl OpDef for HardActivationBackward {
    fn name(&self) -> &'static str {
        match self.0 {
            HardActivation::Hardtanh { .. } => "hardtanh_backward",
            HardActivation::Hardsigmoid => "hardsigmoid_backward",
            HardActivation::Hardswish => "hardswish_backward",
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        self.0.check(self.name())?;
        expect_arity(self.name(), inputs, 2)?;
        if inputs[0] != inputs[1] {
            return Err(Error::shape(
                self.name(),
                format!("grad_y {} and x {} differ", inputs[0], inputs[1]),
            ));
        }
        expect_dtype(self.name(), "grad_y", inputs[0], DType::F32)?;
        expect_dtype(self.name(), "x", inputs[1], DType::F32)?;
        Ok(vec![inputs[0].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        KernelCall::per_element(&SHADER, self.name(), &self.0.params(numel), numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (grad_y, x) = (inputs[0].f32(), inputs[1].f32());
        for (i, grad_x) in outputs[0].f32_mut().iter_mut().enumerate() {
            *grad_x = grad_y[i] * self.0.derivative(x[i]);
        }
    }
}

impl Graph {
    /// `y = clamp(x, min_val, max_val)` (PyTorch's `F.hardtanh`; defaults -1, 1).
    pub fn hardtanh(&mut self, x: TensorId, min_val: f32, max_val: f32) -> Result<TensorId> {
        Ok(self.push(HardActivation::Hardtanh { min_val, max_val }, &[x])?[0])
    }

    /// `y = min(max(x, 0), 6)` (PyTorch's `F.relu6`, MobileNetV2's activation).
    pub fn relu6(&mut self, x: TensorId) -> Result<TensorId> {
        Ok(self.push(HardActivation::RELU6, &[x])?[0])
    }

    /// `y = clamp(x / 6 + 1/2, 0, 1)` (PyTorch's `F.hardsigmoid`).
    pub fn hardsigmoid(&mut self, x: TensorId) -> Result<TensorId> {
        Ok(self.push(HardActivation::Hardsigmoid, &[x])?[0])
    }

    /// `y = x · clamp(x + 3, 0, 6) / 6` (PyTorch's `F.hardswish`, MobileNetV3's activation).
    pub fn hardswish(&mut self, x: TensorId) -> Result<TensorId> {
        Ok(self.push(HardActivation::Hardswish, &[x])?[0])
    }
}

/// Scales test inputs (magnitudes 0.1-1) by `scale` and moves any value within 0.01 of a kink
/// 0.02 away from it, so that central differences with a step of 1e-3 never straddle one.
fn spread_from_kinks(scale: f32, kinks: &'static [f32]) -> crate::ops::PrepareInputs {
    Box::new(move |inputs: &mut [CpuTensor]| {
        for v in inputs[0].f32_mut() {
            *v *= scale;
            if kinks.iter().any(|k| (*v - k).abs() < 0.01) {
                *v += 0.02;
            }
        }
    })
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let cases: [(HardActivation, f32, &'static [f32]); 5] = [
        (HardActivation::RELU6, 8.0, &[0.0, 6.0]),
        (HardActivation::HARDTANH, 2.0, &[-1.0, 1.0]),
        (
            HardActivation::Hardtanh {
                min_val: -0.5,
                max_val: 2.5,
            },
            3.0,
            &[-0.5, 2.5],
        ),
        (HardActivation::Hardsigmoid, 5.0, &[-3.0, 3.0]),
        (HardActivation::Hardswish, 5.0, &[-3.0, 3.0]),
    ];
    let mut res = Vec::new();
    for (act, scale, kinks) in cases {
        let mut forward = CatalogEntry::new(act, vec![Shape::f32([3, 5, 7, 11])]);
        forward.prepare = Some(spread_from_kinks(scale, kinks));
        res.push(forward);
        let mut backward = CatalogEntry::new(
            HardActivationBackward(act),
            vec![Shape::f32([1037]), Shape::f32([1037])],
        );
        backward.prepare = Some(Box::new(move |inputs: &mut [CpuTensor]| {
            spread_from_kinks(scale, kinks)(&mut inputs[1..])
        }));
        res.push(backward);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    /// `F.relu6`, `F.hardtanh`, `F.hardsigmoid`, `F.hardswish` and their gradients
    /// (`autograd.grad` of the sum) as PyTorch 2.15 computes them in float32 at these points,
    /// kinks included: printed by `tests/fixtures/hard_activations.py`.
    #[test]
    fn values_and_derivatives_match_pytorch_at_and_between_the_kinks() {
        let xs = [-4.0, -3.0, -1.0, 0.0, 0.5, 1.0, 3.0, 6.0, 7.0];
        let third = 0.333_333_34;
        let sixth = 0.166_666_67;
        let cases: [(HardActivation, [f32; 9], [f32; 9]); 4] = [
            (
                HardActivation::RELU6,
                [0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 3.0, 6.0, 6.0],
                [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0],
            ),
            (
                HardActivation::HARDTANH,
                [-1.0, -1.0, -1.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0],
                [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            ),
            (
                HardActivation::Hardsigmoid,
                [
                    0.0,
                    0.0,
                    third,
                    0.5,
                    0.583_333_3,
                    0.666_666_7,
                    1.0,
                    1.0,
                    1.0,
                ],
                [0.0, 0.0, sixth, sixth, sixth, sixth, 0.0, 0.0, 0.0],
            ),
            (
                HardActivation::Hardswish,
                [
                    -0.0,
                    -0.0,
                    -third,
                    0.0,
                    0.291_666_66,
                    0.666_666_7,
                    3.0,
                    6.0,
                    7.0,
                ],
                [
                    0.0,
                    0.0,
                    0.166_666_66,
                    0.5,
                    0.666_666_7,
                    0.833_333_4,
                    1.0,
                    1.0,
                    1.0,
                ],
            ),
        ];
        let x = CpuTensor::from_f32([9], xs.to_vec());
        let ones = CpuTensor::from_f32([9], vec![1.0; 9]);
        for (act, want_y, want_dy) in cases {
            let y = run_reference(&act, std::slice::from_ref(&x));
            let dy = run_reference(&HardActivationBackward(act), &[ones.clone(), x.clone()]);
            for i in 0..xs.len() {
                assert!(
                    (y[0].f32()[i] - want_y[i]).abs() < 1e-6,
                    "{act:?} at {}: {} vs {}",
                    xs[i],
                    y[0].f32()[i],
                    want_y[i]
                );
                assert!(
                    (dy[0].f32()[i] - want_dy[i]).abs() < 1e-6,
                    "{act:?}' at {}: {} vs {}",
                    xs[i],
                    dy[0].f32()[i],
                    want_dy[i]
                );
            }
        }
    }

    #[test]
    fn rejects_bounds_that_are_not_ordered_or_finite() {
        for (min_val, max_val) in [(1.0, -1.0), (f32::NAN, 1.0), (0.0, f32::INFINITY)] {
            let act = HardActivation::Hardtanh { min_val, max_val };
            let err = act.infer(&[&Shape::f32([3])]).unwrap_err();
            assert!(
                err.to_string().contains("min_val <= max_val"),
                "{act:?}: {err}"
            );
        }
    }
}
