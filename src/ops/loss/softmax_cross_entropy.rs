//! Softmax cross-entropy (mean over the batch, PyTorch's `F.cross_entropy`) with its fused
//! gradient, and the metric accumulator that sums loss and correct predictions on the GPU.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, NodeId, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/softmax_cross_entropy.wgsl`.
pub static SHADER: Shader = Shader::new(
    "softmax_cross_entropy",
    include_str!("../../../shaders/softmax_cross_entropy.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/softmax_cross_entropy.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c: u32,
    _pad: [u32; 2],
}

/// `loss = mean_r (logsumexp(logits[r]) − logits[r, label[r]])`: `logits: [n, c]`,
/// `labels: [n]` (u32, each `< c`) → `loss: [1]`.
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxCrossEntropy;

/// `grad_logits = grad_loss · (softmax(logits) − onehot(labels)) / n`.
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxCrossEntropyBackward;

/// Adds `[Σ per-row loss, Σ correct, rows counted]` of a batch to a `[3]` f32 state tensor.
/// Rows whose label is `>= c` are padding and are skipped, so a partial last batch can be
/// padded to the graph's batch size.
#[derive(Clone, Copy, Debug)]
pub struct ClassificationMetrics;

fn check_logits_labels(op: &'static str, logits: &Shape, labels: &Shape) -> Result<(usize, usize)> {
    let [n, c] = logits.dims2(op, "logits")?;
    expect_dtype(op, "logits", logits, DType::F32)?;
    expect_dtype(op, "labels", labels, DType::U32)?;
    if labels.dims != [n] {
        return Err(Error::shape(
            op,
            format!("labels must be [{n}] for logits {logits}, got {labels}"),
        ));
    }
    Ok((n, c))
}

fn params(logits: &Shape) -> Params {
    Params {
        n: logits.dims[0] as u32,
        c: logits.dims[1] as u32,
        _pad: [0; 2],
    }
}

/// Row `r`'s (logsumexp − logit[label], argmax), in f64.
fn row_stats(logits: &[f32], c: usize, r: usize, label: usize) -> (f64, usize) {
    let row = &logits[r * c..(r + 1) * c];
    let mut arg = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[arg] {
            arg = j;
        }
    }
    let max = f64::from(row[arg]);
    let lse = max
        + row
            .iter()
            .map(|&v| (f64::from(v) - max).exp())
            .sum::<f64>()
            .ln();
    (lse - f64::from(row[label]), arg)
}

impl OpDef for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "softmax_cross_entropy"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        check_logits_labels(self.name(), inputs[0], inputs[1])?;
        Ok(vec![Shape::f32([1])])
    }

    // loss = mean(lse − logit[label]) ⇒ grad_logits = (softmax − onehot) / n; labels get none.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_loss = cx.grad_output(0);
        let grad_logits = cx.push(
            SoftmaxCrossEntropyBackward,
            &[cx.input(0), cx.input(1), grad_loss],
        )?[0];
        cx.set_grad_input(0, grad_logits);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        KernelCall::grid(
            &SHADER,
            "softmax_cross_entropy_forward",
            &params(inputs[0]),
            [1, 1, 1],
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (n, c) = (inputs[0].shape.dims[0], inputs[0].shape.dims[1]);
        let (logits, labels) = (inputs[0].f32(), inputs[1].u32());
        let total: f64 = (0..n)
            .map(|r| row_stats(logits, c, r, labels[r] as usize).0)
            .sum();
        outputs[0].f32_mut()[0] = (total / n as f64) as f32;
    }
}

impl OpDef for SoftmaxCrossEntropyBackward {
    fn name(&self) -> &'static str {
        "softmax_cross_entropy_backward"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 3)?;
        check_logits_labels(self.name(), inputs[0], inputs[1])?;
        if inputs[2].dims != [1] {
            return Err(Error::shape(
                self.name(),
                format!("grad_loss must be [1], got {}", inputs[2]),
            ));
        }
        Ok(vec![inputs[0].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        KernelCall::per_element(
            &SHADER,
            "softmax_cross_entropy_backward",
            &params(inputs[0]),
            inputs[0].dims[0],
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (n, c) = (inputs[0].shape.dims[0], inputs[0].shape.dims[1]);
        let (logits, labels, grad_loss) = (
            inputs[0].f32(),
            inputs[1].u32(),
            f64::from(inputs[2].f32()[0]),
        );
        let grad = outputs[0].f32_mut();
        for r in 0..n {
            let row = &logits[r * c..(r + 1) * c];
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
            for j in 0..c {
                let softmax = (f64::from(row[j]) - max).exp() / sum;
                let onehot = if j == labels[r] as usize { 1.0 } else { 0.0 };
                grad[r * c + j] = (grad_loss * (softmax - onehot) / n as f64) as f32;
            }
        }
    }
}

impl OpDef for ClassificationMetrics {
    fn name(&self) -> &'static str {
        "classification_metrics"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 3)?;
        check_logits_labels(self.name(), inputs[0], inputs[1])?;
        if inputs[2] != &Shape::f32([3]) {
            return Err(Error::shape(
                self.name(),
                format!("metrics state must be [3] f32, got {}", inputs[2]),
            ));
        }
        Ok(vec![])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        KernelCall::grid(
            &SHADER,
            "classification_metrics",
            &params(inputs[0]),
            [1, 1, 1],
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (n, c) = (inputs[0].shape.dims[0], inputs[0].shape.dims[1]);
        let (logits, labels) = (inputs[0].f32(), inputs[1].u32());
        let (mut loss, mut correct, mut count) = (0f64, 0f64, 0f64);
        for (r, &label) in labels.iter().enumerate().take(n) {
            let label = label as usize;
            if label >= c {
                continue;
            }
            let (row_loss, arg) = row_stats(logits, c, r, label);
            loss += row_loss;
            correct += f64::from(u8::from(arg == label));
            count += 1.0;
        }
        let m = outputs[0].f32_mut();
        m[0] += loss as f32;
        m[1] += correct as f32;
        m[2] += count as f32;
    }

    fn mutates(&self) -> &'static [usize] {
        &[2]
    }
}

impl Graph {
    /// Mean softmax cross-entropy of `logits: [n, c]` against `labels: [n]` (u32); returns `[1]`.
    pub fn softmax_cross_entropy(
        &mut self,
        logits: TensorId,
        labels: TensorId,
    ) -> Result<TensorId> {
        Ok(self.push(SoftmaxCrossEntropy, &[logits, labels])?[0])
    }

    /// Appends a node adding this batch's `[loss sum, correct, count]` to `metrics` (`[3]` state).
    pub fn classification_metrics(
        &mut self,
        logits: TensorId,
        labels: TensorId,
        metrics: TensorId,
    ) -> Result<NodeId> {
        self.push(ClassificationMetrics, &[logits, labels, metrics])?;
        Ok(NodeId(self.nodes().len() as u32 - 1))
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    for (n, c) in [(37, 10), (5, 3), (300, 7)] {
        let mut e = CatalogEntry::new(
            SoftmaxCrossEntropy,
            vec![Shape::f32([n, c]), Shape::u32([n])],
        );
        e.u32_bound = c as u32;
        res.push(e);
        let mut e = CatalogEntry::new(
            SoftmaxCrossEntropyBackward,
            vec![Shape::f32([n, c]), Shape::u32([n]), Shape::f32([1])],
        );
        e.u32_bound = c as u32;
        res.push(e);
        // Labels up to c + 1: some rows are padding and must be skipped.
        let mut e = CatalogEntry::new(
            ClassificationMetrics,
            vec![Shape::f32([n, c]), Shape::u32([n]), Shape::f32([3])],
        );
        e.u32_bound = c as u32 + 2;
        res.push(e);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn uniform_logits_give_log_c() {
        let logits = CpuTensor::from_f32([2, 4], vec![0.0; 8]);
        let labels = CpuTensor::from_u32([2], vec![1, 3]);
        let loss = run_reference(&SoftmaxCrossEntropy, &[logits, labels]);
        assert!((loss[0].f32()[0] - 4f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn metrics_skip_padding_rows() {
        let logits = CpuTensor::from_f32([3, 2], vec![1.0, 0.0, 0.0, 1.0, 5.0, 0.0]);
        let labels = CpuTensor::from_u32([3], vec![0, 0, 2]); // row 2 is padding
        let metrics = CpuTensor::from_f32([3], vec![0.0; 3]);
        let out = run_reference(&ClassificationMetrics, &[logits, labels, metrics]);
        let m = out[0].f32();
        assert_eq!((m[1], m[2]), (1.0, 2.0));
        let want = (1.0 + (-1f64).exp()).ln() + (1.0 + 1f64.exp()).ln();
        assert!((f64::from(m[0]) - want).abs() < 1e-6);
    }
}
