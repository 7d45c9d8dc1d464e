// Optimizer updates, in place, with PyTorch's semantics (torch.optim.SGD, Adam, AdamW and
// RMSprop; L2 weight decay added to the gradient, AdamW's decoupled from it).
//
//   sgd_update:  g = grad + wd*param;  if momentum > 0: v = momentum*v + g, and g = v, or with
//                Nesterov g = g + momentum*v;  param -= lr*g
//   sgd_update_dampened: as sgd_update with v = momentum*v + (1 - dampening)*g, except v = g on
//                the first step (t = 1), as torch.optim.SGD starts its buffer
//   adam_update: g = grad + wd*param (AdamW: g = grad, and param *= 1 - lr*wd first);
//                m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//                param -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//   rmsprop_update: g = grad + wd*param;  s = alpha*s + (1-alpha)*g^2;  d = g / (sqrt(s) + eps);
//                if momentum > 0: b = momentum*b + d, d = b;  param -= lr*d
//   (flags: bit 0 Nesterov, bit 1 decoupled weight decay; RMSprop's alpha travels in beta2)
// Every update's last input is the [2] f32 step factors: [0] scales Params.lr, set each step
// by lr_schedule (its own shader) on the GPU, so a schedule changes the rate without a rebuild
// or an upload; [1] scales grad, set by clip_grad_norm (clip_grad.wgsl) when gradients are
// clipped (1 otherwise).
//   optimizer_step_count: t += 1   (runs once per step, before the updates that read t)
// The step count lives on the GPU so a training step uploads nothing but the batch.
//
// Threads: one invocation per parameter element (adam_update: per 4 elements); flat index =
// gid.x + gid.y * nwg.x * WG.
// Bindings, per entry point: 0 = params, then inputs in OpDef order (mutated inputs are
// read_write).

struct Params {
    numel: u32, lr: f32, momentum: f32, weight_decay: f32, beta1: f32, beta2: f32, eps: f32, flags: u32,
    dampening: f32, _pad0: u32, _pad1: u32, _pad2: u32,
}

const NESTEROV: u32 = 1u;
const DECOUPLED: u32 = 2u;

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- sgd_update: inputs (param [mutated], grad, velocity [mutated], factors)
@group(0) @binding(1) var<storage, read_write> sgd_param: array<f32>;
@group(0) @binding(2) var<storage, read> sgd_grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> sgd_velocity: array<f32>;
@group(0) @binding(4) var<storage, read> sgd_lr: array<f32>;

@compute @workgroup_size(WG)
fn sgd_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    var g = sgd_grad[i] * sgd_lr[1] + p.weight_decay * sgd_param[i];
    if (p.momentum > 0.0) {
        let v = p.momentum * sgd_velocity[i] + g;
        sgd_velocity[i] = v;
        g = select(v, g + p.momentum * v, (p.flags & NESTEROV) != 0u);
    }
    sgd_param[i] -= p.lr * sgd_lr[0] * g;
}

// ---- sgd_update_dampened: inputs (param [mutated], grad, velocity [mutated], t, factors)
@group(0) @binding(1) var<storage, read_write> sgdd_param: array<f32>;
@group(0) @binding(2) var<storage, read> sgdd_grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> sgdd_velocity: array<f32>;
@group(0) @binding(4) var<storage, read> sgdd_t: array<u32>;
@group(0) @binding(5) var<storage, read> sgdd_lr: array<f32>;

@compute @workgroup_size(WG)
fn sgd_update_dampened(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let g = sgdd_grad[i] * sgdd_lr[1] + p.weight_decay * sgdd_param[i];
    let damped = p.momentum * sgdd_velocity[i] + (1.0 - p.dampening) * g;
    let v = select(damped, g, sgdd_t[0] == 1u);
    sgdd_velocity[i] = v;
    sgdd_param[i] -= p.lr * sgdd_lr[0] * select(v, g + p.momentum * v, (p.flags & NESTEROV) != 0u);
}

// ---- adam_update: inputs (param [mutated], grad, m [mutated], v [mutated], t, factors)
@group(0) @binding(1) var<storage, read_write> adam_param: array<f32>;
@group(0) @binding(2) var<storage, read> adam_grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> adam_m: array<f32>;
@group(0) @binding(4) var<storage, read_write> adam_v: array<f32>;
@group(0) @binding(5) var<storage, read> adam_t: array<u32>;
@group(0) @binding(6) var<storage, read> adam_lr: array<f32>;

@compute @workgroup_size(WG)
fn adam_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Four elements per invocation: the bias corrections are worked out once for them, and
    // each element's param is loaded once (buffer loads are what this kernel costs).
    let i0 = (gid.x + gid.y * nwg.x * WG) * 4u;
    if (i0 >= p.numel) { return; }
    let t = f32(adam_t[0]);
    let c1 = 1.0 / (1.0 - pow(p.beta1, t));
    let c2 = 1.0 / (1.0 - pow(p.beta2, t));
    let decoupled = (p.flags & DECOUPLED) != 0u;
    let lr = p.lr * adam_lr[0];
    for (var i = i0; i < min(i0 + 4u, p.numel); i++) {
        let w = select(adam_param[i], adam_param[i] * (1.0 - lr * p.weight_decay), decoupled);
        let g = adam_grad[i] * adam_lr[1] + select(p.weight_decay * w, 0.0, decoupled);
        let m = p.beta1 * adam_m[i] + (1.0 - p.beta1) * g;
        let v = p.beta2 * adam_v[i] + (1.0 - p.beta2) * g * g;
        adam_m[i] = m;
        adam_v[i] = v;
        adam_param[i] = w - lr * (m * c1) / (sqrt(v * c2) + p.eps);
    }
}

// ---- adam_update_vec4: adam_update over vec4 views (numel a multiple of 4): one load per
// 4 floats of each tensor instead of four.
@group(0) @binding(1) var<storage, read_write> adam4_param: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> adam4_grad: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> adam4_m: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> adam4_v: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> adam4_t: array<u32>;
@group(0) @binding(6) var<storage, read> adam4_lr: array<f32>;

@compute @workgroup_size(WG)
fn adam_update_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i * 4u >= p.numel) { return; }
    let t = f32(adam4_t[0]);
    let c1 = 1.0 / (1.0 - pow(p.beta1, t));
    let c2 = 1.0 / (1.0 - pow(p.beta2, t));
    let decoupled = (p.flags & DECOUPLED) != 0u;
    let lr = p.lr * adam4_lr[0];
    let w = select(adam4_param[i], adam4_param[i] * (1.0 - lr * p.weight_decay), decoupled);
    let g = adam4_grad[i] * adam4_lr[1] + select(p.weight_decay * w, vec4<f32>(0.0), decoupled);
    let m = p.beta1 * adam4_m[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * adam4_v[i] + (1.0 - p.beta2) * g * g;
    adam4_m[i] = m;
    adam4_v[i] = v;
    adam4_param[i] = w - lr * (m * c1) / (sqrt(v * c2) + p.eps);
}

// ---- rmsprop_update: inputs (param [mutated], grad, square_avg [mutated], buffer [mutated], factors)
@group(0) @binding(1) var<storage, read_write> rms_param: array<f32>;
@group(0) @binding(2) var<storage, read> rms_grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> rms_square_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> rms_buffer: array<f32>;
@group(0) @binding(5) var<storage, read> rms_lr: array<f32>;

@compute @workgroup_size(WG)
fn rmsprop_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let g = rms_grad[i] * rms_lr[1] + p.weight_decay * rms_param[i];
    let s = p.beta2 * rms_square_avg[i] + (1.0 - p.beta2) * g * g;
    rms_square_avg[i] = s;
    var d = g / (sqrt(s) + p.eps);
    if (p.momentum > 0.0) {
        d = p.momentum * rms_buffer[i] + d;
        rms_buffer[i] = d;
    }
    rms_param[i] -= p.lr * rms_lr[0] * d;
}

// ---- optimizer_step_count: inputs (t [mutated])
@group(0) @binding(1) var<storage, read_write> count_t: array<u32>;

@compute @workgroup_size(1)
fn optimizer_step_count() {
    if (p.numel == 0u) { return; }
    count_t[0] += 1u;
}
