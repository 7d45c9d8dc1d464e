//! The generated-kernel machinery ops share: the texture GEMM (pack kernels and register-tiled
//! GEMM kernels generated per tile), the implicit-GEMM convolution kernels over staged inputs,
//! the window sums of the unpooled weight gradient, and the workgroup-tiled GEMM family for
//! GPUs (`tiled`). Each generator writes its kernels' WGSL per tile in Rust and plans their
//! dispatches; ops choose and combine them. The fixed kernels the plans run around them
//! (`pack`, `im2col`, `conv_stage`, `reduce_splits`) are plain files in `shaders/`.
//! `examples/kernel.rs` prints any generated kernel; `tests/golden/` holds a sample of each
//! family, compared by `tests/golden.rs`.

pub mod conv_gemm;
pub mod gemm;
pub mod tiled;
pub mod windows;

use std::fmt::Display;

use crate::ir::SubgroupShare;

/// `template` with its holes filled, so a generator's kernel text reads as WGSL.
///
/// A hole is `{name}`: a brace, a name of letters, digits and underscores, a brace, nothing
/// else between; every other brace (WGSL's own blocks, `{ return x; }`) is text. A hole alone
/// on its line stands for whole lines: its value (each line ending in a newline, or none at
/// all: a section the tile does not have) replaces that line. Any other hole is replaced by
/// its value in place. Panics on a hole `holes` does not fill and on a name in `holes` the
/// template does not have, in every build: either is a generator bug, and the kernels are
/// generated once per tile.
pub(crate) fn fill(template: &str, holes: &[(&str, &dyn Display)]) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut used = vec![false; holes.len()];
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len == 0 || !after[len..].starts_with('}') {
            out.push_str(&rest[..=open]);
            rest = after;
            continue;
        }
        let name = &after[..len];
        out.push_str(&rest[..open]);
        rest = &after[len + 1..];
        let i = holes
            .iter()
            .position(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("template hole {{{name}}} not filled"));
        used[i] = true;
        let value = holes[i].1.to_string();
        let line_start = out.is_empty() || out.ends_with('\n');
        match rest.strip_prefix('\n') {
            Some(next) if line_start => {
                push_lines(&mut out, &value);
                rest = next;
            }
            _ => out.push_str(&value),
        }
    }
    out.push_str(rest);
    if let Some(i) = used.iter().position(|u| !u) {
        panic!("template has no hole {{{}}}", holes[i].0);
    }
    out
}

/// The lines of `items` (each may be several lines or none), each ending in a newline: the
/// unrolled parts of a kernel, one item per register or step.
pub(crate) fn lines(items: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for item in items {
        push_lines(&mut out, &item);
    }
    out
}

/// Appends `text` as whole lines: a newline after it unless it is empty or ends in one.
fn push_lines(out: &mut String, text: &str) {
    out.push_str(text);
    if !text.is_empty() && !text.ends_with('\n') {
        out.push('\n');
    }
}

/// The WGSL each [`SubgroupShare`] form is written in (the enum itself is a device capability,
/// in `ir`, beside [`crate::ir::DeviceCaps`]).
impl SubgroupShare {
    /// Label suffix that tells the two apart in tuning caches and shader names.
    pub fn suffix(share: Option<Self>) -> &'static str {
        match share {
            None => "",
            Some(SubgroupShare::Whole) => "-sg",
            Some(SubgroupShare::Blocks) => "-sgb",
        }
    }

    /// The entry point `name` of a kernel whose workgroup is `blocks` blocks of 8 lanes, up
    /// to the body's first statement, with `wg` (workgroup id) and `lid` (x: lane in the
    /// block, y: block) defined. Without subgroups or on 8-lane subgroups the workgroup is
    /// `(8, blocks)` and `lid` the local invocation id. With [`SubgroupShare::Blocks`] it is
    /// one-dimensional and `lid` comes from the subgroup's own numbering (a multi-dimensional
    /// workgroup's invocations need not map to subgroups in order), with `sg_base`, the
    /// block's first lane, for [`SubgroupShare::broadcast`].
    pub fn entry_point(share: Option<Self>, name: &str, blocks: u32) -> String {
        match share {
            Some(SubgroupShare::Blocks) => format!(
                "@compute @workgroup_size({})\n\
                 fn {name}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32) {{\n\
                 \x20 let lid = vec3<u32>(sg_lane & 7u, sg_id * (sg_size >> 3u) + (sg_lane >> 3u), 0u);\n\
                 \x20 let sg_base = sg_lane & ~7u;\n",
                8 * blocks
            ),
            _ => format!(
                "@compute @workgroup_size(8, {blocks})\n\
                 fn {name}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{\n"
            ),
        }
    }

    /// Module-scope WGSL the kernel needs (`block_sum` for [`SubgroupShare::sum`]).
    pub fn helpers(self) -> &'static str {
        match self {
            SubgroupShare::Whole => "",
            SubgroupShare::Blocks => {
                "fn block_sum(v: f32) -> f32 {\n\
                 \x20 let a = v + subgroupShuffleXor(v, 4u);\n\
                 \x20 let b = a + subgroupShuffleXor(a, 2u);\n\
                 \x20 return b + subgroupShuffleXor(b, 1u);\n\
                 }\n"
            }
        }
    }

    /// WGSL: `v` as lane `r` (0-7) of the caller's block holds it.
    pub fn broadcast(self, v: &str, r: u32) -> String {
        match self {
            SubgroupShare::Whole => format!("subgroupBroadcast({v}, {r}u)"),
            SubgroupShare::Blocks => format!("subgroupShuffle({v}, sg_base | {r}u)"),
        }
    }

    /// WGSL: the sum of the f32 `v` over the caller's block, in every lane of it.
    pub fn sum(self, v: &str) -> String {
        match self {
            SubgroupShare::Whole => format!("subgroupAdd({v})"),
            SubgroupShare::Blocks => format!("block_sum({v})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_fills_holes_and_keeps_wgsl_braces() {
        let t = "fn f() { return {v}u; }\n{body}\n{none}\n}\n";
        let body = lines((0..2).map(|i| format!("  let x{i} = {i}u;")));
        let got = fill(t, &[("v", &3), ("body", &body), ("none", &"")]);
        assert_eq!(
            got,
            "fn f() { return 3u; }\n  let x0 = 0u;\n  let x1 = 1u;\n}\n"
        );
        // A single-line value on a line of its own gets its newline back.
        assert_eq!(fill("a\n{b}\nc", &[("b", &"x")]), "a\nx\nc");
    }

    /// The panic message `f` ends with (fill's only failure: a generator bug).
    fn panic_message(f: impl FnOnce() -> String + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("fill must refuse the template");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn fill_refuses_unfilled_and_unknown_holes_naming_them() {
        let unfilled = panic_message(|| fill("let x = {x};", &[]));
        assert_eq!(unfilled, "template hole {x} not filled");
        let unknown = panic_message(|| fill("let x = 1;", &[("x", &1)]));
        assert_eq!(unknown, "template has no hole {x}");
    }
}
