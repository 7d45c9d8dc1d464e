//! Datasets: the IDX reader (MNIST, Fashion-MNIST; gzipped or raw), where to find the files,
//! the synthetic dataset striate generates when none is installed, and the background batch
//! loader.

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

/// Images (one channel, kept as bytes) and labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `n · h · w` pixels, 0..=255: a byte each, a quarter of what normalised f32 would take
    /// (Fashion-MNIST's training set: 47 MB instead of 188 MB). [`Dataset::images`] gives the
    /// normalised floats the network sees.
    pub pixels: Vec<u8>,
    /// `n` labels, each `< n_classes`.
    pub labels: Vec<u32>,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Number of classes.
    pub n_classes: usize,
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

    /// Images `start..start + count` as normalised f32, NCHW: `(pixel / 255 - mean) / std`
    /// with Fashion-MNIST's mean 0.2860 and std 0.3530.
    pub fn images(&self, start: usize, count: usize) -> Vec<f32> {
        let pixels = self.h * self.w;
        let mut out = Vec::with_capacity(count * pixels);
        self.extend_images(start..start + count, &mut out);
        out
    }

    /// Appends the normalised pixels of the images `indices` to `out`.
    pub fn extend_images(&self, indices: impl IntoIterator<Item = usize>, out: &mut Vec<f32>) {
        let table = normalised_bytes();
        let pixels = self.h * self.w;
        for i in indices {
            out.extend(
                self.pixels[i * pixels..(i + 1) * pixels]
                    .iter()
                    .map(|&p| table[usize::from(p)]),
            );
        }
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.pixels.truncate(n * self.h * self.w);
        self.labels.truncate(n);
        self
    }
}

/// A train/test pair and where it came from.
#[derive(Clone, Debug)]
pub struct DataSplit {
    /// Training images.
    pub train: Dataset,
    /// Test images.
    pub test: Dataset,
    /// A line saying which data this is.
    pub description: String,
    /// True for the generated stand-in.
    pub synthetic: bool,
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
        h: dims[1],
        w: dims[2],
        n_classes: 10,
    })
}

/// The normalised value of each byte.
fn normalised_bytes() -> &'static [f32; 256] {
    static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|p| (p as f32 / 255.0 - MEAN) / STD))
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
            h: 28,
            w: 28,
            n_classes: 10,
        }
    };
    DataSplit {
        train: make(n_train, seed),
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
    let (tx, rx) = sync_channel(4);
    thread::spawn(move || {
        let mut order: Vec<usize> = (0..data.len()).collect();
        if let Some(seed) = shuffle_seed {
            Rng::new(seed).shuffle(&mut order);
        }
        let pixels = data.h * data.w;
        for chunk in order.chunks(batch_size) {
            if drop_last && chunk.len() < batch_size {
                break;
            }
            let mut images = Vec::with_capacity(chunk.len() * pixels);
            data.extend_images(chunk.iter().copied(), &mut images);
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
