//! The op contract: what every op provides (`OpDef`: a shape rule, a backward rule, GPU plans
//! and a CPU reference) and the plain data a plan is made of (`KernelCall`, `KernelPlan`,
//! `Shader`). No wgpu types: `exec::gpu` turns a plan into dispatches.

use std::fmt;

use bytemuck::Pod;

use crate::ir::{BackwardCtx, CpuTensor, Pool2d};
use crate::shape::{DType, Shape};
use crate::Result;

/// Workgroup size of one-invocation-per-element kernels (the `WG` override in WGSL).
pub const WG: u32 = 256;
/// The most workgroups one dispatch dimension may have (WebGPU's default limit).
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65_535;

/// A WGSL source file from `shaders/`.
#[derive(Debug)]
pub struct Shader {
    /// File stem, e.g. `conv2d`.
    pub name: &'static str,
    /// WGSL text.
    pub source: &'static str,
    /// `size_of` the Rust twin of the file's `struct Params` (checked against naga's layout).
    pub params_size: usize,
}

impl Shader {
    /// A shader; use with `include_str!` and `size_of::<Params>()`.
    pub const fn new(name: &'static str, source: &'static str, params_size: usize) -> Self {
        Shader {
            name,
            source,
            params_size,
        }
    }
}

/// `div`, exact `u32` division through `f32` (`shaders/div.wgsl`): appended to every shader
/// that divides by runtime values, since llvmpipe scalarises vector integer division.
pub(crate) const DIV_WGSL: &str = include_str!("../../shaders/div.wgsl");

/// The shader generated under `name` (unique per variant): made by `make` on first use,
/// then shared for the life of the process.
pub(crate) fn generated_shader(
    name: String,
    params_size: usize,
    make: impl FnOnce() -> String,
) -> &'static Shader {
    static CACHE: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, &'static Shader>>,
    > = std::sync::OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .expect("generated shader cache");
    cache.entry(name).or_insert_with_key(|name| {
        let name: &'static str = Box::leak(name.clone().into_boxed_str());
        let source: &'static str = Box::leak(make().into_boxed_str());
        Box::leak(Box::new(Shader::new(name, source, params_size)))
    })
}

/// One dispatch, as plain data: which entry point, its `Params` bytes and its grid.
///
/// Bindings follow the house convention: 0 is the `Params` uniform, then the op's inputs in
/// order, then its outputs.
#[derive(Clone, Debug)]
pub struct KernelCall {
    /// The shader file.
    pub shader: &'static Shader,
    /// The WGSL entry point.
    pub entry: &'static str,
    /// The `Params` struct as bytes.
    pub params: Vec<u8>,
    /// Workgroups in x, y, z.
    pub workgroups: [u32; 3],
    /// Values for the shader's `override` constants.
    pub overrides: Vec<(&'static str, f64)>,
}

impl KernelCall {
    /// One invocation per element of `n_elements`, in workgroups of [`WG`]. Grids larger
    /// than 65,535 workgroups fold into `y`; shaders rebuild the index as
    /// `gid.x + gid.y * nwg.x * WG`.
    pub fn per_element<P: Pod>(
        shader: &'static Shader,
        entry: &'static str,
        params: &P,
        n_elements: usize,
    ) -> Self {
        Self::per_element_wg(shader, entry, params, n_elements, WG)
    }

    /// [`KernelCall::per_element`] with workgroups of `wg` invocations (the `WG` override).
    pub fn per_element_wg<P: Pod>(
        shader: &'static Shader,
        entry: &'static str,
        params: &P,
        n_elements: usize,
        wg: u32,
    ) -> Self {
        let n_groups = (n_elements as u32).div_ceil(wg).max(1);
        let x = n_groups.min(MAX_WORKGROUPS_PER_DIM);
        Self::grid(shader, entry, params, [x, n_groups.div_ceil(x), 1])
            .with_overrides(&[("WG", f64::from(wg))])
    }

    /// An explicit grid.
    pub fn grid<P: Pod>(
        shader: &'static Shader,
        entry: &'static str,
        params: &P,
        workgroups: [u32; 3],
    ) -> Self {
        KernelCall {
            shader,
            entry,
            params: bytemuck::bytes_of(params).to_vec(),
            workgroups,
            overrides: vec![("WG", f64::from(WG))],
        }
    }

    /// Replaces the override constants.
    pub fn with_overrides(mut self, overrides: &[(&'static str, f64)]) -> Self {
        self.overrides = overrides.to_vec();
        self
    }
}

/// What a binding of a [`KernelCall`] points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// The op's input `i`.
    Input(usize),
    /// The op's output `i`.
    Output(usize),
    /// Scratch resource `i` of the [`KernelPlan`].
    Scratch(usize),
}

/// A resource a [`KernelPlan`] needs only while it runs (packed operands, partial sums). The
/// executable creates these once and shares them between ops of a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScratchSpec {
    /// An `rgba32float` texture, written and read (`textureLoad`) as a storage texture.
    Texture {
        /// Width in texels.
        width: u32,
        /// Height in texels.
        height: u32,
    },
    /// A storage buffer of f32.
    Buffer {
        /// Size in bytes.
        bytes: u64,
    },
}

/// How an op runs on the GPU: its dispatches in order and the scratch they share. An op may
/// offer several plans (variants); all compute the same result, only speed differs.
#[derive(Clone, Debug)]
pub struct KernelPlan {
    /// Variant name, e.g. `direct` or `tex-outer-r16j4w1-sg`; stable, used as the tuning key.
    pub variant: String,
    /// Scratch resources, referred to by [`Operand::Scratch`].
    pub scratch: Vec<ScratchSpec>,
    /// Dispatches with the operand at each binding (binding 0 is always the `Params` uniform).
    pub calls: Vec<(KernelCall, Vec<Operand>)>,
    /// Inputs copied into scratch textures before the program's compute pass (transfer
    /// commands, not dispatches). A plan with copies runs only where its inputs are unchanged
    /// from the program's start to the op; the executable skips it elsewhere.
    pub copies: Vec<TextureCopy>,
}

/// A row-major input copied whole into a scratch texture: `rows` rows of `texels` texels,
/// input row `r` to texture line `r`. `texels · 16` bytes must be a multiple of 256 (the
/// copy's row alignment) and `texels` at most one texture line ([`LINE_TEXELS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextureCopy {
    /// The op's input.
    pub input: usize,
    /// The plan's scratch texture, `texels x rows`; written by this copy only.
    pub scratch: usize,
    /// Texels (4 floats) per row.
    pub texels: u32,
    /// Rows.
    pub rows: u32,
}

impl TextureCopy {
    /// The copy of a contiguous row-major `rows x cols` input, where its layout allows one.
    pub fn of_rows(input: usize, scratch: usize, rows: usize, cols: usize) -> Option<Self> {
        let texels = cols / 4;
        (cols.is_multiple_of(64) && texels > 0 && texels as u32 <= LINE_TEXELS && rows > 0)
            .then_some(TextureCopy {
                input,
                scratch,
                texels: texels as u32,
                rows: rows as u32,
            })
    }
}

impl KernelPlan {
    /// Appends `other`'s calls (after this plan's) and scratch, renumbering its scratch
    /// operands past this plan's own. Copies are not appended (a fragment has none).
    pub fn append(&mut self, other: &KernelPlan) {
        debug_assert!(other.copies.is_empty(), "a fragment with copies");
        let offset = self.scratch.len();
        self.scratch.extend(other.scratch.iter().cloned());
        self.calls
            .extend(other.calls.iter().map(|(call, operands)| {
                let operands = operands
                    .iter()
                    .map(|&o| match o {
                        Operand::Scratch(i) => Operand::Scratch(i + offset),
                        other => other,
                    })
                    .collect();
                (call.clone(), operands)
            }));
    }

    /// One call with the house binding convention: inputs, then outputs.
    pub fn direct(call: KernelCall, n_inputs: usize, n_outputs: usize) -> Self {
        let operands = (0..n_inputs)
            .map(Operand::Input)
            .chain((0..n_outputs).map(Operand::Output))
            .collect();
        KernelPlan {
            variant: "direct".into(),
            scratch: Vec::new(),
            calls: vec![(call, operands)],
            copies: Vec::new(),
        }
    }
}

/// Texels per texture line (a power of two every adapter supports: WebGPU's default limit
/// is 8192).
pub const LINE_TEXELS: u32 = 4096;
/// Size of a packed texture for `rows × cols` floats: (width, height, lines per row).
pub fn texture_dims(rows: usize, cols: usize) -> (u32, u32, u32) {
    let texels = (cols as u32).div_ceil(4).max(1);
    let lines = texels.div_ceil(LINE_TEXELS);
    (texels.min(LINE_TEXELS), (rows as u32).max(1) * lines, lines)
}

/// How the lanes of a subgroup plan share values. Plans work in blocks of 8 consecutive lanes
/// (a block's lanes own 8 rows of a tile, or 8 windows of a task) and only ever read lanes of
/// their own block, so one kernel serves every subgroup width that is a multiple of 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubgroupShare {
    /// Subgroups of exactly 8 lanes (lavapipe): a block is the whole subgroup, and the
    /// cheapest operations apply (`subgroupBroadcast` from a constant lane, `subgroupAdd`).
    Whole,
    /// Subgroups of 8 to 128 lanes, a multiple of 8 (NVIDIA 32, AMD 32/64, Apple 32, Intel
    /// 8-32): `subgroupShuffle` from lane `base + r` and a `subgroupShuffleXor` butterfly
    /// over lane bits 0-2 keep every exchange inside the block. Each lane's place comes from
    /// the subgroup builtins (`SubgroupShare::entry_point` in `kernels`), so nothing depends on how a
    /// driver groups a workgroup's invocations into subgroups.
    Blocks,
}

/// What an op may assume about the device when it offers plans.
#[derive(Clone, Copy, Debug)]
pub struct DeviceCaps {
    /// Subgroup operations, and how plans share values through them (absent where the
    /// adapter has none, or subgroups narrower than 8 lanes or not a multiple of 8).
    pub subgroups: Option<SubgroupShare>,
    /// Largest 2D texture side.
    pub max_texture_dim: u32,
    /// Workgroup memory is fast and workgroups run in parallel lanes (a GPU, not a CPU
    /// adapter): the workgroup-tiled kernel family (`kernels::tiled`) is worth offering.
    pub workgroup_tiles: bool,
}

impl DeviceCaps {
    /// True when a packed texture of `rows × cols` floats fits (and its pack grid: one
    /// workgroup row per matrix row).
    pub fn fits(&self, rows: usize, cols: usize) -> bool {
        let (w, h, _) = texture_dims(rows, cols);
        w <= self.max_texture_dim
            && h <= self.max_texture_dim
            && rows <= MAX_WORKGROUPS_PER_DIM as usize
            && cols < 1 << 24
    }
}

/// The contract every op fulfils.
///
/// Ops that update state in place (optimizers, metric accumulators) list the updated inputs in
/// [`OpDef::mutates`]; the scheduler keeps them for their effect, and their `reference`
/// receives the current values of those inputs in `outputs` and updates them there.
pub trait OpDef: fmt::Debug + Send + Sync {
    /// PyTorch-style name; also the WGSL entry prefix and the wgpu label.
    fn name(&self) -> &'static str;

    /// Shape rule, run once in `Graph::push`.
    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>>;

    /// Appends the gradient nodes. Default: not differentiable.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let _ = cx;
        Err(crate::Error::NotDifferentiable(self.name()))
    }

    /// The GPU dispatch for these shapes (the `direct` plan).
    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall;

    /// Every way to run the op on a device like `caps`, best guess first. Default: the one
    /// direct kernel.
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let _ = caps;
        vec![KernelPlan::direct(
            self.kernel(inputs, outputs),
            inputs.len(),
            outputs.len(),
        )]
    }

    /// Plain loops computing the same result on the CPU: the spec the kernel is checked against.
    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]);

    /// Inputs this op updates in place (bound read-write).
    fn mutates(&self) -> &'static [usize] {
        &[]
    }

    /// f32 inputs the op treats as constants, which take no gradient (a loss's class weights,
    /// as PyTorch's `weight` arguments); u32 inputs never do.
    fn constant_inputs(&self) -> &'static [usize] {
        &[]
    }

    /// True when output 0 is never negative (a ReLU, a convolution with ReLU): a max pool
    /// over it may then drop windows whose maximum is 0 from its backward pass.
    fn output_nonnegative(&self) -> bool {
        false
    }

    /// The op computing this op's output 0 followed by the max pool `pool`, when one exists
    /// (`conv2d_relu` absorbs a 2x2 pool); `Graph::max_pool2d` pushes it instead.
    fn absorb_max_pool(&self, _pool: &Pool2d) -> Option<std::sync::Arc<dyn OpDef>> {
        None
    }

    /// True when output 0, a gradient, is already zero wherever the ReLU before the forward
    /// op was inactive, so that ReLU's backward may pass it through instead of running
    /// (`max_pool2d_backward` over a ReLU's output).
    fn gradient_relu_masked(&self) -> bool {
        false
    }

    /// True when output 0 is a view of input 0 (same buffer, new shape): no kernel runs.
    fn is_view(&self) -> bool {
        false
    }
}

/// Checks that every input has the dtype the op expects.
pub(crate) fn expect_dtype(
    op: &'static str,
    what: &str,
    shape: &Shape,
    dtype: DType,
) -> Result<()> {
    if shape.dtype == dtype {
        Ok(())
    } else {
        Err(crate::Error::shape(
            op,
            format!("{what} must be {dtype:?}, got {shape}"),
        ))
    }
}

/// Checks the number of inputs.
pub(crate) fn expect_arity(op: &'static str, inputs: &[&Shape], n: usize) -> Result<()> {
    if inputs.len() == n {
        Ok(())
    } else {
        Err(crate::Error::shape(
            op,
            format!("expects {n} inputs, got {}", inputs.len()),
        ))
    }
}
