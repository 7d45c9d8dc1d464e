//! Passes over a built graph, in the order they run: reverse-mode differentiation (appends the
//! backward pass), scheduling (drops dead nodes, orders, finds live ranges) and memory planning
//! (transient tensors to shared buffer slots). The graph itself is in [`crate::ir`].

mod autodiff;
pub mod memory;
mod schedule;

pub use autodiff::append_backward;
pub use schedule::{schedule, Schedule, Step};
