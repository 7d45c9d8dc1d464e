// Local response normalisation across channels (AlexNet; PyTorch's LocalResponseNorm), NCHW:
//   s_c = k + (alpha / size) · Σ_{c' ∈ W(c)} x_{c'}²,   W(c) = [c − size/2, c + (size − 1)/2] ∩ [0, C)
//   y_c = x_c · s_c^(−beta)
//   grad_x_j = grad_y_j · s_j^(−beta)
//            − (2 · alpha · beta / size) · x_j · Σ_{c : j ∈ W(c)} grad_y_c · x_c · s_c^(−beta − 1)
//   where j ∈ W(c) ⟺ c ∈ [j − (size − 1)/2, j + size/2].
// (Integer division; channels outside [0, C) count as zeros, as PyTorch's padding does.)
// Threads: one invocation per element; grids over 65,535 workgroups fold into y.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { n: u32, c: u32, hw: u32, size: u32, alpha: f32, beta: f32, k: f32, _pad: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

fn window_lo(c: u32) -> u32 { return select(0u, c - p.size / 2u, c >= p.size / 2u); }
fn window_hi(c: u32) -> u32 { return min(p.c - 1u, c + (p.size - 1u) / 2u); }

// ---- local_response_norm_forward: inputs (x), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;

fn fwd_scale(b: u32, c: u32, pixel: u32) -> f32 {
    var sum = 0.0;
    for (var cc = window_lo(c); cc <= window_hi(c); cc++) {
        let v = fwd_x[(b * p.c + cc) * p.hw + pixel];
        sum += v * v;
    }
    return p.k + p.alpha / f32(p.size) * sum;
}

@compute @workgroup_size(WG)
fn local_response_norm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.c * p.hw) { return; }
    let pixel = i % p.hw;
    let c = (i / p.hw) % p.c;
    let b = i / (p.hw * p.c);
    fwd_y[i] = fwd_x[i] * pow(fwd_scale(b, c, pixel), -p.beta);
}

// ---- local_response_norm_backward: inputs (grad_y, x), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bwd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> bwd_grad_x: array<f32>;

fn bwd_scale(b: u32, c: u32, pixel: u32) -> f32 {
    var sum = 0.0;
    for (var cc = window_lo(c); cc <= window_hi(c); cc++) {
        let v = bwd_x[(b * p.c + cc) * p.hw + pixel];
        sum += v * v;
    }
    return p.k + p.alpha / f32(p.size) * sum;
}

@compute @workgroup_size(WG)
fn local_response_norm_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.c * p.hw) { return; }
    let pixel = i % p.hw;
    let j = (i / p.hw) % p.c;
    let b = i / (p.hw * p.c);
    // Channels c whose window holds j.
    let lo = select(0u, j - (p.size - 1u) / 2u, j >= (p.size - 1u) / 2u);
    let hi = min(p.c - 1u, j + p.size / 2u);
    var cross = 0.0;
    for (var c = lo; c <= hi; c++) {
        let idx = (b * p.c + c) * p.hw + pixel;
        let s = bwd_scale(b, c, pixel);
        cross += bwd_grad_y[idx] * bwd_x[idx] * pow(s, -p.beta - 1.0);
    }
    let s_j = bwd_scale(b, j, pixel);
    bwd_grad_x[i] = bwd_grad_y[i] * pow(s_j, -p.beta)
        - 2.0 * p.alpha * p.beta / f32(p.size) * bwd_x[i] * cross;
}
