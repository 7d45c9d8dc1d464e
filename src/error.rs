//! The one error type of the library. Messages name what is wrong (layer, shape, file) and,
//! where the user can fix it, end with a hint.

use std::path::PathBuf;

/// Everything that can go wrong in striate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A shape rule rejected its inputs while the graph was built.
    #[error("{layer} ({op}): {message}")]
    Shape {
        /// Layer or node name, e.g. `conv2`.
        layer: String,
        /// Op name, e.g. `conv2d`.
        op: &'static str,
        /// What does not fit, with the shapes.
        message: String,
    },
    /// The op has no backward rule.
    #[error("{0} is not differentiable")]
    NotDifferentiable(&'static str),
    /// A parameter is not on any path to the loss.
    #[error("no gradient reaches {0}: it does not influence the loss")]
    NoGradient(String),
    /// No usable GPU adapter.
    #[error("{0}")]
    NoAdapter(String),
    /// The device could not be created or was lost.
    #[error("GPU device: {0}")]
    Device(String),
    /// A shader failed to compile or a pipeline failed to build.
    #[error("shader {name}: {message}")]
    Shader {
        /// `shader:entry`.
        name: String,
        /// The validation message from wgpu.
        message: String,
    },
    /// Reading data back from the GPU failed.
    #[error("GPU readback: {0}")]
    Readback(String),
    /// A dataset file is missing or malformed.
    #[error("{path}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A run's checkpoint directory cannot be read or written, or a checkpoint lacks the run's
    /// metadata (`train::run_state`); the message names the directory or file.
    #[error("{0}")]
    RunState(String),
    /// A call's arguments do not fit the object it was made on.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// A shape error from an op's shape rule; `Graph::push` fills in the layer name.
    pub fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            layer: String::new(),
            op,
            message: message.into(),
        }
    }
}

/// `Result` with striate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
