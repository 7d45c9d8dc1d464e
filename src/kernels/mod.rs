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

use crate::ir::SubgroupShare;

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
