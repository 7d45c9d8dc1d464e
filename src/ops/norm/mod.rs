//! Normalisation: batch normalisation (training and evaluation forms) and local response
//! normalisation.

pub mod batch_norm2d;
pub mod local_response_norm;
