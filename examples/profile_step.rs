//! Prints the time of every dispatch of one training step (a development aid).
#![allow(clippy::print_stdout, missing_docs)]
use striate::exec::gpu::ProfileMethod;
use striate::models::Model;
use striate::train::{Optimizer, TrainConfig, Trainer};

fn main() -> anyhow::Result<()> {
    let model: Model = std::env::args().nth(1).unwrap_or("lenet5".into()).parse()?;
    let batch: usize = std::env::args().nth(2).map_or(Ok(64), |s| s.parse())?;
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
    let data = striate::data::synthetic(batch, 1, 0).train;
    let images = data.images(0, data.len());
    // A third argument n: time n copies of each dispatch per submission (parameters move).
    let method = match std::env::args().nth(3) {
        Some(n) => ProfileMethod::HostRepeated(n.parse()?),
        None => trainer.profile_method(),
    };
    trainer.profile_step_with(&images, &data.labels, method)?;
    let prof = trainer.profile_step_with(&images, &data.labels, method)?;
    let total: f64 = prof.iter().map(|p| p.1).sum();
    for (label, s) in &prof {
        println!("{:8.3} ms {:5.1}%  {label}", s * 1e3, 100.0 * s / total);
    }
    println!("total {:.2} ms", total * 1e3);
    Ok(())
}
