//! Workgroup-tiled GEMM kernels for GPUs with fast workgroup memory (discrete and integrated
//! GPUs: NVIDIA, AMD, Apple, Intel), beside the texture GEMM tuned for lavapipe.
//!
//! Each workgroup computes a `bm × bn` tile of `C = A · B`: per step of `bk` along `k` its
//! invocations load the `bm × bk` slice of `A` and the `bk × bn` slice of `B` from storage
//! buffers into workgroup memory (consecutive invocations read consecutive addresses, so the
//! loads coalesce), then each invocation accumulates a `tm × tn` register block from it: `tm +
//! tn` workgroup-memory reads feed `tm · tn` multiply-adds. An invocation's rows and columns are
//! strided by the number of invocations along each side, so a warp's reads of the `B` slice hit
//! consecutive banks and its stores coalesce. No subgroup operations: the kernels are the same
//! for every subgroup width.
//!
//! The operands are not packed first: each kind generates its own `load_a`, `load_b` and
//! `store` from the op's tensors, so a convolution reads its im2col window, its flipped
//! kernel or its output gradient straight from the NCHW buffers (implicit GEMM, every stride),
//! and writes NCHW with the bias and ReLU in the epilogue. The weight gradient splits `k` (the
//! batch's pixels) over `z` into partial sums that `reduce_splits` adds, so a small weight
//! tensor still fills the GPU.
//!
//! The kernels are generated per tile (`generated_shader`), the accumulators as named
//! registers. They are offered only where [`DeviceCaps::workgroup_tiles`] says workgroup memory
//! is real (not on CPU adapters, where each workgroup is one thread and the texture GEMM wins),
//! so a software device pays no tuning time for them; tests run them on lavapipe anyway.

use bytemuck::{Pod, Zeroable};

use crate::ir::{Conv2dGeometry, DeviceCaps, KernelCall, KernelPlan, Operand, ScratchSpec};
use crate::kernels::gemm::reduce_call;
use crate::kernels::{fill, lines};

/// Mirrors the generated `struct Params`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct TiledParams {
    /// Rows of `C`.
    pub m: u32,
    /// Columns of `C`.
    pub n: u32,
    /// The reduction length.
    pub k: u32,
    /// `k` per split (`z` index); `k` without splits.
    pub k_chunk: u32,
    /// Matmul: `A(r, k) = a[r·a_sr + k·a_sc]`.
    pub a_sr: u32,
    /// See `a_sr`.
    pub a_sc: u32,
    /// Matmul: `B(k, c) = b[k·b_sr + c·b_sc]`.
    pub b_sr: u32,
    /// See `b_sr`.
    pub b_sc: u32,
    /// 1: ReLU in the epilogue.
    pub relu: u32,
    /// Convolutions: images in the batch.
    pub batch: u32,
    /// Convolutions: input channels.
    pub c_in: u32,
    /// Convolutions: input height.
    pub h: u32,
    /// Convolutions: input width.
    pub w: u32,
    /// Convolutions: output channels.
    pub c_out: u32,
    /// Convolutions: kernel height.
    pub kh: u32,
    /// Convolutions: kernel width.
    pub kw: u32,
    /// Convolutions: output height.
    pub oh: u32,
    /// Convolutions: output width.
    pub ow: u32,
    /// Convolutions: stride.
    pub stride: u32,
    /// Convolutions: zero padding.
    pub pad: u32,
    /// Convolutions: dilation.
    pub dilation: u32,
    /// Workgroup tiles along the rows; grids wider than the per-dimension limit fold their
    /// column tiles into `y` in multiples of it (set by the call).
    pub row_tiles: u32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 2],
}

/// What the GEMM computes, which decides how its operands are addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TiledKind {
    /// `C[m, n] = A · B` over strided views (either operand transposed); with `bias`, a
    /// `[n]` bias added to every row (a linear layer's `x · Wᵀ + b`).
    Matmul {
        /// Binding 3 is a bias over the columns.
        bias: bool,
    },
    /// Convolution forward: `y[b, co, p] = Σ w[co, (ci, ky, kx)] · x-window` (+ bias[co]).
    ConvForward {
        /// Binding 3 is the bias.
        bias: bool,
    },
    /// Convolution input gradient: `grad_x[b, ci, q] = Σ w[co, ci, tap] · grad_y[b, co, o]`
    /// over the outputs `o` each input `q` feeds through tap (any stride).
    ConvBackwardInput,
    /// Convolution weight gradient: `grad_w[co, (ci, tap)] = Σ_(b, o) grad_y · x-window`,
    /// split over `z` into partial sums.
    ConvBackwardWeight,
}

/// A workgroup tile: `bm × bn` of `C` per workgroup, `bk` deep, `tm × tn` per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Rows per workgroup.
    pub bm: u32,
    /// Columns per workgroup.
    pub bn: u32,
    /// Depth of each slice in workgroup memory.
    pub bk: u32,
    /// Rows per invocation.
    pub tm: u32,
    /// Columns per invocation.
    pub tn: u32,
}

impl Tile {
    /// Invocations per workgroup.
    pub fn invocations(&self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    /// `wg64x64x16-4x4`.
    pub fn label(&self) -> String {
        format!(
            "wg{}x{}x{}-{}x{}",
            self.bm, self.bn, self.bk, self.tm, self.tn
        )
    }
}

/// Every tile the candidates draw from: big tiles for big products, narrow ones for few rows
/// (a convolution's 6 to 64 output channels) or few columns.
pub const TILES: [Tile; 5] = [
    Tile {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 4,
        tn: 4,
    },
    Tile {
        bm: 128,
        bn: 64,
        bk: 16,
        tm: 8,
        tn: 4,
    },
    Tile {
        bm: 128,
        bn: 128,
        bk: 8,
        tm: 8,
        tn: 8,
    },
    Tile {
        bm: 32,
        bn: 64,
        bk: 16,
        tm: 2,
        tn: 4,
    },
    Tile {
        bm: 16,
        bn: 128,
        bk: 16,
        tm: 1,
        tn: 8,
    },
];

/// The tiles worth timing for an `m × n` product, best guess first: none much taller or wider
/// than the product unless nothing else fits.
pub fn candidates(m: usize, n: usize) -> Vec<Tile> {
    let fits = |t: &Tile| {
        (t.bm as usize) <= m.next_power_of_two().max(16)
            && (t.bn as usize) <= n.next_power_of_two().max(64)
    };
    let mut res: Vec<Tile> = TILES.iter().copied().filter(fits).collect();
    // Larger tiles first where the product is large: fewer loads per multiply-add.
    res.sort_by_key(|t| std::cmp::Reverse(t.bm * t.bn));
    if res.is_empty() {
        res.push(TILES[4]);
    }
    res
}

/// The generated shader of `kind` on `tile`.
pub fn shader(kind: TiledKind, tile: Tile) -> &'static crate::ir::Shader {
    let name = format!("tiled-{}-{}", kind_name(kind), tile.label());
    crate::ir::generated_shader(name, size_of::<TiledParams>(), || generate(kind, tile))
}

fn kind_name(kind: TiledKind) -> &'static str {
    match kind {
        TiledKind::Matmul { bias: false } => "matmul",
        TiledKind::Matmul { bias: true } => "matmul-bias",
        TiledKind::ConvForward { bias: false } => "conv",
        TiledKind::ConvForward { bias: true } => "conv-bias",
        TiledKind::ConvBackwardInput => "conv-bwd-input",
        TiledKind::ConvBackwardWeight => "conv-bwd-weight",
    }
}

/// Every generated shader, for validation in tests.
pub fn all_shaders() -> Vec<&'static crate::ir::Shader> {
    let kinds = [
        TiledKind::Matmul { bias: false },
        TiledKind::Matmul { bias: true },
        TiledKind::ConvForward { bias: false },
        TiledKind::ConvForward { bias: true },
        TiledKind::ConvBackwardInput,
        TiledKind::ConvBackwardWeight,
    ];
    kinds
        .iter()
        .flat_map(|&k| TILES.iter().map(move |&t| shader(k, t)))
        .collect()
}

/// The bindings and addressing of each kind, as WGSL.
fn operands(kind: TiledKind) -> String {
    let conv_helpers = "
// Input coordinate of output `o`, tap `k` along one axis, or -1 outside the input.
fn in_coord(o: u32, k: u32, size: u32) -> i32 {
    let i = i32(o * p.stride + k * p.dilation) - i32(p.pad);
    return select(-1, i, i >= 0 && i < i32(size));
}
// (channel, ky, kx) of an index over channels × kernel taps.
fn split_tap(k: u32) -> vec3<u32> {
    let khw = p.kh * p.kw;
    let ch = k / khw;
    let t = k - ch * khw;
    let ky = t / p.kw;
    return vec3<u32>(ch, ky, t - ky * p.kw);
}
// (image, y, x) of an index over images × rows × cols.
fn split_pixel(i: u32, rows: u32, cols: u32) -> vec3<u32> {
    let plane = rows * cols;
    let img = i / plane;
    let q = i - img * plane;
    let y = q / cols;
    return vec3<u32>(img, y, q - y * cols);
}
";
    let mut s = String::new();
    match kind {
        TiledKind::Matmul { bias } => {
            s += "@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
fn load_a(r: u32, k: u32) -> f32 { return a[r * p.a_sr + k * p.a_sc]; }
fn load_b(k: u32, c: u32) -> f32 { return b[k * p.b_sr + c * p.b_sc]; }
";
            let (out, add) = if bias {
                (
                    "@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;",
                    " + bias[c]",
                )
            } else {
                (
                    "@group(0) @binding(3) var<storage, read_write> dst: array<f32>;",
                    "",
                )
            };
            s += &fill(
                "{out}
fn store(r: u32, c: u32, z: u32, v: f32) {
    let y = v{add};
    dst[r * p.n + c] = select(y, max(y, 0.0), p.relu != 0u);
}
",
                &[("out", &out), ("add", &add)],
            );
        }
        TiledKind::ConvForward { bias } => {
            s += conv_helpers;
            s += "@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
fn load_a(r: u32, k: u32) -> f32 { return wt[r * p.k + k]; }
fn load_b(k: u32, c: u32) -> f32 {
    let tap = split_tap(k);
    let o = split_pixel(c, p.oh, p.ow);
    let iy = in_coord(o.y, tap.y, p.h);
    let ix = in_coord(o.z, tap.z, p.w);
    if (iy < 0 || ix < 0) { return 0.0; }
    return x[((o.x * p.c_in + tap.x) * p.h + u32(iy)) * p.w + u32(ix)];
}
";
            let (out, add) = if bias {
                (
                    "@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;",
                    " + bias[r]",
                )
            } else {
                (
                    "@group(0) @binding(3) var<storage, read_write> dst: array<f32>;",
                    "",
                )
            };
            s += &fill(
                "{out}
fn store(r: u32, c: u32, z: u32, v: f32) {
    let ohw = p.oh * p.ow;
    let img = c / ohw;
    let y = v{add};
    dst[(img * p.m + r) * ohw + (c - img * ohw)] = select(y, max(y, 0.0), p.relu != 0u);
}
",
                &[("out", &out), ("add", &add)],
            );
        }
        TiledKind::ConvBackwardInput => {
            s += conv_helpers;
            s += "@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
// A(ci, (co, tap)) = w[co, ci, tap].
fn load_a(r: u32, k: u32) -> f32 {
    let khw = p.kh * p.kw;
    let co = k / khw;
    return wt[(co * p.c_in + r) * khw + (k - co * khw)];
}
// Output coordinate input `i`, tap `k` feeds along one axis, or -1 when none does.
fn out_coord(i: u32, k: u32, size: u32) -> i32 {
    let t = i32(i + p.pad) - i32(k * p.dilation);
    if (t < 0 || u32(t) % p.stride != 0u) { return -1; }
    let o = u32(t) / p.stride;
    return select(-1, i32(o), o < size);
}
// B((co, tap), (img, iy, ix)) = grad_y[img, co, o] where the tap maps the output o to it.
fn load_b(k: u32, c: u32) -> f32 {
    let tap = split_tap(k);
    let i = split_pixel(c, p.h, p.w);
    let oy = out_coord(i.y, tap.y, p.oh);
    let ox = out_coord(i.z, tap.z, p.ow);
    if (oy < 0 || ox < 0) { return 0.0; }
    return gy[((i.x * p.c_out + tap.x) * p.oh + u32(oy)) * p.ow + u32(ox)];
}
fn store(r: u32, c: u32, z: u32, v: f32) {
    let hw = p.h * p.w;
    let img = c / hw;
    dst[(img * p.c_in + r) * hw + (c - img * hw)] = v;
}
";
        }
        TiledKind::ConvBackwardWeight => {
            s += conv_helpers;
            s += "@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
// A(co, (img, o)) = grad_y[img, co, o].
fn load_a(r: u32, k: u32) -> f32 {
    let ohw = p.oh * p.ow;
    let img = k / ohw;
    return gy[(img * p.c_out + r) * ohw + (k - img * ohw)];
}
// B((img, oy, ox), (ci, ky, kx)) = x at the window's tap.
fn load_b(k: u32, c: u32) -> f32 {
    let o = split_pixel(k, p.oh, p.ow);
    let tap = split_tap(c);
    let iy = in_coord(o.y, tap.y, p.h);
    let ix = in_coord(o.z, tap.z, p.w);
    if (iy < 0 || ix < 0) { return 0.0; }
    return x[((o.x * p.c_in + tap.x) * p.h + u32(iy)) * p.w + u32(ix)];
}
// Split z's partial sums, one m x n block each (the whole result without splits).
fn store(r: u32, c: u32, z: u32, v: f32) {
    dst[(z * p.m + r) * p.n + c] = v;
}
";
        }
    }
    s
}

/// The workgroup-tiled GEMM kernel `gemm` of every kind and tile: `operands` (the kind's
/// bindings, `load_a`, `load_b` and `store`) and the register code unrolled over the
/// invocation's `tm x tn` outputs are the holes.
const TILED_WGSL: &str = r"// Generated by src/kernels/tiled.rs: {kind} on a {label} tile ({wg} invocations).
struct Params {
    m: u32, n: u32, k: u32, k_chunk: u32,
    a_sr: u32, a_sc: u32, b_sr: u32, b_sc: u32,
    relu: u32, batch: u32, c_in: u32, h: u32,
    w: u32, c_out: u32, kh: u32, kw: u32,
    oh: u32, ow: u32, stride: u32, pad: u32,
    dilation: u32, row_tiles: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
{operands}

const BM: u32 = {bm}u;
const BN: u32 = {bn}u;
const BK: u32 = {bk}u;
const TX: u32 = {tx}u;
const TY: u32 = {ty}u;
const WG: u32 = {wg}u;

// The A slice stored k-major ([kk][row]) and the B slice [kk][col]: a step of kk reads one
// row of each.
var<workgroup> a_tile: array<f32, {a_len}>;
var<workgroup> b_tile: array<f32, {b_len}>;

@compute @workgroup_size({wg})
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // y holds the row tile and how many times x's column tiles wrapped.
    let row0 = (wid.y % p.row_tiles) * BM;
    let col0 = (wid.x + (wid.y / p.row_tiles) * nwg.x) * BN;
    let tx = lid % TX;
    let ty = lid / TX;
    let k_begin = wid.z * p.k_chunk;
    let k_end = min(k_begin + p.k_chunk, p.k);
{accumulators}
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        for (var e = lid; e < BM * BK; e += WG) {
            let r = e / BK;
            let kk = e - r * BK;
            var v = 0.0;
            if (row0 + r < p.m && k0 + kk < k_end) { v = load_a(row0 + r, k0 + kk); }
            a_tile[kk * BM + r] = v;
        }
        for (var e = lid; e < BK * BN; e += WG) {
            let kk = e / BN;
            let c = e - kk * BN;
            var v = 0.0;
            if (col0 + c < p.n && k0 + kk < k_end) { v = load_b(k0 + kk, col0 + c); }
            b_tile[kk * BN + c] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
{products}
        }
        workgroupBarrier();
    }
{stores}
}
";

/// The WGSL of `kind` on `tile`: [`TILED_WGSL`] with the kind's operands.
fn generate(kind: TiledKind, t: Tile) -> String {
    let (tx, ty) = (t.bn / t.tn, t.bm / t.tm);
    let wg = tx * ty;
    let outputs = move || (0..t.tm).flat_map(move |i| (0..t.tn).map(move |j| (i, j)));
    let accumulators = lines(outputs().map(|(i, j)| format!("    var c{i}_{j} = 0.0;")));
    let products = lines(
        (0..t.tm)
            .map(|i| format!("            let a{i} = a_tile[kk * BM + ty + {}u];", i * ty))
            .chain(
                (0..t.tn)
                    .map(|j| format!("            let b{j} = b_tile[kk * BN + tx + {}u];", j * tx)),
            )
            .chain(
                outputs()
                    .map(|(i, j)| format!("            c{i}_{j} = fma(a{i}, b{j}, c{i}_{j});")),
            ),
    );
    let stores = lines(outputs().map(|(i, j)| {
        fill(
            "    if (row0 + ty + {r}u < p.m && col0 + tx + {c}u < p.n) { store(row0 + ty + {r}u, col0 + tx + {c}u, wid.z, c{i}_{j}); }",
            &[("r", &(i * ty)), ("c", &(j * tx)), ("i", &i), ("j", &j)],
        )
    }));
    fill(
        TILED_WGSL,
        &[
            ("kind", &kind_name(kind)),
            ("label", &t.label()),
            ("wg", &wg),
            ("operands", &operands(kind)),
            ("bm", &t.bm),
            ("bn", &t.bn),
            ("bk", &t.bk),
            ("tx", &tx),
            ("ty", &ty),
            ("a_len", &(t.bm * t.bk)),
            ("b_len", &(t.bk * t.bn)),
            ("accumulators", &accumulators),
            ("products", &products),
            ("stores", &stores),
        ],
    )
}

/// The call of `kind` on `tile` over `params`, split `splits` ways along `k`.
fn call(
    kind: TiledKind,
    tile: Tile,
    mut params: TiledParams,
    splits: u32,
    operands: Vec<Operand>,
) -> (KernelCall, Vec<Operand>) {
    params.k_chunk = params.k.div_ceil(splits.max(1)).max(1);
    let (col_tiles, row_tiles) = (
        params.n.div_ceil(tile.bn).max(1),
        params.m.div_ceil(tile.bm).max(1),
    );
    params.row_tiles = row_tiles;
    let x = col_tiles.min(crate::ir::MAX_WORKGROUPS_PER_DIM);
    let grid = [
        x,
        row_tiles * col_tiles.div_ceil(x),
        params.k.div_ceil(params.k_chunk).max(1),
    ];
    (
        KernelCall::grid(shader(kind, tile), "gemm", &params, grid).with_overrides(&[]),
        operands,
    )
}

/// A tiled plan per candidate tile for a product whose operands and output are `operands`
/// (bindings 1.. in order, output last), unsplit.
pub fn plans(
    caps: &DeviceCaps,
    kind: TiledKind,
    params: TiledParams,
    operands: &[Operand],
) -> Vec<KernelPlan> {
    if !caps.workgroup_tiles {
        return Vec::new();
    }
    candidates(params.m as usize, params.n as usize)
        .into_iter()
        .filter(|tile| fits_grid(&params, tile))
        .map(|tile| KernelPlan {
            variant: format!("tiled-{}", tile.label()),
            copies: Vec::new(),
            scratch: Vec::new(),
            calls: vec![call(kind, tile, params, 1, operands.to_vec())],
        })
        .collect()
}

/// The grid of `tile` stays within the per-dimension limit (column tiles folded into `y`).
fn fits_grid(params: &TiledParams, tile: &Tile) -> bool {
    let max = crate::ir::MAX_WORKGROUPS_PER_DIM;
    let folds = params.n.div_ceil(tile.bn).div_ceil(max).max(1);
    params.m.div_ceil(tile.bm).saturating_mul(folds) <= max
}

/// The convolution parameters of `g` for input `x`, weight `wt` and output `y` dims.
pub fn conv_params(g: Conv2dGeometry, x: [usize; 4], wt: [usize; 4], y: [usize; 4]) -> TiledParams {
    let u = |v: usize| v as u32;
    TiledParams {
        batch: u(x[0]),
        c_in: u(x[1]),
        h: u(x[2]),
        w: u(x[3]),
        c_out: u(wt[0]),
        kh: u(wt[2]),
        kw: u(wt[3]),
        oh: u(y[2]),
        ow: u(y[3]),
        stride: u(g.stride),
        pad: u(g.pad),
        dilation: u(g.dilation),
        ..TiledParams::default()
    }
}

/// Tiled plans of a convolution's forward (`x`, `w`, optional bias → `y`).
pub fn conv_forward_plans(
    caps: &DeviceCaps,
    g: Conv2dGeometry,
    (x, wt, y): ([usize; 4], [usize; 4], [usize; 4]),
    bias: bool,
    relu: bool,
) -> Vec<KernelPlan> {
    let mut params = conv_params(g, x, wt, y);
    params.m = wt[0] as u32;
    params.n = (x[0] * y[2] * y[3]) as u32;
    params.k = (wt[1] * wt[2] * wt[3]) as u32;
    params.relu = u32::from(relu);
    let mut operands = vec![Operand::Input(0), Operand::Input(1)];
    if bias {
        operands.push(Operand::Input(2));
    }
    operands.push(Operand::Output(0));
    plans(caps, TiledKind::ConvForward { bias }, params, &operands)
}

/// Tiled plans of a convolution's input gradient (`grad_y`, `w` → `grad_x`), any stride.
pub fn conv_backward_input_plans(
    caps: &DeviceCaps,
    g: Conv2dGeometry,
    (gy, wt, x): ([usize; 4], [usize; 4], [usize; 4]),
) -> Vec<KernelPlan> {
    let mut params = conv_params(g, x, wt, gy);
    params.m = wt[1] as u32;
    params.n = (x[0] * x[2] * x[3]) as u32;
    params.k = (wt[0] * wt[2] * wt[3]) as u32;
    let operands = [Operand::Input(0), Operand::Input(1), Operand::Output(0)];
    plans(caps, TiledKind::ConvBackwardInput, params, &operands)
}

/// Tiled plans of a convolution's weight gradient (`grad_y`, `x` → `grad_w`), `k` split so
/// the grid has about `target` workgroups, the partial sums reduced by `reduce_splits`.
/// `extra` runs after (the bias gradient's reduction, with its own scratch).
pub fn conv_backward_weight_plans(
    caps: &DeviceCaps,
    g: Conv2dGeometry,
    (gy, x, wt): ([usize; 4], [usize; 4], [usize; 4]),
    extra: Option<&KernelPlan>,
) -> Vec<KernelPlan> {
    if !caps.workgroup_tiles {
        return Vec::new();
    }
    let mut params = conv_params(g, x, wt, gy);
    params.m = wt[0] as u32;
    params.n = (wt[1] * wt[2] * wt[3]) as u32;
    params.k = (gy[0] * gy[2] * gy[3]) as u32;
    let (m, n) = (params.m as usize, params.n as usize);
    candidates(m, n)
        .into_iter()
        .filter(|tile| fits_grid(&params, tile))
        .map(|tile| {
            // About 256 workgroups (two per SM of a large GPU), each at least 4 slices deep.
            let tiles = m.div_ceil(tile.bm as usize) * n.div_ceil(tile.bn as usize);
            let max_splits = (params.k / (4 * tile.bk)).max(1);
            let splits = ((256 / tiles.max(1)) as u32).clamp(1, max_splits.min(64));
            let mut scratch = Vec::new();
            let mut calls = Vec::new();
            if splits > 1 {
                scratch.push(ScratchSpec::Buffer {
                    bytes: u64::from(splits) * (m * n * 4) as u64,
                });
                let part = Operand::Scratch(0);
                let operands = vec![Operand::Input(0), Operand::Input(1), part];
                calls.push(call(
                    TiledKind::ConvBackwardWeight,
                    tile,
                    params,
                    splits,
                    operands,
                ));
                // The grid's z is the actual number of chunks.
                let chunks = params.k.div_ceil(params.k.div_ceil(splits));
                calls.push(reduce_call(m * n, chunks, part, Operand::Output(0)));
            } else {
                let operands = vec![Operand::Input(0), Operand::Input(1), Operand::Output(0)];
                calls.push(call(
                    TiledKind::ConvBackwardWeight,
                    tile,
                    params,
                    1,
                    operands,
                ));
            }
            let mut plan = KernelPlan {
                variant: format!("tiled-{}", tile.label()),
                copies: Vec::new(),
                scratch,
                calls,
            };
            if let Some(extra) = extra {
                plan.append(extra);
            }
            plan
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_divide_into_their_register_blocks() {
        for t in TILES {
            assert_eq!(t.bm % t.tm, 0, "{}", t.label());
            assert_eq!(t.bn % t.tn, 0, "{}", t.label());
            assert!(t.invocations() <= 256, "{}", t.label());
            assert!(t.invocations().is_power_of_two(), "{}", t.label());
            // Workgroup memory within WebGPU's default 16 KiB.
            assert!((t.bm + t.bn) * t.bk * 4 <= 16384, "{}", t.label());
        }
    }

    #[test]
    fn every_product_gets_a_candidate_and_small_ones_no_huge_tiles() {
        for (m, n) in [
            (1, 1),
            (6, 50_000),
            (64, 64),
            (1024, 1024),
            (4096, 4096),
            (10, 3),
        ] {
            let c = candidates(m, n);
            assert!(!c.is_empty(), "{m}x{n}");
            if m <= 16 {
                assert!(c.iter().all(|t| t.bm <= 16), "{m}x{n}: {c:?}");
            }
        }
    }

    #[test]
    fn wide_grids_fold_their_column_tiles_into_y_covering_each_tile_once() {
        // 3 row tiles × 70,000 column tiles: more than one dimension holds.
        let tile = TILES[0];
        let params = TiledParams {
            m: 3 * tile.bm - 5,
            n: 70_000 * tile.bn - 7,
            k: 16,
            ..Default::default()
        };
        assert!(fits_grid(&params, &tile));
        let (kc, _) = call(TiledKind::Matmul { bias: false }, tile, params, 1, vec![]);
        let [x, y, z] = kc.workgroups;
        assert!(x <= crate::ir::MAX_WORKGROUPS_PER_DIM && y <= crate::ir::MAX_WORKGROUPS_PER_DIM);
        assert_eq!(z, 1);
        let p: TiledParams = bytemuck::pod_read_unaligned(&kc.params);
        // The shader's mapping: row tile wid.y % row_tiles, column tile wid.x + (wid.y /
        // row_tiles)·nwg.x; tiles past the product do nothing.
        let mut seen = vec![0u8; 3 * 70_000];
        for wy in 0..y {
            for wx in 0..x {
                let (r, c) = (wy % p.row_tiles, wx + (wy / p.row_tiles) * x);
                if c < 70_000 {
                    seen[(r * 70_000 + c) as usize] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
    }

    #[test]
    fn no_tiled_plans_without_workgroup_tiles() {
        let caps = DeviceCaps {
            subgroups: Some(crate::ir::SubgroupShare::Blocks),
            max_texture_dim: 16384,
            workgroup_tiles: false,
        };
        let params = TiledParams {
            m: 64,
            n: 64,
            k: 64,
            ..Default::default()
        };
        assert!(plans(
            &caps,
            TiledKind::Matmul { bias: false },
            params,
            &[Operand::Input(0)]
        )
        .is_empty());
    }
}
