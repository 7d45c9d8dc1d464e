// Dropout (training only): y = x · keep / (1 − p), keep = [hash(seed, step, i) ≥ p·2³²].
// The mask is never stored: the backward pass regenerates it from the same hash, so it reads
// the step counter (a [1] u32 state the train program increments after the backward pass).
//   forward:  inputs (x, step), outputs (y)
//   backward: inputs (grad_y, step), outputs (grad_x) = grad_y · keep / (1 − p)
// hash: PCG's output permutation (O'Neill 2014) applied three times, to the step, the layer's
// seed and the element index; the CPU reference computes the same u32 arithmetic.
// Threads: one invocation per element; grids over 65,535 workgroups fold into y.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { numel: u32, seed: u32, threshold: u32, scale: f32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn kept(step: u32, i: u32) -> bool {
    return pcg(i ^ pcg(p.seed ^ pcg(step))) >= p.threshold;
}

// ---- dropout_forward: inputs (x, step), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_step: array<u32>;
@group(0) @binding(3) var<storage, read_write> fwd_y: array<f32>;

@compute @workgroup_size(WG)
fn dropout_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    fwd_y[i] = select(0.0, fwd_x[i] * p.scale, kept(fwd_step[0], i));
}

// ---- dropout_backward: inputs (grad_y, step), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_step: array<u32>;
@group(0) @binding(3) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn dropout_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    bwd_grad_x[i] = select(0.0, bwd_grad_y[i] * p.scale, kept(bwd_step[0], i));
}
