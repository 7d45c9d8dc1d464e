//! The weight gradient of a convolution fused with ReLU and a 2x2 max pool, summed over the
//! pool's windows instead of over the convolution's output.
//!
//! The convolution output's gradient is the pooled gradient at each window's argmax and zero
//! at the other three positions, so of the `n·oh·ow` terms of
//! `grad_w[o, c, ky, kx] = Σ grad_y[n, o, y, x] · x[n, c, y + ky - pad, x + kx - pad]`
//! at most one in four is not zero: the one at the argmax `(y, x)` of each window. These
//! kernels sum exactly those, reading the pooled gradient and argmax as they are; the
//! implicit-GEMM plan stages the whole zero-filled `grad_y` and runs a dense product four
//! times the size.
//!
//! Each lane takes windows, for `os` output channels and `cs` input channels. Whatever the
//! argmax, a window's `kh x kw` patch lies in the `(kh + 1) x (kw + 1)` patch at its corner, so
//! a lane fetches that once per input channel (from the input staged with its padding, as for
//! the implicit GEMM: [`Staged`]) and selects each output channel's patch from it by the
//! argmax's row and column in the window. On lavapipe the fetches and the storage loads of the
//! gradient and argmax are the cost, the selects and FMAs next to free.
//!
//! Lanes of a subgroup take consecutive windows; at the end the subgroup sums its lanes
//! (`subgroupAdd`) and one lane writes the partial sum of its split of the windows, or, without
//! subgroups, every lane writes its own. `reduce_splits` adds the splits.

use std::fmt::Write as _;

use bytemuck::{Pod, Zeroable};

use crate::ir::Conv2dGeometry;
use crate::ir::SubgroupShare;
use crate::ir::{DeviceCaps, KernelCall, KernelPlan, Operand, ScratchSpec, Shader, DIV_WGSL};
use crate::kernels::conv_gemm::Staged;
use crate::kernels::gemm;

/// Mirrors `struct Params` of the generated kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct WindowsParams {
    /// Pool windows per output channel, `n·ph·pw`.
    pub windows: u32,
    /// `ph·pw`.
    pub phw: u32,
    /// Pooled width.
    pub pw: u32,
    /// Output channels.
    pub o: u32,
    /// Input channels.
    pub c: u32,
    /// Groups of `cs` input channels.
    pub cgroups: u32,
    /// Convolution output width.
    pub ow: u32,
    /// Convolution output plane, `oh·ow`.
    pub ohw: u32,
    /// Staged rows per `(n, c)`.
    pub hp: u32,
    /// Texels per staged row.
    pub texels: u32,
    /// log2 of the staged rows per texture line.
    pub shift: u32,
    /// Windows per split.
    pub per_split: u32,
    /// `(output channel group, input channel group)` pairs.
    pub pairs: u32,
    /// Subgroup tasks, `pairs · splits`.
    pub tasks: u32,
    /// Groups of `os` output channels.
    pub ogroups: u32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

/// One generated kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowsTile {
    /// Kernel height.
    pub kh: u32,
    /// Kernel width.
    pub kw: u32,
    /// Output channels per lane: their windows share one fetch of the input patch.
    pub os: u32,
    /// Input channels per lane (each `os·kh·kw` accumulators).
    pub cs: u32,
    /// Also sum the gradient per output channel (the bias gradient).
    pub bias: bool,
    /// Sum each block of 8 lanes with subgroup operations before writing (one partial sum per
    /// task instead of 8).
    pub subgroups: Option<SubgroupShare>,
}

/// Subgroup tasks the plans aim for (8 per workgroup). Fewer splits mean fewer partial sums to
/// write and add: on lavapipe (a workgroup per thread, 2 threads) 64 tasks ran 25-30% faster
/// than 256, and 32 no faster than 64.
const TARGET_TASKS: usize = 64;

/// Square kernels up to this size have generated kernels.
const MAX_K: u32 = 7;

const XYZW: [&str; 4] = ["x", "y", "z", "w"];

impl WindowsTile {
    /// Short label, e.g. `windows-o2c3-sg`.
    pub fn label(&self) -> String {
        format!(
            "windows-o{}c{}{}",
            self.os,
            self.cs,
            SubgroupShare::suffix(self.subgroups)
        )
    }

    /// The generated shader (made once, then shared).
    pub fn shader(&self) -> &'static Shader {
        let name = format!(
            "conv-{}-k{}x{}{}",
            self.label(),
            self.kh,
            self.kw,
            if self.bias { "-bias" } else { "" }
        );
        crate::ir::generated_shader(name, size_of::<WindowsParams>(), || generate(self))
    }

    /// Partial sums one task writes per split.
    fn partials_per_task(&self) -> u32 {
        if self.subgroups.is_some() {
            1
        } else {
            8
        }
    }
}

/// WGSL for one tile.
fn generate(t: &WindowsTile) -> String {
    let (kh, kw, os, cs) = (t.kh, t.kw, t.os, t.cs);
    // Texels covering the kw + 1 columns of a window's patches from column 0 or 2 of a texel.
    let nt = (kw + 3).div_ceil(4);
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "// Generated by src/kernels/windows.rs: the weight gradient of a convolution fused with\n\
         // a 2x2 max pool, summed over the pool's windows; {} tile, kernel {kh}x{kw}.",
        t.label()
    );
    w.push_str(
        "struct Params { windows: u32, phw: u32, pw: u32, o: u32, c: u32, cgroups: u32, ow: u32, ohw: u32, hp: u32, texels: u32, shift: u32, per_split: u32, pairs: u32, tasks: u32, ogroups: u32, _pad1: u32 }\n\
         @group(0) @binding(0) var<uniform> p: Params;\n\
         @group(0) @binding(1) var<storage, read> gp: array<f32>;\n\
         @group(0) @binding(2) var<storage, read> argmax: array<u32>;\n\
         @group(0) @binding(3) var xs: texture_storage_2d<rgba32float, read>;\n\
         @group(0) @binding(4) var<storage, read_write> part: array<f32>;\n",
    );
    if t.bias {
        w.push_str("@group(0) @binding(5) var<storage, read_write> part_b: array<f32>;\n");
    }
    w.push_str(
        "// Texel t of staged row `row`.\n\
         fn st(row: u32, t: u32) -> vec2<u32> {\n\
         \x20 return vec2<u32>((row & ((1u << p.shift) - 1u)) * p.texels + t, row >> p.shift);\n\
         }\n",
    );
    w.push_str(DIV_WGSL);
    let share = t.subgroups;
    w.push_str(share.map_or("", SubgroupShare::helpers));
    w.push_str(&SubgroupShare::entry_point(share, "conv", 8));
    w.push_str(
        "  let lane = lid.x;\n\
         \x20 // One task per subgroup: (split of the windows, output channel group, input channel\n\
         \x20 // group). Tasks past the end repeat the last one and write nothing; no lane returns\n\
         \x20 // early, so every lane of a subgroup reaches its sums.\n\
         \x20 let live = wg.x * 8u + lid.y < p.tasks;\n\
         \x20 let task = min(wg.x * 8u + lid.y, p.tasks - 1u);\n\
         \x20 let split = div(task, p.pairs);\n\
         \x20 let pair = task - split * p.pairs;\n\
         \x20 let og = div(pair, p.cgroups);\n",
    );
    let _ = writeln!(w, "  let c0 = (pair - og * p.cgroups) * {cs}u;");
    let _ = writeln!(w, "  let o0 = og * {os}u;");
    for oi in 0..os {
        let _ = writeln!(w, "  let oc{oi} = min(o0 + {oi}u, p.o - 1u);");
        if t.bias {
            let _ = writeln!(w, "  var accb{oi} = 0.0;");
        }
    }
    for ci in 0..cs {
        let _ = writeln!(w, "  let ch{ci} = min(c0 + {ci}u, p.c - 1u);");
    }
    for oi in 0..os {
        for ci in 0..cs {
            for ky in 0..kh {
                for kx in 0..kw {
                    let _ = writeln!(w, "  var acc{oi}_{ci}_{ky}_{kx} = 0.0;");
                }
            }
        }
    }
    w.push_str(
        "  let w1 = min(p.windows, (split + 1u) * p.per_split);\n\
         \x20 for (var wi = split * p.per_split + lane; wi < w1; wi += 8u) {\n\
         \x20   let n = div(wi, p.phw);\n\
         \x20   let r = wi - n * p.phw;\n\
         \x20   let wy = div(r, p.pw);\n\
         \x20   let wx = r - wy * p.pw;\n\
         \x20   // The window's top-left corner in the convolution output plane.\n\
         \x20   let corner = 2u * (wy * p.ow + wx);\n",
    );
    // Each output channel's gradient (zero where the window has no argmax: the ReLU's mask)
    // and the argmax's offset (dy, dx) in the window, clamped: an argmax elsewhere cannot
    // leave it.
    for oi in 0..os {
        let _ = writeln!(w, "    let plane{oi} = n * p.o + oc{oi};");
        let _ = writeln!(w, "    let o_idx{oi} = plane{oi} * p.phw + r;");
        let _ = writeln!(w, "    let a{oi} = argmax[o_idx{oi}];");
        let _ = writeln!(
            w,
            "    let g{oi} = select(gp[o_idx{oi}], 0.0, a{oi} == 0xffffffffu);"
        );
        if t.bias {
            let _ = writeln!(w, "    accb{oi} += g{oi};");
        }
        let _ = writeln!(w, "    let d{oi} = a{oi} - (plane{oi} * p.ohw + corner);");
        let _ = writeln!(w, "    let dy{oi} = d{oi} >= p.ow;");
        let _ = writeln!(
            w,
            "    let dx{oi} = d{oi} - select(0u, p.ow, dy{oi}) != 0u;"
        );
    }
    // The patch every offset draws from: staged rows 2wy .. 2wy + kh, columns 2wx .. 2wx + kw,
    // which start at column 0 or 2 of texel wx / 2.
    w.push_str("    let t0 = wx >> 1u;\n    let odd = (wx & 1u) != 0u;\n");
    for ci in 0..cs {
        let _ = writeln!(w, "    let row{ci} = (n * p.c + ch{ci}) * p.hp + 2u * wy;");
        for y in 0..=kh {
            for q in 0..nt {
                let _ = writeln!(
                    w,
                    "    let v{ci}_{y}_{q} = textureLoad(xs, st(row{ci} + {y}u, t0 + {q}u));"
                );
            }
            let e = |k: u32| format!("v{ci}_{y}_{}.{}", k / 4, XYZW[(k % 4) as usize]);
            for k in 0..=kw {
                let _ = writeln!(
                    w,
                    "    let u{ci}_{y}_{k} = select({}, {}, odd);",
                    e(k),
                    e(k + 2)
                );
            }
        }
        for oi in 0..os {
            for ky in 0..kh {
                for k in 0..=kw {
                    let _ = writeln!(
                        w,
                        "    let r{oi}_{ci}_{ky}_{k} = select(u{ci}_{ky}_{k}, u{ci}_{}_{k}, dy{oi});",
                        ky + 1
                    );
                }
                for kx in 0..kw {
                    let _ = writeln!(
                        w,
                        "    acc{oi}_{ci}_{ky}_{kx} = fma(g{oi}, select(r{oi}_{ci}_{ky}_{kx}, r{oi}_{ci}_{ky}_{}, dx{oi}), acc{oi}_{ci}_{ky}_{kx});",
                        kx + 1
                    );
                }
            }
        }
    }
    w.push_str("  }\n");
    // Epilogue: partial sums, rows `o` of `c·kh·kw` (grad_w's layout) per partial.
    let kk = kh * kw;
    if share.is_some() {
        w.push_str("  let z = split;\n  let writes = live && lane == 0u;\n");
    } else {
        w.push_str("  let z = split * 8u + lane;\n  let writes = live;\n");
    }
    let sum = |v: &str| match share {
        Some(share) => share.sum(v),
        None => v.to_string(),
    };
    for oi in 0..os {
        let _ = writeln!(w, "  let rb{oi} = (z * p.o + oc{oi}) * p.c * {kk}u;");
        for ci in 0..cs {
            for ky in 0..kh {
                for kx in 0..kw {
                    let _ = writeln!(
                        w,
                        "  let s{oi}_{ci}_{ky}_{kx} = {};",
                        sum(&format!("acc{oi}_{ci}_{ky}_{kx}"))
                    );
                }
            }
            let _ = writeln!(
                w,
                "  if (writes && o0 + {oi}u < p.o && c0 + {ci}u < p.c) {{"
            );
            for ky in 0..kh {
                for kx in 0..kw {
                    let _ = writeln!(
                        w,
                        "    part[rb{oi} + (c0 + {ci}u) * {kk}u + {}u] = s{oi}_{ci}_{ky}_{kx};",
                        ky * kw + kx
                    );
                }
            }
            w.push_str("  }\n");
        }
        if t.bias {
            let _ = writeln!(w, "  let sb{oi} = {};", sum(&format!("accb{oi}")));
            let _ = writeln!(
                w,
                "  if (writes && c0 == 0u && o0 + {oi}u < p.o) {{ part_b[z * p.o + oc{oi}] = sb{oi}; }}"
            );
        }
    }
    w.push_str("}\n");
    s
}

/// (output, input) channels per lane the plans offer for `o` output and `c` input channels:
/// groups that divide the channels, so no lane computes a channel that is not there.
fn channel_groups(o: usize, c: usize) -> Vec<(u32, u32)> {
    let mut res = Vec::new();
    // More than 4 output channels per lane spilled its accumulators on lavapipe and ran slower.
    for os in [1u32, 2, 3, 4] {
        for cs in [1u32, 2, 3] {
            if os * cs <= 12 && o.is_multiple_of(os as usize) && c.is_multiple_of(cs as usize) {
                res.push((os, cs));
            }
        }
    }
    res
}

/// Every tile the plans can use, for shader validation.
pub fn all_tiles() -> Vec<WindowsTile> {
    let mut res = Vec::new();
    for k in 1..=MAX_K {
        for (os, cs) in channel_groups(24, 6) {
            for bias in [false, true] {
                for subgroups in [
                    None,
                    Some(SubgroupShare::Whole),
                    Some(SubgroupShare::Blocks),
                ] {
                    res.push(WindowsTile {
                        kh: k,
                        kw: k,
                        os,
                        cs,
                        bias,
                        subgroups,
                    });
                }
            }
        }
    }
    res
}

/// The plans of the unpooled weight gradient over the pool's windows: `gy` is the convolution
/// output's shape `[n, o, oh, ow]`, `x` its input. Inputs (grad_p, argmax, x); outputs grad_w
/// and, with `bias`, grad_b.
pub(crate) fn plans(
    caps: &DeviceCaps,
    g: Conv2dGeometry,
    gy: [usize; 4],
    x: [usize; 4],
    [kh, kw]: [usize; 2],
    bias: bool,
) -> Vec<KernelPlan> {
    let [n, o, oh, ow] = gy;
    let c = x[1];
    let (ph, pw) = (oh / 2, ow / 2);
    let windows = n * ph * pw;
    if g.stride != 1
        || g.dilation != 1
        || kh != kw
        || kh > MAX_K as usize
        || windows == 0
        || c == 0
        // `div` is exact below 2^24; flat indices stay within u32.
        || windows >= 1 << 24
        || n * o * oh * ow >= 1 << 31
        || n * c * (oh + kh) >= 1 << 31
    {
        return Vec::new();
    }
    let (ow4, kw4) = (ow.div_ceil(4), kw.div_ceil(4));
    let staged = Staged {
        src: x,
        py: g.pad,
        px: g.pad,
        hp: oh + kh - 1,
        texels: ow4 + kw4,
        unpool: None,
    };
    let Some(s_tex) = staged.texture(caps.max_texture_dim) else {
        return Vec::new();
    };
    let stage = staged.call(&[Operand::Input(2)], Operand::Scratch(0));
    let len_w = o * c * kh * kw;
    let mut res = Vec::new();
    // Subgroup sums where the adapter has them (every tile without ran slower on lavapipe).
    let subgroups = caps.subgroups;
    {
        for (os, cs) in channel_groups(o, c) {
            let tile = WindowsTile {
                kh: kh as u32,
                kw: kw as u32,
                os,
                cs,
                bias,
                subgroups,
            };
            let (ogroups, cgroups) = (o / os as usize, c / cs as usize);
            let pairs = ogroups * cgroups;
            // Splits of the windows: about TARGET_TASKS tasks, each lane at least 8 windows.
            let splits = TARGET_TASKS
                .div_ceil(pairs)
                .clamp(1, windows.div_ceil(64).max(1));
            let per_split = windows.div_ceil(splits);
            let splits = windows.div_ceil(per_split);
            let tasks = pairs * splits;
            if tasks.div_ceil(8) > crate::ir::MAX_WORKGROUPS_PER_DIM as usize {
                continue;
            }
            let u = |v: usize| v as u32;
            let params = WindowsParams {
                windows: u(windows),
                phw: u(ph * pw),
                pw: u(pw),
                o: u(o),
                c: u(c),
                cgroups: u(cgroups),
                ow: u(ow),
                ohw: u(oh * ow),
                hp: u(staged.hp),
                texels: u(staged.texels),
                shift: staged.shift(),
                per_split: u(per_split),
                pairs: u(pairs),
                tasks: u(tasks),
                ogroups: u(ogroups),
                _pad: 0,
            };
            let partials = u(splits) * tile.partials_per_task();
            let mut scratch = vec![s_tex];
            let mut operands = vec![Operand::Input(0), Operand::Input(1), Operand::Scratch(0)];
            let mut reduces = Vec::new();
            let results = [(len_w, Operand::Output(0))]
                .into_iter()
                .chain(bias.then_some((o, Operand::Output(1))));
            for (len, out) in results {
                if partials > 1 {
                    scratch.push(ScratchSpec::Buffer {
                        bytes: u64::from(partials) * (len * 4) as u64,
                    });
                    let part = Operand::Scratch(scratch.len() - 1);
                    operands.push(part);
                    reduces.push(gemm::reduce_call(len, partials, part, out));
                } else {
                    operands.push(out);
                }
            }
            let call =
                KernelCall::grid(tile.shader(), "conv", &params, [u(tasks.div_ceil(8)), 1, 1])
                    .with_overrides(&[]);
            let mut calls = vec![stage.clone(), (call, operands)];
            calls.extend(reduces);
            res.push(KernelPlan {
                copies: Vec::new(),
                variant: tile.label(),
                scratch,
                calls,
            });
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_tiles_holds_every_planned_tile() {
        let all: Vec<&str> = all_tiles().iter().map(|t| t.shader().name).collect();
        let g = Conv2dGeometry {
            stride: 1,
            pad: 2,
            dilation: 1,
        };
        let (whole, blocks) = (Some(SubgroupShare::Whole), Some(SubgroupShare::Blocks));
        for (c, subgroups) in [(1, None), (2, whole), (3, None), (6, blocks), (6, None)] {
            let caps = DeviceCaps {
                subgroups,
                max_texture_dim: 8192,
                workgroup_tiles: false,
            };
            for k in 1..=MAX_K as usize {
                for bias in [false, true] {
                    // 12 output channels: every output grouping.
                    let plans = plans(&caps, g, [3, 12, 12, 10], [3, c, 12, 10], [k, k], bias);
                    assert!(!plans.is_empty(), "c {c}, k {k}: no plans");
                    for plan in plans {
                        let shader = plan.calls[1].0.shader.name;
                        assert!(all.contains(&shader), "{shader} missing");
                    }
                }
            }
        }
    }

    #[test]
    fn groups_divide_the_channels() {
        assert_eq!(channel_groups(6, 1), [(1, 1), (2, 1), (3, 1)]);
        for (o, c) in [(16, 6), (5, 4), (1, 1), (12, 9)] {
            for (os, cs) in channel_groups(o, c) {
                assert!(
                    o % os as usize == 0 && c % cs as usize == 0,
                    "{o}x{c}: {os}, {cs}"
                );
            }
        }
    }
}
