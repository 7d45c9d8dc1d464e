// avg_pool2d: NCHW, f32, kh×kw window, per-axis stride and zero padding, floor or ceil mode,
// PyTorch's divisor: the window clipped to the padded input when padding counts
// (count_include_pad, the default), else the number of real inputs in it.
//
//   forward:  y[o] = (1 / d[o]) * sum over window o of x
//   backward: grad_x[i] = sum of grad_y[o] / d[o] over the windows o that cover i
//
// Threads: one invocation per output element (forward) or per input element (backward, a
// gather). Flat index = gid.x + gid.y * nwg.x * WG.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params {
    n: u32, c: u32, h: u32, w: u32, oh: u32, ow: u32, kh: u32, kw: u32,
    sh: u32, sw: u32, ph: u32, pw: u32, include_pad: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// Window o's real inputs along one axis, [lo, hi), and its size clipped to the padded input.
struct Span { lo: u32, hi: u32, padded: u32 }

fn span(o: u32, k: u32, stride: u32, pad: u32, size: u32) -> Span {
    let start = o * stride;
    let end = min(start + k, size + 2u * pad);
    return Span(max(start, pad) - pad, min(end, size + pad) - pad, end - start);
}

// Window (oy, ox)'s divisor.
fn divisor(sy: Span, sx: Span) -> f32 {
    if (p.include_pad != 0u) { return f32(sy.padded * sx.padded); }
    return f32((sy.hi - sy.lo) * (sx.hi - sx.lo));
}

// ---- avg_pool2d_forward: inputs (x), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;

@compute @workgroup_size(WG)
fn avg_pool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    if (o >= p.n * p.c * p.oh * p.ow) { return; }
    let ox = o % p.ow;
    let oy = (o / p.ow) % p.oh;
    let nc = o / (p.oh * p.ow);
    let sy = span(oy, p.kh, p.sh, p.ph, p.h);
    let sx = span(ox, p.kw, p.sw, p.pw, p.w);
    var acc = 0.0;
    for (var iy = sy.lo; iy < sy.hi; iy++) {
        for (var ix = sx.lo; ix < sx.hi; ix++) {
            acc += fwd_x[(nc * p.h + iy) * p.w + ix];
        }
    }
    fwd_y[o] = acc / divisor(sy, sx);
}

// ---- avg_pool2d_backward: inputs (grad_y), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn avg_pool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.n * p.c * p.h * p.w) { return; }
    let col = idx % p.w + p.pw;
    let row = (idx / p.w) % p.h + p.ph;
    let nc = idx / (p.h * p.w);
    // Window i covers padded row r iff i*sh <= r < i*sh + kh (columns alike).
    let i_lo = select(0u, (row + 1u - p.kh + p.sh - 1u) / p.sh, row + 1u >= p.kh);
    let j_lo = select(0u, (col + 1u - p.kw + p.sw - 1u) / p.sw, col + 1u >= p.kw);
    let i_hi = min(row / p.sh, p.oh - 1u);
    let j_hi = min(col / p.sw, p.ow - 1u);
    var acc = 0.0;
    for (var i = i_lo; i <= i_hi; i++) {
        let sy = span(i, p.kh, p.sh, p.ph, p.h);
        for (var j = j_lo; j <= j_hi; j++) {
            let sx = span(j, p.kw, p.sw, p.pw, p.w);
            acc += bwd_grad_y[(nc * p.oh + i) * p.ow + j] / divisor(sy, sx);
        }
    }
    bwd_grad_x[idx] = acc;
}
