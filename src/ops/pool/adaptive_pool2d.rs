//! Adaptive average and max pooling to a fixed output size (PyTorch's `AdaptiveAvgPool2d`,
//! `AdaptiveMaxPool2d`): output cell `(i, j)` pools input rows `[⌊i·h/oh⌋, ⌈(i+1)·h/oh⌉)` and
//! the columns likewise, so any input size maps to `(oh, ow)`; `(1, 1)` is global pooling.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/adaptive_pool2d.wgsl`.
pub static SHADER: Shader = Shader::new(
    "adaptive_pool2d",
    include_str!("../../../shaders/adaptive_pool2d.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/adaptive_pool2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    _pad: [u32; 2],
}

impl Params {
    fn new(x: &Shape, [oh, ow]: [usize; 2]) -> Self {
        let [n, c, h, w] = x.dims4_u32();
        Params {
            n,
            c,
            h,
            w,
            oh: oh as u32,
            ow: ow as u32,
            _pad: [0; 2],
        }
    }
}

/// Average or max.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdaptiveKind {
    /// Mean of each window.
    Avg,
    /// Maximum of each window, with its flat input index (`argmax`, second output).
    Max,
}

/// `x: [n, c, h, w]` → `y: [n, c, oh, ow]` (and `argmax` for max pooling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptivePool2d {
    /// Average or max.
    pub kind: AdaptiveKind,
    /// Output size `(oh, ow)`.
    pub out: [usize; 2],
}

/// `grad_x: [n, c, h, w]` from `grad_y` (and `argmax` for max pooling).
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptivePool2dBackward {
    /// The forward op.
    pub pool: AdaptivePool2d,
    /// The forward input's shape.
    pub x: Shape,
}

/// The input range `[start, end)` output index `i` of `out` pools from `size`.
fn window(i: usize, size: usize, out: usize) -> std::ops::Range<usize> {
    (i * size) / out..((i + 1) * size).div_ceil(out)
}

/// Calls `f(out_idx, in_idx)` for every input element of every window.
fn for_each_window(x: &Shape, [oh, ow]: [usize; 2], mut f: impl FnMut(usize, usize)) {
    let [n, c, h, w] = x.dims4_u32().map(|v| v as usize);
    for nc in 0..n * c {
        for i in 0..oh {
            for j in 0..ow {
                let o = (nc * oh + i) * ow + j;
                for r in window(i, h, oh) {
                    for s in window(j, w, ow) {
                        f(o, (nc * h + r) * w + s);
                    }
                }
            }
        }
    }
}

fn window_size(o: usize, x: &Shape, [oh, ow]: [usize; 2]) -> usize {
    let [_, _, h, w] = x.dims4_u32().map(|v| v as usize);
    let (i, j) = ((o / ow) % oh, o % ow);
    window(i, h, oh).len() * window(j, w, ow).len()
}

impl AdaptivePool2d {
    fn names(self) -> (&'static str, &'static str) {
        match self.kind {
            AdaptiveKind::Avg => ("adaptive_avg_pool2d", "adaptive_avg_pool2d_backward"),
            AdaptiveKind::Max => ("adaptive_max_pool2d", "adaptive_max_pool2d_backward"),
        }
    }
}

impl OpDef for AdaptivePool2d {
    fn name(&self) -> &'static str {
        self.names().0
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        let [n, c, h, w] = inputs[0].dims4(self.name(), "input")?;
        expect_dtype(self.name(), "input", inputs[0], DType::F32)?;
        let [oh, ow] = self.out;
        if oh == 0 || ow == 0 || h == 0 || w == 0 {
            return Err(Error::shape(
                self.name(),
                format!(
                    "output size ({oh}, {ow}) and input {} must be non-empty",
                    inputs[0]
                ),
            ));
        }
        let y = Shape::f32([n, c, oh, ow]);
        Ok(match self.kind {
            AdaptiveKind::Avg => vec![y],
            AdaptiveKind::Max => vec![y, Shape::u32([n, c, oh, ow])],
        })
    }

    // avg: each input gets grad_y / window size from every window covering it;
    // max: the gradient goes to each window's argmax.
    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let x = cx.shape(cx.input(0)).clone();
        let op = AdaptivePool2dBackward { pool: *self, x };
        let inputs = match self.kind {
            AdaptiveKind::Avg => vec![grad_y],
            AdaptiveKind::Max => vec![grad_y, cx.output(1)],
        };
        let grad_x = cx.push(op, &inputs)?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        let entry = match self.kind {
            AdaptiveKind::Avg => "adaptive_avg_pool2d_forward",
            AdaptiveKind::Max => "adaptive_max_pool2d_forward",
        };
        let params = Params::new(inputs[0], self.out);
        KernelCall::per_element(&SHADER, entry, &params, outputs[0].numel())
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let x = inputs[0].f32();
        let n_out = outputs[0].shape.numel();
        match self.kind {
            AdaptiveKind::Avg => {
                let mut sums = vec![0f64; n_out];
                for_each_window(&inputs[0].shape, self.out, |o, i| {
                    sums[o] += f64::from(x[i])
                });
                for (o, y) in outputs[0].f32_mut().iter_mut().enumerate() {
                    *y = (sums[o] / window_size(o, &inputs[0].shape, self.out) as f64) as f32;
                }
            }
            AdaptiveKind::Max => {
                let mut best: Vec<Option<usize>> = vec![None; n_out];
                for_each_window(&inputs[0].shape, self.out, |o, i| {
                    if best[o].is_none_or(|b| x[i] > x[b]) {
                        best[o] = Some(i);
                    }
                });
                let best: Vec<usize> = best
                    .into_iter()
                    .map(|b| b.expect("windows are non-empty"))
                    .collect();
                for (o, &b) in best.iter().enumerate() {
                    outputs[0].f32_mut()[o] = x[b];
                }
                for (o, &b) in best.iter().enumerate() {
                    outputs[1].u32_mut()[o] = b as u32;
                }
            }
        }
    }
}

impl OpDef for AdaptivePool2dBackward {
    fn name(&self) -> &'static str {
        self.pool.names().1
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        let n_inputs = match self.pool.kind {
            AdaptiveKind::Avg => 1,
            AdaptiveKind::Max => 2,
        };
        expect_arity(self.name(), inputs, n_inputs)?;
        let want = &self.pool.infer(&[&self.x])?[0];
        if inputs[0] != want {
            return Err(Error::shape(
                self.name(),
                format!("grad_y {} must be {want} for input {}", inputs[0], self.x),
            ));
        }
        if n_inputs == 2 && inputs[1].dims != want.dims {
            return Err(Error::shape(
                self.name(),
                format!("argmax {} must be {:?}", inputs[1], want.dims),
            ));
        }
        Ok(vec![self.x.clone()])
    }

    fn kernel(&self, _inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        let entry = match self.pool.kind {
            AdaptiveKind::Avg => "adaptive_avg_pool2d_backward",
            AdaptiveKind::Max => "adaptive_max_pool2d_backward",
        };
        let params = Params::new(&self.x, self.pool.out);
        KernelCall::per_element(&SHADER, entry, &params, outputs[0].numel())
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let grad_y = inputs[0].f32();
        let mut acc = vec![0f64; self.x.numel()];
        match self.pool.kind {
            AdaptiveKind::Avg => for_each_window(&self.x, self.pool.out, |o, i| {
                acc[i] += f64::from(grad_y[o]) / window_size(o, &self.x, self.pool.out) as f64;
            }),
            AdaptiveKind::Max => {
                for (o, &a) in inputs[1].u32().iter().enumerate() {
                    acc[a as usize] += f64::from(grad_y[o]);
                }
            }
        }
        for (g, a) in outputs[0].f32_mut().iter_mut().zip(acc) {
            *g = a as f32;
        }
    }
}

impl Graph {
    /// `AdaptiveAvgPool2d((oh, ow))` of `x: [n, c, h, w]`.
    pub fn adaptive_avg_pool2d(&mut self, x: TensorId, out: [usize; 2]) -> Result<TensorId> {
        let pool = AdaptivePool2d {
            kind: AdaptiveKind::Avg,
            out,
        };
        Ok(self.push(pool, &[x])?[0])
    }

    /// `AdaptiveMaxPool2d((oh, ow))` of `x: [n, c, h, w]`; the argmax stays internal.
    pub fn adaptive_max_pool2d(&mut self, x: TensorId, out: [usize; 2]) -> Result<TensorId> {
        let pool = AdaptivePool2d {
            kind: AdaptiveKind::Max,
            out,
        };
        Ok(self.push(pool, &[x])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    // Windows that overlap (5 → 3), that do not divide (7 → 3), global, upsampling (2 → 3),
    // identity.
    for (dims, out) in [
        ([2, 3, 5, 7], [3, 3]),
        ([1, 2, 7, 6], [3, 4]),
        ([2, 3, 4, 5], [1, 1]),
        ([1, 2, 2, 3], [3, 3]),
        ([1, 1, 4, 4], [4, 4]),
    ] {
        let x = Shape::f32(dims);
        for kind in [AdaptiveKind::Avg, AdaptiveKind::Max] {
            let pool = AdaptivePool2d { kind, out };
            res.push(CatalogEntry::new(pool, vec![x.clone()]));
            let y = Shape::f32([dims[0], dims[1], out[0], out[1]]);
            let mut backward_inputs = vec![y.clone()];
            if kind == AdaptiveKind::Max {
                backward_inputs.push(Shape::u32(y.dims.clone()));
            }
            let mut backward = CatalogEntry::new(
                AdaptivePool2dBackward { pool, x: x.clone() },
                backward_inputs,
            );
            if kind == AdaptiveKind::Max {
                // Argmaxes that point into their windows: run the forward on random values.
                let (x, out) = (x.clone(), out);
                backward.prepare = Some(Box::new(move |inputs: &mut [CpuTensor]| {
                    let mut rng = crate::rng::Rng::new(x.numel() as u64);
                    let values = (0..x.numel()).map(|_| rng.normal()).collect();
                    let xs = CpuTensor::from_f32(x.dims.clone(), values);
                    let fwd = crate::ops::testing::run_reference(
                        &AdaptivePool2d {
                            kind: AdaptiveKind::Max,
                            out,
                        },
                        &[xs],
                    );
                    inputs[1] = fwd[1].clone();
                }));
            }
            res.push(backward);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn windows_follow_pytorch() {
        // 5 → 3: rows {0, 1}, {1, 2, 3}, {3, 4}.
        assert_eq!(window(0, 5, 3), 0..2);
        assert_eq!(window(1, 5, 3), 1..4);
        assert_eq!(window(2, 5, 3), 3..5);
        let x = CpuTensor::from_f32([1, 1, 1, 5], vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        let avg = AdaptivePool2d {
            kind: AdaptiveKind::Avg,
            out: [1, 3],
        };
        assert_eq!(
            run_reference(&avg, std::slice::from_ref(&x))[0].f32(),
            [1.5, 3.0, 4.5]
        );
        let max = AdaptivePool2d {
            kind: AdaptiveKind::Max,
            out: [1, 3],
        };
        let out = run_reference(&max, &[x]);
        assert_eq!(out[0].f32(), [2.0, 4.0, 5.0]);
        assert_eq!(out[1].u32(), [1, 3, 4]);
    }
}
