//! `bias_add`: one bias per channel (dim 1) of a `[n, c, ...]` tensor, and the bias gradient
//! (a per-channel sum), which conv2d's backward reuses.

use bytemuck::{Pod, Zeroable};

use crate::ir::{
    expect_arity, expect_dtype, BackwardCtx, CpuTensor, DeviceCaps, KernelCall, KernelPlan, OpDef,
    Operand, ScratchSpec, Shader,
};
use crate::ir::{Graph, TensorId};
use crate::ops::{reduction_splits, CatalogEntry};
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
    /// The bias gradient's splits of the outer range, and outer indices per split.
    splits: u32,
    chunk: u32,
    _pad: [u32; 3],
}

/// Fewest values one split of a channel sums.
const SPLIT_MIN_VALUES: usize = 64;

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
        splits: 1,
        chunk: outer as u32,
        _pad: [0; 3],
    }
}

/// `params` with the outer range split for the GPU form of the bias gradient, or `None` where
/// a channel has too few values to split.
fn split_params(s: &Shape) -> Option<Params> {
    let (outer, c, inner) = split(s);
    let (splits, chunk) = reduction_splits(c, outer, SPLIT_MIN_VALUES.div_ceil(inner.max(1)))?;
    Some(Params {
        splits: splits as u32,
        chunk: chunk as u32,
        ..params(s)
    })
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

    fn plans(&self, inputs: &[&Shape], _outputs: &[&Shape], caps: &DeviceCaps) -> Vec<KernelPlan> {
        bias_grad_plans(caps, inputs[0], Operand::Input(0), Operand::Output(0))
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

/// The plans of the bias gradient of `grad_y` (bound as `input`) into `output`, for this op
/// and for ops that form a bias gradient after their own work: on GPUs, where a channel has
/// values enough, first (channel, split) workgroups into partial sums and a combine (`c`
/// workgroups alone would leave most of a large GPU idle); then one workgroup per channel.
pub(crate) fn bias_grad_plans(
    caps: &DeviceCaps,
    grad_y: &Shape,
    input: Operand,
    output: Operand,
) -> Vec<KernelPlan> {
    let p = params(grad_y);
    let sums = KernelCall::grid(&SHADER, "bias_add_backward_bias", &p, [p.c, 1, 1]);
    let direct = KernelPlan {
        variant: "direct".into(),
        scratch: Vec::new(),
        calls: vec![(sums, vec![input, output])],
        copies: Vec::new(),
    };
    let Some(p) = split_params(grad_y).filter(|_| caps.workgroup_tiles) else {
        return vec![direct];
    };
    let part = ScratchSpec::Buffer {
        bytes: 4 * u64::from(p.c) * u64::from(p.splits),
    };
    let sums = KernelCall::grid(&SHADER, "bias_add_backward_bias", &p, [p.c, p.splits, 1]);
    let combine =
        KernelCall::per_element(&SHADER, "bias_add_backward_bias_combine", &p, p.c as usize);
    let split = KernelPlan {
        variant: "split".into(),
        scratch: vec![part],
        calls: vec![
            (sums, vec![input, Operand::Scratch(0)]),
            (combine, vec![Operand::Scratch(0), output]),
        ],
        copies: Vec::new(),
    };
    vec![split, direct]
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
        // Split on GPUs: 130 rows into 2 of 65; 37 images into 3 of 10 and one of 7.
        CatalogEntry::new(BiasAddBackward, vec![Shape::f32([130, 9])]),
        CatalogEntry::new(BiasAddBackward, vec![Shape::f32([37, 5, 3, 3])]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_bias_gradients_fill_a_gpu_and_cover_the_batch_once() {
        // A 64-channel convolution at batch 128, 14x14: 16 splits of 8 images each.
        let p = split_params(&Shape::f32([128, 64, 14, 14])).expect("split");
        assert_eq!((p.splits, p.chunk), (16, 8));
        for dims in [vec![130, 9], vec![37, 5, 3, 3], vec![1000, 3, 1, 1]] {
            let s = Shape::f32(dims.clone());
            let p = split_params(&s).expect("split");
            assert!(
                (p.splits - 1) * p.chunk < p.outer,
                "{dims:?}: empty last split"
            );
            assert!(p.splits * p.chunk >= p.outer, "{dims:?}: images left out");
            assert!(
                (p.chunk * p.inner) as usize >= SPLIT_MIN_VALUES,
                "{dims:?}: {} values a split",
                p.chunk * p.inner
            );
        }
        // Under two splits' worth of values per channel: one workgroup per channel.
        for dims in [vec![127, 4], vec![3, 7, 5, 6], vec![1, 2, 100, 100]] {
            assert!(split_params(&Shape::f32(dims)).is_none());
        }
    }

    #[test]
    fn only_gpus_get_the_split_plan() {
        let grad_y = Shape::f32([37, 5, 3, 3]);
        let variants = |workgroup_tiles| {
            let caps = DeviceCaps {
                subgroups: None,
                max_texture_dim: 8192,
                workgroup_tiles,
            };
            let plans = BiasAddBackward.plans(&[&grad_y], &[&Shape::f32([5])], &caps);
            plans.into_iter().map(|p| p.variant).collect::<Vec<_>>()
        };
        assert_eq!(variants(true), ["split", "direct"]);
        assert_eq!(variants(false), ["direct"]);
    }
}
