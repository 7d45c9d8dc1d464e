//! Training on the GPU: builds the whole step (forward, loss, metrics, backward, optimizer) as
//! one graph, bakes it into an executable with a `train` and an `eval` program, and runs it.
//! Parameters, gradients, optimizer state and metric sums stay on the GPU; only the batch goes
//! up and only the metrics you ask for come back.

use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::exec::gpu::{
    Executable, ProgramId, ProgramSpec, TuneOptions, TuningReport, VariantChoice,
};
use crate::gpu::GpuContext;
use crate::graph::append_backward;
use crate::ir::CpuTensor;
use crate::ir::{Graph, NodeId, TensorId, TensorKind};
use crate::models::Model;
use crate::nn::{Architecture, Net, NetParts};
use crate::ops::optim::{AdamUpdate, LrSchedule, RmspropUpdate, SgdUpdate};
use crate::shape::Shape;
use crate::{Error, Result};

pub mod run_state;

/// The optimizer and its hyper-parameters (PyTorch's semantics).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `torch.optim.SGD`.
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum (0 disables it).
        momentum: f32,
        /// L2 weight decay.
        weight_decay: f32,
        /// Nesterov momentum (needs `momentum > 0` and no dampening).
        nesterov: bool,
        /// Dampening of the momentum (PyTorch's default 0).
        dampening: f32,
    },
    /// `torch.optim.Adam`.
    Adam {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Denominator guard.
        eps: f32,
        /// L2 weight decay.
        weight_decay: f32,
    },
    /// `torch.optim.AdamW`: Adam with the weight decay decoupled from the gradient.
    AdamW {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Denominator guard.
        eps: f32,
        /// Decoupled weight decay (PyTorch's default: 0.01).
        weight_decay: f32,
    },
    /// `torch.optim.RMSprop` (not centred).
    RmsProp {
        /// Learning rate.
        lr: f32,
        /// Decay of the squared-gradient average (0.99).
        alpha: f32,
        /// Denominator guard (1e-8).
        eps: f32,
        /// L2 weight decay.
        weight_decay: f32,
        /// Momentum (0 disables it).
        momentum: f32,
    },
}

impl Optimizer {
    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn adam(lr: f32) -> Self {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// SGD with momentum `momentum` and learning rate `lr`.
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        Optimizer::Sgd {
            lr,
            momentum,
            weight_decay: 0.0,
            nesterov: false,
            dampening: 0.0,
        }
    }

    /// AdamW with PyTorch's defaults (weight decay 0.01) and learning rate `lr`.
    pub fn adamw(lr: f32) -> Self {
        Optimizer::AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }

    /// RMSprop with PyTorch's defaults and learning rate `lr`.
    pub fn rmsprop(lr: f32) -> Self {
        Optimizer::RmsProp {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
        }
    }

    /// The same optimizer with weight decay `weight_decay`: the L2 penalty added to the
    /// gradient (SGD, Adam, RMSprop), or AdamW's decoupled decay.
    pub fn with_weight_decay(self, weight_decay: f32) -> Self {
        let mut res = self;
        match &mut res {
            Optimizer::Sgd {
                weight_decay: w, ..
            }
            | Optimizer::Adam {
                weight_decay: w, ..
            }
            | Optimizer::AdamW {
                weight_decay: w, ..
            }
            | Optimizer::RmsProp {
                weight_decay: w, ..
            } => *w = weight_decay,
        }
        res
    }

    /// Whether the updates read the step count: Adam's bias correction, dampened SGD's
    /// undamped first step ([`SgdUpdate`]'s rule).
    fn reads_step_count(&self) -> bool {
        match *self {
            Optimizer::Adam { .. } | Optimizer::AdamW { .. } => true,
            Optimizer::Sgd {
                momentum,
                dampening,
                ..
            } => momentum > 0.0 && dampening != 0.0,
            Optimizer::RmsProp { .. } => false,
        }
    }
}

/// What to train.
#[derive(Clone, Copy, Debug)]
pub struct TrainConfig {
    /// The model.
    pub model: Model,
    /// Images per step.
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: Optimizer,
    /// Seed of the initial weights.
    pub seed: u64,
    /// How the learning rate moves from step to step (computed on the GPU).
    pub schedule: LrSchedule,
    /// Input images `[c, h, w]` (the dataset's).
    pub input: [usize; 3],
    /// Number of classes (the logits' width).
    pub n_classes: usize,
    /// Also bake a program that keeps every convolution's eval-mode output readable
    /// ([`Trainer::feature_maps`]; costs the memory of all of them at once).
    pub feature_maps: bool,
    /// Label smoothing of the training loss (`CrossEntropyLoss(label_smoothing=...)`; 0: none).
    pub label_smoothing: f32,
    /// Clip the gradients to this global L2 norm each step, as
    /// `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)` before `optimizer.step()`
    /// (computed on the GPU).
    pub clip_grad_norm: Option<f32>,
}

impl Default for TrainConfig {
    /// LeNet-5 on 1×28×28 images and 10 classes (Fashion-MNIST), batch 64, Adam 1e-3, seed 0,
    /// a constant learning rate, no clipping.
    fn default() -> Self {
        TrainConfig {
            model: Model::Lenet5,
            batch_size: 64,
            optimizer: Optimizer::adam(1e-3),
            seed: 0,
            schedule: LrSchedule::Constant,
            input: [1, 28, 28],
            n_classes: 10,
            label_smoothing: 0.0,
            feature_maps: false,
            clip_grad_norm: None,
        }
    }
}

/// Mean loss and accuracy over the images seen since the metrics were last taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Images counted.
    pub count: u64,
}

impl Metrics {
    fn from_sums([loss_sum, correct, count]: [f64; 3]) -> Self {
        let denom = count.max(1.0);
        Metrics {
            loss: loss_sum / denom,
            accuracy: correct / denom,
            count: count as u64,
        }
    }
}

/// (loss sum, correct, count) of the metrics tensor.
fn sums(m: &CpuTensor) -> [f64; 3] {
    [m.f32()[0], m.f32()[1], m.f32()[2]].map(f64::from)
}

/// A model baked for training and evaluation on one GPU.
pub struct Trainer {
    exe: Executable,
    graph: Graph,
    images: TensorId,
    labels: TensorId,
    metrics: TensorId,
    logits: TensorId,
    loss: TensorId,
    params: Vec<(String, TensorId)>,
    buffers: Vec<(String, TensorId)>,
    grads: Vec<TensorId>,
    train: ProgramId,
    eval: ProgramId,
    batch_size: usize,
    n_classes: usize,
    input: [usize; 3],
    image_numel: usize,
    eval_logits: TensorId,
    /// Each convolution layer's eval-mode output, by layer name.
    conv_outputs: Vec<(String, TensorId)>,
    batch_norms: Vec<String>,
    bn_count: Option<TensorId>,
}

impl Trainer {
    /// Builds the training graph for the configuration's images and classes and bakes it.
    /// Each op runs its first (best-guess) plan; see [`Trainer::new_tuned`] for the fastest.
    pub fn new(gpu: &GpuContext, config: &TrainConfig) -> Result<Self> {
        Self::build(gpu, config, false, VariantChoice::First)
    }

    /// Like [`Trainer::new`], with every op's plan chosen by timing the candidates on this
    /// adapter (cached on disk, so only the first run on a machine pays; see
    /// [`crate::exec::tune`]). What was tuned: [`Trainer::tuning_report`].
    pub fn new_tuned(gpu: &GpuContext, config: &TrainConfig) -> Result<Self> {
        Self::build(gpu, config, false, VariantChoice::Autotune)
    }

    /// [`Trainer::new_tuned`] within a time budget and with progress reports
    /// ([`TuneOptions`]).
    pub fn new_tuned_with(
        gpu: &GpuContext,
        config: &TrainConfig,
        options: TuneOptions,
    ) -> Result<Self> {
        Self::build_full(
            gpu,
            config,
            &config.model,
            false,
            VariantChoice::Autotune,
            options,
        )
    }

    /// What autotuning did while this trainer was built.
    pub fn tuning_report(&self) -> TuningReport {
        self.exe.tuning_report()
    }

    /// Like [`Trainer::new`], plus a `check` program that keeps the loss and every gradient
    /// readable after the step (see [`Trainer::check_step`]). Costs a second memory plan.
    pub fn new_checked(gpu: &GpuContext, config: &TrainConfig) -> Result<Self> {
        Self::build(gpu, config, true, VariantChoice::First)
    }

    /// A trainer for a network of the user's own ([`Architecture`]: a function of [`Net`]
    /// layers) instead of `config.model`; with `tuned`, plans chosen by the autotuner.
    pub fn custom(
        gpu: &GpuContext,
        config: &TrainConfig,
        arch: &dyn Architecture,
        tuned: bool,
    ) -> Result<Self> {
        let choice = if tuned {
            VariantChoice::Autotune
        } else {
            VariantChoice::First
        };
        Self::build_full(gpu, config, arch, false, choice, TuneOptions::default())
    }

    fn build(
        gpu: &GpuContext,
        config: &TrainConfig,
        with_check: bool,
        choice: VariantChoice,
    ) -> Result<Self> {
        Self::build_full(
            gpu,
            config,
            &config.model,
            with_check,
            choice,
            TuneOptions::default(),
        )
    }

    fn build_full(
        gpu: &GpuContext,
        config: &TrainConfig,
        arch: &dyn Architecture,
        with_check: bool,
        choice: VariantChoice,
        tune: TuneOptions,
    ) -> Result<Self> {
        let (graph, parts) = training_graph_of(config, arch)?;
        let mut specs = vec![
            ProgramSpec {
                name: "train".into(),
                outputs: vec![],
                effects: parts.train_effects.clone(),
            },
            // Its logits stay readable for `predict` (which counts nothing: its labels are
            // out of range, so the metrics skip them).
            ProgramSpec {
                name: "eval".into(),
                outputs: vec![parts.eval_logits],
                effects: vec![parts.eval_metrics_node],
            },
        ];
        let conv_outputs = crate::infer::conv_outputs(&graph, parts.eval_logits);
        if config.feature_maps {
            specs.push(ProgramSpec {
                name: "features".into(),
                outputs: conv_outputs.iter().map(|(_, t)| *t).collect(),
                effects: vec![],
            });
        }
        if with_check {
            let outputs = std::iter::once(parts.loss)
                .chain(parts.grads.iter().copied())
                .collect();
            specs.push(ProgramSpec {
                name: "check".into(),
                outputs,
                effects: parts.train_effects.clone(),
            });
        }
        let exe = if choice == VariantChoice::Autotune {
            Executable::build_tuned(gpu, &graph, &specs, tune)?
        } else {
            Executable::build_with(gpu, &graph, &specs, choice)?
        };
        Ok(Trainer {
            train: exe.program("train")?,
            eval: exe.program("eval")?,
            conv_outputs,
            eval_logits: parts.eval_logits,
            batch_norms: parts.batch_norms,
            bn_count: parts.bn_count,
            exe,
            images: parts.images,
            labels: parts.labels,
            metrics: parts.metrics,
            logits: parts.logits,
            loss: parts.loss,
            params: parts.params,
            buffers: parts.buffers,
            grads: parts.grads,
            batch_size: config.batch_size,
            n_classes: config.n_classes,
            input: config.input,
            image_numel: config.input.iter().product(),
            graph,
        })
    }

    /// One training step on a full batch: uploads it, runs forward, backward and the update in
    /// one submission, and reads nothing back.
    pub fn train_step(&self, images: &[f32], labels: &[u32]) -> Result<()> {
        self.check_batch(images, labels, false)?;
        self.exe.write(self.images, bytemuck::cast_slice(images))?;
        self.exe.write(self.labels, bytemuck::cast_slice(labels))?;
        self.exe.run(self.train)
    }

    /// Adds one batch (at most `batch_size` images; a short one is padded and the padding is
    /// not counted) to the metrics, without training.
    pub fn eval_step(&self, images: &[f32], labels: &[u32]) -> Result<()> {
        self.check_batch(images, labels, true)?;
        if labels.len() == self.batch_size {
            self.exe.write(self.images, bytemuck::cast_slice(images))?;
            self.exe.write(self.labels, bytemuck::cast_slice(labels))?;
        } else {
            let mut padded_images = images.to_vec();
            padded_images.resize(self.batch_size * self.image_numel, 0.0);
            let mut padded_labels = labels.to_vec();
            padded_labels.resize(self.batch_size, u32::MAX); // label >= n_classes: skipped
            self.exe
                .write(self.images, bytemuck::cast_slice(&padded_images))?;
            self.exe
                .write(self.labels, bytemuck::cast_slice(&padded_labels))?;
        }
        self.exe.run(self.eval)
    }

    /// Loss and accuracy over every image of `data`, the last partial batch included. Resets
    /// the metric sums before and after.
    pub fn evaluate(&self, data: &Dataset) -> Result<Metrics> {
        if data.input_shape() != self.input || data.n_classes > self.n_classes {
            return Err(Error::InvalidArgument(format!(
                "a dataset of {:?} images and {} classes, but this trainer takes {:?} and {}",
                data.input_shape(),
                data.n_classes,
                self.input,
                self.n_classes
            )));
        }
        self.take_metrics()?;
        for (chunk_idx, labels) in data.labels.chunks(self.batch_size).enumerate() {
            let images = data.images(chunk_idx * self.batch_size, labels.len());
            self.eval_step(&images, labels)?;
        }
        self.take_metrics()
    }

    /// Reads the metric sums accumulated since the last read (12 bytes), then zeroes them;
    /// waits for the GPU. A read started by [`Trainer::request_metrics`] and not yet collected
    /// is waited for and included.
    pub fn take_metrics(&self) -> Result<Metrics> {
        let earlier = self.exe.wait_small()?.map(|(_, m)| sums(&m));
        let now = sums(&self.exe.take_small(self.metrics)?);
        let total = match earlier {
            Some(e) => [e[0] + now[0], e[1] + now[1], e[2] + now[2]],
            None => now,
        };
        Ok(Metrics::from_sums(total))
    }

    /// Starts reading the metric sums accumulated since the last read without waiting for the
    /// GPU (the copy queues behind the steps already submitted); [`Trainer::poll_metrics`]
    /// collects them. Does nothing while a read is pending.
    pub fn request_metrics(&self) -> Result<()> {
        if self.exe.small_read_pending() {
            return Ok(());
        }
        self.exe.request_small(self.metrics)
    }

    /// The metrics of the pending [`Trainer::request_metrics`] once the GPU has got there;
    /// `None` before that (never blocks).
    pub fn poll_metrics(&self) -> Result<Option<Metrics>> {
        Ok(self
            .exe
            .poll_small()?
            .map(|(_, m)| Metrics::from_sums(sums(&m))))
    }

    /// Downloads every parameter, by PyTorch-style name.
    pub fn parameters(&self) -> Result<Vec<(String, CpuTensor)>> {
        self.params
            .iter()
            .map(|(name, t)| Ok((name.clone(), self.exe.read(self.train, *t)?)))
            .collect()
    }

    /// Downloads every buffer (batch norm's `running_mean`, `running_var`), by name.
    pub fn buffers(&self) -> Result<Vec<(String, CpuTensor)>> {
        self.buffers
            .iter()
            .map(|(name, t)| Ok((name.clone(), self.exe.read(self.train, *t)?)))
            .collect()
    }

    /// A training step that also returns its loss and every parameter's gradient, by name.
    /// Needs [`Trainer::new_checked`]; downloads everything, so it is for tests and debugging.
    pub fn check_step(
        &self,
        images: &[f32],
        labels: &[u32],
    ) -> Result<(f32, Vec<(String, CpuTensor)>)> {
        let check = self.exe.program("check").map_err(|_| {
            Error::InvalidArgument(
                "check_step needs a trainer built with Trainer::new_checked".into(),
            )
        })?;
        self.check_batch(images, labels, false)?;
        self.exe.write(self.images, bytemuck::cast_slice(images))?;
        self.exe.write(self.labels, bytemuck::cast_slice(labels))?;
        self.exe.run(check)?;
        let loss = self.exe.read(check, self.loss)?.item()?;
        let grads = self
            .params
            .iter()
            .zip(&self.grads)
            .map(|((name, _), &g)| Ok((name.clone(), self.exe.read(check, g)?)))
            .collect::<Result<_>>()?;
        Ok((loss, grads))
    }

    /// Writes the model as PyTorch's `state_dict` in a safetensors file: the parameters and
    /// buffers under PyTorch's names and layouts (`conv1.weight` OIHW, `fc1.weight` `[out, in]`,
    /// `bn1.running_mean`) and each batch norm's `num_batches_tracked` (an I64 scalar), so
    /// `model.load_state_dict(load_file(path), strict=True)` takes it. Crash-safe (written
    /// aside, synced, renamed): a failure never leaves a half-written file.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with_meta(path, &Default::default())
    }

    /// [`Trainer::save`] with string metadata in the file's header (PyTorch ignores it;
    /// `train-gpu` stores the input shape, normalisation and class names there for `predict`).
    pub fn save_with_meta(
        &self,
        path: &Path,
        meta: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let err = |message: String| Error::Checkpoint {
            path: path.into(),
            message,
        };
        let mut tensors = self.parameters()?;
        tensors.extend(self.buffers()?);
        let count = match self.bn_count {
            Some(t) => u64::from(self.exe.read(self.train, t)?.u32()[0]),
            None => 0,
        };
        let count_bytes = count.to_le_bytes();
        let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(name, t)| {
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    t.shape.dims.clone(),
                    t.bytes(),
                )
                .map(|v| (name.clone(), v))
                .map_err(|e| err(e.to_string()))
            })
            .collect::<Result<_>>()?;
        for bn in &self.batch_norms {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![], &count_bytes)
                    .map_err(|e| err(e.to_string()))?;
            views.push((format!("{bn}.num_batches_tracked"), view));
        }
        let meta = (!meta.is_empty()).then(|| meta.clone().into_iter().collect());
        let bytes = safetensors::serialize(views, meta).map_err(|e| err(e.to_string()))?;
        crate::checkpoint::write_atomic(path, &bytes)
    }

    /// Loads a model's weights saved as PyTorch's `state_dict` (safetensors; what
    /// [`Trainer::save`] writes, or `save_file(model.state_dict(), path)` for the same
    /// architecture): every parameter and buffer must be there with its shape, as F32, and
    /// nothing else but the batch norms' `num_batches_tracked` (optional). The error names
    /// every mismatch, and nothing is loaded unless all match. Optimizer state is untouched.
    pub fn load_weights(&self, path: &Path) -> Result<()> {
        let named: Vec<(String, TensorId)> =
            self.params.iter().chain(&self.buffers).cloned().collect();
        crate::infer::load_state_dict(
            &self.exe,
            &self.graph,
            &named,
            &self.batch_norms,
            self.bn_count,
            path,
        )
    }

    /// Every convolution layer's output (eval mode) for one image `[c·h·w]`, by layer name, in
    /// forward order: each `[channels, oh, ow]` (a fused pool's output where the layer pools).
    /// Needs [`TrainConfig::feature_maps`].
    pub fn feature_maps(&self, image: &[f32]) -> Result<Vec<(String, CpuTensor)>> {
        let program = self.exe.program("features").map_err(|_| {
            Error::InvalidArgument(
                "feature maps need a trainer built with TrainConfig::feature_maps".into(),
            )
        })?;
        crate::infer::read_feature_maps(
            &self.exe,
            program,
            &self.conv_outputs,
            (self.images, image, self.batch_size, self.input),
        )
    }

    /// Logits `[n, n_classes]` of up to `batch_size` images in evaluation mode (running
    /// statistics, no dropout): inference, nothing trained or counted.
    pub fn predict(&self, images: &[f32]) -> Result<CpuTensor> {
        let n = crate::infer::write_images(
            &self.exe,
            self.images,
            images,
            self.batch_size,
            self.input,
        )?;
        // Labels out of range: the eval program's metrics count none of these images.
        let labels = vec![u32::MAX; self.batch_size];
        self.exe.write(self.labels, bytemuck::cast_slice(&labels))?;
        self.exe.run(self.eval)?;
        let logits = self.exe.read(self.eval, self.eval_logits)?;
        let classes = self.n_classes;
        Ok(CpuTensor::from_f32(
            [n, classes],
            logits.f32()[..n * classes].to_vec(),
        ))
    }

    /// Everything a resumed run needs, by name and shape: the parameters, the buffers and all
    /// optimizer and step state (momenta, moments, step counts, the step factors, the dropout
    /// step), but not the metric sums (a run starts them at zero).
    pub fn state_shapes(&self) -> Vec<(String, Shape)> {
        self.saved_tensors()
            .map(|t| {
                (
                    self.graph.tensor(t).name.clone(),
                    self.graph.shape(t).clone(),
                )
            })
            .collect()
    }

    /// The tensors a checkpoint holds (see [`Trainer::state_shapes`]).
    fn saved_tensors(&self) -> impl Iterator<Item = TensorId> + '_ {
        self.graph
            .tensor_ids()
            .filter(|&t| match self.graph.tensor(t).kind {
                TensorKind::Param(_) => true,
                TensorKind::State(_) => t != self.metrics,
                _ => false,
            })
    }

    /// Reads the whole training state ([`Trainer::state_shapes`]) into a checkpoint (metadata
    /// empty: the caller adds the run's).
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut tensors = self
            .saved_tensors()
            .map(|t| {
                let name = self.graph.tensor(t).name.clone();
                Ok((name, self.exe.read(self.train, t)?))
            })
            .collect::<Result<Vec<_>>>()?;
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Checkpoint {
            tensors,
            meta: Default::default(),
        })
    }

    /// Loads a checkpoint of this model's training state (read from `path`): every tensor of
    /// [`Trainer::state_shapes`] must be there with its shape and dtype, and nothing else; the
    /// error names each mismatch, and nothing is written unless all match.
    pub fn restore(&self, ckpt: &Checkpoint, path: &Path) -> Result<()> {
        ckpt.check_against(&self.state_shapes(), path)?;
        for t in self.saved_tensors() {
            if let Some(value) = ckpt.tensor(&self.graph.tensor(t).name) {
                self.exe.write(t, value.bytes())?;
            }
        }
        Ok(())
    }

    /// How [`Trainer::profile_step`] times dispatches on this adapter.
    pub fn profile_method(&self) -> crate::exec::gpu::ProfileMethod {
        self.exe.profile_method()
    }

    /// Runs one training step on `images`/`labels` dispatch by dispatch and returns each
    /// dispatch's label and seconds (see [`Executable::profile`]). The step does train.
    pub fn profile_step(&self, images: &[f32], labels: &[u32]) -> Result<Vec<(String, f64)>> {
        self.profile_step_with(images, labels, self.exe.profile_method())
    }

    /// [`Trainer::profile_step`] with a chosen [`ProfileMethod`](crate::exec::gpu::ProfileMethod).
    pub fn profile_step_with(
        &self,
        images: &[f32],
        labels: &[u32],
        method: crate::exec::gpu::ProfileMethod,
    ) -> Result<Vec<(String, f64)>> {
        self.check_batch(images, labels, false)?;
        self.exe.write(self.images, bytemuck::cast_slice(images))?;
        self.exe.write(self.labels, bytemuck::cast_slice(labels))?;
        self.exe.profile_with(self.train, method)
    }

    /// Images per step.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The training graph (forward, backward and updates).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The baked executable.
    pub fn executable(&self) -> &Executable {
        &self.exe
    }

    /// Dispatches per training step.
    pub fn n_dispatches(&self) -> usize {
        self.exe.n_dispatches(self.train)
    }

    /// The logits tensor (for inspection).
    pub fn logits(&self) -> TensorId {
        self.logits
    }

    fn check_batch(&self, images: &[f32], labels: &[u32], allow_short: bool) -> Result<()> {
        let n = labels.len();
        if n == 0 || n > self.batch_size || (!allow_short && n != self.batch_size) {
            let want = if allow_short {
                format!("1..={}", self.batch_size)
            } else {
                self.batch_size.to_string()
            };
            return Err(Error::InvalidArgument(format!(
                "batch of {n} labels; this trainer takes {want}"
            )));
        }
        if images.len() != n * self.image_numel {
            let [c, h, w] = self.input;
            return Err(Error::InvalidArgument(format!(
                "{} pixels for {n} labels; expected {n}x{c}x{h}x{w} = {}",
                images.len(),
                n * self.image_numel
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= self.n_classes) {
            return Err(Error::InvalidArgument(format!(
                "label {bad} out of range 0..{}",
                self.n_classes
            )));
        }
        if let Some(i) = images.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "pixel {i} of the batch is {}",
                images[i]
            )));
        }
        Ok(())
    }
}

/// Tensors and nodes of a training graph that its users need.
pub struct TrainingParts {
    /// Input images `[batch, c, h, w]`.
    pub images: TensorId,
    /// Input labels `[batch]` (u32).
    pub labels: TensorId,
    /// Logits `[batch, n_classes]`.
    pub logits: TensorId,
    /// Mean loss, a 0-d scalar (shape `[]`).
    pub loss: TensorId,
    /// Metric sums `[3]`.
    pub metrics: TensorId,
    /// The metrics node of the train program.
    pub metrics_node: NodeId,
    /// Logits `[batch, n_classes]` of the eval forward (`logits` itself unless the model has
    /// mode-dependent layers).
    pub eval_logits: TensorId,
    /// The metrics node of the eval program (its only effect).
    pub eval_metrics_node: NodeId,
    /// Parameters by name.
    pub params: Vec<(String, TensorId)>,
    /// Buffers (batch norm's running statistics) by name.
    pub buffers: Vec<(String, TensorId)>,
    /// Gradient of each parameter.
    pub grads: Vec<TensorId>,
    /// Nodes the train program runs for their effect: metrics, step count, updates.
    pub train_effects: Vec<NodeId>,
    /// Names of the batch-norm layers.
    pub batch_norms: Vec<String>,
    /// Their shared `num_batches_tracked` counter (`[1]` u32 state), when there are any.
    pub bn_count: Option<TensorId>,
}

/// Builds forward, loss, metrics, backward and optimizer updates as one graph.
pub fn training_graph(config: &TrainConfig) -> Result<(Graph, TrainingParts)> {
    training_graph_of(config, &config.model)
}

/// [`training_graph`] for any [`Architecture`] (`config.model` is not used).
pub fn training_graph_of(
    config: &TrainConfig,
    arch: &dyn Architecture,
) -> Result<(Graph, TrainingParts)> {
    check_config(config)?;
    let mut g = Graph::new();
    let (forward, built) = model_forward(&mut g, config, arch)?;
    let NetParts {
        params,
        buffers,
        effects: layer_effects,
        rng_step,
        batch_norms,
        bn_count,
        ..
    } = built;
    let scored = loss_and_metrics(&mut g, config, forward)?;

    let ones = g.constant("grad_loss", CpuTensor::scalar(1.0));
    let param_ids: Vec<TensorId> = params.iter().map(|(_, t)| *t).collect();
    let grads = append_backward(&mut g, &[(scored.loss, ones)], &param_ids)?;

    let mut train_effects = vec![scored.metrics_node];
    train_effects.extend(layer_effects);
    let step = step_state(&mut g, config, &grads, &mut train_effects)?;
    for ((name, param), &grad) in params.iter().zip(&grads) {
        g.set_scope(format!("{name}.update"));
        let update = parameter_update(&mut g, config.optimizer, name, *param, grad, step)?;
        train_effects.push(update);
    }
    layer_counters(&mut g, bn_count, rng_step, &mut train_effects)?;
    g.set_scope("");
    let parts = TrainingParts {
        images: forward.images,
        labels: forward.labels,
        logits: forward.logits,
        eval_logits: forward.eval_logits,
        loss: scored.loss,
        metrics: scored.metrics,
        metrics_node: scored.metrics_node,
        eval_metrics_node: scored.eval_metrics_node,
        params,
        buffers,
        grads,
        train_effects,
        batch_norms,
        bn_count,
    };
    Ok((g, parts))
}

/// Refuses a configuration no classifier can be built for.
fn check_config(config: &TrainConfig) -> Result<()> {
    if config.batch_size == 0 {
        return Err(Error::InvalidArgument(
            "batch size must be at least 1".into(),
        ));
    }
    if config.n_classes < 2 || config.input.contains(&0) {
        return Err(Error::InvalidArgument(format!(
            "a classifier needs at least 2 classes and a non-empty input, got {} classes of {:?}",
            config.n_classes, config.input
        )));
    }
    Ok(())
}

/// The graph's inputs and the model's logits on them.
#[derive(Clone, Copy)]
struct Forward {
    images: TensorId,
    labels: TensorId,
    /// The training forward's logits.
    logits: TensorId,
    /// The eval forward's (`logits` unless the model has mode-dependent layers).
    eval_logits: TensorId,
}

/// The inputs and the model on them: the training forward, and for a model with layers that
/// compute differently in evaluation (batch norm) a second forward for the eval program,
/// sharing every parameter and buffer. Also what the training build's layers made.
fn model_forward(
    g: &mut Graph,
    config: &TrainConfig,
    arch: &dyn Architecture,
) -> Result<(Forward, NetParts)> {
    let [c, h, w] = config.input;
    let images = g.input("images", Shape::f32([config.batch_size, c, h, w]));
    let labels = g.input("labels", Shape::u32([config.batch_size]));
    let mut net = Net::new(g, config.seed);
    let logits = arch.build(&mut net, images, config.n_classes)?;
    let built = net.into_parts();
    let eval_logits = if built.mode_dependent {
        let mut eval_net = Net::for_eval(g, &built);
        arch.build(&mut eval_net, images, config.n_classes)?
    } else {
        logits
    };
    let forward = Forward {
        images,
        labels,
        logits,
        eval_logits,
    };
    Ok((forward, built))
}

/// The loss the backward pass starts from and the metrics both programs add to.
struct Scored {
    loss: TensorId,
    metrics: TensorId,
    metrics_node: NodeId,
    eval_metrics_node: NodeId,
}

/// The training loss and the metric sums (`[3]` state) of each forward: one node when both
/// programs share the forward.
fn loss_and_metrics(g: &mut Graph, config: &TrainConfig, forward: Forward) -> Result<Scored> {
    let Forward {
        labels,
        logits,
        eval_logits,
        ..
    } = forward;
    g.set_scope("loss");
    let loss = g.cross_entropy(logits, labels, None, config.label_smoothing)?;
    let metrics = g.state("metrics", CpuTensor::zeros(&Shape::f32([3])));
    let metrics_node = g.classification_metrics(logits, labels, metrics)?;
    let eval_metrics_node = if eval_logits == logits {
        metrics_node
    } else {
        g.classification_metrics(eval_logits, labels, metrics)?
    };
    Ok(Scored {
        loss,
        metrics,
        metrics_node,
        eval_metrics_node,
    })
}

/// The optimizer's per-step state every update reads.
#[derive(Clone, Copy)]
struct StepState {
    /// `optimizer.step`, `[1]` u32: Adam's `t`, dampened SGD's first step.
    count: TensorId,
    /// `optimizer.step_factors`, `[2]` f32: the schedule's rate factor, the clipping's
    /// gradient scale.
    factors: TensorId,
}

/// The step count and the step factors, all on the GPU: a step increments the one and sets
/// the others before any update reads them (the nodes go into `effects`). Each runs only where
/// something reads it (a constant schedule leaves the rate factor at 1, no clipping the scale).
fn step_state(
    g: &mut Graph,
    config: &TrainConfig,
    grads: &[TensorId],
    effects: &mut Vec<NodeId>,
) -> Result<StepState> {
    g.set_scope("optimizer");
    let count = g.state("optimizer.step", CpuTensor::from_u32([1], vec![0]));
    let factors = g.state(
        "optimizer.step_factors",
        CpuTensor::from_f32([2], vec![1.0, 1.0]),
    );
    let scheduled = config.schedule != LrSchedule::Constant;
    if config.optimizer.reads_step_count() || scheduled {
        effects.push(g.optimizer_step_count(count)?);
    }
    if scheduled {
        effects.push(g.lr_schedule(count, factors, config.schedule)?);
    }
    if let Some(max_norm) = config.clip_grad_norm {
        // The global norm over every gradient, then the scale that brings it to `max_norm`.
        g.set_scope("clip_grad_norm");
        let acc = g.state("optimizer.grad_sq_norm", CpuTensor::zeros(&Shape::f32([1])));
        for (i, &grad) in grads.iter().enumerate() {
            effects.push(g.grad_sq_norm(grad, acc, i == 0)?);
        }
        effects.push(g.clip_grad_norm(acc, factors, max_norm)?);
    }
    Ok(StepState { count, factors })
}

/// The update of the parameter `name` by its gradient, with the optimizer's state for it
/// (named `{name}.momentum`, `{name}.exp_avg`, ..., zero at the start).
fn parameter_update(
    g: &mut Graph,
    optimizer: Optimizer,
    name: &str,
    param: TensorId,
    grad: TensorId,
    step: StepState,
) -> Result<NodeId> {
    let zeros = CpuTensor::zeros(g.shape(param));
    let StepState { count, factors } = step;
    match optimizer {
        Optimizer::Sgd {
            lr,
            momentum,
            weight_decay,
            nesterov,
            dampening,
        } => {
            let velocity = g.state(&format!("{name}.momentum"), zeros);
            let update = SgdUpdate {
                lr,
                momentum,
                weight_decay,
                nesterov,
                dampening,
            };
            g.sgd_update(param, grad, velocity, count, factors, update)
        }
        Optimizer::Adam {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        }
        | Optimizer::AdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let m = g.state(&format!("{name}.exp_avg"), zeros.clone());
            let v = g.state(&format!("{name}.exp_avg_sq"), zeros);
            let update = AdamUpdate {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: matches!(optimizer, Optimizer::AdamW { .. }),
            };
            g.adam_update(param, grad, m, v, count, factors, update)
        }
        Optimizer::RmsProp {
            lr,
            alpha,
            eps,
            weight_decay,
            momentum,
        } => {
            let square_avg = g.state(&format!("{name}.square_avg"), zeros.clone());
            let buffer = g.state(&format!("{name}.momentum_buffer"), zeros);
            let update = RmspropUpdate {
                lr,
                alpha,
                eps,
                weight_decay,
                momentum,
            };
            g.rmsprop_update(param, grad, square_avg, buffer, factors, update)
        }
    }
}

/// The layers' step counters (into `effects`): batch norm's `num_batches_tracked`, and the
/// dropout step after the backward pass, which regenerates the masks from it.
fn layer_counters(
    g: &mut Graph,
    bn_count: Option<TensorId>,
    rng_step: Option<TensorId>,
    effects: &mut Vec<NodeId>,
) -> Result<()> {
    if let Some(count) = bn_count {
        g.set_scope("batch_norm");
        effects.push(g.optimizer_step_count(count)?);
    }
    if let Some(step) = rng_step {
        g.set_scope("dropout");
        effects.push(g.optimizer_step_count(step)?);
    }
    Ok(())
}
