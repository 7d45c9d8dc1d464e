//! The graph API as a user outside the crate meets it: a small CNN written as a graph, its
//! backward pass derived, both run on the CPU interpreter and on the GPU, and the gradients
//! checked against central finite differences.
//!
//! `cargo run --release --example graph_api` (any adapter; `STRIATE_ADAPTER=gl` for GL).
#![allow(clippy::print_stdout)]

use striate::exec::cpu::CpuInterpreter;
use striate::graph::{append_backward, schedule};
use striate::prelude::*;
use striate::rng::Rng;

/// A tensor of `dims` with values drawn uniformly from ±`scale`.
fn random(rng: &mut Rng, dims: &[usize], scale: f32) -> CpuTensor {
    let n = dims.iter().product();
    let data = (0..n).map(|_| rng.range(-scale, scale)).collect();
    CpuTensor::from_f32(dims, data)
}

fn main() -> Result<()> {
    let mut rng = Rng::new(7);
    let batch = 3;

    // conv 3x3 (padding 1) + ReLU, 2x2 max pool, flatten, linear, cross-entropy: odd sizes
    // everywhere, so no kernel tile divides them.
    let mut g = Graph::new();
    let x = g.input("x", Shape::f32([batch, 3, 9, 7]));
    let labels = g.input("labels", Shape::u32([batch]));
    let conv_w = g.param("conv.weight", random(&mut rng, &[5, 3, 3, 3], 0.3));
    let conv_b = g.param("conv.bias", random(&mut rng, &[5], 0.1));
    let y = g.conv2d_relu(x, conv_w, conv_b, Conv2dSpec::default().padding(1))?;
    let y = g.max_pool2d(y, 2)?; // [3, 5, 4, 3]
    let y = g.flatten(y)?; // [3, 60]
    let fc_w = g.param("fc.weight", random(&mut rng, &[4, 60], 0.2));
    let fc_b = g.param("fc.bias", random(&mut rng, &[4], 0.1));
    let logits = g.linear(y, fc_w, fc_b)?;
    let loss = g.cross_entropy(logits, labels, None, 0.0)?;
    assert_eq!(g.shape(loss), &Shape::scalar(), "a loss is a scalar");

    let params = [conv_w, conv_b, fc_w, fc_b];
    let one = g.constant("grad_loss", CpuTensor::scalar(1.0));
    let grads = append_backward(&mut g, &[(loss, one)], &params)?;

    let images = random(&mut rng, &[batch, 3, 9, 7], 1.0);
    let targets = CpuTensor::try_from_u32([batch], vec![2, 0, 3])?;
    let mut outputs = vec![loss];
    outputs.extend(&grads);

    // The CPU interpreter: every op's plain Rust reference.
    let order = schedule(&g, &outputs, &[]);
    let mut cpu = CpuInterpreter::new(&g);
    cpu.set(x, images.clone())?;
    cpu.set(labels, targets.clone())?;
    cpu.run(&g, &order)?;
    let cpu_loss = cpu.get(loss)?.item()?;

    // The GPU: one program computing the loss and every gradient.
    let gpu = GpuContext::from_env()?;
    let spec = ProgramSpec {
        name: "grads".into(),
        outputs: outputs.clone(),
        effects: vec![],
    };
    let exe = Executable::build(&gpu, &g, &[spec])?;
    let program = exe.program("grads")?;
    exe.write(x, images.bytes())?;
    exe.write(labels, targets.bytes())?;
    exe.run(program)?;
    let gpu_loss = exe.read(program, loss)?.item()?;
    println!("adapter {}", gpu.describe());
    println!("loss: CPU {cpu_loss:.6}, GPU {gpu_loss:.6}");

    // Central differences of the CPU loss in a few coordinates of each parameter.
    let loss_at = |param: TensorId, value: CpuTensor| -> Result<f64> {
        let mut cpu = CpuInterpreter::new(&g);
        cpu.set(x, images.clone())?;
        cpu.set(labels, targets.clone())?;
        cpu.set(param, value)?;
        cpu.run(&g, &schedule(&g, &[loss], &[]))?;
        Ok(f64::from(cpu.get(loss)?.item()?))
    };
    let mut worst = 0.0f64;
    for (&param, &grad) in params.iter().zip(&grads) {
        let name = g.tensor(param).name.clone();
        let base = cpu.get(param)?.clone();
        let cpu_grad = cpu.get(grad)?.f32().to_vec();
        let gpu_grad = exe.read(program, grad)?;
        let gpu_grad = gpu_grad.f32();
        let n = cpu_grad.len();
        for i in [0, n / 3, n - 1] {
            let eps = 1e-3f32;
            let mut plus = base.clone();
            plus.f32_mut()[i] += eps;
            let mut minus = base.clone();
            minus.f32_mut()[i] -= eps;
            let numeric = (loss_at(param, plus)? - loss_at(param, minus)?) / (2.0 * f64::from(eps));
            let (c, g) = (f64::from(cpu_grad[i]), f64::from(gpu_grad[i]));
            let err = (c - numeric).abs().max((g - c).abs()) / numeric.abs().max(1e-2);
            worst = worst.max(err);
            println!("{name}[{i}]: finite difference {numeric:+.5}, CPU {c:+.5}, GPU {g:+.5}");
        }
    }
    if (gpu_loss - cpu_loss).abs() > 1e-4 || worst > 2e-2 {
        return Err(Error::InvalidArgument(format!(
            "gradients disagree: worst relative error {worst:.2e}"
        )));
    }
    println!("worst relative error {worst:.2e}: the gradients agree");
    Ok(())
}
