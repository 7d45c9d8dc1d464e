//! The generated-kernel machinery ops share: the texture GEMM (pack kernels and register-tiled
//! GEMM kernels generated per tile), the implicit-GEMM convolution kernels over staged inputs,
//! the window sums of the unpooled weight gradient, and the workgroup-tiled GEMM family for
//! GPUs (`tiled`). Each generator emits WGSL per tile
//! from templates in `shaders/` and plans dispatches; ops choose and combine them.

pub mod conv_gemm;
pub mod gemm;
pub mod tiled;
pub mod windows;
