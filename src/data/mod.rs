//! Datasets: images of any channel count and size kept as bytes, with their per-channel
//! normalisation and class names; the readers (IDX for MNIST and Fashion-MNIST, gzipped or
//! raw; CIFAR-10's binary batches in [`cifar`]; image folders in [`folder`]), where to find
//! them, the synthetic dataset striate generates when none is installed, validation splits,
//! and the background batch loader with its augmentation ([`augment`]).

pub mod augment;
pub mod cifar;
pub mod folder;

pub use augment::Augment;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread;

use crate::rng::Rng;
use crate::{Error, Result};

/// Fashion-MNIST's pixel mean and standard deviation (after scaling to [0, 1]).
pub const MEAN: f32 = 0.2860;
/// See [`MEAN`].
pub const STD: f32 = 0.3530;

/// Where striate looks for Fashion-MNIST when `--data` is not given, after `$STRIATE_DATA`.
pub const DEFAULT_DIRS: [&str; 2] = ["data/fashion-mnist", "/usr/share/datasets/fashion-mnist"];

/// How to get the real data, for messages.
pub const GET_DATA_HINT: &str =
    "apt-get install dataset-fashion-mnist, or pass --data DIR with the four IDX files";

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Per-channel normalisation of pixels scaled to [0, 1]: `(p / 255 − mean[c]) / std[c]`, as
/// torchvision's `ToTensor()` then `Normalize(mean, std)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel.
    pub std: Vec<f32>,
}

impl Normalize {
    /// Fashion-MNIST's (one channel: 0.2860, 0.3530).
    pub fn fashion_mnist() -> Self {
        Normalize {
            mean: vec![MEAN],
            std: vec![STD],
        }
    }

    /// The mean and standard deviation of each channel over every pixel of `data` (a
    /// constant channel gets std 1, not a division by zero).
    pub fn of(data: &Dataset) -> Self {
        let plane = data.h * data.w;
        let mut sum = vec![0f64; data.c];
        let mut sq = vec![0f64; data.c];
        for (i, &p) in data.pixels.iter().enumerate() {
            let v = f64::from(p) / 255.0;
            let ch = (i / plane) % data.c;
            sum[ch] += v;
            sq[ch] += v * v;
        }
        let count = (data.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| {
                let sd = (s / count - m * m).max(0.0).sqrt();
                if sd > 1e-6 {
                    sd as f32
                } else {
                    1.0
                }
            })
            .collect();
        Normalize {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// The normalised value of each byte, per channel.
    fn tables(&self) -> Vec<[f32; 256]> {
        self.mean
            .iter()
            .zip(&self.std)
            .map(|(&m, &s)| std::array::from_fn(|p| (p as f32 / 255.0 - m) / s))
            .collect()
    }
}

/// Images (NCHW, kept as bytes), their labels, class names and normalisation.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `n · c · h · w` pixels, 0..=255: a byte each, a quarter of what normalised f32 would
    /// take (Fashion-MNIST's training set: 47 MB instead of 188 MB). [`Dataset::images`] gives
    /// the normalised floats the network sees.
    pub pixels: Vec<u8>,
    /// `n` labels, each `< n_classes`.
    pub labels: Vec<u32>,
    /// Channels (1 grayscale, 3 RGB).
    pub c: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Number of classes.
    pub n_classes: usize,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// How bytes become the network's floats.
    pub norm: Normalize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image, `c · h · w`.
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// `[c, h, w]`, the input a model is built for.
    pub fn input_shape(&self) -> [usize; 3] {
        [self.c, self.h, self.w]
    }

    /// Images `start..start + count` as normalised f32, NCHW (see [`Normalize`]).
    pub fn images(&self, start: usize, count: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(count * self.image_len());
        self.extend_images(start..start + count, &mut out);
        out
    }

    /// Appends the normalised pixels of the images `indices` to `out`.
    pub fn extend_images(&self, indices: impl IntoIterator<Item = usize>, out: &mut Vec<f32>) {
        let tables = self.norm.tables();
        for i in indices {
            self.extend_normalised(self.image(i), &tables, out);
        }
    }

    /// The bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.image_len();
        &self.pixels[i * len..(i + 1) * len]
    }

    /// Appends one image's bytes (`c · h · w`), normalised by `tables`.
    fn extend_normalised(&self, bytes: &[u8], tables: &[[f32; 256]], out: &mut Vec<f32>) {
        let plane = self.h * self.w;
        for (ch, table) in tables.iter().enumerate() {
            out.extend(
                bytes[ch * plane..(ch + 1) * plane]
                    .iter()
                    .map(|&p| table[usize::from(p)]),
            );
        }
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.pixels.truncate(n * self.image_len());
        self.labels.truncate(n);
        self
    }

    /// The images `indices`, in that order, with everything else of this dataset.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Dataset {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.empty_like()
        }
    }

    /// No images, the same shape, classes and normalisation.
    fn empty_like(&self) -> Self {
        Dataset {
            pixels: Vec::new(),
            labels: Vec::new(),
            c: self.c,
            h: self.h,
            w: self.w,
            n_classes: self.n_classes,
            classes: self.classes.clone(),
            norm: self.norm.clone(),
        }
    }

    /// Splits off a seeded random `fraction` of the images (at least one, at most all but
    /// one): `(rest, held_out)`, each keeping the original order.
    pub fn split(&self, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "a split fraction must be between 0 and 1 (exclusive), got {fraction}"
            )));
        }
        if self.len() < 2 {
            return Err(Error::InvalidArgument(format!(
                "cannot split {} image(s) in two",
                self.len()
            )));
        }
        let n_held = ((self.len() as f64 * fraction).round() as usize).clamp(1, self.len() - 1);
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::new(seed).shuffle(&mut order);
        let mut held: Vec<usize> = order[..n_held].to_vec();
        let mut rest: Vec<usize> = order[n_held..].to_vec();
        held.sort_unstable();
        rest.sort_unstable();
        Ok((self.subset(&rest), self.subset(&held)))
    }
}

/// A train/test pair (and optionally a validation split of the training images) and where it
/// came from.
#[derive(Clone, Debug)]
pub struct DataSplit {
    /// Training images.
    pub train: Dataset,
    /// Validation images, split off the training set ([`DataSplit::with_validation`]).
    pub val: Option<Dataset>,
    /// Test images.
    pub test: Dataset,
    /// A line saying which data this is.
    pub description: String,
    /// True for the generated stand-in.
    pub synthetic: bool,
}

/// Metadata keys under which a model file records how its inputs were prepared, so
/// `predict` prepares new images the same way.
pub mod meta {
    /// The model's CLI name.
    pub const MODEL: &str = "striate.model";
    /// `[c, h, w]` as JSON.
    pub const INPUT: &str = "striate.input";
    /// Per-channel mean, JSON.
    pub const MEAN: &str = "striate.mean";
    /// Per-channel standard deviation, JSON.
    pub const STD: &str = "striate.std";
    /// Class names in label order, JSON.
    pub const CLASSES: &str = "striate.classes";
}

impl Dataset {
    /// The metadata `predict` needs to prepare images as this dataset's were (see [`meta`]).
    pub fn model_meta(&self, model: &str) -> std::collections::BTreeMap<String, String> {
        let json = |v: serde_json::Value| v.to_string();
        [
            (meta::MODEL, model.to_string()),
            (meta::INPUT, json(serde_json::json!(self.input_shape()))),
            (meta::MEAN, json(serde_json::json!(self.norm.mean))),
            (meta::STD, json(serde_json::json!(self.norm.std))),
            (meta::CLASSES, json(serde_json::json!(self.classes))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl DataSplit {
    /// Moves a seeded random `fraction` of the training images into a validation set.
    pub fn with_validation(mut self, fraction: f64, seed: u64) -> Result<Self> {
        let (train, val) = self.train.split(fraction, seed)?;
        self.description = format!(
            "{}; {} of the training images held out for validation",
            self.description,
            val.len()
        );
        self.train = train;
        self.val = Some(val);
        Ok(self)
    }

    /// Normalises train, validation and test by the training set's per-channel statistics.
    pub fn normalise_by_train(mut self) -> Self {
        let norm = Normalize::of(&self.train);
        for d in [
            Some(&mut self.train),
            self.val.as_mut(),
            Some(&mut self.test),
        ]
        .into_iter()
        .flatten()
        {
            d.norm = norm.clone();
        }
        self
    }
}

/// Reads the dataset in `dir`, whichever format it is in: CIFAR-10's binary batches, the IDX
/// files of (Fashion-)MNIST, or an image folder (read by `folder`'s options).
pub fn load_dir(dir: &Path, folder: &folder::FolderOptions) -> Result<DataSplit> {
    if !dir.is_dir() {
        return Err(Error::Data {
            path: dir.into(),
            message: format!("is not a directory; for Fashion-MNIST: {GET_DATA_HINT}"),
        });
    }
    if cifar::is_cifar10_dir(dir) {
        cifar::load_cifar10_dir(dir)
    } else if find_file(dir, "train-images-idx3-ubyte").is_some() {
        load_idx_dir(dir)
    } else if folder::is_image_folder(dir) {
        folder::load_image_folder(dir, folder)
    } else {
        Err(Error::Data {
            path: dir.into(),
            message: "holds no dataset: expected CIFAR-10's data_batch_1.bin ..., the IDX files \
                      train-images-idx3-ubyte[.gz] ..., or class subdirectories of images"
                .into(),
        })
    }
}

/// Loads Fashion-MNIST (or MNIST) from `explicit`, else `$STRIATE_DATA`, else the first of
/// `./data/fashion-mnist` and `/usr/share/datasets/fashion-mnist` that holds it. Returns
/// `Ok(None)` when nothing is found and no directory was named; a named directory that does
/// not hold valid files is an error.
pub fn load_fashion_mnist(explicit: Option<&Path>) -> Result<Option<DataSplit>> {
    // A directory the user named, by flag or variable, must hold the data.
    if let Some(dir) = explicit
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("STRIATE_DATA").map(PathBuf::from))
    {
        return load_idx_dir(&dir).map(Some);
    }
    for dir in DEFAULT_DIRS.iter().map(PathBuf::from) {
        if find_file(&dir, "train-images-idx3-ubyte").is_some() {
            return load_idx_dir(&dir).map(Some);
        }
    }
    Ok(None)
}

/// Loads the four IDX files (`train-images-idx3-ubyte[.gz]`, ...) from `dir`.
pub fn load_idx_dir(dir: &Path) -> Result<DataSplit> {
    let file = |stem: &str| {
        find_file(dir, stem).ok_or_else(|| Error::Data {
            path: dir.join(stem),
            message: format!("not found (with or without .gz); {GET_DATA_HINT}"),
        })
    };
    let train = read_pair(
        &file("train-images-idx3-ubyte")?,
        &file("train-labels-idx1-ubyte")?,
    )?;
    let test = read_pair(
        &file("t10k-images-idx3-ubyte")?,
        &file("t10k-labels-idx1-ubyte")?,
    )?;
    Ok(DataSplit {
        description: format!(
            "Fashion-MNIST from {} ({} train, {} test images)",
            dir.display(),
            train.len(),
            test.len()
        ),
        train,
        val: None,
        test,
        synthetic: false,
    })
}

fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(format!("{stem}.gz")), dir.join(stem)]
        .into_iter()
        .find(|p| p.is_file())
}

fn read_pair(images_path: &Path, labels_path: &Path) -> Result<Dataset> {
    let (dims, pixels) = read_idx(images_path, 3)?;
    let (label_dims, label_bytes) = read_idx(labels_path, 1)?;
    if label_dims[0] != dims[0] {
        let message = format!(
            "{} labels for {} images in {}",
            label_dims[0],
            dims[0],
            images_path.display()
        );
        return Err(Error::Data {
            path: labels_path.into(),
            message,
        });
    }
    if let Some(bad) = label_bytes.iter().find(|&&l| l >= 10) {
        return Err(Error::Data {
            path: labels_path.into(),
            message: format!("label {bad} out of range 0..10"),
        });
    }
    Ok(Dataset {
        pixels,
        labels: label_bytes.iter().map(|&l| u32::from(l)).collect(),
        c: 1,
        h: dims[1],
        w: dims[2],
        n_classes: 10,
        classes: FASHION_MNIST_CLASSES.map(String::from).to_vec(),
        norm: Normalize::fashion_mnist(),
    })
}

/// Reads an IDX file of unsigned bytes with `rank` dimensions (gzipped if it ends in `.gz`).
/// Returns the dims and the data; every inconsistency is an error naming the file.
pub fn read_idx(path: &Path, rank: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let err = |message: String| Error::Data {
        path: path.into(),
        message,
    };
    let raw = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| err(format!("not a valid gzip file: {e}")))?;
        out
    } else {
        raw
    };
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(err(format!(
            "{} bytes is too short for an IDX header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || usize::from(bytes[3]) != rank {
        return Err(err(format!(
            "not an IDX file of unsigned bytes with {rank} dims (magic {:02x?})",
            &bytes[..4]
        )));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let numel: usize = dims.iter().product();
    if bytes.len() - header != numel {
        return Err(err(format!(
            "header says {dims:?} ({numel} bytes) but the file holds {}",
            bytes.len() - header
        )));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Names of the synthetic classes, in label order.
pub const SYNTHETIC_CLASSES: [&str; 10] = [
    "horizontal bar",
    "vertical bar",
    "square",
    "filled square",
    "disc",
    "ring",
    "plus",
    "diagonal",
    "anti-diagonal",
    "x",
];

/// A deterministic stand-in for Fashion-MNIST that striate draws itself: 28×28 images of ten
/// shape classes at random sizes and places, with stroke-width jitter and pixel noise.
pub fn synthetic(n_train: usize, n_test: usize, seed: u64) -> DataSplit {
    let make = |n: usize, seed: u64| {
        let mut rng = Rng::new(seed);
        let mut pixels = Vec::with_capacity(n * 28 * 28);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let label = rng.below(10) as u32;
            pixels.extend(
                draw_shape(&mut rng, label)
                    .iter()
                    .map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8),
            );
            labels.push(label);
        }
        Dataset {
            pixels,
            labels,
            c: 1,
            h: 28,
            w: 28,
            n_classes: 10,
            classes: SYNTHETIC_CLASSES.map(String::from).to_vec(),
            norm: Normalize::fashion_mnist(),
        }
    };
    DataSplit {
        train: make(n_train, seed),
        val: None,
        test: make(n_test, seed ^ 0x5eed),
        description: format!(
            "synthetic shapes ({n_train} train, {n_test} test images: {}); for Fashion-MNIST: {GET_DATA_HINT}",
            SYNTHETIC_CLASSES.join(", ")
        ),
        synthetic: true,
    }
}

/// One 28×28 image of class `label`, pixels in [0, 1].
fn draw_shape(rng: &mut Rng, label: u32) -> Vec<f32> {
    let size = rng.range(8.0, 18.0);
    let half = size / 2.0;
    let cx = rng.range(2.0 + half, 26.0 - half);
    let cy = rng.range(2.0 + half, 26.0 - half);
    let stroke = rng.range(1.0, 2.5);
    let ink = rng.range(0.6, 1.0);
    let mut img = vec![0f32; 28 * 28];
    for y in 0..28 {
        for x in 0..28 {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let inside = dx.abs() <= half && dy.abs() <= half;
            let r = (dx * dx + dy * dy).sqrt();
            let on = match label {
                0 => dy.abs() <= stroke && dx.abs() <= half,
                1 => dx.abs() <= stroke && dy.abs() <= half,
                2 => inside && (half - dx.abs() <= stroke || half - dy.abs() <= stroke),
                3 => inside,
                4 => r <= half,
                5 => (r - half + stroke).abs() <= stroke,
                6 => inside && (dx.abs() <= stroke || dy.abs() <= stroke),
                7 => inside && (dx - dy).abs() <= stroke * 1.4,
                8 => inside && (dx + dy).abs() <= stroke * 1.4,
                _ => inside && ((dx - dy).abs() <= stroke * 1.4 || (dx + dy).abs() <= stroke * 1.4),
            };
            let noise = rng.range(-0.15, 0.15);
            img[y * 28 + x] = (if on { ink } else { 0.0 } + noise).clamp(0.0, 1.0);
        }
    }
    img
}

/// One batch: `n · h · w` pixels and `n` labels.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Normalised pixels.
    pub images: Vec<f32>,
    /// Labels.
    pub labels: Vec<u32>,
}

/// Yields the batches of one pass over `data` from a background thread, a few batches ahead,
/// so the next batch is ready before the GPU finishes the current step. With `shuffle_seed`
/// the order is a seeded permutation; `drop_last` drops a final partial batch (training),
/// otherwise it is yielded short (evaluation covers every image).
pub fn batches(
    data: Arc<Dataset>,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    drop_last: bool,
) -> Receiver<Batch> {
    load(
        data,
        batch_size,
        shuffle_seed,
        drop_last,
        Augment::default(),
    )
}

/// One training epoch: shuffled by `seed`, whole batches only, each image augmented on the
/// loader thread by `augment` (its random draws seeded by `seed` too, so a run repeats).
pub fn train_batches(
    data: Arc<Dataset>,
    batch_size: usize,
    seed: u64,
    augment: Augment,
) -> Receiver<Batch> {
    load(data, batch_size, Some(seed), true, augment)
}

fn load(
    data: Arc<Dataset>,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    drop_last: bool,
    augment: Augment,
) -> Receiver<Batch> {
    let (tx, rx) = sync_channel(4);
    thread::spawn(move || {
        let mut order: Vec<usize> = (0..data.len()).collect();
        if let Some(seed) = shuffle_seed {
            Rng::new(seed).shuffle(&mut order);
        }
        let mut rng = Rng::new(shuffle_seed.unwrap_or(0) ^ 0xa09_3e47);
        let tables = data.norm.tables();
        let mut scratch = Vec::new();
        for chunk in order.chunks(batch_size) {
            if drop_last && chunk.len() < batch_size {
                break;
            }
            let mut images = Vec::with_capacity(chunk.len() * data.image_len());
            for &i in chunk {
                if augment.is_identity() {
                    data.extend_normalised(data.image(i), &tables, &mut images);
                } else {
                    augment.geometric(&mut rng, &data, i, &mut scratch);
                    let start = images.len();
                    data.extend_normalised(&scratch, &tables, &mut images);
                    augment.erase(&mut rng, &data, &mut images[start..]);
                }
            }
            let labels = chunk.iter().map(|&i| data.labels[i]).collect();
            if tx.send(Batch { images, labels }).is_err() {
                return; // The consumer stopped early.
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("striate-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x-idx3-ubyte");
        let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        bytes.extend(0..12u8);
        std::fs::write(&path, &bytes).unwrap();
        let (dims, data) = read_idx(&path, 3).unwrap();
        assert_eq!((dims, data.len()), (vec![2, 2, 3], 12));

        std::fs::write(&path, &bytes[..20]).unwrap();
        let err = read_idx(&path, 3).unwrap_err().to_string();
        assert!(
            err.contains("x-idx3-ubyte") && err.contains("holds 4"),
            "{err}"
        );
        let err = read_idx(&path, 1).unwrap_err().to_string();
        assert!(err.contains("not an IDX file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn synthetic_is_deterministic_and_balanced() {
        let a = synthetic(500, 100, 3);
        let b = synthetic(500, 100, 3);
        assert_eq!(a.train.pixels, b.train.pixels);
        for class in 0..10 {
            let n = a.train.labels.iter().filter(|&&l| l == class).count();
            assert!(
                (25..=75).contains(&n),
                "class {class} has {n} of 500 images"
            );
        }
    }

    #[test]
    fn validation_splits_are_seeded_disjoint_and_complete() {
        let split = synthetic(100, 10, 1);
        let a = split.clone().with_validation(0.2, 5).unwrap();
        let b = split.clone().with_validation(0.2, 5).unwrap();
        let (val, train) = (a.val.as_ref().unwrap(), &a.train);
        assert_eq!((train.len(), val.len()), (80, 20));
        assert_eq!(
            val.pixels,
            b.val.as_ref().unwrap().pixels,
            "same seed, same split"
        );
        let c = split.clone().with_validation(0.2, 6).unwrap();
        assert_ne!(
            val.pixels,
            c.val.unwrap().pixels,
            "another seed, another split"
        );
        // Every original image lands in exactly one part.
        let mut all: Vec<&[u8]> = (0..80).map(|i| train.image(i)).collect();
        all.extend((0..20).map(|i| val.image(i)));
        let mut want: Vec<&[u8]> = (0..100).map(|i| split.train.image(i)).collect();
        all.sort();
        want.sort();
        assert_eq!(all, want);
        assert!(split.train.split(1.0, 0).is_err());
        assert!(split.train.truncate(1).split(0.5, 0).is_err());
    }

    #[test]
    fn normalisation_statistics_are_per_channel() {
        // Channel 0 all 51 (0.2), channel 1 alternating 0 and 255 (mean 0.5, std 0.5).
        let mut pixels = Vec::new();
        for _ in 0..2 {
            pixels.extend([51u8; 4]);
            pixels.extend([0u8, 255, 0, 255]);
        }
        let data = Dataset {
            pixels,
            labels: vec![0, 1],
            c: 2,
            h: 2,
            w: 2,
            n_classes: 2,
            classes: vec!["a".into(), "b".into()],
            norm: Normalize::fashion_mnist(),
        };
        let norm = Normalize::of(&data);
        assert!((norm.mean[0] - 0.2).abs() < 1e-6 && (norm.mean[1] - 0.5).abs() < 1e-6);
        assert_eq!(norm.std[0], 1.0, "a constant channel keeps std 1");
        assert!((norm.std[1] - 0.5).abs() < 1e-6);
        let data = Dataset { norm, ..data };
        assert_eq!(
            data.images(0, 1),
            [0.0, 0.0, 0.0, 0.0, -1.0, 1.0, -1.0, 1.0]
        );
    }

    #[test]
    fn batches_cover_everything_once() {
        let data = Arc::new(synthetic(103, 1, 0).train);
        let seen: Vec<u32> = batches(data.clone(), 10, Some(1), false)
            .into_iter()
            .flat_map(|b| b.labels)
            .collect();
        assert_eq!(seen.len(), 103);
        let mut a = seen.clone();
        let mut b = data.labels.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(batches(data, 10, Some(1), true).into_iter().count(), 10);
    }
}
