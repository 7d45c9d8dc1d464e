//! Checkpoint files: named tensors and string metadata in the safetensors format, written so a
//! crash at any moment leaves the previous file whole, read with every inconsistency named.
//!
//! A save writes `NAME.partial` next to the target, flushes it to the disk (`fsync`), renames
//! it over the target (atomic on POSIX file systems) and syncs the directory so the rename
//! itself survives a power cut. Until the rename the old file is untouched; after it the new
//! one is complete.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::ir::CpuTensor;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// The tensors and metadata of one checkpoint file.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    /// Tensors by name, in the file's order (sorted by name).
    pub tensors: Vec<(String, CpuTensor)>,
    /// String metadata (the safetensors header's `__metadata__`).
    pub meta: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&CpuTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Writes the checkpoint to `path` crash-safely (see the module docs).
    pub fn write(&self, path: &Path) -> Result<()> {
        let err = |message: String| Error::Checkpoint {
            path: path.into(),
            message,
        };
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let dtype = match t.shape.dtype {
                    DType::F32 => safetensors::Dtype::F32,
                    DType::U32 => safetensors::Dtype::U32,
                };
                safetensors::tensor::TensorView::new(dtype, t.shape.dims.clone(), t.bytes())
                    .map(|v| (name.clone(), v))
                    .map_err(|e| err(format!("tensor {name}: {e}")))
            })
            .collect::<Result<_>>()?;
        let meta: HashMap<String, String> = self.meta.clone().into_iter().collect();
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| err(e.to_string()))?;
        write_atomic(path, &bytes)
    }

    /// Reads a checkpoint; a missing, truncated or corrupt file is an error naming it.
    pub fn read(path: &Path) -> Result<Self> {
        let err = |message: String| Error::Checkpoint {
            path: path.into(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            err(format!(
                "not a valid safetensors file ({e}); truncated or corrupt?"
            ))
        })?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| err(format!("unreadable header: {e}")))?;
        let meta = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut tensors = Vec::new();
        let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
        names.sort();
        for name in names {
            let view = file.tensor(&name).map_err(|e| err(e.to_string()))?;
            let dims = view.shape().to_vec();
            let data = view.data();
            let tensor = match view.dtype() {
                safetensors::Dtype::F32 => CpuTensor::from_f32(
                    dims,
                    data.chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                        .collect(),
                ),
                safetensors::Dtype::U32 => CpuTensor::from_u32(
                    dims,
                    data.chunks_exact(4)
                        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                        .collect(),
                ),
                // Counters (PyTorch's num_batches_tracked) as u32.
                safetensors::Dtype::I64 => {
                    let values = data
                        .chunks_exact(8)
                        .map(|b| {
                            let v = i64::from_le_bytes(b.try_into().expect("8 bytes"));
                            u32::try_from(v).map_err(|_| {
                                err(format!(
                                    "tensor {name} holds {v}, beyond striate's u32 counters"
                                ))
                            })
                        })
                        .collect::<Result<Vec<u32>>>()?;
                    CpuTensor::from_u32(dims, values)
                }
                other => {
                    return Err(err(format!(
                        "tensor {name} is {other:?}; striate reads F32 weights (in PyTorch: \
                         save_file({{k: v.float() ...}})), U32 and I64 counters"
                    )))
                }
            };
            tensors.push((name, tensor));
        }
        Ok(Checkpoint { tensors, meta })
    }

    /// Checks that this checkpoint holds exactly the tensors `want` names, with their shapes
    /// and dtypes; the error lists every missing, unexpected and mismatched tensor.
    pub fn check_against(&self, want: &[(String, Shape)], path: &Path) -> Result<()> {
        let mut problems = Vec::new();
        for (name, shape) in want {
            match self.tensor(name) {
                None => problems.push(format!("missing {name} ({shape})")),
                Some(t) if &t.shape != shape => problems.push(format!(
                    "{name} is {} in the file, the model has {shape}",
                    t.shape
                )),
                Some(_) => {}
            }
        }
        for (name, t) in &self.tensors {
            if !want.iter().any(|(n, _)| n == name) {
                problems.push(format!("unexpected {name} ({})", t.shape));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::Checkpoint {
            path: path.into(),
            message: format!("does not match the model: {}", problems.join("; ")),
        })
    }
}

/// Writes `bytes` to `path` through `path.partial`, fsync, rename and a directory sync.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let err = |message: String| Error::Checkpoint {
        path: path.into(),
        message,
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    let tmp = path.with_file_name(name);
    let mut file =
        std::fs::File::create(&tmp).map_err(|e| err(format!("creating {}: {e}", tmp.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| err(format!("writing {}: {e}", tmp.display())))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| err(format!("renaming {}: {e}", tmp.display())))?;
    // The rename is durable once the directory's entry is (Linux; elsewhere best effort).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            tensors: vec![
                (
                    "a.weight".into(),
                    CpuTensor::from_f32([2, 3], (0..6).map(|v| v as f32 * 0.5).collect()),
                ),
                ("optimizer.step".into(), CpuTensor::from_u32([1], vec![42])),
            ],
            meta: [("epoch".to_string(), "3".to_string())].into(),
        }
    }

    #[test]
    fn round_trip_keeps_tensors_dtypes_and_metadata() {
        let dir = std::env::temp_dir().join(format!("striate-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.safetensors");
        sample().write(&path).unwrap();
        let back = Checkpoint::read(&path).unwrap();
        assert_eq!(back.meta["epoch"], "3");
        assert_eq!(back.tensor("optimizer.step").unwrap().u32(), [42]);
        assert_eq!(back.tensor("a.weight").unwrap().f32()[5], 2.5);
        assert!(!dir.join("c.safetensors.partial").exists());

        // Truncated: named, not a panic.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let e = Checkpoint::read(&path).unwrap_err().to_string();
        assert!(
            e.contains("c.safetensors") && e.contains("truncated or corrupt"),
            "{e}"
        );
        std::fs::write(&path, b"garbage").unwrap();
        assert!(Checkpoint::read(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mismatches_are_all_named() {
        let want = vec![
            ("a.weight".to_string(), Shape::f32([3, 2])),
            ("b.bias".to_string(), Shape::f32([4])),
        ];
        let e = sample()
            .check_against(&want, Path::new("x.safetensors"))
            .unwrap_err()
            .to_string();
        for part in [
            "a.weight is [2, 3]",
            "missing b.bias",
            "unexpected optimizer.step",
        ] {
            assert!(e.contains(part), "{e}");
        }
    }
}
