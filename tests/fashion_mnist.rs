//! A short real training run: LeNet-5 (W1 recipe: Adam 1e-3, batch 64) on real Fashion-MNIST
//! images, then accuracy on real test images it never saw.
//!
//! With the full set installed (`apt-get install dataset-fashion-mnist`, or `$STRIATE_DATA`):
//! one pass over the first 12,800 training images, then the first 2,000 test images. Without
//! it: the subset in the repository (`datasets/fashion-mnist-subset`: the first 2,000 training
//! and 1,000 test images), six shuffled passes (188 steps), then all 1,000 test images. Either
//! way about 190 steps of 64 images; chance is 10%.

mod common;

use std::path::Path;
use std::sync::Arc;

use striate::data::{batches, load_fashion_mnist, load_idx_dir, Dataset};
use striate::models::Model;
use striate::train::{Optimizer, TrainConfig, Trainer};

/// Which data the run uses, and what it must reach on it.
struct Run {
    train: Dataset,
    test: Dataset,
    epochs: u64,
    /// Lowest passing test accuracy, a few points under what was measured on lavapipe.
    min_accuracy: f64,
    measured: &'static str,
}

/// The full set where it is installed, else the subset in the repository; the recipe follows
/// the data found (`STRIATE_DATA=datasets/fashion-mnist-subset` runs the subset's recipe on a
/// machine that has both, as CI's GL run does).
fn run_for_this_machine() -> Run {
    let split = load_fashion_mnist(None)
        .expect("Fashion-MNIST files are readable")
        .unwrap_or_else(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/fashion-mnist-subset");
            load_idx_dir(&dir).expect("the subset in the repository")
        });
    eprintln!("data: {}", split.description);
    match (split.train.len(), split.test.len()) {
        (60_000, 10_000) => Run {
            train: split.train.truncate(12_800),
            test: split.test.truncate(2_000),
            epochs: 1,
            min_accuracy: 0.72,
            measured: "0.763 (lavapipe and GL on llvmpipe)",
        },
        (2_000, 1_000) => Run {
            train: split.train,
            test: split.test,
            epochs: 6,
            min_accuracy: 0.70,
            measured: "0.735 (lavapipe and GL on llvmpipe)",
        },
        sizes => panic!(
            "{}: {sizes:?} train and test images; this test knows the full set (60,000, \
             10,000) and the repository's subset (2,000, 1,000)",
            split.description
        ),
    }
}

#[test]
fn lenet5_learns_fashion_mnist() {
    let Some(gpu) = common::gpu() else { return };
    let run = run_for_this_machine();
    let train = Arc::new(run.train);
    let n_train = train.len();

    let cfg = TrainConfig {
        model: Model::Lenet5,
        batch_size: 64,
        optimizer: Optimizer::adam(1e-3),
        seed: 0,
        ..Default::default()
    };
    let trainer = Trainer::new(&gpu, &cfg).expect("trainer");
    let mut n_seen = 0;
    for epoch in 0..run.epochs {
        for batch in batches(train.clone(), 64, Some(1 + epoch), true) {
            trainer
                .train_step(&batch.images, &batch.labels)
                .expect("step");
        }
        n_seen += trainer.take_metrics().expect("train metrics").count;
    }
    assert_eq!(n_seen, run.epochs * (n_train as u64 / 64 * 64));
    let m = trainer.evaluate(&run.test).expect("evaluate");
    assert_eq!(m.count, run.test.len() as u64);
    eprintln!(
        "test accuracy {:.3}, loss {:.3} on {} images",
        m.accuracy, m.loss, m.count
    );
    assert!(
        m.accuracy >= run.min_accuracy,
        "test accuracy {:.3} on {} images (expected at least {}; measured {})",
        m.accuracy,
        m.count,
        run.min_accuracy,
        run.measured
    );
    assert!(m.loss < 0.8, "test loss {:.3}", m.loss);
}
