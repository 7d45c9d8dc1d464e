// Losses that are the mean of an elementwise function of a prediction x and a target t, both
// of N elements (PyTorch's reduction='mean'); `kind` picks f:
//   0 mse_loss:                           f = (x − t)²
//   1 binary_cross_entropy_with_logits:   f = max(x, 0) − x·t + log(1 + e^−|x|)
//   2 hinge_loss (t in {−1, +1}):         f = max(0, 1 − t·x)
//   forward:   loss = Σ f / N   (one workgroup: each invocation sums a strided share in f32,
//              then a tree in workgroup memory)
//   backward:  grad_x = grad_loss · ∂f/∂x / N,  grad_t = grad_loss · ∂f/∂t / N, where
//              mse: 2(x − t), −2(x − t); bce: σ(x) − t, −x; hinge: −t, −x where 1 − t·x > 0, else 0
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { numel: u32, kind: u32, _pad0: u32, _pad1: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> partial: array<f32, WG>;

fn f(x: f32, t: f32) -> f32 {
    switch p.kind {
        case 0u: { return (x - t) * (x - t); }
        case 1u: { return max(x, 0.0) - x * t + log(1.0 + exp(-abs(x))); }
        default: { return max(0.0, 1.0 - t * x); }
    }
}

// (∂f/∂x, ∂f/∂t).
fn df(x: f32, t: f32) -> vec2<f32> {
    switch p.kind {
        case 0u: { return vec2<f32>(2.0 * (x - t), -2.0 * (x - t)); }
        case 1u: { return vec2<f32>(1.0 / (1.0 + exp(-x)) - t, -x); }
        default: {
            if (1.0 - t * x > 0.0) { return vec2<f32>(-t, -x); }
            return vec2<f32>(0.0, 0.0);
        }
    }
}

// ---- pointwise_loss_forward: inputs (x, t), outputs (loss)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_loss: array<f32>;

@compute @workgroup_size(WG)
fn pointwise_loss_forward(@builtin(local_invocation_index) lid: u32) {
    var sum = 0.0;
    for (var i = lid; i < p.numel; i += WG) {
        sum += f(fwd_x[i], fwd_t[i]);
    }
    partial[lid] = sum;
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        workgroupBarrier();
        if (lid < stride) { partial[lid] += partial[lid + stride]; }
    }
    if (lid == 0u) { fwd_loss[0] = partial[0] / f32(p.numel); }
}

// ---- pointwise_loss_backward: inputs (x, t, grad_loss), outputs (grad_x, grad_t)
@group(0) @binding(1) var<storage, read> bwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_t: array<f32>;
@group(0) @binding(3) var<storage, read> bwd_grad_loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> bwd_grad_x: array<f32>;
@group(0) @binding(5) var<storage, read_write> bwd_grad_t: array<f32>;

@compute @workgroup_size(WG)
fn pointwise_loss_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.numel) { return; }
    let scale = bwd_grad_loss[0] / f32(p.numel);
    let d = df(bwd_x[i], bwd_t[i]) * scale;
    bwd_grad_x[i] = d.x;
    bwd_grad_t[i] = d.y;
}
