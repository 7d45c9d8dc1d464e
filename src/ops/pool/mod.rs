//! Pooling: max, average and power-average (LP) pooling with any window, stride, padding and
//! ceil mode; adaptive pooling to a fixed size; and their backward ops.

pub mod adaptive_pool2d;
pub mod avg_pool2d;
pub mod lp_pool2d;
pub mod max_pool2d;
mod window;
