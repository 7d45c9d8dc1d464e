// bias_add: x viewed as [outer, c, inner] (NCHW: outer = n, inner = h*w; a matrix [m, c]:
// inner = 1), plus one bias per channel.
//
//   forward:       y[o, ch, i] = x[o, ch, i] + b[ch]
//   backward_bias: grad_b[ch] = sum_{o, i} grad_y[o, ch, i]      (grad_x = grad_y, no kernel)
//
// Threads: forward, one invocation per element (flat index = gid.x + gid.y * nwg.x * WG);
// backward_bias, one workgroup of RED invocations per (channel, split of the outer range):
// each strides over its share of the outer*inner elements, then a tree reduction in
// workgroup memory, written to out[ch·splits + split]. With one split that is grad_b itself;
// on GPUs, where c workgroups would leave most of the device idle, the outer range is split
// into `splits` chunks of `chunk` and backward_bias_combine (one invocation per channel) adds
// the partial sums.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { outer: u32, c: u32, inner: u32, splits: u32, chunk: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WG: u32 = 256u;
const RED: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- bias_add_forward: inputs (x, b), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_y: array<f32>;

@compute @workgroup_size(WG)
fn bias_add_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.outer * p.c * p.inner) { return; }
    fwd_y[i] = fwd_x[i] + fwd_b[(i / p.inner) % p.c];
}

// ---- bias_add_backward_bias: inputs (grad_y), outputs (grad_b, or the partial sums)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read_write> bwd_grad_b: array<f32>;

var<workgroup> partial: array<f32, RED>;

// One workgroup per (channel, split). Lanes stride along the longer of inner and outer, so
// neither an NCHW plane (inner = h*w) nor a matrix column (inner = 1) leaves most lanes idle,
// and no index needs an integer division (llvmpipe scalarises those).
@compute @workgroup_size(RED)
fn bias_add_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wid.x;
    let o_begin = wid.y * p.chunk;
    let o_end = min(o_begin + p.chunk, p.outer);
    var acc = 0.0;
    if (p.inner >= RED) {
        for (var o = o_begin; o < o_end; o++) {
            let base = (o * p.c + ch) * p.inner;
            for (var i = lid; i < p.inner; i += RED) {
                acc += bwd_grad_y[base + i];
            }
        }
    } else {
        for (var o = o_begin + lid; o < o_end; o += RED) {
            let base = (o * p.c + ch) * p.inner;
            for (var i = 0u; i < p.inner; i++) {
                acc += bwd_grad_y[base + i];
            }
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = RED / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) { partial[lid] += partial[lid + stride]; }
        workgroupBarrier();
    }
    if (lid == 0u && ch < p.c) { bwd_grad_b[ch * p.splits + wid.y] = partial[0]; }
}

// ---- bias_add_backward_bias_combine: inputs (the partial sums), outputs (grad_b)
@group(0) @binding(1) var<storage, read> cmb_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> cmb_grad_b: array<f32>;

@compute @workgroup_size(WG)
fn bias_add_backward_bias_combine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ch = gid.x;
    if (ch >= p.c) { return; }
    var acc = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        acc += cmb_part[ch * p.splits + s];
    }
    cmb_grad_b[ch] = acc;
}
