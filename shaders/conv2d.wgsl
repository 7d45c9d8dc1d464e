// conv2d: NCHW activations, OIHW weights, f32; stride, zero padding, dilation, bias.
//
//   forward:         y[n,co,oy,ox] = b[co] + sum_{ci,ky,kx} x[n,ci, oy*s-pad+ky*d, ox*s-pad+kx*d] * w[co,ci,ky,kx]
//   backward_input:  grad_x[n,ci,iy,ix] = sum over (co,ky,kx) with iy = oy*s-pad+ky*d (same for x)
//                                         of grad_y[n,co,oy,ox] * w[co,ci,ky,kx]
//   backward_weight: grad_w[co,ci,ky,kx] = sum_{n,oy,ox} grad_y[n,co,oy,ox] * x[n,ci, oy*s-pad+ky*d, ox*s-pad+kx*d]
// (grad_b is the bias_add reduction of grad_y over n, oy, ox.)
//
// Threads: forward, one invocation per output element; backward_input, one per input
// element (a gather, since WGSL has no f32 atomics); backward_weight, one per weight element.
// Flat index = gid.x + gid.y * nwg.x * WG.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params {
    n: u32, c_in: u32, h: u32, w: u32,
    c_out: u32, kh: u32, kw: u32, oh: u32,
    ow: u32, stride: u32, pad: u32, dilation: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- conv2d_forward: inputs (x, w, b), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_w: array<f32>;
@group(0) @binding(3) var<storage, read> fwd_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> fwd_y: array<f32>;

@compute @workgroup_size(WG)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    if (o >= p.n * p.c_out * p.oh * p.ow) { return; }
    let ox = o % p.ow;
    let oy = (o / p.ow) % p.oh;
    let co = (o / (p.ow * p.oh)) % p.c_out;
    let n = o / (p.ow * p.oh * p.c_out);
    // Input coordinates are computed in i32: with padding they can be negative.
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let ix0 = i32(ox * p.stride) - i32(p.pad);
    var acc = fwd_b[co];
    for (var ci = 0u; ci < p.c_in; ci++) {
        let x_base = (n * p.c_in + ci) * p.h;
        let w_base = (co * p.c_in + ci) * p.kh;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky * p.dilation);
            if (iy < 0 || iy >= i32(p.h)) { continue; }
            let x_row = (x_base + u32(iy)) * p.w;
            let w_row = (w_base + ky) * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ix0 + i32(kx * p.dilation);
                if (ix < 0 || ix >= i32(p.w)) { continue; }
                acc += fwd_x[x_row + u32(ix)] * fwd_w[w_row + kx];
            }
        }
    }
    fwd_y[o] = acc;
}

// ---- conv2d_backward_input: inputs (grad_y, w), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bi_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bi_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> bi_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.c_in * p.h * p.w) { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let ci = (i / (p.w * p.h)) % p.c_in;
    let n = i / (p.w * p.h * p.c_in);
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        // oy * stride = iy + pad - ky * dilation must be a non-negative multiple of stride.
        let ty = i32(iy + p.pad) - i32(ky * p.dilation);
        if (ty < 0 || u32(ty) % p.stride != 0u) { continue; }
        let oy = u32(ty) / p.stride;
        if (oy >= p.oh) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = i32(ix + p.pad) - i32(kx * p.dilation);
            if (tx < 0 || u32(tx) % p.stride != 0u) { continue; }
            let ox = u32(tx) / p.stride;
            if (ox >= p.ow) { continue; }
            for (var co = 0u; co < p.c_out; co++) {
                let g = bi_grad_y[((n * p.c_out + co) * p.oh + oy) * p.ow + ox];
                acc += g * bi_w[((co * p.c_in + ci) * p.kh + ky) * p.kw + kx];
            }
        }
    }
    bi_grad_x[i] = acc;
}

// ---- conv2d_backward_weight: inputs (grad_y, x), outputs (grad_w)
@group(0) @binding(1) var<storage, read> bw_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bw_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> bw_grad_w: array<f32>;

@compute @workgroup_size(WG)
fn conv2d_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.c_out * p.c_in * p.kh * p.kw) { return; }
    let kx = i % p.kw;
    let ky = (i / p.kw) % p.kh;
    let ci = (i / (p.kw * p.kh)) % p.c_in;
    let co = i / (p.kw * p.kh * p.c_in);
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let g_base = (n * p.c_out + co) * p.oh;
        let x_base = (n * p.c_in + ci) * p.h;
        for (var oy = 0u; oy < p.oh; oy++) {
            let iy = i32(oy * p.stride + ky * p.dilation) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.h)) { continue; }
            let g_row = (g_base + oy) * p.ow;
            let x_row = (x_base + u32(iy)) * p.w;
            for (var ox = 0u; ox < p.ow; ox++) {
                let ix = i32(ox * p.stride + kx * p.dilation) - i32(p.pad);
                if (ix < 0 || ix >= i32(p.w)) { continue; }
                acc += bw_grad_y[g_row + ox] * bw_x[x_row + u32(ix)];
            }
        }
    }
    bw_grad_w[i] = acc;
}
