//! Softmax cross-entropy (PyTorch's `F.cross_entropy`, mean, with class weights and label
//! smoothing) with its fused gradient, and the metric accumulator that sums loss and correct
//! predictions on the GPU (its loss is the plain cross-entropy, whatever the training loss).

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
    smoothing: f32,
    _pad: u32,
}

/// Cross-entropy of `softmax(logits)` against `labels`, with class weights `w` and label
/// smoothing `ε`: `loss = Σ_r [(1−ε)·w_y·(lse_r − x_ry) + (ε/c)·Σ_j w_j·(lse_r − x_rj)] / Σ_r w_y`
/// (PyTorch's definition; all `w` = 1 and `ε` = 0 give the plain mean). Inputs `logits: [n, c]`,
/// `labels: [n]` (u32, each `< c`), `weight: [c]` (a constant) → `loss`, a 0-d scalar `[]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxCrossEntropy {
    /// `ε` in `[0, 1]` (PyTorch's `label_smoothing`, default 0).
    pub label_smoothing: f32,
}

/// `grad_logits` of [`SoftmaxCrossEntropy`]: inputs `logits, labels, weight, grad_loss`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxCrossEntropyBackward(pub SoftmaxCrossEntropy);

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

fn params(logits: &Shape, smoothing: f32) -> Params {
    Params {
        n: logits.dims[0] as u32,
        c: logits.dims[1] as u32,
        smoothing,
        _pad: 0,
    }
}

impl SoftmaxCrossEntropy {
    fn check(&self, op: &'static str, inputs: &[&Shape]) -> Result<()> {
        let (_, c) = check_logits_labels(op, inputs[0], inputs[1])?;
        expect_dtype(op, "weight", inputs[2], DType::F32)?;
        if inputs[2].dims != [c] {
            return Err(Error::shape(
                op,
                format!(
                    "weight must be [{c}] for logits {}, got {}",
                    inputs[0], inputs[2]
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::shape(
                op,
                format!(
                    "label_smoothing must be in [0, 1], got {}",
                    self.label_smoothing
                ),
            ));
        }
        Ok(())
    }

    /// `(Σ_r loss numerator, W = Σ_r w_y)` and, per row, `(lse, softmax)`, all in f64.
    fn rows(&self, inputs: &[&CpuTensor]) -> (f64, f64, Vec<(f64, Vec<f64>)>) {
        let (n, c) = (inputs[0].shape.dims[0], inputs[0].shape.dims[1]);
        let (logits, labels, weight) = (inputs[0].f32(), inputs[1].u32(), inputs[2].f32());
        let eps = f64::from(self.label_smoothing);
        let (mut total, mut weight_sum) = (0.0, 0.0);
        let mut rows = Vec::with_capacity(n);
        for r in 0..n {
            let row: Vec<f64> = logits[r * c..(r + 1) * c]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f64 = row.iter().map(|&v| (v - max).exp()).sum();
            let lse = max + sum.ln();
            let y = (labels[r] as usize).min(c - 1);
            let w_y = f64::from(weight[y]);
            let smooth: f64 = (0..c).map(|j| f64::from(weight[j]) * (lse - row[j])).sum();
            total += (1.0 - eps) * w_y * (lse - row[y]) + eps / c as f64 * smooth;
            weight_sum += w_y;
            rows.push((lse, row.iter().map(|&v| (v - lse).exp()).collect()));
        }
        (total, weight_sum, rows)
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
        expect_arity(self.name(), inputs, 3)?;
        self.check(self.name(), inputs)?;
        Ok(vec![Shape::scalar()])
    }

    // grad_logits = [(1−ε)·w_y·(p − onehot(y)) + (ε/c)·(Σw·p − w)] / W; labels and weights
    // get none.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_loss = cx.grad_output(0);
        let grad_logits = cx.push(
            SoftmaxCrossEntropyBackward(*self),
            &[cx.input(0), cx.input(1), cx.input(2), grad_loss],
        )?[0];
        cx.set_grad_input(0, grad_logits);
        Ok(())
    }

    fn constant_inputs(&self) -> &'static [usize] {
        &[2]
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        KernelCall::grid(
            &SHADER,
            "softmax_cross_entropy_forward",
            &params(inputs[0], self.label_smoothing),
            [1, 1, 1],
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (total, weight_sum, _) = self.rows(inputs);
        outputs[0].f32_mut()[0] = (total / weight_sum) as f32;
    }
}

impl OpDef for SoftmaxCrossEntropyBackward {
    fn name(&self) -> &'static str {
        "softmax_cross_entropy_backward"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 4)?;
        self.0.check(self.name(), inputs)?;
        if inputs[3] != &Shape::scalar() {
            return Err(Error::shape(
                self.name(),
                format!("grad_loss must be a scalar (0-d), got {}", inputs[3]),
            ));
        }
        Ok(vec![inputs[0].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        KernelCall::per_element(
            &SHADER,
            "softmax_cross_entropy_backward",
            &params(inputs[0], self.0.label_smoothing),
            inputs[0].dims[0],
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let c = inputs[0].shape.dims[1];
        let (labels, weight) = (inputs[1].u32(), inputs[2].f32());
        let (_, weight_sum, rows) = self.0.rows(inputs);
        let eps = f64::from(self.0.label_smoothing);
        let scale = f64::from(inputs[3].f32()[0]) / weight_sum;
        let class_weights: f64 = weight.iter().map(|&w| f64::from(w)).sum();
        let grad = outputs[0].f32_mut();
        for (r, (_, softmax)) in rows.iter().enumerate() {
            let y = labels[r] as usize;
            let w_y = f64::from(weight[y.min(c - 1)]);
            for j in 0..c {
                let onehot = if j == y { 1.0 } else { 0.0 };
                let hard = (1.0 - eps) * w_y * (softmax[j] - onehot);
                let smooth = eps / c as f64 * (class_weights * softmax[j] - f64::from(weight[j]));
                grad[r * c + j] = (scale * (hard + smooth)) as f32;
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
            &params(inputs[0], 0.0),
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
    /// Mean softmax cross-entropy of `logits: [n, c]` against `labels: [n]` (u32); returns a 0-d scalar.
    pub fn softmax_cross_entropy(
        &mut self,
        logits: TensorId,
        labels: TensorId,
    ) -> Result<TensorId> {
        self.cross_entropy(logits, labels, None, 0.0)
    }

    /// `F.cross_entropy(logits, labels, weight, label_smoothing)`, mean: `weight` `[c]` (or
    /// none: all ones) and `label_smoothing` in `[0, 1]`; returns a 0-d scalar.
    pub fn cross_entropy(
        &mut self,
        logits: TensorId,
        labels: TensorId,
        weight: Option<TensorId>,
        label_smoothing: f32,
    ) -> Result<TensorId> {
        let weight = match weight {
            Some(w) => w,
            None => {
                let c = self.shape(logits).dims.get(1).copied().unwrap_or(1);
                self.constant(
                    "cross_entropy.weight",
                    CpuTensor::from_f32([c], vec![1.0; c]),
                )
            }
        };
        let op = SoftmaxCrossEntropy { label_smoothing };
        Ok(self.push(op, &[logits, labels, weight])?[0])
    }

    /// Appends a node adding this batch's `[loss sum, correct, count]` to `metrics` (`[3]` state).
    pub fn classification_metrics(
        &mut self,
        logits: TensorId,
        labels: TensorId,
        metrics: TensorId,
    ) -> Result<NodeId> {
        self.push_node(ClassificationMetrics, &[logits, labels, metrics])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    for ((n, c), smoothing) in [((37, 10), 0.0), ((5, 3), 0.1), ((300, 7), 0.25)] {
        let op = SoftmaxCrossEntropy {
            label_smoothing: smoothing,
        };
        // Class weights in [0.5, 1.5].
        let weights = |inputs: &mut [CpuTensor]| {
            for w in inputs[2].f32_mut() {
                *w = 1.0 + 0.5 * *w;
            }
        };
        let mut e = CatalogEntry::new(
            op,
            vec![Shape::f32([n, c]), Shape::u32([n]), Shape::f32([c])],
        );
        e.u32_bound = c as u32;
        e.prepare = Some(Box::new(weights));
        res.push(e);
        let mut e = CatalogEntry::new(
            SoftmaxCrossEntropyBackward(op),
            vec![
                Shape::f32([n, c]),
                Shape::u32([n]),
                Shape::f32([c]),
                Shape::scalar(),
            ],
        );
        e.u32_bound = c as u32;
        e.prepare = Some(Box::new(weights));
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
        let ones = CpuTensor::from_f32([4], vec![1.0; 4]);
        let plain = SoftmaxCrossEntropy {
            label_smoothing: 0.0,
        };
        let loss = run_reference(&plain, &[logits, labels, ones]);
        assert_eq!(loss[0].shape, Shape::scalar(), "a loss is 0-d");
        assert!((loss[0].item().expect("scalar") - 4f32.ln()).abs() < 1e-6);
    }

    /// `F.cross_entropy(x, y, weight=w, label_smoothing=0.2)` for x = [[2, 0, -1], [0.5, 1, 0]],
    /// y = [0, 2], w = [1, 2, 3], by PyTorch's definition in float64.
    #[test]
    fn weights_and_smoothing_follow_pytorch() {
        let logits = CpuTensor::from_f32([2, 3], vec![2.0, 0.0, -1.0, 0.5, 1.0, 0.0]);
        let labels = CpuTensor::from_u32([2], vec![0, 2]);
        let weight = CpuTensor::from_f32([3], vec![1.0, 2.0, 3.0]);
        let op = SoftmaxCrossEntropy {
            label_smoothing: 0.2,
        };
        let loss = run_reference(&op, &[logits, labels, weight]);
        let lse = |r: [f64; 3]| r.iter().map(|v| v.exp()).sum::<f64>().ln();
        let (r0, r1) = ([2.0, 0.0, -1.0], [0.5, 1.0, 0.0]);
        let (l0, l1) = (lse(r0), lse(r1));
        let nll = (1.0 * (l0 - r0[0]) + 3.0 * (l1 - r1[2])) / 4.0;
        let smooth: f64 = [r0, r1]
            .iter()
            .zip([l0, l1])
            .map(|(r, l)| (0..3).map(|j| (j + 1) as f64 * (l - r[j])).sum::<f64>())
            .sum::<f64>()
            / 4.0;
        let want = 0.8 * nll + 0.2 / 3.0 * smooth;
        assert!(
            (f64::from(loss[0].f32()[0]) - want).abs() < 1e-6,
            "{} vs {want}",
            loss[0].f32()[0]
        );
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
