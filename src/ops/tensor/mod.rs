//! Structure and arithmetic on whole tensors: `add`, `bias_add`, `cat` and its `slice`,
//! upsampling, and the views (`reshape`).

pub mod add;
pub mod bias_add;
pub mod concat;
pub mod reshape;
pub mod upsample2d;
