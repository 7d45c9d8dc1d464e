//! Losses and the training metrics computed beside them.

pub mod softmax_cross_entropy;
