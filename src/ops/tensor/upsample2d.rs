//! Upsampling by an integer factor (PyTorch's `nn.Upsample(scale_factor=s, mode=...)`):
//! nearest, and bilinear with `align_corners=False`, forward and backward.

use bytemuck::{Pod, Zeroable};

use crate::ir::{expect_arity, expect_dtype, BackwardCtx, CpuTensor, KernelCall, OpDef, Shader};
use crate::ir::{Graph, TensorId};
use crate::ops::CatalogEntry;
use crate::shape::{DType, Shape};
use crate::{Error, Result};

/// `shaders/upsample2d.wgsl`.
pub static SHADER: Shader = Shader::new(
    "upsample2d",
    include_str!("../../../shaders/upsample2d.wgsl"),
    size_of::<Params>(),
);

/// Mirrors `struct Params` in `shaders/upsample2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    s: u32,
    _pad: [u32; 3],
}

/// How new pixels are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsampleMode {
    /// Copy the nearest input pixel.
    Nearest,
    /// Interpolate the four nearest (`align_corners=False`).
    Bilinear,
}

/// `x: [n, c, h, w]` → `y: [n, c, s·h, s·w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsample2d {
    /// Nearest or bilinear.
    pub mode: UpsampleMode,
    /// The integer scale factor.
    pub scale: usize,
}

/// `grad_x` of [`Upsample2d`] from `grad_y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsample2dBackward(pub Upsample2d);

impl Upsample2d {
    fn params(self, x: &Shape) -> Params {
        let [n, c, h, w] = x.dims4_u32();
        Params {
            n,
            c,
            h,
            w,
            s: self.scale as u32,
            _pad: [0; 3],
        }
    }

    fn entry(self, backward: bool) -> &'static str {
        match (self.mode, backward) {
            (UpsampleMode::Nearest, false) => "upsample_nearest2d_forward",
            (UpsampleMode::Nearest, true) => "upsample_nearest2d_backward",
            (UpsampleMode::Bilinear, false) => "upsample_bilinear2d_forward",
            (UpsampleMode::Bilinear, true) => "upsample_bilinear2d_backward",
        }
    }

    /// `(source index, weight)` pairs output index `i` reads along an axis of `size` inputs.
    fn taps(self, i: usize, size: usize) -> [(usize, f64); 2] {
        match self.mode {
            UpsampleMode::Nearest => [(i / self.scale, 1.0), (0, 0.0)],
            UpsampleMode::Bilinear => {
                let u = ((i as f64 + 0.5) / self.scale as f64 - 0.5).max(0.0);
                let r0 = u.floor() as usize;
                let a = u - r0 as f64;
                [(r0, 1.0 - a), ((r0 + 1).min(size - 1), a)]
            }
        }
    }

    /// Calls `f(out_idx, in_idx, weight)` for every tap of every output.
    fn for_each_tap(self, x: &Shape, mut f: impl FnMut(usize, usize, f64)) {
        let [n, c, h, w] = x.dims4_u32().map(|v| v as usize);
        let (oh, ow) = (h * self.scale, w * self.scale);
        for nc in 0..n * c {
            for i in 0..oh {
                for j in 0..ow {
                    let o = (nc * oh + i) * ow + j;
                    for (r, wr) in self.taps(i, h) {
                        for (s, ws) in self.taps(j, w) {
                            f(o, (nc * h + r) * w + s, wr * ws);
                        }
                    }
                }
            }
        }
    }

    fn check(self, op: &'static str, x: &Shape) -> Result<()> {
        x.dims4(op, "input")?;
        expect_dtype(op, "input", x, DType::F32)?;
        if self.scale == 0 {
            return Err(Error::shape(op, "scale factor must be at least 1"));
        }
        Ok(())
    }
}

impl OpDef for Upsample2d {
    fn name(&self) -> &'static str {
        match self.mode {
            UpsampleMode::Nearest => "upsample_nearest2d",
            UpsampleMode::Bilinear => "upsample_bilinear2d",
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        self.check(self.name(), inputs[0])?;
        let [n, c, h, w] = inputs[0].dims4_u32().map(|v| v as usize);
        Ok(vec![Shape::f32([n, c, h * self.scale, w * self.scale])])
    }

    fn backward(&self, cx: &mut BackwardCtx<'_>) -> Result<()> {
        let grad_y = cx.grad_output(0);
        let grad_x = cx.push(Upsample2dBackward(*self), &[grad_y])?[0];
        cx.set_grad_input(0, grad_x);
        Ok(())
    }

    fn kernel(&self, inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        let params = self.params(inputs[0]);
        KernelCall::per_element(&SHADER, self.entry(false), &params, outputs[0].numel())
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let x = inputs[0].f32();
        let mut acc = vec![0f64; outputs[0].shape.numel()];
        self.for_each_tap(&inputs[0].shape, |o, i, wt| acc[o] += wt * f64::from(x[i]));
        for (y, a) in outputs[0].f32_mut().iter_mut().zip(acc) {
            *y = a as f32;
        }
    }
}

impl OpDef for Upsample2dBackward {
    fn name(&self) -> &'static str {
        match self.0.mode {
            UpsampleMode::Nearest => "upsample_nearest2d_backward",
            UpsampleMode::Bilinear => "upsample_bilinear2d_backward",
        }
    }

    fn infer(&self, inputs: &[&Shape]) -> Result<Vec<Shape>> {
        expect_arity(self.name(), inputs, 1)?;
        self.0.check(self.name(), inputs[0])?;
        let [n, c, oh, ow] = inputs[0].dims4_u32().map(|v| v as usize);
        if oh % self.0.scale != 0 || ow % self.0.scale != 0 {
            return Err(Error::shape(
                self.name(),
                format!(
                    "grad_y {} is not a multiple of the scale {}",
                    inputs[0], self.0.scale
                ),
            ));
        }
        Ok(vec![Shape::f32([
            n,
            c,
            oh / self.0.scale,
            ow / self.0.scale,
        ])])
    }

    fn kernel(&self, _inputs: &[&Shape], outputs: &[&Shape]) -> KernelCall {
        let params = self.0.params(outputs[0]);
        KernelCall::per_element(&SHADER, self.0.entry(true), &params, outputs[0].numel())
    }

    fn reference(&self, inputs: &[&CpuTensor], outputs: &mut [CpuTensor]) {
        let grad_y = inputs[0].f32();
        let mut acc = vec![0f64; outputs[0].shape.numel()];
        self.0.for_each_tap(&outputs[0].shape, |o, i, wt| {
            acc[i] += wt * f64::from(grad_y[o])
        });
        for (g, a) in outputs[0].f32_mut().iter_mut().zip(acc) {
            *g = a as f32;
        }
    }
}

impl Graph {
    /// `nn.Upsample(scale_factor=scale, mode=...)` of `x: [n, c, h, w]`.
    pub fn upsample2d(
        &mut self,
        x: TensorId,
        mode: UpsampleMode,
        scale: usize,
    ) -> Result<TensorId> {
        Ok(self.push(Upsample2d { mode, scale }, &[x])?[0])
    }
}

pub(crate) fn catalog() -> Vec<CatalogEntry> {
    let mut res = Vec::new();
    for mode in [UpsampleMode::Nearest, UpsampleMode::Bilinear] {
        for (dims, scale) in [([2, 3, 5, 7], 2), ([1, 2, 3, 4], 3), ([1, 1, 1, 2], 2)] {
            let op = Upsample2d { mode, scale };
            res.push(CatalogEntry::new(op, vec![Shape::f32(dims)]));
            let y = [dims[0], dims[1], dims[2] * scale, dims[3] * scale];
            res.push(CatalogEntry::new(
                Upsample2dBackward(op),
                vec![Shape::f32(y)],
            ));
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_reference;

    /// What `F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)` gives
    /// for a 1×2 row [1, 3]: columns read 1, 1.5, 2.5, 3 (edges clamped).
    #[test]
    fn bilinear_matches_pytorch_on_a_row() {
        let x = CpuTensor::from_f32([1, 1, 1, 2], vec![1.0, 3.0]);
        let op = Upsample2d {
            mode: UpsampleMode::Bilinear,
            scale: 2,
        };
        let y = run_reference(&op, &[x]);
        assert_eq!(y[0].f32(), [1.0, 1.5, 2.5, 3.0, 1.0, 1.5, 2.5, 3.0]);
    }
}
