//! `local_response_norm` (AlexNet's LRN; PyTorch's `nn.LocalResponseNorm(size, alpha=1e-4,
//! beta=0.75, k=1.0)`): each value divided by `(k + alpha/size · Σ x²)^beta`, the sum over
//! `size` neighbouring channels at the same pixel (channels past the edges count as zeros).

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/local_response_norm.wgsl`.
pub static SHADER: Shader = Shader::new(
    "local_response_norm",
    include_str!("../../../shaders/local_response_norm.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/local_response_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c: u32,
    hw: u32,
    size: u32,
    alpha: f32,
    beta: f32,
    k: f32,
    _pad: u32,
}

/// `y = x · (k + alpha/size · Σ_{window} x²)^(−beta)` over `x: [n, c, h, w]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalResponseNorm {
    /// Channels in the window.
    pub size: usize,
    /// Scale of the sum of squares (PyTorch's default: 1e-4).
    pub alpha: f32,
    /// Exponent (0.75).
    pub beta: f32,
    /// Additive constant (1.0).
    pub k: f32,
}

/// `grad_x` of [`LocalResponseNorm`] from `grad_y` and `x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalResponseNormBackward(pub LocalResponseNorm);

impl LocalResponseNorm {
    /// PyTorch's defaults for a window of `size` channels.
    pub fn new(size: usize) -> Self {
        LocalResponseNorm {
            size,
            alpha: 1e-4,
            beta: 0.75,
            k: 1.0,
        }
    }

    fn check(&self, op: &'static str, x: &Shape) -> Result<()> {
        x.dims4(op, "input")?;
        expect_dtype(op, "input", x, DType::F32)?;
        let valid = self.size > 0
            && self.k > 0.0
            && self.alpha >= 0.0
            && self.alpha.is_finite()
            && self.beta.is_finite();
        if !valid {
            return Err(Error::shape(
                op,
                format!("needs size >= 1, k > 0, alpha >= 0 and a finite beta, got {self:?}"),
            ));
        }
        Ok(())
    }

    fn params(&self, x: &Shape) -> Params {
        let [n, c, h, w] = x.dims4_u32();
        Params {
            n,
            c,
            hw: h * w,
            size: self.size as u32,
            alpha: self.alpha,
            beta: self.beta,
            k: self.k,
            _pad: 0,
        }
    }

    /// Channels `[lo, hi]` in the window of channel `c` of `n_c`.
    fn window(&self, c: usize, n_c: usize) -> std::ops::RangeInclusive<usize> {
        c.saturating_sub(self.size / 2)..=(c + (self.size - 1) / 2).min(n_c - 1)
    }

    /// `s` at every element, in f64.
    fn scales(&self, x: &CpuTensor) -> Vec<f64> {
        let [n, c, h, w] = x.shape.dims4_u32().map(|v| v as usize);
        let hw = h * w;
        let v = x.f32();
        let mut res = vec![0f64; v.len()];
        for b in 0..n {
            for ch in 0..c {
                for pixel in 0..hw {
                    let sum: f64 = self
                        .window(ch, c)
                        .map(|cc| f64::from(v[(b * c + cc) * hw + pixel]).powi(2))
                        .sum();
                    res[(b * c + ch) * hw + pixel] =
                        f64::from(self.k) + f64::from(self.alpha) / self.size as f64 * sum;
                }
            }
        }
        res
    }
}

impl OpDef for LocalResponseNorm {
    fn name(&self) -> &'static str {
        "local_response_norm"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        self.check(self.name(), inputs[0])?;
        Ok(vec![inputs[0].clone()])
    }

    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let grad_x = cx.push(LocalResponseNormBackward(*self), &[grad_y, cx.input(0)])?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        let params = self.params(inputs[0]);
        KernelCall::per_element(&SHADER, "local_response_norm_forward", &params, numel)
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let s = self.scales(inputs[0]);
        let beta = f64::from(self.beta);
        for (i, (y, &x)) in outputs[0]
            .f32_mut()
            .iter_mut()
            .zip(inputs[0].f32())
            .enumerate()
        {
            *y = (f64::from(x) * s[i].powf(-beta)) as f32;
        }
    }
}

impl OpDef for LocalResponseNormBackward {
    fn name(&self) -> &'static str {
        "local_response_norm_backward"
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 2)?;
        self.0.check(self.name(), inputs[1])?;
        if inputs[0] != inputs[1] {
            return Err(Error::shape(
                self.name(),
                format!("grad_y {} and x {} differ", inputs[0], inputs[1]),
            ));
        }
        Ok(vec![inputs[0].clone()])
    }

    fn kernel(&self, inputs: &[&Shape], _outputs: &[&Shape]) -> KernelCall {
        let numel = inputs[0].numel();
        let params = self.0.params(inputs[0]);
        KernelCall::per_element(&SHADER, "local_response_norm_backward", &params, numel)
    }

    // grad_x_j = grad_y_j·s_j^−β − (2αβ/size)·x_j·Σ_{c: j ∈ W(c)} grad_y_c·x_c·s_c^(−β−1).
    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let op = self.0;
        let (grad_y, x) = (inputs[0].f32(), inputs[1].f32());
        let s = op.scales(inputs[1]);
        let [n, c, h, w] = inputs[1].shape.dims4_u32().map(|v| v as usize);
        let hw = h * w;
        let beta = f64::from(op.beta);
        let coef = 2.0 * f64::from(op.alpha) * beta / op.size as f64;
        let grad_x = outputs[0].f32_mut();
        for b in 0..n {
            for j in 0..c {
                for pixel in 0..hw {
                    let at = |ch: usize| (b * c + ch) * hw + pixel;
                    let cross: f64 = (0..c)
                        .filter(|&ch| op.window(ch, c).contains(&j))
                        .map(|ch| {
                            f64::from(grad_y[at(ch)])
                                * f64::from(x[at(ch)])
                                * s[at(ch)].powf(-beta - 1.0)
                        })
                        .sum();
                    let i = at(j);
                    grad_x[i] = (f64::from(grad_y[i]) * s[i].powf(-beta)
                        - coef * f64::from(x[i]) * cross) as f32;
                }
            }
        }
    }
}

impl Graph {
    /// `LocalResponseNorm` over the channels of `x: [n, c, h, w]`.
    pub fn local_response_norm(&mut self, x: TensorId, lrn: LocalResponseNorm) -> Result<TensorId> {
        Ok(self.push(lrn, &[x])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    // AlexNet's size 5 over 7 channels (windows cut at both edges), an even size, and a
    // window wider than the channels; alpha large enough that the sums matter.
    for (dims, size) in [([2, 7, 3, 5], 5), ([1, 6, 4, 3], 4), ([2, 3, 2, 2], 7)] {
        let lrn = LocalResponseNorm {
            size,
            alpha: 0.5,
            beta: 0.75,
            k: 1.0,
        };
        let x = Shape::f32(dims);
        res.push(CatalogEntry::new(lrn, vec![x.clone()]));
        res.push(CatalogEntry::new(
            LocalResponseNormBackward(lrn),
            vec![x.clone(), x],
        ));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    #[test]
    fn divides_by_the_window_of_squares() {
        // One pixel, channels 1, 2, 3; size 3: windows {0,1}, {0,1,2}, {1,2}.
        let x = CpuTensor::from_f32([1, 3, 1, 1], vec![1.0, 2.0, 3.0]);
        let lrn = LocalResponseNorm {
            size: 3,
            alpha: 3.0,
            beta: 1.0,
            k: 1.0,
        };
        let y = run_reference(&lrn, &[x]);
        // s = 1 + (1 + 4), 1 + (1 + 4 + 9), 1 + (4 + 9).
        let want = [1.0 / 6.0, 2.0 / 15.0, 3.0 / 14.0];
        for (g, w) in y[0].f32().iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{g} vs {w}");
        }
    }
}
