//! Bad input gets an error naming what is wrong: the layer and shapes, the file, the adapter.

mod common;

use striate::models::Model;
use striate::nn::Net;
use striate::{AdapterChoice, GpuContext, Graph, Shape};

#[test]
fn shape_errors_name_the_layer_and_the_shapes() {
    // Layers infer their input sizes, so what fails through them is geometry: LeNet-5 on 6x6
    // images leaves conv2's 5x5 window a 3x3 input.
    let mut g = Graph::new();
    let x = g.input("x", Shape::f32([4, 1, 6, 6]));
    let mut net = Net::new(&mut g, 0);
    let err = Model::Lenet5
        .build(&mut net, x, 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("conv2 (conv2d): window of 5") && err.contains("does not fit input size 3"),
        "{err}"
    );

    let mut g = Graph::new();
    let x = g.input("x", Shape::f32([4, 1, 3, 3]));
    let mut net = Net::new(&mut g, 0);
    let err = Model::ConvnetS
        .build(&mut net, x, 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("pool2 (max_pool2d)") && err.contains("does not fit input size 1"),
        "{err}"
    );

    // Through the graph API, weights are given, and a mismatch names both shapes.
    let mut g = Graph::new();
    let x = g.input("x", Shape::f32([4, 3, 28, 28]));
    let w = g.input("w", Shape::f32([6, 1, 5, 5]));
    let b = g.input("b", Shape::f32([6]));
    g.set_scope("stem");
    let geometry = striate::ir::Conv2dGeometry {
        stride: 1,
        pad: 2,
        dilation: 1,
    };
    let err = g.conv2d(x, w, b, geometry).unwrap_err().to_string();
    assert_eq!(
        err,
        "stem (conv2d): input [4, 3, 28, 28] has 3 channels but weight [6, 1, 5, 5] expects 1"
    );
    let y = g.input("y", Shape::f32([4, 120]));
    let w = g.input("w2", Shape::f32([10, 84]));
    g.set_scope("fc3");
    let err = g.matmul(y, w, false, true).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "fc3 (matmul): inner sizes differ: a [4, 120] gives k = 120, b [10, 84] gives k = 84"
        ),
        "{err}"
    );
}

#[test]
fn unknown_models_are_named() {
    let err = "resnet".parse::<Model>().unwrap_err().to_string();
    assert!(
        err.contains("\"resnet\"") && err.contains("lenet5, convnet-s"),
        "{err}"
    );
}

#[test]
fn an_adapter_that_does_not_exist_lists_the_ones_that_do() {
    let Some(gpu) = common::gpu() else { return };
    let err = GpuContext::new(&AdapterChoice::Name("no-such-gpu-xyz".into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no adapter name contains \"no-such-gpu-xyz\""),
        "{err}"
    );
    assert!(
        err.contains(&gpu.adapter_info().name),
        "the message lists the available adapters: {err}"
    );
}

#[test]
fn a_missing_or_corrupt_dataset_is_an_error_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("striate-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let err = striate::data::load_idx_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("train-images-idx3-ubyte")
            && err.contains("apt-get install dataset-fashion-mnist"),
        "{err}"
    );

    for stem in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(dir.join(format!("{stem}.gz")), b"not gzip").expect("write");
    }
    let err = striate::data::load_idx_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("train-images-idx3-ubyte.gz") && err.contains("not a valid gzip file"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// The public API answers bad arguments with errors, never panics: a tensor or program of no
/// graph, a buffer of the wrong length, an unknown kernel variant name.
#[test]
fn bad_arguments_to_the_graph_and_executable_are_errors() {
    use striate::prelude::*;
    let mut g = Graph::new();
    let x = g.input("x", Shape::f32([2, 3]));
    let stray = TensorId(99);
    let err = g
        .push(striate::ops::tensor::add::Add, &[x, stray])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TensorId(99)") && err.contains("not a tensor"),
        "{err}"
    );
    let y = g
        .push(striate::ops::tensor::add::Add, &[x, x])
        .expect("add")[0];

    // The CPU interpreter checks what it is given and names what is missing.
    let mut cpu = striate::exec::cpu::CpuInterpreter::new(&g);
    let order = striate::graph::schedule(&g, &[y], &[]);
    let err = cpu.run(&g, &order).unwrap_err().to_string();
    assert!(err.contains("'x'") && err.contains("has no value"), "{err}");
    let wrong = CpuTensor::from_f32([3, 2], vec![0.0; 6]);
    let err = cpu.set(x, wrong).unwrap_err().to_string();
    assert!(
        err.contains("is [2, 3]") && err.contains("given is [3, 2]"),
        "{err}"
    );
    assert!(cpu.set(stray, CpuTensor::scalar(0.0)).is_err());
    assert!(cpu.get(y).is_err(), "not computed yet");
    let ones = CpuTensor::try_from_f32([2, 3], vec![1.0; 6]).expect("six fill [2, 3]");
    cpu.set(x, ones).expect("fits");
    cpu.run(&g, &order).expect("run");
    assert_eq!(cpu.get(y).expect("computed").f32(), [2.0; 6]);

    let Some(gpu) = common::gpu() else { return };
    let spec = ProgramSpec {
        name: "p".into(),
        outputs: vec![y],
        effects: vec![],
    };
    let err = Executable::build_with(
        &gpu,
        &g,
        std::slice::from_ref(&spec),
        VariantChoice::Named("no-such-variant".into()),
    )
    .err()
    .expect("an unknown variant is an error")
    .to_string();
    assert!(err.contains("no-such-variant"), "{err}");
    let exe = Executable::build(&gpu, &g, &[spec]).expect("build");
    assert_eq!(
        exe.programs(),
        [("p".to_string(), exe.program("p").expect("p"))]
    );
    let p = exe.program("p").expect("p");
    assert!(exe.read(p, stray).is_err());
    assert!(exe.write(stray, &[0; 24]).is_err());
    let err = exe.write(x, &[0; 7]).unwrap_err().to_string();
    assert!(err.contains("7 bytes"), "{err}");
    assert!(exe.run(striate::exec::gpu::ProgramId(5)).is_err());
    assert!(exe.program("q").is_err());
}
