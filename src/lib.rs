//! striate trains and runs convolutional neural networks on any GPU through WGSL compute
//! shaders (wgpu: Vulkan, Metal, DX12, GL).
//!
//! A model is a static graph. Autodiff appends the backward pass to it, the scheduler and the
//! memory planner lay out one training step, and the executable bakes every pipeline, buffer
//! and bind group once, then replays the step with one submission per batch.

pub mod data;
pub mod error;
pub mod exec;
pub mod gpu;
pub mod graph;
pub mod nn;
pub mod ops;
pub mod rng;
pub mod shape;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{AdapterChoice, Counters, GpuContext};
pub use graph::{Graph, NodeId, TensorId};
pub use ops::CpuTensor;
pub use shape::Shape;
