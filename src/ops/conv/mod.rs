//! Convolution: `conv2d` (with its fused ReLU and 2x2 max-pool forms) on the tuned kernel
//! families for square, ungrouped geometries; `general` for every other geometry (per-axis
//! stride, padding and dilation, groups, depthwise) and `conv_transpose2d`.

pub mod conv2d;
pub mod general;
