//! The ops, grouped by family, and the catalogue that tests every one of them.
//!
//! Each op is one `.rs` here and its kernels in one `.wgsl` under `shaders/`; it implements the
//! contract in [`crate::ir`] and uses the generated-kernel machinery in [`crate::kernels`].
//! Adding one: the two files, a `mod` line in its family and a line in [`catalog`]; the shader
//! registry ([`shaders`]) and the tests find it from there.

use std::fmt;
use std::sync::Arc;

use crate::ir::{CpuTensor, DeviceCaps, OpDef, Shader, SubgroupShare};
use crate::kernels::{conv_gemm, gemm, tiled, windows};
use crate::ops::activation::softmax;
use crate::ops::conv::conv2d;
use crate::ops::conv::general as conv_general;
use crate::ops::linalg::{linear, matmul};
use crate::ops::loss::{multi_margin_loss, pointwise_loss, softmax_cross_entropy};
use crate::ops::norm::{batch_norm2d, local_response_norm};
use crate::ops::pool::{adaptive_pool2d, avg_pool2d, lp_pool2d, max_pool2d};
use crate::ops::tensor::{add, bias_add, concat, reshape, upsample2d};
use crate::shape::Shape;

pub mod activation;
pub mod conv;
pub mod dropout;
pub mod linalg;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod tensor;

/// Workgroups the split per-channel reductions aim for on GPUs: enough to fill a large GPU
/// several times over (an H200 has 132 multiprocessors; ResNet-20's 16-channel layers alone
/// would leave most idle).
const SPLIT_TARGET_WORKGROUPS: usize = 1024;

/// `(splits, chunk)`: `len` values of each of `channels` channels cut into `splits` chunks of
/// `chunk` (the last may be shorter, none empty), each at least `min_chunk` long, so that
/// `channels · splits` approaches [`SPLIT_TARGET_WORKGROUPS`]; `None` where a channel holds
/// fewer than two chunks. Batch norm and the bias gradient split their reductions by it.
pub(crate) fn reduction_splits(
    channels: usize,
    len: usize,
    min_chunk: usize,
) -> Option<(usize, usize)> {
    let target = SPLIT_TARGET_WORKGROUPS
        .div_ceil(channels.max(1))
        .min(len / min_chunk.max(1))
        .min(crate::ir::MAX_WORKGROUPS_PER_DIM as usize);
    let chunk = len.div_ceil(target.max(1));
    let splits = len.div_ceil(chunk.max(1));
    (splits >= 2).then_some((splits, chunk))
}

/// The device capabilities plans are enumerated under when the catalogue is walked without a
/// device: no subgroups, whole 8-lane subgroups, blocks of 8 lanes in wider subgroups, each
/// on a CPU adapter and on a GPU (workgroup-tiled plans).
pub fn all_device_caps() -> Vec<DeviceCaps> {
    let shares = [
        None,
        Some(SubgroupShare::Whole),
        Some(SubgroupShare::Blocks),
    ];
    shares
        .into_iter()
        .flat_map(|subgroups| {
            [false, true].map(|workgroup_tiles| DeviceCaps {
                subgroups,
                max_texture_dim: 8192,
                workgroup_tiles,
            })
        })
        .collect()
}

/// Every shader, for validation in tests: each one a catalogue op's kernel or plans use under
/// any of [`all_device_caps`] (so a new op's `.wgsl` needs no line here), then every tile the
/// generators can emit for shapes outside the catalogue. Each name once.
pub fn shaders() -> Vec<&'static Shader> {
    let mut res: Vec<&'static Shader> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut add = |s: &'static Shader| {
        if seen.insert(s.name) {
            res.push(s);
        }
    };
    let all_caps = all_device_caps();
    for entry in catalog().iter().filter(|e| !e.op.is_view()) {
        let inputs: Vec<&Shape> = entry.inputs.iter().collect();
        // The catalogue's shapes are written valid for their ops (every catalogue test infers
        // them first): a failure here is a catalogue bug, not input.
        let outputs = entry.op.infer(&inputs).expect("catalogue shapes are valid");
        let outputs: Vec<&Shape> = outputs.iter().collect();
        add(entry.op.kernel(&inputs, &outputs).shader);
        for caps in &all_caps {
            for plan in entry.op.plans(&inputs, &outputs, caps) {
                plan.calls.iter().for_each(|(call, _)| add(call.shader));
            }
        }
    }
    gemm::all_tiles()
        .iter()
        .map(gemm::GemmTile::shader)
        .chain(
            conv_gemm::all_tiles()
                .iter()
                .map(conv_gemm::ConvTile::shader),
        )
        .chain(tiled::all_shaders())
        .chain(
            windows::all_tiles()
                .iter()
                .map(windows::WindowsTile::shader),
        )
        .for_each(&mut add);
    res
}

/// Fixes up random inputs in place (see [`CatalogEntry::prepare`]).
pub type PrepareInputs = Box<dyn Fn(&mut [CpuTensor])>;

/// An op with input shapes that exercise it: used by gradcheck and the GPU-vs-reference tests.
pub struct CatalogEntry {
    /// The op.
    pub op: Arc<dyn OpDef>,
    /// Input shapes (awkward sizes, not multiples of any tile).
    pub inputs: Vec<Shape>,
    /// u32 inputs are drawn from `0..u32_bound`.
    pub u32_bound: u32,
    /// Turns random inputs into valid ones where the op needs structure (an argmax that
    /// points into its window).
    pub prepare: Option<PrepareInputs>,
    /// Checked by finite differences (false only where the prepared inputs sit on a kink on
    /// purpose, e.g. a ReLU's zeros; such rules are tested against their unfused form).
    pub finite_differences: bool,
}

impl fmt::Debug for CatalogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} on {:?}",
            self.op,
            self.inputs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        )
    }
}

impl CatalogEntry {
    fn new(op: impl OpDef + 'static, inputs: Vec<Shape>) -> Self {
        CatalogEntry {
            op: Arc::new(op),
            inputs,
            u32_bound: 1,
            prepare: None,
            finite_differences: true,
        }
    }

    /// A seed that names this entry (its op and input shapes), for its random test inputs:
    /// unlike its index in the catalogue, adding other ops leaves it unchanged.
    pub fn seed(&self) -> u64 {
        // FNV-1a over the entry's description.
        format!("{self:?}")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    }
}

/// Every op with test shapes, forward and backward kernels alike.
pub fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    res.extend(activation::catalog());
    res.extend(activation::hard::catalog());
    res.extend(add::catalog());
    res.extend(avg_pool2d::catalog());
    res.extend(lp_pool2d::catalog());
    res.extend(bias_add::catalog());
    res.extend(conv2d::catalog());
    res.extend(conv_general::catalog());
    res.extend(matmul::catalog());
    res.extend(max_pool2d::catalog());
    res.extend(optim::catalog());
    res.extend(reshape::catalog());
    res.extend(softmax_cross_entropy::catalog());
    res.extend(conv2d::unpool::catalog());
    res.extend(linear::catalog());
    res.extend(optim::vec4_catalog());
    res.extend(batch_norm2d::catalog());
    res.extend(dropout::catalog());
    res.extend(concat::catalog());
    res.extend(adaptive_pool2d::catalog());
    res.extend(local_response_norm::catalog());
    res.extend(softmax::catalog());
    res.extend(upsample2d::catalog());
    res.extend(pointwise_loss::catalog());
    res.extend(multi_margin_loss::catalog());
    res
}

pub mod testing;
