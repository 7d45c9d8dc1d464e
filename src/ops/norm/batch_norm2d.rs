//! `batch_norm2d` as PyTorch's `nn.BatchNorm2d` computes it: in training, each channel is
//! normalised by the batch's mean and biased variance over `(n, h, w)`, and the running
//! statistics move toward the batch's (unbiased variance) by `momentum`, on the GPU in the
//! same submission; in evaluation, by the running statistics, which nothing updates.
//!
//! Training is two ops: [`BatchNorm2d`] (outputs `y` and the batch statistics) and
//! [`BatchNorm2dUpdateStats`] (an in-place effect on the running statistics, which the train
//! program runs). Evaluation is [`BatchNorm2dEval`]. [`Graph::batch_norm2d`] pushes the ones a
//! mode needs; a model built for both modes shares parameters and running statistics.

use bytemuck::{Pod, Zeroable};

use crate::ir::{
    expect_arity, expect_dtype, BackwardCtx, CpuTensor, DeviceCaps, KernelCall, KernelPlan, NodeId,
    OpDef, Operand, ScratchSpec, Shader,
};
use crate::ir::{Graph, TensorId};
use crate::ops::{reduction_splits, CatalogEntry};
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/batch_norm2d.wgsl`.
pub static SHADER: Shader = Shader::new(
    "batch_norm2d",
    include_str!("../../../shaders/batch_norm2d.wgsl"),
    size_of::<Params>(),
);

/// Invocations per workgroup of the per-channel reductions (a power of two).
const REDUCE_WG: u32 = 256;

/// Mirrors `struct Params` in `shaders/batch_norm2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c: u32,
    hw: u32,
    count: u32,
    eps: f32,
    momentum: f32,
    /// Split reductions: splits per channel, and values per split (the last may hold fewer).
    splits: u32,
    chunk: u32,
}

/// Fewest values one split reduces: shorter ones cost more in partial results than they save.
const SPLIT_MIN_CHUNK: usize = 64;

impl Params {
    fn new(x: &Shape, eps: f32, momentum: f32) -> Self {
        let [n, c, h, w] = x.dims4_u32();
        Params {
            n,
            c,
            hw: h * w,
            count: n * h * w,
            eps,
            momentum,
            splits: 1,
            chunk: n * h * w,
        }
    }

    /// The same with each channel's values split for the split reductions, or `None` where
    /// a channel is too short to split.
    fn split(self) -> Option<Self> {
        let (splits, chunk) =
            reduction_splits(self.c as usize, self.count as usize, SPLIT_MIN_CHUNK)?;
        Some(Params {
            splits: splits as u32,
            chunk: chunk as u32,
            ..self
        })
    }
}

/// The `split` plan, for GPUs: `split_entry` on `split_operands` (the part buffer last) over
/// (channel, split) workgroups, then `combine_entry` on the part buffer and `outputs`, one
/// invocation per channel, then `last` (the elementwise pass). `None` where the adapter is
/// not a GPU (one workgroup per channel keeps a CPU's few threads busy) or the channels are
/// too short.
fn split_plan(
    caps: &DeviceCaps,
    params: &Params,
    [split_entry, combine_entry]: [&'static str; 2],
    mut split_operands: Vec<Operand>,
    outputs: Vec<Operand>,
    last: (KernelCall, Vec<Operand>),
) -> Option<KernelPlan> {
    if !caps.workgroup_tiles {
        return None;
    }
    let sp = params.split()?;
    let part = ScratchSpec::Buffer {
        bytes: 4 * 2 * u64::from(sp.c) * u64::from(sp.splits),
    };
    split_operands.push(Operand::Scratch(0));
    let mut combine_operands = vec![Operand::Scratch(0)];
    combine_operands.extend(outputs);
    let split = KernelCall::grid(&SHADER, split_entry, &sp, [sp.c, sp.splits, 1])
        .with_overrides(&[("WG", f64::from(REDUCE_WG))]);
    let combine = KernelCall::per_element(&SHADER, combine_entry, &sp, sp.c as usize);
    Some(KernelPlan {
        variant: "split".into(),
        scratch: vec![part],
        calls: vec![(split, split_operands), (combine, combine_operands), last],
        copies: Vec::new(),
    })
}

/// Training-mode batch norm: `x: [n, c, h, w]`, `weight, bias: [c]` → `y` like `x`, and the
/// batch's `mean` and biased `var`, `[c]` each (differentiable too).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm2d {
    /// Added to the variance (PyTorch's default: 1e-5).
    pub eps: f32,
}

/// Evaluation-mode batch norm: `x, weight, bias, running_mean, running_var` → `y`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm2dEval {
    /// Added to the variance.
    pub eps: f32,
}

/// The gradients of [`BatchNorm2d`] (`training`: inputs `grad_y, x, weight, mean, var,
/// grad_mean, grad_var`; outputs `grad_x, grad_weight, grad_bias`) or of [`BatchNorm2dEval`]
/// (inputs `grad_y, x, weight, running_mean, running_var`; outputs `grad_x, grad_weight,
/// grad_bias, grad_running_mean, grad_running_var`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm2dBackward {
    /// Added to the variance.
    pub eps: f32,
    /// Whether the statistics were the batch's (and so depend on `x`).
    pub training: bool,
}

/// Moves the running statistics toward a batch's, in place: inputs `running_mean,
/// running_var` (updated), `mean, var` (the batch's, biased, over `count` values each).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm2dUpdateStats {
    /// Weight of the batch (PyTorch's default: 0.1).
    pub momentum: f32,
    /// Values per channel in the batch (`n·h·w`), for the unbiased variance.
    pub count: usize,
}

/// Checks `x` and the per-channel tensors that follow it.
fn infer_channels(op: &'static str, inputs: &[&Shape], names: &[&str]) -> Result<usize> {
    let [_, c, _, _] = inputs[0].dims4(op, "input")?;
    expect_dtype(op, "input", inputs[0], DType::F32)?;
    for (shape, name) in inputs[1..].iter().zip(names) {
        expect_dtype(op, name, shape, DType::F32)?;
        if shape.dims != [c] {
            return Err(Error::shape(
                op,
                format!("{name} must be [{c}] for an input of {c} channels, got {shape}"),
            ));
        }
    }
    if c > crate::ir::MAX_WORKGROUPS_PER_DIM as usize {
        return Err(Error::shape(op, format!("{c} channels: at most 65,535")));
    }
    Ok(c)
}

fn check_eps(op: &'static str, eps: f32) -> Result<()> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!("eps must be finite and >= 0, got {eps}"),
        ))
    }
}

/// Pushes `op` on `inputs`; its outputs are the gradients of the forward node's inputs, in order.
fn push_gradients(
    cx: &mut BackwardCtx<'_>,
    op: BatchNorm2dBackward,
    inputs: &[TensorId],
) -> Result<()> {
    let grads = cx.push(op, inputs)?;
    for (i, &g) in grads.iter().enumerate() {
        cx.set_grad_input(i, g);
    }
    Ok(())
}

/// One workgroup per channel.
fn reduce_call(entry: &'static str, params: &Params) -> KernelCall {
    KernelCall::grid(&SHADER, entry, params, [params.c, 1, 1])
        .with_overrides(&[("WG", f64::from(REDUCE_WG))])
}

fn elementwise_call(entry: &'static str, params: &Params, x: &Shape) -> KernelCall {
    KernelCall::per_element(&SHADER, entry, params, x.numel())
}

/// `(mean, biased var)` of every channel, in f64.
fn channel_stats(x: &CpuTensor) -> Vec<(f64, f64)> {
    let [n, c, h, w] = x.shape.dims4_u32().map(|v| v as usize);
    let data = x.f32();
    (0..c)
        .map(|ch| {
            let values = || {
                (0..n).flat_map(move |b| {
                    let base = (b * c + ch) * h * w;
                    data[base..base + h * w].iter().map(|&v| f64::from(v))
                })
            };
            let count = (n * h * w) as f64;
            let mean = values().sum::<f64>() / count;
            let var = values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count;
            (mean, var)
        })
        .collect()
}

/// Calls `f(channel, index)` for every element of the NCHW `shape`.
fn for_each_element(shape: &Shape, mut f: impl FnMut(usize, usize)) {
    let [n, c, h, w] = shape.dims4_u32().map(|v| v as usize);
    for b in 0..n {
        for ch in 0..c {
            for s in 0..h * w {
                f(ch, (b * c + ch) * h * w + s);
            }
        }
    }
}

impl OpDef for BatchNorm2d {
    fn name(&self) -> &'static str {
        "batch_norm2d"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 3)?;
        check_eps(self.name(), self.eps)?;
        let c = infer_channels(self.name(), inputs, &["weight", "bias"])?;
        let [n, _, h, w] = inputs[0].dims4_u32();
        if n * h * w < 2 {
            return Err(Error::shape(
                self.name(),
                format!(
                    "training needs more than one value per channel, got input {}",
                    inputs[0]
                ),
            ));
        }
        Ok(vec![inputs[0].clone(), Shape::f32([c]), Shape::f32([c])])
    }

    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let grad_mean = cx.grad_output(1);
        let grad_var = cx.grad_output(2);
        let inputs = [
            grad_y,
            cx.input(0),
            cx.input(1),
            cx.output(1),
            cx.output(2),
            grad_mean,
            grad_var,
        ];
        let op = BatchNorm2dBackward {
            eps: self.eps,
            training: true,
        };
        push_gradients(cx, op, &inputs)
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        reduce_call("batch_norm2d_stats", &Params::new(inputs[0], self.eps, 0.0))
    }

    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let params = Params::new(inputs[0], self.eps, 0.0);
        use Operand::{Input, Output};
        let forward = (
            elementwise_call("batch_norm2d_forward", &params, inputs[0]),
            vec![
                Input(0),
                Input(1),
                Input(2),
                Output(1),
                Output(2),
                Output(0),
            ],
        );
        let mut res = Vec::new();
        // On GPUs, first: statistics over (channel, split) workgroups.
        let entries = ["batch_norm2d_stats_split", "batch_norm2d_stats_combine"];
        let stats_outputs = vec![Output(1), Output(2)];
        let operands = vec![Input(0)];
        let stats = stats_outputs.clone();
        res.extend(split_plan(
            caps,
            &params,
            entries,
            operands,
            stats,
            forward.clone(),
        ));
        let stats = (
            self.kernel(inputs, outputs),
            [vec![Input(0)], stats_outputs].concat(),
        );
        res.push(KernelPlan {
            variant: "direct".into(),
            scratch: Vec::new(),
            calls: vec![stats, forward],
            copies: Vec::new(),
        });
        res
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let stats = channel_stats(inputs[0]);
        let (x, weight, bias) = (inputs[0].f32(), inputs[1].f32(), inputs[2].f32());
        let y = outputs[0].f32_mut();
        for_each_element(&inputs[0].shape, |ch, i| {
            let (mean, var) = stats[ch];
            let rs = 1.0 / (var + f64::from(self.eps)).sqrt();
            y[i] = ((f64::from(x[i]) - mean) * rs * f64::from(weight[ch]) + f64::from(bias[ch]))
                as f32;
        });
        for (ch, &(mean, var)) in stats.iter().enumerate() {
            outputs[1].f32_mut()[ch] = mean as f32;
            outputs[2].f32_mut()[ch] = var as f32;
        }
    }
}

impl OpDef for BatchNorm2dEval {
    fn name(&self) -> &'static str {
        "batch_norm2d_eval"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 5)?;
        check_eps(self.name(), self.eps)?;
        let names = ["weight", "bias", "running_mean", "running_var"];
        infer_channels(self.name(), inputs, &names)?;
        Ok(vec![inputs[0].clone()])
    }

    // In a model the running statistics are state and take no gradient, but the op is
    // differentiable in them too.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let inputs = [grad_y, cx.input(0), cx.input(1), cx.input(3), cx.input(4)];
        let op = BatchNorm2dBackward {
            eps: self.eps,
            training: false,
        };
        push_gradients(cx, op, &inputs)
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let params = Params::new(inputs[0], self.eps, 0.0);
        elementwise_call("batch_norm2d_eval_forward", &params, inputs[0])
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let [x, weight, bias, mean, var] = [0, 1, 2, 3, 4].map(|i| inputs[i].f32());
        let y = outputs[0].f32_mut();
        for_each_element(&inputs[0].shape, |ch, i| {
            let rs = 1.0 / (f64::from(var[ch]) + f64::from(self.eps)).sqrt();
            y[i] = ((f64::from(x[i]) - f64::from(mean[ch])) * rs * f64::from(weight[ch])
                + f64::from(bias[ch])) as f32;
        });
    }
}

impl OpDef for BatchNorm2dBackward {
    fn name(&self) -> &'static str {
        if self.training {
            "batch_norm2d_backward"
        } else {
            "batch_norm2d_eval_backward"
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let names: &[&str] = if self.training {
            &["x", "weight", "mean", "var", "grad_mean", "grad_var"]
        } else {
            &["x", "weight", "running_mean", "running_var"]
        };
        expect_arity(self.name(), inputs, 1 + names.len())?;
        check_eps(self.name(), self.eps)?;
        if inputs[0] != inputs[1] {
            return Err(Error::shape(
                self.name(),
                format!("grad_y {} and x {} differ", inputs[0], inputs[1]),
            ));
        }
        let c = infer_channels(self.name(), &inputs[1..], &names[1..])?;
        let n_stat_grads = if self.training { 2 } else { 4 };
        let mut res = vec![inputs[0].clone()];
        res.extend(std::iter::repeat_n(Shape::f32([c]), n_stat_grads));
        Ok(res)
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let entry = if self.training {
            "batch_norm2d_backward_reduce"
        } else {
            "batch_norm2d_eval_backward_reduce"
        };
        reduce_call(entry, &Params::new(inputs[0], self.eps, 0.0))
    }

    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let params = Params::new(inputs[0], self.eps, 0.0);
        use Operand::{Input, Output};
        let reduce_operands = if self.training {
            vec![Input(0), Input(1), Input(3), Input(4), Output(1), Output(2)]
        } else {
            let mut ops: Vec<Operand> = (0..5).map(Input).collect();
            ops.extend((1..5).map(Output));
            ops
        };
        let reduce = (self.kernel(inputs, outputs), reduce_operands);
        let grad_x = if self.training {
            (
                elementwise_call("batch_norm2d_backward_input", &params, inputs[0]),
                vec![
                    Input(0),
                    Input(1),
                    Input(2),
                    Input(3),
                    Input(4),
                    Input(5),
                    Input(6),
                    Output(1),
                    Output(2),
                    Output(0),
                ],
            )
        } else {
            (
                elementwise_call("batch_norm2d_eval_backward_input", &params, inputs[0]),
                vec![Input(0), Input(2), Input(4), Output(0)],
            )
        };
        let mut res = Vec::new();
        // On GPUs, first: the training backward's sums over (channel, split) workgroups.
        let entries = [
            "batch_norm2d_backward_reduce_split",
            "batch_norm2d_backward_reduce_combine",
        ];
        if self.training {
            let operands = vec![Input(0), Input(1), Input(3), Input(4)];
            let outputs = vec![Output(1), Output(2)];
            let last = grad_x.clone();
            res.extend(split_plan(caps, &params, entries, operands, outputs, last));
        }
        res.push(KernelPlan {
            variant: "direct".into(),
            scratch: Vec::new(),
            calls: vec![reduce, grad_x],
            copies: Vec::new(),
        });
        res
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let shape = &inputs[0].shape;
        let [n, _, h, w] = shape.dims4_u32();
        let count = f64::from(n * h * w);
        let [grad_y, x, weight, mean, var] = [0, 1, 2, 3, 4].map(|i| inputs[i].f32());
        let c = weight.len();
        let rs: Vec<f64> = var
            .iter()
            .map(|&v| 1.0 / (f64::from(v) + f64::from(self.eps)).sqrt())
            .collect();
        let x_hat = |ch: usize, i: usize| (f64::from(x[i]) - f64::from(mean[ch])) * rs[ch];
        let (mut sum_g, mut sum_gx) = (vec![0f64; c], vec![0f64; c]);
        for_each_element(shape, |ch, i| {
            sum_g[ch] += f64::from(grad_y[i]);
            sum_gx[ch] += f64::from(grad_y[i]) * x_hat(ch, i);
        });
        let grad_x = outputs[0].f32_mut();
        for_each_element(shape, |ch, i| {
            let g = f64::from(grad_y[i]);
            let scale = f64::from(weight[ch]) * rs[ch];
            grad_x[i] = if self.training {
                let (grad_mean, grad_var) = (inputs[5].f32(), inputs[6].f32());
                let centred = f64::from(x[i]) - f64::from(mean[ch]);
                scale * (g - (sum_g[ch] + x_hat(ch, i) * sum_gx[ch]) / count)
                    + (f64::from(grad_mean[ch]) + 2.0 * centred * f64::from(grad_var[ch])) / count
            } else {
                scale * g
            } as f32;
        });
        for ch in 0..c {
            outputs[1].f32_mut()[ch] = sum_gx[ch] as f32;
            outputs[2].f32_mut()[ch] = sum_g[ch] as f32;
            if !self.training {
                let w = f64::from(weight[ch]);
                outputs[3].f32_mut()[ch] = (-w * rs[ch] * sum_g[ch]) as f32;
                outputs[4].f32_mut()[ch] = (-0.5 * w * rs[ch] * rs[ch] * sum_gx[ch]) as f32;
            }
        }
    }
}

impl OpDef for BatchNorm2dUpdateStats {
    fn name(&self) -> &'static str {
        "batch_norm2d_update_stats"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 4)?;
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::shape(
                self.name(),
                format!("momentum must be in [0, 1], got {}", self.momentum),
            ));
        }
        if self.count < 2 {
            return Err(Error::shape(
                self.name(),
                "the unbiased variance needs at least 2 values per channel",
            ));
        }
        let c = inputs[0].numel();
        for (shape, name) in inputs
            .iter()
            .zip(["running_mean", "running_var", "mean", "var"])
        {
            expect_dtype(self.name(), name, shape, DType::F32)?;
            if shape.dims != [c] {
                return Err(Error::shape(
                    self.name(),
                    format!("{name} must be [{c}], got {shape}"),
                ));
            }
        }
        Ok(vec![])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let c = inputs[0].numel();
        let params = Params {
            n: 1,
            c: c as u32,
            hw: 1,
            count: self.count as u32,
            eps: 0.0,
            momentum: self.momentum,
            splits: 1,
            chunk: self.count as u32,
        };
        KernelCall::per_element(&SHADER, "batch_norm2d_update_stats", &params, c)
    }

    fn mutates(&self) -> &'static [usize] {
        &[0, 1]
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let m = f64::from(self.momentum);
        let count = self.count as f64;
        let (mean, var) = (inputs[2].f32(), inputs[3].f32());
        for ch in 0..mean.len() {
            let rm = &mut outputs[0].f32_mut()[ch];
            *rm = ((1.0 - m) * f64::from(*rm) + m * f64::from(mean[ch])) as f32;
            let rv = &mut outputs[1].f32_mut()[ch];
            let unbiased = f64::from(var[ch]) * count / (count - 1.0);
            *rv = ((1.0 - m) * f64::from(*rv) + m * unbiased) as f32;
        }
    }
}

/// What [`Graph::batch_norm2d`] computes with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance (PyTorch's default: 1e-5).
    pub eps: f32,
    /// Weight of each batch in the running statistics (PyTorch's default: 0.1).
    pub momentum: f32,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
        }
    }
}

impl Graph {
    /// `F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)`: `x: [n, c, h, w]`
    /// normalised by the batch's own statistics, scaled by `weight: [c]`, shifted by
    /// `bias: [c]`; no running statistics are kept (a purely functional batch norm).
    pub fn batch_norm2d(
        &mut self,
        x: TensorId,
        weight: TensorId,
        bias: TensorId,
        eps: f32,
    ) -> Result<TensorId> {
        Ok(self.push(BatchNorm2d { eps }, &[x, weight, bias])?[0])
    }

    /// `BatchNorm2d` in training mode with running statistics: as [`Graph::batch_norm2d`],
    /// and also returns the node that updates `running_mean` and `running_var` (`[c]` state
    /// tensors) by `config.momentum`, which a train program must run as an effect.
    pub fn batch_norm2d_tracked(
        &mut self,
        x: TensorId,
        weight: TensorId,
        bias: TensorId,
        running_mean: TensorId,
        running_var: TensorId,
        config: BatchNormConfig,
    ) -> Result<(TensorId, NodeId)> {
        let outs = self.push(BatchNorm2d { eps: config.eps }, &[x, weight, bias])?;
        let [n, _, h, w] = self.shape(x).dims4_u32();
        let update = BatchNorm2dUpdateStats {
            momentum: config.momentum,
            count: (n * h * w) as usize,
        };
        let node = self.push_node(update, &[running_mean, running_var, outs[1], outs[2]])?;
        Ok((outs[0], node))
    }

    /// `BatchNorm2d` in evaluation mode: `x` normalised by `running_mean` and `running_var`.
    pub fn batch_norm2d_eval(
        &mut self,
        x: TensorId,
        weight: TensorId,
        bias: TensorId,
        running_mean: TensorId,
        running_var: TensorId,
        eps: f32,
    ) -> Result<TensorId> {
        let inputs = [x, weight, bias, running_mean, running_var];
        Ok(self.push(BatchNorm2dEval { eps }, &inputs)?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    let eps = 1e-5;
    // Odd sizes, batch 1, one channel, and a channel count over a reduction's width.
    // Channels of 1,615 values: split (on GPUs) into 24 of 65 and a last of 55.
    for dims in [
        [2, 3, 5, 7],
        [1, 4, 3, 3],
        [3, 1, 9, 11],
        [2, 300, 1, 2],
        [5, 3, 17, 19],
    ] {
        let x = Shape::f32(dims);
        let c = Shape::f32([dims[1]]);
        res.push(CatalogEntry::new(
            BatchNorm2d { eps },
            vec![x.clone(), c.clone(), c.clone()],
        ));
        let mut eval = CatalogEntry::new(
            BatchNorm2dEval { eps },
            vec![x.clone(), c.clone(), c.clone(), c.clone(), c.clone()],
        );
        eval.prepare = Some(Box::new(positive_variance(4)));
        res.push(eval);
        let mut backward = CatalogEntry::new(
            BatchNorm2dBackward {
                eps,
                training: true,
            },
            vec![
                x.clone(),
                x.clone(),
                c.clone(),
                c.clone(),
                c.clone(),
                c.clone(),
                c.clone(),
            ],
        );
        backward.prepare = Some(Box::new(positive_variance(4)));
        res.push(backward);
        let mut eval_backward = CatalogEntry::new(
            BatchNorm2dBackward {
                eps,
                training: false,
            },
            vec![x.clone(), x.clone(), c.clone(), c.clone(), c.clone()],
        );
        eval_backward.prepare = Some(Box::new(positive_variance(4)));
        res.push(eval_backward);
        let mut update = CatalogEntry::new(
            BatchNorm2dUpdateStats {
                momentum: 0.1,
                count: dims[0] * dims[2] * dims[3],
            },
            vec![c.clone(), c.clone(), c.clone(), c],
        );
        update.prepare = Some(Box::new(|inputs: &mut [CpuTensor]| {
            for i in [1, 3] {
                for v in inputs[i].f32_mut() {
                    *v = v.abs() + 0.5;
                }
            }
        }));
        res.push(update);
    }
    res
}

/// Makes input `i` (a variance) positive.
fn positive_variance(i: usize) -> impl Fn(&mut [CpuTensor]) {
    move |inputs: &mut [CpuTensor]| {
        for v in inputs[i].f32_mut() {
            *v = v.abs() + 0.5;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn training_normalises_each_channel_and_reports_its_statistics() {
        // Channel 0: 1, 2, 3, 4 (mean 2.5, var 1.25); channel 1: all 7 (var 0).
        let x = CpuTensor::from_f32([2, 2, 1, 2], vec![1.0, 2.0, 7.0, 7.0, 3.0, 4.0, 7.0, 7.0]);
        let weight = CpuTensor::from_f32([2], vec![2.0, 1.0]);
        let bias = CpuTensor::from_f32([2], vec![0.5, -1.0]);
        let out = run_reference(&BatchNorm2d { eps: 0.0 }, &[x, weight, bias]);
        assert_eq!(out[1].f32(), [2.5, 7.0]);
        assert_eq!(out[2].f32(), [1.25, 0.0]);
        let z = 1.5 / 1.25f32.sqrt();
        let want = [-z * 2.0 + 0.5, -z / 3.0 * 2.0 + 0.5];
        assert!((out[0].f32()[0] - want[0]).abs() < 1e-6);
        assert!((out[0].f32()[1] - want[1]).abs() < 1e-6);
    }

    #[test]
    fn running_statistics_move_by_momentum_with_the_unbiased_variance() {
        let update = BatchNorm2dUpdateStats {
            momentum: 0.1,
            count: 4,
        };
        let out = run_reference(
            &update,
            &[
                CpuTensor::from_f32([1], vec![0.0]),
                CpuTensor::from_f32([1], vec![1.0]),
                CpuTensor::from_f32([1], vec![2.5]),
                CpuTensor::from_f32([1], vec![1.25]),
            ],
        );
        assert!((out[0].f32()[0] - 0.25).abs() < 1e-7);
        // 0.9 · 1 + 0.1 · 1.25 · 4/3
        assert!((out[1].f32()[0] - (0.9 + 0.1 * 1.25 * 4.0 / 3.0)).abs() < 1e-6);
    }

    #[test]
    fn training_on_one_value_per_channel_is_an_error() {
        let c = Shape::f32([3]);
        let err = BatchNorm2d { eps: 1e-5 }
            .infer(&[&Shape::f32([1, 3, 1, 1]), &c, &c])
            .unwrap_err();
        assert!(
            err.to_string().contains("more than one value per channel"),
            "{err}"
        );
        let err = BatchNorm2d { eps: 1e-5 }
            .infer(&[&Shape::f32([2, 3, 4, 4]), &Shape::f32([4]), &c])
            .unwrap_err();
        assert!(err.to_string().contains("weight must be [3]"), "{err}");
    }

    #[test]
    fn split_reductions_fill_a_gpu_and_cover_each_channel_once() {
        // ResNet-20's first batch norm at batch 128: 16 channels of 100,352 values become
        // 1,024 workgroups of 1,568 values.
        let p = Params::new(&Shape::f32([128, 16, 28, 28]), 1e-5, 0.1);
        let sp = p.split().expect("split");
        assert_eq!((sp.splits, sp.chunk, sp.c * sp.splits), (64, 1568, 1024));
        for dims in [
            [5, 3, 17, 19],
            [3, 1, 9, 11],
            [64, 512, 4, 4],
            [1, 1, 1, 128],
        ] {
            let p = Params::new(&Shape::f32(dims), 1e-5, 0.1);
            let sp = p.split().expect("split");
            // Every split holds values, and together exactly the channel's.
            assert!(
                (sp.splits - 1) * sp.chunk < sp.count,
                "{dims:?}: empty last split"
            );
            assert!(
                sp.splits * sp.chunk >= sp.count,
                "{dims:?}: values left out"
            );
            assert!(
                sp.chunk as usize >= SPLIT_MIN_CHUNK,
                "{dims:?}: {}",
                sp.chunk
            );
        }
        // Under two splits' worth of values per channel: nothing to split.
        for dims in [[1, 4, 3, 3], [2, 3, 5, 7], [1, 1, 1, 127]] {
            assert!(Params::new(&Shape::f32(dims), 1e-5, 0.1).split().is_none());
        }
    }
}
