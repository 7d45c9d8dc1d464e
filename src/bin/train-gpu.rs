//! `train-gpu`: train a CNN on the GPU and report loss, accuracy and speed per epoch.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use striate::data::{self, DataSplit, Dataset};
use striate::models::Model;
use striate::ops::optim::LrSchedule;
use striate::train::run_state::{Curves, Resume, RunPosition, Saver};
use striate::train::{Metrics, Optimizer, TrainConfig, Trainer};
use striate::{AdapterChoice, Counters, GpuContext};

#[derive(Parser, Debug, Clone)]
#[command(version, about = "Train a CNN on the GPU with striate (WGSL compute shaders on wgpu)", long_about = None, args_override_self = true)]
struct Args {
    /// Model to train (`--model list` prints them all with their sizes): lenet5 (W1),
    /// convnet-s (W2), alexnet, vgg11, vgg11_bn, vgg16, vgg16_bn, googlenet, resnet18, resnet20.
    #[arg(long, default_value = "lenet5")]
    model: String,
    /// Dataset directory: Fashion-MNIST (or MNIST) IDX files (gzipped or raw), CIFAR-10's
    /// binary batches (data_batch_1.bin ...), or an image folder (DIR/<class>/*.png|jpg|bmp,
    /// or DIR/train and DIR/test of those). Default: $STRIATE_DATA, ./data/fashion-mnist,
    /// /usr/share/datasets/fashion-mnist, else a built-in synthetic dataset.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Image folders: the size every image is resized to, HxW or one number.
    #[arg(long, default_value = "32", value_name = "HxW")]
    image_size: String,
    /// Image folders: read the images as grayscale (one channel) instead of RGB.
    #[arg(long)]
    grayscale: bool,
    /// Hold out this fraction of the training images (seeded) as a validation set, evaluated
    /// every epoch beside the training figures: over- and under-fitting show as their gap.
    #[arg(long, value_name = "F")]
    val_fraction: Option<f64>,
    /// Augmentation: random crop after zero-padding every side by PAD pixels.
    #[arg(long, value_name = "PAD", default_value_t = 0)]
    random_crop: usize,
    /// Augmentation: mirror each training image left-right with probability 1/2.
    #[arg(long)]
    hflip: bool,
    /// Augmentation: erase a random rectangle of each training image with probability P
    /// (RandomErasing's defaults otherwise).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    random_erasing: f32,
    /// Train on the built-in synthetic dataset even if Fashion-MNIST is installed.
    #[arg(long, conflicts_with = "data")]
    synthetic: bool,
    /// Passes over the training set.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    optimizer: OptimizerArg,
    /// Nesterov momentum for SGD.
    #[arg(long)]
    nesterov: bool,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// SGD momentum dampening (PyTorch's default 0).
    #[arg(long, default_value_t = 0.0)]
    dampening: f32,
    /// Label smoothing of the training loss, in [0, 1) (CrossEntropyLoss(label_smoothing=...)).
    #[arg(long, default_value_t = 0.0, value_name = "EPS")]
    label_smoothing: f32,
    /// Clip the gradients to this global L2 norm every step (clip_grad_norm_), on the GPU.
    #[arg(long, value_name = "MAX_NORM")]
    clip_grad_norm: Option<f32>,
    /// Weight decay: an L2 penalty added to the gradient, or for AdamW decoupled from it.
    /// Default: PyTorch's, 0.01 for AdamW and 0 for the others.
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Learning-rate schedule, stepped every optimizer step and computed on the GPU: constant,
    /// step:STEPS:GAMMA, multistep:S1,S2,...:GAMMA, cosine[:WARMUP_STEPS] (to 0 at the last
    /// step), onecycle (PyTorch's OneCycleLR with --lr as the peak).
    #[arg(long, default_value = "constant")]
    lr_schedule: String,
    /// Seed for weights and shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use only the first N training images.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on only the first N test images (a quick look; the default is all of them).
    #[arg(long)]
    test_limit: Option<usize>,
    /// Write the trained parameters and buffers here (safetensors, PyTorch names).
    #[arg(long)]
    save: Option<PathBuf>,
    /// Save the whole training state (parameters, buffers, optimizer state, step counts, the
    /// data order's position and the run's arguments) into DIR after every epoch, crash-safe
    /// (written aside, synced, renamed); with --val-fraction also DIR/best.safetensors.
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
    /// Also save a checkpoint every N training steps.
    #[arg(long, value_name = "N", default_value_t = 0)]
    checkpoint_every: usize,
    /// Checkpoints kept in DIR (the newest; best.safetensors besides).
    #[arg(long, value_name = "K", default_value_t = 3)]
    keep_last: usize,
    /// Start from these weights (a PyTorch state_dict saved with safetensors for the same
    /// architecture, or an earlier --save): fine-tuning. Names, shapes and dtypes must match.
    #[arg(long, value_name = "PATH", conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Continue a run from its newest checkpoint in DIR (or from a checkpoint file) with the
    /// run's own arguments. Only how long it goes on, where it reads and writes, and how it
    /// reports and tunes may be given beside it (--epochs, --data, --checkpoint,
    /// --checkpoint-every, --keep-last, --plots, --save, --json, --log-every, --adapter,
    /// --no-tune, --tune-budget); anything else is refused. The resumed run follows the same
    /// trajectory as an uninterrupted one.
    #[arg(long, value_name = "DIR|FILE")]
    resume: Option<PathBuf>,
    /// GPU to use: vulkan, metal, dx12, gl, or part of the adapter's name. Default:
    /// $STRIATE_ADAPTER, else the best adapter (a real GPU over a software one).
    #[arg(long)]
    adapter: Option<String>,
    /// Write pictures of the run into DIR: curves.png (loss, accuracy and learning rate per
    /// epoch, updated every epoch), and at the end filters.png (the first convolution's
    /// filters), feature_maps.png (a test image through every convolution), confusion.png and
    /// misclassified.png.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Print one JSON object per epoch on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Ask for the running loss every N steps; it is read back asynchronously and shown on
    /// the progress bar when the GPU gets there (only the end of an epoch waits).
    #[arg(long, default_value_t = 50)]
    log_every: usize,
    /// Skip autotuning: run every op's first (best-guess) kernel variant instead of timing
    /// the candidates on this adapter. Tuning results are cached in ~/.cache/striate.
    #[arg(long)]
    no_tune: bool,
    /// Stop autotuning after this many seconds of timing; the ops left run their first
    /// variant this time and are tuned on a later run.
    #[arg(long, value_name = "SECONDS")]
    tune_budget: Option<f64>,
    /// Before training, print the time of every kernel of one training step and its share
    /// of the step (GPU timestamps where the adapter has them, else the host clock around
    /// each dispatch synced on its own). With --epochs 0, only profile.
    #[arg(long)]
    profile: bool,
}

/// The per-kernel table of `--profile`: dispatches grouped by op and kernel, slowest first.
fn print_profile(trainer: &Trainer, train: &Dataset, batch: usize) -> anyhow::Result<()> {
    let n = batch.min(train.len());
    let images = &train.images(0, n);
    let labels = &train.labels[..n];
    trainer.profile_step(images, labels)?; // Warm-up: first-use costs stay out of the table.
    let dispatches = trainer.profile_step(images, labels)?;
    let total: f64 = dispatches.iter().map(|(_, s)| s).sum();
    // Labels are program:step:layer:op[variant]:entry; group by layer, op, variant and entry.
    let mut rows: Vec<(String, f64, usize)> = Vec::new();
    for (label, s) in &dispatches {
        let key = label.splitn(3, ':').nth(2).unwrap_or(label).to_string();
        match rows.iter_mut().find(|r| r.0 == key) {
            Some(r) => {
                r.1 += s;
                r.2 += 1;
            }
            None => rows.push((key, *s, 1)),
        }
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "profile: one training step of batch {n}, {} dispatches, {:.2} ms ({})",
        dispatches.len(),
        total * 1e3,
        trainer.profile_method()
    );
    println!(
        "{:>9}  {:>6}  kernel (layer:op[variant]:entry)",
        "ms", "share"
    );
    for (key, s, count) in rows {
        let times = if count > 1 {
            format!(" x{count}")
        } else {
            String::new()
        };
        println!(
            "{:>9.3}  {:>5.1}%  {key}{times}",
            s * 1e3,
            100.0 * s / total
        );
    }
    Ok(())
}

/// `--lr-schedule`, for a run of `total` optimizer steps.
fn parse_schedule(spec: &str, total: usize) -> Result<LrSchedule> {
    let parts: Vec<&str> = spec.split(':').collect();
    let number = |s: &str| -> Result<f32> {
        s.parse()
            .with_context(|| format!("--lr-schedule {spec}: {s:?} is not a number"))
    };
    let steps = |s: &str| -> Result<usize> {
        s.parse()
            .with_context(|| format!("--lr-schedule {spec}: {s:?} is not a step count"))
    };
    Ok(match parts.as_slice() {
        ["constant"] => LrSchedule::Constant,
        ["step", size, gamma] => LrSchedule::Step {
            step_size: steps(size)?.max(1),
            gamma: number(gamma)?,
        },
        ["multistep", milestones, gamma] => {
            let milestones = milestones.split(',').map(steps).collect::<Result<Vec<_>>>()?;
            LrSchedule::multi_step(&milestones, number(gamma)?)?
        }
        ["cosine", rest @ ..] if rest.len() <= 1 => {
            let warmup = match rest {
                [w] => steps(w)?.max(1),
                _ => (total / 20).max(1),
            };
            anyhow::ensure!(
                warmup < total,
                "--lr-schedule {spec}: the warm-up ({warmup} steps) must be shorter than the run ({total})"
            );
            LrSchedule::CosineWarmup {
                warmup,
                total,
                min_factor: 0.0,
            }
        }
        ["onecycle"] => LrSchedule::OneCycle {
            total: total.max(2),
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        },
        _ => anyhow::bail!(
            "unknown --lr-schedule {spec:?}; use constant, step:STEPS:GAMMA, multistep:S1,S2:GAMMA, cosine[:WARMUP] or onecycle"
        ),
    })
}

/// `--model list`: every model with its size on Fashion-MNIST's and CIFAR-10's inputs (every
/// model takes the dataset's channels and size).
fn list_models() -> Result<()> {
    println!(
        "every model takes the dataset's channels and image size; parameters for two of them:"
    );
    println!(
        "{:<10} {:>12} {:>12} {:>9}",
        "model", "1x28x28", "3x32x32", "buffers"
    );
    for model in Model::ALL {
        let (gray, buffers) = model.sizes([1, 28, 28], 10)?;
        let (rgb, _) = model.sizes([3, 32, 32], 10)?;
        println!("{:<10} {gray:>12} {rgb:>12} {buffers:>9}", model.name());
    }
    println!("(10 classes; logits [n, classes])");
    Ok(())
}

/// `--image-size`: `HxW` or one number.
fn parse_size(spec: &str) -> Result<[usize; 2]> {
    let parse = |s: &str| -> Result<usize> {
        let v: usize = s
            .trim()
            .parse()
            .with_context(|| format!("--image-size {spec}: {s:?} is not a size"))?;
        anyhow::ensure!(v > 0, "--image-size {spec}: sizes must be positive");
        Ok(v)
    };
    Ok(match spec.split_once('x') {
        Some((h, w)) => [parse(h)?, parse(w)?],
        None => [parse(spec)?; 2],
    })
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OptimizerArg {
    Sgd,
    Adam,
    Adamw,
    Rmsprop,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The tool's steps: the arguments (for `--resume`, the run's own), the data, the trainer
/// (tuned, and profiled with `--profile`), the run's start (`--init`, or the resumed state),
/// the epochs (with checkpoints and curves), and the final pictures and model file.
fn run() -> Result<()> {
    quiet_device_select();
    let (args, argv, resume) = parse_command_line()?;
    if args.model == "list" {
        return list_models();
    }
    let model = check_args(&args)?;
    let gpu = open_gpu(&args)?;
    let split = load_data(&args)?;
    let log = Log { json: args.json };
    log.line(format!("adapter: {}", gpu.describe()));
    log.line(format!("data:    {}", split.description));
    let config = train_config(&args, model, &split)?;
    let trainer = build_trainer(&args, &gpu, &config, log)?;
    if args.profile {
        print_profile(&trainer, &split.train, args.batch_size)?;
    }
    let DataSplit {
        train, val, test, ..
    } = split;
    let mut run = Training::start(&args, argv, resume, &gpu, &trainer, train, &config, log)?;
    print_table_head(&args, val.is_some());
    for epoch in run.position.next_epoch..=args.epochs {
        let steps = run.train_epoch(epoch)?;
        run.end_epoch(epoch, &steps, val.as_ref(), &test)?;
    }
    finish(&args, &trainer, &run.train, &test, model, log)
}

/// Mesa's implicit device-select Vulkan layer probes for a Wayland display and prints an
/// error on headless machines. striate picks its adapter itself, so the layer has nothing to
/// do; turn it off unless the user set it. Runs before any other thread exists.
fn quiet_device_select() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// Progress lines: on stdout, or on stderr with `--json` (stdout is then the epochs' JSON).
#[derive(Clone, Copy)]
struct Log {
    json: bool,
}

impl Log {
    fn line(self, line: String) {
        if self.json {
            eprintln!("{line}")
        } else {
            println!("{line}")
        }
    }
}

/// The command line; for `--resume`, the run's own arguments with what this command line may
/// change. Also the arguments checkpoints store (the run's, with a new `--epochs`) and the
/// checkpoint to resume from.
fn parse_command_line() -> Result<(Args, Vec<String>, Option<Resume>)> {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches)?;
    let argv: Vec<String> = std::env::args().collect();
    let Some(path) = &args.resume else {
        return Ok((args, argv, None));
    };
    let resume = Resume::find(path)?;
    // The run's own arguments, then what this command line says about how long, where and how
    // to report.
    let mut run_argv = resume.run.args.clone();
    if given(&matches, "epochs") {
        run_argv.extend(["--epochs".into(), args.epochs.to_string()]);
    }
    refuse_fixed_args(&matches)?;
    let run = Args::try_parse_from(&run_argv)
        .context("the arguments stored in the checkpoint no longer parse")?;
    let run = with_overrides(run, &args, &matches, &resume)?;
    Ok((run, run_argv, Some(resume)))
}

/// Whether the command line itself gave the argument `id` (a clap id).
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// Beside `--resume`, anything but [`RESUME_OVERRIDES`] would silently not apply: refuse it.
fn refuse_fixed_args(matches: &ArgMatches) -> Result<()> {
    let command = Args::command();
    let mut fixed: Vec<String> = command
        .get_arguments()
        .map(|arg| arg.get_id().as_str())
        .filter(|id| given(matches, id) && *id != "resume" && !RESUME_OVERRIDES.contains(id))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    fixed.sort();
    anyhow::ensure!(
        fixed.is_empty(),
        "{} cannot be given with --resume: a resumed run keeps the arguments it was \
         started with (they are stored in its checkpoints), so it follows the same \
         trajectory. Beside --resume only {} may be given",
        fixed.join(", "),
        RESUME_OVERRIDES
            .iter()
            .map(|id| format!("--{}", id.replace('_', "-")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The resumed run's arguments `run` with what the command line `args` gave of
/// [`RESUME_OVERRIDES`]; checkpoints go where the command line says, else where the run put
/// them, else into the directory resumed from.
fn with_overrides(
    mut run: Args,
    args: &Args,
    matches: &ArgMatches,
    resume: &Resume,
) -> Result<Args> {
    let given = |id: &str| given(matches, id);
    run.json = args.json;
    run.no_tune |= args.no_tune;
    if given("adapter") {
        run.adapter = args.adapter.clone();
    }
    if given("data") {
        anyhow::ensure!(
            !run.synthetic,
            "--data cannot be given with --resume: the run trains on --synthetic data"
        );
        run.data = args.data.clone();
    }
    if given("plots") {
        run.plots = args.plots.clone();
    }
    if given("save") {
        run.save = args.save.clone();
    }
    if given("checkpoint_every") {
        run.checkpoint_every = args.checkpoint_every;
    }
    if given("keep_last") {
        run.keep_last = args.keep_last;
    }
    if given("log_every") {
        run.log_every = args.log_every;
    }
    if given("tune_budget") {
        run.tune_budget = args.tune_budget;
    }
    run.checkpoint = args
        .checkpoint
        .clone()
        .or(run.checkpoint)
        .or_else(|| resume.dir.clone());
    Ok(run)
}

/// The model, once the numbers that must be positive are.
fn check_args(args: &Args) -> Result<Model> {
    let model: Model = args.model.parse()?;
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    anyhow::ensure!(
        args.epochs > 0 || args.profile,
        "--epochs must be at least 1 (0 only with --profile)"
    );
    anyhow::ensure!(
        args.lr.is_finite() && args.lr > 0.0,
        "--lr must be a positive number, got {}",
        args.lr
    );
    Ok(model)
}

/// The `--adapter` (else `$STRIATE_ADAPTER`, else the best adapter).
fn open_gpu(args: &Args) -> Result<GpuContext> {
    let choice = args
        .adapter
        .as_deref()
        .map(|a| a.parse().expect("infallible"))
        .unwrap_or_else(AdapterChoice::from_env);
    Ok(GpuContext::new(&choice)?)
}

/// The optimizer the flags ask for: the library's defaults for it (PyTorch's), with the
/// flags' SGD options and weight decay.
fn optimizer(args: &Args) -> Optimizer {
    let mut res = match args.optimizer {
        OptimizerArg::Sgd => Optimizer::sgd(args.lr, args.momentum),
        OptimizerArg::Adam => Optimizer::adam(args.lr),
        OptimizerArg::Adamw => Optimizer::adamw(args.lr),
        OptimizerArg::Rmsprop => Optimizer::rmsprop(args.lr),
    };
    if let Optimizer::Sgd {
        nesterov,
        dampening,
        ..
    } = &mut res
    {
        *nesterov = args.nesterov;
        *dampening = args.dampening;
    }
    match args.weight_decay {
        Some(weight_decay) => res.with_weight_decay(weight_decay),
        None => res,
    }
}

/// How the model line names the optimizer.
fn optimizer_name(args: &Args) -> &'static str {
    match args.optimizer {
        OptimizerArg::Sgd if args.nesterov => "SGD (Nesterov)",
        OptimizerArg::Sgd => "SGD",
        OptimizerArg::Adam => "Adam",
        OptimizerArg::Adamw => "AdamW",
        OptimizerArg::Rmsprop => "RMSprop",
    }
}

/// What to train, for the data's images and classes; the schedule spans `--epochs`.
fn train_config(args: &Args, model: Model, split: &DataSplit) -> Result<TrainConfig> {
    let steps_per_epoch = (split.train.len() / args.batch_size).max(1);
    let schedule = parse_schedule(&args.lr_schedule, args.epochs * steps_per_epoch)?;
    Ok(TrainConfig {
        model,
        batch_size: args.batch_size,
        optimizer: optimizer(args),
        seed: args.seed,
        schedule,
        input: split.train.input_shape(),
        n_classes: split.train.n_classes,
        label_smoothing: args.label_smoothing,
        feature_maps: args.plots.is_some(),
        clip_grad_norm: args.clip_grad_norm,
    })
}

/// Builds the trainer (unless `--no-tune`, timing the kernel variants the tuning cache lacks
/// first) and reports what was built and tuned.
fn build_trainer(args: &Args, gpu: &GpuContext, config: &TrainConfig, log: Log) -> Result<Trainer> {
    let cache = striate::exec::tune::cache_path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no cache directory".into());
    if !args.no_tune {
        log.line(format!(
            "building: every op's kernel variants not in the tuning cache ({cache}) are timed on this adapter first; --no-tune skips it, --tune-budget SECONDS caps it"
        ));
    }
    let build_start = Instant::now();
    let trainer = if args.no_tune {
        Trainer::new(gpu, config)?
    } else {
        tuned_trainer(args, gpu, config)?
    };
    let tuning = trainer.tuning_report();
    log.line(format!(
        "model:   {} ({} parameters), {}, batch {}; {} dispatches per step, built in {:.2}s",
        config.model,
        n_parameters(&trainer),
        optimizer_name(args),
        args.batch_size,
        trainer.n_dispatches(),
        build_start.elapsed().as_secs_f64()
    ));
    if !args.no_tune {
        let over = if tuning.over_budget > 0 {
            format!(
                ", {} left untuned by --tune-budget (their first variant; tuned next run)",
                tuning.over_budget
            )
        } else {
            String::new()
        };
        log.line(format!(
            "tuning:  {} ops timed ({:.1}s), {} from the cache ({cache}){over}",
            tuning.tuned, tuning.seconds, tuning.cached,
        ));
    }
    Ok(trainer)
}

/// The autotuned trainer, within `--tune-budget`, with a progress bar of the ops being timed.
fn tuned_trainer(args: &Args, gpu: &GpuContext, config: &TrainConfig) -> Result<Trainer> {
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("tuning  [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let shown = bar.clone();
    let progress: striate::exec::gpu::ProgressFn = Arc::new(move |p| {
        shown.set_length(p.total as u64);
        shown.set_position(p.index as u64 - 1);
        // "layer op-name": the node's name and the op, without its parameters and shapes.
        let mut words = p.op.split_whitespace();
        let layer = words.next().unwrap_or_default();
        let op: String = words
            .next()
            .unwrap_or_default()
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect();
        shown.set_message(format!("{layer} {op}"));
    });
    let options = striate::exec::gpu::TuneOptions {
        budget: args.tune_budget.map(std::time::Duration::from_secs_f64),
        progress: Some(progress),
    };
    let trainer = Trainer::new_tuned_with(gpu, config, options);
    bar.finish_and_clear();
    Ok(trainer?)
}

/// The trained numbers: every parameter's elements.
fn n_parameters(trainer: &Trainer) -> usize {
    let graph = trainer.graph();
    graph
        .tensor_ids()
        .filter(|&t| matches!(graph.tensor(t).kind, striate::ir::TensorKind::Param(_)))
        .map(|t| graph.shape(t).numel())
        .sum()
}

/// The table's head (nothing with `--json`).
fn print_table_head(args: &Args, with_val: bool) {
    if args.json {
        return;
    }
    let val_head = if with_val {
        format!("  {:>9}  {:>8}", "val loss", "val acc")
    } else {
        String::new()
    };
    println!(
        "{:>5}  {:>10}  {:>9}{val_head}  {:>9}  {:>8}  {:>7}  {:>9}",
        "epoch", "train loss", "train acc", "test loss", "test acc", "seconds", "images/s"
    );
}

/// A run under way: what its epochs share and what each hands on to the next.
struct Training<'a> {
    args: &'a Args,
    gpu: &'a GpuContext,
    trainer: &'a Trainer,
    train: Arc<Dataset>,
    augment: data::Augment,
    steps_per_epoch: usize,
    schedule: LrSchedule,
    saver: Option<Saver>,
    curves: Curves,
    /// Where the run stands: the first epoch still to run (and the steps of it already taken)
    /// before the epochs, and the steps taken in all throughout.
    position: RunPosition,
}

/// What an epoch's steps leave for its report.
struct EpochSteps {
    /// Loss summed over the images whose metrics were read, and how many of them were right.
    loss_sum: f64,
    correct: f64,
    seen: u64,
    seconds: f64,
    /// What the GPU did meanwhile.
    during: Counters,
}

impl<'a> Training<'a> {
    /// Everything before the first step: the loader's augmentation, the checkpoint
    /// directory, `--init`'s weights, the plot directory, and with `resume` the state and
    /// position a checkpoint holds (and the run's curves so far).
    fn start(
        args: &'a Args,
        argv: Vec<String>,
        resume: Option<Resume>,
        gpu: &'a GpuContext,
        trainer: &'a Trainer,
        train: Dataset,
        config: &TrainConfig,
        log: Log,
    ) -> Result<Self> {
        let train = Arc::new(train);
        let steps_per_epoch = train.len() / args.batch_size;
        anyhow::ensure!(
            steps_per_epoch > 0,
            "{} training images is less than one batch of {}",
            train.len(),
            args.batch_size
        );
        let augment = data::Augment {
            crop_padding: args.random_crop,
            hflip: args.hflip,
            erase: args.random_erasing,
        };
        if !augment.is_identity() {
            log.line(format!("augment: {augment}, on the loader thread"));
        }
        let saver = args
            .checkpoint
            .as_ref()
            .map(|dir| Saver::new(dir, args.keep_last, argv))
            .transpose()?;
        if let Some(path) = &args.init {
            trainer.load_weights(path)?;
            log.line(format!("init:    weights from {}", path.display()));
        }
        if let Some(dir) = &args.plots {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the plot directory {}", dir.display()))?;
        }
        let mut curves = Curves::default();
        let mut position = RunPosition {
            next_epoch: 1,
            skip_steps: 0,
            global_step: 0,
        };
        if let Some(r) = resume {
            r.restore(trainer)?;
            // The pictures continue the whole run's history, not only what follows the resume.
            (curves, position) = (r.run.curves, r.run.position);
            let RunPosition {
                next_epoch,
                skip_steps,
                global_step,
            } = position;
            log.line(format!(
                "resumed: {} (epoch {next_epoch}, after step {skip_steps} of it; {global_step} steps in all)",
                r.path.display()
            ));
        }
        Ok(Training {
            args,
            gpu,
            trainer,
            train,
            augment,
            steps_per_epoch,
            schedule: config.schedule,
            saver,
            curves,
            position,
        })
    }

    /// The steps of `epoch` (a resumed one's from where it stopped), with a progress bar
    /// showing the running loss and a checkpoint every `--checkpoint-every` steps.
    fn train_epoch(&mut self, epoch: usize) -> Result<EpochSteps> {
        let args = self.args;
        let bar = if args.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(self.steps_per_epoch as u64)
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {epoch}"));
        let before = self.gpu.counters();
        let start = Instant::now();
        let shuffle_seed = args.seed.wrapping_mul(1000).wrapping_add(epoch as u64);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0.0, 0u64);
        // A resumed epoch replays the loader's order and augmentation up to where it stopped.
        let skip = std::mem::take(&mut self.position.skip_steps);
        bar.inc(skip as u64);
        let batches = data::train_batches(
            self.train.clone(),
            args.batch_size,
            shuffle_seed,
            self.augment,
        );
        for (step, batch) in batches.into_iter().enumerate().skip(skip) {
            self.trainer.train_step(&batch.images, &batch.labels)?;
            self.position.global_step += 1;
            let global_step = self.position.global_step;
            // The loss is read asynchronously: ask every `log_every` steps, show it when the
            // GPU has got there; only the epoch's end waits.
            let last = step + 1 == self.steps_per_epoch;
            let polled = if last {
                Some(self.trainer.take_metrics()?)
            } else {
                self.trainer.poll_metrics()?
            };
            let at = (epoch - 1) as f64 + (step + 1) as f64 / self.steps_per_epoch as f64;
            let lr = f64::from(args.lr) * self.schedule.factor(global_step - 1);
            self.curves.lr.push((at, lr));
            if let Some(m) = polled {
                self.curves.running.push((at, m.loss));
                loss_sum += m.loss * m.count as f64;
                correct += m.accuracy * m.count as f64;
                seen += m.count;
                let rate = ((step + 1) * args.batch_size) as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!("loss {:.4}  {rate:.0} img/s", m.loss));
            }
            if !last && (step + 1) % args.log_every.max(1) == 0 {
                self.trainer.request_metrics()?;
            }
            if let Some(saver) = self.saver.as_mut() {
                if !last
                    && args.checkpoint_every > 0
                    && global_step.is_multiple_of(args.checkpoint_every)
                {
                    let position = RunPosition {
                        next_epoch: epoch,
                        skip_steps: step + 1,
                        global_step,
                    };
                    saver.save(self.trainer, position, None, &self.curves)?;
                }
            }
            bar.inc(1);
        }
        let seconds = start.elapsed().as_secs_f64();
        let during = self.gpu.counters() - before;
        bar.finish_and_clear();
        Ok(EpochSteps {
            loss_sum,
            correct,
            seen,
            seconds,
            during,
        })
    }

    /// After `epoch`'s steps: evaluates on `val` and `test`, extends the curves (and with
    /// `--plots` redraws them), saves a checkpoint and prints the epoch's line.
    fn end_epoch(
        &mut self,
        epoch: usize,
        steps: &EpochSteps,
        val: Option<&Dataset>,
        test: &Dataset,
    ) -> Result<()> {
        let args = self.args;
        let images_per_sec = (self.steps_per_epoch * args.batch_size) as f64 / steps.seconds;
        let val = val.map(|v| self.trainer.evaluate(v)).transpose()?;
        let test = self.trainer.evaluate(test)?;
        let seen = steps.seen.max(1) as f64;
        let (train_loss, train_acc) = (steps.loss_sum / seen, steps.correct / seen);
        anyhow::ensure!(
            train_loss.is_finite(),
            "training diverged in epoch {epoch}: the loss is {train_loss}; try a smaller --lr"
        );
        self.curves.epochs.push(striate::plots::EpochPoint {
            epoch: epoch as f64,
            train_loss,
            train_acc,
            val: val.map(|v| (v.loss, v.accuracy)),
            test: (test.loss, test.accuracy),
        });
        if let Some(dir) = &args.plots {
            let path = dir.join("curves.png");
            let curves = &self.curves;
            striate::plots::training_curves(&path, &curves.epochs, &curves.running, &curves.lr)?;
        }
        if let Some(saver) = self.saver.as_mut() {
            let position = RunPosition {
                next_epoch: epoch + 1,
                skip_steps: 0,
                global_step: self.position.global_step,
            };
            saver.save(
                self.trainer,
                position,
                val.map(|v| v.accuracy),
                &self.curves,
            )?;
        }
        let report = EpochReport {
            epoch,
            train_loss,
            train_acc,
            val,
            test,
            seconds: steps.seconds,
            images_per_sec,
            steps: self.steps_per_epoch,
            during: steps.during,
        };
        report.print(args.json);
        Ok(())
    }
}

/// One epoch's figures, as its line of the table or its JSON object.
struct EpochReport {
    epoch: usize,
    train_loss: f64,
    train_acc: f64,
    val: Option<Metrics>,
    test: Metrics,
    seconds: f64,
    images_per_sec: f64,
    steps: usize,
    during: Counters,
}

impl EpochReport {
    fn print(&self, json: bool) {
        let EpochReport {
            epoch,
            train_loss,
            train_acc,
            val,
            test,
            seconds,
            images_per_sec,
            steps,
            ref during,
        } = *self;
        if json {
            let line = serde_json::json!({
                "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                "val_loss": val.map(|v| v.loss), "val_acc": val.map(|v| v.accuracy),
                "test_loss": test.loss, "test_acc": test.accuracy,
                "test_images": test.count, "seconds": seconds, "images_per_sec": images_per_sec, "steps": steps,
                "gpu_objects_created": during.gpu_objects_created(), "bytes_uploaded": during.bytes_uploaded,
                "bytes_downloaded": during.bytes_downloaded, "submissions": during.submissions, "blocking_waits": during.blocking_waits,
                "backpressure_waits": during.backpressure_waits,
            });
            println!("{line}");
        } else {
            let val_cols = val
                .map(|v| format!("  {:>9.4}  {:>7.2}%", v.loss, 100.0 * v.accuracy))
                .unwrap_or_default();
            println!(
                "{epoch:>5}  {train_loss:>10.4}  {:>8.2}%{val_cols}  {:>9.4}  {:>7.2}%  {seconds:>7.1}  {images_per_sec:>9.0}",
                100.0 * train_acc,
                test.loss,
                100.0 * test.accuracy
            );
        }
    }
}

/// After the last epoch: `--plots`' final pictures and `--save`'s model file.
fn finish(
    args: &Args,
    trainer: &Trainer,
    train: &Dataset,
    test: &Dataset,
    model: Model,
    log: Log,
) -> Result<()> {
    if let Some(dir) = &args.plots {
        final_plots(dir, trainer, test)?;
        log.line(format!("plots:   {}", dir.display()));
    }
    if let Some(path) = &args.save {
        trainer.save_with_meta(path, &train.model_meta(model.name()))?;
        log.line(format!("saved:   {}", path.display()));
    }
    Ok(())
}

/// The pictures `--plots` writes after training: the first convolution's filters, a test
/// image's feature maps at every convolution, the confusion matrix and misclassified images.
fn final_plots(dir: &Path, trainer: &Trainer, test: &Dataset) -> Result<()> {
    use striate::plots::{confusion_matrix, image_grid, Tile};
    // The first convolution's filters (the mean over input channels unless they are RGB).
    let params = trainer.parameters()?;
    if let Some((name, w)) = params.iter().find(|(_, t)| t.shape.dims.len() == 4) {
        let [c_out, c_in, kh, kw] = <[usize; 4]>::try_from(w.shape.dims.as_slice())?;
        let tiles: Vec<Tile> = (0..c_out.min(64))
            .map(|o| {
                let f = &w.f32()[o * c_in * kh * kw..(o + 1) * c_in * kh * kw];
                if c_in == 3 {
                    Tile::normalised(f, 3, kh, kw, String::new())
                } else {
                    let mean: Vec<f32> = (0..kh * kw)
                        .map(|i| (0..c_in).map(|c| f[c * kh * kw + i]).sum::<f32>() / c_in as f32)
                        .collect();
                    Tile::normalised(&mean, 1, kh, kw, String::new())
                }
            })
            .collect();
        let title = format!("{name}: {c_out} filters of {c_in}x{kh}x{kw}");
        image_grid(&dir.join("filters.png"), &title, &tiles, 8, 48)?;
    }
    // The first test image through every convolution.
    let [c, h, w] = test.input_shape();
    let title = format!(
        "feature maps of test image 0 ({}), up to 8 channels per layer",
        test.classes[test.labels[0] as usize]
    );
    let image = test.images(0, 1);
    striate::plots::feature_maps(
        &dir.join("feature_maps.png"),
        &image,
        test.input_shape(),
        &trainer.feature_maps(&image)?,
        &title,
    )?;
    // Predictions over the test set: the confusion matrix and the misclassified images.
    let n_classes = test.n_classes;
    let mut counts = vec![vec![0u64; n_classes]; n_classes];
    let mut wrong = Vec::new();
    let batch = trainer.batch_size();
    for start in (0..test.len()).step_by(batch) {
        let n = batch.min(test.len() - start);
        let logits = trainer.predict(&test.images(start, n))?;
        for i in 0..n {
            let row = &logits.f32()[i * logits.shape.dims[1]..(i + 1) * logits.shape.dims[1]];
            let pred = (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            let truth = test.labels[start + i] as usize;
            counts[truth][pred.min(n_classes - 1)] += 1;
            if pred != truth && wrong.len() < 24 {
                wrong.push((start + i, pred, truth));
            }
        }
    }
    confusion_matrix(&dir.join("confusion.png"), &test.classes, &counts)?;
    let tiles: Vec<Tile> = wrong
        .iter()
        .map(|&(i, pred, truth)| {
            let pixels: Vec<f32> = test
                .image(i)
                .iter()
                .map(|&b| f32::from(b) / 255.0)
                .collect();
            let name = |k: usize| {
                test.classes
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| k.to_string())
            };
            Tile {
                pixels,
                channels: c,
                h,
                w,
                caption: format!("{} (is {})", name(pred), name(truth)),
            }
        })
        .collect();
    if !tiles.is_empty() {
        let title = format!(
            "misclassified test images: predicted (true), {} shown",
            tiles.len()
        );
        image_grid(&dir.join("misclassified.png"), &title, &tiles, 6, 84)?;
    }
    Ok(())
}

/// The arguments a command line may give beside --resume (clap ids): how long the run goes
/// on, where it reads and writes, how it reports and tunes; nothing that changes what it
/// computes. --epochs does change the schedule's length, and is stored with the run.
const RESUME_OVERRIDES: &[&str] = &[
    "epochs",
    "data",
    "checkpoint",
    "checkpoint_every",
    "keep_last",
    "plots",
    "save",
    "json",
    "log_every",
    "adapter",
    "no_tune",
    "tune_budget",
];

fn load_data(args: &Args) -> Result<DataSplit> {
    let folder = data::folder::FolderOptions {
        size: parse_size(&args.image_size)?,
        channels: if args.grayscale { 1 } else { 3 },
        seed: args.seed,
        ..Default::default()
    };
    let split = if args.synthetic {
        None
    } else if let Some(dir) = &args.data {
        Some(data::load_dir(dir, &folder).context("loading the dataset")?)
    } else {
        data::load_fashion_mnist(None).context("loading the dataset")?
    };
    let mut split = split.unwrap_or_else(|| data::synthetic(12_000, 2_000, 0));
    if let Some(n) = args.train_limit {
        split.train = split.train.truncate(n);
        split.description += &format!("; training on the first {}", split.train.len());
    }
    if let Some(n) = args.test_limit {
        split.test = split.test.truncate(n);
        split.description += &format!("; testing on the first {}", split.test.len());
    }
    if let Some(f) = args.val_fraction {
        split = split
            .with_validation(f, args.seed ^ 0x7a1)
            .context("--val-fraction")?;
    }
    Ok(split)
}
