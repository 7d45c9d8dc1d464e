//! Activations: the elementwise ones (`relu`, `leaky_relu`, `elu`, `sigmoid`, `tanh`, `gelu`,
//! `silu`), the piecewise-linear ones (`hardtanh` and ReLU6, `hardsigmoid`, `hardswish`) and
//! `softmax` / `log_softmax` along a dimension.

mod elementwise;
pub mod hard;
pub mod softmax;

pub(crate) use elementwise::{catalog, Params};
pub use elementwise::{relu_backward, Activation, ActivationBackward, SHADER};
