//! Structure and arithmetic on whole tensors: `add`, `bias_add`, and the views (`reshape`).

pub mod add;
pub mod bias_add;
pub mod reshape;
