//! Convolution: `conv2d` (with its fused ReLU and 2x2 max-pool forms) and its backward ops.

pub mod conv2d;
