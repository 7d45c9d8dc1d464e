//! Shared test helpers: the GPU (which fails loudly when absent) and single-op runners.
#![allow(dead_code, unreachable_pub)]

use std::sync::OnceLock;

use striate::exec::gpu::{Executable, ProgramSpec, VariantChoice};
use striate::ir::CpuTensor;
use striate::ops::CatalogEntry;
use striate::{GpuContext, Graph};

/// The test GPU. With no adapter this fails with the fix named; it never skips silently.
/// `STRIATE_SKIP_GPU_TESTS=1` turns GPU tests into printed skips (CI never sets it).
pub fn gpu() -> Option<GpuContext> {
    static GPU: OnceLock<Result<GpuContext, String>> = OnceLock::new();
    if std::env::var("STRIATE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: STRIATE_SKIP_GPU_TESTS=1");
        return None;
    }
    match GPU.get_or_init(|| GpuContext::from_env().map_err(|e| e.to_string())) {
        Ok(gpu) => Some(gpu.clone()),
        Err(e) => panic!("GPU tests need an adapter: {e}"),
    }
}

/// A context on wgpu's GL backend, for the tests of that path; fails naming what is missing.
/// Like [`gpu`], it honours `STRIATE_SKIP_GPU_TESTS=1` with a printed skip, and only that.
pub fn gl() -> Option<GpuContext> {
    gpu()?;
    let gl =
        GpuContext::new(&striate::AdapterChoice::Backend(wgpu::Backend::Gl)).unwrap_or_else(|e| {
            panic!(
                "the GL tests need a usable GL adapter (on Linux: Mesa's llvmpipe, \
                 apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri): {e}"
            )
        });
    assert_eq!(
        gl.adapter_info().backend,
        wgpu::Backend::Gl,
        "{}",
        gl.describe()
    );
    Some(gl)
}

/// Runs one catalogue op on the GPU with `inputs`; returns its outputs (for in-place ops, the
/// updated values of the inputs it mutates), in the same form as `run_reference`.
pub fn run_gpu(gpu: &GpuContext, entry: &CatalogEntry, inputs: &[CpuTensor]) -> Vec<CpuTensor> {
    run_gpu_with(gpu, entry, inputs, VariantChoice::First, |_| {})
}

/// [`run_gpu`] with the plan `choice`; `check_labels` sees the dispatch labels.
pub fn run_gpu_with(
    gpu: &GpuContext,
    entry: &CatalogEntry,
    inputs: &[CpuTensor],
    choice: VariantChoice,
    check_labels: impl FnOnce(&[&str]),
) -> Vec<CpuTensor> {
    let mut g = Graph::new();
    let mutates = entry.op.mutates();
    let ids: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if mutates.contains(&i) {
                g.state(&format!("in{i}"), t.clone())
            } else {
                g.input(&format!("in{i}"), t.shape.clone())
            }
        })
        .collect();
    let node = g
        .push_arc_node(entry.op.clone(), &ids)
        .expect("catalogue shapes are valid");
    let outputs = g.node(node).outputs.clone();
    let effects = if mutates.is_empty() {
        vec![]
    } else {
        vec![node]
    };
    let spec = ProgramSpec {
        name: "op".into(),
        outputs: outputs.clone(),
        effects,
    };
    let exe = Executable::build_with(gpu, &g, &[spec], choice).expect("build");
    for (i, t) in inputs.iter().enumerate() {
        if !mutates.contains(&i) {
            exe.write(ids[i], t.bytes()).expect("write input");
        }
    }
    let program = exe.program("op").expect("program");
    check_labels(&exe.dispatch_labels(program));
    exe.run(program).expect("run");
    let targets: Vec<_> = if mutates.is_empty() {
        outputs
    } else {
        mutates.iter().map(|&i| ids[i]).collect()
    };
    targets
        .iter()
        .map(|&t| exe.read(program, t).expect("read"))
        .collect()
}
