//! `reshape` (and `flatten`): a new shape over the same buffer. No kernel runs; the scheduler
//! makes the output share its input's storage.

use crate::ir::{expect_arity, BackwardCtx, CpuTensor, KernelCall, OpDef};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::Shape;
use crate::{Error, Result};

/// `y` = `x` with dims `dims` (same element count, row-major order kept).
#[derive(Clone, Debug)]
pub struct Reshape {
    /// The new dims.
    pub dims: Vec<usize>,
}

impl OpDef for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        let numel: usize = self.dims.iter().product();
        if numel != inputs[0].numel() {
            return Err(Error::shape(
                self.name(),
                format!(
                    "cannot view {} ({} elements) as {:?} ({numel})",
                    inputs[0],
                    inputs[0].numel(),
                    self.dims
                ),
            ));
        }
        Ok(vec![Shape {
            dims: self.dims.clone(),
            dtype: inputs[0].dtype,
        }])
    }

    // A view: the gradient is grad_y viewed back in x's shape.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let dims = cx.shape(cx.input(0)).dims.clone();
        let grad_x = cx.push(Reshape { dims }, &[grad_y])?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn kernel(&self, _inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        unreachable!("reshape is a view: the scheduler never dispatches it")
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        outputs[0].data = inputs[0].data.clone();
    }

    fn is_view(&self) -> bool {
        true
    }
}

impl Graph {
    /// `x` viewed with new dims (no copy).
    pub fn reshape(&mut self, x: TensorId, dims: &[usize]) -> Result<TensorId> {
        Ok(self.push(
            Reshape {
                dims: dims.to_vec(),
            },
            &[x],
        )?[0])
    }

    /// `[n, ...]` viewed as `[n, rest]` (no copy).
    pub fn flatten(&mut self, x: TensorId) -> Result<TensorId> {
        let dims = &self.shape(x).dims;
        let n = dims.first().copied().unwrap_or(1);
        let rest = dims.iter().skip(1).product();
        self.reshape(x, &[n, rest])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    vec![CatalogEntry::new(
        Reshape { dims: vec![3, 35] },
        vec![Shape::f32([3, 5, 7])],
    )]
}
