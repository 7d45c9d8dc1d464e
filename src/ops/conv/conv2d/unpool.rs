//! A convolution's gradients fed straight from a fused 2x2 max pool (`conv2d_relu_pool`): the
//! gradient of the convolution's output is never written. Its values are the pooled gradient
//! at each window's argmax and zero elsewhere, so the implicit-GEMM plans form them while
//! staging (`stage_unpool` in `shaders/conv_stage.wgsl`), from one load of the pooled gradient
//! and one of the argmax per window, and the weight gradient's window plans
//! ([`crate::kernels::windows`]) sum over the windows alone. Other plans run the pool's backward into
//! scratch first.
//!
//! Inputs `(grad_p, argmax, other)`: the pool's output gradient `[n, c_out, ph, pw]`, its
//! argmax (flat index into the convolution's output, `u32::MAX` for none: the ReLU's mask),
//! and the weight (input gradient) or the convolution's input (weight gradient).

use super::{dims, Conv2dBackwardInput, Conv2dBackwardWeight, FUSED_POOL};
use crate::ir::{
    expect_arity, expect_dtype, CpuTensor, DeviceCaps, KernelCall, KernelPlan, OpDef, Operand,
    ScratchSpec,
};
use crate::kernels::{conv_gemm, windows};
use crate::ops::pool::max_pool2d::MaxPool2dBackward;
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// The convolution gradient ops that can take their `grad_y` from a fused pool.
pub trait ConvGradient: OpDef + Copy + 'static {
    /// Name of the unpooled form.
    const UNPOOLED_NAME: &'static str;

    /// The convolution's output shape `[n, c_out, oh, ow]` for `grad_p` and the other input.
    fn grad_y_shape(&self, grad_p: &Shape, other: &Shape) -> Result<Shape>;

    /// The implicit-GEMM plans staging `grad_y` from (grad_p, argmax) = inputs 0 and 1.
    fn unpool_plans(
        &self,
        caps: &DeviceCaps,
        grad_y: [usize; 4],
        other: [usize; 4],
        outputs: &[&Shape],
    ) -> Vec<KernelPlan>;
}

impl ConvGradient for Conv2dBackwardInput {
    const UNPOOLED_NAME: &'static str = "conv2d_backward_input_unpool";

    fn grad_y_shape(&self, grad_p: &Shape, weight: &Shape) -> Result<Shape> {
        let op = Self::UNPOOLED_NAME;
        let [n, ..] = grad_p.dims4(op, "grad_p")?;
        let [c_out, _, kh, kw] = weight.dims4(op, "weight")?;
        let (oh, ow) = self.geometry.out_size(self.h, self.w, kh, kw, op)?;
        Ok(Shape::f32([n, c_out, oh, ow]))
    }

    fn unpool_plans(
        &self,
        caps: &DeviceCaps,
        gy: [usize; 4],
        wt: [usize; 4],
        _outputs: &[&Shape],
    ) -> Vec<KernelPlan> {
        let pooled = [gy[2] / 2, gy[3] / 2];
        let opts = conv_gemm::OuterOptions {
            transposed: true,
            unpool: Some(pooled),
            ..Default::default()
        };
        conv_gemm::outer_plans(caps, self.geometry, gy, wt, opts)
    }
}

impl ConvGradient for Conv2dBackwardWeight {
    const UNPOOLED_NAME: &'static str = "conv2d_backward_weight_unpool";

    fn grad_y_shape(&self, grad_p: &Shape, x: &Shape) -> Result<Shape> {
        let op = Self::UNPOOLED_NAME;
        let [n, c_out, ..] = grad_p.dims4(op, "grad_p")?;
        let [_, _, h, w] = x.dims4(op, "input")?;
        let (oh, ow) = self.geometry.out_size(h, w, self.kh, self.kw, op)?;
        Ok(Shape::f32([n, c_out, oh, ow]))
    }

    fn unpool_plans(
        &self,
        caps: &DeviceCaps,
        gy: [usize; 4],
        x: [usize; 4],
        _outputs: &[&Shape],
    ) -> Vec<KernelPlan> {
        let pooled = [gy[2] / 2, gy[3] / 2];
        let mut res = windows::plans(caps, self.geometry, gy, x, [self.kh, self.kw], self.bias);
        let opts = conv_gemm::DotOptions {
            bias: self.bias,
            unpool: Some(pooled),
        };
        res.extend(conv_gemm::dot_plans(
            caps,
            self.geometry,
            gy,
            x,
            [self.kh, self.kw],
            opts,
        ));
        res
    }
}

/// `op` with its `grad_y` input replaced by a fused 2x2 max pool's output gradient and argmax.
#[derive(Clone, Copy, Debug)]
pub struct Unpooled<T>(pub T);

impl<T: ConvGradient> Unpooled<T> {
    /// The convolution output's gradient shape, checking the pool's shapes against it.
    fn grad_y(&self, inputs: &[&Shape]) -> Result<Shape> {
        let op = T::UNPOOLED_NAME;
        expect_arity(op, inputs, 3)?;
        expect_dtype(op, "grad_p", inputs[0], DType::F32)?;
        expect_dtype(op, "argmax", inputs[1], DType::U32)?;
        let gy = self.0.grad_y_shape(inputs[0], inputs[2])?;
        let pooled = FUSED_POOL.infer(op, &gy)?;
        if pooled.dims != inputs[0].dims || inputs[1].dims != inputs[0].dims {
            return Err(Error::shape(
                op,
                format!(
                    "grad_p {} and argmax {} must both be the 2x2 pool of the convolution output {gy}",
                    inputs[0], inputs[1]
                ),
            ));
        }
        Ok(gy)
    }

    fn pool_backward(gy: &Shape) -> MaxPool2dBackward {
        MaxPool2dBackward {
            pool: FUSED_POOL,
            x: gy.clone(),
            masks_relu: true,
        }
    }
}

impl<T: ConvGradient> OpDef for Unpooled<T> {
    fn name(&self) -> &'static str {
        T::UNPOOLED_NAME
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let gy = self.grad_y(inputs)?;
        self.0.infer(&[&gy, inputs[2]])
    }

    /// The pool's backward (the first call of every unstaged plan).
    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let gy = self.grad_y(inputs).expect("infer checked the shapes");
        Self::pool_backward(&gy).kernel(&inputs[..2], &[&gy])
    }

    // Staged plans first; then one plan per other kind of the plain op, after the pool's
    // backward into a scratch buffer.
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let gy = self.grad_y(inputs).expect("infer checked the shapes");
        let mut res = self
            .0
            .unpool_plans(caps, dims(&gy), dims(inputs[2]), outputs);
        let pool_plan = Self::pool_backward(&gy)
            .plans(&inputs[..2], &[&gy], caps)
            .remove(0);
        let mut kinds = Vec::new();
        for mut plan in self.0.plans(&[&gy, inputs[2]], outputs, caps) {
            let kind = plan
                .variant
                .split('-')
                .next()
                .unwrap_or_default()
                .to_string();
            if kind == "implicit" || kinds.contains(&kind) {
                continue;
            }
            kinds.push(kind);
            let grad_y = Operand::Scratch(plan.scratch.len());
            plan.scratch.push(ScratchSpec::Buffer { bytes: gy.bytes() });
            for (_, operands) in &mut plan.calls {
                for o in operands.iter_mut() {
                    *o = match *o {
                        Operand::Input(0) => grad_y,
                        Operand::Input(1) => Operand::Input(2),
                        other => other,
                    };
                }
            }
            let mut calls = pool_plan.calls.clone();
            for (_, operands) in &mut calls {
                for o in operands.iter_mut() {
                    if *o == Operand::Output(0) {
                        *o = grad_y;
                    }
                }
            }
            calls.append(&mut plan.calls);
            plan.calls = calls;
            plan.variant = format!("unpool+{}", plan.variant);
            res.push(plan);
        }
        res
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let shapes: Vec<&Shape> = inputs.iter().map(|t| &t.shape).collect();
        let gy = self.grad_y(&shapes).expect("infer checked the shapes");
        let mut grad_y = [CpuTensor::zeros(&gy)];
        Self::pool_backward(&gy).reference(&inputs[..2], &mut grad_y);
        self.0.reference(&[&grad_y[0], inputs[2]], outputs);
    }
}

/// Odd sizes (floor pooling drops a row and a column), 5x5 padded and 3x3 unpadded, with and
/// without the bias gradient; some windows have no argmax.
pub(crate) fn catalog() -> Vec<CatalogEntry> {
    use super::Conv2dGeometry;
    let mut res = Vec::new();
    // (n, c_in, h, w, c_out, k, pad): the input gradient stages grad_y with padding k - 1 - pad,
    // even (window-aligned row pairs) for the first two, odd for the last.
    for (n, c_in, h, w, c_out, k, pad) in [
        (2, 3, 11, 13, 6, 5, 2),
        (3, 4, 9, 10, 5, 3, 0),
        (2, 2, 9, 10, 3, 4, 0),
    ] {
        let geometry = Conv2dGeometry {
            stride: 1,
            pad,
            dilation: 1,
        };
        let (oh, ow) = geometry
            .out_size(h, w, k, k, "catalog")
            .expect("catalog shapes are valid");
        let gy = Shape::f32([n, c_out, oh, ow]);
        res.push(entry(
            Unpooled(Conv2dBackwardInput { geometry, h, w }),
            Shape::f32([c_out, c_in, k, k]),
            &gy,
        ));
        res.push(entry(
            Unpooled(Conv2dBackwardWeight {
                geometry,
                kh: k,
                kw: k,
                bias: c_out % 2 == 0,
            }),
            Shape::f32([n, c_in, h, w]),
            &gy,
        ));
    }
    res
}

/// A catalogue entry of `op` for the convolution output `gy`: each argmax points into its own
/// window (as the fused forward guarantees), or is none for one window in five.
fn entry<T: ConvGradient>(op: Unpooled<T>, other: Shape, gy: &Shape) -> CatalogEntry {
    let pooled = FUSED_POOL
        .infer("catalog", gy)
        .expect("catalog shapes are valid");
    let inputs = vec![pooled.clone(), Shape::u32(pooled.dims.clone()), other];
    let mut entry = CatalogEntry::new(op, inputs);
    entry.u32_bound = u32::MAX;
    let gy = gy.clone();
    entry.prepare = Some(Box::new(move |inputs: &mut [CpuTensor]| {
        let mut windows: Vec<Vec<usize>> = vec![Vec::new(); pooled.numel()];
        FUSED_POOL.for_each_window(&gy, &pooled, |o, i| windows[o].push(i));
        for (o, a) in inputs[1].u32_mut().iter_mut().enumerate() {
            *a = if *a % 5 == 0 {
                u32::MAX
            } else {
                windows[o][*a as usize % windows[o].len()] as u32
            };
        }
    }));
    entry
}
