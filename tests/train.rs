//! Whole training steps on the GPU against the CPU interpreter, overfitting one batch, and the
//! counters that prove a step creates nothing and reads nothing back.

mod common;

use striate::data::synthetic;
use striate::exec::cpu::CpuInterpreter;
use striate::graph::schedule;
use striate::ir::CpuTensor;
use striate::models::Model;
use striate::ops::testing::assert_close;
use striate::train::{training_graph, Optimizer, TrainConfig, Trainer};
use striate::{GpuContext, Shape};

fn config(model: Model, batch_size: usize, optimizer: Optimizer) -> TrainConfig {
    TrainConfig {
        model,
        batch_size,
        optimizer,
        seed: 42,
        ..Default::default()
    }
}

/// One full step on the GPU equals the CPU interpreter: the loss, every parameter gradient,
/// and every parameter after the optimizer update.
fn check_step_matches_cpu(model: Model, batch_size: usize, optimizer: Optimizer) {
    let Some(gpu) = common::gpu() else { return };
    check_step_on(&gpu, model, batch_size, optimizer);
}

fn check_step_on(gpu: &GpuContext, model: Model, batch_size: usize, optimizer: Optimizer) {
    check_step_config(gpu, &config(model, batch_size, optimizer));
}

/// [`check_step_on`] for any configuration; returns the CPU interpreter's state tensors
/// after the step, by name.
fn check_step_config(gpu: &GpuContext, cfg: &TrainConfig) -> Vec<(String, CpuTensor)> {
    let gpu = gpu.clone();
    let (batch_size, optimizer) = (cfg.batch_size, cfg.optimizer);
    let cfg = *cfg;
    let data = synthetic(batch_size, 1, 5).train;
    let images = data.images(0, data.len());
    let trainer = Trainer::new_checked(&gpu, &cfg).expect("trainer");
    let (gpu_loss, gpu_grads) = trainer.check_step(&images, &data.labels).expect("step");
    let gpu_params = trainer.parameters().expect("parameters");
    let gpu_buffers = trainer.buffers().expect("buffers");

    let (g, parts) = training_graph(&cfg).expect("graph");
    let mut outputs = vec![parts.loss];
    outputs.extend(&parts.grads);
    let mut cpu = CpuInterpreter::new(&g);
    cpu.set(
        parts.images,
        CpuTensor::from_f32([batch_size, 1, 28, 28], images.clone()),
    )
    .expect("set");
    cpu.set(
        parts.labels,
        CpuTensor::from_u32([batch_size], data.labels.clone()),
    )
    .expect("set");
    cpu.run(&g, &schedule(&g, &outputs, &parts.train_effects))
        .expect("run");

    // The loss is a scalar, as PyTorch's: 0-d, one element.
    assert_eq!(g.shape(parts.loss), &Shape::scalar());
    let cpu_loss = cpu
        .get(parts.loss)
        .expect("value")
        .item()
        .expect("scalar loss");
    assert!(
        (gpu_loss - cpu_loss).abs() < 1e-5 * cpu_loss.abs().max(1.0),
        "loss: GPU {gpu_loss}, CPU {cpu_loss}"
    );
    assert_eq!(gpu_grads.len(), parts.params.len());
    for ((name, grad), &cpu_grad) in gpu_grads.iter().zip(&parts.grads) {
        let want = cpu.get(cpu_grad).expect("value").f32();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            scale > 0.0,
            "{name}: the CPU gradient is all zeros, the comparison would prove nothing"
        );
        assert_close(
            &format!("grad of {name}"),
            grad.f32(),
            want,
            1e-4 * scale,
            1e-3,
        );
    }
    // Batch norm's running statistics, moved toward the batch's by the train program.
    assert_eq!(gpu_buffers.len(), parts.buffers.len());
    for ((name, value), (_, buffer)) in gpu_buffers.iter().zip(&parts.buffers) {
        let want = cpu.get(*buffer).expect("value").f32();
        assert_close(
            &format!("{name} after the step"),
            value.f32(),
            want,
            1e-5,
            1e-4,
        );
    }
    // Adam's first step moves each parameter by about lr·sign(grad), so where a gradient is
    // ~0 its sign (and the update) is decided by rounding; compare only where it is not.
    // RMSprop's first step is sign-like too (g / √((1 − α)·g²)).
    let is_adam = matches!(
        optimizer,
        Optimizer::Adam { .. } | Optimizer::AdamW { .. } | Optimizer::RmsProp { .. }
    );
    for (((name, value), (_, param)), &cpu_grad) in
        gpu_params.iter().zip(&parts.params).zip(&parts.grads)
    {
        let grad = cpu.get(cpu_grad).expect("value").f32();
        let scale = grad.iter().fold(0f32, |m, v| m.max(v.abs()));
        let keep: Vec<usize> = (0..grad.len())
            .filter(|&i| !is_adam || grad[i] == 0.0 || grad[i].abs() > 1e-3 * scale)
            .collect();
        assert!(
            keep.len() * 2 > grad.len(),
            "{name}: too few well-conditioned elements to compare"
        );
        let pick = |v: &[f32]| keep.iter().map(|&i| v[i]).collect::<Vec<f32>>();
        assert_close(
            &format!("{name} after the update"),
            &pick(value.f32()),
            &pick(cpu.get(*param).expect("value").f32()),
            2e-6,
            1e-4,
        );
    }
    (0..g.n_tensors() as u32)
        .map(striate::TensorId)
        .filter(|&t| matches!(g.tensor(t).kind, striate::ir::TensorKind::State(_)))
        .map(|t| (g.tensor(t).name.clone(), cpu.get(t).expect("value").clone()))
        .collect()
}

#[test]
fn lenet_step_with_adam_matches_cpu_interpreter() {
    check_step_matches_cpu(Model::Lenet5, 13, Optimizer::adam(1e-3));
}

#[test]
fn lenet_step_with_sgd_momentum_matches_cpu_interpreter() {
    check_step_matches_cpu(
        Model::Lenet5,
        8,
        Optimizer::Sgd {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-3,
            nesterov: false,
            dampening: 0.0,
        },
    );
}

/// Dampened SGD (its update reads the step count) with gradient clipping by global norm: the
/// sums of squares, the coefficient and the scaled updates on the GPU equal the CPU's, and
/// the clipping did act (LeNet's first gradient is far above the norm allowed).
#[test]
fn lenet_step_with_dampening_and_clipping_matches_cpu_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    let optimizer = Optimizer::Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 1e-3,
        nesterov: false,
        dampening: 0.5,
    };
    let cfg = TrainConfig {
        clip_grad_norm: Some(0.05),
        ..config(Model::Lenet5, 8, optimizer)
    };
    let cpu = check_step_config(&gpu, &cfg);
    let factors = cpu
        .iter()
        .find(|(name, _)| name == "optimizer.step_factors")
        .expect("the step factors are state")
        .1
        .f32()
        .to_vec();
    assert!(
        factors[1] > 0.0 && factors[1] < 0.5,
        "the gradient scale {} should have clipped",
        factors[1]
    );
}

/// The smoke test on wgpu's GL backend (llvmpipe through EGL here): a different shader
/// compiler (naga → GLSL) and no subgroups, so other GEMM variants run.
#[test]
fn lenet_step_on_the_gl_adapter_matches_cpu_interpreter() {
    let Some(gpu) = common::gl() else { return };
    check_step_on(&gpu, Model::Lenet5, 13, Optimizer::adam(1e-3));
}

#[test]
fn lenet_step_with_adamw_matches_cpu_interpreter() {
    check_step_matches_cpu(Model::Lenet5, 9, Optimizer::adamw(1e-3));
}

#[test]
fn lenet_step_with_rmsprop_matches_cpu_interpreter() {
    let rmsprop = Optimizer::RmsProp {
        lr: 1e-3,
        alpha: 0.99,
        eps: 1e-8,
        weight_decay: 1e-4,
        momentum: 0.9,
    };
    check_step_matches_cpu(Model::Lenet5, 9, rmsprop);
}

#[test]
fn convnet_s_step_matches_cpu_interpreter() {
    check_step_matches_cpu(Model::ConvnetS, 3, Optimizer::adam(1e-3));
}

/// Batch norm (training statistics, the running statistics' update), residual additions,
/// strided and 1×1 convolutions without bias, global average pooling.
#[test]
fn resnet20_step_matches_cpu_interpreter() {
    check_step_matches_cpu(
        Model::Resnet20,
        3,
        Optimizer::Sgd {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-4,
            nesterov: true,
            dampening: 0.0,
        },
    );
}

/// Local response normalisation, 3×3 stride-2 pools, adaptive pooling, dropout (its mask
/// drawn identically on both sides from the step counter).
#[test]
fn alexnet_step_matches_cpu_interpreter() {
    check_step_matches_cpu(Model::Alexnet, 2, Optimizer::adam(1e-3));
}

/// Inception blocks: four branches concatenated, 5×5 convolutions, padded 3×3 pools.
#[test]
fn googlenet_step_matches_cpu_interpreter() {
    check_step_matches_cpu(Model::Googlenet, 2, Optimizer::adam(1e-3));
}

/// Every built-in model learns: after 16 steps of Adam on one batch of 8 the batch's loss is
/// at most four fifths of the first step's (about ln 10, chance, for all of them; measured:
/// 0.65-0.74 of it for AlexNet and the plain VGGs, whose dropout slows memorising, 0.45 for
/// LeNet-5, under 0.3 for the rest). The loss
/// compared is the training objective without dropout's noise: evaluation mode for models
/// without batch norm (the same function, dropout off), the mean of the last three training
/// steps for those with it (whose evaluation mode uses running statistics that 16 steps have
/// not yet settled). The deep models without batch norm (AlexNet, VGG) take the smaller
/// learning rate they are usually trained with (Adam 1e-3 sends VGG-16's loss to 10 within
/// four steps and its ReLUs dead).
#[test]
fn every_model_learns_one_batch() {
    let Some(gpu) = common::gpu() else { return };
    let data = synthetic(8, 1, 11).train;
    let images = data.images(0, data.len());
    for model in Model::ALL {
        let lr = match model {
            Model::Alexnet | Model::Vgg11 | Model::Vgg16 => 4e-4,
            _ => 1e-3,
        };
        let trainer = Trainer::new(&gpu, &config(model, 8, Optimizer::adam(lr))).expect("trainer");
        let mut losses = Vec::new();
        for _ in 0..16 {
            trainer.train_step(&images, &data.labels).expect("step");
            losses.push(trainer.take_metrics().expect("metrics").loss);
        }
        let has_batch_norm = model.sizes([1, 28, 28], 10).expect("sizes").1 > 0;
        let last = if has_batch_norm {
            losses[13..].iter().sum::<f64>() / 3.0
        } else {
            trainer.eval_step(&images, &data.labels).expect("eval");
            trainer.take_metrics().expect("metrics").loss
        };
        let first = losses[0];
        eprintln!("{model}: {first:.3} -> {last:.3}");
        assert!(
            losses.iter().all(|l| l.is_finite()) && last < 0.8 * first,
            "{model}: loss went from {first} to {last}; training: {losses:?}"
        );
    }
}

/// The eval program normalises by the running statistics and updates nothing; the train
/// program by the batch's, moving the running ones. A model without such layers computes the
/// same logits in both.
#[test]
fn eval_mode_differs_from_train_mode_exactly_where_it_must() {
    use striate::exec::gpu::{Executable, ProgramSpec};

    let Some(gpu) = common::gpu() else { return };
    let batch = 4;
    let data = synthetic(batch, 1, 12).train;
    let images = data.images(0, data.len());
    for model in [Model::Resnet20, Model::Lenet5] {
        let cfg = config(model, batch, Optimizer::adam(1e-3));
        let (g, parts) = training_graph(&cfg).expect("graph");
        let specs = [
            ProgramSpec {
                name: "train".into(),
                outputs: vec![parts.logits],
                effects: parts.train_effects.clone(),
            },
            ProgramSpec {
                name: "eval".into(),
                outputs: vec![parts.eval_logits],
                effects: vec![parts.eval_metrics_node],
            },
        ];
        let exe = Executable::build(&gpu, &g, &specs).expect("build");
        let (train, eval) = (exe.program("train").unwrap(), exe.program("eval").unwrap());
        exe.write(parts.images, bytemuck::cast_slice(&images))
            .unwrap();
        exe.write(parts.labels, bytemuck::cast_slice(&data.labels))
            .unwrap();
        let read_buffers = || -> Vec<Vec<f32>> {
            parts
                .buffers
                .iter()
                .map(|(_, t)| exe.read(eval, *t).unwrap().f32().to_vec())
                .collect()
        };

        let initial = read_buffers();
        exe.run(eval).unwrap();
        let eval_logits = exe.read(eval, parts.eval_logits).unwrap();
        exe.run(eval).unwrap();
        assert_eq!(read_buffers(), initial, "{model}: eval updated a buffer");
        assert_eq!(
            exe.read(eval, parts.eval_logits).unwrap(),
            eval_logits,
            "{model}: eval is not repeatable"
        );

        // The eval forward on the CPU interpreter, for the same parameters.
        let mut cpu = CpuInterpreter::new(&g);
        cpu.set(
            parts.images,
            CpuTensor::from_f32([batch, 1, 28, 28], images.clone()),
        )
        .expect("set");
        cpu.set(
            parts.labels,
            CpuTensor::from_u32([batch], data.labels.clone()),
        )
        .expect("set");
        cpu.run(&g, &schedule(&g, &[parts.eval_logits], &[]))
            .expect("run");
        assert_close(
            &format!("{model} eval logits"),
            eval_logits.f32(),
            cpu.get(parts.eval_logits).expect("value").f32(),
            1e-4,
            1e-3,
        );

        exe.run(train).unwrap();
        let train_logits = exe.read(train, parts.logits).unwrap();
        let moved = read_buffers();
        if model == Model::Resnet20 {
            assert_eq!(
                parts.buffers.len(),
                2 * 21,
                "two running statistics per batch norm"
            );
            assert!(
                moved.iter().zip(&initial).all(|(m, i)| m != i),
                "{model}: a running statistic did not move in training"
            );
            let max_diff = train_logits
                .f32()
                .iter()
                .zip(eval_logits.f32())
                .map(|(t, e)| (t - e).abs())
                .fold(0f32, f32::max);
            assert!(
                max_diff > 1e-3,
                "{model}: batch statistics and running statistics gave the same logits"
            );
        } else {
            assert_eq!(
                parts.eval_logits, parts.logits,
                "{model}: one forward serves both"
            );
            assert!(parts.buffers.is_empty());
            assert_eq!(
                train_logits, eval_logits,
                "{model}: train and eval logits differ"
            );
        }
    }
}

#[test]
fn loss_falls_when_overfitting_one_batch() {
    let Some(gpu) = common::gpu() else { return };
    let data = synthetic(32, 1, 9).train;
    let images = data.images(0, data.len());
    let trainer =
        Trainer::new(&gpu, &config(Model::Lenet5, 32, Optimizer::adam(3e-3))).expect("trainer");
    let mut losses = Vec::new();
    for _ in 0..30 {
        trainer.train_step(&images, &data.labels).expect("step");
        losses.push(trainer.take_metrics().expect("metrics").loss);
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        last < 0.2 * first,
        "loss went from {first} to {last}: {losses:?}"
    );
}

/// A LeNet-5 trainer on its own context (counters are per context, and other tests run in
/// parallel), with one synthetic batch of `batch` images; `None` where GPU tests are skipped.
fn counted_lenet(batch: usize) -> Option<(striate::GpuContext, Trainer, Vec<f32>, Vec<u32>)> {
    common::gpu()?;
    let gpu = striate::GpuContext::from_env().expect("adapter");
    let data = synthetic(batch, 1, 3).train;
    let images = data.images(0, data.len());
    let trainer =
        Trainer::new(&gpu, &config(Model::Lenet5, batch, Optimizer::adam(1e-3))).expect("trainer");
    Some((gpu, trainer, images, data.labels))
}

#[test]
fn training_steps_create_nothing_and_download_only_requested_metrics() {
    let batch = 16;
    let Some((gpu, trainer, images, labels)) = counted_lenet(batch) else {
        return;
    };
    trainer.train_step(&images, &labels).expect("warm-up step");
    trainer.take_metrics().expect("metrics");

    let before = gpu.counters();
    for _ in 0..100 {
        trainer.train_step(&images, &labels).expect("step");
    }
    let steps = gpu.counters() - before;
    assert_eq!(steps.gpu_objects_created(), 0, "{steps:?}");
    assert_eq!(
        steps.bytes_uploaded,
        100 * (batch * 28 * 28 * 4 + batch * 4) as u64,
        "only the batches go up: {steps:?}"
    );
    assert_eq!(steps.bytes_downloaded, 0, "{steps:?}");
    assert_eq!(steps.submissions, 100, "one submission per step: {steps:?}");
    assert_eq!(steps.blocking_waits, 0, "{steps:?}");
    assert!(
        steps.backpressure_waits <= 100,
        "at most one wait per step, only to bound the queue: {steps:?}"
    );

    let before = gpu.counters();
    let m = trainer.take_metrics().expect("metrics");
    let read = gpu.counters() - before;
    assert_eq!(m.count, 100 * batch as u64);
    assert_eq!(
        (
            read.bytes_downloaded,
            read.gpu_objects_created(),
            read.blocking_waits
        ),
        (12, 0, 1),
        "{read:?}"
    );
}

/// The same for every other built-in model (fewer steps): a step and an evaluation create no
/// GPU object and download nothing, whatever the layers (batch norm's updates included).
#[test]
fn every_model_steps_and_evaluates_without_creating_or_downloading() {
    let Some(_) = common::gpu() else { return };
    let gpu = striate::GpuContext::from_env().expect("adapter");
    let batch = 4;
    let data = synthetic(batch, batch, 3);
    let images = data.train.images(0, batch);
    for model in Model::ALL {
        let trainer =
            Trainer::new(&gpu, &config(model, batch, Optimizer::adam(1e-3))).expect("trainer");
        trainer
            .train_step(&images, &data.train.labels)
            .expect("warm-up");
        trainer
            .eval_step(&images, &data.train.labels)
            .expect("warm-up");
        trainer.take_metrics().expect("metrics");
        let before = gpu.counters();
        for _ in 0..5 {
            trainer
                .train_step(&images, &data.train.labels)
                .expect("step");
            trainer
                .eval_step(&images, &data.train.labels)
                .expect("eval");
        }
        let steps = gpu.counters() - before;
        assert_eq!(steps.gpu_objects_created(), 0, "{model}: {steps:?}");
        assert_eq!(steps.bytes_downloaded, 0, "{model}: {steps:?}");
        assert_eq!(steps.submissions, 10, "{model}: {steps:?}");
        assert_eq!(steps.blocking_waits, 0, "{model}: {steps:?}");
    }
}

#[test]
fn metrics_read_asynchronously_while_training_goes_on() {
    let batch = 16;
    let Some((gpu, trainer, images, labels)) = counted_lenet(batch) else {
        return;
    };
    assert!(
        trainer.poll_metrics().expect("poll").is_none(),
        "nothing requested yet"
    );

    let before = gpu.counters();
    for _ in 0..5 {
        trainer.train_step(&images, &labels).expect("step");
    }
    trainer.request_metrics().expect("request");
    trainer
        .request_metrics()
        .expect("a second request while one is pending is a no-op");
    // Keep training until the read arrives; polling never blocks.
    let mut polled = None;
    let mut steps_after = 0;
    while polled.is_none() {
        assert!(steps_after < 200, "the requested metrics never arrived");
        trainer.train_step(&images, &labels).expect("step");
        steps_after += 1;
        polled = trainer.poll_metrics().expect("poll");
    }
    let during = gpu.counters() - before;
    assert_eq!(
        during.blocking_waits, 0,
        "requesting and polling never wait: {during:?}"
    );
    assert_eq!(during.bytes_downloaded, 12, "{during:?}");
    let first = polled.expect("arrived");
    assert_eq!(first.count, 5 * batch as u64, "the sums up to the request");
    assert!(first.loss.is_finite() && first.loss > 0.0, "{first:?}");

    // A request left pending is included by the next take: nothing is lost or counted twice.
    trainer.request_metrics().expect("request");
    trainer.train_step(&images, &labels).expect("step");
    let rest = trainer.take_metrics().expect("take");
    assert_eq!(rest.count, (steps_after + 1) as u64 * batch as u64);
    assert!(
        trainer.poll_metrics().expect("poll").is_none(),
        "take collected the pending read"
    );
}

#[test]
fn evaluation_counts_every_image_including_a_partial_last_batch() {
    let Some(gpu) = common::gpu() else { return };
    let split = synthetic(10, 203, 4);
    let trainer =
        Trainer::new(&gpu, &config(Model::Lenet5, 64, Optimizer::adam(1e-3))).expect("trainer");
    let m = trainer.evaluate(&split.test).expect("evaluate");
    assert_eq!(m.count, 203);
    assert!(
        m.loss.is_finite() && (0.0..=1.0).contains(&m.accuracy),
        "{m:?}"
    );
}

#[test]
fn bad_batches_are_rejected_with_a_clear_error() {
    let Some(gpu) = common::gpu() else { return };
    let trainer =
        Trainer::new(&gpu, &config(Model::Lenet5, 4, Optimizer::adam(1e-3))).expect("trainer");
    let images = vec![0.0; 4 * 784];
    let err = trainer
        .train_step(&images, &[0, 1, 2])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch of 3 labels") && err.contains("takes 4"),
        "{err}"
    );
    let err = trainer
        .train_step(&images, &[0, 1, 2, 10])
        .unwrap_err()
        .to_string();
    assert!(err.contains("label 10 out of range 0..10"), "{err}");
    let mut nan = images.clone();
    nan[5] = f32::NAN;
    let err = trainer
        .train_step(&nan, &[0, 1, 2, 3])
        .unwrap_err()
        .to_string();
    assert!(err.contains("pixel 5") && err.contains("NaN"), "{err}");
    let err = trainer
        .train_step(&images[..100], &[0, 1, 2, 3])
        .unwrap_err()
        .to_string();
    assert!(err.contains("100 pixels"), "{err}");
}

#[test]
fn checkpoints_hold_pytorch_names_and_layouts() {
    let Some(gpu) = common::gpu() else { return };
    let trainer =
        Trainer::new(&gpu, &config(Model::Lenet5, 4, Optimizer::adam(1e-3))).expect("trainer");
    let dir = std::env::temp_dir().join(format!("striate-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("lenet.safetensors");
    trainer.save(&path).expect("save");
    let bytes = std::fs::read(&path).expect("read back");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut names: Vec<(String, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec()))
        .collect();
    names.sort();
    let want: Vec<(String, Vec<usize>)> = [
        ("conv1.bias", vec![6]),
        ("conv1.weight", vec![6, 1, 5, 5]),
        ("conv2.bias", vec![16]),
        ("conv2.weight", vec![16, 6, 5, 5]),
        ("fc1.bias", vec![120]),
        ("fc1.weight", vec![120, 400]),
        ("fc2.bias", vec![84]),
        ("fc2.weight", vec![84, 120]),
        ("fc3.bias", vec![10]),
        ("fc3.weight", vec![10, 84]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(names, want);
    let params = trainer.parameters().expect("parameters");
    let fc1 = st.tensor("fc1.weight").expect("fc1.weight");
    let saved: Vec<f32> = bytemuck::pod_collect_to_vec(fc1.data());
    assert_eq!(
        saved,
        params
            .iter()
            .find(|(n, _)| n == "fc1.weight")
            .expect("fc1")
            .1
            .f32()
    );

    // A checkpoint that cannot be written is an error naming the path, and leaves nothing behind.
    let bad = dir.join("missing-dir").join("x.safetensors");
    let err = trainer.save(&bad).unwrap_err().to_string();
    assert!(err.contains("missing-dir"), "{err}");
    assert!(!bad.exists());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// `profile` times every dispatch both ways: the host clock around each (what CPU adapters
/// such as lavapipe use: their timestamps mark when a dispatch is handed to the worker threads)
/// and GPU timestamp queries (real GPUs). Both give one finite time per dispatch, in order.
#[test]
fn profile_times_every_dispatch_with_either_method() {
    use striate::exec::gpu::{Executable, ProfileMethod, ProgramSpec};
    let Some(gpu) = common::gpu() else { return };
    let mut g = striate::Graph::new();
    let a = g.input("a", striate::Shape::f32([37, 29]));
    let b = g.input("b", striate::Shape::f32([29, 41]));
    let c = g.matmul(a, b, false, false).expect("matmul");
    let y = g.relu(c).expect("relu");
    let exe = Executable::build(
        &gpu,
        &g,
        &[ProgramSpec {
            name: "p".into(),
            outputs: vec![y],
            effects: vec![],
        }],
    )
    .expect("build");
    let program = exe.program("p").expect("program");
    let labels: Vec<String> = exe
        .dispatch_labels(program)
        .into_iter()
        .map(str::to_string)
        .collect();
    let cpu = gpu.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let expected = if cpu || gpu.timestamp_period().is_none() {
        ProfileMethod::HostSynced
    } else {
        ProfileMethod::Timestamps
    };
    assert_eq!(exe.profile_method(), expected, "{}", gpu.describe());
    let mut methods = vec![ProfileMethod::HostSynced];
    if gpu.timestamp_period().is_some() {
        methods.push(ProfileMethod::Timestamps);
    }
    for method in methods {
        let times = exe.profile_with(program, method).expect("profile");
        let got: Vec<&str> = times.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(got, labels, "{method:?}: one entry per dispatch, in order");
        assert!(
            times.iter().all(|(_, s)| s.is_finite() && *s >= 0.0),
            "{method:?}: {times:?}"
        );
        if method == ProfileMethod::HostSynced {
            assert!(times.iter().all(|(_, s)| *s > 0.0), "{times:?}");
        }
    }
}

/// Dropout in a train program draws a new mask each step from the GPU's step counter (nothing
/// uploaded), keeps about 1 − p of the elements scaled by 1 / (1 − p), and is the identity in
/// an eval build.
#[test]
fn dropout_draws_a_new_mask_each_step_and_vanishes_in_eval() {
    use striate::exec::gpu::{Executable, ProgramSpec};
    use striate::nn::Net;
    use striate::ops::optim::OptimizerStepCount;
    use striate::Graph;

    // Its own context: counters are per context, and other tests run in parallel.
    let Some(_) = common::gpu() else { return };
    let gpu = GpuContext::from_env().expect("adapter");
    let mut g = Graph::new();
    let x = g.input("x", Shape::f32([8, 125]));
    let mut net = Net::new(&mut g, 0);
    let y = net.dropout("drop", x, 0.25).expect("dropout");
    let parts = net.into_parts();
    assert!(parts.mode_dependent);
    let step = parts.rng_step.expect("a step counter");
    let increment = g.push_node(OptimizerStepCount, &[step]).expect("increment");
    let mut eval_net = Net::for_eval(&mut g, &parts);
    assert_eq!(eval_net.dropout("drop", x, 0.25).expect("dropout"), x);

    let spec = ProgramSpec {
        name: "train".into(),
        outputs: vec![y],
        effects: vec![increment],
    };
    let exe = Executable::build(&gpu, &g, &[spec]).expect("build");
    let train = exe.program("train").expect("program");
    let ones = vec![1.0f32; 1000];
    exe.write(x, bytemuck::cast_slice(&ones)).expect("write");
    let before = gpu.counters();
    let mut masks = Vec::new();
    for _ in 0..3 {
        exe.run(train).expect("run");
        let out = exe.read(train, y).expect("read");
        let kept = out.f32().iter().filter(|&&v| v != 0.0).count();
        assert!(
            (690..=810).contains(&kept),
            "{kept} of 1,000 kept at p = 0.25"
        );
        assert!(out
            .f32()
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        masks.push(out);
    }
    assert!(
        masks[0] != masks[1] && masks[1] != masks[2],
        "the mask must change each step"
    );
    let counts = gpu.counters() - before;
    assert_eq!(
        counts.bytes_uploaded, 0,
        "the masks come from the GPU's counter"
    );
    assert_eq!(exe.read(train, step).expect("step").u32(), [3]);
}

/// A learning-rate schedule runs on the GPU: each step sets the factor from the step count
/// there (nothing uploaded), as `LrSchedule::factor` says, and the parameters move by it.
#[test]
fn learning_rate_schedules_step_on_the_gpu() {
    use striate::exec::gpu::{Executable, ProgramSpec};
    use striate::ops::optim::LrSchedule;
    use striate::TensorId;

    // Its own context: counters are per context, and other tests run in parallel.
    let Some(_) = common::gpu() else { return };
    let gpu = GpuContext::from_env().expect("adapter");
    let schedule = LrSchedule::OneCycle {
        total: 8,
        pct_start: 0.3,
        div_factor: 25.0,
        final_div_factor: 1e4,
    };
    let cfg = TrainConfig {
        schedule,
        ..config(Model::Lenet5, 4, Optimizer::sgd(0.1, 0.0))
    };
    let (g, parts) = training_graph(&cfg).expect("graph");
    let factor = (0..g.n_tensors() as u32)
        .map(TensorId)
        .find(|&t| g.tensor(t).name == "optimizer.step_factors")
        .expect("the factor is a state tensor");
    let spec = ProgramSpec {
        name: "train".into(),
        outputs: vec![],
        effects: parts.train_effects.clone(),
    };
    let exe = Executable::build(&gpu, &g, &[spec]).expect("build");
    let train = exe.program("train").expect("program");
    let data = synthetic(4, 1, 2).train;
    exe.write(parts.images, bytemuck::cast_slice(&data.images(0, 4)))
        .expect("images");
    exe.write(parts.labels, bytemuck::cast_slice(&data.labels))
        .expect("labels");
    let before = gpu.counters();
    let mut got = Vec::new();
    for _ in 0..8 {
        exe.run(train).expect("step");
        got.push(exe.read(train, factor).expect("factor").f32()[0]);
    }
    assert_eq!(
        (gpu.counters() - before).bytes_uploaded,
        0,
        "the schedule needs no upload"
    );
    let want: Vec<f32> = (0..8).map(|s| schedule.factor(s) as f32).collect();
    assert_close("one-cycle factors", &got, &want, 1e-6, 1e-5);
    // Up from 1/25 to 1 at step 2 (30% of 8 − 1 = 1.4), then down to 1/250,000.
    assert!((got[0] - 0.04).abs() < 1e-6 && got[7] < 1e-5 && got.iter().any(|&f| f > 0.9));
}

/// A network of the layer API's general convolutions (non-square kernel, stride and padding;
/// depthwise with dilation; a grouped transposed convolution) beside a tuned square one:
/// each goes to the op that serves it, and forward and every parameter gradient on the GPU
/// equal the CPU interpreter's.
#[test]
fn general_and_transposed_convolutions_train_on_the_gpu_as_on_the_cpu() {
    use striate::exec::gpu::{Executable, ProgramSpec};
    use striate::graph::append_backward;
    use striate::nn::{Conv2dOptions, Net};
    use striate::ops::testing::distinct_values;
    use striate::rng::Rng;
    use striate::Graph;

    let Some(gpu) = common::gpu() else { return };
    let mut g = Graph::new();
    let x = g.input("x", striate::shape::Shape::f32([2, 3, 9, 10]));
    let mut net = Net::new(&mut g, 7);
    let opts = Conv2dOptions::new((1, 3)).stride((1, 2)).padding((0, 1));
    let y = net.conv2d("wide", x, 6, opts).expect("wide");
    let dw = Conv2dOptions::new(3)
        .padding((2, 1))
        .dilation((2, 1))
        .groups(6);
    let y = net.conv2d("depthwise", y, 6, dw).expect("depthwise");
    let y = net.relu("act", y).expect("relu");
    let up = Conv2dOptions::new(3).stride(2).padding(1).groups(2);
    let y = net.conv_transpose2d("up", y, 4, up, 1).expect("transposed");
    let y = net
        .conv2d("square", y, 5, Conv2dOptions::new(3).padding(1))
        .expect("square");
    let params = net.into_params();
    let names: Vec<(&str, Vec<usize>)> = params
        .iter()
        .map(|(n, t)| (n.as_str(), g.shape(*t).dims.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("wide.weight", vec![6, 3, 1, 3]),
            ("wide.bias", vec![6]),
            ("depthwise.weight", vec![6, 1, 3, 3]),
            ("depthwise.bias", vec![6]),
            ("up.weight", vec![6, 2, 3, 3]),
            ("up.bias", vec![4]),
            ("square.weight", vec![5, 4, 3, 3]),
            ("square.bias", vec![5]),
        ]
    );
    let ops: Vec<&str> = g.nodes().iter().map(|n| n.op.name()).collect();
    assert_eq!(
        ops,
        [
            "conv2d_general",
            "conv2d_general",
            "relu",
            "conv_transpose2d",
            "conv2d"
        ]
    );
    // [2, 3, 9, 10] → wide [2, 6, 9, 5] → depthwise (same) → up [2, 4, 18, 10] → square.
    assert_eq!(g.shape(y).dims, [2, 5, 18, 10]);
    let mut rng = Rng::new(3);
    let target = CpuTensor::from_f32([2, 5, 18, 10], distinct_values(&mut rng, 1800));
    let target = g.constant("target", target);
    let loss = g.mse_loss(y, target).expect("loss");
    let one = g.constant("one", CpuTensor::scalar(1.0));
    let wrt: Vec<_> = params.iter().map(|(_, t)| *t).collect();
    let grads = append_backward(&mut g, &[(loss, one)], &wrt).expect("backward");

    let mut outputs = vec![loss];
    outputs.extend(&grads);
    let spec = ProgramSpec {
        name: "step".into(),
        outputs: outputs.clone(),
        effects: vec![],
    };
    let exe = Executable::build(&gpu, &g, &[spec]).expect("build");
    let step = exe.program("step").expect("program");
    let input = CpuTensor::from_f32([2, 3, 9, 10], distinct_values(&mut rng, 540));
    exe.write(x, input.bytes()).expect("write");
    exe.run(step).expect("run");
    let mut cpu = CpuInterpreter::new(&g);
    cpu.set(x, input).expect("set");
    cpu.run(&g, &schedule(&g, &outputs, &[])).expect("run");
    for (i, &t) in outputs.iter().enumerate() {
        let name = if i == 0 { "loss" } else { &params[i - 1].0 };
        let want = cpu.get(t).expect("value").f32();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: all zeros on the CPU");
        let got = exe.read(step, t).expect("read");
        assert_close(name, got.f32(), want, 1e-5 * scale, 1e-4);
    }
}

/// A checkpoint holds the whole training state under unique names; one of another model is
/// refused with every mismatch named, and nothing is written.
#[test]
fn checkpoints_restore_only_into_the_model_they_came_from() {
    let Some(gpu) = common::gpu() else { return };
    let lenet =
        Trainer::new(&gpu, &config(Model::Lenet5, 4, Optimizer::adam(1e-3))).expect("lenet");
    let names: Vec<String> = lenet.state_shapes().into_iter().map(|(n, _)| n).collect();
    let unique: std::collections::BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for want in [
        "conv1.weight",
        "fc3.bias",
        "conv1.weight.exp_avg",
        "optimizer.step",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let ckpt = lenet.checkpoint().expect("checkpoint");
    let convnet =
        Trainer::new(&gpu, &config(Model::ConvnetS, 4, Optimizer::adam(1e-3))).expect("convnet");
    let before = convnet.parameters().expect("parameters");
    let err = convnet
        .restore(&ckpt, std::path::Path::new("lenet.safetensors"))
        .unwrap_err()
        .to_string();
    for part in [
        "lenet.safetensors",
        "conv2.weight is [16, 6, 5, 5]",
        "missing conv3.weight",
        "unexpected fc3.bias",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    assert_eq!(
        convnet.parameters().expect("parameters"),
        before,
        "a refused checkpoint wrote something"
    );
    // Into its own model it loads, and the state reads back equal.
    let other = Trainer::new(
        &gpu,
        &TrainConfig {
            seed: 9,
            ..config(Model::Lenet5, 4, Optimizer::adam(1e-3))
        },
    )
    .expect("lenet");
    other
        .restore(&ckpt, std::path::Path::new("lenet.safetensors"))
        .expect("restore");
    assert_eq!(other.checkpoint().expect("read").tensors, ckpt.tensors);
}

/// A run's checkpoints through the library (`train::run_state`, what `train-gpu --checkpoint`
/// and `--resume` use): `Saver` writes the training state with the run's metadata, keeps the
/// newest, and `best.safetensors` by validation accuracy; `Resume` finds the newest and reads
/// back every value written, and restoring it into a fresh trainer continues the run exactly.
#[test]
fn run_state_saved_through_the_library_reads_back_and_resumes_exactly() {
    use striate::plots::EpochPoint;
    use striate::train::run_state::{Curves, Resume, RunMeta, RunPosition, Saver};
    let Some(gpu) = common::gpu() else { return };
    let cfg = config(
        Model::Lenet5,
        8,
        Optimizer::adam(1e-3).with_weight_decay(1e-4),
    );
    let trainer = Trainer::new(&gpu, &cfg).expect("trainer");
    let data = synthetic(24, 1, 5).train;
    let batch = |i: usize| {
        (
            data.images(8 * i, 8),
            data.labels[8 * i..8 * (i + 1)].to_vec(),
        )
    };
    let dir = std::env::temp_dir().join(format!("striate-run-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args: Vec<String> = ["train-gpu", "--synthetic", "--val-fraction", "0.1"]
        .map(String::from)
        .to_vec();
    let mut saver = Saver::new(&dir, 2, args.clone()).expect("saver");
    assert_eq!(saver.best(), None);
    let position = |next_epoch, skip_steps, global_step| RunPosition {
        next_epoch,
        skip_steps,
        global_step,
    };
    let mut curves = Curves::default();
    for step in 0..3 {
        let (images, labels) = batch(step);
        trainer.train_step(&images, &labels).expect("step");
        curves.lr.push(((step + 1) as f64 / 3.0, 1e-3));
    }
    curves.running.push((1.0, 2.25));
    curves.epochs.push(EpochPoint {
        epoch: 1.0,
        train_loss: 2.25,
        train_acc: 0.125,
        val: Some((2.5, 0.375)),
        test: (2.0, 0.25),
    });
    // Mid-epoch, at the epoch's end with a validation accuracy, then one step into epoch 2.
    saver
        .save(&trainer, position(1, 2, 2), None, &curves)
        .expect("save");
    saver
        .save(&trainer, position(2, 0, 3), Some(0.375), &curves)
        .expect("save");
    let at_best = trainer.checkpoint().expect("state").tensors;
    let (images, labels) = batch(0);
    trainer.train_step(&images, &labels).expect("step");
    saver
        .save(&trainer, position(2, 1, 4), Some(0.25), &curves)
        .expect("save");
    let names: Vec<String> = Saver::checkpoints(&dir)
        .expect("listed")
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["ckpt-0000000003.safetensors", "ckpt-0000000004.safetensors"],
        "keep 2"
    );
    assert_eq!(saver.best(), Some(0.375), "0.25 is no improvement");

    // The newest, with every value written.
    let resume = Resume::find(&dir).expect("resume");
    assert_eq!(resume.path, dir.join("ckpt-0000000004.safetensors"));
    assert_eq!(resume.dir.as_deref(), Some(dir.as_path()));
    let want = RunMeta {
        args: args.clone(),
        position: position(2, 1, 4),
        val_acc: Some(0.25),
        curves: curves.clone(),
    };
    assert_eq!(resume.run, want);
    // The metadata is the plain strings a checkpoint's header holds.
    assert_eq!(resume.ckpt.meta["global_step"], "4");
    assert_eq!(
        resume.ckpt.meta["args"],
        serde_json::to_string(&args).expect("json")
    );
    let mut meta = std::collections::BTreeMap::new();
    want.write_to(&mut meta);
    assert_eq!(meta, resume.ckpt.meta);
    // best.safetensors is the state at the best epoch's end, and a new saver keeps its best.
    let best = Resume::find(&dir.join("best.safetensors")).expect("best");
    assert_eq!((best.dir, best.run.position), (None, position(2, 0, 3)));
    assert_eq!(best.run.val_acc, Some(0.375));
    assert_eq!(best.ckpt.tensors, at_best);
    assert_eq!(
        Saver::new(&dir, 2, args).expect("saver").best(),
        Some(0.375)
    );

    // Restored into a fresh trainer (other initial weights), the run goes on exactly as the
    // original: the same state now, the same parameters after one more step of each.
    let fresh = Trainer::new(&gpu, &TrainConfig { seed: 7, ..cfg }).expect("trainer");
    resume.restore(&fresh).expect("restore");
    assert_eq!(
        fresh.checkpoint().expect("state").tensors,
        trainer.checkpoint().expect("state").tensors
    );
    let (images, labels) = batch(1);
    trainer.train_step(&images, &labels).expect("step");
    fresh.train_step(&images, &labels).expect("step");
    assert_eq!(
        fresh.parameters().expect("parameters"),
        trainer.parameters().expect("parameters")
    );

    // A directory without checkpoints, and a file without a run's metadata, are named.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let err = Resume::find(&empty).unwrap_err().to_string();
    assert!(
        err.contains("empty") && err.contains("no checkpoint (ckpt-*.safetensors) to resume"),
        "{err}"
    );
    let weights = dir.join("weights.safetensors");
    trainer.save(&weights).expect("save");
    let err = Resume::find(&weights).unwrap_err().to_string();
    assert!(
        err.contains("weights.safetensors") && err.contains("not a train-gpu checkpoint"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// `save` writes PyTorch's state_dict (ResNet-20: parameters, running statistics and each
/// batch norm's `num_batches_tracked` as an I64 scalar); `load_weights` takes it into a fresh
/// model, which then gives the same logits. A file with a wrong shape, dtype, a missing or an
/// extra tensor is refused with each problem named.
#[test]
fn pytorch_state_dicts_go_out_and_come_back_with_the_same_logits() {
    use safetensors::{tensor::TensorView, Dtype};
    let Some(gpu) = common::gpu() else { return };
    let cfg = config(Model::Resnet20, 4, Optimizer::sgd(0.05, 0.9));
    let a = Trainer::new(&gpu, &cfg).expect("trainer");
    let data = synthetic(8, 4, 3);
    for s in 0..2 {
        let images = data.train.images(4 * s, 4);
        a.train_step(&images, &data.train.labels[4 * s..4 * s + 4])
            .expect("step");
    }
    let dir = std::env::temp_dir().join(format!("striate-torch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("resnet20.safetensors");
    a.save(&path).expect("save");
    let bytes = std::fs::read(&path).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let nbt = st
        .tensor("layer3.2.bn2.num_batches_tracked")
        .expect("counter");
    assert_eq!((nbt.dtype(), nbt.shape()), (Dtype::I64, &[][..]));
    assert_eq!(
        i64::from_le_bytes(nbt.data().try_into().expect("8 bytes")),
        2
    );
    assert_eq!(
        st.tensor("layer2.0.downsample.0.weight")
            .expect("shortcut")
            .shape(),
        [32, 16, 1, 1]
    );
    // 21 batch norms (5 entries each), 21 convolutions, fc.
    assert_eq!(st.names().len(), 21 * 5 + 21 + 2);

    let b = Trainer::new(&gpu, &TrainConfig { seed: 7, ..cfg }).expect("trainer");
    let x = data.test.images(0, 4);
    assert_ne!(a.predict(&x).expect("a"), b.predict(&x).expect("b"));
    b.load_weights(&path).expect("load");
    assert_eq!(a.predict(&x).expect("a"), b.predict(&x).expect("b"));
    // Inference runs the eval program with out-of-range labels: it counts nothing.
    assert_eq!(b.take_metrics().expect("metrics").count, 0);
    b.save(&dir.join("again.safetensors")).expect("save");
    assert_eq!(
        std::fs::read(dir.join("again.safetensors")).expect("read"),
        bytes
    );

    // Broken files: each problem named, nothing loaded.
    let mut views: Vec<(String, TensorView<'_>)> = st.tensors();
    let f64_bytes = vec![0u8; 16 * 8];
    views.retain(|(n, _)| n != "fc.bias" && n != "bn1.weight");
    views.push((
        "bn1.weight".into(),
        TensorView::new(Dtype::F64, vec![16], &f64_bytes).expect("view"),
    ));
    let bad = dir.join("bad.safetensors");
    std::fs::write(
        &bad,
        safetensors::serialize(views.clone(), None).expect("serialize"),
    )
    .expect("write");
    let err = b.load_weights(&bad).unwrap_err().to_string();
    assert!(err.contains("bn1.weight is F64"), "{err}");
    views.retain(|(n, _)| n != "bn1.weight");
    let extra = vec![0u8; 4];
    views.push((
        "fc.extra".into(),
        TensorView::new(Dtype::F32, vec![1], &extra).expect("view"),
    ));
    std::fs::write(
        &bad,
        safetensors::serialize(views, None).expect("serialize"),
    )
    .expect("write");
    let err = b.load_weights(&bad).unwrap_err().to_string();
    for part in [
        "missing fc.bias",
        "missing bn1.weight",
        "unexpected fc.extra",
        "bad.safetensors",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    assert_eq!(a.predict(&x).expect("a"), b.predict(&x).expect("b"));
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A `Predictor` is the eval forward alone: loaded with a trainer's saved weights it gives
/// that trainer's eval logits and feature maps exactly (ResNet-20: batch norm on running
/// statistics), for a full and a short batch; its graph holds no loss, gradient, metric or
/// optimizer state (its only state is the model's buffers) and it dispatches less; a file
/// of another model and a batch too large are refused with what is wrong.
#[test]
fn a_predictor_is_the_trainers_eval_forward_alone() {
    use striate::infer::{PredictConfig, Predictor};
    use striate::ir::TensorKind;
    let Some(gpu) = common::gpu() else { return };
    let cfg = TrainConfig {
        feature_maps: true,
        ..config(Model::Resnet20, 4, Optimizer::sgd(0.05, 0.9))
    };
    let trainer = Trainer::new(&gpu, &cfg).expect("trainer");
    let data = synthetic(8, 6, 5);
    for s in 0..2 {
        let images = data.train.images(4 * s, 4);
        trainer
            .train_step(&images, &data.train.labels[4 * s..4 * s + 4])
            .expect("step");
    }
    let dir = std::env::temp_dir().join(format!("striate-predictor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("resnet20.safetensors");
    trainer.save(&path).expect("save");

    let predictor = Predictor::new(
        &gpu,
        &Model::Resnet20,
        &PredictConfig {
            batch_size: 4,
            input: cfg.input,
            n_classes: cfg.n_classes,
            feature_maps: true,
            ..Default::default()
        },
    )
    .expect("predictor");
    let x = data.test.images(0, 4);
    assert_ne!(
        predictor.predict(&x).expect("untrained"),
        trainer.predict(&x).expect("trainer")
    );
    predictor.load_weights(&path).expect("load");
    assert_eq!(
        predictor.predict(&x).expect("predictor"),
        trainer.predict(&x).expect("trainer")
    );
    let short = data.test.images(1, 3);
    let logits = predictor.predict(&short).expect("short batch");
    assert_eq!(logits.shape.dims, [3, cfg.n_classes]);
    assert_eq!(logits, trainer.predict(&short).expect("trainer"));
    let image = data.test.images(2, 1);
    let maps = predictor.feature_maps(&image).expect("maps");
    assert_eq!(maps.len(), 21, "every convolution of ResNet-20");
    assert_eq!(maps, trainer.feature_maps(&image).expect("trainer maps"));
    let mut saved = trainer.parameters().expect("params");
    saved.extend(trainer.buffers().expect("buffers"));
    assert_eq!(predictor.state_dict().expect("state"), saved);

    let g = predictor.graph();
    for n in g.nodes() {
        let op = n.op.name();
        for training_only in ["backward", "update", "entropy", "metrics", "step"] {
            assert!(!op.contains(training_only), "{} runs {op}", n.name);
        }
    }
    let state: Vec<&str> = g
        .tensor_ids()
        .filter(|&t| matches!(g.tensor(t).kind, TensorKind::State(_)))
        .map(|t| g.tensor(t).name.as_str())
        .collect();
    assert_eq!(
        state.len(),
        2 * 21,
        "the running statistics of 21 batch norms"
    );
    assert!(state
        .iter()
        .all(|n| n.ends_with(".running_mean") || n.ends_with(".running_var")));
    let eval = trainer.executable().program("eval").expect("eval");
    assert!(predictor.n_dispatches() < trainer.executable().n_dispatches(eval));

    let err = predictor
        .predict(&data.test.images(0, 5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("1..=4 images of 1x28x28"), "{err}");
    let lenet =
        Trainer::new(&gpu, &config(Model::Lenet5, 4, Optimizer::adam(1e-3))).expect("lenet");
    let lenet_path = dir.join("lenet.safetensors");
    lenet.save(&lenet_path).expect("save");
    let err = predictor.load_weights(&lenet_path).unwrap_err().to_string();
    for part in [
        "missing layer1.0.conv1.weight",
        "unexpected fc1.weight",
        "lenet.safetensors",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    assert_eq!(
        predictor.state_dict().expect("state"),
        saved,
        "a refused file wrote something"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A residual CNN of the user's own, written with the public layer API (a block function used
/// twice, a closure as the architecture), trains: its parameters carry the names it gave them
/// and overfitting one batch drives the loss down.
#[test]
fn a_user_defined_residual_cnn_trains() {
    use striate::nn::{Conv2dOptions, Net};
    use striate::TensorId;
    let Some(gpu) = common::gpu() else { return };
    fn block(net: &mut Net, name: &str, x: TensorId, c: usize) -> striate::Result<TensorId> {
        let conv = Conv2dOptions::new(3).padding(1).bias(false);
        let y = net.conv2d(&format!("{name}.conv1"), x, c, conv)?;
        let y = net.batch_norm2d(&format!("{name}.bn1"), y)?;
        let y = net.relu(&format!("{name}.relu1"), y)?;
        let y = net.conv2d(&format!("{name}.conv2"), y, c, conv)?;
        let y = net.batch_norm2d(&format!("{name}.bn2"), y)?;
        let y = net.add(&format!("{name}.add"), y, x)?;
        net.relu(&format!("{name}.relu2"), y)
    }
    let width = 12;
    let arch = move |net: &mut Net, x: TensorId, classes: usize| {
        let x = net.conv2d("stem", x, width, Conv2dOptions::new((3, 5)).padding((1, 2)))?;
        let x = block(net, "layer1", x, width)?;
        let x = net.max_pool2d("pool", x, 2)?;
        let x = block(net, "layer2", x, width)?;
        let x = net.global_avg_pool2d("avgpool", x)?;
        let x = net.flatten("flatten", x)?;
        net.linear("fc", x, classes)
    };
    let cfg = config(Model::Lenet5, 16, Optimizer::adam(3e-3));
    let trainer = Trainer::custom(&gpu, &cfg, &arch, false).expect("trainer");
    let names: Vec<String> = trainer
        .parameters()
        .expect("parameters")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for want in [
        "stem.weight",
        "layer1.conv1.weight",
        "layer2.bn2.bias",
        "fc.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("conv1")), "{names:?}");
    let data = synthetic(16, 1, 4).train;
    let images = data.images(0, 16);
    let mut losses = Vec::new();
    for _ in 0..25 {
        trainer.train_step(&images, &data.labels).expect("step");
        losses.push(trainer.take_metrics().expect("metrics").loss);
    }
    // The criterion every_model_learns_one_batch holds the zoo to.
    assert!(
        losses[24] < 0.8 * losses[0],
        "the loss did not fall: {losses:?}"
    );
}
