// Elementwise ops: activations (forward and backward) and add. a = p.alpha.
//
//   relu:       y = max(x, 0)                 grad_x = grad_y * (y > 0)
//   sigmoid:    y = 1 / (1 + e^-x)            grad_x = grad_y * y * (1 - y)
//   tanh:       y = tanh(x)                   grad_x = grad_y * (1 - y^2)
//   leaky_relu: y = x > 0 ? x : a x           grad_x = grad_y * (x > 0 ? 1 : a)
//   elu:        y = x > 0 ? x : a (e^x - 1)   grad_x = grad_y * (x > 0 ? 1 : a e^x)
//   gelu:       y = x Φ(x)                    grad_x = grad_y * (Φ(x) + x φ(x))
//   gelu_tanh:  y = x (1 + tanh(u)) / 2, u = √(2/π) (x + 0.044715 x³)
//               grad_x = grad_y * ((1 + t) / 2 + x (1 - t²) √(2/π) (1 + 3·0.044715 x²) / 2), t = tanh(u)
//   silu:       y = x σ(x)                    grad_x = grad_y * σ(x) (1 + x (1 - σ(x)))
//   add:        c = a + b
// The backward rules of relu, sigmoid and tanh read y (so x may die early); the others read x.
// Φ uses erf to 1.5e-7 (Abramowitz and Stegun 7.1.26), as the CPU reference does: WGSL has none.
//
// Threads: one invocation per element; grids over 65,535 workgroups fold into y, so the
// flat index is gid.x + gid.y * nwg.x * WG.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { numel: u32, alpha: f32, _pad1: u32, _pad2: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- *_forward: inputs (x), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;

// ---- *_backward: inputs (grad_y, saved: y or x as above), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_saved: array<f32>;
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
    bwd_grad_x[i] = select(0.0, bwd_grad_y[i], bwd_saved[i] > 0.0);
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
    let y = bwd_saved[i];
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
    let y = bwd_saved[i];
    bwd_grad_x[i] = bwd_grad_y[i] * (1.0 - y * y);
}

@compute @workgroup_size(WG)
fn add_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    add_c[i] = add_a[i] + add_b[i];
}

const SQRT_2_OVER_PI: f32 = 0.7978845608;
const GELU_TANH_C: f32 = 0.044715;

fn erf_approx(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp(-x * x);
    return select(-r, r, x >= 0.0);
}

fn sigmoid_of(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// tanh of an argument clamped where tanh is ±1 in f32, so no driver's exp-based tanh overflows.
fn tanh_safe(u: f32) -> f32 {
    return tanh(clamp(u, -15.0, 15.0));
}

@compute @workgroup_size(WG)
fn leaky_relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = fwd_x[i];
    fwd_y[i] = select(p.alpha * x, x, x > 0.0);
}

@compute @workgroup_size(WG)
fn leaky_relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    bwd_grad_x[i] = bwd_grad_y[i] * select(p.alpha, 1.0, bwd_saved[i] > 0.0);
}

@compute @workgroup_size(WG)
fn elu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = fwd_x[i];
    fwd_y[i] = select(p.alpha * (exp(min(x, 0.0)) - 1.0), x, x > 0.0);
}

@compute @workgroup_size(WG)
fn elu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = bwd_saved[i];
    bwd_grad_x[i] = bwd_grad_y[i] * select(p.alpha * exp(min(x, 0.0)), 1.0, x > 0.0);
}

@compute @workgroup_size(WG)
fn gelu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = fwd_x[i];
    fwd_y[i] = 0.5 * x * (1.0 + erf_approx(x * 0.7071067812));
}

@compute @workgroup_size(WG)
fn gelu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = bwd_saved[i];
    let cdf = 0.5 * (1.0 + erf_approx(x * 0.7071067812));
    let pdf = 0.3989422804 * exp(-0.5 * x * x);
    bwd_grad_x[i] = bwd_grad_y[i] * (cdf + x * pdf);
}

@compute @workgroup_size(WG)
fn gelu_tanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = fwd_x[i];
    fwd_y[i] = 0.5 * x * (1.0 + tanh_safe(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x)));
}

@compute @workgroup_size(WG)
fn gelu_tanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = bwd_saved[i];
    let t = tanh_safe(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x));
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * x * x);
    bwd_grad_x[i] = bwd_grad_y[i] * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du);
}

@compute @workgroup_size(WG)
fn silu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = fwd_x[i];
    fwd_y[i] = x * sigmoid_of(x);
}

@compute @workgroup_size(WG)
fn silu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let x = bwd_saved[i];
    let s = sigmoid_of(x);
    bwd_grad_x[i] = bwd_grad_y[i] * s * (1.0 + x * (1.0 - s));
}
