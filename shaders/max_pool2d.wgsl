// max_pool2d: NCHW, f32, kh×kw window, per-axis stride and implicit -inf padding; floor or
// ceil mode (the output size, set by the host, decides; windows clip to the input).
//
//   forward:  y[o] = max over the window of x;  argmax[o] = flat index into x of that maximum
//             (the first one, in row-major window order, on ties); with nonneg (the input is a
//             ReLU's output) none (0xffffffff) when the maximum is 0
//   backward: grad_x[idx] = sum of grad_y[o] over the outputs o whose argmax[o] == idx
//
// Threads: one invocation per output element (forward) or per input element (backward: a
// gather, since WGSL has no f32 atomics and windows overlap when stride < k).
// max_pool2d_backward_tiled, for windows that tile the input exactly (stride = k, no padding,
// k divides h and w): one invocation per output, writing its whole window (the gradient at
// the argmax, zero elsewhere): no gather, and 2 loads per window instead of 2 per input.
// Flat index = gid.x + gid.y * nwg.x * WG. Index arithmetic divides through `div` (f32 and
// a correction): llvmpipe scalarises vector integer division, which cost more than the loads.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params {
    n: u32, c: u32, h: u32, w: u32, oh: u32, ow: u32, kh: u32, kw: u32,
    sh: u32, sw: u32, ph: u32, pw: u32, nonneg: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;


// ---- max_pool2d_forward: inputs (x), outputs (y, argmax)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_argmax: array<u32>;

@compute @workgroup_size(WG)
fn max_pool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    if (o >= p.n * p.c * p.oh * p.ow) { return; }
    let q = div(o, p.ow);
    let ox = o - q * p.ow;
    let nc = div(q, p.oh);
    let oy = q - nc * p.oh;
    let iy0 = i32(oy * p.sh) - i32(p.ph);
    let ix0 = i32(ox * p.sw) - i32(p.pw);
    var best = -3.4028235e38;
    var best_idx = 0xffffffffu;
    for (var a = 0u; a < p.kh; a++) {
        let iy = iy0 + i32(a);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var b = 0u; b < p.kw; b++) {
            let ix = ix0 + i32(b);
            if (ix < 0 || ix >= i32(p.w)) { continue; }
            let idx = (nc * p.h + u32(iy)) * p.w + u32(ix);
            let v = fwd_x[idx];
            if (best_idx == 0xffffffffu || v > best) {
                best = v;
                best_idx = idx;
            }
        }
    }
    fwd_y[o] = best;
    // Over a ReLU's output (nonneg), a window of zeros has no argmax: no gradient flows back,
    // as the ReLU's backward would have masked it.
    fwd_argmax[o] = select(best_idx, 0xffffffffu, p.nonneg != 0u && best <= 0.0);
}

// ---- max_pool2d_backward: inputs (grad_y, argmax), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_argmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn max_pool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.n * p.c * p.h * p.w) { return; }
    let q = div(idx, p.w);
    let col = idx - q * p.w + p.pw;
    let nc = div(q, p.h);
    let row = q - nc * p.h + p.ph;
    // Window i covers padded row r iff i*sh <= r < i*sh + kh (columns alike).
    let i_lo = select(0u, div(row + 1u - p.kh + p.sh - 1u, p.sh), row + 1u >= p.kh);
    let j_lo = select(0u, div(col + 1u - p.kw + p.sw - 1u, p.sw), col + 1u >= p.kw);
    let i_hi = min(div(row, p.sh), p.oh - 1u);
    let j_hi = min(div(col, p.sw), p.ow - 1u);
    var acc = 0.0;
    for (var i = i_lo; i <= i_hi; i++) {
        for (var j = j_lo; j <= j_hi; j++) {
            let o = (nc * p.oh + i) * p.ow + j;
            if (bwd_argmax[o] == idx) { acc += bwd_grad_y[o]; }
        }
    }
    bwd_grad_x[idx] = acc;
}

@compute @workgroup_size(WG)
fn max_pool2d_backward_tiled(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    if (o >= p.n * p.c * p.oh * p.ow) { return; }
    let q = div(o, p.ow);
    let ox = o - q * p.ow;
    let nc = div(q, p.oh);
    let oy = q - nc * p.oh;
    let g = bwd_grad_y[o];
    let at = bwd_argmax[o];
    let base = (nc * p.h + oy * p.kh) * p.w + ox * p.kw;
    for (var a = 0u; a < p.kh; a++) {
        for (var b = 0u; b < p.kw; b++) {
            let idx = base + a * p.w + b;
            bwd_grad_x[idx] = select(0.0, g, idx == at);
        }
    }
}
