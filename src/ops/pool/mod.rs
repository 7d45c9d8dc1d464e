//! Pooling: max and average pooling, adaptive pooling to a fixed size, and their backward
//! ops.

pub mod adaptive_pool2d;
pub mod avg_pool2d;
pub mod max_pool2d;
