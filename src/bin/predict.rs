//! `predict`: classify image files with a model `train-gpu --save` wrote, on the GPU.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use striate::checkpoint::Checkpoint;
use striate::data::folder::{decode, FolderOptions, EXTENSIONS};
use striate::data::meta;
use striate::infer::{PredictConfig, Predictor};
use striate::models::Model;
use striate::{AdapterChoice, GpuContext};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Classify images with a model trained by train-gpu (its --save file)",
    long_about = "Reads PNG, JPEG or BMP files (or every such file in a directory), converts and \
                  resizes them as the model's training images were (grayscale or RGB, size, \
                  normalisation: all stored in the weights file), runs batched inference on the \
                  GPU and prints the top classes with their probabilities."
)]
struct Args {
    /// The weights file (`train-gpu --save PATH`).
    #[arg(long)]
    weights: PathBuf,
    /// The model, when the file does not name it (files from train-gpu do).
    #[arg(long)]
    model: Option<String>,
    /// Images, or directories of images.
    #[arg(required = true, value_name = "IMAGE|DIR")]
    inputs: Vec<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Images per GPU batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// One JSON object per image on stdout.
    #[arg(long)]
    json: bool,
    /// Also write DIR/feature_maps.png: the first image through every convolution layer.
    #[arg(long, value_name = "DIR")]
    feature_maps: Option<PathBuf>,
    /// GPU to use (as train-gpu's --adapter).
    #[arg(long)]
    adapter: Option<String>,
}

/// How the model's training images were prepared, from the weights file's metadata.
struct Prep {
    model: Model,
    input: [usize; 3],
    mean: Vec<f32>,
    std: Vec<f32>,
    classes: Vec<String>,
}

impl Prep {
    fn from_file(path: &Path, model: Option<&str>) -> Result<(Self, Checkpoint)> {
        let ckpt = Checkpoint::read(path)?;
        let get = |key: &str| -> Result<&String> {
            ckpt.meta.get(key).with_context(|| {
                format!(
                    "{}: no {key} in its metadata; save it with train-gpu --save",
                    path.display()
                )
            })
        };
        let json = |key: &str| -> Result<serde_json::Value> {
            serde_json::from_str(get(key)?)
                .with_context(|| format!("{}: bad {key}", path.display()))
        };
        let model: Model = match model {
            Some(m) => m.parse()?,
            None => get(meta::MODEL)?.parse()?,
        };
        let prep = Prep {
            model,
            input: serde_json::from_value(json(meta::INPUT)?)?,
            mean: serde_json::from_value(json(meta::MEAN)?)?,
            std: serde_json::from_value(json(meta::STD)?)?,
            classes: serde_json::from_value(json(meta::CLASSES)?)?,
        };
        anyhow::ensure!(
            prep.mean.len() == prep.input[0] && prep.std.len() == prep.input[0],
            "{}: the normalisation has {} channels, the input {}",
            path.display(),
            prep.mean.len(),
            prep.input[0]
        );
        Ok((prep, ckpt))
    }

    /// One image file as the network's normalised input.
    fn load(&self, path: &Path) -> Result<Vec<f32>> {
        let [c, h, w] = self.input;
        let opts = FolderOptions {
            size: [h, w],
            channels: c,
            ..Default::default()
        };
        let bytes = decode(path, &opts)?;
        let plane = h * w;
        Ok(bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let ch = i / plane;
                (f32::from(b) / 255.0 - self.mean[ch]) / self.std[ch]
            })
            .collect())
    }
}

/// The files `inputs` name: files as given, directories' image files sorted.
fn image_files(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut res = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(input)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            files.retain(|p| {
                p.extension().is_some_and(|e| {
                    EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str())
                })
            });
            files.sort();
            res.extend(files);
        } else {
            res.push(input.clone());
        }
    }
    res
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let exp: Vec<f64> = logits.iter().map(|&v| f64::from(v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Ok(false) when some images could not be read (the others are still classified).
fn run() -> Result<bool> {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    let args = Args::parse();
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let (prep, _) = Prep::from_file(&args.weights, args.model.as_deref())?;
    let files = image_files(&args.inputs);
    anyhow::ensure!(!files.is_empty(), "no image files in {:?}", args.inputs);
    let choice = args
        .adapter
        .as_deref()
        .map(|a| a.parse().expect("infallible"))
        .unwrap_or_else(AdapterChoice::from_env);
    let gpu = GpuContext::new(&choice)?;
    let config = PredictConfig {
        batch_size: args.batch_size.min(files.len()),
        input: prep.input,
        n_classes: prep.classes.len(),
        feature_maps: args.feature_maps.is_some(),
        ..Default::default()
    };
    let predictor = Predictor::new(&gpu, &prep.model, &config)?;
    predictor.load_weights(&args.weights)?;
    let mut all_read = true;
    // Read every file first; unreadable ones are reported and skipped.
    let mut ready = Vec::new();
    for path in files {
        match prep.load(&path) {
            Ok(pixels) => ready.push((path, pixels)),
            Err(e) => {
                all_read = false;
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"file": path.display().to_string(), "error": format!("{e:#}")})
                    );
                }
                eprintln!("error: {e:#}");
            }
        }
    }
    if let (Some(dir), Some((path, pixels))) = (&args.feature_maps, ready.first()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let out = dir.join("feature_maps.png");
        let title = format!("feature maps of {}", path.display());
        let maps = predictor.feature_maps(pixels)?;
        striate::plots::feature_maps(&out, pixels, prep.input, &maps, &title)?;
        eprintln!("feature maps: {}", out.display());
    }
    for chunk in ready.chunks(config.batch_size) {
        let images: Vec<f32> = chunk.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        let logits = predictor.predict(&images)?;
        let classes = prep.classes.len();
        for (i, (path, _)) in chunk.iter().enumerate() {
            let probs = softmax(&logits.f32()[i * classes..(i + 1) * classes]);
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            order.truncate(args.top.max(1));
            if args.json {
                let top: Vec<serde_json::Value> = order
                    .iter()
                    .map(|&c| serde_json::json!({"class": prep.classes[c], "index": c, "probability": probs[c]}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"file": path.display().to_string(), "top": top})
                );
            } else {
                let top: Vec<String> = order
                    .iter()
                    .map(|&c| format!("{} {:.1}%", prep.classes[c], 100.0 * probs[c]))
                    .collect();
                println!("{}: {}", path.display(), top.join(", "));
            }
        }
    }
    Ok(all_read)
}
