//! Inference: a model built for evaluation only, as PyTorch's `model.eval()` under
//! `torch.no_grad()`. Its graph is the eval forward and nothing else: no labels, loss,
//! metrics, gradients or optimizer state, so it plans less memory, bakes fewer pipelines and
//! (tuned) times only the forward ops. Weights come from a state dict ([`Predictor::load_weights`]):
//! what [`crate::train::Trainer::save`] or PyTorch's `save_file(model.state_dict(), path)` wrote.

use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::exec::gpu::{Executable, ProgramId, ProgramSpec, VariantChoice};
use crate::gpu::GpuContext;
use crate::ir::{CpuTensor, Graph, TensorId};
use crate::nn::{Architecture, Net};
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// What a [`Predictor`] is built for.
#[derive(Clone, Debug)]
pub struct PredictConfig {
    /// Images per run; [`Predictor::predict`] takes 1 to this many.
    pub batch_size: usize,
    /// Image channels, height and width.
    pub input: [usize; 3],
    /// Classes (the logits' width).
    pub n_classes: usize,
    /// Also build a program that keeps every convolution's output ([`Predictor::feature_maps`]).
    pub feature_maps: bool,
    /// How each op's kernel variant is chosen (the first, a named one, or autotuned).
    pub choice: VariantChoice,
}

impl Default for PredictConfig {
    fn default() -> Self {
        PredictConfig {
            batch_size: 32,
            input: [1, 28, 28],
            n_classes: 10,
            feature_maps: false,
            choice: VariantChoice::First,
        }
    }
}

/// A model baked for inference on one GPU.
pub struct Predictor {
    exe: Executable,
    graph: Graph,
    images: TensorId,
    logits: TensorId,
    predict: ProgramId,
    params: Vec<(String, TensorId)>,
    buffers: Vec<(String, TensorId)>,
    batch_norms: Vec<String>,
    conv_outputs: Vec<(String, TensorId)>,
    batch_size: usize,
    n_classes: usize,
    input: [usize; 3],
}

impl Predictor {
    /// Builds `arch`'s eval forward for the configuration's images and bakes it. Its
    /// parameters start as the architecture initialises them; load trained ones with
    /// [`Predictor::load_weights`].
    pub fn new(gpu: &GpuContext, arch: &dyn Architecture, config: &PredictConfig) -> Result<Self> {
        if config.batch_size == 0 || config.n_classes == 0 || config.input.contains(&0) {
            return Err(Error::InvalidArgument(format!(
                "a predictor needs a batch, classes and a non-empty input, got batch {}, {} \
                 classes of {:?}",
                config.batch_size, config.n_classes, config.input
            )));
        }
        let mut graph = Graph::new();
        let [c, h, w] = config.input;
        let images = graph.input("images", Shape::f32([config.batch_size, c, h, w]));
        let mut net = Net::for_eval(&mut graph, &Default::default());
        let logits = arch.build(&mut net, images, config.n_classes)?;
        let parts = net.into_parts();
        let want = [config.batch_size, config.n_classes];
        if graph.shape(logits).dims != want {
            return Err(Error::InvalidArgument(format!(
                "the model's output is {}, not the logits {want:?}",
                graph.shape(logits)
            )));
        }
        let conv_outputs = conv_outputs(&graph, logits);
        let mut specs = vec![ProgramSpec {
            name: "predict".into(),
            outputs: vec![logits],
            effects: vec![],
        }];
        if config.feature_maps {
            specs.push(ProgramSpec {
                name: "features".into(),
                outputs: conv_outputs.iter().map(|(_, t)| *t).collect(),
                effects: vec![],
            });
        }
        let exe = Executable::build_with(gpu, &graph, &specs, config.choice.clone())?;
        Ok(Predictor {
            predict: exe.program("predict")?,
            exe,
            graph,
            images,
            logits,
            params: parts.params,
            buffers: parts.buffers,
            batch_norms: parts.batch_norms,
            conv_outputs,
            batch_size: config.batch_size,
            n_classes: config.n_classes,
            input: config.input,
        })
    }

    /// Loads a state dict as [`crate::train::Trainer::load_weights`] does: every parameter
    /// and buffer by name with its shape, as F32, nothing else but the batch norms'
    /// `num_batches_tracked`; every mismatch named, nothing loaded unless all match.
    pub fn load_weights(&self, path: &Path) -> Result<()> {
        let named: Vec<(String, TensorId)> =
            self.params.iter().chain(&self.buffers).cloned().collect();
        load_state_dict(
            &self.exe,
            &self.graph,
            &named,
            &self.batch_norms,
            None,
            path,
        )
    }

    /// Logits `[n, n_classes]` of 1 to `batch_size` images `[n·c·h·w]`.
    pub fn predict(&self, images: &[f32]) -> Result<CpuTensor> {
        let n = write_images(&self.exe, self.images, images, self.batch_size, self.input)?;
        self.exe.run(self.predict)?;
        let logits = self.exe.read(self.predict, self.logits)?;
        let classes = self.n_classes;
        Ok(CpuTensor::from_f32(
            [n, classes],
            logits.f32()[..n * classes].to_vec(),
        ))
    }

    /// Every convolution layer's output for one image, by layer name, in forward order (as
    /// [`crate::train::Trainer::feature_maps`]). Needs [`PredictConfig::feature_maps`].
    pub fn feature_maps(&self, image: &[f32]) -> Result<Vec<(String, CpuTensor)>> {
        let program = self.exe.program("features").map_err(|_| {
            Error::InvalidArgument(
                "feature maps need a predictor built with PredictConfig::feature_maps".into(),
            )
        })?;
        read_feature_maps(
            &self.exe,
            program,
            &self.conv_outputs,
            (self.images, image, self.batch_size, self.input),
        )
    }

    /// Downloads every parameter and buffer, by name (a state dict without the counters).
    pub fn state_dict(&self) -> Result<Vec<(String, CpuTensor)>> {
        self.params
            .iter()
            .chain(&self.buffers)
            .map(|(name, t)| Ok((name.clone(), self.exe.read(self.predict, *t)?)))
            .collect()
    }

    /// Images per run.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The inference graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The baked executable (its one program is `predict`).
    pub fn executable(&self) -> &Executable {
        &self.exe
    }

    /// Dispatches per run.
    pub fn n_dispatches(&self) -> usize {
        self.exe.n_dispatches(self.predict)
    }
}

/// The convolution layers of the forward that computes `logits`, in order: each node's name
/// and first output.
pub(crate) fn conv_outputs(g: &Graph, logits: TensorId) -> Vec<(String, TensorId)> {
    crate::graph::schedule(g, &[logits], &[])
        .steps
        .iter()
        .map(|s| g.node(s.node))
        .filter(|n| n.op.name().starts_with("conv"))
        .map(|n| (n.name.clone(), n.outputs[0]))
        .collect()
}

/// Writes 1 to `batch_size` images into the `images` input, zero-padded to a full batch, and
/// returns how many there were.
pub(crate) fn write_images(
    exe: &Executable,
    input_tensor: TensorId,
    images: &[f32],
    batch_size: usize,
    input: [usize; 3],
) -> Result<usize> {
    let numel: usize = input.iter().product();
    let n = images.len() / numel.max(1);
    if n == 0 || n > batch_size || n * numel != images.len() {
        let [c, h, w] = input;
        return Err(Error::InvalidArgument(format!(
            "{} values is not 1..={batch_size} images of {c}x{h}x{w}",
            images.len(),
        )));
    }
    let mut padded = images.to_vec();
    padded.resize(batch_size * numel, 0.0);
    exe.write(input_tensor, bytemuck::cast_slice(&padded))?;
    Ok(n)
}

/// Runs `program` on one image (`(images tensor, image, batch size, input shape)`) and reads
/// each convolution's output for it: `[channels, oh, ow]` by layer name.
pub(crate) fn read_feature_maps(
    exe: &Executable,
    program: ProgramId,
    conv_outputs: &[(String, TensorId)],
    (images, image, batch_size, input): (TensorId, &[f32], usize, [usize; 3]),
) -> Result<Vec<(String, CpuTensor)>> {
    if image.len() != input.iter().product::<usize>() {
        let [c, h, w] = input;
        return Err(Error::InvalidArgument(format!(
            "{} values is not one {c}x{h}x{w} image",
            image.len()
        )));
    }
    write_images(exe, images, image, batch_size, input)?;
    exe.run(program)?;
    conv_outputs
        .iter()
        .map(|(name, t)| {
            let all = exe.read(program, *t)?;
            let dims = all.shape.dims[1..].to_vec();
            let len: usize = dims.iter().product();
            Ok((
                name.clone(),
                CpuTensor::from_f32(dims, all.f32()[..len].to_vec()),
            ))
        })
        .collect()
}

/// Writes a state dict from `path` into `named` tensors of `exe`: each by name with its shape,
/// as F32, and nothing else but `{bn}.num_batches_tracked` for the `batch_norms` (integer
/// scalars; their largest goes into `bn_count` where the model keeps one). The error names
/// every mismatch, and nothing is written unless all match.
pub(crate) fn load_state_dict(
    exe: &Executable,
    graph: &Graph,
    named: &[(String, TensorId)],
    batch_norms: &[String],
    bn_count: Option<TensorId>,
    path: &Path,
) -> Result<()> {
    let ckpt = Checkpoint::read(path)?;
    let counters: Vec<String> = batch_norms
        .iter()
        .map(|b| format!("{b}.num_batches_tracked"))
        .collect();
    let (counts, weights): (Vec<_>, Vec<_>) = ckpt
        .tensors
        .into_iter()
        .partition(|(name, _)| counters.contains(name));
    let weights = Checkpoint {
        tensors: weights,
        meta: ckpt.meta,
    };
    let want: Vec<(String, Shape)> = named
        .iter()
        .map(|(name, t)| (name.clone(), graph.shape(*t).clone()))
        .collect();
    weights.check_against(&want, path)?;
    let mut count = 0;
    for (name, t) in &counts {
        if t.shape.numel() != 1 || t.shape.dtype != DType::U32 {
            return Err(Error::Checkpoint {
                path: path.into(),
                message: format!("{name} must be an integer scalar, got {}", t.shape),
            });
        }
        count = count.max(t.u32()[0]);
    }
    for (name, t) in named {
        let value = weights.tensor(name).expect("checked above");
        exe.write(*t, value.bytes())?;
    }
    if let Some(t) = bn_count {
        exe.write(t, bytemuck::bytes_of(&count))?;
    }
    Ok(())
}
