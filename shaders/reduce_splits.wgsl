// reduce_splits: out[i] = sum over z of part[z * len + i], the split-K partial sums of the
// dot-form GEMM (src/ops/gemm.rs). Bindings: 0 = params, 1 = part, 2 = out.

struct Params { len: u32, splits: u32, _pad0: u32, _pad1: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn reduce_splits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.len) { return; }
    var acc = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        acc += part[z * p.len + i];
    }
    out[i] = acc;
}
