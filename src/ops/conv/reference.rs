//! The CPU references of every convolution, tuned or general, forward and both gradients: one
//! loop nest ([`Conv2dSpec::for_each_tap`]) that each reference sums over in f64. The GPU
//! kernels of `conv2d`, `conv2d_general` and `conv_transpose2d` are all checked against it.

use crate::ir::{Conv2dSpec, CpuTensor};
use crate::shape::Shape;

impl Conv2dSpec {
    /// Calls `f(x_index, w_index, y_index)` for every product the convolution of `x` by `wt`
    /// into `y` sums (flat NCHW / OIHW indices): the one loop nest every convolution
    /// reference, forward and backward, tuned or general, runs.
    pub(crate) fn for_each_tap(
        &self,
        x: [usize; 4],
        wt: [usize; 4],
        y: [usize; 4],
        mut f: impl FnMut(usize, usize, usize),
    ) {
        let [n_batch, c_in, h, w] = x;
        let [c_out, cig, kh, kw] = wt;
        let [_, _, oh, ow] = y;
        let cog = c_out / self.groups;
        let coord = |o: usize, k: usize, axis: usize, size: usize| {
            (o * self.stride[axis] + k * self.dilation[axis])
                .checked_sub(self.pad[axis])
                .filter(|&i| i < size)
        };
        for n in 0..n_batch {
            for co in 0..c_out {
                let ci0 = (co / cog) * cig;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let yi = ((n * c_out + co) * oh + oy) * ow + ox;
                        for ci in 0..cig {
                            for ky in 0..kh {
                                let Some(iy) = coord(oy, ky, 0, h) else {
                                    continue;
                                };
                                for kx in 0..kw {
                                    let Some(ix) = coord(ox, kx, 1, w) else {
                                        continue;
                                    };
                                    let xi = ((n * c_in + ci0 + ci) * h + iy) * w + ix;
                                    let wi = ((co * cig + ci) * kh + ky) * kw + kx;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Reference of the forward: `y = Σ x·w (+ b)`, accumulated in f64.
pub(crate) fn conv_reference(spec: &Conv2dSpec, inputs: &[&CpuTensor], y: &mut CpuTensor) {
    let (xd, wd, yd) = (dims(inputs[0]), dims(inputs[1]), dims_of(&y.shape));
    let (x, w) = (inputs[0].f32(), inputs[1].f32());
    let mut acc = vec![0f64; y.shape.numel()];
    spec.for_each_tap(xd, wd, yd, |xi, wi, yi| {
        acc[yi] += f64::from(x[xi]) * f64::from(w[wi]);
    });
    let bias = inputs.get(2).map(|b| b.f32());
    let plane = yd[2] * yd[3];
    for (i, (out, a)) in y.f32_mut().iter_mut().zip(acc).enumerate() {
        let b = bias.map_or(0.0, |b| f64::from(b[(i / plane) % yd[1]]));
        *out = (a + b) as f32;
    }
}

/// Reference of the input gradient: `grad_x = Σ grad_y·w` over the taps each input feeds.
pub(crate) fn conv_backward_input_reference(
    spec: &Conv2dSpec,
    grad_y: &CpuTensor,
    w: &CpuTensor,
    grad_x: &mut CpuTensor,
) {
    let (yd, wd, xd) = (dims(grad_y), dims(w), dims_of(&grad_x.shape));
    let (gy, wv) = (grad_y.f32(), w.f32());
    let mut acc = vec![0f64; grad_x.shape.numel()];
    spec.for_each_tap(xd, wd, yd, |xi, wi, yi| {
        acc[xi] += f64::from(gy[yi]) * f64::from(wv[wi]);
    });
    for (g, a) in grad_x.f32_mut().iter_mut().zip(acc) {
        *g = a as f32;
    }
}

/// Reference of the weight gradient: `grad_w = Σ grad_y·x` over the batch and the outputs.
pub(crate) fn conv_backward_weight_reference(
    spec: &Conv2dSpec,
    grad_y: &CpuTensor,
    x: &CpuTensor,
    grad_w: &mut CpuTensor,
) {
    let (yd, xd, wd) = (dims(grad_y), dims(x), dims_of(&grad_w.shape));
    let (gy, xv) = (grad_y.f32(), x.f32());
    let mut acc = vec![0f64; grad_w.shape.numel()];
    spec.for_each_tap(xd, wd, yd, |xi, wi, yi| {
        acc[wi] += f64::from(gy[yi]) * f64::from(xv[xi]);
    });
    for (g, a) in grad_w.f32_mut().iter_mut().zip(acc) {
        *g = a as f32;
    }
}

fn dims(t: &CpuTensor) -> [usize; 4] {
    dims_of(&t.shape)
}

/// The four dims of a shape `infer` checked to be rank 4.
pub(super) fn dims_of(s: &Shape) -> [usize; 4] {
    <[usize; 4]>::try_from(s.dims.as_slice()).expect("infer checked rank 4")
}
