//! Normalisation: batch normalisation, with its training and evaluation forms.

pub mod batch_norm2d;
