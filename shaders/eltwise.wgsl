// Elementwise ops: activations (forward and backward) and add.
//
//   relu:    y = max(x, 0)          grad_x = grad_y * (y > 0)
//   sigmoid: y = 1 / (1 + e^-x)     grad_x = grad_y * y * (1 - y)
//   tanh:    y = tanh(x)            grad_x = grad_y * (1 - y^2)
//   add:     c = a + b
// Backward rules read y, not x, so x need not stay alive for the backward pass.
//
// Threads: one invocation per element; grids over 65,535 workgroups fold into y, so the
// flat index is gid.x + gid.y * nwg.x * WG.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { numel: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- *_forward: inputs (x), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;

// ---- *_backward: inputs (grad_y, y), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> bwd_grad_x: array<f32>;

// ---- add_forward: inputs (a, b), outputs (c)
@group(0) @binding(1) var<storage, read> add_a: array<f32>;
@group(0) @binding(2) var<storage, read> add_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> add_c: array<f32>;

@compute @workgroup_size(WG)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    fwd_y[i] = max(fwd_x[i], 0.0);
}

@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    bwd_grad_x[i] = select(0.0, bwd_grad_y[i], bwd_y[i] > 0.0);
}

@compute @workgroup_size(WG)
fn sigmoid_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    fwd_y[i] = 1.0 / (1.0 + exp(-fwd_x[i]));
}

@compute @workgroup_size(WG)
fn sigmoid_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let y = bwd_y[i];
    bwd_grad_x[i] = bwd_grad_y[i] * y * (1.0 - y);
}

@compute @workgroup_size(WG)
fn tanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    fwd_y[i] = tanh(fwd_x[i]);
}

@compute @workgroup_size(WG)
fn tanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let y = bwd_y[i];
    bwd_grad_x[i] = bwd_grad_y[i] * (1.0 - y * y);
}

@compute @workgroup_size(WG)
fn add_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    add_c[i] = add_a[i] + add_b[i];
}
