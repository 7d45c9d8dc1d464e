//! Layers with PyTorch's names and default initialisation; the built-in models that use them
//! are in [`crate::models`].
//!
//! A model is built once per mode. Layers that behave differently in evaluation (batch norm)
//! make the model *mode-dependent*: the trainer then builds its forward a second time with
//! [`Net::for_eval`], which reuses the first build's parameters and buffers by name, so the
//! `train` and `eval` programs of one executable share every weight and running statistic.

use std::collections::HashMap;

use crate::ir::CpuTensor;
use crate::ir::{Conv2dSpec, Pair, Pool2d};
use crate::ir::{Graph, NodeId, TensorId};
use crate::ops::activation::Activation;
use crate::ops::norm::batch_norm2d::BatchNormConfig;
use crate::ops::pool::avg_pool2d::AvgPool2d;
use crate::rng::Rng;
use crate::shape::Shape;
use crate::{Error, Result};

/// A network: appends its layers to a [`Net`] for the input `x: [n, c, h, w]` and returns the
/// logits `[n, n_classes]`. The built-in [`crate::models::Model`]s are architectures, and so is any
/// `Fn(&mut Net, TensorId, usize) -> Result<TensorId>`: a user's own CNN is a function written
/// with [`Net`]'s layers (blocks are functions it calls again), trained by
/// [`crate::train::Trainer::custom`]. It may be called twice (the train and eval builds of a
/// model with batch norm or dropout), and must build the same layers under the same names.
pub trait Architecture {
    /// Builds the network into `net`.
    fn build(&self, net: &mut Net<'_>, x: TensorId, n_classes: usize) -> Result<TensorId>;
}

impl<F> Architecture for F
where
    F: Fn(&mut Net<'_>, TensorId, usize) -> Result<TensorId>,
{
    fn build(&self, net: &mut Net<'_>, x: TensorId, n_classes: usize) -> Result<TensorId> {
        self(net, x, n_classes)
    }
}

/// How new convolution and linear layers start (batch norm always starts at weight 1, bias 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Init {
    /// PyTorch's layer defaults: weight and bias `U(±1/√fan_in)`.
    #[default]
    PytorchDefault,
    /// torchvision's VGG: convolutions `kaiming_normal_(mode='fan_out', nonlinearity='relu')`,
    /// linear layers `N(0, 0.01)`, biases 0.
    Vgg,
    /// torchvision's ResNet: convolutions as VGG's; linear layers keep PyTorch's defaults.
    Resnet,
}

/// Which forward a model is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running statistics updated (as PyTorch's `model.train()`).
    Train,
    /// Running statistics, nothing updated (`model.eval()`).
    Eval,
}

/// The options of a convolution layer after its channel counts, as PyTorch's `Conv2d`
/// arguments: `Conv2dOptions::new(3).stride(2).padding(1)`, `Conv2dOptions::new((1, 7))`,
/// `Conv2dOptions::new(3).padding(1).groups(c)` (depthwise), `.bias(false)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Kernel `[h, w]`.
    pub kernel: [usize; 2],
    /// Stride, padding, dilation, groups.
    pub spec: Conv2dSpec,
    /// A learned bias (PyTorch's default: true).
    pub bias: bool,
}

/// A kernel size alone (`3`, `(1, 7)`) is the convolution with PyTorch's defaults.
impl<P: Pair> From<P> for Conv2dOptions {
    fn from(kernel: P) -> Self {
        Conv2dOptions::new(kernel)
    }
}

impl Conv2dOptions {
    /// A `kernel` (one number or `(h, w)`) with stride 1, no padding, dilation 1, one group
    /// and a bias.
    pub fn new(kernel: impl Pair) -> Self {
        Conv2dOptions {
            kernel: kernel.pair(),
            spec: Conv2dSpec::default(),
            bias: true,
        }
    }

    /// Stride (one number or `(h, w)`).
    pub fn stride(mut self, s: impl Pair) -> Self {
        self.spec = self.spec.stride(s);
        self
    }

    /// Zero padding on both sides of each axis (one number or `(h, w)`).
    pub fn padding(mut self, p: impl Pair) -> Self {
        self.spec = self.spec.padding(p);
        self
    }

    /// Dilation (one number or `(h, w)`).
    pub fn dilation(mut self, d: impl Pair) -> Self {
        self.spec = self.spec.dilation(d);
        self
    }

    /// Channel groups (`groups == c_in` is depthwise).
    pub fn groups(mut self, groups: usize) -> Self {
        self.spec = self.spec.groups(groups);
        self
    }

    /// With or without a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// Builds layers into a graph and remembers their parameters by name (`conv1.weight`, ...).
pub struct Net<'g> {
    g: &'g mut Graph,
    rng: Rng,
    mode: Mode,
    init: Init,
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
    /// Names of the batch-norm layers (their PyTorch `num_batches_tracked` is `bn_count`).
    pub batch_norms: Vec<String>,
    /// The `[1]` u32 count of training batches every batch norm has seen (PyTorch's
    /// `num_batches_tracked`, one for all since they all see every batch); the train program
    /// increments it once per step.
    pub bn_count: Option<TensorId>,
}

impl<'g> Net<'g> {
    /// Layers go into `g` in training mode; `seed` fixes the initial weights.
    pub fn new(g: &'g mut Graph, seed: u64) -> Self {
        Net {
            g,
            rng: Rng::new(seed),
            mode: Mode::Train,
            init: Init::default(),
            parts: NetParts::default(),
            existing: HashMap::new(),
        }
    }

    /// Layers go into `g` in evaluation mode, reusing the parameters and buffers of `built`
    /// (the same model built by [`Net::new`]) by name; those `built` lacks are created
    /// (all of them for `NetParts::default()`: an inference-only build, whose weights are
    /// then loaded, as [`crate::infer::Predictor`] does).
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
            init: Init::default(),
            parts: NetParts::default(),
            existing,
        }
    }

    /// How the layers built from now on start.
    pub fn set_init(&mut self, init: Init) {
        self.init = init;
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

    /// A convolution weight `[c_out, c_in, k, k]` by the current [`Init`].
    fn conv_weight(&mut self, name: String, dims: [usize; 4]) -> TensorId {
        let [c_out, c_in, kh, kw] = dims;
        match self.init {
            Init::PytorchDefault => self.uniform_param(name, dims.to_vec(), c_in * kh * kw),
            Init::Vgg | Init::Resnet => {
                let std = (2.0 / (c_out * kh * kw) as f32).sqrt();
                self.normal_param(name, dims.to_vec(), std)
            }
        }
    }

    /// A bias of `n` by the current [`Init`] (`fan_in` for PyTorch's default).
    fn bias(&mut self, name: String, n: usize, fan_in: usize, linear: bool) -> TensorId {
        match (self.init, linear) {
            (Init::PytorchDefault, _) | (Init::Resnet, true) => {
                self.uniform_param(name, vec![n], fan_in)
            }
            _ => self.param(name, |_| CpuTensor::zeros(&Shape::f32([n]))),
        }
    }

    /// A linear weight `[out, in]` by the current [`Init`].
    fn linear_weight(&mut self, name: String, out: usize, fan_in: usize) -> TensorId {
        match self.init {
            Init::Vgg => self.normal_param(name, vec![out, fan_in], 0.01),
            Init::PytorchDefault | Init::Resnet => {
                self.uniform_param(name, vec![out, fan_in], fan_in)
            }
        }
    }

    /// `N(0, std²)`.
    fn normal_param(&mut self, name: String, dims: Vec<usize>, std: f32) -> TensorId {
        self.param(name, |rng| {
            let numel = dims.iter().product();
            let data = (0..numel).map(|_| std * rng.normal()).collect();
            CpuTensor::from_f32(dims, data)
        })
    }

    /// `BatchNorm2d(c)` over `x: [n, c, h, w]` (eps 1e-5, momentum 0.1): parameters
    /// `{name}.weight` (ones) and `{name}.bias` (zeros), buffers `{name}.running_mean` (zeros)
    /// and `{name}.running_var` (ones). In training the batch's statistics normalise and the
    /// running ones are updated on the GPU; in evaluation the running ones normalise.
    pub fn batch_norm2d(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.batch_norm2d_with(name, x, BatchNormConfig::default())
    }

    /// `BatchNorm2d(c, eps, momentum)`: [`Net::batch_norm2d`] with other `eps` and `momentum`.
    pub fn batch_norm2d_with(
        &mut self,
        name: &str,
        x: TensorId,
        config: BatchNormConfig,
    ) -> Result<TensorId> {
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
        self.parts.batch_norms.push(name.to_string());
        match self.mode {
            Mode::Train => {
                let (y, update) = self
                    .g
                    .batch_norm2d_tracked(x, weight, bias, mean, var, config)?;
                self.parts.effects.push(update);
                if self.parts.bn_count.is_none() {
                    let count = CpuTensor::from_u32([1], vec![0]);
                    self.parts.bn_count = Some(self.g.state("num_batches_tracked", count));
                }
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

    /// `nn.Upsample(scale_factor=scale, mode=...)` (bilinear with `align_corners=False`).
    pub fn upsample2d(
        &mut self,
        name: &str,
        x: TensorId,
        mode: crate::ops::tensor::upsample2d::UpsampleMode,
        scale: usize,
    ) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.upsample2d(x, mode, scale)
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

    /// `AdaptiveMaxPool2d(1)`: global max pooling, `[n, c, h, w]` → `[n, c, 1, 1]`.
    pub fn global_max_pool2d(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.adaptive_max_pool2d(x, [1, 1])
    }

    /// `AdaptiveAvgPool2d(1)`: global average pooling, `[n, c, h, w]` → `[n, c, 1, 1]`.
    pub fn global_avg_pool2d(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.adaptive_avg_pool2d(name, x, [1, 1])
    }

    /// `Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias)`; `x: [n, c_in, h,
    /// w]`. `opts` is a kernel size alone (`3`, `(1, 7)`: stride 1, no padding, a bias) or any
    /// [`Conv2dOptions`] (`Conv2dOptions::new(3).stride(2).padding(1).bias(false)`, grouped,
    /// depthwise). Parameters `{name}.weight: [c_out, c_in/groups, kh, kw]` (OIHW) and, with a
    /// bias, `{name}.bias: [c_out]`.
    pub fn conv2d(
        &mut self,
        name: &str,
        x: TensorId,
        c_out: usize,
        opts: impl Into<Conv2dOptions>,
    ) -> Result<TensorId> {
        self.conv_layer(name, x, c_out, opts.into(), false)
    }

    /// `Conv2d` followed by `ReLU`, fused into one kernel (the ReLU runs in the convolution's
    /// epilogue; its backward reads the output): the same model as `conv2d` then `relu`, with
    /// one pass over the activation less each way.
    pub fn conv2d_relu(
        &mut self,
        name: &str,
        x: TensorId,
        c_out: usize,
        opts: impl Into<Conv2dOptions>,
    ) -> Result<TensorId> {
        self.conv_layer(name, x, c_out, opts.into(), true)
    }

    /// `ConvTranspose2d(c_in, c_out, kernel, stride, padding, output_padding, groups, bias,
    /// dilation)`; `x: [n, c_in, h, w]`. Parameters `{name}.weight: [c_in, c_out/groups, kh, kw]`
    /// (PyTorch's layout) and, with a bias, `{name}.bias: [c_out]`.
    pub fn conv_transpose2d(
        &mut self,
        name: &str,
        x: TensorId,
        c_out: usize,
        opts: impl Into<Conv2dOptions>,
        output_padding: impl Pair,
    ) -> Result<TensorId> {
        let opts = opts.into();
        self.g.set_scope(name);
        let [_, c_in, _, _] = self
            .g
            .shape(x)
            .dims4("conv_transpose2d", "input")
            .map_err(|e| with_layer(e, name))?;
        let groups = opts.spec.groups.max(1);
        let [kh, kw] = opts.kernel;
        let w = self.conv_weight(format!("{name}.weight"), [c_in, c_out / groups, kh, kw]);
        let b = self.conv_bias(name, opts.bias, c_out, (c_out / groups) * kh * kw);
        self.g
            .conv_transpose2d(x, w, b, opts.spec, output_padding)
            .map_err(|e| with_layer(e, name))
    }

    fn conv_layer(
        &mut self,
        name: &str,
        x: TensorId,
        c_out: usize,
        opts: Conv2dOptions,
        relu: bool,
    ) -> Result<TensorId> {
        self.g.set_scope(name);
        let shape = self.g.shape(x).clone();
        let [_, c_in, _, _] = shape
            .dims4("conv2d", "input")
            .map_err(|e| with_layer(e, name))?;
        let groups = opts.spec.groups.max(1);
        let [kh, kw] = opts.kernel;
        let w = self.conv_weight(format!("{name}.weight"), [c_out, c_in / groups, kh, kw]);
        let b = self.conv_bias(name, opts.bias, c_out, (c_in / groups) * kh * kw);
        let y = if relu {
            self.g.conv2d_relu(x, w, b, opts.spec)
        } else {
            self.g.conv2d(x, w, b, opts.spec)
        };
        y.map_err(|e| with_layer(e, name))
    }

    /// A convolution's bias `{name}.bias`, or without one a zero constant (no parameter, no
    /// gradient asked for).
    fn conv_bias(&mut self, name: &str, bias: bool, c_out: usize, fan_in: usize) -> TensorId {
        if bias {
            self.bias(format!("{name}.bias"), c_out, fan_in, false)
        } else {
            let zeros = CpuTensor::zeros(&Shape::f32([c_out]));
            self.g.constant(&format!("{name}.no_bias"), zeros)
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
        let w = self.linear_weight(format!("{name}.weight"), out, fan_in);
        let b = self.bias(format!("{name}.bias"), out, fan_in, true);
        if relu {
            self.g.linear_relu(x, w, b)
        } else {
            self.g.linear(x, w, b)
        }
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

    /// `MaxPool2d(kernel, stride, padding, ceil_mode=...)`: `pool` is a window alone (`2`,
    /// `(3, 2)`: stride equal to it, as PyTorch's default) or any [`Pool2d`]
    /// (`Pool2d::new(3).stride(2).padding(1).ceil_mode(true)`).
    pub fn max_pool2d(
        &mut self,
        name: &str,
        x: TensorId,
        pool: impl Into<Pool2d>,
    ) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.max_pool2d(x, pool)
    }

    /// `AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad)`: `pool` is a window
    /// alone, any [`Pool2d`], or an [`AvgPool2d`] (`.count_include_pad(false)`; PyTorch's
    /// default counts the padding).
    pub fn avg_pool2d(
        &mut self,
        name: &str,
        x: TensorId,
        pool: impl Into<AvgPool2d>,
    ) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.avg_pool2d(x, pool)
    }

    /// `LPPool2d(norm_type, kernel, stride, ceil_mode)`: power-average pooling (no padding).
    pub fn lp_pool2d(
        &mut self,
        name: &str,
        x: TensorId,
        norm: f32,
        pool: impl Into<Pool2d>,
    ) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.lp_pool2d(x, norm, pool)
    }

    /// `LocalResponseNorm(size)` with PyTorch's defaults (alpha 1e-4, beta 0.75, k 1).
    pub fn local_response_norm(
        &mut self,
        name: &str,
        x: TensorId,
        size: usize,
    ) -> Result<TensorId> {
        self.g.set_scope(name);
        self.g.local_response_norm(
            x,
            crate::ops::norm::local_response_norm::LocalResponseNorm::new(size),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_norm_options_reach_both_modes() {
        let mut g = Graph::new();
        let x = g.input("x", Shape::f32([2, 3, 4, 4]));
        let config = BatchNormConfig {
            eps: 1e-3,
            momentum: 0.3,
        };
        let mut net = Net::new(&mut g, 0);
        net.batch_norm2d_with("bn", x, config).expect("train");
        let parts = net.into_parts();
        let mut eval = Net::for_eval(&mut g, &parts);
        eval.batch_norm2d_with("bn", x, config).expect("eval");
        let ops: Vec<String> = g.nodes().iter().map(|n| format!("{:?}", n.op)).collect();
        assert_eq!(
            ops,
            [
                "BatchNorm2d { eps: 0.001 }",
                "BatchNorm2dUpdateStats { momentum: 0.3, count: 32 }",
                "BatchNorm2dEval { eps: 0.001 }"
            ]
        );
        // The eval build reuses the train build's parameters and buffers.
        let names: Vec<&str> = parts.buffers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["bn.running_mean", "bn.running_var"]);
    }
}
