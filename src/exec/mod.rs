//! Executing a schedule: `cpu` is the reference interpreter (the spec), `gpu` bakes the
//! schedule into wgpu objects once and replays it.

pub mod cpu;
pub mod gpu;
pub mod tune;
