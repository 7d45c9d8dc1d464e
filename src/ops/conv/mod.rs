//! Convolution: `conv2d` (with its fused ReLU and 2x2 max-pool forms) on the tuned kernel
//! families for square, ungrouped geometries; `general` for every other geometry (per-axis
//! stride, padding and dilation, groups, depthwise) and `conv_transpose2d`.

pub mod conv2d;
pub mod general;
mod reference;

use crate::ir::{Conv2dSpec, Graph, Pair, TensorId};
use crate::ops::activation::Activation;
use crate::Result;
use conv2d::{Conv2d, Conv2dRelu};
use general::{Conv2dGeneral, ConvTranspose2d};

impl Graph {
    /// `y = conv2d(x, w) + b` (PyTorch's `F.conv2d`): `x: [n, c_in, h, w]`,
    /// `w: [c_out, c_in/groups, kh, kw]`, `b: [c_out]`, any [`Conv2dSpec`] (a
    /// [`crate::ir::Conv2dGeometry`] converts). Square, ungrouped geometries run the tuned
    /// `conv2d`; the rest the general kernels.
    pub fn conv2d(
        &mut self,
        x: TensorId,
        w: TensorId,
        b: TensorId,
        spec: impl Into<Conv2dSpec>,
    ) -> Result<TensorId> {
        let spec = spec.into();
        let y = match spec.square() {
            Some(g) => self.push(Conv2d(g), &[x, w, b])?,
            None => self.push(Conv2dGeneral { spec, bias: true }, &[x, w, b])?,
        };
        Ok(y[0])
    }

    /// `y = relu(conv2d(x, w) + b)`: one fused kernel where the geometry is square and
    /// ungrouped ([`Conv2dRelu`]), a convolution then a ReLU otherwise.
    pub fn conv2d_relu(
        &mut self,
        x: TensorId,
        w: TensorId,
        b: TensorId,
        spec: impl Into<Conv2dSpec>,
    ) -> Result<TensorId> {
        let spec = spec.into();
        match spec.square() {
            Some(g) => Ok(self.push(Conv2dRelu(g), &[x, w, b])?[0]),
            None => {
                let y = self.push(Conv2dGeneral { spec, bias: true }, &[x, w, b])?[0];
                Ok(self.push(Activation::Relu, &[y])?[0])
            }
        }
    }

    /// `y = conv_transpose2d(x, w) + b` (PyTorch's `F.conv_transpose2d`): `x: [n, c_in, h, w]`,
    /// `w: [c_in, c_out/groups, kh, kw]`, `b: [c_out]`; see [`ConvTranspose2d`].
    pub fn conv_transpose2d(
        &mut self,
        x: TensorId,
        w: TensorId,
        b: TensorId,
        spec: impl Into<Conv2dSpec>,
        output_padding: impl Pair,
    ) -> Result<TensorId> {
        let op = ConvTranspose2d {
            spec: spec.into(),
            output_padding: output_padding.pair(),
        };
        Ok(self.push(op, &[x, w, b])?[0])
    }
}
