// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_, on the GPU: no host
// round trip, the scale reaches the optimizer updates through the step factors.
//
//   grad_sq_norm:   acc = (first ? 0 : acc) + Σ grad²          (one per gradient, in order)
//   clip_grad_norm: factors[1] = min(1, max_norm / (√acc + 1e-6))  (the updates multiply
//                   every gradient by factors[1])
//
// Threads: grad_sq_norm runs one workgroup of WG invocations: each sums a strided share, then
// a tree in workgroup memory, and invocation 0 adds the total (the sums run one after another
// in the step's submission, so no atomics). clip_grad_norm runs one invocation.
// Bindings, per entry point: 0 = params, then inputs in OpDef order (mutated inputs are
// read_write).

struct Params { numel: u32, first: u32, max_norm: f32, _pad: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> partial: array<f32, WG>;

// ---- grad_sq_norm: inputs (grad, acc [mutated])
@group(0) @binding(1) var<storage, read> sq_grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> sq_acc: array<f32>;

@compute @workgroup_size(WG)
fn grad_sq_norm(@builtin(local_invocation_index) lid: u32) {
    var sum = 0.0;
    for (var i = lid; i < p.numel; i += WG) {
        let g = sq_grad[i];
        sum += g * g;
    }
    partial[lid] = sum;
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (lid < s) { partial[lid] += partial[lid + s]; }
    }
    if (lid == 0u) {
        sq_acc[0] = select(sq_acc[0], 0.0, p.first != 0u) + partial[0];
    }
}

// ---- clip_grad_norm: inputs (acc, factors [mutated])
@group(0) @binding(1) var<storage, read> clip_acc: array<f32>;
@group(0) @binding(2) var<storage, read_write> clip_factors: array<f32>;

@compute @workgroup_size(1)
fn clip_grad_norm() {
    clip_factors[1] = min(1.0, p.max_norm / (sqrt(clip_acc[0]) + 1e-6));
}
