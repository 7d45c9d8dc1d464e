//! The thin wgpu layer: adapter choice, device, pipeline cache, buffers and the counters that
//! prove a training step creates nothing and reads nothing back. It knows nothing of graphs.

mod context;
mod counters;

pub use context::{AdapterChoice, GpuContext, MappingReceiver};
pub use counters::Counters;
