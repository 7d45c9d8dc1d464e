//! `bias_add`: one bias per channel (dim 1) of a `[n, c, ...]` tensor, and the bias gradient
//! (a per-channel sum), which conv2d's backward reuses.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/bias_add.wgsl`.
pub static SHADER: Shader = Shader::new(
    "bias_add",
    include_str!("../../../shaders/bias_add.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/bias_add.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    outer: u32,
    c: u32,
    inner: u32,
    _pad: u32,
}

/// `y[o, ch, i] = x[o, ch, i] + b[ch]` for `x: [n, c, ...]`, `b: [c]`.
#[derive(Clone, Copy, Debug)]
pub struct BiasAdd;

/// `grad_b[ch] = Σ grad_y[:, ch, ...]`.
#[derive(Clone, Copy, Debug)]
pub struct BiasAddBackward;

/// (outer, c, inner) of a `[n, c, ...]` shape.
fn split(s: &Shape) -> (usize, usize, usize) {
    (s.dims[0], s.dims[1], s.dims[2..].iter().product())
}

fn params(s: &Shape) -> Params {
    let (outer, c, inner) = split(s);
    Params {
        outer: outer as u32,
        c: c as u32,
        inner: inner as u32,
        _pad: 0,
    }
}

fn check_rank(op: &'static str, s: &Shape) -> Result<()> {
    expect_dtype(op, "input", s, DType::F32)?;
    if s.dims.len() < 2 {
        return Err(Error::shape(
            op,
            format!("input must be [n, c, ...], got {s}"),
        ));
    }
    Ok(())
}

impl OpDef for BiasAdd {
    fn name(&self) -> &'static str {
        "bias_add"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        check_rank(self.name(), inputs[0])?;
        if inputs[1].dims != [inputs[0].dims[1]] {
            return Err(Error::shape(
                self.name(),
                format!(
                    "bias must be [{}] for input {}, got {}",
                    inputs[0].dims[1], inputs[0], inputs[1]
                ),
            ));
        }
        Ok(vec![inputs[0].clone()])
    }

    // y = x + b ⇒ grad_x = grad_y, grad_b = Σ_{o,i} grad_y.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let grad_b = cx.push(BiasAddBackward, &[grad_y])?[0];
        cx.set_grad_input(0, grad_y);
        cx.set_grad_input(1, grad_b);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        KernelCall::per_element(
            &SHADER,
            "bias_add_forward",
            &params(inputs[0]),
            inputs[0].numel(),
        )
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (_, c, inner) = split(&inputs[0].shape);
        let (x, b) = (inputs[0].f32(), inputs[1].f32());
        for (i, y) in outputs[0].f32_mut().iter_mut().enumerate() {
            *y = x[i] + b[(i / inner) % c];
        }
    }
}

impl OpDef for BiasAddBackward {
    fn name(&self) -> &'static str {
        "bias_add_backward_bias"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        check_rank(self.name(), inputs[0])?;
        Ok(vec![Shape::f32([inputs[0].dims[1]])])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let p = params(inputs[0]);
        KernelCall::grid(&SHADER, "bias_add_backward_bias", &p, [p.c, 1, 1])
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (_, c, inner) = split(&inputs[0].shape);
        let mut acc = vec![0f64; c];
        for (i, &g) in inputs[0].f32().iter().enumerate() {
            acc[(i / inner) % c] += f64::from(g);
        }
        for (g, a) in outputs[0].f32_mut().iter_mut().zip(acc) {
            *g = a as f32;
        }
    }
}

impl Graph {
    /// `y = x + b` with `b: [c]` broadcast over every dim of `x: [n, c, ...]` but the channel.
    pub fn bias_add(&mut self, x: TensorId, b: TensorId) -> Result<TensorId> {
        Ok(self.push(BiasAdd, &[x, b])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::new(BiasAdd, vec![Shape::f32([3, 7, 5, 6]), Shape::f32([7])]),
        CatalogEntry::new(BiasAdd, vec![Shape::f32([33, 10]), Shape::f32([10])]),
        CatalogEntry::new(BiasAddBackward, vec![Shape::f32([3, 7, 5, 6])]),
        CatalogEntry::new(BiasAddBackward, vec![Shape::f32([130, 9])]),
    ]
}
