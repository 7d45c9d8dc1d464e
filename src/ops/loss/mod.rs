//! Losses (softmax cross-entropy, MSE, binary cross-entropy with logits, hinge) and the
//! training metrics computed beside them.

pub mod pointwise_loss;
pub mod softmax_cross_entropy;
