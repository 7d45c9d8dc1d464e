// Softmax and log-softmax along one dimension (PyTorch's softmax(x, dim) / log_softmax), the
// tensor viewed as [outer, c, inner] around it: for each (o, k),
//   m = max_j x[o, j, k],  s = Σ_j exp(x[o, j, k] − m)
//   softmax:      y = exp(x − m) / s           grad_x = y · (grad_y − Σ_j grad_y_j · y_j)
//   log_softmax:  y = x − m − log(s)           grad_x = grad_y − exp(y) · Σ_j grad_y_j
// Threads: one invocation per column (o, k), looping over the c values of the dimension;
// grids over 65,535 workgroups fold into y.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { outer: u32, c: u32, inner: u32, _pad: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

fn at(col: u32, j: u32) -> u32 {
    let o = col / p.inner;
    return (o * p.c + j) * p.inner + (col - o * p.inner);
}

// ---- softmax_forward, log_softmax_forward: inputs (x), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;

// (max, Σ exp(x − max)) of column `col`.
fn column_stats(col: u32) -> vec2<f32> {
    var m = fwd_x[at(col, 0u)];
    for (var j = 1u; j < p.c; j++) { m = max(m, fwd_x[at(col, j)]); }
    var s = 0.0;
    for (var j = 0u; j < p.c; j++) { s += exp(fwd_x[at(col, j)] - m); }
    return vec2<f32>(m, s);
}

@compute @workgroup_size(WG)
fn softmax_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let col = gid.x + gid.y * nwg.x * WG;
    if (col >= p.outer * p.inner) { return; }
    let ms = column_stats(col);
    for (var j = 0u; j < p.c; j++) {
        let idx = at(col, j);
        fwd_y[idx] = exp(fwd_x[idx] - ms.x) / ms.y;
    }
}

@compute @workgroup_size(WG)
fn log_softmax_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let col = gid.x + gid.y * nwg.x * WG;
    if (col >= p.outer * p.inner) { return; }
    let ms = column_stats(col);
    let log_s = log(ms.y);
    for (var j = 0u; j < p.c; j++) {
        let idx = at(col, j);
        fwd_y[idx] = fwd_x[idx] - ms.x - log_s;
    }
}

// ---- softmax_backward, log_softmax_backward: inputs (grad_y, y), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> bwd_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn softmax_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let col = gid.x + gid.y * nwg.x * WG;
    if (col >= p.outer * p.inner) { return; }
    var dot = 0.0;
    for (var j = 0u; j < p.c; j++) {
        let idx = at(col, j);
        dot += bwd_grad_y[idx] * bwd_y[idx];
    }
    for (var j = 0u; j < p.c; j++) {
        let idx = at(col, j);
        bwd_grad_x[idx] = bwd_y[idx] * (bwd_grad_y[idx] - dot);
    }
}

@compute @workgroup_size(WG)
fn log_softmax_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let col = gid.x + gid.y * nwg.x * WG;
    if (col >= p.outer * p.inner) { return; }
    var sum = 0.0;
    for (var j = 0u; j < p.c; j++) { sum += bwd_grad_y[at(col, j)]; }
    for (var j = 0u; j < p.c; j++) {
        let idx = at(col, j);
        bwd_grad_x[idx] = bwd_grad_y[idx] - exp(bwd_y[idx]) * sum;
    }
}
