// The piecewise-linear ("hard") activations of MobileNet, as PyTorch defines them, forward and
// backward. lo = p.min_val, hi = p.max_val (hardtanh only).
//
//   hardtanh:    y = clamp(x, lo, hi)          grad_x = grad_y * (lo < x < hi)   (relu6: lo 0, hi 6)
//   hardsigmoid: y = clamp(x / 6 + 1/2, 0, 1)  grad_x = grad_y * (-3 < x < 3) / 6
//   hardswish:   y = x * clamp(x + 3, 0, 6) / 6
//                grad_x = grad_y * (x <= -3 ? 0 : x >= 3 ? 1 : x / 3 + 1/2)
// At the kinks the derivative is PyTorch's (2.15, measured: tests/fixtures/hard_activations.py):
// the outer pieces' (0 at hardtanh's and hardsigmoid's ends, 0 and 1 at hardswish's).
//
// Threads: one invocation per element; grids over 65,535 workgroups fold into y, so the flat
// index is gid.x + gid.y * nwg.x * WG.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { numel: u32, min_val: f32, max_val: f32, _pad: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- *_forward: inputs (x), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;

// ---- *_backward: inputs (grad_y, x), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn hardtanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    fwd_y[i] = min(max(fwd_x[i], p.min_val), p.max_val);
}

@compute @workgroup_size(WG)
fn hardtanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = bwd_x[i];
    bwd_grad_x[i] = select(0.0, bwd_grad_y[i], x > p.min_val && x < p.max_val);
}

@compute @workgroup_size(WG)
fn hardsigmoid_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    fwd_y[i] = clamp(fwd_x[i] / 6.0 + 0.5, 0.0, 1.0);
}

@compute @workgroup_size(WG)
fn hardsigmoid_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = bwd_x[i];
    bwd_grad_x[i] = select(0.0, bwd_grad_y[i] / 6.0, x > -3.0 && x < 3.0);
}

@compute @workgroup_size(WG)
fn hardswish_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = fwd_x[i];
    fwd_y[i] = x * clamp(x + 3.0, 0.0, 6.0) / 6.0;
}

@compute @workgroup_size(WG)
fn hardswish_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = bwd_x[i];
    var d = x / 3.0 + 0.5;
    if (x <= -3.0) {
        d = 0.0;
    } else if (x >= 3.0) {
        d = 1.0;
    }
    bwd_grad_x[i] = bwd_grad_y[i] * d;
}
