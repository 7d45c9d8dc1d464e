// Adaptive average and max pooling of NCHW tensors to a fixed output size (oh, ow), as
// PyTorch's AdaptiveAvgPool2d / AdaptiveMaxPool2d: output row i pools input rows
// [floor(i·h/oh), ceil((i+1)·h/oh)), columns likewise. Global pooling is (1, 1).
//   avg forward:   y = mean of the window
//   avg backward:  grad_x[r, s] = Σ over windows covering (r, s) of grad_y / window size
//   max forward:   y = max of the window, argmax = flat index of the first maximum in x
//   max backward:  grad_x[idx] = Σ over windows covering idx whose argmax is idx of grad_y
// Windows covering input row r: i in [floor(r·oh/h), ceil((r+1)·oh/h) − 1] (gather, not
// scatter: WGSL has no f32 atomics).
// Threads: one invocation per element written; grids over 65,535 workgroups fold into y.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { n: u32, c: u32, h: u32, w: u32, oh: u32, ow: u32, _pad0: u32, _pad1: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

fn start(i: u32, size: u32, out: u32) -> u32 { return (i * size) / out; }
fn end(i: u32, size: u32, out: u32) -> u32 { return ((i + 1u) * size + out - 1u) / out; }

// ---- adaptive_avg_pool2d_forward: inputs (x), outputs (y)
@group(0) @binding(1) var<storage, read> af_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> af_y: array<f32>;

@compute @workgroup_size(WG)
fn adaptive_avg_pool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    if (o >= p.n * p.c * p.oh * p.ow) { return; }
    let j = o % p.ow;
    let i = (o / p.ow) % p.oh;
    let nc = o / (p.oh * p.ow);
    let r0 = start(i, p.h, p.oh);
    let r1 = end(i, p.h, p.oh);
    let s0 = start(j, p.w, p.ow);
    let s1 = end(j, p.w, p.ow);
    var sum = 0.0;
    for (var r = r0; r < r1; r++) {
        for (var s = s0; s < s1; s++) {
            sum += af_x[(nc * p.h + r) * p.w + s];
        }
    }
    af_y[o] = sum / f32((r1 - r0) * (s1 - s0));
}

// ---- adaptive_avg_pool2d_backward: inputs (grad_y), outputs (grad_x)
@group(0) @binding(1) var<storage, read> ab_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read_write> ab_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn adaptive_avg_pool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.n * p.c * p.h * p.w) { return; }
    let s = idx % p.w;
    let r = (idx / p.w) % p.h;
    let nc = idx / (p.h * p.w);
    var acc = 0.0;
    for (var i = (r * p.oh) / p.h; i < end(r, p.oh, p.h); i++) {
        let size_i = end(i, p.h, p.oh) - start(i, p.h, p.oh);
        for (var j = (s * p.ow) / p.w; j < end(s, p.ow, p.w); j++) {
            let size_j = end(j, p.w, p.ow) - start(j, p.w, p.ow);
            acc += ab_grad_y[(nc * p.oh + i) * p.ow + j] / f32(size_i * size_j);
        }
    }
    ab_grad_x[idx] = acc;
}

// ---- adaptive_max_pool2d_forward: inputs (x), outputs (y, argmax)
@group(0) @binding(1) var<storage, read> mf_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mf_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> mf_argmax: array<u32>;

@compute @workgroup_size(WG)
fn adaptive_max_pool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    if (o >= p.n * p.c * p.oh * p.ow) { return; }
    let j = o % p.ow;
    let i = (o / p.ow) % p.oh;
    let nc = o / (p.oh * p.ow);
    let s0 = start(j, p.w, p.ow);
    var best_idx = (nc * p.h + start(i, p.h, p.oh)) * p.w + s0;
    var best = mf_x[best_idx];
    for (var r = start(i, p.h, p.oh); r < end(i, p.h, p.oh); r++) {
        for (var s = s0; s < end(j, p.w, p.ow); s++) {
            let idx = (nc * p.h + r) * p.w + s;
            if (mf_x[idx] > best) { best = mf_x[idx]; best_idx = idx; }
        }
    }
    mf_y[o] = best;
    mf_argmax[o] = best_idx;
}

// ---- adaptive_max_pool2d_backward: inputs (grad_y, argmax), outputs (grad_x)
@group(0) @binding(1) var<storage, read> mb_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> mb_argmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> mb_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn adaptive_max_pool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.n * p.c * p.h * p.w) { return; }
    let s = idx % p.w;
    let r = (idx / p.w) % p.h;
    let nc = idx / (p.h * p.w);
    var acc = 0.0;
    for (var i = (r * p.oh) / p.h; i < end(r, p.oh, p.h); i++) {
        for (var j = (s * p.ow) / p.w; j < end(s, p.ow, p.w); j++) {
            let o = (nc * p.oh + i) * p.ow + j;
            if (mb_argmax[o] == idx) { acc += mb_grad_y[o]; }
        }
    }
    mb_grad_x[idx] = acc;
}
