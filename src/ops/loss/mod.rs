//! Losses (softmax cross-entropy, MSE, binary cross-entropy with logits, hinge, multi-class hinge) and the
//! training metrics computed beside them.

pub mod multi_margin_loss;
pub mod pointwise_loss;
pub mod softmax_cross_entropy;
