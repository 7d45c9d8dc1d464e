// avg_pool2d: NCHW, f32, square k×k window, stride, zero padding counted in the average
// (PyTorch's default count_include_pad=True, floor mode), so every window divides by k*k.
//
//   forward:  y[o] = (1 / k^2) * sum over the window of x
//   backward: grad_x[i] = (1 / k^2) * sum of grad_y[o] over the windows o that cover i
//
// Threads: one invocation per output element (forward) or per input element (backward, a
// gather). Flat index = gid.x + gid.y * nwg.x * WG.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { n: u32, c: u32, h: u32, w: u32, oh: u32, ow: u32, k: u32, stride: u32, pad: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

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
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let ix0 = i32(ox * p.stride) - i32(p.pad);
    var acc = 0.0;
    for (var a = 0u; a < p.k; a++) {
        let iy = iy0 + i32(a);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var b = 0u; b < p.k; b++) {
            let ix = ix0 + i32(b);
            if (ix < 0 || ix >= i32(p.w)) { continue; }
            acc += fwd_x[(nc * p.h + u32(iy)) * p.w + u32(ix)];
        }
    }
    fwd_y[o] = acc / f32(p.k * p.k);
}

// ---- avg_pool2d_backward: inputs (grad_y), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn avg_pool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.n * p.c * p.h * p.w) { return; }
    let col = idx % p.w + p.pad;
    let row = (idx / p.w) % p.h + p.pad;
    let nc = idx / (p.h * p.w);
    let i_lo = select(0u, (row + 1u - p.k + p.stride - 1u) / p.stride, row + 1u >= p.k);
    let j_lo = select(0u, (col + 1u - p.k + p.stride - 1u) / p.stride, col + 1u >= p.k);
    let i_hi = min(row / p.stride, p.oh - 1u);
    let j_hi = min(col / p.stride, p.ow - 1u);
    var acc = 0.0;
    for (var i = i_lo; i <= i_hi; i++) {
        for (var j = j_lo; j <= j_hi; j++) {
            acc += bwd_grad_y[(nc * p.oh + i) * p.ow + j];
        }
    }
    bwd_grad_x[idx] = acc / f32(p.k * p.k);
}
