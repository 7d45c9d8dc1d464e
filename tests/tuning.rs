//! Autotuning times candidates on the executable's own buffers; it must leave the state
//! training starts from as it was (a tuned Adam update once ran on the real parameters with
//! whatever the gradient buffers held, and ConvNet-S started from NaN weights).
//!
//! Its own test binary: it points the tuning cache at an empty directory, so the ops are timed.

mod common;

use striate::exec::gpu::{Executable, ProgramSpec, VariantChoice};
use striate::ops::optim::{AdamUpdate, OptimizerStepCount};
use striate::{CpuTensor, Graph};

#[test]
fn autotuning_leaves_parameters_and_optimizer_state_untouched() {
    let Some(gpu) = common::gpu() else { return };
    let dir = std::env::temp_dir().join(format!("striate-tuning-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::env::set_var("STRIATE_CACHE_DIR", &dir);

    // A length with both Adam plans (scalar and vec4), so the update is tuned.
    let n = 4 * 300;
    let values = |scale: f32| -> Vec<f32> { (0..n).map(|i| scale * (i as f32 - 600.0)).collect() };
    let mut g = Graph::new();
    let param = g.param("p", CpuTensor::from_f32([n], values(1e-3)));
    let m = g.state("m", CpuTensor::from_f32([n], values(1e-4)));
    let v = g.state("v", CpuTensor::from_f32([n], values(0.0)));
    let t = g.state("t", CpuTensor::from_u32([1], vec![0]));
    let grad = g.input("grad", striate::Shape::f32([n]));
    let factors = g.state("step_factors", CpuTensor::from_f32([2], vec![1.0, 1.0]));
    g.push(OptimizerStepCount, &[t]).expect("step count");
    let adam = AdamUpdate {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    g.push(adam, &[param, grad, m, v, t, factors])
        .expect("adam");
    let effects = vec![striate::NodeId(0), striate::NodeId(1)];
    let spec = ProgramSpec {
        name: "step".into(),
        outputs: vec![],
        effects,
    };
    let exe = Executable::build_with(&gpu, &g, &[spec], VariantChoice::Autotune).expect("build");
    assert!(
        exe.tuning_report().tuned >= 1,
        "the Adam update was not timed: {:?}",
        exe.tuning_report()
    );
    let program = exe.program("step").expect("program");
    for (id, want, name) in [
        (param, values(1e-3), "param"),
        (m, values(1e-4), "m"),
        (v, values(0.0), "v"),
    ] {
        let got = exe.read(program, id).expect("read").f32().to_vec();
        let changed = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        assert_eq!(
            changed,
            0,
            "tuning changed {changed} of {n} values of {name}, e.g. {} → {}",
            want[n - 1],
            got[n - 1]
        );
    }
    assert_eq!(exe.read(program, t).expect("read").u32(), [0]);

    // The program itself still updates them.
    exe.write(grad, bytemuck::cast_slice(&values(1.0)))
        .expect("write grad");
    exe.run(program).expect("run");
    assert_eq!(exe.read(program, t).expect("read").u32(), [1]);
    assert_ne!(exe.read(program, param).expect("read").f32(), values(1e-3));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Autotuning reports each op it reaches (numbered 1 to the total over all programs) and,
/// with its budget spent, leaves the rest at their first plan without caching them.
#[test]
fn tuning_reports_progress_and_keeps_to_its_budget() {
    use std::sync::{Arc, Mutex};
    use striate::exec::gpu::TuneOptions;
    use striate::models::Model;
    use striate::train::{Optimizer, TrainConfig, Trainer};
    let Some(gpu) = common::gpu() else { return };
    let dir = std::env::temp_dir().join(format!("striate-tuning-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::env::set_var("STRIATE_CACHE_DIR", &dir);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let options = TuneOptions {
        budget: Some(std::time::Duration::ZERO),
        progress: Some(Arc::new(move |p| {
            log.lock()
                .expect("lock")
                .push((p.index, p.total, p.op.clone()));
        })),
    };
    let config = TrainConfig {
        model: Model::Lenet5,
        batch_size: 8,
        optimizer: Optimizer::adam(1e-3),
        ..Default::default()
    };
    let trainer = Trainer::new_tuned_with(&gpu, &config, options).expect("trainer");
    let report = trainer.tuning_report();
    let seen = seen.lock().expect("lock").clone();
    assert!(report.total >= 10, "{report:?}");
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=report.total).collect::<Vec<_>>()
    );
    assert!(seen.iter().all(|s| s.1 == report.total));
    assert!(seen.iter().any(|s| s.2.contains("conv1")), "{seen:?}");
    assert_eq!(report.tuned, 0, "the budget was zero: {report:?}");
    assert_eq!(
        report.cached + report.over_budget,
        report.total,
        "{report:?}"
    );
    assert!(report.over_budget > 0, "{report:?}");
}
