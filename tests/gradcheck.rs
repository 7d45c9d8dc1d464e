//! Finite-difference checks of every backward rule in the catalogue, on the CPU interpreter.
//!
//! For each differentiable op: L = Σ seed·output with a random seed; autodiff's gradient of L
//! with respect to every f32 input must match central differences.

use std::collections::BTreeSet;

use striate::exec::cpu::CpuInterpreter;
use striate::graph::{append_backward, schedule::schedule};
use striate::ops::testing::{assert_close, distinct_values, random_inputs};
use striate::ops::{catalog, CpuTensor};
use striate::rng::Rng;
use striate::shape::DType;
use striate::{Error, Graph};

const EPS: f32 = 1e-3;

#[test]
fn every_backward_rule_matches_finite_differences() {
    let mut checked = BTreeSet::new();
    for (entry_idx, entry) in catalog().iter().enumerate() {
        if !entry.op.mutates().is_empty() {
            continue; // In-place updates (optimizers, metrics) have no gradient.
        }
        let mut g = Graph::new();
        let inputs = random_inputs(entry, 7 + entry_idx as u64);
        let ids: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| g.input(&format!("in{i}"), t.shape.clone()))
            .collect();
        let outputs = g
            .push_arc(entry.op.clone(), &ids)
            .expect("catalogue shapes are valid");
        let mut rng = Rng::new(entry_idx as u64);
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
        let wrt: Vec<_> = ids
            .iter()
            .copied()
            .filter(|&t| g.shape(t).dtype == DType::F32)
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
                cpu.set(id, v.clone());
            }
            cpu.run(&g, &forward);
            seeds
                .iter()
                .map(|(t, s)| {
                    cpu.get(*t)
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
            cpu.set(id, v.clone());
        }
        cpu.run(&g, &backward);

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
                cpu.get(grad).f32(),
                &numeric,
                2e-3,
                1e-2,
            );
        }
        checked.insert(entry.op.name());
    }
    let want = [
        "add",
        "avg_pool2d",
        "bias_add",
        "conv2d",
        "conv2d_relu",
        "matmul",
        "max_pool2d",
        "relu",
        "reshape",
        "sigmoid",
        "softmax_cross_entropy",
        "tanh",
    ];
    assert_eq!(
        checked.into_iter().collect::<Vec<_>>(),
        want,
        "differentiable ops checked"
    );
}
