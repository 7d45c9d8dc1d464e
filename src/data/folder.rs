//! Image-folder datasets, as torchvision's `ImageFolder`: `root/<class>/<image>`, classes the
//! sorted subdirectory names, images PNG, JPEG or BMP read with the `image` crate, converted to
//! grayscale or RGB and resized (bilinear) to the model's input size. `root/train` and
//! `root/test` (or `root/val`) are used as they are when present; otherwise a seeded fraction
//! of `root` is held out for testing.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use crate::data::{DataSplit, Dataset, Normalize};
use crate::{Error, Result};

/// File extensions read as images (case-insensitive).
pub const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// How an image folder becomes a dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FolderOptions {
    /// Output `[h, w]` every image is resized to.
    pub size: [usize; 2],
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Fraction held out for testing when the folder has no `train`/`test` split.
    pub test_fraction: f64,
    /// Seed of that split.
    pub seed: u64,
}

impl Default for FolderOptions {
    /// 32×32 RGB, a fifth held out, seed 0.
    fn default() -> Self {
        FolderOptions {
            size: [32, 32],
            channels: 3,
            test_fraction: 0.2,
            seed: 0,
        }
    }
}

/// True when `dir` holds class subdirectories of images (directly or under `train/`).
pub fn is_image_folder(dir: &Path) -> bool {
    let root = if dir.join("train").is_dir() {
        dir.join("train")
    } else {
        dir.to_path_buf()
    };
    class_dirs(&root).is_ok_and(|c| !c.is_empty())
}

/// Reads the image folder at `root` (see the module docs); normalised by the training images'
/// per-channel statistics.
pub fn load_image_folder(root: &Path, opts: &FolderOptions) -> Result<DataSplit> {
    if opts.channels != 1 && opts.channels != 3 {
        return Err(Error::InvalidArgument(format!(
            "images are read as 1 (grayscale) or 3 (RGB) channels, not {}",
            opts.channels
        )));
    }
    if opts.size.contains(&0) {
        return Err(Error::InvalidArgument(format!(
            "image size {:?} must be positive",
            opts.size
        )));
    }
    let test_dir = ["test", "val"]
        .map(|d| root.join(d))
        .into_iter()
        .find(|d| d.is_dir());
    let (train, test, how) = match (root.join("train").is_dir(), test_dir) {
        (true, Some(test_dir)) => {
            let train = read_folder(&root.join("train"), None, opts)?;
            let test = read_folder(&test_dir, Some(&train.classes), opts)?;
            (
                train,
                test,
                format!("{} and {}", "train/", test_dir.display()),
            )
        }
        _ => {
            let all = read_folder(root, None, opts)?;
            let (train, test) = all.split(opts.test_fraction, opts.seed)?;
            let how = format!(
                "a seeded {:.0}% held out for testing",
                opts.test_fraction * 100.0
            );
            (train, test, how)
        }
    };
    let [h, w] = opts.size;
    let split = DataSplit {
        description: format!(
            "image folder {} ({} classes, {} train and {} test images, {}x{h}x{w}; {how})",
            root.display(),
            train.n_classes,
            train.len(),
            test.len(),
            opts.channels,
        ),
        train,
        val: None,
        test,
        synthetic: false,
    };
    Ok(split.normalise_by_train())
}

/// The class subdirectories of `root`, sorted by name.
fn class_dirs(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let err = |e: std::io::Error| Error::Data {
        path: root.into(),
        message: e.to_string(),
    };
    let mut res = Vec::new();
    for entry in std::fs::read_dir(root).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.is_dir() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            res.push((name, path));
        }
    }
    res.sort();
    Ok(res)
}

/// Reads every image under `root/<class>/`; with `classes`, labels follow that list (a test
/// folder must use the training folder's classes).
fn read_folder(root: &Path, classes: Option<&[String]>, opts: &FolderOptions) -> Result<Dataset> {
    let dirs = class_dirs(root)?;
    if dirs.is_empty() {
        return Err(Error::Data {
            path: root.into(),
            message: "has no class subdirectories (expected root/<class>/<image>)".into(),
        });
    }
    let names: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => dirs.iter().map(|(n, _)| n.clone()).collect(),
    };
    let mut files = Vec::new();
    for (name, dir) in &dirs {
        let Some(label) = names.iter().position(|n| n == name) else {
            return Err(Error::Data {
                path: dir.clone(),
                message: format!("class {name:?} is not among the training classes {names:?}"),
            });
        };
        let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::Data {
                path: dir.clone(),
                message: e.to_string(),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| {
                    EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str())
                })
            })
            .collect();
        if images.is_empty() {
            return Err(Error::Data {
                path: dir.clone(),
                message: format!("class {name:?} holds no {} images", EXTENSIONS.join("/")),
            });
        }
        images.sort();
        files.extend(images.into_iter().map(|p| (p, label as u32)));
    }
    let [h, w] = opts.size;
    let len = opts.channels * h * w;
    // Decoding dominates: spread the files over the cores, keeping their order.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = files.len().div_ceil(threads).max(1);
    let decoded: Vec<Result<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(p, _)| decode(p, opts))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a decoding thread panicked"))
            .collect()
    });
    let mut pixels = Vec::with_capacity(files.len() * len);
    for image in decoded {
        pixels.extend(image?);
    }
    Ok(Dataset {
        pixels,
        labels: files.iter().map(|(_, l)| *l).collect(),
        c: opts.channels,
        h,
        w,
        n_classes: names.len(),
        classes: names,
        norm: Normalize {
            mean: vec![0.0; opts.channels],
            std: vec![1.0; opts.channels],
        },
    })
}

/// One image file as `channels · h · w` bytes (planes, NCHW).
pub fn decode(path: &Path, opts: &FolderOptions) -> Result<Vec<u8>> {
    let img = image::open(path).map_err(|e| Error::Data {
        path: path.into(),
        message: format!("cannot read the image: {e}"),
    })?;
    let [h, w] = opts.size;
    let img = img.resize_exact(w as u32, h as u32, FilterType::Triangle);
    Ok(if opts.channels == 1 {
        img.to_luma8().into_raw()
    } else {
        // Interleaved RGB to three planes.
        let rgb = img.to_rgb8().into_raw();
        (0..3)
            .flat_map(|ch| rgb.iter().skip(ch).step_by(3).copied())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `root/<class>/<i>.png` images of solid colours.
    fn write_folder(root: &Path, classes: &[(&str, [u8; 3])], per_class: usize, size: u32) {
        for (name, colour) in classes {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let img = image::RgbImage::from_pixel(size, size + 1, image::Rgb(*colour));
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }

    #[test]
    fn reads_resizes_and_splits_a_folder() {
        let root = std::env::temp_dir().join(format!("striate-folder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_folder(&root, &[("red", [200, 0, 0]), ("blue", [0, 0, 250])], 5, 9);
        std::fs::write(root.join("red").join("notes.txt"), "not an image").unwrap();
        assert!(is_image_folder(&root));
        let opts = FolderOptions {
            size: [6, 4],
            test_fraction: 0.3,
            ..Default::default()
        };
        let split = load_image_folder(&root, &opts).unwrap();
        assert_eq!(split.train.classes, ["blue", "red"]);
        assert_eq!(split.train.input_shape(), [3, 6, 4]);
        assert_eq!((split.train.len(), split.test.len()), (7, 3));
        // A red image: its red plane 200, the others 0; labels follow the sorted names.
        let i = split.train.labels.iter().position(|&l| l == 1).unwrap();
        let img = split.train.image(i);
        assert!(img[..24].iter().all(|&p| p == 200) && img[24..].iter().all(|&p| p == 0));
        let gray = load_image_folder(
            &root,
            &FolderOptions {
                channels: 1,
                ..opts
            },
        )
        .unwrap();
        assert_eq!(gray.train.input_shape(), [1, 6, 4]);

        std::fs::write(root.join("blue").join("broken.png"), b"not a png").unwrap();
        let err = load_image_folder(&root, &opts).unwrap_err().to_string();
        assert!(
            err.contains("broken.png") && err.contains("cannot read"),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
