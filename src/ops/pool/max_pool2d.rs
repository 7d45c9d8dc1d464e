//! `max_pool2d` over NCHW input: any [`Pool2d`] (window, stride and implicit −∞ padding per
//! axis, PyTorch's `ceil_mode`; the rules are in `pool/window.rs`).
//!
//! The forward pass also writes the flat input index of each window's maximum, so the
//! backward pass is a cheap gather instead of a second search.

use bytemuck::{Pod, Zeroable};

use crate::ir::{
    expect_arity, BackwardCtx, CpuTensor, DeviceCaps, KernelCall, KernelPlan, OpDef, Shader,
};
use crate::ir::{Graph, Pool2d, TensorId, TensorKind};
use crate::ops::pool::window::PoolWindow;
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/max_pool2d.wgsl`.
pub static SHADER: Shader = Shader::new(
    "max_pool2d",
    concat!(
        include_str!("../../../shaders/max_pool2d.wgsl"),
        include_str!("../../../shaders/div.wgsl")
    ),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/max_pool2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    window: PoolWindow,
    /// max_pool2d_forward: 1 when the input is non-negative (see [`MaxPool2d`]).
    nonneg: u32,
    _pad: [u32; 3],
}

impl Params {
    fn new(window: PoolWindow, nonneg: bool) -> Self {
        Params {
            window,
            nonneg: u32::from(nonneg),
            _pad: [0; 3],
        }
    }
}

/// `y[n, c, i, j] = max over the window`; second output `argmax` (u32, flat input index).
///
/// With `nonneg_input` (set by [`Graph::max_pool2d`] when the input comes from a ReLU) a
/// window whose maximum is 0 has no argmax (`u32::MAX`), so the backward pass sends it no
/// gradient: exactly what the ReLU's backward would have masked, which then passes the
/// gradient through instead of running (`OpDef::gradient_relu_masked`).
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    /// Window, stride, padding.
    pub pool: Pool2d,
    /// The input is never negative.
    pub nonneg_input: bool,
}

/// `grad_x` from `grad_y` and the forward `argmax`; stores the input shape.
#[derive(Clone, Debug)]
pub struct MaxPool2dBackward {
    /// The forward geometry.
    pub pool: Pool2d,
    /// Shape of the forward input.
    pub x: Shape,
    /// The forward had `nonneg_input`: `grad_x` is zero wherever the input was 0.
    pub masks_relu: bool,
}

impl OpDef for MaxPool2d {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        let y = self.pool.infer(self.name(), inputs[0])?;
        let argmax = Shape::u32(y.dims.clone());
        Ok(vec![y, argmax])
    }

    // y = max(window) ⇒ ∂y/∂x = 1 at the argmax, 0 elsewhere.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let x = cx.shape(cx.input(0)).clone();
        let grad_x = cx.push(
            MaxPool2dBackward {
                pool: self.pool,
                x,
                masks_relu: self.nonneg_input,
            },
            &[grad_y, cx.output(1)],
        )?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        let params = Params::new(self.pool.window(inputs[0], outputs[0]), self.nonneg_input);
        KernelCall::per_element(&SHADER, "max_pool2d_forward", &params, outputs[0].numel())
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let x = inputs[0].f32();
        let mut best: Vec<Option<usize>> = vec![None; outputs[0].shape.numel()];
        self.pool
            .for_each_window(&inputs[0].shape, &outputs[0].shape, |o, i| {
                if best[o].is_none_or(|b| x[i] > x[b]) {
                    best[o] = Some(i);
                }
            });
        let best: Vec<usize> = best
            .into_iter()
            .map(|b| b.expect("padding <= k/2 leaves every window a real element"))
            .collect();
        for (o, &i) in best.iter().enumerate() {
            outputs[0].f32_mut()[o] = x[i];
            let none = self.nonneg_input && x[i] <= 0.0;
            outputs[1].u32_mut()[o] = if none { u32::MAX } else { i as u32 };
        }
    }
}

impl OpDef for MaxPool2dBackward {
    fn name(&self) -> &'static str {
        "max_pool2d_backward"
    }

    fn gradient_relu_masked(&self) -> bool {
        self.masks_relu
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        let y = self.pool.infer(self.name(), &self.x)?;
        if inputs[0] != &y || inputs[1].dims != y.dims || inputs[1].dtype != DType::U32 {
            return Err(Error::shape(
                self.name(),
                format!(
                    "grad_y {} and argmax {} must both be {:?}",
                    inputs[0], inputs[1], y.dims
                ),
            ));
        }
        Ok(vec![self.x.clone()])
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        KernelCall::per_element(
            &SHADER,
            "max_pool2d_backward",
            &Params::new(self.pool.window(outputs[0], inputs[0]), false),
            outputs[0].numel(),
        )
    }

    // Windows that tile the input exactly: scatter each window instead of gathering.
    fn plans(&self, inputs: &[&Shape], outputs: &[&Shape], _caps: &DeviceCaps) -> Vec<KernelPlan> {
        let gather = KernelPlan::direct(self.kernel(inputs, outputs), 2, 1);
        let Pool2d { k, stride, pad, .. } = self.pool;
        let dims = &outputs[0].dims;
        let tiles = stride == k
            && pad == [0, 0]
            && dims[2].is_multiple_of(k[0])
            && dims[3].is_multiple_of(k[1]);
        if !tiles {
            return vec![gather];
        }
        let tiled = KernelPlan {
            variant: "tiled".into(),
            ..KernelPlan::direct(
                KernelCall::per_element(
                    &SHADER,
                    "max_pool2d_backward_tiled",
                    &Params::new(self.pool.window(outputs[0], inputs[0]), false),
                    inputs[0].numel(),
                ),
                2,
                1,
            )
        };
        vec![tiled, gather]
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let (grad_y, argmax) = (inputs[0].f32(), inputs[1].u32());
        let grad_x = outputs[0].f32_mut();
        grad_x.fill(0.0);
        for (o, &i) in argmax.iter().enumerate() {
            if i != u32::MAX {
                grad_x[i as usize] += grad_y[o];
            }
        }
    }
}

impl Graph {
    /// `F.max_pool2d(x, kernel_size, stride, padding, ceil_mode=...)` for `x: [n, c, h, w]`:
    /// `pool` is a window alone (`2`, `(3, 2)`: stride equal to it) or any [`Pool2d`]
    /// (`Pool2d::new(3).stride(2).padding(1)`). Returns `y` (the argmax output stays in the
    /// graph for the backward pass).
    pub fn max_pool2d(&mut self, x: TensorId, pool: impl Into<Pool2d>) -> Result<TensorId> {
        let pool = pool.into();
        let producer = match self.tensor(x).kind {
            TensorKind::Activation(node) => Some(self.node(node).clone()),
            _ => None,
        };
        let op = MaxPool2d {
            pool,
            nonneg_input: producer.as_ref().is_some_and(|n| n.op.output_nonnegative()),
        };
        // A producer that can pool in its own kernel (conv2d_relu) does; its unpooled node is
        // left for any other consumer, and dropped by the scheduler if there is none. Invalid
        // geometry is reported by the plain pool, as the user wrote it.
        let valid = op.infer(&[self.shape(x)]).is_ok();
        if let Some(node) = producer.as_ref().filter(|_| valid) {
            if let Some(fused) = node.op.absorb_max_pool(&pool) {
                let scope = self.scope().to_string();
                self.set_scope(format!("{}+{scope}", node.name));
                let y = self.push_arc(fused, &node.inputs);
                self.set_scope(scope);
                return Ok(y?[0]);
            }
        }
        Ok(self.push(op, &[x])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    // The last two tile their input exactly (the scattering backward plan).
    // Non-square windows, strides and padding, ceil mode with a partial last window (and one
    // where ceil mode drops the window that would start in the right padding).
    for (h, w, pool) in [
        (5, 7, Pool2d::new(2).stride(2)),
        (9, 9, Pool2d::new(3).stride(2).padding(1)),
        (8, 6, Pool2d::new(3).stride(1).padding(1)),
        (7, 9, Pool2d::new((3, 2)).stride((2, 1)).padding((1, 0))),
        (6, 7, Pool2d::new(3).stride(2).ceil_mode(true)),
        (
            5,
            8,
            Pool2d::new((2, 3))
                .stride((2, 3))
                .padding((1, 1))
                .ceil_mode(true),
        ),
        (6, 10, Pool2d::new(2).stride(2)),
        (9, 6, Pool2d::new(3).stride(3)),
    ] {
        let x = Shape::f32([2, 3, h, w]);
        res.push(CatalogEntry::new(
            MaxPool2d {
                pool,
                nonneg_input: false,
            },
            vec![x.clone()],
        ));
        // Over a ReLU's output: non-negative values, some windows all zero (no argmax).
        let mut entry = CatalogEntry::new(
            MaxPool2d {
                pool,
                nonneg_input: true,
            },
            vec![x.clone()],
        );
        entry.prepare = Some(Box::new(|inputs: &mut [CpuTensor]| {
            for v in inputs[0].f32_mut() {
                *v = v.max(0.0);
            }
        }));
        // Zeros are the ReLU's kink: tests/train.rs checks the fused gradient equals the
        // unfused one instead.
        entry.finite_differences = false;
        res.push(entry);
        let y = pool
            .infer("max_pool2d", &x)
            .expect("catalog shapes are valid");
        let mut entry = CatalogEntry::new(
            MaxPool2dBackward {
                pool,
                x,
                masks_relu: false,
            },
            vec![y.clone(), Shape::u32(y.dims.clone())],
        );
        let y = y.clone();
        entry.u32_bound = u32::MAX;
        // Each argmax must point into its own window, as the forward pass guarantees: map the
        // random draw onto one of the window's elements.
        entry.prepare = Some(Box::new(move |inputs: &mut [CpuTensor]| {
            let mut windows: Vec<Vec<usize>> = vec![Vec::new(); y.numel()];
            pool.for_each_window(&Shape::f32([2, 3, h, w]), &y, |o, i| windows[o].push(i));
            for (o, a) in inputs[1].u32_mut().iter_mut().enumerate() {
                *a = windows[o][*a as usize % windows[o].len()] as u32;
            }
        }));
        res.push(entry);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn reference_takes_window_maximum() {
        // 4×4 arange, k = stride = 2: each window's maximum is its bottom-right element.
        let x = CpuTensor::from_f32([1, 1, 4, 4], (0..16).map(|v| v as f32).collect());
        let out = run_reference(
            &MaxPool2d {
                pool: Pool2d::new(2),
                nonneg_input: false,
            },
            &[x],
        );
        assert_eq!(out[0].f32(), [5.0, 7.0, 13.0, 15.0]);
        assert_eq!(out[1].u32(), [5, 7, 13, 15]);
    }
}
