//! The bottom layer, which the ops and the graph passes both build on: the op contract
//! (`OpDef`, `KernelCall`, `KernelPlan`), host tensors (`CpuTensor`) and the graph itself
//! (`Graph`, `TensorId`, and `BackwardCtx`, what a backward rule sees). It imports nothing
//! above it, so `ops` and `graph` never import each other in a circle.

mod geometry;
mod graph;
mod op;
mod tensor;

pub use geometry::{Conv2dGeometry, Conv2dSpec, Pair, Pool2d};
pub use graph::{BackwardCtx, Graph, Node, NodeId, TensorId, TensorInfo, TensorKind};
pub(crate) use op::{expect_arity, expect_dtype, generated_shader, DIV_WGSL};
pub use op::{
    texture_dims, DeviceCaps, KernelCall, KernelPlan, OpDef, Operand, ScratchSpec, Shader,
    SubgroupShare, TextureCopy, LINE_TEXELS, MAX_WORKGROUPS_PER_DIM, WG,
};
pub use tensor::{CpuTensor, TensorData};
