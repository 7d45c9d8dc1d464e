//! Elementwise activations (`relu`, `leaky_relu`, `elu`, `sigmoid`, `tanh`, `gelu` exact and
//! tanh-approximated, `silu`) and their backward ops, over any f32 shape.
//!
//! ReLU's, sigmoid's and tanh's backward read the forward output `y`, which the next layer
//! keeps alive anyway, so the input `x` can be freed early; the others read `x`.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/eltwise.wgsl`: activations and `add`.
pub static SHADER: Shader = Shader::new(
    "eltwise",
    include_str!("../../../shaders/eltwise.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/eltwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) numel: u32,
    /// The activation's parameter: leaky ReLU's negative slope, ELU's alpha; else unused.
    pub(crate) alpha: f32,
    pub(crate) _pad: [u32; 2],
}

impl Params {
    pub(crate) fn new(numel: usize) -> Self {
        Self::with_alpha(numel, 0.0)
    }

    pub(crate) fn with_alpha(numel: usize, alpha: f32) -> Self {
        Params {
            numel: numel as u32,
            alpha,
            _pad: [0; 2],
        }
    }
}

/// `grad_y` masked by a ReLU's backward (`y` its output), unless the op that produced `grad_y`
/// already zeroed it wherever the ReLU was inactive ([`OpDef::gradient_relu_masked`]).
pub fn relu_backward(cx: &mut BackwardCtx<'_>, grad_y: TensorId, y: TensorId) -> Result<TensorId> {
    if cx.producer(grad_y).is_some_and(OpDef::gradient_relu_masked) {
        return Ok(grad_y);
    }
    Ok(cx.push(ActivationBackward(Activation::Relu), &[grad_y, y])?[0])
}

/// An elementwise activation: `y = f(x)`, same shape. Names, parameters and defaults are
/// PyTorch's (`nn.LeakyReLU(0.01)`, `nn.ELU(1.0)`, `nn.GELU(approximate='none' | 'tanh')`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` where `x > 0`, else `negative_slope · x`.
    LeakyRelu {
        /// Slope for negative inputs (PyTorch's default: 0.01).
        negative_slope: f32,
    },
    /// `x` where `x > 0`, else `alpha · (e^x − 1)`.
    Elu {
        /// Value approached for large negative inputs, negated (PyTorch's default: 1.0).
        alpha: f32,
    },
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x · Φ(x)`, Φ the standard normal CDF: `0.5 · x · (1 + erf(x / √2))`.
    Gelu,
    /// GELU's tanh approximation: `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
    GeluTanh,
    /// `x · sigmoid(x)` (also called swish).
    Silu,
}

/// `grad_x` of an [`Activation`] from `grad_y` and the forward output `y` (ReLU, sigmoid,
/// tanh) or input `x` (the others: their derivative is not a function of `y` alone, or not
/// for every parameter).
#[derive(Clone, Copy, Debug)]
pub struct ActivationBackward(pub Activation);

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_TANH_C: f64 = 0.044_715;

/// `erf(x)` to 1.5e-7 absolute (Abramowitz and Stegun 7.1.26); `shaders/eltwise.wgsl` uses the
/// same formula, since WGSL has no `erf`.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Activation {
    /// PyTorch's `nn.LeakyReLU()`.
    pub const LEAKY_RELU: Activation = Activation::LeakyRelu {
        negative_slope: 0.01,
    };
    /// PyTorch's `nn.ELU()`.
    pub const ELU: Activation = Activation::Elu { alpha: 1.0 };

    /// Every kind, with PyTorch's default parameters.
    pub const ALL: [Activation; 8] = [
        Activation::Relu,
        Activation::LEAKY_RELU,
        Activation::ELU,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
    ];

    fn apply(self, x: f32) -> f32 {
        let x = f64::from(x);
        (match self {
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu { negative_slope } => {
                if x > 0.0 {
                    x
                } else {
                    f64::from(negative_slope) * x
                }
            }
            Activation::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    f64::from(alpha) * x.exp_m1()
                }
            }
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => 0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2)),
            Activation::GeluTanh => {
                0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x)).tanh())
            }
            Activation::Silu => x * sigmoid(x),
        }) as f32
    }

    /// True when the backward op reads the output `y`, false when it reads the input `x`.
    fn backward_reads_output(self) -> bool {
        matches!(
            self,
            Activation::Relu | Activation::Sigmoid | Activation::Tanh
        )
    }

    /// dy/dx, from `y` or `x` as [`Activation::backward_reads_output`] says.
    fn derivative(self, saved: f32) -> f32 {
        let v = f64::from(saved);
        (match self {
            Activation::Relu => f64::from(u8::from(v > 0.0)),
            Activation::LeakyRelu { negative_slope } => {
                if v > 0.0 {
                    1.0
                } else {
                    f64::from(negative_slope)
                }
            }
            Activation::Elu { alpha } => {
                if v > 0.0 {
                    1.0
                } else {
                    f64::from(alpha) * v.exp()
                }
            }
            Activation::Sigmoid => v * (1.0 - v),
            Activation::Tanh => 1.0 - v * v,
            Activation::Gelu => {
                let cdf = 0.5 * (1.0 + erf(v * std::f64::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * v * v).exp()
                    * 0.5
                    * std::f64::consts::FRAC_2_SQRT_PI
                    * std::f64::consts::FRAC_1_SQRT_2;
                cdf + v * pdf
            }
            Activation::GeluTanh => {
                let t = (SQRT_2_OVER_PI * (v + GELU_TANH_C * v * v * v)).tanh();
                0.5 * (1.0 + t)
                    + 0.5 * v * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * v * v)
            }
            Activation::Silu => {
                let s = sigmoid(v);
                s * (1.0 + v * (1.0 - s))
            }
        }) as f32
    }

    /// The parameter the kernels read from `Params::alpha`.
    fn alpha(self) -> f32 {
        match self {
            Activation::LeakyRelu { negative_slope } => negative_slope,
            Activation::Elu { alpha } => alpha,
            _ => 0.0,
        }
    }

    fn check(self) -> Result<()> {
        let (what, v) = match self {
            Activation::LeakyRelu { negative_slope } => ("negative_slope", negative_slope),
            Activation::Elu { alpha } => ("alpha", alpha),
            _ => return Ok(()),
        };
        if v.is_finite() {
            Ok(())
        } else {
            Err(Error::shape(
                self.name(),
                format!("{what} must be finite, got {v}"),
            ))
        }
    }
}

impl OpDef for Activation {
    fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::Silu => "silu",
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        self.check()?;
        expect_arity(self.name(), inputs, 1)?;
        expect_dtype(self.name(), "x", inputs[0], DType::F32)?;
        Ok(vec![inputs[0].clone()])
    }

    // relu: dy/dx = [y > 0]; sigmoid: y(1 − y); tanh: 1 − y²; leaky_relu: 1 or slope by
    // x's sign; elu: 1 or α·eˣ; gelu: Φ(x) + x·φ(x); silu: σ(x)·(1 + x·(1 − σ(x))).
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let grad_x = match self {
            Activation::Relu => relu_backward(cx, grad_y, cx.output(0))?,
            _ if self.backward_reads_output() => {
                cx.push(ActivationBackward(*self), &[grad_y, cx.output(0)])?[0]
            }
            _ => cx.push(ActivationBackward(*self), &[grad_y, cx.input(0)])?[0],
        };
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn output_nonnegative(&self) -> bool {
        *self == Activation::Relu
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let entry = match self {
            Activation::Relu => "relu_forward",
            Activation::LeakyRelu { .. } => "leaky_relu_forward",
            Activation::Elu { .. } => "elu_forward",
            Activation::Sigmoid => "sigmoid_forward",
            Activation::Tanh => "tanh_forward",
            Activation::Gelu => "gelu_forward",
            Activation::GeluTanh => "gelu_tanh_forward",
            Activation::Silu => "silu_forward",
        };
        let numel = inputs[0].numel();
        let params = Params::with_alpha(numel, self.alpha());
        KernelCall::per_element(&SHADER, entry, &params, numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        for (y, &x) in outputs[0].f32_mut().iter_mut().zip(inputs[0].f32()) {
            *y = self.apply(x);
        }
    }
}

impl OpDef for ActivationBackward {
    fn name(&self) -> &'static str {
        match self.0 {
            Activation::Relu => "relu_backward",
            Activation::LeakyRelu { .. } => "leaky_relu_backward",
            Activation::Elu { .. } => "elu_backward",
            Activation::Sigmoid => "sigmoid_backward",
            Activation::Tanh => "tanh_backward",
            Activation::Gelu => "gelu_backward",
            Activation::GeluTanh => "gelu_tanh_backward",
            Activation::Silu => "silu_backward",
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        self.0.check()?;
        expect_arity(self.name(), inputs, 2)?;
        if inputs[0] != inputs[1] {
            let saved = if self.0.backward_reads_output() {
                "y"
            } else {
                "x"
            };
            return Err(Error::shape(
                self.name(),
                format!("grad_y {} and {saved} {} differ", inputs[0], inputs[1]),
            ));
        }
        expect_dtype(self.name(), "grad_y", inputs[0], DType::F32)?;
        Ok(vec![inputs[0].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        let params = Params::with_alpha(numel, self.0.alpha());
        KernelCall::per_element(&SHADER, self.name(), &params, numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (grad_y, saved) = (inputs[0].f32(), inputs[1].f32());
        for (i, grad_x) in outputs[0].f32_mut().iter_mut().enumerate() {
            *grad_x = grad_y[i] * self.0.derivative(saved[i]);
        }
    }
}

impl Graph {
    /// `y = max(x, 0)` for any f32 `x`.
    pub fn relu(&mut self, x: TensorId) -> Result<TensorId> {
        Ok(self.push(Activation::Relu, &[x])?[0])
    }

    /// `y = 1 / (1 + e^-x)` for any f32 `x`.
    pub fn sigmoid(&mut self, x: TensorId) -> Result<TensorId> {
        Ok(self.push(Activation::Sigmoid, &[x])?[0])
    }

    /// `y = tanh(x)` for any f32 `x`.
    pub fn tanh(&mut self, x: TensorId) -> Result<TensorId> {
        Ok(self.push(Activation::Tanh, &[x])?[0])
    }

    /// `y = x` where `x > 0`, else `negative_slope · x` (PyTorch's default slope: 0.01).
    pub fn leaky_relu(&mut self, x: TensorId, negative_slope: f32) -> Result<TensorId> {
        Ok(self.push(Activation::LeakyRelu { negative_slope }, &[x])?[0])
    }

    /// `y = x` where `x > 0`, else `alpha · (e^x − 1)` (PyTorch's default alpha: 1.0).
    pub fn elu(&mut self, x: TensorId, alpha: f32) -> Result<TensorId> {
        Ok(self.push(Activation::Elu { alpha }, &[x])?[0])
    }

    /// `y = x · Φ(x)` (exact GELU, PyTorch's `approximate='none'`).
    pub fn gelu(&mut self, x: TensorId) -> Result<TensorId> {
        Ok(self.push(Activation::Gelu, &[x])?[0])
    }

    /// GELU's tanh approximation (PyTorch's `approximate='tanh'`).
    pub fn gelu_tanh(&mut self, x: TensorId) -> Result<TensorId> {
        Ok(self.push(Activation::GeluTanh, &[x])?[0])
    }

    /// `y = x · sigmoid(x)`.
    pub fn silu(&mut self, x: TensorId) -> Result<TensorId> {
        Ok(self.push(Activation::Silu, &[x])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    let others = [
        Activation::LeakyRelu {
            negative_slope: 0.2,
        },
        Activation::LeakyRelu {
            negative_slope: -0.3,
        },
        Activation::Elu { alpha: 0.5 },
    ];
    for act in Activation::ALL.into_iter().chain(others) {
        res.push(CatalogEntry::new(act, vec![Shape::f32([3, 5, 7, 11])]));
        // Inputs out to ±12: the tails, where exp overflows or tanh saturates if written
        // carelessly.
        let mut wide = CatalogEntry::new(act, vec![Shape::f32([257])]);
        wide.prepare = Some(Box::new(|inputs: &mut [CpuTensor]| {
            for v in inputs[0].f32_mut() {
                *v *= 12.0;
            }
        }));
        res.push(wide);
        res.push(CatalogEntry::new(
            ActivationBackward(act),
            vec![Shape::f32([1037]), Shape::f32([1037])],
        ));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn reference_values() {
        let x = CpuTensor::from_f32([4], vec![-2.0, -0.5, 0.0, 1.5]);
        assert_eq!(
            run_reference(&Activation::Relu, std::slice::from_ref(&x))[0].f32(),
            [0.0, 0.0, 0.0, 1.5]
        );
        let s = run_reference(&Activation::Sigmoid, std::slice::from_ref(&x));
        assert!((s[0].f32()[2] - 0.5).abs() < 1e-7);
        let t = run_reference(&Activation::Tanh, &[x]);
        assert!((t[0].f32()[3] - 1.5f32.tanh()).abs() < 1e-7);
    }

    /// PyTorch's definitions evaluated in float64 with Python's `math` (erf, tanh, exp, expm1).
    #[test]
    fn reference_values_match_pytorch() {
        let x = CpuTensor::from_f32([4], vec![-2.0, -0.5, 1.0, 3.0]);
        let cases: [(Activation, [f32; 4]); 5] = [
            (Activation::LEAKY_RELU, [-0.02, -0.005, 1.0, 3.0]),
            (Activation::ELU, [-0.864_664_7, -0.393_469_34, 1.0, 3.0]),
            (
                Activation::Gelu,
                [-0.045_500_26, -0.154_268_68, 0.841_344_7, 2.995_950_4],
            ),
            (
                Activation::GeluTanh,
                [-0.045_402_31, -0.154_286, 0.841_192, 2.996_362_7],
            ),
            (
                Activation::Silu,
                [-0.238_405_84, -0.188_770_33, 0.731_058_6, 2.857_722],
            ),
        ];
        for (act, want) in cases {
            let got = run_reference(&act, std::slice::from_ref(&x));
            for (g, w) in got[0].f32().iter().zip(want) {
                assert!(
                    (g - w).abs() <= 3e-7 * w.abs().max(1.0),
                    "{act:?}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn rejects_a_parameter_that_is_not_finite() {
        let act = Activation::LeakyRelu {
            negative_slope: f32::NAN,
        };
        let err = act.infer(&[&Shape::f32([3])]).unwrap_err();
        assert!(
            err.to_string().contains("negative_slope must be finite"),
            "{err}"
        );
    }

    #[test]
    fn rejects_u32_input() {
        let err = Activation::Relu.infer(&[&Shape::u32([3])]).unwrap_err();
        assert!(err.to_string().contains("must be F32"), "{err}");
    }
}
