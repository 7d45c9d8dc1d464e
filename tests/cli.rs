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
