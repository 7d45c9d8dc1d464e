//! Linear algebra: `matmul` and the fused `linear` layer, over the texture GEMM.

pub mod linear;
pub mod matmul;
