// Multi-class hinge loss (PyTorch's MultiMarginLoss with p = 1, mean) over logits x [n, c] and
// integer labels y [n]:
//   forward:  loss = (1/n) Σ_r (1/c) Σ_{j ≠ y_r} max(0, margin − x[r, y_r] + x[r, j])
//   backward: with a_rj = [margin − x[r, y_r] + x[r, j] > 0] for j ≠ y_r,
//             grad_x[r, j] = grad_loss · a_rj / (n·c),  grad_x[r, y_r] = −grad_loss · Σ_j a_rj / (n·c)
// Threads: forward runs one workgroup of WG invocations striding over rows, then a tree in
// workgroup memory; backward runs one invocation per row; grids over 65,535 workgroups fold
// into y.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { n: u32, c: u32, margin: f32, _pad: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> partial: array<f32, WG>;

// ---- multi_margin_loss_forward: inputs (logits, labels), outputs (loss)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> fwd_loss: array<f32>;

@compute @workgroup_size(WG)
fn multi_margin_loss_forward(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var r = lid; r < p.n; r += WG) {
        let base = r * p.c;
        let y = fwd_labels[r];
        let x_y = fwd_x[base + y];
        for (var j = 0u; j < p.c; j++) {
            if (j != y) { acc += max(0.0, p.margin - x_y + fwd_x[base + j]); }
        }
    }
    partial[lid] = acc;
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        workgroupBarrier();
        if (lid < stride) { partial[lid] += partial[lid + stride]; }
    }
    if (lid == 0u) { fwd_loss[0] = partial[0] / f32(p.n * p.c); }
}

// ---- multi_margin_loss_backward: inputs (logits, labels, grad_loss), outputs (grad_logits)
@group(0) @binding(1) var<storage, read> bwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_labels: array<u32>;
@group(0) @binding(3) var<storage, read> bwd_grad_loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn multi_margin_loss_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * WG;
    if (r >= p.n) { return; }
    let base = r * p.c;
    let y = bwd_labels[r];
    let x_y = bwd_x[base + y];
    let scale = bwd_grad_loss[0] / f32(p.n * p.c);
    var n_active = 0.0;
    for (var j = 0u; j < p.c; j++) {
        var g = 0.0;
        if (j != y && p.margin - x_y + bwd_x[base + j] > 0.0) {
            g = scale;
            n_active += 1.0;
        }
        bwd_grad_x[base + j] = g;
    }
    bwd_grad_x[base + y] = -scale * n_active;
}
