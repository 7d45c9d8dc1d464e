//! `avg_pool2d` over NCHW input: square window, stride, zero padding counted in the average
//! (PyTorch's defaults: `count_include_pad=True`, floor mode).

use crate::ir::{expect_arity, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::pool::max_pool2d::{Pool2d, PoolParams};
use crate::ops::CatalogEntry;
use crate::shape::Shape;
use crate::{Error, Result};

/// `shaders/avg_pool2d.wgsl` (same `Params` as `max_pool2d.wgsl`).
pub static SHADER: Shader = Shader::new(
    "avg_pool2d",
    include_str!("../../../shaders/avg_pool2d.wgsl"),
    size_of::<PoolParams>(),
);

/// `y[n, c, i, j] = mean of the k×k window` (padding counts as zeros).
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d(pub Pool2d);

/// `grad_x` from `grad_y`; stores the input shape.
#[derive(Clone, Debug)]
pub struct AvgPool2dBackward {
    /// The forward geometry.
    pub pool: Pool2d,
    /// Shape of the forward input.
    pub x: Shape,
}

impl OpDef for AvgPool2d {
    fn name(&self) -> &'static str {
        "avg_pool2d"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        Ok(vec![self.0.infer(self.name(), inputs[0])?])
    }

    // y = (1/k²) Σ window ⇒ each input gets grad_y/k² from every window covering it.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let x = cx.shape(cx.input(0)).clone();
        let grad_x = cx.push(AvgPool2dBackward { pool: self.0, x }, &[grad_y])?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        KernelCall::per_element(
            &SHADER,
            "avg_pool2d_forward",
            &self.0.params(inputs[0], outputs[0]),
            outputs[0].numel(),
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let x = inputs[0].f32();
        let mut acc = vec![0f64; outputs[0].shape.numel()];
        self.0
            .for_each_window(&inputs[0].shape, &outputs[0].shape, |o, i| {
                acc[o] += f64::from(x[i])
            });
        let area = (self.0.k * self.0.k) as f64;
        for (y, a) in outputs[0].f32_mut().iter_mut().zip(acc) {
            *y = (a / area) as f32;
        }
    }
}

impl OpDef for AvgPool2dBackward {
    fn name(&self) -> &'static str {
        "avg_pool2d_backward"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        let y = self.pool.infer(self.name(), &self.x)?;
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
        let mut acc = vec![0f64; outputs[0].shape.numel()];
        self.pool
            .for_each_window(&self.x, &inputs[0].shape, |o, i| {
                acc[i] += f64::from(grad_y[o])
            });
        let area = (self.pool.k * self.pool.k) as f64;
        for (g, a) in outputs[0].f32_mut().iter_mut().zip(acc) {
            *g = (a / area) as f32;
        }
    }
}

impl Graph {
    /// `y = avg_pool2d(x)` for `x: [n, c, h, w]` with a k×k window.
    pub fn avg_pool2d(
        &mut self,
        x: TensorId,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<TensorId> {
        Ok(self.push(AvgPool2d(Pool2d { k, stride, pad }), &[x])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    for (h, w, k, stride, pad) in [(5, 7, 2, 2, 0), (9, 9, 3, 2, 1), (8, 6, 3, 1, 1)] {
        let pool = Pool2d { k, stride, pad };
        let x = Shape::f32([2, 3, h, w]);
        let y = pool
            .infer("avg_pool2d", &x)
            .expect("catalog shapes are valid");
        res.push(CatalogEntry::new(AvgPool2d(pool), vec![x.clone()]));
        res.push(CatalogEntry::new(AvgPool2dBackward { pool, x }, vec![y]));
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
        let out = run_reference(
            &AvgPool2d(Pool2d {
                k: 2,
                stride: 1,
                pad: 1,
            }),
            &[x],
        );
        assert_eq!(
            out[0].f32(),
            [0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]
        );
    }
}
