//! Times training steps of a model, pipelined as in an epoch (a development aid for A/B
//! comparisons on noisy machines): `cargo run --release --example step_time [model] [batch]`.
#![allow(clippy::print_stdout, missing_docs)]
use std::time::Instant;

use striate::models::Model;
use striate::train::{Optimizer, TrainConfig, Trainer};

fn main() -> anyhow::Result<()> {
    let model: Model = std::env::args().nth(1).unwrap_or("lenet5".into()).parse()?;
    let batch: usize = std::env::args().nth(2).map_or(Ok(64), |s| s.parse())?;
    let rounds: usize = std::env::args().nth(3).map_or(Ok(5), |s| s.parse())?;
    let gpu = striate::GpuContext::from_env()?;
    let trainer = Trainer::new_tuned(
        &gpu,
        &TrainConfig {
            model,
            batch_size: batch,
            optimizer: Optimizer::adam(1e-3),
            seed: 0,
            ..Default::default()
        },
    )?;
    let data = striate::data::synthetic(batch * 8, 1, 0).train;
    let batches: Vec<(Vec<f32>, Vec<u32>)> = (0..8)
        .map(|b| {
            (
                data.images(b * batch, batch),
                data.labels[b * batch..(b + 1) * batch].to_vec(),
            )
        })
        .collect();
    let steps = 40;
    let mut best = f64::MAX;
    for round in 0..=rounds {
        let t = Instant::now();
        let mut host = 0.0;
        for s in 0..steps {
            let (x, y) = &batches[s % batches.len()];
            let h = Instant::now();
            trainer.train_step(x, y)?;
            host += h.elapsed().as_secs_f64();
        }
        trainer.take_metrics()?;
        let ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
        if round > 0 {
            best = best.min(ms);
            println!(
                "round {round}: {ms:.2} ms/step ({:.2} ms of it in train_step on the host)",
                host * 1e3 / steps as f64
            );
        }
    }
    println!(
        "best {best:.2} ms/step, {:.0} images/s",
        batch as f64 * 1e3 / best
    );
    // The host's own share: train_step with the device idle (recording, upload, submission),
    // and a synced step (device time plus that).
    let (mut host, mut synced) = (f64::MAX, f64::MAX);
    for (x, y) in &batches {
        gpu.wait()?;
        let t = Instant::now();
        trainer.train_step(x, y)?;
        host = host.min(t.elapsed().as_secs_f64());
        gpu.wait()?;
        synced = synced.min(t.elapsed().as_secs_f64());
    }
    println!(
        "host work per step {:.2} ms; one synced step {:.2} ms",
        host * 1e3,
        synced * 1e3
    );
    Ok(())
}
