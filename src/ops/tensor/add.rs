//! `add`: elementwise sum of two tensors of one shape. Autodiff uses it to sum the gradients
//! of a tensor read by several nodes; residual connections use it forward.

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef};
use crate::ir::{Graph, TensorId};
use crate::ops::activation::{Params, SHADER};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `c = a + b`, same shapes, no broadcasting.
#[derive(Clone, Copy, Debug)]
pub struct Add;

impl OpDef for Add {
    fn name(&self) -> &'static str {
        "add"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        expect_dtype(self.name(), "a", inputs[0], DType::F32)?;
        if inputs[0] != inputs[1] {
            return Err(Error::shape(
                self.name(),
                format!(
                    "a {} and b {} differ (add does not broadcast)",
                    inputs[0], inputs[1]
                ),
            ));
        }
        Ok(vec![inputs[0].clone()])
    }

    // c = a + b ⇒ grad_a = grad_b = grad_c.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_c = cx.grad_output(0);
        cx.set_grad_input(0, grad_c);
        cx.set_grad_input(1, grad_c);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        KernelCall::per_element(&SHADER, "add_forward", &Params::new(numel), numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (a, b) = (inputs[0].f32(), inputs[1].f32());
        for (i, c) in outputs[0].f32_mut().iter_mut().enumerate() {
            *c = a[i] + b[i];
        }
    }
}

impl Graph {
    /// `c = a + b` for two f32 tensors of the same shape.
    pub fn add(&mut self, a: TensorId, b: TensorId) -> Result<TensorId> {
        Ok(self.push(Add, &[a, b])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    vec![CatalogEntry::new(
        Add,
        vec![Shape::f32([5, 13, 3]), Shape::f32([5, 13, 3])],
    )]
}
