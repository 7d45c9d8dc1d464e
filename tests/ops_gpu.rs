//! Every kernel in the catalogue against its CPU reference, on awkward shapes.

mod common;

use striate::ir::TensorData;
use striate::ops::catalog;
use striate::ops::testing::{assert_close, random_inputs, run_reference};

#[test]
fn every_kernel_matches_its_reference() {
    let Some(gpu) = common::gpu() else { return };
    let mut n_checked = 0;
    for entry in &catalog() {
        if entry.op.is_view() {
            continue; // Views dispatch nothing; the executable test covers them.
        }
        let inputs = random_inputs(entry, 1000 ^ entry.seed());
        let want = run_reference(entry.op.as_ref(), &inputs);
        let got = common::run_gpu(&gpu, entry, &inputs);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let label = format!("{entry:?} output {i}");
            match (&g.data, &w.data) {
                (TensorData::F32(g), TensorData::F32(w)) => assert_close(&label, g, w, 1e-5, 1e-4),
                (TensorData::U32(g), TensorData::U32(w)) => assert_eq!(g, w, "{label}"),
                _ => panic!("{label}: dtype differs"),
            }
        }
        n_checked += 1;
    }
    assert!(n_checked > 40, "only {n_checked} kernels checked");
}
