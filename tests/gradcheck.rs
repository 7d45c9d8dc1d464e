//! Finite-difference checks of every backward rule in the catalogue, on the CPU interpreter.
//!
//! For each differentiable op: L = Σ seed·output with a random seed; autodiff's gradient of L
//! with respect to every f32 input must match central differences.

use std::collections::BTreeSet;

use striate::exec::cpu::CpuInterpreter;
use striate::graph::{append_backward, schedule};
use striate::ir::CpuTensor;
use striate::ops::catalog;
use striate::ops::testing::{assert_close, distinct_values, random_inputs};
use striate::rng::Rng;
use striate::shape::DType;
use striate::{Error, Graph};

const EPS: f32 = 1e-3;

/// Catalogued ops that compute a value but have no backward rule yet: `slice` is appended only
/// as `cat`'s gradient.
const NO_BACKWARD_RULE: [&str; 1] = ["slice"];

#[test]
fn every_backward_rule_matches_finite_differences() {
    let mut checked = BTreeSet::new();
    for entry in &catalog() {
        if !entry.op.mutates().is_empty() {
            continue; // In-place updates (optimizers, metrics) have no gradient.
        }
        if !entry.finite_differences {
            continue; // Inputs on a kink on purpose (see the entry).
        }
        let mut g = Graph::new();
        let inputs = random_inputs(entry, 7 ^ entry.seed());
        let ids: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| g.input(&format!("in{i}"), t.shape.clone()))
            .collect();
        let outputs = g
            .push_arc(entry.op.clone(), &ids)
            .expect("catalogue shapes are valid");
        let mut rng = Rng::new(entry.seed());
        let seeds: Vec<(_, CpuTensor)> = outputs
            .iter()
            .filter(|&&t| g.shape(t).dtype == DType::F32)
            .map(|&t| {
                (
                    t,
                    CpuTensor::from_f32(
                        g.shape(t).dims.clone(),
                        distinct_values(&mut rng, g.shape(t).numel()),
                    ),
                )
            })
            .collect();
        let seed_ids: Vec<_> = seeds
            .iter()
            .map(|(t, v)| (*t, g.constant("seed", v.clone())))
            .collect();
        let constant = entry.op.constant_inputs();
        let wrt: Vec<_> = ids
            .iter()
            .enumerate()
            .filter(|&(i, &t)| g.shape(t).dtype == DType::F32 && !constant.contains(&i))
            .map(|(_, &t)| t)
            .collect();
        let grads = match append_backward(&mut g, &seed_ids, &wrt) {
            Ok(grads) => grads,
            Err(Error::NotDifferentiable(_)) => continue,
            Err(e) => panic!("{entry:?}: {e}"),
        };

        let forward = schedule(&g, &outputs, &[]);
        let backward = schedule(&g, &grads, &[]);
        let loss = |values: &[CpuTensor]| -> f64 {
            let mut cpu = CpuInterpreter::new(&g);
            for (&id, v) in ids.iter().zip(values) {
                cpu.set(id, v.clone()).expect("set");
            }
            cpu.run(&g, &forward).expect("run");
            seeds
                .iter()
                .map(|(t, s)| {
                    cpu.get(*t)
                        .expect("value")
                        .f32()
                        .iter()
                        .zip(s.f32())
                        .map(|(&o, &s)| f64::from(o) * f64::from(s))
                        .sum::<f64>()
                })
                .sum()
        };
        let mut cpu = CpuInterpreter::new(&g);
        for (&id, v) in ids.iter().zip(&inputs) {
            cpu.set(id, v.clone()).expect("set");
        }
        cpu.run(&g, &backward).expect("run");

        for (&input, &grad) in wrt.iter().zip(&grads) {
            let input_idx = ids
                .iter()
                .position(|&t| t == input)
                .expect("wrt are inputs");
            let mut numeric = Vec::new();
            for i in 0..inputs[input_idx].shape.numel() {
                let mut plus = inputs.clone();
                plus[input_idx].f32_mut()[i] += EPS;
                let mut minus = inputs.clone();
                minus[input_idx].f32_mut()[i] -= EPS;
                numeric.push(((loss(&plus) - loss(&minus)) / (2.0 * f64::from(EPS))) as f32);
            }
            assert_close(
                &format!("{entry:?}: d/d input {input_idx}"),
                cpu.get(grad).expect("value").f32(),
                &numeric,
                2e-3,
                1e-2,
            );
        }
        checked.insert(entry.op.name());
    }
    // Every catalogued op that computes a value (updates nothing in place, is not itself a
    // gradient op) must have had its backward rule checked: an op whose rule is missing fails
    // here instead of being skipped as not differentiable.
    let want: BTreeSet<&str> = catalog()
        .iter()
        .map(|e| e.op.name())
        .filter(|name| !name.contains("_backward") && !NO_BACKWARD_RULE.contains(name))
        .filter(|name| {
            catalog()
                .iter()
                .any(|e| e.op.name() == *name && e.op.mutates().is_empty() && e.finite_differences)
        })
        .collect();
    assert!(
        want.len() > 40,
        "only {} differentiable ops: {want:?}",
        want.len()
    );
    assert_eq!(checked, want, "differentiable ops checked");
}

/// A ReLU (here inside `conv2d_relu`) feeding a max pool skips its backward: the pool marks
/// windows of zeros as having no argmax, which masks the gradient the same way; and a 2x2 pool
/// after `conv2d_relu` becomes one `conv2d_relu_pool` op. The gradients must equal, bit for
/// bit, those of the unfused graph (a plain pool, told nothing about its input). Finite
/// differences check `conv2d_relu_pool` too, but near-ties inside pooling windows are kinks;
/// this equality holds on any input.
#[test]
fn relu_mask_folded_into_max_pool_gives_the_unfused_gradients() {
    use std::sync::Arc;
    use striate::ir::{Conv2dGeometry, Pool2d};
    use striate::ops::pool::max_pool2d::MaxPool2d;

    let run = |fold: bool| {
        let mut g = Graph::new();
        let mut rng = Rng::new(3);
        let x_val = CpuTensor::from_f32([2, 3, 12, 12], distinct_values(&mut rng, 2 * 3 * 144));
        let w_val = CpuTensor::from_f32([4, 3, 3, 3], distinct_values(&mut rng, 4 * 27));
        // Negative biases: many windows of the ReLU's output are all zero.
        let b_val = CpuTensor::from_f32([4], vec![-1.5, -0.5, -2.0, 0.2]);
        let x = g.input("x", x_val.shape.clone());
        let w = g.input("w", w_val.shape.clone());
        let b = g.input("b", b_val.shape.clone());
        let geometry = Conv2dGeometry {
            stride: 1,
            pad: 1,
            dilation: 1,
        };
        let y = g.conv2d_relu(x, w, b, geometry).expect("conv");
        let pool = Pool2d::new(2);
        let pooled = if fold {
            g.max_pool2d(y, 2).expect("pool")
        } else {
            let op = MaxPool2d {
                pool,
                nonneg_input: false,
            };
            g.push_arc(Arc::new(op), &[y]).expect("pool")[0]
        };
        let seed_val = CpuTensor::from_f32(
            g.shape(pooled).dims.clone(),
            distinct_values(&mut rng, g.shape(pooled).numel()),
        );
        let seed = g.constant("seed", seed_val);
        let grads = append_backward(&mut g, &[(pooled, seed)], &[x, w, b]).expect("backward");
        let relu_backwards = g
            .nodes()
            .iter()
            .filter(|n| n.op.name() == "relu_backward")
            .count();
        let fused = g.nodes().iter().any(|n| n.op.name() == "conv2d_relu_pool");
        assert_eq!(
            fused, fold,
            "the 2x2 pool joins the convolution only when folding"
        );
        let order = schedule(&g, &grads, &[]);
        let mut cpu = CpuInterpreter::new(&g);
        for (id, v) in [(x, &x_val), (w, &w_val), (b, &b_val)] {
            cpu.set(id, v.clone()).expect("set");
        }
        cpu.run(&g, &order).expect("run");
        let zero_windows = cpu
            .get(pooled)
            .expect("value")
            .f32()
            .iter()
            .filter(|&&v| v == 0.0)
            .count();
        let grads: Vec<Vec<f32>> = grads
            .iter()
            .map(|&t| cpu.get(t).expect("value").f32().to_vec())
            .collect();
        (grads, relu_backwards, zero_windows)
    };
    let (folded, folded_relus, zero_windows) = run(true);
    let (unfolded, unfolded_relus, _) = run(false);
    assert_eq!(
        (folded_relus, unfolded_relus),
        (0, 1),
        "the fold removes the ReLU backward"
    );
    assert!(
        zero_windows > 10,
        "only {zero_windows} all-zero windows: the fold is not exercised"
    );
    assert_eq!(folded, unfolded, "gradients of x, w, b");
}

/// `linear_relu` (ReLU in the GEMM's epilogue, its mask folded into the backward packs) gives
/// the gradients of `linear` followed by a separate `relu`, on pre-activations of both signs
/// (where finite differences would straddle the kink).
#[test]
fn linear_relu_gives_the_gradients_of_linear_then_relu() {
    let run = |fused: bool| {
        let mut g = Graph::new();
        let mut rng = Rng::new(11);
        let x_val = CpuTensor::from_f32([37, 70], distinct_values(&mut rng, 37 * 70));
        let w_val = CpuTensor::from_f32([19, 70], distinct_values(&mut rng, 19 * 70));
        let b_val = CpuTensor::from_f32([19], distinct_values(&mut rng, 19));
        let x = g.input("x", x_val.shape.clone());
        let w = g.input("w", w_val.shape.clone());
        let b = g.input("b", b_val.shape.clone());
        let y = if fused {
            g.linear_relu(x, w, b).expect("linear_relu")
        } else {
            let z = g.linear(x, w, b).expect("linear");
            g.relu(z).expect("relu")
        };
        let seed_val = CpuTensor::from_f32([37, 19], distinct_values(&mut rng, 37 * 19));
        let seed = g.constant("seed", seed_val);
        let grads = append_backward(&mut g, &[(y, seed)], &[x, w, b]).expect("backward");
        let relu_backwards = g
            .nodes()
            .iter()
            .filter(|n| n.op.name() == "relu_backward")
            .count();
        let order = schedule(&g, &grads, &[]);
        let mut cpu = CpuInterpreter::new(&g);
        for (id, v) in [(x, &x_val), (w, &w_val), (b, &b_val)] {
            cpu.set(id, v.clone()).expect("set");
        }
        cpu.run(&g, &order).expect("run");
        let y_val = cpu.get(y).expect("value").f32().to_vec();
        let grads: Vec<Vec<f32>> = grads
            .iter()
            .map(|&t| cpu.get(t).expect("value").f32().to_vec())
            .collect();
        (grads, relu_backwards, y_val)
    };
    let (fused, fused_relus, y) = run(true);
    let (unfused, unfused_relus, _) = run(false);
    assert_eq!((fused_relus, unfused_relus), (0, 1));
    let zeros = y.iter().filter(|&&v| v == 0.0).count();
    assert!(
        zeros > y.len() / 5 && zeros < y.len() * 4 / 5,
        "{zeros} of {} outputs are zero: both sides of the ReLU must be exercised",
        y.len()
    );
    for (i, (f, u)) in fused.iter().zip(&unfused).enumerate() {
        assert_close(&format!("gradient {i}"), f, u, 1e-6, 1e-5);
    }
}
