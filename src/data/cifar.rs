//! CIFAR-10's binary format: `data_batch_1.bin` ... `data_batch_5.bin` and `test_batch.bin`,
//! each record one label byte then 3,072 pixel bytes (the 32×32 red plane, then green, then
//! blue, rows top to bottom): already NCHW. Class names come from `batches.meta.txt` when
//! it is there.

use std::path::Path;

use crate::data::{DataSplit, Dataset, Normalize};
use crate::{Error, Result};

/// CIFAR-10's class names, in label order.
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Bytes of one record: the label, then 3 × 32 × 32 pixels.
const RECORD: usize = 1 + 3 * 32 * 32;

/// The training batch files, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// True when `dir` looks like CIFAR-10's binary version.
pub fn is_cifar10_dir(dir: &Path) -> bool {
    dir.join(TRAIN_FILES[0]).is_file()
}

/// Reads CIFAR-10 from `dir` (the `cifar-10-batches-bin` directory): every `data_batch_*.bin`
/// present (at least the first) for training, `test_batch.bin` for testing. Normalised by the
/// training set's per-channel statistics.
pub fn load_cifar10_dir(dir: &Path) -> Result<DataSplit> {
    let classes = class_names(dir)?;
    let mut train = empty(&classes);
    let mut files = 0;
    for name in TRAIN_FILES {
        let path = dir.join(name);
        if path.is_file() || name == TRAIN_FILES[0] {
            read_batch(&path, &mut train)?;
            files += 1;
        }
    }
    let mut test = empty(&classes);
    read_batch(&dir.join("test_batch.bin"), &mut test)?;
    let split = DataSplit {
        description: format!(
            "CIFAR-10 from {} ({} train images from {files} batch file(s), {} test images)",
            dir.display(),
            train.len(),
            test.len()
        ),
        train,
        val: None,
        test,
        synthetic: false,
    };
    Ok(split.normalise_by_train())
}

fn empty(classes: &[String]) -> Dataset {
    Dataset {
        pixels: Vec::new(),
        labels: Vec::new(),
        c: 3,
        h: 32,
        w: 32,
        n_classes: classes.len(),
        classes: classes.to_vec(),
        norm: Normalize {
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        },
    }
}

/// `batches.meta.txt` (one name a line), else the standard names.
fn class_names(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("batches.meta.txt");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(CLASSES.map(String::from).to_vec());
    };
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != 10 {
        return Err(Error::Data {
            path,
            message: format!("lists {} class names, CIFAR-10 has 10", names.len()),
        });
    }
    Ok(names)
}

/// Appends the records of one batch file to `data`.
pub fn read_batch(path: &Path, data: &mut Dataset) -> Result<()> {
    let err = |message: String| Error::Data {
        path: path.into(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(err(format!(
            "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records",
            bytes.len()
        )));
    }
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = record[0];
        if usize::from(label) >= data.n_classes {
            return Err(err(format!(
                "record {i} has label {label}, out of range 0..{}",
                data.n_classes
            )));
        }
        data.labels.push(u32::from(label));
        data.pixels.extend_from_slice(&record[1..]);
    }
    Ok(())
}

/// Writes `labels` and `pixels` (`n · 3072` bytes) as a CIFAR-10 batch file: for tests, and
/// for anyone converting a dataset to the format.
pub fn write_batch(path: &Path, labels: &[u8], pixels: &[u8]) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(labels.len() * RECORD);
    for (i, &l) in labels.iter().enumerate() {
        bytes.push(l);
        bytes.extend_from_slice(&pixels[i * (RECORD - 1)..(i + 1) * (RECORD - 1)]);
    }
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_and_names_bad_files() {
        let dir = std::env::temp_dir().join(format!("striate-cifar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pixels: Vec<u8> = (0..3 * 3072).map(|i| (i % 251) as u8).collect();
        write_batch(&dir.join("data_batch_1.bin"), &[3, 9, 0], &pixels).unwrap();
        write_batch(&dir.join("data_batch_2.bin"), &[1], &pixels[..3072]).unwrap();
        write_batch(&dir.join("test_batch.bin"), &[7, 7], &pixels[..6144]).unwrap();
        assert!(is_cifar10_dir(&dir));
        let split = load_cifar10_dir(&dir).unwrap();
        assert_eq!(split.train.labels, [3, 9, 0, 1]);
        assert_eq!(split.train.input_shape(), [3, 32, 32]);
        assert_eq!(&split.train.pixels[..3 * 3072], &pixels[..]);
        assert_eq!(split.test.labels, [7, 7]);
        assert_eq!(split.train.classes[3], "cat");
        // Normalised by the training set: each channel's mean maps to 0.
        assert_eq!(split.test.norm, split.train.norm);
        let imgs = split.train.images(0, 4);
        let red: f32 = (0..4)
            .flat_map(|n| imgs[n * 3072..n * 3072 + 1024].iter())
            .sum();
        assert!(red.abs() < 1e-2 * 4096.0, "red mean {}", red / 4096.0);

        std::fs::write(dir.join("test_batch.bin"), &pixels[..100]).unwrap();
        let err = load_cifar10_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains("test_batch.bin") && err.contains("not a whole number"),
            "{err}"
        );
        let mut bad = vec![12u8];
        bad.extend_from_slice(&pixels[..3072]);
        std::fs::write(dir.join("test_batch.bin"), bad).unwrap();
        let err = load_cifar10_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("label 12"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
