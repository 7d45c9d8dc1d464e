//! Layers with PyTorch's names and default initialisation, and the models of the benchmark
//! workloads (`lenet5` = W1, `convnet-s` = W2).

use std::fmt;
use std::str::FromStr;

use crate::ir::CpuTensor;
use crate::ir::{Graph, TensorId};
use crate::ops::activation::Activation;
use crate::ops::conv::conv2d::Conv2dGeometry;
use crate::rng::Rng;
use crate::{Error, Result};

/// Builds layers into a graph and remembers their parameters by name (`conv1.weight`, ...).
pub struct Net<'g> {
    g: &'g mut Graph,
    rng: Rng,
    params: Vec<(String, TensorId)>,
}

impl<'g> Net<'g> {
    /// Layers go into `g`; `seed` fixes the initial weights.
    pub fn new(g: &'g mut Graph, seed: u64) -> Self {
        Net {
            g,
            rng: Rng::new(seed),
            params: Vec::new(),
        }
    }

    /// The graph, for ops that have no parameters.
    pub fn graph(&mut self) -> &mut Graph {
        self.g
    }

    /// The parameters created so far, in creation order.
    pub fn into_params(self) -> Vec<(String, TensorId)> {
        self.params
    }

    /// PyTorch's default init for conv and linear layers (`kaiming_uniform_(a=√5)` for the
    /// weight, `U(±1/√fan_in)` for the bias): both come to `U(±1/√fan_in)`.
    fn uniform_param(&mut self, name: String, dims: Vec<usize>, fan_in: usize) -> TensorId {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let numel = dims.iter().product();
        let data = (0..numel).map(|_| self.rng.range(-bound, bound)).collect();
        let t = self.g.param(&name, CpuTensor::from_f32(dims, data));
        self.params.push((name, t));
        t
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
}

impl Model {
    /// Every model, for `--help` and tests.
    pub const ALL: [Model; 2] = [Model::Lenet5, Model::ConvnetS];

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
        }
    }

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Model::Lenet5 => "lenet5",
            Model::ConvnetS => "convnet-s",
        }
    }
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
                    "unknown model {s:?}; choose one of: lenet5, convnet-s"
                ))
            })
    }
}
