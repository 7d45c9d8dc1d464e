//! `conv2d` over NCHW input with OIHW weights and a bias, and its two backward ops.
//!
//! Backward follows JAX: the input gradient is a transposed convolution (a gather over the
//! outputs each input element feeds) and the weight gradient a reduction over `n·oh·ow`. The
//! bias gradient reuses `bias_add`'s reduction.

use std::sync::Arc;

pub mod unpool;

use bytemuck::{Pod, Zeroable};

use crate::ir::{
    expect_arity, expect_dtype, BackwardCtx, CpuTensor, DeviceCaps, KernelCall, KernelPlan, OpDef,
    Operand, ScratchSpec, Shader,
};
use crate::ir::{Conv2dGeometry, Pool2d, TensorId};
use crate::kernels::conv_gemm;
use crate::kernels::gemm::{self, GemmForm, GemmParams, Im2col, MatrixView};
use crate::kernels::tiled;
use crate::ops::conv::reference;
use crate::ops::pool::max_pool2d::MaxPool2d;
use crate::ops::tensor::bias_add::{bias_grad_plans, BiasAddBackward};
use crate::ops::CatalogEntry;
use crate::shape::{window_out, DType, Shape};
use crate::{Error, Result};

/// `shaders/conv2d.wgsl`.
pub static SHADER: Shader = Shader::new(
    "conv2d",
    include_str!("../../../shaders/conv2d.wgsl"),
    size_of::<Params>(),
);

/// Register block of the kernels: `TC` channels × `TP` columns (constants in the shader).
const TC: usize = 8;
const TP: usize = 4;
/// Workgroup size of the blocked forward and backward-input kernels: each invocation does a
/// whole block, so small workgroups spread few blocks over more cores.
const BLOCK_WG: u32 = 64;

/// Mirrors `struct Params` in `shaders/conv2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    oh: u32,
    ow: u32,
    stride: u32,
    pad: u32,
    dilation: u32,
    /// 1: ReLU in the forward epilogue (`conv2d_relu`).
    relu: u32,
    _pad: [u32; 3],
}

/// `y[n, co] = b[co] + Σ_ci x[n, ci] ⋆ w[co, ci]`: `x: [n, c_in, h, w]`, `w: [c_out, c_in, kh, kw]`,
/// `b: [c_out]` → `y: [n, c_out, oh, ow]`.
#[derive(Clone, Copy, Debug)]
pub struct Conv2d(pub Conv2dGeometry);

/// `grad_x: [n, c_in, h, w]` from `grad_y: [n, c_out, oh, ow]` and `w`. Stores `h, w` because
/// with stride > 1 several input sizes give the same output size.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dBackwardInput {
    /// Geometry of the forward conv.
    pub geometry: Conv2dGeometry,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
}

/// `grad_w: [c_out, c_in, kh, kw]` from `grad_y: [n, c_out, oh, ow]` and `x`; with `bias`,
/// also `grad_b: [c_out]` (the sums of `grad_y`), which the implicit-GEMM kernel forms from
/// the `grad_y` texels it loads anyway.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dBackwardWeight {
    /// Geometry of the forward conv.
    pub geometry: Conv2dGeometry,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Second output: the bias gradient.
    pub bias: bool,
}

impl Conv2dGeometry {
    fn out_size(
        &self,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        op: &'static str,
    ) -> Result<(usize, usize)> {
        Ok((
            window_out(h, kh, self.stride, self.pad, self.dilation, op)?,
            window_out(w, kw, self.stride, self.pad, self.dilation, op)?,
        ))
    }

    fn params(&self, x: [usize; 4], w: [usize; 4], y: [usize; 4]) -> Params {
        let u = |v: usize| v as u32;
        Params {
            n: u(x[0]),
            c_in: u(x[1]),
            h: u(x[2]),
            w: u(x[3]),
            c_out: u(w[0]),
            kh: u(w[2]),
            kw: u(w[3]),
            oh: u(y[2]),
            ow: u(y[3]),
            stride: u(self.stride),
            pad: u(self.pad),
            dilation: u(self.dilation),
            relu: 0,
            _pad: [0; 3],
        }
    }
}

impl OpDef for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 3)?;
        let [n, c_in, h, w] = inputs[0].dims4(op, "input")?;
        let [c_out, wc_in, kh, kw] = inputs[1].dims4(op, "weight")?;
        for (what, s) in [
            ("input", inputs[0]),
            ("weight", inputs[1]),
            ("bias", inputs[2]),
        ] {
            expect_dtype(op, what, s, DType::F32)?;
        }
        if c_in != wc_in {
            return Err(Error::shape(
                op,
                format!(
                    "input {} has {c_in} channels but weight {} expects {wc_in}",
                    inputs[0], inputs[1]
                ),
            ));
        }
        if inputs[2].dims != [c_out] {
            return Err(Error::shape(
                op,
                format!(
                    "bias must be [{c_out}] for weight {}, got {}",
                    inputs[1], inputs[2]
                ),
            ));
        }
        let (oh, ow) = self.0.out_size(h, w, kh, kw, op)?;
        Ok(vec![Shape::f32([n, c_out, oh, ow])])
    }

    // y = x ⋆ w + b ⇒ grad_x = grad_y ⋆ᵀ w, grad_w = Σ_{n,oy,ox} grad_y · x-window, grad_b = Σ_{n,oy,ox} grad_y.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        conv_backward(self.0, cx, GradY::Full(grad_y))
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        forward_kernel(self.0, false, inputs, outputs)
    }

    // Implicit GEMM: y[o, (n, oy, ox)] = w[o, (c, ky, kx)] · im2col(x), bias in the epilogue.
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        forward_plans(self.0, false, inputs, outputs, caps)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        forward_reference(self.0, inputs, outputs);
    }
}

/// `conv2d` followed by ReLU, in one kernel: `y = max(0, conv2d(x, w) + b)`. Its backward
/// applies the ReLU mask to `grad_y` (reading `y`), then is `conv2d`'s.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dRelu(pub Conv2dGeometry);

impl OpDef for Conv2dRelu {
    fn name(&self) -> &'static str {
        "conv2d_relu"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        Conv2d(self.0).infer(inputs)
    }

    fn output_nonnegative(&self) -> bool {
        true
    }

    fn absorb_max_pool(&self, pool: &Pool2d) -> Option<Arc<dyn OpDef>> {
        (*pool == FUSED_POOL).then(|| Arc::new(Conv2dReluPool(self.0)) as Arc<dyn OpDef>)
    }

    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let grad_pre = crate::ops::activation::relu_backward(cx, grad_y, cx.output(0))?;
        conv_backward(self.0, cx, GradY::Full(grad_pre))
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        forward_kernel(self.0, true, inputs, outputs)
    }

    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        forward_plans(self.0, true, inputs, outputs, caps)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        forward_reference(self.0, inputs, outputs);
        for y in outputs[0].f32_mut() {
            *y = y.max(0.0);
        }
    }
}

/// The max pool [`Conv2dReluPool`] absorbs: 2x2, stride 2, no padding.
pub const FUSED_POOL: Pool2d = Pool2d {
    k: [2, 2],
    stride: [2, 2],
    pad: [0, 0],
    ceil_mode: false,
};

/// `max_pool2d(relu(conv2d(x, w) + b))`, 2x2 window, stride 2: outputs the pooled tensor and
/// the argmax into the convolution's output, exactly as `max_pool2d` over a ReLU's output
/// (windows with no positive value have none). Stride-1 convolutions pool in the
/// implicit-GEMM kernel's epilogue, so the convolution's output is never written; other
/// plans run a convolution plan into scratch, then the pool. [`Graph::max_pool2d`] makes it
/// from a `conv2d_relu` followed by such a pool.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dReluPool(pub Conv2dGeometry);

impl Conv2dReluPool {
    fn conv_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        Ok(Conv2d(self.0).infer(inputs)?.remove(0))
    }
}

impl OpDef for Conv2dReluPool {
    fn name(&self) -> &'static str {
        "conv2d_relu_pool"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let y = FUSED_POOL.infer(self.name(), &self.conv_shape(inputs)?)?;
        let argmax = Shape::u32(y.dims.clone());
        Ok(vec![y, argmax])
    }

    fn output_nonnegative(&self) -> bool {
        true
    }

    // The convolution's backward ops, fed by the pool's output gradient and argmax (which
    // already apply the ReLU's mask): the convolution output's gradient is formed as they
    // stage it, never written (`conv2d/unpool.rs`).
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad = GradY::Pooled(cx.grad_output(0), cx.output(1));
        conv_backward(self.0, cx, grad)
    }

    /// The convolution half of the unfused plan (see `plans`).
    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let conv = self.conv_shape(inputs).expect("infer checked the shapes");
        forward_kernel(self.0, true, inputs, &[&conv])
    }

    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let conv = self.conv_shape(inputs).expect("infer checked the shapes");
        let (x, wt) = (dims(inputs[0]), dims(inputs[1]));
        let opts = conv_gemm::OuterOptions {
            bias: Some(Operand::Input(2)),
            relu: true,
            pool_of: Some(dims(&conv)),
            ..Default::default()
        };
        let mut res = conv_gemm::outer_plans(caps, self.0, x, wt, opts);
        // Unfused: any convolution plan into a scratch buffer, then the pool over it.
        let pool = MaxPool2d {
            pool: FUSED_POOL,
            nonneg_input: true,
        };
        let pool_call = pool.kernel(&[&conv], outputs);
        // One unfused plan per kind (implicit GEMM, explicit GEMM, direct), each kind's best
        // guess: the fused tiles cover the rest, and every candidate costs tuning time.
        let mut kinds = Vec::new();
        let unfused = forward_plans(self.0, true, inputs, &[&conv], caps)
            .into_iter()
            .filter(|p| {
                let kind = p.variant.split('-').next().unwrap_or_default().to_string();
                let first = !kinds.contains(&kind);
                kinds.push(kind);
                first
            });
        for mut plan in unfused {
            let y = Operand::Scratch(plan.scratch.len());
            plan.scratch.push(ScratchSpec::Buffer {
                bytes: conv.bytes(),
            });
            for (_, operands) in &mut plan.calls {
                for o in operands.iter_mut() {
                    if *o == Operand::Output(0) {
                        *o = y;
                    }
                }
            }
            plan.calls.push((
                pool_call.clone(),
                vec![y, Operand::Output(0), Operand::Output(1)],
            ));
            plan.variant = format!("{}+pool", plan.variant);
            res.push(plan);
        }
        res
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let conv = self.conv_shape(&inputs.iter().map(|t| &t.shape).collect::<Vec<_>>());
        let mut y = [CpuTensor::zeros(&conv.expect("infer checked the shapes"))];
        Conv2dRelu(self.0).reference(inputs, &mut y);
        MaxPool2d {
            pool: FUSED_POOL,
            nonneg_input: true,
        }
        .reference(&[&y[0]], outputs);
    }
}

/// The gradient of a convolution's (pre-activation) output.
enum GradY {
    /// As a tensor.
    Full(TensorId),
    /// As a fused 2x2 max pool's output gradient and argmax.
    Pooled(TensorId, TensorId),
}

/// The backward ops of a convolution for the gradient of its output.
fn conv_backward(g: Conv2dGeometry, cx: &mut BackwardCtx<'_>, grad: GradY) -> Result<()> {
    let [_, _, h, w] = cx.shape(cx.input(0)).dims4("conv2d", "input")?;
    let [_, _, kh, kw] = cx.shape(cx.input(1)).dims4("conv2d", "weight")?;
    let input_op = Conv2dBackwardInput { geometry: g, h, w };
    // The bias gradient comes with the weight gradient (from the same grad_y loads).
    let weight_op = Conv2dBackwardWeight {
        geometry: g,
        kh,
        kw,
        bias: true,
    };
    let (weight, x) = (cx.input(1), cx.input(0));
    let (grad_x, grads) = match grad {
        GradY::Full(grad_y) => (
            cx.push(input_op, &[grad_y, weight])?[0],
            cx.push(weight_op, &[grad_y, x])?,
        ),
        GradY::Pooled(grad_p, argmax) => (
            cx.push(unpool::Unpooled(input_op), &[grad_p, argmax, weight])?[0],
            cx.push(unpool::Unpooled(weight_op), &[grad_p, argmax, x])?,
        ),
    };
    let (grad_w, grad_b) = (grads[0], grads[1]);
    cx.set_grad_input(0, grad_x);
    cx.set_grad_input(1, grad_w);
    cx.set_grad_input(2, grad_b);
    Ok(())
}

/// The direct forward kernel, with ReLU in the epilogue when `relu`.
fn forward_kernel(
    g: Conv2dGeometry,
    relu: bool,
    inputs: &[&Shape],
    outputs: &[&Shape],
) -> KernelCall {
    let y = outputs[0];
    let mut params = g.params(dims(inputs[0]), dims(inputs[1]), dims(y));
    params.relu = u32::from(relu);
    let [n, c_out, oh, ow] = dims(y);
    let n_blocks = n * oh * ow.div_ceil(TP) * c_out.div_ceil(TC);
    KernelCall::per_element_wg(&SHADER, "conv2d_forward", &params, n_blocks, BLOCK_WG)
}

/// Implicit GEMM, explicit im2col GEMM and direct plans of the forward convolution.
fn forward_plans(
    g: Conv2dGeometry,
    relu: bool,
    inputs: &[&Shape],
    outputs: &[&Shape],
    caps: &DeviceCaps,
) -> Vec<KernelPlan> {
    let direct = KernelPlan::direct(forward_kernel(g, relu, inputs, outputs), 3, 1);
    let (x, wt, y) = (dims(inputs[0]), dims(inputs[1]), dims(outputs[0]));
    let im2col = Im2col {
        input: x,
        kernel: [wt[2], wt[3]],
        out: [y[2], y[3]],
        stride: g.stride,
        dilation: g.dilation,
        pad: g.pad,
    };
    let weights = MatrixView::strided(wt[0], im2col.rows(), im2col.rows(), 1);
    // On GPUs, first the workgroup-tiled implicit GEMM.
    let mut res = tiled::conv_forward_plans(caps, g, (x, wt, y), true, relu);
    let opts = conv_gemm::OuterOptions {
        bias: Some(Operand::Input(2)),
        relu,
        ..Default::default()
    };
    res.extend(conv_gemm::outer_plans(caps, g, x, wt, opts));
    res.extend(gemm_plans(
        caps,
        GemmForm::Outer,
        (weights, Operand::Input(1)),
        (im2col, Operand::Input(0)),
        Some(Operand::Input(2)),
        (y[2] * y[3], y[1] * y[2] * y[3]),
        relu,
    ));
    res.push(direct);
    res
}

fn forward_reference(g: Conv2dGeometry, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
    reference::conv_reference(&g.into(), inputs, &mut outputs[0]);
}

impl OpDef for Conv2dBackwardInput {
    fn name(&self) -> &'static str {
        "conv2d_backward_input"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 2)?;
        let [n, c_out, oh, ow] = inputs[0].dims4(op, "grad_y")?;
        let [wc_out, c_in, kh, kw] = inputs[1].dims4(op, "weight")?;
        if c_out != wc_out || self.geometry.out_size(self.h, self.w, kh, kw, op)? != (oh, ow) {
            return Err(Error::shape(
                op,
                format!(
                    "grad_y {} does not match weight {} and input size {}x{}",
                    inputs[0], inputs[1], self.h, self.w
                ),
            ));
        }
        Ok(vec![Shape::f32([n, c_in, self.h, self.w])])
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        let x = outputs[0];
        let params = self
            .geometry
            .params(dims(x), dims(inputs[1]), dims(inputs[0]));
        let [n, c_in, h, w] = dims(x);
        let n_blocks = n * h * w.div_ceil(TP) * c_in.div_ceil(TC);
        KernelCall::per_element_wg(
            &SHADER,
            "conv2d_backward_input",
            &params,
            n_blocks,
            BLOCK_WG,
        )
    }

    // Stride 1 with a square kernel: a convolution of grad_y with the flipped, transposed
    // kernel, padded by dilation·(k - 1) - pad, as an implicit GEMM.
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let direct = KernelPlan::direct(self.kernel(inputs, outputs), 2, 1);
        let (gy, wt, x) = (dims(inputs[0]), dims(inputs[1]), dims(outputs[0]));
        let g = self.geometry;
        let mut res = tiled::conv_backward_input_plans(caps, g, (gy, wt, x));
        let opts = conv_gemm::OuterOptions {
            transposed: true,
            ..Default::default()
        };
        res.extend(conv_gemm::outer_plans(caps, g, gy, wt, opts));
        let reach = g.dilation * (wt[2] - 1);
        if g.stride != 1 || wt[2] != wt[3] || reach < g.pad {
            res.push(direct);
            return res;
        }
        let im2col = Im2col {
            input: gy,
            kernel: [wt[2], wt[3]],
            out: [x[2], x[3]],
            stride: 1,
            dilation: g.dilation,
            pad: reach - g.pad,
        };
        // A(c, (o, tap)) = w[o, c, flipped tap].
        let taps = wt[2] * wt[3];
        let flipped = MatrixView {
            rows: wt[1],
            cols: wt[0] * taps,
            rows_pad: wt[1],
            off: taps as isize - 1,
            sr: taps as isize,
            inner: taps,
            sb: (wt[1] * taps) as isize,
            sc: -1,
        };
        res.extend(gemm_plans(
            caps,
            GemmForm::Outer,
            (flipped, Operand::Input(1)),
            (im2col, Operand::Input(0)),
            None,
            (x[2] * x[3], x[1] * x[2] * x[3]),
            false,
        ));
        res.push(direct);
        res
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let spec = self.geometry.into();
        reference::conv_backward_input_reference(&spec, inputs[0], inputs[1], &mut outputs[0]);
    }
}

impl OpDef for Conv2dBackwardWeight {
    fn name(&self) -> &'static str {
        "conv2d_backward_weight"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 2)?;
        let [n, c_out, oh, ow] = inputs[0].dims4(op, "grad_y")?;
        let [xn, c_in, h, w] = inputs[1].dims4(op, "input")?;
        if n != xn || self.geometry.out_size(h, w, self.kh, self.kw, op)? != (oh, ow) {
            return Err(Error::shape(
                op,
                format!("grad_y {} does not match input {}", inputs[0], inputs[1]),
            ));
        }
        let mut res = vec![Shape::f32([c_out, c_in, self.kh, self.kw])];
        if self.bias {
            res.push(Shape::f32([c_out]));
        }
        Ok(res)
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        let w = outputs[0];
        let params = self
            .geometry
            .params(dims(inputs[1]), dims(w), dims(inputs[0]));
        let [c_out, c_in, kh, kw] = dims(w);
        // One workgroup per TC x TP block of grad_w.
        let n_blocks = (c_in * kh * kw).div_ceil(TP) * c_out.div_ceil(TC);
        KernelCall::grid(
            &SHADER,
            "conv2d_backward_weight",
            &params,
            [n_blocks as u32, 1, 1],
        )
    }

    // Dot-form GEMM over k = n·oh·ow: grad_w[o, (c, tap)] = Σ grad_y[o, k] · im2col(x)[(c, tap), k],
    // split along k when the output alone would give too few workgroups.
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let direct = KernelPlan::direct(self.kernel(inputs, &outputs[..1]), 2, 1);
        let (gy, x, wt) = (dims(inputs[0]), dims(inputs[1]), dims(outputs[0]));
        let im2col = Im2col {
            input: x,
            kernel: [wt[2], wt[3]],
            out: [gy[2], gy[3]],
            stride: self.geometry.stride,
            dilation: self.geometry.dilation,
            pad: self.geometry.pad,
        };
        let ohw = gy[2] * gy[3];
        let grad_rows = MatrixView {
            rows: gy[1],
            cols: gy[0] * ohw,
            rows_pad: gy[1],
            off: 0,
            sr: ohw as isize,
            inner: ohw,
            sb: (gy[1] * ohw) as isize,
            sc: 1,
        };
        // The bias gradient, where a plan does not form it itself: bias_add's reduction, in
        // the form it would take first on this adapter (split on GPUs).
        let bias_plan = self.bias.then(|| {
            bias_grad_plans(caps, inputs[0], Operand::Input(0), Operand::Output(1)).remove(0)
        });
        let mut res =
            tiled::conv_backward_weight_plans(caps, self.geometry, (gy, x, wt), bias_plan.as_ref());
        let opts = conv_gemm::DotOptions {
            bias: self.bias,
            unpool: None,
        };
        res.extend(conv_gemm::dot_plans(
            caps,
            self.geometry,
            gy,
            x,
            [wt[2], wt[3]],
            opts,
        ));
        let mut others = gemm_plans(
            caps,
            GemmForm::Dot,
            (grad_rows, Operand::Input(0)),
            (im2col, Operand::Input(1)),
            None,
            (usize::MAX, 0),
            false,
        );
        others.push(direct);
        // These compute grad_w only: the bias gradient is bias_add's reduction after them.
        if let Some(bias) = &bias_plan {
            for plan in &mut others {
                plan.append(bias);
            }
        }
        res.extend(others);
        res
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let spec = self.geometry.into();
        reference::conv_backward_weight_reference(&spec, inputs[0], inputs[1], &mut outputs[0]);
        if self.bias {
            BiasAddBackward.reference(&inputs[..1], &mut outputs[1..]);
        }
    }
}

/// Texture GEMM plans for a convolution product: `A` packed from a strided view, `B` from
/// im2col windows. Outer form: `C[m, (n, pixel)]` lands at `n·batch_stride + m·inner + pixel`
/// (NCHW). Dot form: `C[m, im2col row]` row-major, split along k when that adds workgroups.
fn gemm_plans(
    caps: &DeviceCaps,
    form: GemmForm,
    (a_view, a_src): (MatrixView, Operand),
    (im2col, b_src): (Im2col, Operand),
    bias: Option<Operand>,
    (inner, batch_stride): (usize, usize),
    relu: bool,
) -> Vec<KernelPlan> {
    let u = |v: usize| v as u32;
    let mut res = Vec::new();
    let (m, k, n, b_rows) = match form {
        // B rows are k (the im2col rows), padded to whole texels of A.
        GemmForm::Outer => {
            let k = im2col.rows();
            (a_view.rows, k, im2col.cols(), k.div_ceil(4) * 4)
        }
        // B rows are n (the im2col rows); k runs along the pixels.
        GemmForm::Dot => (a_view.rows, im2col.cols(), im2col.rows(), im2col.rows()),
    };
    if !caps.fits(a_view.rows_pad, a_view.cols) || !caps.fits(b_rows, im2col.cols()) {
        return res;
    }
    let (aw, ah, a_lines) = gemm::texture_dims(a_view.rows_pad, a_view.cols);
    let (bw, bh, b_lines) = gemm::texture_dims(b_rows, im2col.cols());
    let k4 = k.div_ceil(4);
    let textures = vec![
        ScratchSpec::Texture {
            width: aw,
            height: ah,
        },
        ScratchSpec::Texture {
            width: bw,
            height: bh,
        },
    ];
    // The input staged in a texture once, then expanded: each float is loaded from the buffer
    // once rather than once per tap (buffer loads are the expensive ones on llvmpipe).
    let mut textures = textures;
    let mut packs = vec![a_view.pack(a_src, Operand::Scratch(0))];
    match im2col.source_texture(caps.max_texture_dim) {
        Some(staging) => {
            textures.push(staging);
            let staging_op = Operand::Scratch(textures.len() - 1);
            packs.extend(im2col.pack_tex(b_rows, b_src, staging_op, Operand::Scratch(1)));
        }
        None => packs.push(im2col.pack(b_rows, b_src, Operand::Scratch(1))),
    }
    for tile in gemm::candidates(form, m, n, caps.subgroups, bias.is_some()) {
        let mut operands = vec![Operand::Scratch(0), Operand::Scratch(1)];
        operands.extend(bias);
        let mut scratch = textures.clone();
        let mut calls = packs.clone();
        let mut params = GemmParams {
            m: u(m),
            n: u(n),
            k4: u(k4),
            a_lines,
            b_lines,
            inner: u(inner.min(u32::MAX as usize)),
            batch_stride: u(batch_stride),
            row_stride: u(inner.min(u32::MAX as usize)),
            k_chunk: u(k4),
            relu: u32::from(relu),
            ..GemmParams::default()
        };
        if form == GemmForm::Outer {
            operands.push(Operand::Output(0));
            calls.push(tile.call(params, 1, operands));
        } else {
            // Enough splits for about 32 workgroups, each at least 64 texels of k long.
            let tiles =
                m.div_ceil(tile.wg_tile_rows() as usize) * n.div_ceil(tile.wg_tile_cols() as usize);
            let splits = (32 / tiles.max(1)).clamp(1, (k4 / 64).max(1)) as u32;
            params.k_chunk = u(k4).div_ceil(splits);
            let splits = u(k4).div_ceil(params.k_chunk);
            if splits > 1 {
                scratch.push(ScratchSpec::Buffer {
                    bytes: u64::from(splits) * (m * n * 4) as u64,
                });
                let part = Operand::Scratch(scratch.len() - 1);
                operands.push(part);
                calls.push(tile.call(params, splits, operands));
                calls.push(gemm::reduce_call(m * n, splits, part, Operand::Output(0)));
            } else {
                operands.push(Operand::Output(0));
                calls.push(tile.call(params, 1, operands));
            }
        }
        res.push(KernelPlan {
            copies: Vec::new(),
            variant: format!("tex-{}", tile.label()),
            scratch,
            calls,
        });
    }
    res
}

fn dims(s: &Shape) -> [usize; 4] {
    <[usize; 4]>::try_from(s.dims.as_slice()).expect("infer checked rank 4")
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    // (n, c_in, h, w, c_out, kh, kw, stride, pad, dilation): odd sizes, padding, stride, dilation.
    for (n, c_in, h, w, c_out, kh, kw, stride, pad, dilation) in [
        (2, 3, 7, 9, 5, 3, 3, 1, 1, 1),
        (3, 2, 11, 8, 4, 5, 3, 2, 2, 1),
        (1, 4, 9, 10, 3, 3, 2, 2, 0, 2),
        (2, 10, 6, 7, 17, 3, 3, 1, 1, 1),
        // Enough pixels (646) that the weight gradient's GEMM splits k and reduces.
        (2, 3, 17, 19, 5, 3, 3, 1, 1, 1),
        // Stride 1 for the implicit-GEMM kernels: 5x5 (two texels of taps) padded and not,
        // a 3x5 kernel, 2x2, 1x1, output widths that leave partial texels.
        (3, 2, 9, 13, 6, 5, 5, 1, 2, 1),
        (2, 6, 10, 11, 9, 5, 5, 1, 0, 1),
        (2, 5, 8, 9, 7, 3, 5, 1, 1, 1),
        (1, 3, 6, 7, 5, 2, 2, 1, 1, 1),
        (2, 9, 5, 6, 19, 1, 1, 1, 0, 1),
    ] {
        let geometry = Conv2dGeometry {
            stride,
            pad,
            dilation,
        };
        let (oh, ow) = geometry
            .out_size(h, w, kh, kw, "conv2d")
            .expect("catalog shapes are valid");
        res.push(CatalogEntry::new(
            Conv2d(geometry),
            vec![
                Shape::f32([n, c_in, h, w]),
                Shape::f32([c_out, c_in, kh, kw]),
                Shape::f32([c_out]),
            ],
        ));
        res.push(CatalogEntry::new(
            Conv2dBackwardInput { geometry, h, w },
            vec![
                Shape::f32([n, c_out, oh, ow]),
                Shape::f32([c_out, c_in, kh, kw]),
            ],
        ));
        res.push(CatalogEntry::new(
            // Half the shapes also give the bias gradient.
            Conv2dBackwardWeight {
                geometry,
                kh,
                kw,
                bias: c_out % 2 == 1,
            },
            vec![Shape::f32([n, c_out, oh, ow]), Shape::f32([n, c_in, h, w])],
        ));
    }
    // [n, c_in, h, w, c_out, k, stride, pad] → the op's geometry and inputs (x, w, b).
    let geometry = |[.., stride, pad]: [usize; 8]| Conv2dGeometry {
        stride,
        pad,
        dilation: 1,
    };
    let inputs = |[n, c_in, h, w, c_out, k, _, _]: [usize; 8]| {
        vec![
            Shape::f32([n, c_in, h, w]),
            Shape::f32([c_out, c_in, k, k]),
            Shape::f32([c_out]),
        ]
    };
    // Convolution, ReLU and 2x2 max pool in one: odd output sizes (floor pooling, partial
    // texels), 5x5 and 3x3, and a strided convolution (only the unfused plans apply).
    for shape in [
        [2, 3, 11, 13, 6, 5, 1, 2],
        [3, 4, 9, 7, 7, 3, 1, 1],
        [2, 2, 8, 10, 5, 3, 1, 0],
        [2, 3, 9, 9, 4, 3, 2, 1],
    ] {
        res.push(CatalogEntry::new(
            Conv2dReluPool(geometry(shape)),
            inputs(shape),
        ));
    }
    // The fused ReLU: stride 1 (implicit GEMM, 5x5 and 3x3) and strided (explicit GEMM).
    for shape in [
        [2, 3, 9, 11, 6, 5, 1, 2],
        [2, 5, 7, 6, 9, 3, 1, 1],
        [2, 3, 9, 8, 5, 3, 2, 1],
    ] {
        res.push(CatalogEntry::new(
            Conv2dRelu(geometry(shape)),
            inputs(shape),
        ));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn reference_on_a_hand_case() {
        // 1×1×3×3 arange, 2×2 kernel of ones, bias 0.5, no padding: each output sums a 2×2 window.
        let x = CpuTensor::from_f32([1, 1, 3, 3], (0..9).map(|v| v as f32).collect());
        let w = CpuTensor::from_f32([1, 1, 2, 2], vec![1.0; 4]);
        let b = CpuTensor::from_f32([1], vec![0.5]);
        let y = run_reference(
            &Conv2d(Conv2dGeometry {
                stride: 1,
                pad: 0,
                dilation: 1,
            }),
            &[x, w, b],
        );
        assert_eq!(y[0].f32(), [8.5, 12.5, 20.5, 24.5]);
    }

    #[test]
    fn no_plan_dispatches_a_grid_past_the_limit() {
        // A batch large enough that the narrowest implicit-GEMM tiles would need more than
        // 65,535 workgroups along x.
        let op = Conv2d(Conv2dGeometry {
            stride: 1,
            pad: 1,
            dilation: 1,
        });
        let shapes = [
            Shape::f32([4096, 1, 64, 64]),
            Shape::f32([16, 1, 3, 3]),
            Shape::f32([16]),
        ];
        let inputs: Vec<&Shape> = shapes.iter().collect();
        let y = op.infer(&inputs).expect("valid");
        let caps = DeviceCaps {
            subgroups: Some(crate::ir::SubgroupShare::Blocks),
            max_texture_dim: 16384,
            workgroup_tiles: true,
        };
        let plans = op.plans(&inputs, &[&y[0]], &caps);
        assert!(plans.iter().any(|p| p.variant.starts_with("implicit-")));
        assert!(plans.iter().any(|p| p.variant.starts_with("tiled-")));
        for plan in &plans {
            for (call, _) in &plan.calls {
                assert!(
                    call.workgroups
                        .iter()
                        .all(|&g| g <= crate::ir::MAX_WORKGROUPS_PER_DIM),
                    "{} {}: grid {:?}",
                    plan.variant,
                    call.entry,
                    call.workgroups
                );
            }
        }
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let op = Conv2d(Conv2dGeometry {
            stride: 1,
            pad: 0,
            dilation: 1,
        });
        let err = op
            .infer(&[
                &Shape::f32([2, 3, 8, 8]),
                &Shape::f32([4, 2, 3, 3]),
                &Shape::f32([4]),
            ])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("[2, 3, 8, 8] has 3 channels but weight [4, 2, 3, 3] expects 2"),
            "{err}"
        );
        let err = op
            .infer(&[
                &Shape::f32([2, 3, 2, 2]),
                &Shape::f32([4, 3, 3, 3]),
                &Shape::f32([4]),
            ])
            .unwrap_err();
        assert!(
            err.to_string().contains("does not fit input size 2"),
            "{err}"
        );
    }
}
