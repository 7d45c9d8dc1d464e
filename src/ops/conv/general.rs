//! Convolutions of any geometry: per-axis stride, padding and dilation, channel groups
//! (depthwise included), and `conv_transpose2d`, PyTorch's semantics and weight layouts.
//!
//! [`crate::ir::Graph::conv2d`] (in `ops::conv`) sends square, ungrouped geometries to `conv2d`'s tuned kernel families and
//! everything else here. The transposed convolution is the adjoint of a convolution: its
//! forward is a convolution's input-gradient gather, its input gradient a convolution, its
//! weight gradient a convolution's weight gradient with the two activations swapped.

use bytemuck::{Pod, Zeroable};

use crate::ir::{
    expect_arity, expect_dtype, BackwardCtx, Conv2dSpec, CpuTensor, KernelCall, OpDef, Shader,
};
use crate::ops::conv::reference::{
    conv_backward_input_reference, conv_backward_weight_reference, conv_reference, dims_of,
};
use crate::ops::tensor::bias_add::BiasAddBackward;
use crate::ops::CatalogEntry;
use crate::shape::{window_out, DType, Shape};
use crate::{Error, Result};

/// `shaders/conv2d_general.wgsl`.
pub static SHADER: Shader = Shader::new(
    "conv2d_general",
    include_str!("../../../shaders/conv2d_general.wgsl"),
    size_of::<Params>(),
);

/// Workgroup size of every entry (the weight gradient's reduction tree needs a power of 2).
const WG: u32 = 64;

/// Mirrors `struct Params` in `shaders/conv2d_general.wgsl`.
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
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    groups: u32,
}

/// `y = conv2d(x, w) (+ b)` for any [`Conv2dSpec`]: `x: [n, c_in, h, w]`,
/// `w: [c_out, c_in/groups, kh, kw]`, `b: [c_out]` when `bias` → `y: [n, c_out, oh, ow]`.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dGeneral {
    /// Stride, padding, dilation, groups.
    pub spec: Conv2dSpec,
    /// A third input, the bias.
    pub bias: bool,
}

/// `grad_x: [n, c_in, h, w]` from `grad_y` and `w`; stores the input size (strides make it
/// ambiguous).
#[derive(Clone, Copy, Debug)]
pub struct Conv2dGeneralBackwardInput {
    /// The forward's geometry.
    pub spec: Conv2dSpec,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
}

/// `grad_w: [c_out, c_in/groups, kh, kw]` from `grad_y: [n, c_out, oh, ow]` and `x`.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dGeneralBackwardWeight {
    /// The forward's geometry.
    pub spec: Conv2dSpec,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
}

/// PyTorch's `conv_transpose2d`: `x: [n, c_in, h, w]`, `w: [c_in, c_out/groups, kh, kw]`,
/// `b: [c_out]` → `y: [n, c_out, oh, ow]` with `oh = (h − 1)·sh − 2·ph + dh·(kh − 1) +
/// output_padding_h + 1` (same along w). `spec` is the geometry of the convolution it is the
/// adjoint of.
#[derive(Clone, Copy, Debug)]
pub struct ConvTranspose2d {
    /// Stride, padding, dilation, groups.
    pub spec: Conv2dSpec,
    /// Extra rows and columns at the bottom and right (smaller than the stride), choosing
    /// among the output sizes a strided convolution maps to one size.
    pub output_padding: [usize; 2],
}

impl Conv2dSpec {
    /// Output size of a `kh`×`kw` kernel over an `h`×`w` input.
    pub(crate) fn out_size(
        &self,
        [h, w]: [usize; 2],
        [kh, kw]: [usize; 2],
        op: &'static str,
    ) -> Result<[usize; 2]> {
        Ok([
            window_out(h, kh, self.stride[0], self.pad[0], self.dilation[0], op)?,
            window_out(w, kw, self.stride[1], self.pad[1], self.dilation[1], op)?,
        ])
    }

    /// Checks that `groups` divides both channel counts.
    fn check_groups(&self, op: &'static str, c_in: usize, c_out: usize) -> Result<()> {
        if self.groups == 0
            || !c_in.is_multiple_of(self.groups)
            || !c_out.is_multiple_of(self.groups)
        {
            return Err(Error::shape(
                op,
                format!(
                    "groups {} must divide both the {c_in} input and the {c_out} output channels",
                    self.groups
                ),
            ));
        }
        Ok(())
    }

    /// Checks a convolution's input `x: [n, c_in, h, w]` against its weight
    /// `[c_out, c_in/groups, kh, kw]`; returns both as dims.
    fn check(&self, op: &'static str, x: &Shape, w: &Shape) -> Result<([usize; 4], [usize; 4])> {
        let xd = x.dims4(op, "input")?;
        let wd = w.dims4(op, "weight")?;
        expect_dtype(op, "input", x, DType::F32)?;
        expect_dtype(op, "weight", w, DType::F32)?;
        self.check_groups(op, xd[1], wd[0])?;
        if wd[1] * self.groups != xd[1] {
            return Err(Error::shape(
                op,
                format!(
                    "input {x} has {} channels but weight {w} with {} groups expects {}",
                    xd[1],
                    self.groups,
                    wd[1] * self.groups
                ),
            ));
        }
        Ok((xd, wd))
    }

    /// The shader's parameters for a convolution of `x` by `wt` into `y` (all NCHW / OIHW).
    fn params(&self, x: [usize; 4], wt: [usize; 4], y: [usize; 4]) -> Params {
        let u = |v: usize| v as u32;
        Params {
            n: u(x[0]),
            c_in: u(x[1]),
            h: u(x[2]),
            w: u(x[3]),
            c_out: u(wt[0]),
            kh: u(wt[2]),
            kw: u(wt[3]),
            oh: u(y[2]),
            ow: u(y[3]),
            sh: u(self.stride[0]),
            sw: u(self.stride[1]),
            ph: u(self.pad[0]),
            pw: u(self.pad[1]),
            dh: u(self.dilation[0]),
            dw: u(self.dilation[1]),
            groups: u(self.groups),
        }
    }
}

impl OpDef for Conv2dGeneral {
    fn name(&self) -> &'static str {
        "conv2d_general"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 2 + usize::from(self.bias))?;
        let (x, wt) = self.spec.check(op, inputs[0], inputs[1])?;
        if self.bias && inputs[2].dims != [wt[0]] {
            return Err(Error::shape(
                op,
                format!(
                    "bias must be [{}] for weight {}, got {}",
                    wt[0], inputs[1], inputs[2]
                ),
            ));
        }
        let [oh, ow] = self.spec.out_size([x[2], x[3]], [wt[2], wt[3]], op)?;
        Ok(vec![Shape::f32([x[0], wt[0], oh, ow])])
    }

    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let (x, w) = (cx.input(0), cx.input(1));
        let [_, _, h, wd] = cx.shape(x).dims4(self.name(), "input")?;
        let [_, _, kh, kw] = cx.shape(w).dims4(self.name(), "weight")?;
        let spec = self.spec;
        let grad_x = cx.push(Conv2dGeneralBackwardInput { spec, h, w: wd }, &[grad_y, w])?[0];
        let grad_w = cx.push(Conv2dGeneralBackwardWeight { spec, kh, kw }, &[grad_y, x])?[0];
        cx.set_grad_input(0, grad_x);
        cx.set_grad_input(1, grad_w);
        if self.bias {
            let grad_b = cx.push(BiasAddBackward, &[grad_y])?[0];
            cx.set_grad_input(2, grad_b);
        }
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        let y = dims_of(outputs[0]);
        let params = self.spec.params(dims_of(inputs[0]), dims_of(inputs[1]), y);
        let entry = if self.bias {
            "conv2d_general_forward"
        } else {
            "conv2d_general_forward_nobias"
        };
        KernelCall::per_element_wg(&SHADER, entry, &params, outputs[0].numel(), WG)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        conv_reference(&self.spec, inputs, &mut outputs[0]);
    }
}

impl OpDef for Conv2dGeneralBackwardInput {
    fn name(&self) -> &'static str {
        "conv2d_general_backward_input"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 2)?;
        let [n, c_out, oh, ow] = inputs[0].dims4(op, "grad_y")?;
        let [wc_out, cig, kh, kw] = inputs[1].dims4(op, "weight")?;
        self.spec.check_groups(op, cig * self.spec.groups, c_out)?;
        let out = self.spec.out_size([self.h, self.w], [kh, kw], op)?;
        if c_out != wc_out || out != [oh, ow] {
            return Err(Error::shape(
                op,
                format!(
                    "grad_y {} does not match weight {} and input size {}x{}",
                    inputs[0], inputs[1], self.h, self.w
                ),
            ));
        }
        Ok(vec![Shape::f32([
            n,
            cig * self.spec.groups,
            self.h,
            self.w,
        ])])
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        gather_call(&self.spec, "conv2d_general_backward_input", inputs, outputs)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        conv_backward_input_reference(&self.spec, inputs[0], inputs[1], &mut outputs[0]);
    }
}

/// A gather over the convolution outputs each element of `outputs[0]` feeds (the input
/// gradient, or a transposed convolution): inputs `(grad_y or x, w, ...)`, one invocation per
/// output element.
fn gather_call(
    spec: &Conv2dSpec,
    entry: &'static str,
    inputs: &[&Shape],
    outputs: &[&Shape],
) -> KernelCall {
    let params = spec.params(dims_of(outputs[0]), dims_of(inputs[1]), dims_of(inputs[0]));
    KernelCall::per_element_wg(&SHADER, entry, &params, outputs[0].numel(), WG)
}

/// One workgroup per element of `numel`, folded into `y` past the per-dimension limit (the
/// shader rebuilds the index as `wid.x + wid.y * nwg.x`).
fn workgroup_per_element(numel: usize) -> [u32; 3] {
    let n = numel.max(1) as u32;
    let x = n.min(crate::ir::MAX_WORKGROUPS_PER_DIM);
    [x, n.div_ceil(x), 1]
}

impl OpDef for Conv2dGeneralBackwardWeight {
    fn name(&self) -> &'static str {
        "conv2d_general_backward_weight"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 2)?;
        let [n, c_out, oh, ow] = inputs[0].dims4(op, "grad_y")?;
        let [xn, c_in, h, w] = inputs[1].dims4(op, "input")?;
        self.spec.check_groups(op, c_in, c_out)?;
        let out = self.spec.out_size([h, w], [self.kh, self.kw], op)?;
        if n != xn || out != [oh, ow] {
            return Err(Error::shape(
                op,
                format!("grad_y {} does not match input {}", inputs[0], inputs[1]),
            ));
        }
        Ok(vec![Shape::f32([
            c_out,
            c_in / self.spec.groups,
            self.kh,
            self.kw,
        ])])
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        let params = self
            .spec
            .params(dims_of(inputs[1]), dims_of(outputs[0]), dims_of(inputs[0]));
        KernelCall::grid(
            &SHADER,
            "conv2d_general_backward_weight",
            &params,
            workgroup_per_element(outputs[0].numel()),
        )
        .with_overrides(&[("WG", f64::from(WG))])
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        conv_backward_weight_reference(&self.spec, inputs[0], inputs[1], &mut outputs[0]);
    }
}

impl ConvTranspose2d {
    /// The output size for an `h`×`w` input and a `kh`×`kw` kernel, checked.
    fn out_size(&self, [h, w]: [usize; 2], k: [usize; 2]) -> Result<[usize; 2]> {
        let op = "conv_transpose2d";
        let s = &self.spec;
        let mut res = [0; 2];
        for axis in 0..2 {
            let (stride, pad, dil, extra) = (
                s.stride[axis],
                s.pad[axis],
                s.dilation[axis],
                self.output_padding[axis],
            );
            if stride == 0 || dil == 0 || k[axis] == 0 {
                return Err(Error::shape(
                    op,
                    format!(
                        "kernel {k:?}, stride {:?} and dilation {:?} must all be positive",
                        s.stride, s.dilation
                    ),
                ));
            }
            // PyTorch also accepts an output padding below the dilation alone; the rows it
            // adds past the stride are reached by no input, and striate refuses them.
            if extra >= stride {
                return Err(Error::shape(
                    op,
                    format!(
                        "output padding {:?} must be smaller than the stride {:?}",
                        self.output_padding, s.stride
                    ),
                ));
            }
            let full = ([h, w][axis] - 1) * stride + dil * (k[axis] - 1) + extra + 1;
            res[axis] = full
                .checked_sub(2 * pad)
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    Error::shape(
                        op,
                        format!(
                            "padding {:?} leaves no output from a {h}x{w} input and kernel {k:?}",
                            s.pad
                        ),
                    )
                })?;
        }
        Ok(res)
    }
}

impl OpDef for ConvTranspose2d {
    fn name(&self) -> &'static str {
        "conv_transpose2d"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 3)?;
        let [n, c_in, h, w] = inputs[0].dims4(op, "input")?;
        let [wc_in, cog, kh, kw] = inputs[1].dims4(op, "weight")?;
        for (what, s) in [
            ("input", inputs[0]),
            ("weight", inputs[1]),
            ("bias", inputs[2]),
        ] {
            expect_dtype(op, what, s, DType::F32)?;
        }
        let c_out = cog * self.spec.groups;
        self.spec.check_groups(op, c_in, c_out)?;
        if wc_in != c_in {
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
                    "bias must be [{c_out}] for weight {} and {} groups, got {}",
                    inputs[1], self.spec.groups, inputs[2]
                ),
            ));
        }
        let [oh, ow] = self.out_size([h, w], [kh, kw])?;
        Ok(vec![Shape::f32([n, c_out, oh, ow])])
    }

    // y = Tᵀ(x, w) + b, the adjoint of the convolution T ⇒ grad_x = T(grad_y, w),
    // grad_w = T's weight gradient with x as the output gradient and grad_y as the input.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let (x, w) = (cx.input(0), cx.input(1));
        let [_, _, kh, kw] = cx.shape(w).dims4(self.name(), "weight")?;
        let spec = self.spec;
        let conv = Conv2dGeneral { spec, bias: false };
        let grad_x = cx.push(conv, &[grad_y, w])?[0];
        let grad_w = cx.push(Conv2dGeneralBackwardWeight { spec, kh, kw }, &[x, grad_y])?[0];
        let grad_b = cx.push(BiasAddBackward, &[grad_y])?[0];
        cx.set_grad_input(0, grad_x);
        cx.set_grad_input(1, grad_w);
        cx.set_grad_input(2, grad_b);
        Ok(())
    }

    // The convolution this is the adjoint of runs from y's shape to x's.
    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        gather_call(&self.spec, "conv_transpose2d_forward", inputs, outputs)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let y = &mut outputs[0];
        conv_backward_input_reference(&self.spec, inputs[0], inputs[1], y);
        let [_, c, oh, ow] = dims_of(&y.shape);
        let b = inputs[2].f32();
        for (i, v) in y.f32_mut().iter_mut().enumerate() {
            *v = (f64::from(*v) + f64::from(b[(i / (oh * ow)) % c])) as f32;
        }
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    // [n, c_in, h, w, c_out, groups], [[kh, kw], stride, pad, dilation]: groups that leave odd
    // channel counts per group, depthwise with a channel multiplier, non-square everything,
    // batch 1, and one square ungrouped case (the general kernels accept it too).
    let shapes = [
        ([2, 6, 7, 9, 9, 3], [[3, 3], [1, 1], [1, 1], [1, 1]]),
        ([1, 4, 9, 8, 8, 4], [[3, 3], [2, 2], [1, 1], [1, 1]]),
        ([2, 3, 8, 11, 6, 3], [[3, 2], [2, 1], [1, 0], [1, 2]]),
        ([3, 2, 10, 7, 5, 1], [[1, 4], [1, 3], [0, 2], [2, 1]]),
        ([2, 4, 6, 7, 6, 2], [[2, 3], [1, 2], [1, 1], [2, 1]]),
        ([1, 3, 7, 6, 4, 1], [[3, 3], [1, 1], [1, 1], [1, 1]]),
    ];
    for ([n, c_in, h, w, c_out, groups], [[kh, kw], stride, pad, dilation]) in shapes {
        let spec = Conv2dSpec {
            stride,
            pad,
            dilation,
            groups,
        };
        let [oh, ow] = spec
            .out_size([h, w], [kh, kw], "conv2d_general")
            .expect("catalog shapes are valid");
        let x = Shape::f32([n, c_in, h, w]);
        let wt = Shape::f32([c_out, c_in / groups, kh, kw]);
        let gy = Shape::f32([n, c_out, oh, ow]);
        // The bias-free form is what conv_transpose2d's backward runs.
        let bias = n != 1;
        let mut inputs = vec![x.clone(), wt.clone()];
        if bias {
            inputs.push(Shape::f32([c_out]));
        }
        res.push(CatalogEntry::new(Conv2dGeneral { spec, bias }, inputs));
        res.push(CatalogEntry::new(
            Conv2dGeneralBackwardInput { spec, h, w },
            vec![gy.clone(), wt],
        ));
        res.push(CatalogEntry::new(
            Conv2dGeneralBackwardWeight { spec, kh, kw },
            vec![gy, x],
        ));
    }
    // [n, c_in, h, w, c_out, groups], [[kh, kw], stride, pad, dilation, output_padding].
    let transposed = [
        ([2, 3, 5, 4, 4, 1], [[3, 3], [2, 2], [1, 1], [1, 1], [1, 1]]),
        ([1, 4, 4, 5, 6, 2], [[2, 3], [2, 1], [0, 1], [1, 1], [1, 0]]),
        ([2, 2, 3, 6, 3, 1], [[3, 2], [3, 2], [1, 0], [1, 2], [2, 1]]),
        ([2, 4, 5, 5, 4, 4], [[3, 3], [1, 2], [0, 0], [2, 2], [0, 1]]),
    ];
    for ([n, c_in, h, w, c_out, groups], [[kh, kw], stride, pad, dilation, output_padding]) in
        transposed
    {
        let spec = Conv2dSpec {
            stride,
            pad,
            dilation,
            groups,
        };
        res.push(CatalogEntry::new(
            ConvTranspose2d {
                spec,
                output_padding,
            },
            vec![
                Shape::f32([n, c_in, h, w]),
                Shape::f32([c_in, c_out / groups, kh, kw]),
                Shape::f32([c_out]),
            ],
        ));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn depthwise_reference_keeps_channels_apart() {
        // Two channels, groups 2, 1x1 kernels 2 and 3: each channel scales by its own weight.
        let x = CpuTensor::from_f32([1, 2, 1, 2], vec![1.0, 2.0, 10.0, 20.0]);
        let w = CpuTensor::from_f32([2, 1, 1, 1], vec![2.0, 3.0]);
        let b = CpuTensor::from_f32([2], vec![0.5, -0.5]);
        let op = Conv2dGeneral {
            spec: Conv2dSpec::default().groups(2),
            bias: true,
        };
        let y = run_reference(&op, &[x, w, b]);
        assert_eq!(y[0].f32(), [2.5, 4.5, 29.5, 59.5]);
    }

    #[test]
    fn transposed_output_size_and_values_match_pytorch() {
        // F.conv_transpose2d(arange(4).view(1,1,2,2), ones(1,1,2,2), stride=2) places each
        // input value in its own 2x2 block.
        let x = CpuTensor::from_f32([1, 1, 2, 2], vec![0.0, 1.0, 2.0, 3.0]);
        let w = CpuTensor::from_f32([1, 1, 2, 2], vec![1.0; 4]);
        let b = CpuTensor::from_f32([1], vec![0.0]);
        let op = ConvTranspose2d {
            spec: Conv2dSpec::default().stride(2),
            output_padding: [0, 0],
        };
        let y = run_reference(&op, &[x, w, b]);
        assert_eq!(y[0].shape.dims, [1, 1, 4, 4]);
        #[rustfmt::skip]
        let want = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 2.0, 2.0, 3.0, 3.0];
        assert_eq!(y[0].f32(), want);
        // PyTorch: (5 - 1)·2 − 2·1 + 1·(3 − 1) + 1 + 1 = 10 for stride 2, padding 1,
        // output_padding 1, kernel 3.
        let op = ConvTranspose2d {
            spec: Conv2dSpec::default().stride(2).padding(1),
            output_padding: [1, 0],
        };
        assert_eq!(op.out_size([5, 5], [3, 3]).unwrap(), [10, 9]);
    }

    #[test]
    fn bad_groups_and_output_padding_are_named() {
        let op = Conv2dGeneral {
            spec: Conv2dSpec::default().groups(4),
            bias: false,
        };
        let err = op
            .infer(&[&Shape::f32([1, 6, 5, 5]), &Shape::f32([8, 1, 3, 3])])
            .unwrap_err();
        assert!(err.to_string().contains("groups 4 must divide"), "{err}");
        let op = ConvTranspose2d {
            spec: Conv2dSpec::default().stride(2),
            output_padding: [2, 0],
        };
        let err = op
            .infer(&[
                &Shape::f32([1, 2, 4, 4]),
                &Shape::f32([2, 3, 3, 3]),
                &Shape::f32([3]),
            ])
            .unwrap_err();
        assert!(err.to_string().contains("output padding [2, 0]"), "{err}");
    }
}
