//! Helpers shared by the unit tests, the integration tests and the benchmarks: run one op's
//! reference, draw valid random inputs for a catalogue entry, compare tensors.

use crate::ir::{CpuTensor, OpDef};
use crate::ops::CatalogEntry;
use crate::rng::Rng;
use crate::shape::{DType, Shape};

/// Runs `op.reference` on `inputs`. Returns the outputs, or for in-place ops the updated
/// values of the inputs they mutate.
pub fn run_reference(op: &dyn OpDef, inputs: &[CpuTensor]) -> Vec<CpuTensor> {
    let shapes: Vec<&Shape> = inputs.iter().map(|t| &t.shape).collect();
    let out_shapes = op.infer(&shapes).expect("test inputs have valid shapes");
    let refs: Vec<&CpuTensor> = inputs.iter().collect();
    let mut outputs: Vec<CpuTensor> = if op.mutates().is_empty() {
        out_shapes.iter().map(CpuTensor::zeros).collect()
    } else {
        op.mutates().iter().map(|&i| inputs[i].clone()).collect()
    };
    op.reference(&refs, &mut outputs);
    outputs
}

/// Random inputs for `entry`: f32 values are distinct, at least 0.1 from zero and at least
/// 0.9/numel apart (so finite differences never cross a relu kink or a max-pool tie); u32
/// values are drawn from `0..entry.u32_bound`.
pub fn random_inputs(entry: &CatalogEntry, seed: u64) -> Vec<CpuTensor> {
    let mut rng = Rng::new(seed);
    let mut res: Vec<CpuTensor> = entry
        .inputs
        .iter()
        .map(|shape| match shape.dtype {
            DType::F32 => {
                CpuTensor::from_f32(shape.dims.clone(), distinct_values(&mut rng, shape.numel()))
            }
            DType::U32 => {
                let data = (0..shape.numel())
                    .map(|_| rng.below(u64::from(entry.u32_bound)) as u32)
                    .collect();
                CpuTensor::from_u32(shape.dims.clone(), data)
            }
        })
        .collect();
    if let Some(prepare) = &entry.prepare {
        prepare(&mut res);
    }
    res
}

/// `n` distinct values with magnitudes evenly spaced in [0.1, 1], random signs, shuffled.
pub fn distinct_values(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut values: Vec<f32> = (0..n)
        .map(|i| {
            let magnitude = 0.1 + 0.9 * (i as f32 + 0.5) / n as f32;
            if rng.below(2) == 0 {
                magnitude
            } else {
                -magnitude
            }
        })
        .collect();
    rng.shuffle(&mut values);
    values
}

/// Panics with the worst element when `|got − want| > atol + rtol·|want|` anywhere.
pub fn assert_close(label: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{label}: length {} vs {}",
        got.len(),
        want.len()
    );
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        // NaN compares false both ways: a NaN excess (a NaN output) counts as a mismatch.
        let bad = excess > 0.0 || excess.is_nan();
        if bad && worst.is_none_or(|(_, e)| excess > e || excess.is_nan()) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        let max_diff = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .fold(0f32, f32::max);
        panic!(
            "{label}: mismatch at index {i}: got {}, want {} (max |diff| {max_diff}, atol {atol}, rtol {rtol}, {} elements)",
            got[i],
            want[i],
            got.len()
        );
    }
}
