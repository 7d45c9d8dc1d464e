//! `train-gpu` as a user runs it: --help, a short run with --json and --save, and bad input.

mod common;

use std::process::Command;

fn train_gpu(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_train-gpu"))
        .args(args)
        .output()
        .expect("train-gpu runs")
}

#[test]
fn help_lists_the_flags() {
    let out = train_gpu(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--model",
        "--data",
        "--epochs",
        "--batch-size",
        "--lr",
        "--optimizer",
        "--seed",
        "--save",
        "--adapter",
        "--json",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn a_short_run_reports_json_epochs_and_saves_a_checkpoint() {
    if common::gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("striate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let ckpt = dir.join("lenet.safetensors");
    let out = train_gpu(&[
        "--synthetic",
        "--epochs",
        "2",
        "--train-limit",
        "640",
        "--batch-size",
        "64",
        "--log-every",
        "5",
        "--json",
        "--save",
        ckpt.to_str().expect("utf-8 path"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "train-gpu failed:\n{stderr}");
    assert!(
        stderr.contains("adapter:") && stderr.contains("synthetic shapes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("XDG_RUNTIME_DIR"),
        "driver noise reaches the user:\n{stderr}"
    );

    let stdout = String::from_utf8_lossy(&out.stdout);
    let epochs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is JSON"))
        .collect();
    assert_eq!(epochs.len(), 2, "{stdout}");
    for (i, e) in epochs.iter().enumerate() {
        assert_eq!(e["epoch"], i + 1);
        assert_eq!(e["steps"], 10);
        for key in [
            "train_loss",
            "train_acc",
            "test_loss",
            "test_acc",
            "seconds",
            "images_per_sec",
        ] {
            assert!(e[key].as_f64().is_some_and(f64::is_finite), "{key} in {e}");
        }
        assert_eq!(e["test_images"], 2000, "evaluation covers every test image");
        assert_eq!(e["gpu_objects_created"], 0, "{e}");
        // Metrics are read after steps 5 and 10: 12 bytes each, nothing else.
        assert_eq!(e["bytes_downloaded"], 24, "{e}");
        assert_eq!(e["bytes_uploaded"], 10 * (64 * 784 * 4 + 64 * 4), "{e}");
    }
    let second_loss = epochs[1]["train_loss"].as_f64().expect("loss");
    assert!(
        second_loss < epochs[0]["train_loss"].as_f64().expect("loss"),
        "training loss does not fall: {stdout}"
    );
    assert!(std::fs::metadata(&ckpt).expect("checkpoint written").len() > 61_706 * 4);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let out = train_gpu(&["--data", "/nonexistent/fashion", "--epochs", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/fashion") && stderr.contains("dataset-fashion-mnist"),
        "{stderr}"
    );

    let out = train_gpu(&["--model", "resnet"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lenet5, convnet-s"));

    let out = train_gpu(&["--lr=-1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: --lr must be a positive number, got -1"
    );
}

#[test]
fn no_adapter_is_an_error_that_names_the_fix() {
    // A Vulkan loader that finds no driver: the user sees what to install, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_train-gpu"))
        .args(["--adapter", "vulkan", "--epochs", "1"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .expect("train-gpu runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: no GPU adapter found") && stderr.contains("mesa-vulkan-drivers"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Writes `root/<class>/<i>.png`: three classes of RGB images of different sizes (a red
/// disc, a green bar, a blue square on noise), 12 each.
fn write_image_folder(root: &std::path::Path) {
    let mut state = 1u32;
    let mut noise = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 24) as u8 / 4
    };
    for (class, name) in ["disc", "bar", "square"].iter().enumerate() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("class dir");
        for i in 0..12u32 {
            let (w, h) = (20 + i % 5, 24 + i % 3);
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                let (dx, dy) = (x as i32 - w as i32 / 2, y as i32 - h as i32 / 2);
                let on = match class {
                    0 => dx * dx + dy * dy < 36,
                    1 => dx.abs() < 2,
                    _ => dx.abs() < 6 && dy.abs() < 6,
                };
                let mut px = [noise(), noise(), noise()];
                if on {
                    px[class] = 220;
                }
                image::Rgb(px)
            });
            img.save(dir.join(format!("{i}.png"))).expect("png");
        }
    }
}

/// Every model of the zoo trains through `train-gpu` on a generated image folder (RGB,
/// resized to 32x32) with a validation split and every augmentation, and reports train,
/// validation and test figures per epoch.
#[test]
fn every_model_trains_on_an_image_folder_with_validation_and_augmentation() {
    if common::gpu().is_none() {
        return;
    }
    let root = std::env::temp_dir().join(format!("striate-folder-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    write_image_folder(&root);
    let out = train_gpu(&["--model", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    let models: Vec<String> = list
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| !m.starts_with('('))
        .map(String::from)
        .collect();
    assert_eq!(models.len(), 10, "{list}");
    for model in &models {
        let out = train_gpu(&[
            "--model",
            model,
            "--data",
            root.to_str().expect("utf-8 path"),
            "--image-size",
            "32",
            "--val-fraction",
            "0.25",
            "--random-crop",
            "2",
            "--hflip",
            "--random-erasing",
            "0.5",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--lr",
            "1e-4",
            "--no-tune",
            "--json",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{model}:\n{stderr}");
        assert!(
            stderr.contains("3 classes") && stderr.contains("3x32x32"),
            "{model}: {stderr}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let epoch: serde_json::Value =
            serde_json::from_str(stdout.lines().next().expect("one epoch")).expect("json");
        // 36 images: 7 held out for testing, 7 of the remaining 29 for validation.
        assert_eq!(epoch["test_images"], 7, "{model}: {epoch}");
        for key in ["train_loss", "val_loss", "val_acc", "test_loss", "test_acc"] {
            let v = epoch[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v >= 0.0, "{model}: {key} = {v} in {epoch}");
        }
    }
    std::fs::remove_dir_all(&root).expect("clean up");
}

/// CIFAR-10's binary batches, found by `--data`, train a model on 3x32x32 inputs; a
/// grayscale image folder feeds it one channel.
#[test]
fn cifar10_batches_and_grayscale_folders_feed_train_gpu() {
    if common::gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("striate-cifar-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let labels: Vec<u8> = (0..40).map(|i| (i % 10) as u8).collect();
    let pixels: Vec<u8> = (0..40 * 3072).map(|i| ((i * 7) % 256) as u8).collect();
    striate::data::cifar::write_batch(&dir.join("data_batch_1.bin"), &labels, &pixels)
        .expect("write");
    striate::data::cifar::write_batch(&dir.join("test_batch.bin"), &labels[..10], &pixels)
        .expect("write");
    let out = train_gpu(&[
        "--data",
        dir.to_str().expect("utf-8 path"),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--no-tune",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("CIFAR-10 from"), "{stderr}");
    let epoch: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .expect("epoch"),
    )
    .expect("json");
    assert_eq!(epoch["test_images"], 10, "{epoch}");
    assert_eq!(epoch["steps"], 5, "{epoch}");
    std::fs::remove_dir_all(&dir).expect("clean up");

    let root = std::env::temp_dir().join(format!("striate-gray-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    write_image_folder(&root);
    let out = train_gpu(&[
        "--data",
        root.to_str().expect("utf-8 path"),
        "--grayscale",
        "--image-size",
        "28x24",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--no-tune",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("1x28x24"), "{stdout}");
    std::fs::remove_dir_all(&root).expect("clean up");
}

/// Every model of the zoo trains through `train-gpu` on real Fashion-MNIST images (the subset
/// shipped in `datasets/`): one short epoch each, finite figures over the first 100 test
/// images.
#[test]
fn every_model_trains_through_train_gpu_on_fashion_mnist() {
    if common::gpu().is_none() {
        return;
    }
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/fashion-mnist-subset");
    for model in [
        "lenet5",
        "convnet-s",
        "alexnet",
        "vgg11",
        "vgg11_bn",
        "vgg16",
        "vgg16_bn",
        "googlenet",
        "resnet18",
        "resnet20",
    ] {
        let out = train_gpu(&[
            "--model",
            model,
            "--data",
            data,
            "--train-limit",
            "48",
            "--test-limit",
            "32",
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--lr",
            "1e-4",
            "--no-tune",
            "--json",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{model}:\n{stderr}");
        assert!(stderr.contains("Fashion-MNIST from"), "{model}: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let epoch: serde_json::Value =
            serde_json::from_str(stdout.lines().next().expect("one epoch")).expect("json");
        assert_eq!(epoch["steps"], 3, "{model}: {epoch}");
        assert_eq!(epoch["test_images"], 32, "{model}: {epoch}");
        for key in ["train_loss", "test_loss", "test_acc"] {
            let v = epoch[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v >= 0.0, "{model}: {key} = {v} in {epoch}");
        }
    }
}

/// Runs `train-gpu` and returns its JSON epoch lines as (epoch, train loss, test loss, test
/// accuracy).
fn epochs_of(args: &[&str]) -> Vec<(u64, f64, f64, f64)> {
    let out = train_gpu(args);
    assert!(
        out.status.success(),
        "{args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("json");
            let f = |k: &str| e[k].as_f64().expect(k);
            (
                e["epoch"].as_u64().expect("epoch"),
                f("train_loss"),
                f("test_loss"),
                f("test_acc"),
            )
        })
        .collect()
}

/// A run resumed from its checkpoint follows the uninterrupted run exactly: AlexNet (dropout
/// masks from the GPU's step counter), Adam (its step count) and a cosine schedule (the rate
/// factor), resumed at an epoch's end (same train loss, test loss and accuracy) and in the
/// middle of one (the rest of the epoch replayed in the same order: same test figures).
/// Arguments that would change the run are refused beside --resume; where it writes may change.
#[test]
fn resumed_runs_follow_the_uninterrupted_trajectory() {
    if common::gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("striate-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = [
        "--model",
        "alexnet",
        "--synthetic",
        "--train-limit",
        "96",
        "--test-limit",
        "100",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--lr-schedule",
        "cosine",
        "--no-tune",
        "--json",
    ];
    let whole = epochs_of(&run);
    assert_eq!(whole.len(), 2);
    let ckpt = dir.to_str().expect("utf-8 path");
    let mut saving = run.to_vec();
    saving.extend([
        "--checkpoint",
        ckpt,
        "--checkpoint-every",
        "4",
        "--keep-last",
        "10",
    ]);
    assert_eq!(epochs_of(&saving), whole, "checkpointing changed the run");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("checkpoints")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // Every 4 steps and at both epochs' ends (6 steps each).
    assert_eq!(
        names,
        [
            "ckpt-0000000004.safetensors",
            "ckpt-0000000006.safetensors",
            "ckpt-0000000008.safetensors",
            "ckpt-0000000012.safetensors"
        ]
    );
    let at_epoch_end = dir.join("ckpt-0000000006.safetensors");
    let resumed = epochs_of(&["--resume", at_epoch_end.to_str().expect("path"), "--json"]);
    assert_eq!(resumed, whole[1..], "resumed after epoch 1");
    // The checkpoint carries the run's curves, so a resumed run's pictures show it whole:
    // the last one holds both epochs and a rate for each of the 12 steps.
    let last = striate::checkpoint::Checkpoint::read(&dir.join("ckpt-0000000012.safetensors"))
        .expect("readable");
    let curves: serde_json::Value =
        serde_json::from_str(last.meta.get("curves").expect("curves")).expect("json");
    assert_eq!(
        curves["epochs"].as_array().map(Vec::len),
        Some(2),
        "{curves}"
    );
    assert_eq!(curves["lr"].as_array().map(Vec::len), Some(12), "{curves}");
    let mid_epoch = dir.join("ckpt-0000000008.safetensors");
    let mid = mid_epoch.to_str().expect("path");
    // What would change the trajectory is refused with its name, not silently dropped.
    let out = train_gpu(&["--resume", mid, "--lr", "0.5", "--seed", "3", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--lr, --seed cannot be given with --resume"),
        "{stderr}"
    );
    // Where the pictures go may change.
    let plots = dir.join("plots");
    let plots_arg = plots.to_str().expect("path");
    let resumed = epochs_of(&["--resume", mid, "--json", "--plots", plots_arg]);
    assert!(
        plots.join("curves.png").is_file(),
        "--plots given on resume"
    );
    assert_eq!(resumed.len(), 1);
    assert_eq!(
        (resumed[0].0, resumed[0].2, resumed[0].3),
        (whole[1].0, whole[1].2, whole[1].3),
        "resumed two steps into epoch 2"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// `train-gpu`'s checkpoints are the library's (`train::run_state`), both ways: what the tool
/// wrote, `Resume` reads value for value (its command line, position, validation accuracy and
/// the curves it reported) and restores into a library `Trainer`, which then scores the test
/// images exactly as the tool printed; what the library's `Saver` writes from that trainer is
/// the tool's checkpoint again, and `train-gpu --resume` continues it exactly as its own.
#[test]
fn checkpoints_pass_between_train_gpu_and_the_library() {
    use striate::train::run_state::{Curves, Resume, RunPosition, Saver};
    use striate::train::{TrainConfig, Trainer};
    let Some(gpu) = common::gpu() else { return };
    let dir = std::env::temp_dir().join(format!("striate-cli-lib-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cli_dir = dir.join("cli");
    let args = [
        "--synthetic",
        "--train-limit",
        "128",
        "--test-limit",
        "100",
        "--val-fraction",
        "0.25",
        "--batch-size",
        "32",
        "--epochs",
        "1",
        "--no-tune",
        "--json",
        "--checkpoint",
        cli_dir.to_str().expect("utf-8 path"),
    ];
    let out = train_gpu(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "train-gpu failed:\n{stderr}");
    let epoch: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one epoch's JSON");
    let f = |k: &str| epoch[k].as_f64().expect(k);

    // 96 training images after the validation split: 3 steps.
    let resume = Resume::find(&cli_dir).expect("the tool's checkpoint");
    assert_eq!(resume.path, cli_dir.join("ckpt-0000000003.safetensors"));
    let run = &resume.run;
    assert_eq!(run.args[0], env!("CARGO_BIN_EXE_train-gpu"));
    assert_eq!(run.args[1..], args);
    assert_eq!(
        run.position,
        RunPosition {
            next_epoch: 2,
            skip_steps: 0,
            global_step: 3
        }
    );
    assert_eq!(run.val_acc, Some(f("val_acc")));
    assert_eq!(run.curves.epochs.len(), 1);
    let point = run.curves.epochs[0];
    assert_eq!(
        (point.epoch, point.train_loss, point.train_acc),
        (1.0, f("train_loss"), f("train_acc"))
    );
    assert_eq!(point.val, Some((f("val_loss"), f("val_acc"))));
    assert_eq!(point.test, (f("test_loss"), f("test_acc")));
    let rate = f64::from(1e-3f32);
    assert_eq!(
        run.curves.lr,
        [(1.0 / 3.0, rate), (2.0 / 3.0, rate), (1.0, rate)]
    );

    // The library's trainer for the same model, optimizer and data (the tool's defaults:
    // LeNet-5, Adam 1e-3, seed 0) takes the state and scores the test images as the tool did.
    let test = striate::data::synthetic(12_000, 2_000, 0)
        .test
        .truncate(100);
    let config = TrainConfig {
        batch_size: 32,
        input: test.input_shape(),
        n_classes: test.n_classes,
        ..Default::default()
    };
    let trainer = Trainer::new(&gpu, &config).expect("trainer");
    resume.restore(&trainer).expect("the tool's state fits");
    let scored = trainer.evaluate(&test).expect("evaluate");
    assert_eq!(
        (scored.loss, scored.accuracy, scored.count),
        (f("test_loss"), f("test_acc"), 100)
    );

    // And back: the library's saver writes the tool's checkpoint again, which the tool
    // resumes into the same second epoch as its own.
    let lib_dir = dir.join("library");
    let mut saver = Saver::new(&lib_dir, 3, run.args.clone()).expect("saver");
    saver
        .save(&trainer, run.position, run.val_acc, &run.curves)
        .expect("save");
    let written = Resume::find(&lib_dir).expect("the library's checkpoint");
    assert_eq!(written.path, lib_dir.join("ckpt-0000000003.safetensors"));
    assert_eq!(written.ckpt.tensors, resume.ckpt.tensors);
    // Every metadata key as the tool wrote it; the curves to the last bits (serde_json reads
    // floats without `float_roundtrip`, at times a unit in the last place off, as it always
    // did: a resumed run's curves are pictures).
    let without_curves = |c: &striate::checkpoint::Checkpoint| {
        let mut meta = c.meta.clone();
        meta.remove("curves");
        meta
    };
    assert_eq!(without_curves(&written.ckpt), without_curves(&resume.ckpt));
    assert_eq!(
        (&written.run.args, written.run.position),
        (&run.args, run.position)
    );
    let numbers = |c: &Curves| -> Vec<f64> {
        let epochs = c.epochs.iter().flat_map(|e| {
            let (val_loss, val_acc) = e.val.expect("validated");
            [
                e.epoch,
                e.train_loss,
                e.train_acc,
                val_loss,
                val_acc,
                e.test.0,
                e.test.1,
            ]
        });
        let pairs = c.running.iter().chain(&c.lr).flat_map(|&(x, y)| [x, y]);
        epochs.chain(pairs).collect()
    };
    let (got, want) = (numbers(&written.run.curves), numbers(&run.curves));
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 4.0 * f64::EPSILON * w.abs(),
            "{got:?} vs {want:?}"
        );
    }
    let second_epoch = |from: &std::path::Path, to: &str| {
        let to = dir.join(to);
        let (from, to) = (from.to_str().expect("path"), to.to_str().expect("path"));
        epochs_of(&[
            "--resume",
            from,
            "--epochs",
            "2",
            "--json",
            "--checkpoint",
            to,
        ])
    };
    let from_cli = second_epoch(&cli_dir, "cli-2");
    assert_eq!(from_cli.len(), 1);
    assert_eq!(from_cli[0].0, 2);
    assert_eq!(second_epoch(&lib_dir, "library-2"), from_cli);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// Killing `train-gpu` (SIGKILL) at moments spread over a run that saves a checkpoint every
/// step never leaves a checkpoint that does not load, and the run resumes from what is there.
/// VGG-11 at batch 2 makes the 117 MB saves (weights and Adam's moments) most of the run, so
/// the kills land in writes (a writer without the rename fails this test).
#[test]
fn a_kill_at_any_moment_leaves_loadable_checkpoints() {
    if common::gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("striate-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ckpt = dir.to_str().expect("utf-8 path");
    let args = [
        "--model",
        "vgg11",
        "--synthetic",
        "--train-limit",
        "40",
        "--test-limit",
        "8",
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--no-tune",
        "--json",
        "--checkpoint",
        ckpt,
        "--checkpoint-every",
        "1",
    ];
    let newest = || -> Option<std::path::PathBuf> {
        let mut all: Vec<_> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        all.sort();
        all.pop()
    };
    let mut saved = 0;
    // Each round starts (or resumes) the run, waits for a checkpoint newer than the last one
    // (the run is then in its save-every-step phase), and kills it a varying moment later.
    for delay_ms in [0, 37, 90, 150, 230, 320] {
        let before = newest();
        let mut child = Command::new(env!("CARGO_BIN_EXE_train-gpu"))
            .args(if before.is_none() {
                args.to_vec()
            } else {
                vec!["--resume", ckpt, "--json"]
            })
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("train-gpu starts");
        let start = std::time::Instant::now();
        while newest() == before && start.elapsed() < std::time::Duration::from_secs(180) {
            if child.try_wait().expect("status").is_some() {
                break; // Finished (or failed) before saving again: checked below.
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().ok(); // Already finished is fine.
        child.wait().expect("reaped");
        for entry in std::fs::read_dir(&dir).expect("the checkpoint directory") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".partial") {
                continue; // The write the kill interrupted: never read.
            }
            let c = striate::checkpoint::Checkpoint::read(&path)
                .unwrap_or_else(|e| panic!("after a kill {delay_ms} ms past a save: {e}"));
            assert!(c.tensor("features.0.weight").is_some(), "{name}");
            saved += 1;
        }
    }
    assert!(saved > 0, "no checkpoint was ever written");
    // The run finishes from where the kills left it.
    let out = train_gpu(&["--resume", ckpt, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// `predict` classifies PNG and JPEG files with a model `train-gpu --save` wrote, preparing them as the
/// training images were (from the file's metadata), by class name; an unreadable file is an
/// error of its own while the rest are still classified.
#[test]
fn predict_classifies_image_files_by_class_name() {
    if common::gpu().is_none() {
        return;
    }
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/fashion-mnist-subset");
    let dir = std::env::temp_dir().join(format!("striate-predict-{}", std::process::id()));
    let images = dir.join("images");
    std::fs::create_dir_all(&images).expect("tmp dir");
    let weights = dir.join("lenet.safetensors");
    let out = train_gpu(&[
        "--data",
        data,
        "--epochs",
        "3",
        "--test-limit",
        "10",
        "--no-tune",
        "--json",
        "--save",
        weights.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first 40 test images as PNG and JPEG files (every other one; JPEG at quality 95),
    // as a user would have them.
    let split = striate::data::load_idx_dir(std::path::Path::new(data)).expect("subset");
    let test = &split.test;
    for i in 0..40 {
        let img = image::GrayImage::from_raw(28, 28, test.image(i).to_vec()).expect("28x28");
        if i % 2 == 0 {
            img.save(images.join(format!("{i:02}.png"))).expect("png");
        } else {
            let mut file = std::fs::File::create(images.join(format!("{i:02}.jpg"))).expect("jpg");
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 95)
                .encode_image(&img)
                .expect("jpeg");
        }
    }
    std::fs::write(images.join("zz-broken.png"), b"not a png").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_predict"))
        .args(["--weights", weights.to_str().expect("path"), "--json"])
        .arg(&images)
        .output()
        .expect("predict runs");
    assert_eq!(out.status.code(), Some(1), "one file could not be read");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("zz-broken.png"), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 41);
    let mut correct = 0;
    for (i, line) in lines.iter().filter(|l| l.get("top").is_some()).enumerate() {
        let top = &line["top"][0];
        let p = top["probability"].as_f64().expect("probability");
        assert!((0.0..=1.0).contains(&p), "{line}");
        let name = top["class"].as_str().expect("class name");
        assert!(
            striate::data::FASHION_MNIST_CLASSES.contains(&name),
            "{line}"
        );
        if top["index"] == test.labels[i] {
            correct += 1;
        }
    }
    // Three short epochs on 2,000 images reach about 70%; chance is 10%.
    assert!(correct >= 20, "only {correct} of 40 right");
    // The feature maps of one file: a picture with the input and both convolution layers.
    let maps = dir.join("maps");
    let out = Command::new(env!("CARGO_BIN_EXE_predict"))
        .args([
            "--weights",
            weights.to_str().expect("path"),
            "--feature-maps",
        ])
        .arg(&maps)
        .arg(images.join("00.png"))
        .output()
        .expect("predict runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(maps.join("feature_maps.png")).expect("a PNG");
    assert_eq!(img.height(), 390, "three rows: the input and two layers");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// `--plots` writes the five pictures, each a PNG that decodes, of the size its content makes
/// (LeNet-5 on 10 classes: 6 filters of 5x5, two convolution layers, 24 misclassified).
#[test]
fn plots_are_pngs_of_the_expected_sizes() {
    if common::gpu().is_none() {
        return;
    }
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/fashion-mnist-subset");
    let dir = std::env::temp_dir().join(format!("striate-plots-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = train_gpu(&[
        "--data",
        data,
        "--epochs",
        "2",
        "--train-limit",
        "512",
        "--test-limit",
        "200",
        "--val-fraction",
        "0.2",
        "--no-tune",
        "--plots",
        dir.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, want) in [
        ("curves.png", Some((1500, 450))),
        ("filters.png", Some((326, 101))),
        ("feature_maps.png", Some((1528, 390))),
        ("confusion.png", Some((670, 680))),
        ("misclassified.png", Some((1148, 504))),
    ] {
        let img = image::open(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let size = (img.width(), img.height());
        assert_eq!(Some(size), want, "{name}");
        // Not blank: some pixels dark (text, lines, images), most light.
        let gray = img.to_luma8();
        let dark = gray.pixels().filter(|p| p.0[0] < 100).count();
        assert!(dark > 100, "{name} looks empty");
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
