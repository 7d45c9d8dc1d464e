//! Multi-class hinge loss, PyTorch's `nn.MultiMarginLoss(p=1, margin)` with `reduction='mean'`:
//! every wrong class whose logit comes within `margin` of the right one's costs the gap.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/multi_margin_loss.wgsl`.
pub static SHADER: Shader = Shader::new(
    "multi_margin_loss",
    include_str!("../../../shaders/multi_margin_loss.wgsl"),
    size_of::<Params>(),
);

/// Invocations of the one reducing workgroup.
const REDUCE_WG: u32 = 256;

/// Mirrors `struct Params` in `shaders/multi_margin_loss.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c: u32,
    margin: f32,
    _pad: u32,
}

/// `loss = mean_r (1/c) Σ_{j ≠ y} max(0, margin − x_ry + x_rj)`: `logits: [n, c]`,
/// `labels: [n]` (u32, each `< c`) → a 0-d scalar `[]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultiMarginLoss {
    /// The margin (PyTorch's default: 1).
    pub margin: f32,
}

/// `grad_logits` of [`MultiMarginLoss`]: inputs `logits, labels, grad_loss`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultiMarginLossBackward(pub MultiMarginLoss);

impl MultiMarginLoss {
    fn check(&self, op: &'static str, logits: &Shape, labels: &Shape) -> Result<()> {
        let [n, _] = logits.dims2(op, "logits")?;
        expect_dtype(op, "logits", logits, DType::F32)?;
        expect_dtype(op, "labels", labels, DType::U32)?;
        if labels.dims != [n] {
            return Err(Error::shape(
                op,
                format!("labels must be [{n}] for logits {logits}, got {labels}"),
            ));
        }
        if !self.margin.is_finite() {
            return Err(Error::shape(
                op,
                format!("margin must be finite, got {}", self.margin),
            ));
        }
        Ok(())
    }

    fn params(&self, logits: &Shape) -> Params {
        Params {
            n: logits.dims[0] as u32,
            c: logits.dims[1] as u32,
            margin: self.margin,
            _pad: 0,
        }
    }

    /// Calls `f(row, j, gap)` for every wrong class `j` of every row with a positive gap.
    fn for_each_violation(
        &self,
        logits: &CpuTensor,
        labels: &[u32],
        mut f: impl FnMut(usize, usize, f64),
    ) {
        let c = logits.shape.dims[1];
        let x = logits.f32();
        for (r, &y) in labels.iter().enumerate() {
            let y = y as usize;
            for j in (0..c).filter(|&j| j != y) {
                let gap =
                    f64::from(self.margin) - f64::from(x[r * c + y]) + f64::from(x[r * c + j]);
                if gap > 0.0 {
                    f(r, j, gap);
                }
            }
        }
    }
}

impl OpDef for MultiMarginLoss {
    fn name(&self) -> &'static str {
        "multi_margin_loss"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        self.check(self.name(), inputs[0], inputs[1])?;
        Ok(vec![Shape::scalar()])
    }

    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_loss = cx.grad_output(0);
        let grad = cx.push(
            MultiMarginLossBackward(*self),
            &[cx.input(0), cx.input(1), grad_loss],
        )?[0];
        cx.set_grad_input(0, grad);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        KernelCall::grid(
            &SHADER,
            "multi_margin_loss_forward",
            &self.params(inputs[0]),
            [1, 1, 1],
        )
        .with_overrides(&[("WG", f64::from(REDUCE_WG))])
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let [n, c] = [inputs[0].shape.dims[0], inputs[0].shape.dims[1]];
        let mut total = 0f64;
        self.for_each_violation(inputs[0], inputs[1].u32(), |_, _, gap| total += gap);
        outputs[0].f32_mut()[0] = (total / (n * c) as f64) as f32;
    }
}

impl OpDef for MultiMarginLossBackward {
    fn name(&self) -> &'static str {
        "multi_margin_loss_backward"
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
        Ok(vec![inputs[0].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let params = self.0.params(inputs[0]);
        KernelCall::per_element(
            &SHADER,
            "multi_margin_loss_backward",
            &params,
            inputs[0].dims[0],
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let [n, c] = [inputs[0].shape.dims[0], inputs[0].shape.dims[1]];
        let labels = inputs[1].u32();
        let scale = f64::from(inputs[2].f32()[0]) / (n * c) as f64;
        let mut grad = vec![0f64; n * c];
        self.0.for_each_violation(inputs[0], labels, |r, j, _| {
            grad[r * c + j] += scale;
            grad[r * c + labels[r] as usize] -= scale;
        });
        for (g, v) in outputs[0].f32_mut().iter_mut().zip(grad) {
            *g = v as f32;
        }
    }
}

impl Graph {
    /// `F.multi_margin_loss(logits, labels, margin=margin)` (p = 1, mean); returns a 0-d scalar.
    pub fn multi_margin_loss(
        &mut self,
        logits: TensorId,
        labels: TensorId,
        margin: f32,
    ) -> Result<TensorId> {
        Ok(self.push(MultiMarginLoss { margin }, &[logits, labels])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    for ((n, c), margin) in [((37, 10), 1.0), ((5, 3), 0.5), ((300, 7), 1.0)] {
        let op = MultiMarginLoss { margin };
        // Logits scaled so that no gap sits within finite differences' step of zero.
        let spread = |inputs: &mut [CpuTensor]| {
            for v in inputs[0].f32_mut() {
                *v *= 1.37;
            }
        };
        let mut forward = CatalogEntry::new(op, vec![Shape::f32([n, c]), Shape::u32([n])]);
        forward.u32_bound = c as u32;
        forward.prepare = Some(Box::new(spread));
        res.push(forward);
        let mut backward = CatalogEntry::new(
            MultiMarginLossBackward(op),
            vec![Shape::f32([n, c]), Shape::u32([n]), Shape::scalar()],
        );
        backward.u32_bound = c as u32;
        backward.prepare = Some(Box::new(spread));
        res.push(backward);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    /// `F.multi_margin_loss(tensor([[0.1, 0.2, 0.4, 0.8]]), tensor([3]))` is 0.325 (PyTorch's
    /// documentation example: (1 − 0.8 + 0.1 + 1 − 0.8 + 0.2 + 1 − 0.8 + 0.4) / 4).
    #[test]
    fn pytorch_documentation_example() {
        let x = CpuTensor::from_f32([1, 4], vec![0.1, 0.2, 0.4, 0.8]);
        let y = CpuTensor::from_u32([1], vec![3]);
        let loss = run_reference(&MultiMarginLoss { margin: 1.0 }, &[x, y]);
        assert!(
            (loss[0].f32()[0] - 0.325).abs() < 1e-6,
            "{}",
            loss[0].f32()[0]
        );
    }
}
