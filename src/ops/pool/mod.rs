//! Pooling: max and average pooling and their backward ops.

pub mod avg_pool2d;
pub mod max_pool2d;
