//! `linear`: a fully connected layer, `y = x·wᵀ + b` with an optional ReLU, as one GEMM with
//! the bias and the ReLU in its epilogue; its backward as two GEMMs, the ReLU's mask folded
//! into the packs of the gradient and the bias gradient summed by the weight-gradient GEMM.
//!
//! A LeNet-5 step ran the three layers as 25 dispatches (matmul packs and GEMM, `bias_add`,
//! `relu`, and their backward ops); as `linear` they are 17. Shapes: `x: [n, in]`,
//! `w: [out, in]` (PyTorch's layout), `b: [out]`, `y: [n, out]`.
//!
//! The forward GEMM computes `yᵀ = w·xᵀ` (rows `out`, so the bias is a per-row epilogue term)
//! and its strided epilogue stores it as `y`.

use crate::ir::{
    expect_arity, expect_dtype, BackwardCtx, CpuTensor, DeviceCaps, KernelCall, KernelPlan, OpDef,
    Operand, ScratchSpec,
};
use crate::ir::{Graph, TensorId};
use crate::kernels::gemm::{self, GemmParams, MatrixView};
use crate::kernels::tiled::{self, TiledKind, TiledParams};
use crate::ops::activation::{Activation, ActivationBackward};
use crate::ops::linalg::matmul::Matmul;
use crate::ops::tensor::bias_add::{BiasAdd, BiasAddBackward};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `y = act(x·wᵀ + b)`, `act` = ReLU when `relu`, else identity.
#[derive(Clone, Copy, Debug)]
pub struct Linear {
    /// ReLU after the bias.
    pub relu: bool,
}

/// `grad_x = grad_z·w`, `grad_z = grad_y ⊙ [y > 0]` when `relu` (else `grad_y`).
/// Inputs `(grad_y, y, w)`; `y` is read only when `relu`.
#[derive(Clone, Copy, Debug)]
pub struct LinearBackwardInput {
    /// The forward had a ReLU.
    pub relu: bool,
}

/// `grad_w = grad_zᵀ·x`, `grad_b = Σ_rows grad_z`. Inputs `(grad_y, y, x)`.
#[derive(Clone, Copy, Debug)]
pub struct LinearBackwardWeight {
    /// The forward had a ReLU.
    pub relu: bool,
}

/// (batch, in, out) from `x` and `w`, checking `b` when given.
fn dims(op: &'static str, x: &Shape, w: &Shape, b: Option<&Shape>) -> Result<[usize; 3]> {
    expect_dtype(op, "input", x, DType::F32)?;
    expect_dtype(op, "weight", w, DType::F32)?;
    let [n, fan_in] = x.dims2(op, "input")?;
    let [out, w_in] = w.dims2(op, "weight")?;
    if w_in != fan_in {
        return Err(Error::shape(
            op,
            format!("input {x} has {fan_in} features, weight {w} takes {w_in}"),
        ));
    }
    if let Some(b) = b {
        expect_dtype(op, "bias", b, DType::F32)?;
        if b.dims != [out] {
            return Err(Error::shape(op, format!("bias must be [{out}], got {b}")));
        }
    }
    Ok([n, fan_in, out])
}

/// Checks `grad_y` (and `y`) against `[n, out]`.
fn check_grad(op: &'static str, grad_y: &Shape, y: &Shape, n: usize, out: usize) -> Result<()> {
    for (what, s) in [("grad_y", grad_y), ("y", y)] {
        expect_dtype(op, what, s, DType::F32)?;
        if s.dims != [n, out] {
            return Err(Error::shape(
                op,
                format!("{what} must be [{n}, {out}], got {s}"),
            ));
        }
    }
    Ok(())
}

/// A plan of the fallback calls, with scratch buffers of `scratch_bytes`.
fn fallback(calls: Vec<(KernelCall, Vec<Operand>)>, scratch_bytes: &[u64]) -> KernelPlan {
    KernelPlan {
        copies: Vec::new(),
        variant: "direct".into(),
        scratch: scratch_bytes
            .iter()
            .map(|&bytes| ScratchSpec::Buffer { bytes })
            .collect(),
        calls,
    }
}

/// `grad_y ⊙ [y > 0]` on the CPU.
fn masked(grad_y: &CpuTensor, y: &CpuTensor, relu: bool) -> CpuTensor {
    let mut g = grad_y.clone();
    if relu {
        for (g, &y) in g.f32_mut().iter_mut().zip(y.f32()) {
            if y <= 0.0 {
                *g = 0.0;
            }
        }
    }
    g
}

impl OpDef for Linear {
    fn name(&self) -> &'static str {
        if self.relu {
            "linear_relu"
        } else {
            "linear"
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 3)?;
        let [n, _, out] = dims(self.name(), inputs[0], inputs[1], Some(inputs[2]))?;
        Ok(vec![Shape::f32([n, out])])
    }

    fn output_nonnegative(&self) -> bool {
        self.relu
    }

    // y = act(x·wᵀ + b) ⇒ grad_z = grad_y ⊙ act'(y); grad_x = grad_z·w, grad_w = grad_zᵀ·x,
    // grad_b = Σ grad_z. The mask is applied where grad_z is packed, in both ops.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let (grad_y, y) = (cx.grad_output(0), cx.output(0));
        let (x, w) = (cx.input(0), cx.input(1));
        let relu = self.relu;
        let grad_x = cx.push(LinearBackwardInput { relu }, &[grad_y, y, w])?[0];
        let grads = cx.push(LinearBackwardWeight { relu }, &[grad_y, y, x])?;
        cx.set_grad_input(0, grad_x);
        cx.set_grad_input(1, grads[0]);
        cx.set_grad_input(2, grads[1]);
        Ok(())
    }

    /// The matmul of the fallback plan.
    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        Matmul {
            trans_a: false,
            trans_b: true,
        }
        .kernel(&inputs[..2], outputs)
    }

    // yᵀ[out, n] = w·xᵀ: A = w as stored, B = x read transposed; the epilogue adds b per row,
    // applies the ReLU and stores element (o, i) at y[i, o].
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let [n, fan_in, out] =
            dims(self.name(), inputs[0], inputs[1], None).expect("infer checked the shapes");
        let k_pad = fan_in.div_ceil(4) * 4;
        let a = MatrixView::strided(out, fan_in, fan_in, 1);
        let b = MatrixView {
            rows_pad: k_pad,
            ..MatrixView::strided(fan_in, n, 1, fan_in)
        };
        let params = GemmParams {
            inner: 1,
            batch_stride: out as u32,
            row_stride: 1,
            relu: u32::from(self.relu),
            ..GemmParams::default()
        };
        let packs = [
            a.pack(Operand::Input(1), Operand::Scratch(0)),
            b.pack(Operand::Input(0), Operand::Scratch(1)),
        ];
        // On GPUs, first the workgroup-tiled y = x·wᵀ + b straight from the buffers.
        let tiled_params = TiledParams {
            m: n as u32,
            n: out as u32,
            k: fan_in as u32,
            a_sr: fan_in as u32,
            a_sc: 1,
            b_sr: 1,
            b_sc: fan_in as u32,
            relu: u32::from(self.relu),
            ..TiledParams::default()
        };
        let mut res = tiled::plans(
            caps,
            TiledKind::Matmul { bias: true },
            tiled_params,
            &[
                Operand::Input(0),
                Operand::Input(1),
                Operand::Input(2),
                Operand::Output(0),
            ],
        );
        res.extend(gemm::packed_outer_plans(
            caps,
            [out, fan_in, n],
            &packs,
            params,
            (true, false),
            &[Operand::Input(2), Operand::Output(0)],
        ));
        // Fallback: matmul, bias_add, relu through scratch buffers.
        let y = outputs[0];
        let s = |i| Operand::Scratch(i);
        let mut calls = vec![(
            self.kernel(inputs, outputs),
            vec![Operand::Input(0), Operand::Input(1), s(0)],
        )];
        let biased = if self.relu { s(1) } else { Operand::Output(0) };
        calls.push((
            BiasAdd.kernel(&[y, inputs[2]], &[y]),
            vec![s(0), Operand::Input(2), biased],
        ));
        if self.relu {
            calls.push((
                Activation::Relu.kernel(&[y], &[y]),
                vec![s(1), Operand::Output(0)],
            ));
        }
        res.push(fallback(calls, &[y.bytes(), y.bytes()]));
        res
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let [n, fan_in, out] = dims(self.name(), &inputs[0].shape, &inputs[1].shape, None)
            .expect("infer checked the shapes");
        let (x, w, b) = (inputs[0].f32(), inputs[1].f32(), inputs[2].f32());
        let y = outputs[0].f32_mut();
        for i in 0..n {
            for o in 0..out {
                let acc: f64 = (0..fan_in)
                    .map(|k| f64::from(x[i * fan_in + k]) * f64::from(w[o * fan_in + k]))
                    .sum::<f64>()
                    + f64::from(b[o]);
                let v = acc as f32;
                y[i * out + o] = if self.relu { v.max(0.0) } else { v };
            }
        }
    }
}

impl OpDef for LinearBackwardInput {
    fn name(&self) -> &'static str {
        "linear_backward_input"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 3)?;
        let [out, fan_in] = inputs[2].dims2(op, "weight")?;
        let [n, _] = inputs[0].dims2(op, "grad_y")?;
        check_grad(op, inputs[0], inputs[1], n, out)?;
        Ok(vec![Shape::f32([n, fan_in])])
    }

    /// The matmul of the fallback plan.
    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        Matmul {
            trans_a: false,
            trans_b: false,
        }
        .kernel(&[inputs[0], inputs[2]], outputs)
    }

    // grad_x[n, in] = grad_z·w: A = grad_z (masked while packed), B = w as stored.
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let [n, out] = inputs[0]
            .dims2(self.name(), "grad_y")
            .expect("infer checked");
        let [_, fan_in] = inputs[2]
            .dims2(self.name(), "weight")
            .expect("infer checked");
        let mut res = grad_gemm_plans(
            caps,
            self.relu,
            MatrixView::strided(n, out, out, 1),
            MatrixView::strided(out, fan_in, fan_in, 1),
            false,
            &[Operand::Output(0)],
        );
        // Fallback: relu_backward into scratch, then matmul.
        let (grad, mut calls) = mask_calls(self.relu, inputs[0]);
        calls.push((
            self.kernel(inputs, outputs),
            vec![grad, Operand::Input(2), Operand::Output(0)],
        ));
        res.push(fallback(calls, &[inputs[0].bytes()]));
        res
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let gz = masked(inputs[0], inputs[1], self.relu);
        Matmul {
            trans_a: false,
            trans_b: false,
        }
        .reference(&[&gz, inputs[2]], outputs);
    }
}

/// The texture GEMM plans of a backward product `A·B` into a row-major result: `a` views
/// `grad_y` (input 0; masked by `y`, input 1, while packed when `relu`), `b` views input 2;
/// with `row_sums`, A's row sums go to the second output.
fn grad_gemm_plans(
    caps: &DeviceCaps,
    relu: bool,
    a: MatrixView,
    b: MatrixView,
    row_sums: bool,
    outputs: &[Operand],
) -> Vec<KernelPlan> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let b = MatrixView {
        rows_pad: k.div_ceil(4) * 4,
        ..b
    };
    let pack_a = if relu {
        a.pack_masked(Operand::Input(0), Operand::Input(1), Operand::Scratch(0))
    } else {
        a.pack(Operand::Input(0), Operand::Scratch(0))
    };
    let packs = [pack_a, b.pack(Operand::Input(2), Operand::Scratch(1))];
    let params = GemmParams {
        inner: n as u32,
        row_stride: n as u32,
        ..GemmParams::default()
    };
    gemm::packed_outer_plans(caps, [m, k, n], &packs, params, (false, row_sums), outputs)
}

/// The fallback's ReLU backward (`grad_y` at input 0, `y` at input 1) into scratch 0: the
/// operand holding `grad_z`, and the calls.
fn mask_calls(relu: bool, grad_y: &Shape) -> (Operand, Vec<(KernelCall, Vec<Operand>)>) {
    if !relu {
        return (Operand::Input(0), Vec::new());
    }
    let call = ActivationBackward(Activation::Relu).kernel(&[grad_y, grad_y], &[grad_y]);
    (
        Operand::Scratch(0),
        vec![(
            call,
            vec![Operand::Input(0), Operand::Input(1), Operand::Scratch(0)],
        )],
    )
}

impl OpDef for LinearBackwardWeight {
    fn name(&self) -> &'static str {
        "linear_backward_weight"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let op = self.name();
        expect_arity(op, inputs, 3)?;
        let [n, fan_in] = inputs[2].dims2(op, "input")?;
        let [gn, out] = inputs[0].dims2(op, "grad_y")?;
        if gn != n {
            return Err(Error::shape(
                op,
                format!(
                    "grad_y {} and input {} differ in rows",
                    inputs[0], inputs[2]
                ),
            ));
        }
        check_grad(op, inputs[0], inputs[1], n, out)?;
        Ok(vec![Shape::f32([out, fan_in]), Shape::f32([out])])
    }

    /// The matmul of the fallback plan.
    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        Matmul {
            trans_a: true,
            trans_b: false,
        }
        .kernel(&[inputs[0], inputs[2]], &outputs[..1])
    }

    // grad_w[out, in] = grad_zᵀ·x: A = grad_z read transposed (masked while packed), B = x as
    // stored; the GEMM also writes A's row sums, grad_b.
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        let [n, out] = inputs[0]
            .dims2(self.name(), "grad_y")
            .expect("infer checked");
        let [_, fan_in] = inputs[2]
            .dims2(self.name(), "input")
            .expect("infer checked");
        let mut res = grad_gemm_plans(
            caps,
            self.relu,
            MatrixView::strided(out, n, 1, out),
            MatrixView::strided(n, fan_in, fan_in, 1),
            true,
            &[Operand::Output(0), Operand::Output(1)],
        );
        // Fallback: relu_backward into scratch, matmul, bias_add's reduction.
        let (grad, mut calls) = mask_calls(self.relu, inputs[0]);
        calls.push((
            self.kernel(inputs, outputs),
            vec![grad, Operand::Input(2), Operand::Output(0)],
        ));
        calls.push((
            BiasAddBackward.kernel(&[inputs[0]], &[outputs[1]]),
            vec![grad, Operand::Output(1)],
        ));
        res.push(fallback(calls, &[inputs[0].bytes()]));
        res
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let gz = masked(inputs[0], inputs[1], self.relu);
        Matmul {
            trans_a: true,
            trans_b: false,
        }
        .reference(&[&gz, inputs[2]], &mut outputs[..1]);
        BiasAddBackward.reference(&[&gz], &mut outputs[1..]);
    }
}

impl Graph {
    /// `y = x·wᵀ + b` (PyTorch's `F.linear`) for `x: [n, in]`, `w: [out, in]`, `b: [out]`.
    pub fn linear(&mut self, x: TensorId, w: TensorId, b: TensorId) -> Result<TensorId> {
        Ok(self.push(Linear { relu: false }, &[x, w, b])?[0])
    }

    /// `y = relu(x·wᵀ + b)` in one kernel (bias and ReLU in the GEMM's epilogue).
    pub fn linear_relu(&mut self, x: TensorId, w: TensorId, b: TensorId) -> Result<TensorId> {
        Ok(self.push(Linear { relu: true }, &[x, w, b])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    // (n, in, out): sizes off every tile and texel; one with fewer rows than a subgroup tile.
    for (n, fan_in, out) in [(5, 13, 7), (37, 70, 19), (3, 9, 33)] {
        let (x, w, b) = (
            Shape::f32([n, fan_in]),
            Shape::f32([out, fan_in]),
            Shape::f32([out]),
        );
        let y = Shape::f32([n, out]);
        for relu in [false, true] {
            let mut entry =
                CatalogEntry::new(Linear { relu }, vec![x.clone(), w.clone(), b.clone()]);
            // Hundreds of pre-activations: some sit within a finite-difference step of the
            // ReLU's kink. tests/gradcheck.rs checks this one against linear, then relu.
            entry.finite_differences = !relu || n * out < 200;
            res.push(entry);
            res.push(CatalogEntry::new(
                LinearBackwardInput { relu },
                vec![y.clone(), y.clone(), w.clone()],
            ));
            res.push(CatalogEntry::new(
                LinearBackwardWeight { relu },
                vec![y.clone(), y.clone(), x.clone()],
            ));
        }
    }
    res
}
