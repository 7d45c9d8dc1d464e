//! Every plan variant an op offers (each GEMM tile the autotuner may pick, the direct kernels)
//! against the CPU reference on awkward shapes: variants may differ in speed, never in result.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use striate::exec::gpu::VariantChoice;
use striate::ir::{KernelPlan, TensorData};
use striate::ops::testing::{assert_close, random_inputs, run_reference};
use striate::ops::{catalog, CatalogEntry};
use striate::{GpuContext, Shape};

/// What the variant check saw, summed over the worker threads.
#[derive(Default)]
struct Checked {
    n_checked: usize,
    n_split: usize,
    // Variants copying inputs into their textures instead of packing them.
    n_copies: usize,
    // Window-sum variants checked: without subgroups, summing whole 8-lane subgroups, summing
    // blocks of 8 lanes.
    n_windows: [usize; 3],
    // Ops checked with their split (GPU-filling) per-channel reductions, and those whose bias
    // gradient ran split.
    split_ops: BTreeSet<&'static str>,
    split_bias_ops: BTreeSet<&'static str>,
    // Variants checked that share values within blocks of 8 lanes (`-sgb`), per op.
    block_ops: BTreeSet<&'static str>,
    implicit_ops: BTreeSet<&'static str>,
    // Ops checked with a workgroup-tiled variant.
    tiled_ops: BTreeSet<&'static str>,
}

impl Checked {
    fn merge(mut self, other: Checked) -> Checked {
        self.n_checked += other.n_checked;
        self.n_split += other.n_split;
        self.n_copies += other.n_copies;
        for (a, b) in self.n_windows.iter_mut().zip(other.n_windows) {
            *a += b;
        }
        self.split_ops.extend(other.split_ops);
        self.split_bias_ops.extend(other.split_bias_ops);
        self.block_ops.extend(other.block_ops);
        self.implicit_ops.extend(other.implicit_ops);
        self.tiled_ops.extend(other.tiled_ops);
        self
    }
}

/// Every plan `entry`'s op offers on any of `gpus` (each variant once) against the reference.
fn check_entry(gpus: &[GpuContext], entry: &CatalogEntry, c: &mut Checked) {
    if entry.op.is_view() {
        return;
    }
    let inputs_shapes: Vec<&Shape> = entry.inputs.iter().collect();
    let outs = entry.op.infer(&inputs_shapes).expect("valid");
    let outputs: Vec<&Shape> = outs.iter().collect();
    let mut plans = Vec::new();
    for gpu in gpus {
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
        return;
    }
    let inputs = random_inputs(entry, 7000 ^ entry.seed());
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
                c.n_split += labels
                    .iter()
                    .filter(|l| l.ends_with(":reduce_splits"))
                    .count();
                if labels
                    .iter()
                    .any(|l| l.ends_with(":bias_add_backward_bias_combine"))
                {
                    c.split_bias_ops.insert(entry.op.name());
                }
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
        c.n_checked += 1;
        if plan.variant.starts_with("implicit-") {
            c.implicit_ops.insert(entry.op.name());
        }
        if plan.variant.starts_with("tiled-") {
            c.tiled_ops.insert(entry.op.name());
        }
        if !plan.copies.is_empty() {
            c.n_copies += 1;
        }
        if plan.variant.starts_with("windows-") {
            let form = if plan.variant.ends_with("-sg") {
                1
            } else if plan.variant.ends_with("-sgb") {
                2
            } else {
                0
            };
            c.n_windows[form] += 1;
        }
        if plan.variant == "split" {
            c.split_ops.insert(entry.op.name());
        }
        if plan.variant.contains("-sgb") {
            c.block_ops.insert(entry.op.name());
        }
    }
}

#[test]
fn every_variant_matches_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    // The plans offered on this adapter, those an adapter without subgroups gets, those of
    // adapters whose subgroups are wider than 8 lanes (shuffles within blocks of 8, which run
    // on 8-lane subgroups too), and the workgroup-tiled family GPUs get (they all run here
    // too), so every variant any adapter's autotuner may pick is checked.
    let gpus = [
        gpu.clone(),
        gpu.without_subgroups(),
        gpu.with_subgroup_blocks(),
        gpu.with_workgroup_tiles(),
    ];
    // Compiling each variant's kernels is most of the work and runs on the calling thread, so
    // the catalogue's entries are shared out over one worker per core (on GL the context
    // gives them turns at the device).
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let c = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let entries = catalog();
                    let mut c = Checked::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(entry) = entries.get(i) else { break c };
                        check_entry(&gpus, entry, &mut c);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .fold(Checked::default(), Checked::merge)
    });
    let Checked {
        n_checked,
        n_split,
        n_copies,
        n_windows,
        split_ops,
        split_bias_ops,
        block_ops,
        implicit_ops,
        tiled_ops,
    } = c;
    assert!(n_checked >= 20, "only {n_checked} variants checked");
    assert!(n_split > 0, "no split-k GEMM was checked");
    assert!(n_copies >= 10, "only {n_copies} copying variants checked");
    // The unpooled weight gradient over the pool's windows: each channel grouping the catalogue
    // shapes allow, without subgroups, and with them in the forms this adapter's subgroups
    // allow (`DeviceCaps`): whole-subgroup sums only on subgroups of exactly 8 lanes, block
    // sums on any subgroups of a multiple of 8 lanes; elsewhere none may be offered.
    let caps = gpu.caps();
    let whole = caps.subgroups == Some(striate::ir::SubgroupShare::Whole);
    let blocks = caps.subgroups.is_some() || gpu.with_subgroup_blocks().caps().subgroups.is_some();
    assert!(
        n_windows[0] >= 10 && (n_windows[1] >= 10) == whole && (n_windows[2] >= 10) == blocks,
        "window-sum variants checked (none, whole, blocks): {n_windows:?}; expected whole \
         {whole}, blocks {blocks} ({}, {caps:?})",
        gpu.describe()
    );
    // Every op with subgroup plans, in the block form, where the adapter has subgroups.
    if blocks {
        assert_eq!(
            block_ops.into_iter().collect::<Vec<_>>(),
            [
                "conv2d",
                "conv2d_backward_input",
                "conv2d_backward_input_unpool",
                "conv2d_backward_weight",
                "conv2d_backward_weight_unpool",
                "conv2d_relu",
                "conv2d_relu_pool",
                "linear",
                "linear_backward_input",
                "linear_backward_weight",
                "linear_relu",
                "matmul"
            ],
            "block-shuffle variants checked"
        );
    }
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
    // The workgroup-tiled GPU family: every op that offers it, on odd shapes.
    assert_eq!(
        tiled_ops.into_iter().collect::<Vec<_>>(),
        [
            "conv2d",
            "conv2d_backward_input",
            "conv2d_backward_weight",
            "conv2d_relu",
            "conv2d_relu_pool",
            "linear",
            "linear_relu",
            "matmul"
        ],
        "workgroup-tiled variants checked"
    );
    // Batch norm's statistics and backward sums, and bias gradients, over (channel, split)
    // workgroups.
    assert_eq!(
        split_ops.into_iter().collect::<Vec<_>>(),
        [
            "batch_norm2d",
            "batch_norm2d_backward",
            "bias_add_backward_bias"
        ],
        "split reductions checked"
    );
    assert_eq!(
        split_bias_ops.into_iter().collect::<Vec<_>>(),
        [
            "bias_add_backward_bias",
            "conv2d_backward_weight",
            "conv2d_backward_weight_unpool"
        ],
        "split bias gradients checked"
    );
    eprintln!("{n_checked} variants checked, {n_split} split-k reductions");
}

/// A plan that copies an input into its texture before the compute pass may only do so where
/// the input is ready at the program's start: here the matmul's left operand is computed in
/// the program, so the copying variants must give way (and the result stay right), while the
/// same product on a program input takes them.
#[test]
fn copies_only_of_inputs_ready_at_the_start() {
    use striate::exec::gpu::{Executable, ProgramSpec};
    use striate::ir::{CpuTensor, OpDef};
    use striate::ops::linalg::matmul::Matmul;
    use striate::ops::tensor::add::Add;
    use striate::Graph;

    let Some(gpu) = common::gpu() else { return };
    let (m, k, n) = (9, 128, 192);
    let op = Matmul {
        trans_a: false,
        trans_b: false,
    };
    let a_shape = Shape::f32([m, k]);
    let b_shape = Shape::f32([k, n]);
    let c_shape = Shape::f32([m, n]);
    let copying = op
        .plans(&[&a_shape, &b_shape], &[&c_shape], &gpu.caps())
        .into_iter()
        .find(|p| !p.copies.is_empty())
        .expect("an aligned product offers a copying variant")
        .variant;
    let values = |len: usize, seed: u32| -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32 * 7919 + seed) % 97) as f32 / 97.0 - 0.5)
            .collect()
    };
    let (a0, a1, b) = (values(m * k, 1), values(m * k, 2), values(k * n, 3));
    for computed in [false, true] {
        let mut g = Graph::new();
        let x0 = g.input("a0", a_shape.clone());
        let x1 = g.input("a1", a_shape.clone());
        let y = g.input("b", b_shape.clone());
        let lhs = if computed {
            g.push(Add, &[x0, x1]).expect("add")[0]
        } else {
            x0
        };
        let c = g.push(op, &[lhs, y]).expect("matmul")[0];
        let spec = ProgramSpec {
            name: "p".into(),
            outputs: vec![c],
            effects: vec![],
        };
        let exe = Executable::build_with(&gpu, &g, &[spec], VariantChoice::Named(copying.clone()))
            .expect("build");
        let program = exe.program("p").expect("program");
        let labels = exe.dispatch_labels(program);
        let chose_copies = labels.iter().any(|l| l.contains(&format!("[{copying}]")));
        assert_eq!(chose_copies, !computed, "{labels:?}");
        exe.write(x0, bytemuck::cast_slice(&a0)).expect("write");
        exe.write(x1, bytemuck::cast_slice(&a1)).expect("write");
        exe.write(y, bytemuck::cast_slice(&b)).expect("write");
        exe.run(program).expect("run");
        let lhs_values: Vec<f32> = if computed {
            a0.iter().zip(&a1).map(|(p, q)| p + q).collect()
        } else {
            a0.clone()
        };
        let want = run_reference(
            &op,
            &[
                CpuTensor::from_f32([m, k], lhs_values),
                CpuTensor::from_f32([k, n], b.clone()),
            ],
        );
        let got = exe.read(program, c).expect("read");
        match (&got.data, &want[0].data) {
            (TensorData::F32(g), TensorData::F32(w)) => {
                assert_close(&format!("computed {computed}"), g, w, 1e-5, 1e-4);
            }
            _ => panic!("dtype"),
        }
    }
}
