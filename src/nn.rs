//! Layers with PyTorch's names and default initialisation, and the built-in models: those of
//! the benchmark workloads (`lenet5` = W1, `convnet-s` = W2) and `resnet20`.
//!
//! A model is built once per mode. Layers that behave differently in evaluation (batch norm)
//! make the model *mode-dependent*: the trainer then builds its forward a second time with
//! [`Net::for_eval`], which reuses the first build's parameters and buffers by name, so the
//! `train` and `eval` programs of one executable share every weight and running statistic.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::ir::CpuTensor;
use crate::ir::{Graph, NodeId, TensorId};
use crate::ops::activation::Activation;
use crate::ops::conv::conv2d::Conv2dGeometry;
use crate::ops::norm::batch_norm2d::BatchNormConfig;
use crate::rng::Rng;
use crate::shape::Shape;
use crate::{Error, Result};

/// Which forward a model is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running statistics updated (as PyTorch's `model.train()`).
    Train,
    /// Running statistics, nothing updated (`model.eval()`).
    Eval,
}

/// Builds layers into a graph and remembers their parameters by name (`conv1.weight`, ...).
pub struct Net<'g> {
    g: &'g mut Graph,
    rng: Rng,
    mode: Mode,
    parts: NetParts,
    /// Parameters and buffers of an earlier build, reused by name (the eval build).
    existing: HashMap<String, TensorId>,
}

/// What a model's build made: its parameters and buffers by name, and the nodes a train
/// program must run for their effect.
#[derive(Clone, Debug, Default)]
pub struct NetParts {
    /// Trainable parameters, in creation order.
    pub params: Vec<(String, TensorId)>,
    /// State that is not trained but saved with the model (PyTorch's buffers: batch norm's
    /// `running_mean` and `running_var`).
    pub buffers: Vec<(String, TensorId)>,
    /// In-place updates the train program runs (batch norm's running statistics).
    pub effects: Vec<NodeId>,
    /// True when some layer computes differently in evaluation.
    pub mode_dependent: bool,
    /// The `[1]` u32 step counter dropout layers draw their masks from, when the model has
    /// any; the train program must increment it once per step, after the backward pass.
    pub rng_step: Option<TensorId>,
}

impl<'g> Net<'g> {
    /// Layers go into `g` in training mode; `seed` fixes the initial weights.
    pub fn new(g: &'g mut Graph, seed: u64) -> Self {
        Net {
            g,
            rng: Rng::new(seed),
            mode: Mode::Train,
            parts: NetParts::default(),
            existing: HashMap::new(),
        }
    }

    /// Layers go into `g` in evaluation mode, reusing the parameters and buffers of `built`
    /// (the same model built by [`Net::new`]) by name.
    pub fn for_eval(g: &'g mut Graph, built: &NetParts) -> Self {
        let existing = built
            .params
            .iter()
            .chain(&built.buffers)
            .map(|(name, t)| (name.clone(), *t))
            .collect();
        Net {
            g,
            rng: Rng::new(0),
            mode: Mode::Eval,
            parts: NetParts::default(),
            existing,
        }
    }

    /// The mode the layers are built for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The graph, for ops that have no parameters.
    pub fn graph(&mut self) -> &mut Graph {
        self.g
    }

    /// The parameters created so far, in creation order.
    pub fn into_params(self) -> Vec<(String, TensorId)> {
        self.parts.params
    }

    /// Everything the build made.
    pub fn into_parts(self) -> NetParts {
        self.parts
    }

    /// A parameter named `name` starting at `init`, or the earlier build's.
    fn param(&mut self, name: String, init: impl FnOnce(&mut Rng) -> CpuTensor) -> TensorId {
        let t = match self.existing.get(&name) {
            Some(&t) => t,
            None => {
                let value = init(&mut self.rng);
                self.g.param(&name, value)
            }
        };
        self.parts.params.push((name, t));
        t
    }

    /// A buffer (state saved with the model, not trained) named `name`, or the earlier build's.
    fn buffer(&mut self, name: String, init: CpuTensor) -> TensorId {
        let t = match self.existing.get(&name) {
            Some(&t) => t,
            None => self.g.state(&name, init),
        };
        self.parts.buffers.push((name, t));
        t
    }

    /// PyTorch's default init for conv and linear layers (`kaiming_uniform_(a=√5)` for the
    /// weight, `U(±1/√fan_in)` for the bias): both come to `U(±1/√fan_in)`.
    fn uniform_param(&mut self, name: String, dims: Vec<usize>, fan_in: usize) -> TensorId {
        let bound = 1.0 / (fan_in as f32).sqrt();
        self.param(name, |rng| {
            let numel = dims.iter().product();
            let data = (0..numel).map(|_| rng.range(-bound, bound)).collect();
            CpuTensor::from_f32(dims, data)
        })
    }

    /// `BatchNorm2d(c)` over `x: [n, c, h, w]` (eps 1e-5, momentum 0.1): parameters
    /// `{name}.weight` (ones) and `{name}.bias` (zeros), buffers `{name}.running_mean` (zeros)
    /// and `{name}.running_var` (ones). In training the batch's statistics normalise and the
    /// running ones are updated on the GPU; in evaluation the running ones normalise.
    pub fn batch_norm2d(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.g.set_scope(name);
        let [_, c, _, _] = self
            .g
            .shape(x)
            .dims4("batch_norm2d", "input")
            .map_err(|e| with_layer(e, name))?;
        let weight = self.param(format!("{name}.weight"), |_| {
            CpuTensor::from_f32([c], vec![1.0; c])
        });
        let bias = self.param(format!("{name}.bias"), |_| {
            CpuTensor::zeros(&Shape::f32([c]))
        });
        let mean = self.buffer(
            format!("{name}.running_mean"),
            CpuTensor::zeros(&Shape::f32([c])),
        );
        let var = self.buffer(
            format!("{name}.running_var"),
            CpuTensor::from_f32([c], vec![1.0; c]),
        );
        self.parts.mode_dependent = true;
        let config = BatchNormConfig::default();
        match self.mode {
            Mode::Train => {
                let (y, update) = self.g.batch_norm2d(x, weight, bias, mean, var, config)?;
                self.parts.effects.push(update);
                Ok(y)
            }
            Mode::Eval => self
                .g
                .batch_norm2d_eval(x, weight, bias, mean, var, config.eps),
        }
    }

    /// `Dropout(p)`: in training, zeroes each element with probability `p` and scales the rest
    /// by `1 / (1 − p)`, the mask drawn on the GPU per step ([`NetParts::rng_step`]); in
    /// evaluation, the identity.
    pub fn dropout(&mut self, name: &str, x: TensorId, p: f32) -> Result<TensorId> {
        self.g.set_scope(name);
        self.parts.mode_dependent = true;
        if self.mode == Mode::Eval {
            return Ok(x);
        }
        let step = match self.parts.rng_step {
            Some(step) => step,
            None => {
                let step = self
                    .g
                    .state("dropout.step", CpuTensor::from_u32([1], vec![0]));
                self.parts.rng_step = Some(step);
                step
            }
        };
        let seed = self.rng.next_u64() as u32;
        self.g.dropout(x, p, seed, step)
    }

    /// `Conv2d(c_in, c_out, k, stride, padding, bias=False)`: parameter `{name}.weight` only
    /// (as torchvision's ResNets, whose convolutions feed a batch norm).
    pub fn conv2d_no_bias(
        &mut self,
        name: &str,
        x: TensorId,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<TensorId> {
        self.g.set_scope(name);
        let [_, c_in, _, _] = self
            .g
            .shape(x)
            .dims4("conv2d", "input")
            .map_err(|e| with_layer(e, name))?;
        let fan_in = c_in * k * k;
        let w = self.uniform_param(format!("{name}.weight"), vec![c_out, c_in, k, k], fan_in);
        let zero_bias = self.g.constant(
            &format!("{name}.no_bias"),
            CpuTensor::zeros(&Shape::f32([c_out])),
        );
        let geometry = Conv2dGeometry {
            stride,
            pad,
            dilation: 1,
        };
        self.g.conv2d(x, w, zero_bias, geometry)
    }

    /// `torch.cat(xs, dim=1)`: the channels of `xs` in order (Inception's branches).
    pub fn cat_channels(&mut self, name: &str, xs: &[TensorId]) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.cat(xs, 1)
    }

    /// `a + b` (a residual connection), same shapes.
    pub fn add(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.add(a, b)
    }

    /// `AdaptiveAvgPool2d((oh, ow))` over `x: [n, c, h, w]`: any input size to `[n, c, oh, ow]`.
    pub fn adaptive_avg_pool2d(
        &mut self,
        name: &str,
        x: TensorId,
        out: [usize; 2],
    ) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.adaptive_avg_pool2d(x, out)
    }

    /// `AdaptiveAvgPool2d(1)`: global average pooling, `[n, c, h, w]` → `[n, c, 1, 1]`.
    pub fn global_avg_pool2d(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.adaptive_avg_pool2d(name, x, [1, 1])
    }

    /// `Conv2d(c_in, c_out, k, stride, padding)` with bias; `x: [n, c_in, h, w]`. Parameters
    /// `{name}.weight: [c_out, c_in, k, k]` (OIHW) and `{name}.bias: [c_out]`.
    pub fn conv2d(
        &mut self,
        name: &str,
        x: TensorId,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<TensorId> {
        self.conv2d_with(name, x, [c_out, k, stride, pad], false)
    }

    /// `Conv2d` followed by `ReLU`, fused into one kernel (the ReLU runs in the convolution's
    /// epilogue; its backward reads the output): the same model as `conv2d` then `relu`, with
    /// one pass over the activation less each way.
    pub fn conv2d_relu(
        &mut self,
        name: &str,
        x: TensorId,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<TensorId> {
        self.conv2d_with(name, x, [c_out, k, stride, pad], true)
    }

    fn conv2d_with(
        &mut self,
        name: &str,
        x: TensorId,
        [c_out, k, stride, pad]: [usize; 4],
        relu: bool,
    ) -> Result<TensorId> {
        self.g.set_scope(name);
        let shape = self.g.shape(x).clone();
        let [_, c_in, _, _] = shape
            .dims4("conv2d", "input")
            .map_err(|e| with_layer(e, name))?;
        let fan_in = c_in * k * k;
        let w = self.uniform_param(format!("{name}.weight"), vec![c_out, c_in, k, k], fan_in);
        let b = self.uniform_param(format!("{name}.bias"), vec![c_out], fan_in);
        let geometry = Conv2dGeometry {
            stride,
            pad,
            dilation: 1,
        };
        if relu {
            self.g.conv2d_relu(x, w, b, geometry)
        } else {
            self.g.conv2d(x, w, b, geometry)
        }
    }

    /// `Linear(in, out)`: `y = x·Wᵀ + b` for `x: [n, in]`. Parameters `{name}.weight: [out, in]`
    /// and `{name}.bias: [out]`.
    pub fn linear(&mut self, name: &str, x: TensorId, out: usize) -> Result<TensorId> {
        self.linear_with(name, x, out, false)
    }

    /// `Linear` followed by `ReLU`, fused into one kernel (bias and ReLU in the GEMM's
    /// epilogue; the backward folds the ReLU's mask into its packs): the same model as
    /// `linear` then `relu`.
    pub fn linear_relu(&mut self, name: &str, x: TensorId, out: usize) -> Result<TensorId> {
        self.linear_with(name, x, out, true)
    }

    fn linear_with(&mut self, name: &str, x: TensorId, out: usize, relu: bool) -> Result<TensorId> {
        self.g.set_scope(name);
        let shape = self.g.shape(x).clone();
        let [_, fan_in] = shape
            .dims2("linear", "input")
            .map_err(|e| with_layer(e, name))?;
        let w = self.uniform_param(format!("{name}.weight"), vec![out, fan_in], fan_in);
        let b = self.uniform_param(format!("{name}.bias"), vec![out], fan_in);
        self.g.linear(x, w, b, relu)
    }

    /// `ReLU` (scoped as `name` for errors).
    pub fn relu(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.activation(name, x, Activation::Relu)
    }

    /// Any elementwise activation (`LeakyReLU(0.01)` is [`Activation::LEAKY_RELU`], `ELU()`
    /// [`Activation::ELU`], `GELU()` [`Activation::Gelu`], `SiLU()` [`Activation::Silu`], ...).
    pub fn activation(&mut self, name: &str, x: TensorId, act: Activation) -> Result<TensorId> {
        self.g.set_scope(name);
        Ok(self.g.push(act, &[x])?[0])
    }

    /// `MaxPool2d(k, stride)`.
    pub fn max_pool2d(
        &mut self,
        name: &str,
        x: TensorId,
        k: usize,
        stride: usize,
    ) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.max_pool2d(x, k, stride, 0)
    }

    /// `Flatten()`: `[n, ...]` → `[n, rest]`, no copy.
    pub fn flatten(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.flatten(x)
    }
}

fn with_layer(e: Error, layer: &str) -> Error {
    match e {
        Error::Shape { op, message, .. } => Error::Shape {
            layer: layer.to_string(),
            op,
            message,
        },
        other => other,
    }
}

/// The built-in models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// W1: LeNet-5 (conv 5×5 6, pool, conv 5×5 16, pool, 120, 84, 10), ReLU, max pooling.
    Lenet5,
    /// W2: a VGG-style net (2×conv3×3 32, pool, 2×conv3×3 64, pool, 256, 10).
    ConvnetS,
    /// ResNet-20 (He et al. 2016, §4.2): a 3×3 convolution of 16 channels, then three stages
    /// of three basic blocks (16, 32, 64 channels; the second and third halve the size),
    /// global average pooling and a linear layer; every convolution without bias and
    /// followed by batch norm. Shortcuts that change shape are 1×1 convolutions with batch
    /// norm (option B), named as torchvision's ResNets (`layer2.0.downsample.0`).
    Resnet20,
}

impl Model {
    /// Every model, for `--help` and tests.
    pub const ALL: [Model; 3] = [Model::Lenet5, Model::ConvnetS, Model::Resnet20];

    /// Appends the model to `net` for `x: [n, 1, 28, 28]`; returns the logits `[n, 10]`.
    pub fn build(self, net: &mut Net<'_>, x: TensorId) -> Result<TensorId> {
        match self {
            Model::Lenet5 => {
                let x = net.conv2d_relu("conv1", x, 6, 5, 1, 2)?;
                let x = net.max_pool2d("pool1", x, 2, 2)?;
                let x = net.conv2d_relu("conv2", x, 16, 5, 1, 0)?;
                let x = net.max_pool2d("pool2", x, 2, 2)?;
                let x = net.flatten("flatten", x)?;
                let x = net.linear_relu("fc1", x, 120)?;
                let x = net.linear_relu("fc2", x, 84)?;
                net.linear("fc3", x, 10)
            }
            Model::ConvnetS => {
                let mut x = x;
                for (i, c_out) in [(1, 32), (2, 32), (3, 64), (4, 64)] {
                    x = net.conv2d_relu(&format!("conv{i}"), x, c_out, 3, 1, 1)?;
                    if i % 2 == 0 {
                        x = net.max_pool2d(&format!("pool{}", i / 2), x, 2, 2)?;
                    }
                }
                let x = net.flatten("flatten", x)?;
                let x = net.linear_relu("fc1", x, 256)?;
                net.linear("fc2", x, 10)
            }
            Model::Resnet20 => {
                let x = net.conv2d_no_bias("conv1", x, 16, 3, 1, 1)?;
                let x = net.batch_norm2d("bn1", x)?;
                let mut x = net.relu("relu", x)?;
                for (stage, c_out) in [(1, 16), (2, 32), (3, 64)] {
                    for block in 0..3 {
                        let stride = if stage > 1 && block == 0 { 2 } else { 1 };
                        x = basic_block(net, &format!("layer{stage}.{block}"), x, c_out, stride)?;
                    }
                }
                let x = net.global_avg_pool2d("avgpool", x)?;
                let x = net.flatten("flatten", x)?;
                net.linear("fc", x, 10)
            }
        }
    }

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Model::Lenet5 => "lenet5",
            Model::ConvnetS => "convnet-s",
            Model::Resnet20 => "resnet20",
        }
    }
}

/// ResNet's basic block: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, both
/// convolutions 3×3, the first with `stride`; the shortcut is `x`, or a 1×1 convolution with
/// batch norm where the shape changes.
fn basic_block(
    net: &mut Net<'_>,
    name: &str,
    x: TensorId,
    c_out: usize,
    stride: usize,
) -> Result<TensorId> {
    let c_in = net.graph().shape(x).dims[1];
    let y = net.conv2d_no_bias(&format!("{name}.conv1"), x, c_out, 3, stride, 1)?;
    let y = net.batch_norm2d(&format!("{name}.bn1"), y)?;
    let y = net.relu(&format!("{name}.relu1"), y)?;
    let y = net.conv2d_no_bias(&format!("{name}.conv2"), y, c_out, 3, 1, 1)?;
    let y = net.batch_norm2d(&format!("{name}.bn2"), y)?;
    let shortcut = if stride != 1 || c_in != c_out {
        let s = net.conv2d_no_bias(&format!("{name}.downsample.0"), x, c_out, 1, stride, 0)?;
        net.batch_norm2d(&format!("{name}.downsample.1"), s)?
    } else {
        x
    };
    let y = net.add(&format!("{name}.add"), y, shortcut)?;
    net.relu(&format!("{name}.relu2"), y)
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Model {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Model::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown model {s:?}; choose one of: {}",
                    Model::ALL.map(Model::name).join(", ")
                ))
            })
    }
}
