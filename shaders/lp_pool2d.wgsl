// lp_pool2d (power-average pooling), PyTorch's F.lp_pool2d: NCHW, f32, kh×kw window, per-axis
// stride, no padding, floor or ceil mode; the norm's power p > 0.
//
//   forward:  a[o] = (kh·kw / d[o]) · Σ_window x^p     (d[o]: the window's real inputs, so a
//             partial ceil-mode window is scaled up as PyTorch's avg_pool2d-based form does)
//             y[o] = a[o]^(1/p)
//   backward: grad_x[i] = Σ over the windows o covering i of
//             grad_y[o] · (kh·kw / d[o]) · x[i]^(p−1) / y[o]^(p−1)      (0 where y[o] = 0)
// x^p follows torch.pow: for x < 0 an integer p keeps the sign of (−1)^p, any other p gives NaN.
//
// Threads: one invocation per output element (forward) or per input element (backward, a
// gather). Flat index = gid.x + gid.y * nwg.x * WG.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params {
    n: u32, c: u32, h: u32, w: u32, oh: u32, ow: u32, kh: u32, kw: u32,
    sh: u32, sw: u32, ph: u32, pw: u32, norm: f32, _pad0: u32, _pad1: u32, _pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// v^e as torch.pow for f32: 0^0 = 1, 0^e = 0 (e > 0), negative bases only for integer e.
fn spow(v: f32, e: f32) -> f32 {
    if (v == 0.0) { return select(0.0, 1.0, e == 0.0); }
    let m = pow(abs(v), e);
    if (v > 0.0) { return m; }
    if (fract(e) != 0.0) { return bitcast<f32>(0x7fc00000u); }
    return select(m, -m, fract(e * 0.5) != 0.0);
}

// The real inputs of window o along one axis, [lo, hi).
fn lo(o: u32, stride: u32) -> u32 { return o * stride; }
fn hi(o: u32, k: u32, stride: u32, size: u32) -> u32 { return min(o * stride + k, size); }

// ---- lp_pool2d_forward: inputs (x), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;

@compute @workgroup_size(WG)
fn lp_pool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    if (o >= p.n * p.c * p.oh * p.ow) { return; }
    let ox = o % p.ow;
    let oy = (o / p.ow) % p.oh;
    let nc = o / (p.oh * p.ow);
    let y0 = lo(oy, p.sh);
    let y1 = hi(oy, p.kh, p.sh, p.h);
    let x0 = lo(ox, p.sw);
    let x1 = hi(ox, p.kw, p.sw, p.w);
    var acc = 0.0;
    for (var iy = y0; iy < y1; iy++) {
        for (var ix = x0; ix < x1; ix++) {
            acc += spow(fwd_x[(nc * p.h + iy) * p.w + ix], p.norm);
        }
    }
    let scale = f32(p.kh * p.kw) / f32((y1 - y0) * (x1 - x0));
    fwd_y[o] = spow(acc * scale, 1.0 / p.norm);
}

// ---- lp_pool2d_backward: inputs (grad_y, x, y), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_x: array<f32>;
@group(0) @binding(3) var<storage, read> bwd_y: array<f32>;
@group(0) @binding(4) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn lp_pool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.n * p.c * p.h * p.w) { return; }
    let col = idx % p.w;
    let row = (idx / p.w) % p.h;
    let nc = idx / (p.h * p.w);
    // Window i covers row r iff i*sh <= r < i*sh + kh (columns alike).
    let i_lo = select(0u, (row + 1u - p.kh + p.sh - 1u) / p.sh, row + 1u >= p.kh);
    let j_lo = select(0u, (col + 1u - p.kw + p.sw - 1u) / p.sw, col + 1u >= p.kw);
    let i_hi = min(row / p.sh, p.oh - 1u);
    let j_hi = min(col / p.sw, p.ow - 1u);
    let dx = spow(bwd_x[idx], p.norm - 1.0);
    var acc = 0.0;
    for (var i = i_lo; i <= i_hi; i++) {
        let rows = hi(i, p.kh, p.sh, p.h) - lo(i, p.sh);
        for (var j = j_lo; j <= j_hi; j++) {
            let o = (nc * p.oh + i) * p.ow + j;
            let y = bwd_y[o];
            if (y == 0.0) { continue; }
            let cols = hi(j, p.kw, p.sw, p.w) - lo(j, p.sw);
            let scale = f32(p.kh * p.kw) / f32(rows * cols);
            acc += bwd_grad_y[o] * scale / spow(y, p.norm - 1.0);
        }
    }
    bwd_grad_x[idx] = acc * dx;
}
