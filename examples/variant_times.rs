//! Times every plan of the ops of one training step, each in a loop of its own (a development
//! aid: the autotuner's view of a model): `cargo run --release --example variant_times
//! [model] [batch] [name filter]`; `variant_times sgemm [n]` times W3's product instead.
#![allow(clippy::print_stdout, missing_docs)]
use std::time::Instant;

use striate::exec::gpu::{Executable, ProgramSpec, VariantChoice};
use striate::ir::Graph;
use striate::models::Model;
use striate::ops::linalg::matmul::Matmul;
use striate::train::{training_graph, Optimizer, TrainConfig};
use striate::Shape;

fn main() -> anyhow::Result<()> {
    let first = std::env::args().nth(1).unwrap_or("lenet5".into());
    let batch: usize = std::env::args().nth(2).map_or(Ok(64), |s| s.parse())?;
    let filter = std::env::args().nth(3).unwrap_or_default();
    let gpu = striate::GpuContext::from_env()?;
    if first == "sgemm" {
        let batch = std::env::args().nth(2).map_or(Ok(1024), |s| s.parse())?;
        let mut g = Graph::new();
        let a = g.input("a", Shape::f32([batch, batch]));
        let b = g.input("b", Shape::f32([batch, batch]));
        g.push(
            Matmul {
                trans_a: false,
                trans_b: false,
            },
            &[a, b],
        )?;
        return time_nodes(&gpu, &g, "");
    }
    let model: Model = first.parse()?;
    let cfg = TrainConfig {
        model,
        batch_size: batch,
        optimizer: Optimizer::adam(1e-3),
        seed: 0,
        ..Default::default()
    };
    let (full, _) = training_graph(&cfg)?;
    time_nodes(&gpu, &full, &filter)
}

/// Times every plan of each node of `full` whose name contains `filter`.
fn time_nodes(gpu: &striate::GpuContext, full: &Graph, filter: &str) -> anyhow::Result<()> {
    let caps = gpu.caps();
    for node in full.nodes() {
        let name = format!("{} {}", node.name, node.op.name());
        if node.op.is_view() || !node.op.mutates().is_empty() || !name.contains(filter) {
            continue;
        }
        let shapes: Vec<_> = node.inputs.iter().map(|&t| full.shape(t).clone()).collect();
        let ins: Vec<_> = shapes.iter().collect();
        let outs: Vec<_> = node.outputs.iter().map(|&t| full.shape(t)).collect();
        let plans = node.op.plans(&ins, &outs, &caps);
        if plans.len() < 2 {
            continue;
        }
        println!(
            "{name} {:?}",
            shapes.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        // Every plan built first, then timed in turns (the machine's speed drifts).
        let mut exes = Vec::new();
        for plan in &plans {
            let mut g = Graph::new();
            let ids: Vec<_> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| g.input(&format!("in{i}"), s.clone()))
                .collect();
            let outputs = g.push_arc(node.op.clone(), &ids)?;
            let spec = ProgramSpec {
                name: "op".into(),
                outputs,
                effects: vec![],
            };
            let choice = VariantChoice::Named(plan.variant.clone());
            let exe = Executable::build_with(gpu, &g, &[spec], choice)?;
            let program = exe.program("op")?;
            exe.run(program)?;
            exes.push((exe, program));
        }
        gpu.wait()?;
        let mut best = vec![f64::MAX; plans.len()];
        for _ in 0..8 {
            for ((exe, program), best) in exes.iter().zip(&mut best) {
                let t = Instant::now();
                for _ in 0..5 {
                    exe.run(*program)?;
                }
                gpu.wait()?;
                *best = best.min(t.elapsed().as_secs_f64() / 5.0);
            }
        }
        for (plan, best) in plans.iter().zip(best) {
            println!("  {:8.3} ms  {}", best * 1e3, plan.variant);
        }
    }
    Ok(())
}
