#![doc = include_str!("../README.md")]

pub mod checkpoint;
pub mod data;
pub mod error;
pub mod exec;
pub mod gpu;
pub mod graph;
pub mod infer;
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

/// What most programs using striate need, in one `use striate::prelude::*;`.
pub mod prelude {
    pub use crate::data::{batches, train_batches, Augment, DataSplit, Dataset};
    pub use crate::exec::cpu::CpuInterpreter;
    pub use crate::exec::gpu::{Executable, ProgramSpec, VariantChoice};
    pub use crate::graph::{append_backward, schedule};
    pub use crate::infer::{PredictConfig, Predictor};
    pub use crate::ir::{Conv2dSpec, CpuTensor, Graph, NodeId, Pool2d, TensorId};
    pub use crate::models::Model;
    pub use crate::nn::{Architecture, Conv2dOptions, Init, Net};
    pub use crate::ops::activation::hard::HardActivation;
    pub use crate::ops::activation::Activation;
    pub use crate::ops::norm::batch_norm2d::BatchNormConfig;
    pub use crate::ops::optim::LrSchedule;
    pub use crate::ops::pool::avg_pool2d::AvgPool2d;
    pub use crate::shape::Shape;
    pub use crate::train::{Optimizer, TrainConfig, Trainer};
    pub use crate::{AdapterChoice, Error, GpuContext, Result};
}
