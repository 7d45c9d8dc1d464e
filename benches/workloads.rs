//! The benchmark workloads of `../shared/WORKLOADS.md` (W1-W4), timed as specified there, and
//! three GPU-scale ones where launch overhead no longer hides the kernels: W1B and W2B (W1 and
//! W2's training at batch 256; W2B's inference at batch 1024) and W3L (SGEMM 4096, median of 5
//! after 1).
//!
//! `cargo bench --bench workloads` runs all seven; `cargo bench --bench workloads -- W3` runs
//! one. Each result is verified against the CPU reference (or, for training, against the
//! accuracy it must reach) before it is reported, every timed run ends with a device sync, and
//! each workload prints one machine-readable line: `striate-bench {"workload":"W3",...}`.
//!
//! Two measurements per workload: the figure WORKLOADS.md defines (W1: one whole epoch; W2:
//! 50 steps after 5; W3: median of 20 after 3; W4: median of 10), which goes into the
//! `striate-bench` line and BENCHMARKS.md, then a criterion benchmark of the same synced
//! iteration (W1/W2: one training step, one inference batch; W3/W4: one product), whose
//! statistics and change against the previous run criterion prints and keeps in
//! `target/criterion`. Criterion's throughput is in elements: flops for W3/W4, images for W1/W2.
//! `STRIATE_BENCH_PROFILE=1` adds per-dispatch times, `STRIATE_BENCH_TIMES=1` every timed run
//! (these machines are noisy: look at the spread before trusting a median).
#![allow(clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};

use striate::data::{batches, load_fashion_mnist, synthetic, DataSplit};
use striate::exec::gpu::{Executable, ProgramSpec, VariantChoice};
use striate::ir::TensorId;
use striate::ir::{Conv2dGeometry, CpuTensor, OpDef};
use striate::models::Model;
use striate::ops::conv::conv2d::{Conv2d, Conv2dBackwardInput, Conv2dBackwardWeight};
use striate::ops::linalg::matmul::Matmul;
use striate::ops::testing::{assert_close, run_reference};
use striate::rng::Rng;
use striate::train::{Optimizer, TrainConfig, Trainer};
use striate::{GpuContext, Graph, Shape};

fn main() -> anyhow::Result<()> {
    // See src/bin/train-gpu.rs: Mesa's device-select layer only adds noise on headless machines.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| f == name);
    let gpu = GpuContext::from_env()?;
    println!("adapter: {}", gpu.describe());
    // Few, long iterations: 10 samples of one iteration each ("flat"), as WORKLOADS.md times.
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .without_plots();
    if wanted("W1") {
        w1(&gpu, &mut c, 64)?;
    }
    if wanted("W1B") {
        w1(&gpu, &mut c, 256)?;
    }
    if wanted("W2") {
        w2(&gpu, &mut c, 128, 256)?;
    }
    if wanted("W2B") {
        w2(&gpu, &mut c, 256, 1024)?;
    }
    if wanted("W3") {
        w3(&gpu, &mut c, 1024)?;
    }
    if wanted("W3L") {
        w3(&gpu, &mut c, 4096)?;
    }
    if wanted("W4") {
        w4(&gpu, &mut c)?;
    }
    c.final_summary();
    Ok(())
}

/// A criterion benchmark of `run` (one synced iteration), `elements` per iteration.
fn criterion_bench(
    c: &mut Criterion,
    group: &str,
    name: &str,
    elements: u64,
    run: &mut dyn FnMut() -> anyhow::Result<()>,
) {
    // One iteration first, to give criterion enough measurement time for its 10 samples.
    let start = Instant::now();
    run().expect("benchmark iteration");
    let once = start.elapsed();
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat)
        .measurement_time((once * 12).max(Duration::from_secs(5)))
        .throughput(Throughput::Elements(elements));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                run().expect("benchmark iteration");
            }
            start.elapsed()
        });
    });
    g.finish();
}

fn report(json: serde_json::Value) {
    println!("striate-bench {json}");
}

fn data() -> anyhow::Result<DataSplit> {
    Ok(match load_fashion_mnist(None)? {
        Some(split) => split,
        None => {
            println!("Fashion-MNIST not installed: W1/W2 run on the synthetic dataset (apt-get install dataset-fashion-mnist)");
            synthetic(60_000, 10_000, 0)
        }
    })
}

/// Peak resident set size of this process, from /proc (Linux), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// W1: LeNet-5, Adam 1e-3, batch 64, shuffle seed 0, one epoch of 937 steps; images/s over
/// steps 21..=937; test accuracy on all 10,000 test images after the epoch; peak RSS. W1B: the
/// same at batch 256 (234 steps), no criterion run.
fn w1(gpu: &GpuContext, crit: &mut Criterion, batch: usize) -> anyhow::Result<()> {
    let name = if batch == 64 { "W1" } else { "W1B" };
    let split = data()?;
    let cfg = TrainConfig {
        model: Model::Lenet5,
        batch_size: batch,
        optimizer: Optimizer::adam(1e-3),
        seed: 0,
        ..Default::default()
    };
    let trainer = Trainer::new_tuned(gpu, &cfg)?;
    let train = Arc::new(split.train);
    let mut start = Instant::now();
    let mut steps = 0;
    for b in batches(train.clone(), batch, Some(0), true) {
        trainer.train_step(&b.images, &b.labels)?;
        steps += 1;
        if steps == 20 {
            trainer.take_metrics()?; // Syncs: the clock starts with the GPU idle.
            start = Instant::now();
        }
    }
    let train_metrics = trainer.take_metrics()?; // Syncs after the last step.
    let seconds = start.elapsed().as_secs_f64();
    let train_img_s = ((steps - 20) * batch) as f64 / seconds;
    let test = trainer.evaluate(&split.test)?;
    println!(
        "{name} LeNet-5 train, batch {batch}: {steps} steps, {train_img_s:.0} images/s (steps 21..={steps}), train loss {:.4}, test accuracy {:.2}% on {} images",
        train_metrics.loss,
        100.0 * test.accuracy,
        test.count
    );
    report(
        serde_json::json!({"workload": name, "train_img_s": train_img_s, "test_acc": test.accuracy, "peak_rss_mb": peak_rss_mb()}),
    );
    if batch != 64 {
        return Ok(());
    }
    let batch = batches(train, 64, Some(1), true).recv()?;
    criterion_bench(crit, "W1", "lenet5_train_step_b64", 64, &mut || {
        trainer.train_step(&batch.images, &batch.labels)?;
        gpu.wait()?;
        Ok(())
    });
    Ok(())
}

/// W2: ConvNet-S, Adam 1e-3, batch 128: train images/s over 50 steps after 5 warm-up steps;
/// inference images/s at batch 256. W2B: training at batch 256, inference at 1024, no
/// criterion run.
fn w2(
    gpu: &GpuContext,
    crit: &mut Criterion,
    batch: usize,
    infer_batch: usize,
) -> anyhow::Result<()> {
    let name = if batch == 128 { "W2" } else { "W2B" };
    let split = data()?;
    let cfg = TrainConfig {
        model: Model::ConvnetS,
        batch_size: batch,
        optimizer: Optimizer::adam(1e-3),
        seed: 0,
        ..Default::default()
    };
    let trainer = Trainer::new_tuned(gpu, &cfg)?;
    let train = Arc::new(split.train);
    let all: Vec<_> = batches(train.clone(), batch, Some(0), true)
        .into_iter()
        .take(55)
        .collect();
    let mut start = Instant::now();
    for (i, b) in all.iter().enumerate() {
        if i == 5 {
            trainer.take_metrics()?;
            start = Instant::now();
        }
        trainer.train_step(&b.images, &b.labels)?;
    }
    let m = trainer.take_metrics()?;
    let train_img_s = (50 * batch) as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(
        m.loss.is_finite() && m.loss < 2.3,
        "W2 training is not learning: loss {}",
        m.loss
    );

    let infer = Trainer::new_tuned(
        gpu,
        &TrainConfig {
            batch_size: infer_batch,
            ..cfg
        },
    )?;
    // 11 timed batches (W2: 2,816 images; W2B: 9 of 1,024, all the test set allows).
    let test: Vec<_> = batches(Arc::new(split.test), infer_batch, None, true)
        .into_iter()
        .take(12)
        .collect();
    infer.eval_step(&test[0].images, &test[0].labels)?;
    infer.take_metrics()?;
    let start = Instant::now();
    for b in &test[1..] {
        infer.eval_step(&b.images, &b.labels)?;
    }
    let m = infer.take_metrics()?;
    let infer_img_s = ((test.len() - 1) * infer_batch) as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(
        m.count == ((test.len() - 1) * infer_batch) as u64,
        "inference counted {} images",
        m.count
    );
    println!("{name} ConvNet-S: train {train_img_s:.1} images/s (batch {batch}), inference {infer_img_s:.1} images/s (batch {infer_batch})");
    report(
        serde_json::json!({"workload": name, "train_img_s": train_img_s, "infer_img_s": infer_img_s}),
    );
    if batch != 128 {
        return Ok(());
    }
    criterion_bench(crit, "W2", "convnet_s_train_step_b128", 128, &mut || {
        trainer.train_step(&all[0].images, &all[0].labels)?;
        gpu.wait()?;
        Ok(())
    });
    criterion_bench(crit, "W2", "convnet_s_inference_b256", 256, &mut || {
        infer.eval_step(&test[0].images, &test[0].labels)?;
        gpu.wait()?;
        Ok(())
    });
    Ok(())
}

/// One op baked alone, with random inputs uploaded: `run` and a sync per timed call.
struct OpBench {
    exe: Executable,
    outputs: Vec<TensorId>,
    inputs: Vec<CpuTensor>,
}

impl OpBench {
    /// `ops[i]` reads the inputs listed in `wiring[i]`; its first output is kept readable.
    fn new(
        gpu: &GpuContext,
        ops: &[Arc<dyn OpDef>],
        input_shapes: &[Shape],
        wiring: &[&[usize]],
    ) -> anyhow::Result<Self> {
        let mut g = Graph::new();
        let mut rng = Rng::new(1);
        let inputs: Vec<CpuTensor> = input_shapes
            .iter()
            .map(|s| {
                CpuTensor::from_f32(
                    s.dims.clone(),
                    (0..s.numel()).map(|_| rng.range(-1.0, 1.0)).collect(),
                )
            })
            .collect();
        let ids: Vec<TensorId> = input_shapes
            .iter()
            .enumerate()
            .map(|(i, s)| g.input(&format!("in{i}"), s.clone()))
            .collect();
        let mut outputs = Vec::new();
        for (op, wires) in ops.iter().zip(wiring) {
            let args: Vec<TensorId> = wires.iter().map(|&i| ids[i]).collect();
            outputs.push(g.push_arc(op.clone(), &args)?[0]);
        }
        let exe = Executable::build_with(
            gpu,
            &g,
            &[ProgramSpec {
                name: "bench".into(),
                outputs: outputs.clone(),
                effects: vec![],
            }],
            VariantChoice::Autotune,
        )?;
        for (op, variant) in exe.tuning_report().choices {
            println!("  tuned: {variant} for {op}");
        }
        for (id, t) in ids.iter().zip(&inputs) {
            exe.write(*id, t.bytes())?;
        }
        Ok(OpBench {
            exe,
            outputs,
            inputs,
        })
    }

    fn run_synced(&self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.exe.run(self.exe.program("bench")?)?;
        self.exe.gpu().wait()?;
        Ok(start.elapsed())
    }

    /// Median of `runs` timed runs after `warmup` untimed ones.
    fn median(&self, warmup: usize, runs: usize) -> anyhow::Result<f64> {
        self.median_warm(warmup, Duration::ZERO, runs)
    }

    /// Median of `runs` timed runs after at least `warmup` untimed ones and `warm_time` of
    /// them: a GPU left idle (here during the CPU reference check) takes a while to reach its
    /// clocks, longer than a few millisecond-long runs.
    fn median_warm(&self, warmup: usize, warm_time: Duration, runs: usize) -> anyhow::Result<f64> {
        let start = Instant::now();
        let mut done = 0;
        while done < warmup || start.elapsed() < warm_time {
            self.run_synced()?;
            done += 1;
        }
        let mut times: Vec<f64> = (0..runs)
            .map(|_| self.run_synced().map(|d| d.as_secs_f64()))
            .collect::<Result<_, _>>()?;
        if std::env::var_os("STRIATE_BENCH_TIMES").is_some() {
            println!(
                "  runs (ms): {:?}",
                times.iter().map(|t| (t * 1e3).round()).collect::<Vec<_>>()
            );
        }
        times.sort_by(f64::total_cmp);
        Ok(times[runs / 2])
    }

    /// With `STRIATE_BENCH_PROFILE=1`, prints each dispatch's time (one run, synced per dispatch).
    fn maybe_profile(&self) -> anyhow::Result<()> {
        if std::env::var_os("STRIATE_BENCH_PROFILE").is_some() {
            for (label, s) in self.exe.profile(self.exe.program("bench")?)? {
                println!("  {:9.2} ms  {label}", s * 1e3);
            }
        }
        Ok(())
    }

    fn output(&self, i: usize) -> anyhow::Result<CpuTensor> {
        Ok(self.exe.read(self.exe.program("bench")?, self.outputs[i])?)
    }
}

/// W3: SGEMM C = A·B, M = N = K = 1024: median of 20 runs after 3 warm-up. W3L: 4096, median
/// of 5 after 1 (a software adapter takes seconds a run), no criterion run.
fn w3(gpu: &GpuContext, crit: &mut Criterion, n: usize) -> anyhow::Result<()> {
    let name = if n == 1024 { "W3" } else { "W3L" };
    let op = Matmul {
        trans_a: false,
        trans_b: false,
    };
    let bench = OpBench::new(
        gpu,
        &[Arc::new(op)],
        &[Shape::f32([n, n]), Shape::f32([n, n])],
        &[&[0, 1]],
    )?;
    bench.run_synced()?;
    // Verify some rows against the reference (the full reference takes minutes on 2 cores).
    let rows = 64 * 1024 / n;
    let a_rows = CpuTensor::from_f32([rows, n], bench.inputs[0].f32()[..rows * n].to_vec());
    let want = run_reference(&op, &[a_rows, bench.inputs[1].clone()]);
    assert_close(
        &format!("{name} SGEMM (first {rows} rows)"),
        &bench.output(0)?.f32()[..rows * n],
        want[0].f32(),
        1e-3,
        1e-3,
    );
    let seconds = if n == 1024 {
        bench.median(3, 20)?
    } else {
        bench.median(1, 5)?
    };
    bench.maybe_profile()?;
    let gflops = 2.0 * (n * n * n) as f64 / seconds / 1e9;
    println!(
        "{name} SGEMM {n}: {:.1} ms, {gflops:.2} GFLOP/s",
        seconds * 1e3
    );
    report(serde_json::json!({"workload": name, "gflops": gflops}));
    if n != 1024 {
        return Ok(());
    }
    criterion_bench(
        crit,
        "W3",
        "sgemm_1024",
        2 * (n * n * n) as u64,
        &mut || bench.run_synced().map(drop),
    );
    Ok(())
}

/// W4: conv2d N = 64, C = K = 64, 28x28, 3x3, stride 1, pad 1: forward, and backward (input +
/// weight gradients); median of 10 after warm-up.
fn w4(gpu: &GpuContext, crit: &mut Criterion) -> anyhow::Result<()> {
    let geometry = Conv2dGeometry {
        stride: 1,
        pad: 1,
        dilation: 1,
    };
    let (n, c, k, hw) = (64, 64, 64, 28);
    let x = Shape::f32([n, c, hw, hw]);
    let w = Shape::f32([k, c, 3, 3]);
    let fwd_op = Conv2d(geometry);
    let fwd = OpBench::new(
        gpu,
        &[Arc::new(fwd_op)],
        &[x.clone(), w.clone(), Shape::f32([k])],
        &[&[0, 1, 2]],
    )?;
    fwd.run_synced()?;
    // Verify one image against the reference.
    let x1 = CpuTensor::from_f32([1, c, hw, hw], fwd.inputs[0].f32()[..c * hw * hw].to_vec());
    let want = run_reference(&fwd_op, &[x1, fwd.inputs[1].clone(), fwd.inputs[2].clone()]);
    assert_close(
        "W4 forward (image 0)",
        &fwd.output(0)?.f32()[..k * hw * hw],
        want[0].f32(),
        1e-3,
        1e-3,
    );
    // Warm for a second: the two figures of W4's backward on the H200 (median 22 ms, criterion
    // 4.3 ms a run) came from the same synced runs, the median's 10 of them right after the
    // seconds-long CPU check with the GPU idle, criterion's after its 1 s warm-up.
    let warm = Duration::from_secs(1);
    let fwd_s = fwd.median_warm(2, warm, 10)?;
    fwd.maybe_profile()?;

    let bi = Conv2dBackwardInput {
        geometry,
        h: hw,
        w: hw,
    };
    let bw = Conv2dBackwardWeight {
        geometry,
        kh: 3,
        kw: 3,
        bias: false,
    };
    let grad_y = Shape::f32([n, k, hw, hw]);
    let bwd = OpBench::new(
        gpu,
        &[Arc::new(bi), Arc::new(bw)],
        &[grad_y, w, x],
        &[&[0, 1], &[0, 2]],
    )?;
    bwd.run_synced()?;
    let g1 = CpuTensor::from_f32([1, k, hw, hw], bwd.inputs[0].f32()[..k * hw * hw].to_vec());
    let want = run_reference(&bi, &[g1, bwd.inputs[1].clone()]);
    assert_close(
        "W4 backward input (image 0)",
        &bwd.output(0)?.f32()[..c * hw * hw],
        want[0].f32(),
        1e-3,
        1e-3,
    );
    let want = run_reference(&bw, &[bwd.inputs[0].clone(), bwd.inputs[2].clone()]);
    assert_close(
        "W4 backward weight",
        bwd.output(1)?.f32(),
        want[0].f32(),
        1e-2,
        1e-3,
    );
    let bwd_s = bwd.median_warm(2, warm, 10)?;
    bwd.maybe_profile()?;

    let flops = 2.0 * (n * k * c * hw * hw * 9) as f64;
    let (fwd_gflops, bwd_gflops) = (flops / fwd_s / 1e9, 2.0 * flops / bwd_s / 1e9);
    println!("W4 conv2d 64x64x28x28 3x3: forward {:.0} ms {fwd_gflops:.2} GFLOP/s, backward {:.0} ms {bwd_gflops:.2} GFLOP/s", fwd_s * 1e3, bwd_s * 1e3);
    report(
        serde_json::json!({"workload": "W4", "fwd_gflops": fwd_gflops, "bwd_gflops": bwd_gflops}),
    );
    criterion_bench(crit, "W4", "conv_forward", flops as u64, &mut || {
        fwd.run_synced().map(drop)
    });
    criterion_bench(crit, "W4", "conv_backward", 2 * flops as u64, &mut || {
        bwd.run_synced().map(drop)
    });
    Ok(())
}
