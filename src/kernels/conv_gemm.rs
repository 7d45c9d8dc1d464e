//! Implicit-GEMM convolutions (stride 1, dilation 1): no im2col matrix is ever written. This
//! module holds the staging, the kernel generator and the plans the convolution ops offer.
//!
//! The explicit texture GEMM path (`gemm.rs`) writes the im2col matrix, `c·kh·kw` times the
//! input, and reads it back; on llvmpipe that expansion cost as much as the product itself.
//! Here the input is staged once, with its zero padding, in a texture of rows `(n, c, y')`
//! ([`Staged`], `shaders/conv_stage.wgsl`), and the generated kernel forms the im2col operand
//! while it runs. Each invocation owns output texels of 4 consecutive `x` positions in one
//! output row (output rows are padded to whole texels, the spare columns are not written), so
//! for one `(c, ky)` every kernel tap `kx` needs the 4 staged values starting at `x + kx`:
//! the kernel fetches `⌈kw/4⌉ + 1` staged texels and takes all `kw` windows from them by
//! swizzles. A 3x3 convolution thus fetches 2 texels per 3 taps where the im2col GEMM
//! fetched 3, and writes nothing in between.
//!
//! Forms, as in `gemm.rs`:
//! - outer (forward, and the input gradient as a convolution of `grad_y` with the flipped,
//!   transposed kernel): `y[o, (n, oy, ox)] = Σ_{c, ky, kx} A[o, (c, ky, kx)] · S[n, c, oy + ky, ox + kx]`,
//!   `A` the kernel packed by `stage_weights` (`⌈kw/4⌉` texels per `(c, ky)`);
//! - dot (weight gradient): `grad_w[o, (c, ky, kx)] = Σ_{n, oy, ox} G[n, o, oy, ox] · S[n, c, oy + ky, ox + kx]`,
//!   `G` = `grad_y` staged without padding, the sum split over images along `grid.z` and
//!   finished by `reduce_splits` when the output alone gives too few workgroups.

use bytemuck::{Pod, Zeroable};

use crate::ir::Conv2dGeometry;
use crate::ir::SubgroupShare;
use crate::ir::{DeviceCaps, KernelCall, KernelPlan, Operand, ScratchSpec, Shader, DIV_WGSL};
use crate::kernels::gemm::{self, GemmForm, LINE_TEXELS};
use crate::kernels::{fill, lines};

/// `shaders/conv_stage.wgsl`.
pub static STAGE_SHADER: Shader = Shader::new(
    "conv_stage",
    concat!(
        include_str!("../../shaders/conv_stage.wgsl"),
        include_str!("../../shaders/div.wgsl")
    ),
    size_of::<StageParams>(),
);

/// Mirrors `struct Params` in `shaders/conv_stage.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct StageParams {
    /// Rows written.
    pub rows: u32,
    /// Texels per row.
    pub texels: u32,
    /// `stage_padded`: log2 of the rows per texture line.
    pub shift: u32,
    /// `stage_padded`: padded rows per `(n, c)`.
    pub hp: u32,
    /// `stage_padded`: source height.
    pub h: u32,
    /// `stage_padded`: source width.
    pub w: u32,
    /// `stage_padded`: zero rows above the source.
    pub py: i32,
    /// `stage_padded`: zero columns left of the source.
    pub px: i32,
    /// `stage_weights`: channels along k.
    pub ch: u32,
    /// `stage_weights`: kernel height.
    pub kh: u32,
    /// `stage_weights`: kernel width.
    pub kw: u32,
    /// `stage_weights`: texels per kernel row, `⌈kw / 4⌉`.
    pub kw4: u32,
    /// `stage_weights`: source stride between rows of A.
    pub sm: u32,
    /// `stage_weights`: source stride between channels.
    pub sc: u32,
    /// `stage_weights`: 1 to flip the kernel (input gradient).
    pub flip: u32,
    /// `stage_weights`: texture lines per row of A.
    pub lines: u32,
    /// `stage_unpool`: pooled height.
    pub ph: u32,
    /// `stage_unpool`: pooled width.
    pub pw: u32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 2],
}

/// Workgroup size of the stage kernels.
const STAGE_WG: u32 = 64;

/// An NCHW tensor staged with zero padding: rows `(n, c, y')`, `y'` in `0..hp`, of `texels`
/// texels (`x'` in `0..4·texels`), `S[n, c, y', x'] = src[n, c, y' - py, x' - px]`.
#[derive(Clone, Copy, Debug)]
pub struct Staged {
    /// Source `[n, c, h, w]`.
    pub src: [usize; 4],
    /// Zero rows above.
    pub py: usize,
    /// Zero columns to the left.
    pub px: usize,
    /// Rows per `(n, c)`, at least `py + h`.
    pub hp: usize,
    /// Texels per row.
    pub texels: usize,
    /// `Some([ph, pw])`: `src` is the input gradient of a 2x2, stride-2 max pool, staged from
    /// the pool's output gradient `[n, c, ph, pw]` and argmax (`stage_unpool`).
    pub unpool: Option<[usize; 2]>,
}

impl Staged {
    fn rows(&self) -> usize {
        self.src[0] * self.src[1] * self.hp
    }

    /// log2 of the rows sharing a texture line.
    pub fn shift(&self) -> u32 {
        let per_line = (LINE_TEXELS as usize / self.texels.max(1)).max(1);
        per_line
            .ilog2()
            .min(self.rows().next_power_of_two().ilog2())
    }

    fn dims(&self) -> (u32, u32) {
        let per_line = 1usize << self.shift();
        (
            (per_line * self.texels) as u32,
            self.rows().div_ceil(per_line) as u32,
        )
    }

    /// The scratch texture, `None` when it would not fit.
    pub fn texture(&self, max_dim: u32) -> Option<ScratchSpec> {
        let (width, height) = self.dims();
        (self.texels <= LINE_TEXELS as usize
            && width <= max_dim
            && height <= max_dim.min(crate::ir::MAX_WORKGROUPS_PER_DIM))
        .then_some(ScratchSpec::Texture { width, height })
    }

    /// The staging call: the source (the pooled gradient and argmax with `unpool`), then the
    /// texture.
    pub fn call(&self, src: &[Operand], dst: Operand) -> (KernelCall, Vec<Operand>) {
        let [_, _, h, w] = self.src;
        let [ph, pw] = self.unpool.unwrap_or_default();
        let params = StageParams {
            rows: self.rows() as u32,
            texels: self.texels as u32,
            shift: self.shift(),
            hp: self.hp as u32,
            h: h as u32,
            w: w as u32,
            py: self.py as i32,
            px: self.px as i32,
            ph: ph as u32,
            pw: pw as u32,
            ..StageParams::default()
        };
        let (width, height) = self.dims();
        let call = match self.unpool {
            // Windows aligned with staged row pairs and texels: one invocation per pair.
            Some(_) if self.py.is_multiple_of(2) && self.px.is_multiple_of(2) => {
                let pairs = self.src[0] * self.src[1] * self.hp.div_ceil(2);
                KernelCall::per_element_wg(
                    &STAGE_SHADER,
                    "stage_unpool_pairs",
                    &params,
                    pairs * self.texels,
                    STAGE_WG,
                )
            }
            _ => KernelCall::grid(
                &STAGE_SHADER,
                if self.unpool.is_some() {
                    "stage_unpool"
                } else {
                    "stage_padded"
                },
                &params,
                [width.div_ceil(STAGE_WG), height, 1],
            )
            .with_overrides(&[("WG", f64::from(STAGE_WG))]),
        };
        debug_assert_eq!(src.len(), 1 + usize::from(self.unpool.is_some()));
        (call, src.iter().copied().chain([dst]).collect())
    }
}

/// A convolution kernel `[o, i, kh, kw]` as the row operand of the outer form: rows `o`
/// (or `i` when `transposed`, with the kernel flipped: the input gradient), `⌈kw/4⌉` texels
/// per `(channel, ky)`.
#[derive(Clone, Copy, Debug)]
pub struct Weights {
    /// `[o, i, kh, kw]`.
    pub dims: [usize; 4],
    /// Rows are input channels and the kernel is flipped.
    pub transposed: bool,
}

impl Weights {
    fn rows(&self) -> usize {
        self.dims[if self.transposed { 1 } else { 0 }]
    }

    fn texels(&self) -> usize {
        let [o, i, kh, kw] = self.dims;
        (if self.transposed { o } else { i }) * kh * kw.div_ceil(4)
    }

    /// (scratch texture, lines per row), `None` when it would not fit.
    pub fn texture(&self, max_dim: u32) -> Option<(ScratchSpec, u32)> {
        let (width, height, lines) = gemm::texture_dims(self.rows(), self.texels() * 4);
        (width <= max_dim && height <= max_dim)
            .then_some((ScratchSpec::Texture { width, height }, lines))
    }

    /// The packing call: kernel buffer at binding 1, texture at binding 2.
    pub fn call(&self, src: Operand, dst: Operand) -> (KernelCall, Vec<Operand>) {
        let [o, i, kh, kw] = self.dims;
        let taps = kh * kw;
        let (_, _, lines) = gemm::texture_dims(self.rows(), self.texels() * 4);
        let (ch, sm, sc) = if self.transposed {
            (o, taps, i * taps)
        } else {
            (i, i * taps, taps)
        };
        let params = StageParams {
            rows: self.rows() as u32,
            texels: self.texels() as u32,
            ch: ch as u32,
            kh: kh as u32,
            kw: kw as u32,
            kw4: kw.div_ceil(4) as u32,
            sm: sm as u32,
            sc: sc as u32,
            flip: u32::from(self.transposed),
            lines,
            ..StageParams::default()
        };
        let grid = [
            (self.texels() as u32).div_ceil(STAGE_WG),
            self.rows() as u32,
            1,
        ];
        let call = KernelCall::grid(&STAGE_SHADER, "stage_weights", &params, grid)
            .with_overrides(&[("WG", f64::from(STAGE_WG))]);
        (call, vec![src, dst])
    }
}

/// Mirrors `struct Params` of the generated convolution kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ConvGemmParams {
    /// Rows of the product (output channels; input channels for the input gradient).
    pub m: u32,
    /// Outer: output column texels `n·oh·ow4`; dot: `(c, ky)` groups.
    pub cols: u32,
    /// Channels of the staged operand `S`.
    pub c_in: u32,
    /// Kernel height.
    pub kh: u32,
    /// Output texels per row, `⌈ow / 4⌉`.
    pub ow4: u32,
    /// Output width.
    pub ow: u32,
    /// Output height.
    pub oh: u32,
    /// `oh·ow4`.
    pub ohw4: u32,
    /// Rows per `(n, c)` of `S`.
    pub b_hp: u32,
    /// Texels per row of `S`.
    pub b_texels: u32,
    /// log2 of the rows per line of `S`.
    pub b_shift: u32,
    /// Outer: texture lines per row of A.
    pub a_lines: u32,
    /// Dot: channels of the staged `grad_y` (rows of the product).
    pub a_c: u32,
    /// Dot: texels per row of the staged `grad_y`.
    pub a_texels: u32,
    /// Dot: log2 of its rows per line.
    pub a_shift: u32,
    /// Dot: images per split.
    pub n_chunk: u32,
    /// Outer: output stride between images.
    pub batch_stride: u32,
    /// Outer: output stride between rows (channels).
    pub row_stride: u32,
    /// Outer: 1 to apply ReLU in the epilogue.
    pub relu: u32,
    /// Dot: images.
    pub n: u32,
    /// Outer with `pool`: pooled output width.
    pub pw: u32,
    /// Outer with `pool`: pooled output height.
    pub ph: u32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 2],
}

/// One generated kernel: the autotuner's unit of choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvTile {
    /// Outer (forward, input gradient) or dot (weight gradient).
    pub form: GemmForm,
    /// Rows per subgroup of 8 lanes is `8·ra`.
    pub ra: u32,
    /// Output texels (outer) or `(c, ky)` groups (dot) per lane.
    pub j: u32,
    /// Subgroups (of the workgroup's 8) stacked along rows; the rest go along columns.
    pub wg_rows: u32,
    /// Share the row operand through subgroup operations within blocks of 8 lanes (absent:
    /// every lane loads every row).
    pub subgroups: Option<SubgroupShare>,
    /// Outer form: add a per-row bias in the epilogue (binding 3). Dot form: also sum the
    /// row operand (`grad_y`) per row, the bias gradient (last binding).
    pub bias: bool,
    /// Kernel width (the taps taken from each group of staged texels).
    pub kw: u32,
    /// Dot form: the subgroups of a workgroup split the images instead of taking more
    /// `(c, ky)` groups (for weight gradients with few groups, like a first layer's), each
    /// writing its own partial sums.
    pub kslice: bool,
    /// Outer form: ReLU, then 2x2 max pooling (stride 2) in the epilogue: each lane computes
    /// two output rows per column and writes the pooled value and its argmax (bindings after
    /// the bias: pooled output, argmax); the convolution's own output is never written.
    pub pool: bool,
    /// Outer form: consecutive output rows per lane column (2 with `pool`). The kernel slides
    /// down the staged rows: each `(c, ky)` step fetches one new staged row and reuses the
    /// other `rows - 1` from the steps before, so B fetches drop from `rows·kh` to
    /// `kh + rows - 1` per channel.
    pub rows: u32,
    /// Rows computed per subgroup tile, `8·ra` or fewer when the whole product has fewer
    /// (4 or 6: LeNet-5's six channels), so no FMA or broadcast serves a row past it.
    pub live: u32,
}

impl ConvTile {
    fn kw4(&self) -> u32 {
        self.kw.div_ceil(4)
    }

    /// Rows one workgroup covers.
    pub fn wg_tile_rows(&self) -> u32 {
        8 * self.ra * self.wg_rows
    }

    /// Column texels (outer) or groups (dot) one workgroup covers.
    pub fn wg_tile_cols(&self) -> u32 {
        if self.kslice {
            8 * self.j
        } else {
            8 * self.j * (8 / self.wg_rows)
        }
    }

    /// Subgroups along columns, which split the images when `kslice`.
    pub fn kslices_per_wg(&self) -> u32 {
        8 / self.wg_rows
    }

    /// Partial sums one workgroup writes (one per image slice).
    pub fn partials_per_wg(&self) -> u32 {
        if self.kslice {
            self.kslices_per_wg()
        } else {
            1
        }
    }

    /// Short label, e.g. `outer-r16j2w1-sg`.
    pub fn label(&self) -> String {
        format!(
            "{}-r{}j{}w{}{}",
            match self.form {
                GemmForm::Outer => "outer",
                GemmForm::Dot => "dot",
            },
            8 * self.ra,
            self.j,
            self.wg_rows,
            SubgroupShare::suffix(self.subgroups)
        ) + if self.kslice { "-ks" } else { "" }
            + if self.pool { "-pool" } else { "" }
            + &if self.rows > 1 && !self.pool {
                format!("-y{}", self.rows)
            } else {
                String::new()
            }
            + &if self.live < 8 * self.ra {
                format!("-m{}", self.live)
            } else {
                String::new()
            }
    }

    /// The generated shader (made once, then shared).
    pub fn shader(&self) -> &'static Shader {
        let name = format!(
            "conv-{}-kw{}{}",
            self.label(),
            self.kw,
            if self.bias { "-bias" } else { "" }
        );
        crate::ir::generated_shader(name, size_of::<ConvGemmParams>(), || generate(self))
    }

    /// The kernel call over `a` and `s` (bindings 1, 2), then the bias (outer form with
    /// `bias`), then the outputs: `y` (and the argmax with `pool`), or the weight gradient
    /// (and the bias gradient with `bias`, dot form); `splits` along `grid.z` (dot form).
    pub fn call(
        &self,
        params: ConvGemmParams,
        splits: u32,
        operands: Vec<Operand>,
    ) -> (KernelCall, Vec<Operand>) {
        let grid = [
            params.cols.div_ceil(self.wg_tile_cols()).max(1),
            params.m.div_ceil(self.wg_tile_rows()).max(1),
            splits.max(1),
        ];
        (
            KernelCall::grid(self.shader(), "conv", &params, grid).with_overrides(&[]),
            operands,
        )
    }
}

/// The candidate tiles for a product with `m` rows and kernel width `kw`, best first by a
/// static guess (the autotuner times them).
/// `cols` is the number of output column texels (outer) or `(c, ky)` groups (dot).
pub fn candidates(
    form: GemmForm,
    m: usize,
    cols: usize,
    kw: u32,
    subgroups: Option<SubgroupShare>,
    bias: bool,
) -> Vec<ConvTile> {
    let wide = kw > 4;
    let shapes: &[(u32, u32, u32, u32)] = match (form, wide) {
        // (ra, j, wg_rows, rows)
        (GemmForm::Outer, false) => &[
            (2, 2, 1, 1),
            (2, 4, 1, 1),
            (1, 4, 1, 1),
            (2, 1, 1, 1),
            (2, 1, 1, 2),
            (1, 2, 1, 2),
            (1, 1, 1, 4),
        ],
        (GemmForm::Outer, true) => &[
            (2, 1, 1, 1),
            (1, 2, 1, 1),
            (2, 2, 1, 1),
            (1, 4, 1, 1),
            (1, 2, 1, 2),
            (2, 1, 1, 2),
            (1, 1, 1, 4),
            (2, 1, 1, 4),
        ],
        (GemmForm::Dot, false) => &[(2, 1, 1, 1), (1, 2, 1, 1), (1, 1, 1, 1)],
        (GemmForm::Dot, true) => &[(1, 1, 1, 1), (2, 1, 1, 1)],
    };
    let mut res = Vec::new();
    for &(ra, j, wg_rows, rows) in shapes {
        if 8 * ra as usize > m.next_power_of_two().max(8) {
            continue;
        }
        for sg in subgroups.map(Some).into_iter().chain([None]) {
            // Sliding rows only with broadcasts where the adapter has them: every tile without
            // them ran slower on lavapipe, and each candidate costs compile and tuning time.
            if sg.is_none() && subgroups.is_some() && rows > 1 {
                continue;
            }
            let tile = ConvTile {
                form,
                ra,
                j,
                wg_rows,
                subgroups: sg,
                bias,
                kw,
                kslice: false,
                pool: false,
                rows,
                live: live_rows(ra, m),
            };
            // Few groups: the subgroups along columns would mostly idle; let them split k
            // (the better guess, so first).
            if form == GemmForm::Dot && cols <= (8 * j * (8 / wg_rows) / 2) as usize {
                res.push(ConvTile {
                    kslice: true,
                    ..tile
                });
            }
            res.push(tile);
        }
    }
    res
}

/// Rows a subgroup tile of `8·ra` rows computes for a product of `m` rows: all of them, or 4 or
/// 6 when one tile of 8 holds the whole product.
fn live_rows(ra: u32, m: usize) -> u32 {
    match (ra, m) {
        (1, 0..=4) => 4,
        (1, 5..=6) => 6,
        _ => 8 * ra,
    }
}

/// The candidates of [`candidates`] (outer form, with bias) that pool in their epilogue.
pub fn pool_candidates(
    m: usize,
    cols: usize,
    kw: u32,
    subgroups: Option<SubgroupShare>,
) -> Vec<ConvTile> {
    candidates(GemmForm::Outer, m, cols, kw, subgroups, true)
        .into_iter()
        // Two output rows per column: half the columns' accumulators.
        .filter(|t| t.j <= 2 && t.rows == 1)
        .map(|t| ConvTile {
            pool: true,
            rows: 2,
            ..t
        })
        .collect()
}

/// Every tile `candidates` can return for every kernel width the implicit kernels take, for
/// shader validation.
pub fn all_tiles() -> Vec<ConvTile> {
    let mut res = Vec::new();
    for subgroups in [
        Some(SubgroupShare::Whole),
        Some(SubgroupShare::Blocks),
        None,
    ] {
        for (m, cols) in [(4, 1), (6, 1), (1 << 20, 1), (1 << 20, 1 << 20)] {
            for kw in 1..=IMPLICIT_MAX_KW as u32 {
                for form in [GemmForm::Outer, GemmForm::Dot] {
                    for bias in [false, true] {
                        res.extend(candidates(form, m, cols, kw, subgroups, bias));
                    }
                }
                res.extend(pool_candidates(m, cols, kw, subgroups));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    res.retain(|t| seen.insert(*t));
    res
}

const XYZW: [&str; 4] = ["x", "y", "z", "w"];

/// `let a{r}_{q}` (the row operand's texel `q` of this k step, for every row `r`), loaded from
/// `addr(i)` once per lane and broadcast, or by every lane.
/// `addr(i)` gives the texel address for lane-loaded block `i` (subgroups: rows
/// `row0 + 8i + lane`) or row `row0 + i` (every lane).
fn row_operand(t: &ConvTile, q: u32, addr: &dyn Fn(u32) -> String) -> String {
    let rows = 0..t.live;
    match t.subgroups {
        Some(share) => lines(
            (0..t.ra)
                .map(|qq| format!("      let al{qq}_{q} = textureLoad(a, {});", addr(qq)))
                .chain(rows.map(|r| {
                    let v = share.broadcast(&format!("al{}_{q}", r / 8), r % 8);
                    format!("      let a{r}_{q} = {v};")
                })),
        ),
        None => lines(rows.map(|r| format!("      let a{r}_{q} = textureLoad(a, {});", addr(r)))),
    }
}

/// The 4 staged values starting at tap `kx` of lane column `jj`, from texels `t{jj}_*`.
fn window(jj: u32, kx: u32) -> String {
    if kx.is_multiple_of(4) {
        return format!("t{jj}_{}", kx / 4);
    }
    let comps: Vec<String> = (kx..kx + 4)
        .map(|i| format!("t{jj}_{}.{}", i / 4, XYZW[(i % 4) as usize]))
        .collect();
    format!("vec4<f32>({})", comps.join(", "))
}

/// The implicit-GEMM convolution kernel `conv` of every tile: bindings, helpers and the lane's
/// place in the product; `body` is the form's ([`generate_outer`], [`generate_dot`]).
const CONV_WGSL: &str = r"// Generated by src/kernels/conv_gemm.rs: implicit-GEMM convolution, {label} tile, kernel width {kw}.
struct Params { m: u32, cols: u32, c_in: u32, kh: u32, ow4: u32, ow: u32, oh: u32, ohw4: u32, b_hp: u32, b_texels: u32, b_shift: u32, a_lines: u32, a_c: u32, a_texels: u32, a_shift: u32, n_chunk: u32, batch_stride: u32, row_stride: u32, relu: u32, n: u32, pw: u32, ph: u32, _pad2: u32, _pad3: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var a: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var b: texture_storage_2d<rgba32float, read>;
{outputs}
fn at(row: u32, t: u32, lines: u32) -> vec2<u32> { return vec2<u32>(t & {line_mask}u, row * lines + (t >> {line_shift}u)); }
// Texel t of staged row `row` (2^shift rows per line, `texels` per row).
fn st(row: u32, t: u32, texels: u32, shift: u32) -> vec2<u32> {
  return vec2<u32>((row & ((1u << shift) - 1u)) * texels + t, row >> shift);
}
fn act(x: f32) -> f32 { return select(x, max(x, 0.0), p.relu != 0u); }
{div}
{entry}
  let lane = lid.x;
  let row0 = (wg.y * {wg_rows}u + lid.y / {wg_cols}u) * {rows}u;
{col0}
  let last_row = max(p.m, 1u) - 1u;
  let last_col = max(p.cols, 1u) - 1u;
{body}
}
";

/// WGSL for one tile: [`CONV_WGSL`] with the body of its form.
fn generate(t: &ConvTile) -> String {
    let wg_cols = 8 / t.wg_rows;
    let outputs = match (t.bias, t.form) {
        (true, GemmForm::Outer) if t.pool => {
            "@group(0) @binding(3) var<storage, read> bias: array<f32>;\n\
             @group(0) @binding(4) var<storage, read_write> c: array<f32>;\n\
             @group(0) @binding(5) var<storage, read_write> am: array<u32>;\n"
        }
        (true, GemmForm::Outer) => {
            "@group(0) @binding(3) var<storage, read> bias: array<f32>;\n\
             @group(0) @binding(4) var<storage, read_write> c: array<f32>;\n"
        }
        (true, GemmForm::Dot) => {
            "@group(0) @binding(3) var<storage, read_write> c: array<f32>;\n\
             @group(0) @binding(4) var<storage, read_write> cb: array<f32>;\n"
        }
        (false, _) => "@group(0) @binding(3) var<storage, read_write> c: array<f32>;\n",
    };
    let col0 = if t.kslice {
        format!(
            "  let col0 = wg.x * {}u + lane;\n  let ks = lid.y % {wg_cols}u;",
            8 * t.j
        )
    } else {
        format!(
            "  let col0 = (wg.x * {wg_cols}u + lid.y % {wg_cols}u) * {}u + lane;",
            8 * t.j
        )
    };
    let body = match t.form {
        GemmForm::Outer => generate_outer(t),
        GemmForm::Dot => generate_dot(t),
    };
    fill(
        CONV_WGSL,
        &[
            ("label", &t.label()),
            ("kw", &t.kw),
            ("outputs", &outputs),
            ("line_mask", &(LINE_TEXELS - 1)),
            ("line_shift", &LINE_TEXELS.ilog2()),
            ("div", &DIV_WGSL),
            ("entry", &SubgroupShare::entry_point(t.subgroups, "conv", 8)),
            ("wg_rows", &t.wg_rows),
            ("wg_cols", &wg_cols),
            ("rows", &(8 * t.ra)),
            ("col0", &col0),
            ("body", &body),
        ],
    )
}

/// The outer form's body: each lane column's output position, the loop over `(c, ky)` that
/// slides down the staged rows, and the epilogue (NCHW, or pooled).
const OUTER_WGSL: &str = r"{columns}
{accumulators}
{texels}
  var kt = 0u;
  for (var ci = 0u; ci < p.c_in; ci++) {
{preload}
    for (var ky = 0u; ky < p.kh; ky++) {
{slide}
{steps}
      kt += {kw4}u;
    }
  }
{epilogue}";

/// Lane column `jj`: (n, oy, ox4) and its first staged row for c = 0, ky = 0.
const OUTER_COLUMN_WGSL: &str = r"  let ct{jj} = col0 + {col}u;
  let cc{jj} = min(ct{jj}, last_col);
  let n{jj} = div(cc{jj}, p.ohw4);
  let rem{jj} = cc{jj} - n{jj} * p.ohw4;
  let oy{jj} = div(rem{jj}, p.ow4);
  let ox4{jj} = rem{jj} - oy{jj} * p.ow4;
  let base{jj} = n{jj} * p.c_in * p.b_hp + {per}u * oy{jj};";

/// The outer form's store of row `r`, virtual column `v` (lane column `jj`).
const OUTER_STORE_WGSL: &str = r"    if (ct{jj} < p.cols && oyv{v} < p.oh) {
{stores}
    }";

fn generate_outer(t: &ConvTile) -> String {
    let rows = 0..t.live;
    let kw4 = t.kw4();
    let taps = 0..=kw4;
    // Virtual columns v = jj·per + d: output row `per·oy + d` of lane column jj, 4 pixels
    // each (pooling: rows 2py and 2py + 1).
    let per = t.rows.max(1);
    let vcols = t.j * per;
    let columns = lines((0..t.j).map(|jj| {
        fill(
            OUTER_COLUMN_WGSL,
            &[("jj", &jj), ("col", &(8 * jj)), ("per", &per)],
        )
    }));
    let accumulators = lines(
        rows.clone()
            .flat_map(|r| (0..vcols).map(move |v| format!("  var acc{r}_{v} = vec4<f32>();"))),
    );
    // Staged texels t{v}_{s}: row `ky + d` of lane column jj. Each ky step loads row
    // ky + per - 1 and shifts the others up (the first per - 1 rows load before ky = 0).
    let texels = lines((0..vcols).flat_map(|v| {
        taps.clone()
            .map(move |s| format!("  var t{v}_{s} = vec4<f32>();"))
    }));
    let load = |jj: u32, d: u32, row: &str| {
        lines(taps.clone().map(|s| {
            format!(
                "      t{}_{s} = textureLoad(b, st(base{jj} + {row}, ox4{jj} + {s}u, p.b_texels, p.b_shift));",
                jj * per + d
            )
        }))
    };
    let preload =
        lines((0..t.j).flat_map(|jj| {
            (0..per - 1).map(move |d| load(jj, d + 1, &format!("ci * p.b_hp + {d}u")))
        }));
    let slide = lines((0..t.j).map(|jj| {
        let shifts = (0..per - 1).flat_map(|d| {
            let (to, from) = (jj * per + d, jj * per + d + 1);
            taps.clone()
                .map(move |s| format!("      t{to}_{s} = t{from}_{s};"))
        });
        let next = load(jj, per - 1, &format!("ci * p.b_hp + ky + {}u", per - 1));
        lines(shifts.chain([next]))
    }));
    let steps = lines((0..kw4).map(|q| {
        let a = row_operand(t, q, &|i| {
            if t.subgroups.is_some() {
                format!(
                    "at(min(row0 + {}u + lane, last_row), kt + {q}u, p.a_lines)",
                    8 * i
                )
            } else {
                format!("at(min(row0 + {i}u, last_row), kt + {q}u, p.a_lines)")
            }
        });
        let products = (4 * q..(4 * q + 4).min(t.kw)).flat_map(|kx| {
            let rows = rows.clone();
            (0..vcols).map(move |v| {
                let comp = XYZW[(kx % 4) as usize];
                let fmas = rows.clone().map(|r| {
                    format!("      acc{r}_{v} = fma(vec4<f32>(a{r}_{q}.{comp}), b{kx}_{v}, acc{r}_{v});")
                });
                lines([format!("      let b{kx}_{v} = {};", window(v, kx))].into_iter().chain(fmas))
            })
        });
        lines([a].into_iter().chain(products))
    }));
    let epilogue = if t.pool {
        generate_pool_epilogue(t)
    } else {
        generate_outer_epilogue(t)
    };
    fill(
        OUTER_WGSL,
        &[
            ("columns", &columns),
            ("accumulators", &accumulators),
            ("texels", &texels),
            ("preload", &preload),
            ("slide", &slide),
            ("steps", &steps),
            ("kw4", &kw4),
            ("epilogue", &epilogue),
        ],
    )
}

/// Epilogue: NCHW, skipping the spare columns of the last texel of each output row and
/// the rows past the output of the last row group.
fn generate_outer_epilogue(t: &ConvTile) -> String {
    let per = t.rows.max(1);
    let virtual_cols = move |jj: u32| (0..per).map(move |d| (jj, d, jj * per + d));
    let offsets = (0..t.j).flat_map(virtual_cols).map(|(jj, d, v)| {
        format!(
            "  let oyv{v} = {per}u * oy{jj} + {d}u;\n  let ob{v} = n{jj} * p.batch_stride + oyv{v} * p.ow + ox4{jj} * 4u;"
        )
    });
    let rows = (0..t.live).map(|r| {
        let bias = if t.bias { " + bv" } else { "" };
        let cols = (0..t.j).flat_map(virtual_cols).map(|(jj, _, v)| {
            let stores = XYZW.iter().enumerate().map(|(ci, comp)| {
                fill(
                    "      if (ox4{jj} * 4u + {ci}u < p.ow) { c[ob{v} + rb + {ci}u] = act(acc{r}_{v}.{comp}{bias}); }",
                    &[("jj", &jj), ("ci", &ci), ("v", &v), ("r", &r), ("comp", comp), ("bias", &bias)],
                )
            });
            fill(
                OUTER_STORE_WGSL,
                &[("jj", &jj), ("v", &v), ("stores", &lines(stores))],
            )
        });
        let bias_load = if t.bias {
            format!("    let bv = bias[row0 + {r}u];")
        } else {
            String::new()
        };
        fill(
            "  if (row0 + {r}u < p.m) {\n    let rb = (row0 + {r}u) * p.row_stride;\n{bias}\n{cols}\n  }",
            &[("r", &r), ("bias", &bias_load), ("cols", &lines(cols))],
        )
    });
    lines(offsets.chain(rows))
}

/// The pooled value and argmax of output row `r`, lane column `jj`, pooled column `q`: the
/// window of components `c0`, `c1` of the virtual columns `top` and `bot`.
const POOL_WGSL: &str = r"      if (ox4{jj} * 2u + {q}u < p.pw) {
        var best = acc{r}_{top}.{c0} + bv;
        var off = {x0}u;
        let v1 = acc{r}_{top}.{c1} + bv;
        if (v1 > best) { best = v1; off = {x1}u; }
        let v2 = acc{r}_{bot}.{c0} + bv;
        if (v2 > best) { best = v2; off = p.ow + {x0}u; }
        let v3 = acc{r}_{bot}.{c1} + bv;
        if (v3 > best) { best = v3; off = p.ow + {x1}u; }
        c[ob{jj} + rb + {q}u] = max(best, 0.0);
        am[ob{jj} + rb + {q}u] = select(cb + off, 0xffffffffu, best <= 0.0);
      }";

/// ReLU and 2x2 max pooling of the two rows (virtual columns `2jj`, `2jj + 1`) of each lane
/// column: the pooled value, and the argmax as a flat index into the convolution's output
/// (first maximum in row-major window order; none when the maximum is not positive, as
/// `max_pool2d` over a ReLU's output).
fn generate_pool_epilogue(t: &ConvTile) -> String {
    let offsets = (0..t.j)
        .map(|jj| format!("  let ob{jj} = n{jj} * p.batch_stride + oy{jj} * p.pw + ox4{jj} * 2u;"));
    let rows = (0..t.live).map(|r| {
        let cols = (0..t.j).map(|jj| {
            let (top, bot) = (2 * jj, 2 * jj + 1);
            let pools = (0..2).map(|q| {
                fill(
                    POOL_WGSL,
                    &[
                        ("jj", &jj),
                        ("q", &q),
                        ("r", &r),
                        ("top", &top),
                        ("bot", &bot),
                        ("c0", &XYZW[2 * q]),
                        ("c1", &XYZW[2 * q + 1]),
                        ("x0", &(2 * q)),
                        ("x1", &(2 * q + 1)),
                    ],
                )
            });
            fill(
                "    if (ct{jj} < p.cols) {\n      let cb = ((n{jj} * p.m + row) * p.oh + 2u * oy{jj}) * p.ow + ox4{jj} * 4u;\n{pools}\n    }",
                &[("jj", &jj), ("pools", &lines(pools))],
            )
        });
        fill(
            "  if (row0 + {r}u < p.m) {\n    let row = row0 + {r}u;\n    let rb = row * p.row_stride;\n    let bv = bias[row];\n{cols}\n  }",
            &[("r", &r), ("cols", &lines(cols))],
        )
    });
    lines(offsets.chain(rows))
}

/// The dot form's body: each lane column's `(c, ky)` group, the loop over images and output
/// pixels, and the partial sums (or the result) as rows `m` of `c_in·kh·kw` floats.
const DOT_WGSL: &str = r"{groups}
{row_offsets}
{accumulators}
  let n0 = wg.z * p.n_chunk;
  let n1 = min(p.n, n0 + p.n_chunk);
  for (var n = n0 + {ks0}; n < n1; n += {kstep}) {
    let abase = n * p.a_c * p.oh;
    let bbase = n * p.c_in * p.b_hp;
    for (var oy = 0u; oy < p.oh; oy++) {
      for (var x4 = 0u; x4 < p.ow4; x4++) {
{row_operand}
{bias_sums}
{texels}
{products}
      }
    }
  }
  let width = p.cols * {kw}u;
{epilogue}";

/// The dot form's result row `r`, `(c, ky)` group `jj`.
const DOT_STORE_WGSL: &str = r"    if (col0 + {col}u < p.cols) {
{stores}
    }";

fn generate_dot(t: &ConvTile) -> String {
    let rows = 0..t.live;
    let kw4 = t.kw4();
    let wg_cols = 8 / t.wg_rows;
    // Each lane column is a (c, ky) group: its staged row offset.
    let groups = lines((0..t.j).map(|jj| {
        format!(
            "  let g{jj} = min(col0 + {}u, last_col);\n  let ci{jj} = div(g{jj}, p.kh);\n  let boff{jj} = ci{jj} * p.b_hp + g{jj} - ci{jj} * p.kh;",
            8 * jj
        )
    }));
    // Row offsets into the staged grad_y (rows (n, o, oy)).
    let row_offsets = if t.subgroups.is_some() {
        lines((0..t.ra).map(|qq| {
            format!(
                "  let am{qq} = min(row0 + {}u + lane, last_row) * p.oh;",
                8 * qq
            )
        }))
    } else {
        lines(
            rows.clone()
                .map(|r| format!("  let am{r} = min(row0 + {r}u, last_row) * p.oh;")),
        )
    };
    let accumulators = lines(rows.clone().flat_map(|r| {
        (0..t.j)
            .flat_map(move |jj| {
                (0..t.kw).map(move |kx| format!("  var acc{r}_{jj}_{kx} = vec4<f32>();"))
            })
            .chain(t.bias.then(|| format!("  var accb{r} = vec4<f32>();")))
    }));
    let (ks0, kstep) = if t.kslice {
        ("ks".to_string(), format!("{wg_cols}u"))
    } else {
        ("0u".to_string(), "1u".to_string())
    };
    let row_operand = row_operand(t, 0, &|i| {
        format!("st(abase + am{i} + oy, x4, p.a_texels, p.a_shift)")
    });
    let bias_sums = match t.bias {
        true => lines(rows.clone().map(|r| format!("      accb{r} += a{r}_0;"))),
        false => String::new(),
    };
    let texels = lines((0..t.j).flat_map(|jj| {
        (0..=kw4).map(move |s| {
            format!(
                "      let t{jj}_{s} = textureLoad(b, st(bbase + boff{jj} + oy, x4 + {s}u, p.b_texels, p.b_shift));"
            )
        })
    }));
    let products = lines((0..t.j).flat_map(|jj| {
        let rows = rows.clone();
        (0..t.kw).map(move |kx| {
            let fmas = rows.clone().map(|r| {
                format!("      acc{r}_{jj}_{kx} = fma(a{r}_0, b{kx}_{jj}, acc{r}_{jj}_{kx});")
            });
            lines(
                [format!("      let b{kx}_{jj} = {};", window(jj, kx))]
                    .into_iter()
                    .chain(fmas),
            )
        })
    }));
    fill(
        DOT_WGSL,
        &[
            ("groups", &groups),
            ("row_offsets", &row_offsets),
            ("accumulators", &accumulators),
            ("ks0", &ks0),
            ("kstep", &kstep),
            ("row_operand", &row_operand),
            ("bias_sums", &bias_sums),
            ("texels", &texels),
            ("products", &products),
            ("kw", &t.kw),
            ("epilogue", &dot_epilogue(t)),
        ],
    )
}

/// The dot form's epilogue: the bias gradient's sums (with `bias`), then the partial sums
/// (or the result) as rows `m` of `c_in·kh·kw` floats.
fn dot_epilogue(t: &ConvTile) -> String {
    let rows = 0..t.live;
    let wg_cols = 8 / t.wg_rows;
    // The partial sums this subgroup writes.
    let part = if t.kslice {
        format!("wg.z * {wg_cols}u + ks")
    } else {
        "wg.z".to_string()
    };
    // Every lane of a row sees the same grad_y texels: the one owning column 0 writes.
    let bias_out = match t.bias {
        true => {
            let sums = rows.clone().map(|r| {
                fill(
                    "    if (row0 + {r}u < p.m) { cb[({part}) * p.m + row0 + {r}u] = dot(accb{r}, vec4<f32>(1.0)); }",
                    &[("r", &r), ("part", &part)],
                )
            });
            fill(
                "  if (col0 == 0u) {\n{sums}\n  }",
                &[("sums", &lines(sums))],
            )
        }
        false => String::new(),
    };
    let out = lines(rows.clone().map(|r| {
        let cols = (0..t.j).map(|jj| {
            let stores = (0..t.kw).map(|kx| {
                format!(
                    "      c[rb + g{jj} * {}u + {kx}u] = dot(acc{r}_{jj}_{kx}, vec4<f32>(1.0));",
                    t.kw
                )
            });
            fill(
                DOT_STORE_WGSL,
                &[("col", &(8 * jj)), ("stores", &lines(stores))],
            )
        });
        fill(
            "  if (row0 + {r}u < p.m) {\n    let rb = (({part}) * p.m + row0 + {r}u) * width;\n{cols}\n  }",
            &[("r", &r), ("part", &part), ("cols", &lines(cols))],
        )
    }));
    lines([bias_out, out])
}

// ---- Plans: the calls and scratch of each candidate tile, for the convolution ops.

/// Widest kernel the implicit-GEMM kernels are generated for.
const IMPLICIT_MAX_KW: usize = 8;

/// Workgroups per grid dimension.
const MAX_GRID: usize = crate::ir::MAX_WORKGROUPS_PER_DIM as usize;

/// What [`outer_plans`] computes besides the plain forward convolution (the default).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OuterOptions {
    /// The input gradient instead: the convolution of `x` = `grad_y` with the flipped,
    /// transposed kernel.
    pub transposed: bool,
    /// A per-row bias, bound after the two textures.
    pub bias: Option<Operand>,
    /// ReLU in the epilogue.
    pub relu: bool,
    /// `Some(conv output dims)`: ReLU and 2x2 max pooling in the epilogue (outputs: the
    /// pooled values and their argmax).
    pub pool_of: Option<[usize; 4]>,
    /// `Some([ph, pw])`: `grad_y` is staged from a 2x2 max pool's output gradient and argmax
    /// (inputs 0 and 1; the kernel is input 2).
    pub unpool: Option<[usize; 2]>,
}

/// What [`dot_plans`] computes besides the plain weight gradient (the default).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DotOptions {
    /// Also the bias gradient (output 1).
    pub bias: bool,
    /// `Some([ph, pw])`: `grad_y` is staged from a 2x2 max pool's output gradient and argmax
    /// (inputs 0 and 1; `x` is input 2).
    pub unpool: Option<[usize; 2]>,
}

/// The operands staged as `grad_y` (or `x`) and the other input: input 0 and 1, or with
/// `unpool` the pooled gradient and argmax (inputs 0, 1) and input 2.
fn staged_sources(unpool: Option<[usize; 2]>) -> (Vec<Operand>, Operand) {
    match unpool {
        Some(_) => (
            vec![Operand::Input(0), Operand::Input(1)],
            Operand::Input(2),
        ),
        None => (vec![Operand::Input(0)], Operand::Input(1)),
    }
}

/// The zero padding (rows, columns) of the staged input: the convolution's, or for the input
/// gradient `k - 1 - pad`, so pad must stay below the kernel (`None` otherwise).
fn outer_padding(
    g: Conv2dGeometry,
    [kh, kw]: [usize; 2],
    transposed: bool,
) -> Option<(usize, usize)> {
    if !transposed {
        return Some((g.pad, g.pad));
    }
    (g.pad < kh && g.pad < kw).then(|| (kh - 1 - g.pad, kw - 1 - g.pad))
}

/// Implicit-GEMM plans of the outer form, stride 1 and dilation 1 only: the forward
/// convolution of `x` with `wt`, or what `opts` asks for instead or besides (the input
/// gradient, a bias, ReLU, pooling in the epilogue, an unpooled `grad_y`).
pub(crate) fn outer_plans(
    caps: &DeviceCaps,
    g: Conv2dGeometry,
    x: [usize; 4],
    wt: [usize; 4],
    opts: OuterOptions,
) -> Vec<KernelPlan> {
    let OuterOptions {
        transposed,
        bias,
        relu,
        pool_of,
        unpool,
    } = opts;
    let [o, i, kh, kw] = wt;
    if g.stride != 1 || g.dilation != 1 || kw > IMPLICIT_MAX_KW {
        return Vec::new();
    }
    let Some((py, px)) = outer_padding(g, [kh, kw], transposed) else {
        return Vec::new();
    };
    let [n, c, h, w] = x;
    let (oh, ow) = (h + 2 * py + 1 - kh, w + 2 * px + 1 - kw);
    let (ow4, kw4) = (ow.div_ceil(4), kw.div_ceil(4));
    let staged = Staged {
        src: x,
        py,
        px,
        hp: oh + kh - 1,
        texels: ow4 + kw4,
        unpool,
    };
    let weights = Weights {
        dims: wt,
        transposed,
    };
    let m = if transposed { i } else { o };
    let (Some((a_tex, a_lines)), Some(s_tex)) = (
        weights.texture(caps.max_texture_dim),
        staged.texture(caps.max_texture_dim),
    ) else {
        return Vec::new();
    };
    // Output rows per lane column: 2 when pooling (2x2, stride 2, floor: pooled (oh/2, ow/2)).
    let (ph, pw) = match pool_of {
        Some(_) => (oh / 2, ow / 2),
        None => (oh, ow),
    };
    // Lane columns for `per` output rows each (pooling: 2, the last odd row dropped).
    let rows_of = |per: usize| match pool_of {
        Some(_) => oh / 2,
        None => oh.div_ceil(per),
    };
    let cols = n * rows_of(1) * ow4;
    if cols == 0 || pw == 0 || cols >= 1 << 24 || m > MAX_GRID {
        return Vec::new();
    }
    let u = |v: usize| v as u32;
    let params = ConvGemmParams {
        m: u(m),
        cols: u(cols),
        c_in: u(c),
        kh: u(kh),
        ow4: u(ow4),
        ow: u(ow),
        oh: u(oh),
        b_hp: u(staged.hp),
        b_texels: u(staged.texels),
        b_shift: staged.shift(),
        a_lines,
        batch_stride: u(m * ph * pw),
        row_stride: u(ph * pw),
        relu: u32::from(relu),
        pw: u(pw),
        ph: u(ph),
        ..ConvGemmParams::default()
    };
    let (src, w_src) = staged_sources(unpool);
    let packs = vec![
        weights.call(w_src, Operand::Scratch(0)),
        staged.call(&src, Operand::Scratch(1)),
    ];
    let tiles = match pool_of {
        Some(_) => pool_candidates(m, cols, u(kw), caps.subgroups),
        None => candidates(
            GemmForm::Outer,
            m,
            cols,
            u(kw),
            caps.subgroups,
            bias.is_some(),
        ),
    };
    tiles
        .into_iter()
        // Grids past the per-dimension limit (very large batches) are left to the other plans.
        .filter(|tile| cols.div_ceil(tile.wg_tile_cols() as usize) <= MAX_GRID)
        .map(|tile| {
            let rows = rows_of(tile.rows as usize);
            let params = ConvGemmParams {
                cols: u(n * rows * ow4),
                ohw4: u(rows * ow4),
                ..params
            };
            let mut operands = vec![Operand::Scratch(0), Operand::Scratch(1)];
            operands.extend(bias);
            operands.push(Operand::Output(0));
            if pool_of.is_some() {
                operands.push(Operand::Output(1));
            }
            let mut calls = packs.clone();
            calls.push(tile.call(params, 1, operands));
            KernelPlan {
                copies: Vec::new(),
                variant: format!("implicit-{}", tile.label()),
                scratch: vec![a_tex, s_tex],
                calls,
            }
        })
        .collect()
}

/// Implicit-GEMM plans of the weight gradient (dot form), stride 1 and
/// dilation 1 only: `grad_w[o, (c, ky, kx)] = Σ grad_y[n, o, oy, ox] · x[n, c, oy + ky - pad, ox + kx - pad]`.
/// `opts` adds the bias gradient or stages `grad_y` from a 2x2 max pool's.
pub(crate) fn dot_plans(
    caps: &DeviceCaps,
    g: Conv2dGeometry,
    gy: [usize; 4],
    x: [usize; 4],
    [kh, kw]: [usize; 2],
    opts: DotOptions,
) -> Vec<KernelPlan> {
    let DotOptions { bias, unpool } = opts;
    if g.stride != 1 || g.dilation != 1 || kw > IMPLICIT_MAX_KW {
        return Vec::new();
    }
    let [n, o, oh, ow] = gy;
    let c = x[1];
    let (ow4, kw4) = (ow.div_ceil(4), kw.div_ceil(4));
    let grad = Staged {
        src: gy,
        py: 0,
        px: 0,
        hp: oh,
        texels: ow4,
        unpool,
    };
    let staged = Staged {
        src: x,
        py: g.pad,
        px: g.pad,
        hp: oh + kh - 1,
        texels: ow4 + kw4,
        unpool: None,
    };
    let (Some(a_tex), Some(s_tex)) = (
        grad.texture(caps.max_texture_dim),
        staged.texture(caps.max_texture_dim),
    ) else {
        return Vec::new();
    };
    let groups = c * kh;
    if o > MAX_GRID || groups > MAX_GRID {
        return Vec::new();
    }
    let u = |v: usize| v as u32;
    let params = ConvGemmParams {
        m: u(o),
        cols: u(groups),
        c_in: u(c),
        kh: u(kh),
        ow4: u(ow4),
        ow: u(ow),
        oh: u(oh),
        ohw4: u(oh * ow4),
        b_hp: u(staged.hp),
        b_texels: u(staged.texels),
        b_shift: staged.shift(),
        a_c: u(o),
        a_texels: u(grad.texels),
        a_shift: grad.shift(),
        n: u(n),
        n_chunk: u(n),
        ..ConvGemmParams::default()
    };
    let (src, x_src) = staged_sources(unpool);
    let packs = vec![
        grad.call(&src, Operand::Scratch(0)),
        staged.call(&[x_src], Operand::Scratch(1)),
    ];
    let out_len = o * groups * kw;
    candidates(GemmForm::Dot, o, groups, u(kw), caps.subgroups, bias)
        .into_iter()
        .map(|tile| {
            let mut scratch = vec![a_tex, s_tex];
            let mut calls = packs.clone();
            let mut params = params;
            // Enough image splits along grid.z for about 32 workgroups (each of a `kslice`
            // tile's subgroups then takes every 8th image of its split).
            let tiles = o.div_ceil(tile.wg_tile_rows() as usize)
                * groups.div_ceil(tile.wg_tile_cols() as usize);
            let per_wg = tile.partials_per_wg() as usize;
            let max_z = (n / per_wg).max(1);
            let chunk = n.div_ceil((32 / tiles.max(1)).clamp(1, max_z));
            params.n_chunk = u(chunk);
            let z = n.div_ceil(chunk);
            let partials = u(z * per_wg);
            let mut operands = vec![Operand::Scratch(0), Operand::Scratch(1)];
            // (length, output) of grad_w and, with bias, grad_b.
            let results: Vec<(usize, Operand)> = [(out_len, Operand::Output(0))]
                .into_iter()
                .chain(bias.then_some((o, Operand::Output(1))))
                .collect();
            if partials > 1 {
                let mut reduces = Vec::new();
                for &(len, out) in &results {
                    scratch.push(ScratchSpec::Buffer {
                        bytes: u64::from(partials) * (len * 4) as u64,
                    });
                    let part = Operand::Scratch(scratch.len() - 1);
                    operands.push(part);
                    reduces.push(gemm::reduce_call(len, partials, part, out));
                }
                calls.push(tile.call(params, u(z), operands));
                calls.extend(reduces);
            } else {
                operands.extend(results.iter().map(|&(_, out)| out));
                calls.push(tile.call(params, 1, operands));
            }
            KernelPlan {
                copies: Vec::new(),
                variant: format!("implicit-{}", tile.label()),
                scratch,
                calls,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_tiles_holds_every_candidate() {
        let all = all_tiles();
        for m in 1..40 {
            for cols in [1, 5, 30, 10_000] {
                for kw in 1..=IMPLICIT_MAX_KW as u32 {
                    let mut tiles = Vec::new();
                    let shares = [
                        Some(SubgroupShare::Whole),
                        Some(SubgroupShare::Blocks),
                        None,
                    ];
                    for sg in shares {
                        tiles.extend(pool_candidates(m, cols, kw, sg));
                        for form in [GemmForm::Outer, GemmForm::Dot] {
                            for bias in [false, true] {
                                tiles.extend(candidates(form, m, cols, kw, sg, bias));
                            }
                        }
                    }
                    for t in tiles {
                        assert!(all.contains(&t), "m {m}, cols {cols}: {t:?} missing");
                    }
                }
            }
        }
    }

    #[test]
    fn few_rows_compute_only_the_rows_there_are() {
        // LeNet-5's six channels: every single-tile candidate computes 6 rows, not 8.
        for tile in candidates(
            GemmForm::Outer,
            6,
            100,
            5,
            Some(SubgroupShare::Whole),
            false,
        ) {
            assert_eq!(tile.live, 6, "{}", tile.label());
        }
        for tile in candidates(
            GemmForm::Outer,
            16,
            100,
            5,
            Some(SubgroupShare::Whole),
            false,
        ) {
            assert_eq!(tile.live, 8 * tile.ra, "{}", tile.label());
        }
    }
}
