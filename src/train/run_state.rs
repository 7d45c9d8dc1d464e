//! A training run's checkpoints: what one holds besides the training state's tensors (the
//! run's arguments, where it stands, its validation accuracy and curves, under the keys of
//! [`meta`]), how a run writes them into a directory as it goes ([`Saver`]) and how it is
//! resumed from one ([`Resume`]). `train-gpu --checkpoint` and `--resume` use these, so a
//! program can resume what the tool wrote and the tool what a program wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Trainer;
use crate::checkpoint::Checkpoint;
use crate::plots::EpochPoint;
use crate::{Error, Result};

/// The metadata keys of a run's checkpoint (beside those the training state has none).
pub mod meta {
    /// The command line that started the run, a JSON array of strings (program name first).
    pub const ARGS: &str = "args";
    /// The epoch to continue with (from 1), a decimal number.
    pub const NEXT_EPOCH: &str = "next_epoch";
    /// The steps of that epoch already taken, a decimal number.
    pub const SKIP_STEPS: &str = "skip_steps";
    /// The optimizer steps taken in all, a decimal number.
    pub const GLOBAL_STEP: &str = "global_step";
    /// The validation accuracy of the epoch just ended (a fraction), where there is one.
    pub const VAL_ACC: &str = "val_acc";
    /// The run's [`Curves`](super::Curves) so far, JSON.
    pub const CURVES: &str = "curves";
}

/// Where a run stands at a checkpoint: it goes on with step `skip_steps` (from 0) of epoch
/// `next_epoch` (from 1), after `global_step` optimizer steps in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunPosition {
    /// The epoch to continue with (from 1).
    pub next_epoch: usize,
    /// The steps of `next_epoch` already taken (0 at an epoch's start).
    pub skip_steps: usize,
    /// The optimizer steps taken in all (the learning-rate schedule's position).
    pub global_step: usize,
}

/// A run's training curves so far, for [`crate::plots::training_curves`]: a resumed run draws
/// its whole history, not only what followed the resume.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curves {
    /// One point per finished epoch.
    pub epochs: Vec<EpochPoint>,
    /// (epoch, running loss) whenever the loss was read.
    pub running: Vec<(f64, f64)>,
    /// (epoch, learning rate) every step.
    pub lr: Vec<(f64, f64)>,
}

impl Curves {
    /// The curves as checkpoint metadata ([`meta::CURVES`]): JSON with `epochs` (rows of epoch,
    /// train loss, train accuracy, validation loss, validation accuracy (null without a
    /// validation set), test loss, test accuracy), `running` and `lr` (rows of two numbers).
    pub fn to_meta(&self) -> String {
        let epochs: Vec<_> = self
            .epochs
            .iter()
            .map(|e| {
                let (val_loss, val_acc) = e.val.unzip();
                serde_json::json!([
                    e.epoch,
                    e.train_loss,
                    e.train_acc,
                    val_loss,
                    val_acc,
                    e.test.0,
                    e.test.1
                ])
            })
            .collect();
        serde_json::json!({"epochs": epochs, "running": self.running, "lr": self.lr}).to_string()
    }

    /// The curves a checkpoint's metadata carries; empty for one without (or with unreadable)
    /// curves, which loses only pictures. Rows that do not read are left out.
    pub fn from_meta(ckpt_meta: &BTreeMap<String, String>) -> Self {
        use serde_json::Value;
        let Some(stored) = ckpt_meta
            .get(meta::CURVES)
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
        else {
            return Curves::default();
        };
        let rows = |key: &str| -> Vec<Vec<Option<f64>>> {
            stored[key]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter_map(Value::as_array)
                        .map(|row| row.iter().map(Value::as_f64).collect())
                        .collect()
                })
                .unwrap_or_default()
        };
        let pairs = |key: &str| -> Vec<(f64, f64)> {
            rows(key)
                .into_iter()
                .filter_map(|row| Some((row.first().copied()??, row.get(1).copied()??)))
                .collect()
        };
        let epochs = rows("epochs")
            .into_iter()
            .filter_map(|row| {
                let at = |i: usize| row.get(i).copied().flatten();
                Some(EpochPoint {
                    epoch: at(0)?,
                    train_loss: at(1)?,
                    train_acc: at(2)?,
                    val: at(3).zip(at(4)),
                    test: (at(5)?, at(6)?),
                })
            })
            .collect();
        Curves {
            epochs,
            running: pairs("running"),
            lr: pairs("lr"),
        }
    }
}

/// Everything a run's checkpoint says besides its tensors (the keys of [`meta`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunMeta {
    /// The command line that started the run, program name first: `train-gpu`'s when the tool
    /// wrote it (a resumed `train-gpu` run parses it again, so a program that wants the tool
    /// to resume its checkpoints stores a `train-gpu` command line for the same model,
    /// optimizer and data).
    pub args: Vec<String>,
    /// Where the run stands.
    pub position: RunPosition,
    /// The validation accuracy of the epoch just ended; `None` mid-epoch or without a
    /// validation set.
    pub val_acc: Option<f64>,
    /// The curves so far.
    pub curves: Curves,
}

impl RunMeta {
    /// Writes the run's metadata into `ckpt_meta` (a checkpoint's), replacing these keys.
    pub fn write_to(&self, ckpt_meta: &mut BTreeMap<String, String>) {
        write_meta(
            ckpt_meta,
            &self.args,
            self.position,
            self.val_acc,
            &self.curves,
        );
    }

    /// Reads a run's metadata from `ckpt_meta`, the metadata of the checkpoint at `path` (which
    /// the errors name). The arguments and the position must be there; the validation accuracy
    /// and the curves are left out where missing or unreadable (they lose only a comparison
    /// and pictures).
    pub fn read_from(ckpt_meta: &BTreeMap<String, String>, path: &Path) -> Result<Self> {
        let get = |key: &str| -> Result<&String> {
            ckpt_meta.get(key).ok_or_else(|| {
                Error::RunState(format!(
                    "{}: not a train-gpu checkpoint (no {key:?} in its metadata)",
                    path.display()
                ))
            })
        };
        let number = |key: &str| -> Result<usize> {
            get(key)?.parse().map_err(|e| {
                Error::RunState(format!("{}: {key} is not a number: {e}", path.display()))
            })
        };
        let args: Vec<String> = serde_json::from_str(get(meta::ARGS)?)
            .map_err(|e| Error::RunState(format!("{}: unreadable args: {e}", path.display())))?;
        Ok(RunMeta {
            args,
            position: RunPosition {
                next_epoch: number(meta::NEXT_EPOCH)?,
                skip_steps: number(meta::SKIP_STEPS)?,
                global_step: number(meta::GLOBAL_STEP)?,
            },
            val_acc: ckpt_meta.get(meta::VAL_ACC).and_then(|a| a.parse().ok()),
            curves: Curves::from_meta(ckpt_meta),
        })
    }
}

/// Writes the run's keys of [`meta`] into `ckpt_meta` (for [`RunMeta::write_to`] and
/// [`Saver::save`]).
fn write_meta(
    ckpt_meta: &mut BTreeMap<String, String>,
    args: &[String],
    position: RunPosition,
    val_acc: Option<f64>,
    curves: &Curves,
) {
    ckpt_meta.insert(meta::CURVES.into(), curves.to_meta());
    // Serialising a slice of strings cannot fail (no maps with non-string keys, no I/O).
    let args = serde_json::to_string(args).expect("a list of strings is JSON");
    ckpt_meta.insert(meta::ARGS.into(), args);
    ckpt_meta.insert(meta::NEXT_EPOCH.into(), position.next_epoch.to_string());
    ckpt_meta.insert(meta::SKIP_STEPS.into(), position.skip_steps.to_string());
    ckpt_meta.insert(meta::GLOBAL_STEP.into(), position.global_step.to_string());
    match val_acc {
        Some(acc) => ckpt_meta.insert(meta::VAL_ACC.into(), acc.to_string()),
        None => ckpt_meta.remove(meta::VAL_ACC),
    };
}

/// Where a resumed run starts: a checkpoint of its whole training state and its
/// [`RunMeta`].
#[derive(Clone, Debug)]
pub struct Resume {
    /// The checkpoint file.
    pub path: PathBuf,
    /// The checkpoint directory, when [`Resume::find`] was given one.
    pub dir: Option<PathBuf>,
    /// The checkpoint: the training state ([`Trainer::checkpoint`]) and its metadata.
    pub ckpt: Checkpoint,
    /// What its metadata says about the run.
    pub run: RunMeta,
}

impl Resume {
    /// The newest checkpoint in `path` (a directory [`Saver`] writes into), or `path` itself
    /// (a checkpoint file); the error names a directory without checkpoints and a file
    /// without a run's metadata.
    pub fn find(path: &Path) -> Result<Self> {
        let (file, dir) = if path.is_dir() {
            let newest = Saver::checkpoints(path)?.pop().ok_or_else(|| {
                Error::RunState(format!(
                    "{}: no checkpoint (ckpt-*.safetensors) to resume",
                    path.display()
                ))
            })?;
            (newest, Some(path.to_path_buf()))
        } else {
            (path.to_path_buf(), None)
        };
        let ckpt = Checkpoint::read(&file)?;
        let run = RunMeta::read_from(&ckpt.meta, &file)?;
        Ok(Resume {
            path: file,
            dir,
            ckpt,
            run,
        })
    }

    /// Loads the checkpoint's training state into `trainer`, which must be built for the same
    /// model and optimizer (see [`Trainer::restore`]).
    pub fn restore(&self, trainer: &Trainer) -> Result<()> {
        trainer.restore(&self.ckpt, &self.path)
    }
}

/// Writes a run's checkpoints into a directory: `ckpt-<global step, 10 digits>.safetensors`
/// (the whole training state and the run's [`meta`]), the newest `keep` kept, and
/// `best.safetensors` whenever the validation accuracy improves on the best so far. Every
/// file is written crash-safely ([`Checkpoint::write`]).
#[derive(Clone, Debug)]
pub struct Saver {
    dir: PathBuf,
    keep: usize,
    args: Vec<String>,
    best: Option<f64>,
}

impl Saver {
    /// A saver into `dir` (created if missing) keeping the newest `keep` checkpoints (at least
    /// one), storing `args` as the run's command line ([`RunMeta::args`]). The best validation
    /// accuracy so far is the one `dir/best.safetensors` holds, so a resumed run keeps it.
    pub fn new(dir: &Path, keep: usize, args: Vec<String>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::RunState(format!(
                "creating the checkpoint directory {}: {e}",
                dir.display()
            ))
        })?;
        let best = Checkpoint::read(&dir.join("best.safetensors"))
            .ok()
            .and_then(|c| c.meta.get(meta::VAL_ACC)?.parse().ok());
        Ok(Saver {
            dir: dir.into(),
            keep: keep.max(1),
            args,
            best,
        })
    }

    /// The checkpoints (`ckpt-*.safetensors`) in `dir`, oldest first.
    pub fn checkpoints(dir: &Path) -> Result<Vec<PathBuf>> {
        let mut res: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::RunState(format!("reading {}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("ckpt-") && n.ends_with(".safetensors")
                })
            })
            .collect();
        res.sort();
        Ok(res)
    }

    /// The best validation accuracy saved so far (`best.safetensors`'s).
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Saves `trainer`'s whole training state at `position` with the run's metadata, removes
    /// the checkpoints beyond the newest `keep`, and with a validation accuracy `val_acc` (the
    /// epoch's) better than the best so far also writes `best.safetensors`.
    pub fn save(
        &mut self,
        trainer: &Trainer,
        position: RunPosition,
        val_acc: Option<f64>,
        curves: &Curves,
    ) -> Result<()> {
        let mut ckpt = trainer.checkpoint()?;
        write_meta(&mut ckpt.meta, &self.args, position, val_acc, curves);
        let name = format!("ckpt-{:010}.safetensors", position.global_step);
        ckpt.write(&self.dir.join(name))?;
        let all = Self::checkpoints(&self.dir)?;
        for old in &all[..all.len().saturating_sub(self.keep)] {
            std::fs::remove_file(old)
                .map_err(|e| Error::RunState(format!("removing {}: {e}", old.display())))?;
        }
        if let Some(acc) = val_acc.filter(|&a| self.best.is_none_or(|b| a > b)) {
            ckpt.write(&self.dir.join("best.safetensors"))?;
            self.best = Some(acc);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata in the form `train-gpu` has written since its checkpoints carried curves (the
    /// keys, decimal numbers and JSON of their headers): still read, value for value.
    fn written_by_train_gpu() -> BTreeMap<String, String> {
        [
            (
                "args",
                r#"["train-gpu","--model","lenet5","--synthetic","--epochs","2","--checkpoint","/tmp/run"]"#,
            ),
            ("next_epoch", "2"),
            ("skip_steps", "3"),
            ("global_step", "15"),
            ("val_acc", "0.8125"),
            (
                "curves",
                r#"{"epochs":[[1.0,2.25,0.125,2.5,0.25,2.75,0.375]],"lr":[[0.5,0.001],[1.0,0.0005]],"running":[[0.5,2.3],[1.0,2.2]]}"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn metadata_train_gpu_wrote_reads_back_value_for_value() {
        let run = RunMeta::read_from(&written_by_train_gpu(), Path::new("c.safetensors"))
            .expect("readable");
        assert_eq!(run.args[1..3], ["--model", "lenet5"]);
        assert_eq!(run.args.len(), 8);
        assert_eq!(
            run.position,
            RunPosition {
                next_epoch: 2,
                skip_steps: 3,
                global_step: 15
            }
        );
        assert_eq!(run.val_acc, Some(0.8125));
        assert_eq!(run.curves.lr, [(0.5, 0.001), (1.0, 0.0005)]);
        assert_eq!(run.curves.running, [(0.5, 2.3), (1.0, 2.2)]);
        let e = run.curves.epochs[0];
        assert_eq!(
            (e.epoch, e.train_loss, e.train_acc, e.val, e.test),
            (1.0, 2.25, 0.125, Some((2.5, 0.25)), (2.75, 0.375))
        );
        // Written again, the same strings: the format is unchanged.
        let mut again = BTreeMap::new();
        run.write_to(&mut again);
        assert_eq!(again, written_by_train_gpu());
    }

    #[test]
    fn missing_position_is_named_and_bad_curves_lose_only_pictures() {
        let mut meta = written_by_train_gpu();
        meta.insert("curves".into(), "{not json".into());
        meta.remove("val_acc");
        let run = RunMeta::read_from(&meta, Path::new("c.safetensors")).expect("readable");
        assert_eq!((run.curves, run.val_acc), (Curves::default(), None));
        meta.remove("skip_steps");
        let e = RunMeta::read_from(&meta, Path::new("c.safetensors"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "c.safetensors: not a train-gpu checkpoint (no \"skip_steps\" in its metadata)"
        );
        meta.insert("skip_steps".into(), "three".into());
        let e = RunMeta::read_from(&meta, Path::new("c.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.safetensors: skip_steps is not a number"),
            "{e}"
        );
    }
}
