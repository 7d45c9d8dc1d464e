// Upsampling of NCHW maps by an integer factor s (PyTorch's nn.Upsample(scale_factor=s)):
//   nearest:  y[i, j] = x[⌊i/s⌋, ⌊j/s⌋]
//   bilinear (align_corners=False): source row u = max((i + 0.5)/s − 0.5, 0), r0 = ⌊u⌋,
//             r1 = min(r0 + 1, h − 1), a = u − r0 (columns likewise, b);
//             y = (1−a)(1−b)·x[r0,c0] + (1−a)b·x[r0,c1] + a(1−b)·x[r1,c0] + ab·x[r1,c1]
// Backward by gather (WGSL has no f32 atomics): grad_x[r, c] sums grad_y over the outputs
// that read (r, c), with their weights; for bilinear those lie within rows
// [(r − 1)·s, (r + 2)·s) and the same band of columns.
// Threads: one invocation per element written; grids over 65,535 workgroups fold into y.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { n: u32, c: u32, h: u32, w: u32, s: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// (r0, r1, weight of r1) of output index `i` along an axis of `size` input values.
fn taps(i: u32, size: u32) -> vec3<f32> {
    let u = max((f32(i) + 0.5) / f32(p.s) - 0.5, 0.0);
    let r0 = u32(floor(u));
    let r1 = min(r0 + 1u, size - 1u);
    return vec3<f32>(f32(r0), f32(r1), u - floor(u));
}

// Weight with which output index `i` reads input index `r` along an axis of `size`.
fn weight(i: u32, r: u32, size: u32) -> f32 {
    let t = taps(i, size);
    var w = 0.0;
    if (u32(t.x) == r) { w += 1.0 - t.z; }
    if (u32(t.y) == r) { w += t.z; }
    return w;
}

// ---- upsample_nearest2d_forward / upsample_bilinear2d_forward: inputs (x), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;

@compute @workgroup_size(WG)
fn upsample_nearest2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    let oh = p.h * p.s;
    let ow = p.w * p.s;
    if (o >= p.n * p.c * oh * ow) { return; }
    let j = o % ow;
    let i = (o / ow) % oh;
    let nc = o / (oh * ow);
    fwd_y[o] = fwd_x[(nc * p.h + i / p.s) * p.w + j / p.s];
}

@compute @workgroup_size(WG)
fn upsample_bilinear2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * WG;
    let oh = p.h * p.s;
    let ow = p.w * p.s;
    if (o >= p.n * p.c * oh * ow) { return; }
    let j = o % ow;
    let i = (o / ow) % oh;
    let base = (o / (oh * ow)) * p.h * p.w;
    let ti = taps(i, p.h);
    let tj = taps(j, p.w);
    let r0 = u32(ti.x) * p.w;
    let r1 = u32(ti.y) * p.w;
    let c0 = u32(tj.x);
    let c1 = u32(tj.y);
    let top = mix(fwd_x[base + r0 + c0], fwd_x[base + r0 + c1], tj.z);
    let bottom = mix(fwd_x[base + r1 + c0], fwd_x[base + r1 + c1], tj.z);
    fwd_y[o] = mix(top, bottom, ti.z);
}

// ---- upsample_*2d_backward: inputs (grad_y), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn upsample_nearest2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.n * p.c * p.h * p.w) { return; }
    let cc = idx % p.w;
    let r = (idx / p.w) % p.h;
    let nc = idx / (p.h * p.w);
    let ow = p.w * p.s;
    var acc = 0.0;
    for (var a = 0u; a < p.s; a++) {
        for (var b = 0u; b < p.s; b++) {
            acc += bwd_grad_y[(nc * p.h * p.s + r * p.s + a) * ow + cc * p.s + b];
        }
    }
    bwd_grad_x[idx] = acc;
}

@compute @workgroup_size(WG)
fn upsample_bilinear2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.n * p.c * p.h * p.w) { return; }
    let cc = idx % p.w;
    let r = (idx / p.w) % p.h;
    let nc = idx / (p.h * p.w);
    let oh = p.h * p.s;
    let ow = p.w * p.s;
    let i_lo = select(0u, (r - 1u) * p.s, r >= 1u);
    let i_hi = min(oh, (r + 2u) * p.s);
    let j_lo = select(0u, (cc - 1u) * p.s, cc >= 1u);
    let j_hi = min(ow, (cc + 2u) * p.s);
    var acc = 0.0;
    for (var i = i_lo; i < i_hi; i++) {
        let wi = weight(i, r, p.h);
        if (wi == 0.0) { continue; }
        for (var j = j_lo; j < j_hi; j++) {
            acc += wi * weight(j, cc, p.w) * bwd_grad_y[(nc * oh + i) * ow + j];
        }
    }
    bwd_grad_x[idx] = acc;
}
