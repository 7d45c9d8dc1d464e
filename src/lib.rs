#![doc = include_str!("../README.md")]

pub mod checkpoint;
pub mod data;
pub mod error;
pub mod exec;
pub mod gpu;
pub mod graph;
pub mod ir;
pub mod kernels;
pub mod models;
pub mod nn;
pub mod ops;
pub mod plots;
pub mod rng;
pub mod shape;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{AdapterChoice, Counters, GpuContext};
pub use ir::{CpuTensor, Graph, NodeId, TensorId};
pub use shape::Shape;
