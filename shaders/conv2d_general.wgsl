// conv2d of any geometry: NCHW activations, OIHW weights [c_out, c_in/groups, kh, kw], f32;
// per-axis stride (sh, sw), zero padding (ph, pw) and dilation (dh, dw); channel groups
// (output channel co sees input channels g·cig .. g·cig + cig - 1, g = co / cog, where
// cig = c_in / groups and cog = c_out / groups; groups = c_in is depthwise).
//
//   forward:          y[n,co,oy,ox] = b[co] + Σ_{ci<cig,ky,kx} x[n, g·cig+ci, oy·sh-ph+ky·dh, ox·sw-pw+kx·dw] · w[co,ci,ky,kx]
//   backward_input:   grad_x[n, g·cig+ci, iy, ix] = Σ over (co in group g, ky, kx) with
//                     iy = oy·sh - ph + ky·dh (same along x) of grad_y[n,co,oy,ox] · w[co,ci,ky,kx]
//   backward_weight:  grad_w[co,ci,ky,kx] = Σ_{n,oy,ox} grad_y[n,co,oy,ox] · x[n, g·cig+ci, oy·sh-ph+ky·dh, ox·sw-pw+kx·dw]
//   conv_transpose2d: the backward_input gather with x in grad_y's place, plus a bias
//                     (PyTorch's ConvTranspose2d is exactly this adjoint).
//
// The general path beside conv2d.wgsl's tuned square, ungrouped kernels: plain loops, no
// register blocking (a grouped convolution has few channels per group to block over).
// Threads: forward, backward_input and conv_transpose2d run one invocation per output
// element, flat index = gid.x + gid.y * nwg.x * WG. backward_weight runs one workgroup per
// weight element (workgroup index wid.x + wid.y * nwg.x): each invocation sums a strided share
// of the n·oh·ow products, then a tree in workgroup memory.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params {
    n: u32, c_in: u32, h: u32, w: u32,
    c_out: u32, kh: u32, kw: u32, oh: u32,
    ow: u32, sh: u32, sw: u32, ph: u32,
    pw: u32, dh: u32, dw: u32, groups: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// Input coordinate of output `o`, tap `k` along one axis, or -1 in the padding or past `size`.
fn in_coord(o: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> i32 {
    let i = i32(o * stride + k * dil) - i32(pad);
    return select(-1, i, i >= 0 && i < i32(size));
}

// Output coordinate that input `i`, tap `k` feeds along one axis, or -1 when none does.
fn out_coord(i: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> i32 {
    let t = i32(i + pad) - i32(k * dil);
    if (t < 0 || u32(t) % stride != 0u) { return -1; }
    let o = u32(t) / stride;
    return select(-1, i32(o), o < size);
}

// ---- conv2d_general_forward: inputs (x, w, b), outputs (y)
// ---- conv2d_general_forward_nobias: inputs (x, w), outputs (y)
@group(0) @binding(1) var<storage, read> f_x: array<f32>;
@group(0) @binding(2) var<storage, read> f_w: array<f32>;
@group(0) @binding(3) var<storage, read> f_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> f_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> fn_y: array<f32>;

// Σ over output element o's window; `co` receives its channel.
fn forward_sum(o: u32, co: ptr<function, u32>) -> f32 {
    let ox = o % p.ow;
    let oy = (o / p.ow) % p.oh;
    let c = (o / (p.ow * p.oh)) % p.c_out;
    let n = o / (p.ow * p.oh * p.c_out);
    *co = c;
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let ci0 = (c / cog) * cig;
    var acc = 0.0;
    for (var ci = 0u; ci < cig; ci++) {
        let x_plane = (n * p.c_in + ci0 + ci) * p.h;
        let w_plane = (c * cig + ci) * p.kh;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = in_coord(oy, ky, p.sh, p.ph, p.dh, p.h);
            if (iy < 0) { continue; }
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = in_coord(ox, kx, p.sw, p.pw, p.dw, p.w);
                if (ix < 0) { continue; }
                acc += f_x[(x_plane + u32(iy)) * p.w + u32(ix)] * f_w[(w_plane + ky) * p.kw + kx];
            }
        }
    }
    return acc;
}

@compute @workgroup_size(WG)
fn conv2d_general_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    if (o >= p.n * p.c_out * p.oh * p.ow) { return; }
    var co = 0u;
    let acc = forward_sum(o, &co);
    f_y[o] = acc + f_b[co];
}

@compute @workgroup_size(WG)
fn conv2d_general_forward_nobias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    if (o >= p.n * p.c_out * p.oh * p.ow) { return; }
    var co = 0u;
    fn_y[o] = forward_sum(o, &co);
}

// ---- conv2d_general_backward_input: inputs (grad_y, w), outputs (grad_x)
// ---- conv_transpose2d_forward: inputs (x, w, b), outputs (y); x plays grad_y, y grad_x
@group(0) @binding(1) var<storage, read> b_gy: array<f32>;
@group(0) @binding(2) var<storage, read> b_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> b_gx: array<f32>;
@group(0) @binding(3) var<storage, read> t_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> t_y: array<f32>;

// Σ over the outputs that input element i feeds; `ci_abs` receives its channel.
fn gather_sum(i: u32, ci_abs: ptr<function, u32>) -> f32 {
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let c = (i / (p.w * p.h)) % p.c_in;
    let n = i / (p.w * p.h * p.c_in);
    *ci_abs = c;
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let g = c / cig;
    let ci = c - g * cig;
    var acc = 0.0;
    for (var j = 0u; j < cog; j++) {
        let co = g * cog + j;
        let y_plane = (n * p.c_out + co) * p.oh;
        let w_plane = (co * cig + ci) * p.kh;
        for (var ky = 0u; ky < p.kh; ky++) {
            let oy = out_coord(iy, ky, p.sh, p.ph, p.dh, p.oh);
            if (oy < 0) { continue; }
            for (var kx = 0u; kx < p.kw; kx++) {
                let ox = out_coord(ix, kx, p.sw, p.pw, p.dw, p.ow);
                if (ox < 0) { continue; }
                acc += b_gy[(y_plane + u32(oy)) * p.ow + u32(ox)] * b_w[(w_plane + ky) * p.kw + kx];
            }
        }
    }
    return acc;
}

@compute @workgroup_size(WG)
fn conv2d_general_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.c_in * p.h * p.w) { return; }
    var c = 0u;
    b_gx[i] = gather_sum(i, &c);
}

@compute @workgroup_size(WG)
fn conv_transpose2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.c_in * p.h * p.w) { return; }
    var c = 0u;
    let acc = gather_sum(i, &c);
    t_y[i] = acc + t_b[c];
}

// ---- conv2d_general_backward_weight: inputs (grad_y, x), outputs (grad_w)
@group(0) @binding(1) var<storage, read> bw_gy: array<f32>;
@group(0) @binding(2) var<storage, read> bw_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> bw_gw: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn conv2d_general_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = wid.x + wid.y * nwg.x;
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let total = p.c_out * cig * p.kh * p.kw;
    // Whole workgroups leave together, so the barriers below stay uniform.
    if (e >= total) { return; }
    let kx = e % p.kw;
    let ky = (e / p.kw) % p.kh;
    let ci = (e / (p.kw * p.kh)) % cig;
    let co = e / (p.kw * p.kh * cig);
    let c = (co / cog) * cig + ci;
    let ohw = p.oh * p.ow;
    var acc = 0.0;
    for (var r = lid; r < p.n * ohw; r += WG) {
        let n = r / ohw;
        let oy = (r / p.ow) % p.oh;
        let ox = r % p.ow;
        let iy = in_coord(oy, ky, p.sh, p.ph, p.dh, p.h);
        let ix = in_coord(ox, kx, p.sw, p.pw, p.dw, p.w);
        if (iy < 0 || ix < 0) { continue; }
        acc += bw_gy[(n * p.c_out + co) * ohw + r % ohw] * bw_x[((n * p.c_in + c) * p.h + u32(iy)) * p.w + u32(ix)];
    }
    partial[lid] = acc;
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (lid < s) { partial[lid] += partial[lid + s]; }
    }
    if (lid == 0u) { bw_gw[e] = partial[0]; }
}
