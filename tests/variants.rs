//! Every plan variant an op offers (each GEMM tile the autotuner may pick, the direct kernels)
//! against the CPU reference on awkward shapes: variants may differ in speed, never in result.

mod common;

use striate::exec::gpu::VariantChoice;
use striate::ops::testing::{assert_close, random_inputs, run_reference};
use striate::ops::{catalog, KernelPlan, TensorData};
use striate::Shape;

#[test]
fn every_variant_matches_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    // The plans offered on this adapter, and those an adapter without subgroups gets (they run
    // here too), so every variant any adapter's autotuner may pick is checked.
    let gpus = [gpu.clone(), gpu.without_subgroups()];
    let mut n_checked = 0;
    let mut n_split = 0;
    // Window-sum variants checked, without and with subgroups.
    let mut n_windows = [0; 2];
    let mut implicit_ops = std::collections::BTreeSet::new();
    for (entry_idx, entry) in catalog().iter().enumerate() {
        if entry.op.is_view() {
            continue;
        }
        let inputs_shapes: Vec<&Shape> = entry.inputs.iter().collect();
        let outs = entry.op.infer(&inputs_shapes).expect("valid");
        let outputs: Vec<&Shape> = outs.iter().collect();
        let mut plans = Vec::new();
        for gpu in &gpus {
            for plan in entry.op.plans(&inputs_shapes, &outputs, &gpu.caps()) {
                if !plans
                    .iter()
                    .any(|(_, p): &(_, KernelPlan)| p.variant == plan.variant)
                {
                    plans.push((gpu, plan));
                }
            }
        }
        if plans.len() < 2 {
            continue;
        }
        let inputs = random_inputs(entry, 7000 + entry_idx as u64);
        let want = run_reference(entry.op.as_ref(), &inputs);
        for (gpu, plan) in plans {
            let tag = format!("[{}]", plan.variant);
            let got = common::run_gpu_with(
                gpu,
                entry,
                &inputs,
                VariantChoice::Named(plan.variant.clone()),
                |labels| {
                    assert!(
                        labels.iter().all(|l| l.contains(&tag)),
                        "{entry:?}: variant {tag} not chosen: {labels:?}"
                    );
                    n_split += labels
                        .iter()
                        .filter(|l| l.ends_with(":reduce_splits"))
                        .count();
                },
            );
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let label = format!("{entry:?} {tag} output {i}");
                match (&g.data, &w.data) {
                    (TensorData::F32(g), TensorData::F32(w)) => {
                        assert_close(&label, g, w, 1e-5, 1e-4);
                    }
                    (TensorData::U32(g), TensorData::U32(w)) => assert_eq!(g, w, "{label}"),
                    _ => panic!("{label}: dtype differs"),
                }
            }
            n_checked += 1;
            if plan.variant.starts_with("implicit-") {
                implicit_ops.insert(entry.op.name());
            }
            if plan.variant.starts_with("windows-") {
                n_windows[usize::from(plan.variant.ends_with("-sg"))] += 1;
            }
        }
    }
    assert!(n_checked >= 20, "only {n_checked} variants checked");
    assert!(n_split > 0, "no split-k GEMM was checked");
    // The unpooled weight gradient over the pool's windows: each channel grouping the catalogue
    // shapes allow, with and without subgroups.
    assert!(
        n_windows[0] >= 10 && n_windows[1] >= 10,
        "window-sum variants checked (without, with subgroups): {n_windows:?}"
    );
    // The implicit-GEMM convolutions, all seven of them, with splits among those counted above.
    assert_eq!(
        implicit_ops.into_iter().collect::<Vec<_>>(),
        [
            "conv2d",
            "conv2d_backward_input",
            "conv2d_backward_input_unpool",
            "conv2d_backward_weight",
            "conv2d_backward_weight_unpool",
            "conv2d_relu",
            "conv2d_relu_pool"
        ],
        "implicit-GEMM variants checked"
    );
    eprintln!("{n_checked} variants checked, {n_split} split-k reductions");
}
