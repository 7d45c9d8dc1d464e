//! The texture GEMM path: `C = A · B` with both operands packed into `rgba32float` textures.
//!
//! Why textures: on llvmpipe (lavapipe) a storage-buffer load whose address differs per
//! invocation becomes a loop over the 8 SIMD lanes with a branch and a bounds check per lane
//! (about 20 cycles per float), while a texel load is a vectorised gather (8 × 128-bit loads
//! and a transpose for 32 floats). Measured on SGEMM 1024: 2.2 GFLOP/s from buffers, 20 from
//! textures, 30 with the row operand shared through subgroup broadcasts (BENCHMARKS.md). The
//! textures are read as read-only storage textures: llvmpipe compiles a sampled `rgba32float`
//! fetch into a function call that spills every live register (KERNELS.md).
//!
//! Every GEMM-shaped op runs as: pack kernels (`shaders/pack.wgsl`) write the operands into
//! scratch textures, with any transpose, im2col window or kernel flip folded into the packing;
//! one generated GEMM kernel reads them and writes the result (plus an optional bias) through a
//! strided epilogue, so a convolution's `[c_out, n·oh·ow]` product lands in NCHW directly.
//!
//! Texture layout, shared by the pack and GEMM kernels: a logical row `r` of `t` texels (4
//! floats each) occupies `lines = ⌈t / 4096⌉` texture lines; texel `i` of row `r` sits at
//! `(i mod 4096, r·lines + i / 4096)`. Rows and texels past the logical size are zero.
//!
//! The GEMM kernels are generated (one WGSL source per tile shape) rather than written with
//! loops over private arrays: Mesa's NIR does not unroll the nested tile loops, and an array
//! indexed in a loop lives in memory with per-lane access (1.8 GFLOP/s against 7.6 for the
//! same tile with named registers).

use crate::ir::SubgroupShare;
use crate::kernels::{fill, lines};

use bytemuck::{Pod, Zeroable};

pub use crate::ir::{texture_dims, LINE_TEXELS};
use crate::ir::{
    DeviceCaps, KernelCall, KernelPlan, Operand, ScratchSpec, Shader, TextureCopy, DIV_WGSL,
};

const LINE_SHIFT: u32 = 12;

const XYZW: [&str; 4] = ["x", "y", "z", "w"];

/// `shaders/pack.wgsl`.
pub static PACK_SHADER: Shader = Shader::new(
    "pack",
    concat!(
        include_str!("../../shaders/pack.wgsl"),
        include_str!("../../shaders/div.wgsl")
    ),
    size_of::<PackParams>(),
);

/// Mirrors `struct Params` in `shaders/pack.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PackParams {
    /// Logical rows and columns of the packed matrix.
    pub rows: u32,
    /// Columns (floats) per row.
    pub cols: u32,
    /// Rows written (the tail past `rows` is zero).
    pub rows_pad: u32,
    /// Texels per row, `⌈cols / 4⌉`.
    pub texels: u32,
    /// Texture lines per row.
    pub lines: u32,
    /// `pack_matrix`: columns per batch block; `pack_im2col`: images.
    pub inner: u32,
    /// `pack_matrix`: element offset; `pack_im2col`: channels.
    pub off: i32,
    /// `pack_matrix`: row stride; `pack_im2col`: input height.
    pub sr: i32,
    /// `pack_matrix`: stride between batch blocks; `pack_im2col`: input width.
    pub sb: i32,
    /// `pack_matrix`: column stride; `pack_im2col`: kernel height.
    pub sc: i32,
    /// `pack_im2col`: kernel width, output height and width, stride, dilation, padding.
    pub kw: i32,
    /// Output height.
    pub oh: i32,
    /// Output width.
    pub ow: i32,
    /// Stride.
    pub stride: i32,
    /// Dilation.
    pub dilation: i32,
    /// Padding (may be larger than the forward padding for a transposed convolution).
    pub pad: i32,
}

/// Workgroup size of the pack kernels.
const PACK_WG: u32 = 64;

/// A pack kernel's grid: `x` over texels, `y` over rows.
fn pack_call(entry: &'static str, params: &PackParams) -> KernelCall {
    let grid = [params.texels.div_ceil(PACK_WG), params.rows_pad.max(1), 1];
    KernelCall::grid(&PACK_SHADER, entry, params, grid)
        .with_overrides(&[("WG", f64::from(PACK_WG))])
}

/// A matrix pack's grid: one flat index over rows and texels. The shader splits it with `div`,
/// exact here because the quotient (the row) is below the texture height limit (2^14 to 2^15),
/// far under the 2^22 where an f32 quotient could be off by more than the one it corrects.
fn flat_pack_call(entry: &'static str, params: &PackParams) -> KernelCall {
    let texels = params.texels as usize * params.rows_pad.max(1) as usize;
    KernelCall::per_element_wg(&PACK_SHADER, entry, params, texels, PACK_WG)
}

/// A strided view of a matrix to pack: `X(r, c) = src[off + r·sr + (c / inner)·sb + (c % inner)·sc]`.
#[derive(Clone, Copy, Debug)]
pub struct MatrixView {
    /// Logical rows.
    pub rows: usize,
    /// Logical columns.
    pub cols: usize,
    /// Rows to write, `>= rows` (the tail is zero).
    pub rows_pad: usize,
    /// Element offset.
    pub off: isize,
    /// Row stride.
    pub sr: isize,
    /// Columns per batch block (`usize::MAX`-like large value for a plain matrix).
    pub inner: usize,
    /// Stride between batch blocks.
    pub sb: isize,
    /// Column stride.
    pub sc: isize,
}

impl MatrixView {
    /// A plain strided matrix.
    pub fn strided(rows: usize, cols: usize, sr: usize, sc: usize) -> Self {
        MatrixView {
            rows,
            cols,
            rows_pad: rows,
            off: 0,
            sr: sr as isize,
            inner: cols.max(1),
            sb: 0,
            sc: sc as isize,
        }
    }

    /// The pack call: source at binding 1, texture at binding 2.
    pub fn pack(&self, src: Operand, dst: Operand) -> (KernelCall, Vec<Operand>) {
        (
            flat_pack_call("pack_matrix", &self.params()),
            vec![src, dst],
        )
    }

    /// The pack call of `src` where `mask` (same layout) is positive, zero elsewhere: a ReLU's
    /// backward folded into the pack of its gradient (`mask` = the ReLU's output).
    pub fn pack_masked(
        &self,
        src: Operand,
        mask: Operand,
        dst: Operand,
    ) -> (KernelCall, Vec<Operand>) {
        (
            flat_pack_call("pack_matrix_masked", &self.params()),
            vec![src, mask, dst],
        )
    }

    fn params(&self) -> PackParams {
        let (_, _, lines) = texture_dims(self.rows_pad, self.cols);
        let texels = (self.cols as u32).div_ceil(4).max(1);
        let i = |v: isize| v as i32;
        PackParams {
            rows: self.rows as u32,
            cols: self.cols as u32,
            rows_pad: self.rows_pad as u32,
            texels,
            lines,
            inner: self.inner as u32,
            off: i(self.off),
            sr: i(self.sr),
            sb: i(self.sb),
            sc: i(self.sc),
            ..PackParams::default()
        }
    }
}

/// Convolution windows to pack as an im2col matrix: row `(c, ky, kx)`, column `(n, oy, ox)`.
#[derive(Clone, Copy, Debug)]
pub struct Im2col {
    /// Input `[n, c, h, w]`.
    pub input: [usize; 4],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Output height and width.
    pub out: [usize; 2],
    /// Stride, dilation and padding (both axes).
    pub stride: usize,
    /// Tap spacing.
    pub dilation: usize,
    /// Zero padding.
    pub pad: usize,
}

impl Im2col {
    /// Rows of the packed matrix: `c·kh·kw`.
    pub fn rows(&self) -> usize {
        self.input[1] * self.kernel[0] * self.kernel[1]
    }

    /// Columns: `n·oh·ow`.
    pub fn cols(&self) -> usize {
        self.input[0] * self.out[0] * self.out[1]
    }

    /// The pack call: source at binding 1, texture at binding 2; `rows_pad` rows are written.
    pub fn pack(&self, rows_pad: usize, src: Operand, dst: Operand) -> (KernelCall, Vec<Operand>) {
        let (_, _, lines) = texture_dims(rows_pad, self.cols());
        let texels = (self.cols() as u32).div_ceil(4).max(1);
        let i = |v: usize| v as i32;
        let params = PackParams {
            rows: self.rows() as u32,
            cols: self.cols() as u32,
            rows_pad: rows_pad as u32,
            texels,
            lines,
            inner: self.input[0] as u32,
            off: i(self.input[1]),
            sr: i(self.input[2]),
            sb: i(self.input[3]),
            sc: i(self.kernel[0]),
            kw: i(self.kernel[1]),
            oh: i(self.out[0]),
            ow: i(self.out[1]),
            stride: i(self.stride),
            dilation: i(self.dilation),
            pad: i(self.pad),
        };
        (pack_call("pack_im2col", &params), vec![src, dst])
    }
}

/// `shaders/im2col.wgsl`.
pub static IM2COL_SHADER: Shader = Shader::new(
    "im2col",
    concat!(
        include_str!("../../shaders/im2col.wgsl"),
        include_str!("../../shaders/div.wgsl")
    ),
    size_of::<PackParams>(),
);

impl Im2col {
    /// The scratch texture `pack_tex` stages the input in: rows `(n, c, y)` of `⌈w / 4⌉`
    /// texels, a power of two of them per line. `None` when it would not fit.
    pub fn source_texture(&self, max_dim: u32) -> Option<ScratchSpec> {
        let (rows, texels, per_line) = self.source_layout();
        let width = per_line.min(rows) * texels;
        let height = rows.div_ceil(per_line);
        (width <= max_dim && height <= max_dim && height <= crate::ir::MAX_WORKGROUPS_PER_DIM)
            .then_some(ScratchSpec::Texture { width, height })
    }

    /// (rows, texels per row, rows per line) of the staged input.
    fn source_layout(&self) -> (u32, u32, u32) {
        let [n, c, h, w] = self.input;
        let texels = (w as u32).div_ceil(4);
        let per_line = if texels > LINE_TEXELS {
            1
        } else {
            1 << (LINE_TEXELS / texels).ilog2()
        };
        ((n * c * h) as u32, texels, per_line)
    }

    /// Two calls: stage the input (binding 1 of the first) in `staging`, a scratch texture of
    /// [`Im2col::source_texture`], then write the im2col matrix (`rows_pad` rows) to `dst`.
    pub fn pack_tex(
        &self,
        rows_pad: usize,
        src: Operand,
        staging: Operand,
        dst: Operand,
    ) -> [(KernelCall, Vec<Operand>); 2] {
        let (rows, texels, per_line) = self.source_layout();
        let stage = PackParams {
            rows,
            cols: self.input[3] as u32,
            rows_pad: rows,
            texels,
            inner: per_line,
            ..PackParams::default()
        };
        let grid = [
            (per_line.min(rows) * texels).div_ceil(PACK_WG),
            rows.div_ceil(per_line),
            1,
        ];
        let stage_call = KernelCall::grid(&PACK_SHADER, "pack_wrapped", &stage, grid)
            .with_overrides(&[("WG", f64::from(PACK_WG))]);
        let (mut call, _) = self.pack(rows_pad, src, dst);
        let mut params: PackParams = *bytemuck::from_bytes(&call.params);
        params.inner = (per_line << 16) | texels;
        call.params = bytemuck::bytes_of(&params).to_vec();
        call.shader = &IM2COL_SHADER;
        call.entry = "pack_im2col_tex";
        [(stage_call, vec![src, staging]), (call, vec![staging, dst])]
    }
}

/// Mirrors `struct Params` of the generated GEMM kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GemmParams {
    /// Rows of C.
    pub m: u32,
    /// Columns of C.
    pub n: u32,
    /// Texels along k.
    pub k4: u32,
    /// Texture lines per row of A.
    pub a_lines: u32,
    /// Texture lines per row of B.
    pub b_lines: u32,
    /// Epilogue: element `(row, col)` goes to `(col / inner)·batch_stride + row·row_stride + col % inner`.
    pub inner: u32,
    /// See `inner`.
    pub batch_stride: u32,
    /// See `inner`.
    pub row_stride: u32,
    /// Dot form: texels of k per split.
    pub k_chunk: u32,
    /// 1 to apply ReLU in the epilogue.
    pub relu: u32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 2],
}

/// Which product a generated kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmForm {
    /// `C[m, n] = Σ_k A[m, k]·B[k, n]`; A packed with rows m (texels along k), B with rows k
    /// (texels along n). Each invocation owns `j` texels of columns.
    Outer,
    /// `C[m, n] = Σ_k A[m, k]·B[n, k]`; both packed along k. Each invocation owns `j` rows of
    /// B; the k range may be split across `grid.z`, partial sums going to a scratch buffer.
    Dot,
}

/// One tile configuration: the autotuner's unit of choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmTile {
    /// Product form.
    pub form: GemmForm,
    /// Rows of C per subgroup of 8 lanes is `8·ra`.
    pub ra: u32,
    /// Column texels (outer) or B rows (dot) per lane.
    pub j: u32,
    /// Subgroups of the workgroup stacked along rows.
    pub wg_rows: u32,
    /// Subgroups of the workgroup side by side along columns (`wg_rows·wg_cols ≤ 8`; small
    /// products get small workgroups so that no lane computes columns past the product).
    pub wg_cols: u32,
    /// Share the row operand through subgroup operations: each lane of a block of 8 loads
    /// `ra` rows and the block reads them from it (absent: every lane loads every row).
    pub subgroups: Option<SubgroupShare>,
    /// Add a per-row bias in the epilogue (binding 3).
    pub bias: bool,
    /// Outer form: also write the row sums of A (the binding after `c`), e.g. a linear layer's
    /// bias gradient beside its weight gradient, from the row operand already loaded.
    pub row_sums: bool,
}

impl GemmTile {
    /// Rows of C one workgroup covers.
    pub fn wg_tile_rows(&self) -> u32 {
        8 * self.ra * self.wg_rows
    }

    /// Columns of C (outer) or rows of B (dot) one workgroup covers.
    pub fn wg_tile_cols(&self) -> u32 {
        let lanes_cols = 8 * self.j * self.wg_cols;
        match self.form {
            GemmForm::Outer => 4 * lanes_cols,
            GemmForm::Dot => lanes_cols,
        }
    }

    /// Short label, e.g. `outer-r16j4w1x8-sg`: rows per subgroup, texels per lane, workgroup
    /// subgroups along rows x columns.
    pub fn label(&self) -> String {
        format!(
            "{}-r{}j{}w{}x{}{}",
            match self.form {
                GemmForm::Outer => "outer",
                GemmForm::Dot => "dot",
            },
            8 * self.ra,
            self.j,
            self.wg_rows,
            self.wg_cols,
            SubgroupShare::suffix(self.subgroups)
        )
    }

    /// The generated shader for this tile (made once, then shared).
    pub fn shader(&self) -> &'static Shader {
        let name = format!(
            "gemm-{}{}{}",
            self.label(),
            if self.bias { "-bias" } else { "" },
            if self.row_sums { "-rowsums" } else { "" }
        );
        crate::ir::generated_shader(name, size_of::<GemmParams>(), || generate(self))
    }

    /// The GEMM call over packed textures `a`, `b` (bindings 1, 2), optional `bias` (3) and
    /// output `c` (last). For the dot form with `splits > 1`, `c` must be a scratch buffer of
    /// `splits·m·n` floats that `reduce_splits` then sums.
    pub fn call(
        &self,
        params: GemmParams,
        splits: u32,
        operands: Vec<Operand>,
    ) -> (KernelCall, Vec<Operand>) {
        let grid = [
            params.n.div_ceil(self.wg_tile_cols()).max(1),
            params.m.div_ceil(self.wg_tile_rows()).max(1),
            splits.max(1),
        ];
        (
            KernelCall::grid(self.shader(), "gemm", &params, grid).with_overrides(&[]),
            operands,
        )
    }
}

/// The candidate tiles for an `m x n` product, best first by a static guess (the autotuner
/// times them on the adapter).
///
/// Each (rows, texels) shape gets the workgroup layout that fits the product: up to 8 subgroups,
/// stacked along rows and columns only as far as the product reaches, so a 64 x 120 linear layer
/// is not computed as 64 x 1024 with most columns thrown away.
pub fn candidates(
    form: GemmForm,
    m: usize,
    n: usize,
    subgroups: Option<SubgroupShare>,
    bias: bool,
) -> Vec<GemmTile> {
    let mut res = Vec::new();
    let shapes: &[(u32, u32)] = match form {
        // (ra, j)
        GemmForm::Outer => &[(2, 4), (2, 2), (1, 4), (1, 2), (2, 1), (1, 1)],
        GemmForm::Dot => &[(2, 4), (1, 4), (2, 2), (1, 8), (1, 2)],
    };
    for &(ra, j) in shapes {
        let sub_rows = 8 * ra as usize;
        let sub_cols = match form {
            GemmForm::Outer => 32 * j as usize,
            GemmForm::Dot => 8 * j as usize,
        };
        // No point in subgroup tiles far taller or wider than the product, unless nothing fits.
        if sub_rows > m.next_power_of_two().max(8) || (j > 1 && sub_cols > n.next_power_of_two()) {
            continue;
        }
        // Subgroup tiles along rows and columns (powers of two), and subgroups per workgroup:
        // up to 8, but few enough for at least 4 workgroups where the product has the tiles,
        // since each workgroup runs on one CPU thread under lavapipe (one workgroup for
        // LeNet-5's fc1 left the second core idle).
        let (tr, tc) = (
            m.div_ceil(sub_rows).next_power_of_two(),
            n.div_ceil(sub_cols).next_power_of_two(),
        );
        let per_wg = (tr * tc / 4).clamp(1, 8);
        let wg_cols = tc.min(per_wg) as u32;
        let wg_rows = tr.min(per_wg / wg_cols as usize).max(1) as u32;
        let mut layouts = vec![(wg_rows, wg_cols)];
        // The tall layout large products used before fitting, for the autotuner to compare.
        if wg_rows == 1 && wg_cols == 8 && ra == 1 && j == 2 {
            layouts.push((2, 4));
        }
        for (wg_rows, wg_cols) in layouts {
            // The subgroup tile where the adapter has subgroups, and the plain one.
            for sg in subgroups.map(Some).into_iter().chain([None]) {
                res.push(GemmTile {
                    form,
                    ra,
                    j,
                    wg_rows,
                    wg_cols,
                    subgroups: sg,
                    bias,
                    row_sums: false,
                });
            }
        }
    }
    if res.is_empty() {
        res.push(GemmTile {
            form,
            ra: 1,
            j: 1,
            wg_rows: 1,
            wg_cols: 1,
            subgroups,
            bias,
            row_sums: false,
        });
    }
    res
}

/// The outer-form plans of `C[m, n] = A·B`, one per candidate tile, with A and B packed by
/// `packs` into scratch textures 0 and 1; `params` sets the output layout (and ReLU), the
/// tile options add a row bias or A's row sums; `operands` follow the two textures.
pub fn packed_outer_plans(
    caps: &DeviceCaps,
    [m, k, n]: [usize; 3],
    packs: &[(KernelCall, Vec<Operand>)],
    params: GemmParams,
    (bias, row_sums): (bool, bool),
    operands: &[Operand],
) -> Vec<KernelPlan> {
    let k_pad = k.div_ceil(4) * 4;
    if !caps.fits(m, k) || !caps.fits(k_pad, n) {
        return Vec::new();
    }
    let (aw, ah, a_lines) = texture_dims(m, k);
    let (bw, bh, b_lines) = texture_dims(k_pad, n);
    let params = GemmParams {
        m: m as u32,
        n: n as u32,
        k4: (k_pad / 4) as u32,
        a_lines,
        b_lines,
        ..params
    };
    candidates(GemmForm::Outer, m, n, caps.subgroups, bias)
        .into_iter()
        .map(|tile| {
            let tile = GemmTile { row_sums, ..tile };
            let mut calls = packs.to_vec();
            let ops = [Operand::Scratch(0), Operand::Scratch(1)]
                .into_iter()
                .chain(operands.iter().copied())
                .collect();
            calls.push(tile.call(params, 1, ops));
            KernelPlan {
                copies: Vec::new(),
                variant: format!("tex-{}", tile.label()),
                scratch: vec![
                    ScratchSpec::Texture {
                        width: aw,
                        height: ah,
                    },
                    ScratchSpec::Texture {
                        width: bw,
                        height: bh,
                    },
                ],
                calls,
            }
        })
        .collect()
}

/// `plan` with the pack calls at `replaced` (indices into its calls) done by `copies` instead:
/// variant `copy-<variant>`. `None` without copies.
pub fn with_copies(
    plan: &KernelPlan,
    replaced: &[usize],
    copies: Vec<TextureCopy>,
) -> Option<KernelPlan> {
    (!copies.is_empty()).then(|| KernelPlan {
        variant: format!("copy-{}", plan.variant),
        calls: plan
            .calls
            .iter()
            .enumerate()
            .filter(|(i, _)| !replaced.contains(i))
            .map(|(_, c)| c.clone())
            .collect(),
        copies,
        scratch: plan.scratch.clone(),
    })
}

/// Every tile `candidates` can return, for shader validation.
pub fn all_tiles() -> Vec<GemmTile> {
    let mut res = Vec::new();
    for form in [GemmForm::Outer, GemmForm::Dot] {
        for bias in [false, true] {
            if bias && form == GemmForm::Dot {
                continue;
            }
            // `candidates` sees m and n only through their next powers of two.
            for m in (0..=20).map(|e| 1usize << e) {
                for n in (0..=20).map(|e| 1usize << e) {
                    let shares = [SubgroupShare::Whole, SubgroupShare::Blocks];
                    let tiles = shares
                        .into_iter()
                        .flat_map(|share| candidates(form, m, n, Some(share), bias));
                    for tile in tiles {
                        let sums = (form == GemmForm::Outer && !bias).then_some(GemmTile {
                            row_sums: true,
                            ..tile
                        });
                        for tile in [Some(tile), sums].into_iter().flatten() {
                            if !res.contains(&tile) {
                                res.push(tile);
                            }
                        }
                    }
                }
            }
        }
    }
    res
}

/// The GEMM kernel of every tile; the holes are what the tile changes: its constants, its
/// bindings, and the unrolled register code (accumulators, row operand, products, epilogue).
const GEMM_WGSL: &str = r"// Generated by src/kernels/gemm.rs: {label} tile, {r_rows} rows x {j} per subgroup of 8 lanes.
struct Params { m: u32, n: u32, k4: u32, a_lines: u32, b_lines: u32, inner: u32, batch_stride: u32, row_stride: u32, k_chunk: u32, relu: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var a: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var b: texture_storage_2d<rgba32float, read>;
{outputs}
fn at(row: u32, t: u32, lines: u32) -> vec2<u32> { return vec2<u32>(t & {line_mask}u, row * lines + (t >> {line_shift}u)); }
{div}
{entry}
  let lane = lid.x;
  let row0 = (wg.y * {wg_rows}u + lid.y / {wg_cols}u) * {r_rows}u;
  let col0 = (wg.x * {wg_cols}u + lid.y % {wg_cols}u) * {col_step}u + lane;
{accumulators}
  let last_row = max(p.m, 1u) - 1u;
  for (var kq = {kbegin}; kq < {kend}; kq++) {
{row_operand}
{row_sums}
{products}
  }
{epilogue}
}
fn put(row: u32, col: u32, v: f32) {
  if (col >= p.n) { return; }
  var x = v;
  if (p.relu != 0u) { x = max(x, 0.0); }
  let blk = div(col, p.inner);
  c[blk * p.batch_stride + row * p.row_stride + col - blk * p.inner] = x;
}
{put_split}";

/// The dot form's store of one partial sum (split `z` of k).
const PUT_SPLIT_WGSL: &str = r"fn put_split(z: u32, row: u32, col: u32, v: f32) {
  if (col >= p.n) { return; }
  c[z * p.m * p.n + row * p.n + col] = v;
}
";

/// The outer form's store of row `r` of the subgroup tile.
const OUTER_ROW_WGSL: &str = r"  if (row0 + {r}u < p.m) {
    let row = row0 + {r}u;
{bias}
{puts}
  }";

/// WGSL for one tile: the texture GEMM kernel `gemm` of [`GEMM_WGSL`], its register code
/// unrolled for the tile's rows and texels.
fn generate(t: &GemmTile) -> String {
    let r_rows = 8 * t.ra;
    let rows = 0..r_rows;
    let wg_cols = t.wg_cols;
    let row_sums = t.row_sums && t.form == GemmForm::Outer;
    let outputs = lines([
        if t.bias {
            "@group(0) @binding(3) var<storage, read> bias: array<f32>;\n\
             @group(0) @binding(4) var<storage, read_write> c: array<f32>;"
                .to_string()
        } else {
            "@group(0) @binding(3) var<storage, read_write> c: array<f32>;".to_string()
        },
        if row_sums {
            format!(
                "@group(0) @binding({}) var<storage, read_write> rs: array<f32>;",
                4 + u32::from(t.bias)
            )
        } else {
            String::new()
        },
    ]);
    let accumulators = lines(rows.clone().flat_map(|r| {
        (0..t.j)
            .map(move |j| format!("  var acc{r}_{j} = vec4<f32>();"))
            .chain(row_sums.then(|| format!("  var rsum{r} = vec4<f32>();")))
    }));
    let (kbegin, kend) = match t.form {
        GemmForm::Outer => ("0u", "p.k4"),
        GemmForm::Dot => ("wg.z * p.k_chunk", "min(p.k4, (wg.z + 1u) * p.k_chunk)"),
    };
    // The row operand: loaded once per lane and broadcast, or loaded by every lane.
    let row_operand = match t.subgroups {
        Some(share) => lines(
            (0..t.ra)
                .map(|q| {
                    format!(
                        "    let al{q} = textureLoad(a, at(min(row0 + {}u + lane, last_row), kq, p.a_lines));",
                        8 * q
                    )
                })
                .chain(rows.clone().map(|r| {
                    let v = share.broadcast(&format!("al{}", r / 8), r % 8);
                    format!("    let a{r} = {v};")
                })),
        ),
        None => lines(rows.clone().map(|r| {
            format!("    let a{r} = textureLoad(a, at(min(row0 + {r}u, last_row), kq, p.a_lines));")
        })),
    };
    let row_sum_adds = match row_sums {
        true => lines(rows.clone().map(|r| format!("    rsum{r} += a{r};"))),
        false => String::new(),
    };
    let products = match t.form {
        GemmForm::Outer => lines((0..4).flat_map(|kk| {
            let comp = XYZW[kk as usize];
            let rows = rows.clone();
            (0..t.j).map(move |j| {
                let b = format!(
                    "    let b{kk}_{j} = textureLoad(b, at(kq * 4u + {kk}u, col0 + {}u, p.b_lines));",
                    8 * j
                );
                let fmas = rows.clone().map(|r| {
                    format!("    acc{r}_{j} = fma(vec4<f32>(a{r}.{comp}), b{kk}_{j}, acc{r}_{j});")
                });
                lines([b].into_iter().chain(fmas))
            })
        })),
        GemmForm::Dot => lines(
            ["    let last_col = max(p.n, 1u) - 1u;".to_string()]
                .into_iter()
                .chain((0..t.j).map(|j| {
                    let b = format!(
                        "    let b{j} = textureLoad(b, at(min(col0 + {}u, last_col), kq, p.b_lines));",
                        8 * j
                    );
                    let fmas = rows
                        .clone()
                        .map(|r| format!("    acc{r}_{j} = fma(a{r}, b{j}, acc{r}_{j});"));
                    lines([b].into_iter().chain(fmas))
                })),
        ),
    };
    let put_split = if t.form == GemmForm::Dot {
        PUT_SPLIT_WGSL
    } else {
        ""
    };
    fill(
        GEMM_WGSL,
        &[
            ("label", &t.label()),
            ("r_rows", &r_rows),
            ("j", &t.j),
            ("outputs", &outputs),
            ("line_mask", &(LINE_TEXELS - 1)),
            ("line_shift", &LINE_SHIFT),
            ("div", &DIV_WGSL),
            (
                "entry",
                &SubgroupShare::entry_point(t.subgroups, "gemm", t.wg_rows * t.wg_cols),
            ),
            ("wg_rows", &t.wg_rows),
            ("wg_cols", &wg_cols),
            ("col_step", &(8 * t.j)),
            ("accumulators", &accumulators),
            ("kbegin", &kbegin),
            ("kend", &kend),
            ("row_operand", &row_operand),
            ("row_sums", &row_sum_adds),
            ("products", &products),
            ("epilogue", &epilogue(t)),
            ("put_split", &put_split),
        ],
    )
}

/// The stores after the k loop: A's row sums (with `row_sums`), then the tile's results.
fn epilogue(t: &GemmTile) -> String {
    let r_rows = 8 * t.ra;
    let rows = 0..r_rows;
    let wg_cols = t.wg_cols;
    let row_sums = t.row_sums && t.form == GemmForm::Outer;
    // Every lane holds every row's A; lane 0 of the first column block writes the sums.
    let row_sums_out = match row_sums {
        true => fill(
            "  if (wg.x == 0u && lid.y % {wg_cols}u == 0u && lane == 0u) {\n{sums}\n  }",
            &[
                ("wg_cols", &wg_cols),
                (
                    "sums",
                    &lines(rows.clone().map(|r| {
                        fill(
                            "    if (row0 + {r}u < p.m) { rs[row0 + {r}u] = dot(rsum{r}, vec4<f32>(1.0)); }",
                            &[("r", &r)],
                        )
                    })),
                ),
            ],
        ),
        false => String::new(),
    };
    let epilogue = match t.form {
        GemmForm::Outer => lines(rows.clone().map(|r| {
            let puts = (0..t.j).flat_map(|j| {
                XYZW.iter().enumerate().map(move |(ci, comp)| {
                    let bias = if t.bias { " + bv" } else { "" };
                    format!(
                        "    put(row, (col0 + {}u) * 4u + {ci}u, acc{r}_{j}.{comp}{bias});",
                        8 * j
                    )
                })
            });
            let bias = if t.bias { "    let bv = bias[row];" } else { "" };
            fill(
                OUTER_ROW_WGSL,
                &[("r", &r), ("bias", &bias), ("puts", &lines(puts))],
            )
        })),
        GemmForm::Dot => lines(rows.clone().map(|r| {
            let puts = (0..t.j).map(|j| {
                format!(
                    "    put_split(wg.z, row0 + {r}u, col0 + {}u, dot(acc{r}_{j}, vec4<f32>(1.0)));",
                    8 * j
                )
            });
            fill(
                "  if (row0 + {r}u < p.m) {\n{puts}\n  }",
                &[("r", &r), ("puts", &lines(puts))],
            )
        })),
    };
    lines([row_sums_out, epilogue])
}

/// `shaders/reduce_splits.wgsl`.
pub static REDUCE_SHADER: Shader = Shader::new(
    "reduce_splits",
    include_str!("../../shaders/reduce_splits.wgsl"),
    size_of::<ReduceParams>(),
);

/// Mirrors `struct Params` in `shaders/reduce_splits.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ReduceParams {
    /// Elements of the result.
    pub len: u32,
    /// Partial sums per element.
    pub splits: u32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 2],
}

/// Sums `splits` partial results of `len` floats (binding 1) into `out` (binding 2).
pub fn reduce_call(
    len: usize,
    splits: u32,
    part: Operand,
    out: Operand,
) -> (KernelCall, Vec<Operand>) {
    let params = ReduceParams {
        len: len as u32,
        splits,
        _pad: [0; 2],
    };
    (
        KernelCall::per_element(&REDUCE_SHADER, "reduce_splits", &params, len),
        vec![part, out],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_tiles_holds_every_candidate_of_any_size() {
        let all = all_tiles();
        for m in (1..300).step_by(7).chain([1000, 4097]) {
            for n in (1..300).step_by(5).chain([1024, 3136]) {
                for form in [GemmForm::Outer, GemmForm::Dot] {
                    for share in [SubgroupShare::Whole, SubgroupShare::Blocks] {
                        let bias = form == GemmForm::Outer;
                        for tile in candidates(form, m, n, Some(share), bias) {
                            assert!(all.contains(&tile), "{m}x{n}: {} missing", tile.label());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn small_products_still_spread_over_workgroups() {
        // LeNet-5's fc1 forward (yᵀ = w·xᵀ: 120 x 64) and its input gradient (64 x 400): each
        // workgroup runs on one thread under lavapipe, so no candidate may leave one workgroup.
        for (m, n) in [(120, 64), (64, 400), (84, 64)] {
            for tile in candidates(GemmForm::Outer, m, n, Some(SubgroupShare::Whole), false) {
                let groups = m.div_ceil(tile.wg_tile_rows() as usize)
                    * n.div_ceil(tile.wg_tile_cols() as usize);
                assert!(groups >= 2, "{m}x{n}: {} gives {groups}", tile.label());
            }
        }
    }

    #[test]
    fn small_products_get_workgroups_that_fit() {
        // fc1 of LeNet-5 at batch 64: 64 x 120. Every candidate's workgroup tile stays within
        // twice the product along each side.
        for tile in candidates(GemmForm::Outer, 64, 120, Some(SubgroupShare::Whole), false) {
            assert!(tile.wg_tile_rows() <= 128, "{}", tile.label());
            assert!(tile.wg_tile_cols() <= 256, "{}", tile.label());
        }
    }
}
