//! `relu`, `sigmoid` and `tanh`, and their backward ops, over any f32 shape.
//!
//! The backward rules read the forward output `y`, which is what the next layer keeps alive
//! anyway, so the input `x` can be freed early.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/eltwise.wgsl`: activations and `add`.
pub static SHADER: Shader = Shader::new(
    "eltwise",
    include_str!("../../shaders/eltwise.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/eltwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) numel: u32,
    pub(crate) _pad: [u32; 3],
}

impl Params {
    pub(crate) fn new(numel: usize) -> Self {
        Params {
            numel: numel as u32,
            _pad: [0; 3],
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

/// An elementwise activation: `y = f(x)`, same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

/// `grad_x` of an [`Activation`] from `grad_y` and the forward output `y`.
#[derive(Clone, Copy, Debug)]
pub struct ActivationBackward(pub Activation);

impl Activation {
    fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        }
    }

    /// dy/dx written in terms of y.
    fn derivative_from_y(self, y: f32) -> f32 {
        match self {
            Activation::Relu => f32::from(y > 0.0),
            Activation::Sigmoid => y * (1.0 - y),
            Activation::Tanh => 1.0 - y * y,
        }
    }
}

impl OpDef for Activation {
    fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        expect_dtype(self.name(), "x", inputs[0], DType::F32)?;
        Ok(vec![inputs[0].clone()])
    }

    // relu: y = max(x, 0) ⇒ dy/dx = [y > 0]; sigmoid: y(1 − y); tanh: 1 − y².
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let grad_x = match self {
            Activation::Relu => relu_backward(cx, grad_y, cx.output(0))?,
            _ => cx.push(ActivationBackward(*self), &[grad_y, cx.output(0)])?[0],
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
            Activation::Sigmoid => "sigmoid_forward",
            Activation::Tanh => "tanh_forward",
        };
        let numel = inputs[0].numel();
        KernelCall::per_element(&SHADER, entry, &Params::new(numel), numel)
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
            Activation::Sigmoid => "sigmoid_backward",
            Activation::Tanh => "tanh_backward",
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        if inputs[0] != inputs[1] {
            return Err(Error::shape(
                self.name(),
                format!("grad_y {} and y {} differ", inputs[0], inputs[1]),
            ));
        }
        expect_dtype(self.name(), "grad_y", inputs[0], DType::F32)?;
        Ok(vec![inputs[0].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        KernelCall::per_element(&SHADER, self.name(), &Params::new(numel), numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (grad_y, y) = (inputs[0].f32(), inputs[1].f32());
        for (i, grad_x) in outputs[0].f32_mut().iter_mut().enumerate() {
            *grad_x = grad_y[i] * self.0.derivative_from_y(y[i]);
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
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    for act in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
        res.push(CatalogEntry::new(act, vec![Shape::f32([3, 5, 7, 11])]));
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

    #[test]
    fn rejects_u32_input() {
        let err = Activation::Relu.infer(&[&Shape::u32([3])]).unwrap_err();
        assert!(err.to_string().contains("must be F32"), "{err}");
    }
}
