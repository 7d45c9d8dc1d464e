// Batch normalisation of NCHW tensors, per channel c over its count = n·h·w values.
//
//   stats (train):   mean[c] = Σ x / count            var[c] = Σ (x − mean)² / count  (biased)
//   forward:         y = (x − mean[c]) · rs[c] · weight[c] + bias[c],   rs = 1 / √(var + eps)
//                    (train: the batch's mean and var; eval: the running ones)
//   backward_reduce: x̂ = (x − mean)·rs;  grad_bias[c] = Σ grad_y;  grad_weight[c] = Σ grad_y·x̂
//   backward_input (train, mean and var depend on x; grad_mean, grad_var flow into them):
//                    grad_x = weight·rs·(grad_y − grad_bias/count − x̂·grad_weight/count)
//                             + grad_mean/count + grad_var·2(x − mean)/count
//   eval backward:   grad_x = grad_y · weight · rs; grad_weight, grad_bias as above, and the
//                    running statistics' (constants in a model, but the op is differentiable):
//                    grad_running_mean = −weight·rs·grad_bias, grad_running_var = −weight·rs²·grad_weight/2
//   update_stats:    running_mean ← (1 − m)·running_mean + m·mean
//                    running_var  ← (1 − m)·running_var + m·var·count/(count − 1)   (unbiased)
//
// Threads: the reductions run one workgroup of WG invocations per channel (workgroup_id.x = c),
// each summing a strided share of the channel's values in f32, then a tree in workgroup
// memory; the mean is reduced before the squared deviations (two passes, no E[x²] − mean²
// cancellation). Their split forms, for GPUs, where c workgroups would leave most of the
// device idle, give each (channel, split) its own workgroup over `chunk` consecutive values
// (workgroup_id = (c, split)), which writes a partial result to `part` ([c, splits, 2]); a
// combine entry, one invocation per channel, adds the splits: sums as they are, statistics
// by Chan et al.'s rule (chunk means and squared deviations about them, then
// M2 = Σ M2_s + Σ n_s·(mean_s − mean)², still no cancellation). The elementwise entries run one invocation per element, grids over 65,535
// workgroups folded into y. update_stats runs one invocation per channel.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params { n: u32, c: u32, hw: u32, count: u32, eps: f32, momentum: f32, splits: u32, chunk: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> partial_a: array<f32, WG>;
var<workgroup> partial_b: array<f32, WG>;

// Index of the channel's `i`-th value (i < count) in an NCHW tensor.
fn at(ch: u32, i: u32) -> u32 {
    let b = i / p.hw;
    return (b * p.c + ch) * p.hw + (i - b * p.hw);
}

// Sums partial_a (and partial_b) over the workgroup into element 0.
fn tree_sum(lid: u32) {
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        workgroupBarrier();
        if (lid < stride) {
            partial_a[lid] += partial_a[lid + stride];
            partial_b[lid] += partial_b[lid + stride];
        }
    }
    workgroupBarrier();
}

// ---- batch_norm2d_stats: inputs (x), outputs (mean, var) of batch_norm2d
@group(0) @binding(1) var<storage, read> st_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> st_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> st_var: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wid.x;
    var sum = 0.0;
    for (var i = lid; i < p.count; i += WG) {
        sum += st_x[at(ch, i)];
    }
    partial_a[lid] = sum;
    partial_b[lid] = 0.0;
    tree_sum(lid);
    let mean = partial_a[0] / f32(p.count);
    workgroupBarrier();
    var dev = 0.0;
    for (var i = lid; i < p.count; i += WG) {
        let d = st_x[at(ch, i)] - mean;
        dev += d * d;
    }
    partial_a[lid] = dev;
    tree_sum(lid);
    if (lid == 0u) {
        st_mean[ch] = mean;
        st_var[ch] = partial_a[0] / f32(p.count);
    }
}

// Values [begin, end) of split `s` of a channel, and their count.
fn split_range(s: u32) -> vec2<u32> {
    let begin = s * p.chunk;
    return vec2<u32>(begin, min(begin + p.chunk, p.count));
}

// ---- batch_norm2d_stats_split: inputs (x), outputs (part: per (channel, split) the chunk's
// mean and sum of squared deviations about it)
@group(0) @binding(1) var<storage, read> ss_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> ss_part: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_stats_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wid.x;
    let r = split_range(wid.y);
    var sum = 0.0;
    for (var i = r.x + lid; i < r.y; i += WG) {
        sum += ss_x[at(ch, i)];
    }
    partial_a[lid] = sum;
    partial_b[lid] = 0.0;
    tree_sum(lid);
    let mean = partial_a[0] / f32(r.y - r.x);
    workgroupBarrier();
    var dev = 0.0;
    for (var i = r.x + lid; i < r.y; i += WG) {
        let d = ss_x[at(ch, i)] - mean;
        dev += d * d;
    }
    partial_a[lid] = dev;
    tree_sum(lid);
    if (lid == 0u) {
        let o = (ch * p.splits + wid.y) * 2u;
        ss_part[o] = mean;
        ss_part[o + 1u] = partial_a[0];
    }
}

// ---- batch_norm2d_stats_combine: inputs (part), outputs (mean, var)
@group(0) @binding(1) var<storage, read> sc_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> sc_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> sc_var: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_stats_combine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ch = gid.x;
    if (ch >= p.c) { return; }
    var total = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let r = split_range(s);
        total += f32(r.y - r.x) * sc_part[(ch * p.splits + s) * 2u];
    }
    let mean = total / f32(p.count);
    var m2 = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let r = split_range(s);
        let o = (ch * p.splits + s) * 2u;
        let d = sc_part[o] - mean;
        m2 += sc_part[o + 1u] + f32(r.y - r.x) * d * d;
    }
    sc_mean[ch] = mean;
    sc_var[ch] = m2 / f32(p.count);
}

// ---- batch_norm2d_forward: inputs (x, weight, bias), outputs (mean, var, y); mean and var
// were written by batch_norm2d_stats in the same plan.
@group(0) @binding(1) var<storage, read> fw_x: array<f32>;
@group(0) @binding(2) var<storage, read> fw_weight: array<f32>;
@group(0) @binding(3) var<storage, read> fw_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> fw_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> fw_var: array<f32>;
@group(0) @binding(6) var<storage, read_write> fw_y: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.c * p.hw) { return; }
    let ch = (i / p.hw) % p.c;
    let rs = inverseSqrt(fw_var[ch] + p.eps);
    fw_y[i] = (fw_x[i] - fw_mean[ch]) * rs * fw_weight[ch] + fw_bias[ch];
}

// ---- batch_norm2d_eval_forward: inputs (x, weight, bias, running_mean, running_var), outputs (y)
@group(0) @binding(1) var<storage, read> ev_x: array<f32>;
@group(0) @binding(2) var<storage, read> ev_weight: array<f32>;
@group(0) @binding(3) var<storage, read> ev_bias: array<f32>;
@group(0) @binding(4) var<storage, read> ev_mean: array<f32>;
@group(0) @binding(5) var<storage, read> ev_var: array<f32>;
@group(0) @binding(6) var<storage, read_write> ev_y: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_eval_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.c * p.hw) { return; }
    let ch = (i / p.hw) % p.c;
    let rs = inverseSqrt(ev_var[ch] + p.eps);
    ev_y[i] = (ev_x[i] - ev_mean[ch]) * rs * ev_weight[ch] + ev_bias[ch];
}

// ---- batch_norm2d_backward_reduce: inputs (grad_y, x, mean, var) of either backward op,
// outputs (grad_weight, grad_bias)
@group(0) @binding(1) var<storage, read> rd_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> rd_x: array<f32>;
@group(0) @binding(3) var<storage, read> rd_mean: array<f32>;
@group(0) @binding(4) var<storage, read> rd_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> rd_grad_weight: array<f32>;
@group(0) @binding(6) var<storage, read_write> rd_grad_bias: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_backward_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wid.x;
    let mean = rd_mean[ch];
    let rs = inverseSqrt(rd_var[ch] + p.eps);
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var i = lid; i < p.count; i += WG) {
        let idx = at(ch, i);
        let g = rd_grad_y[idx];
        sum_g += g;
        sum_gx += g * (rd_x[idx] - mean) * rs;
    }
    partial_a[lid] = sum_g;
    partial_b[lid] = sum_gx;
    tree_sum(lid);
    if (lid == 0u) {
        rd_grad_bias[ch] = partial_a[0];
        rd_grad_weight[ch] = partial_b[0];
    }
}

// ---- batch_norm2d_backward_reduce_split: inputs (grad_y, x, mean, var) of the training
// backward, outputs (part: per (channel, split) the sums of grad_y and grad_y·x̂)
@group(0) @binding(1) var<storage, read> rs_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> rs_x: array<f32>;
@group(0) @binding(3) var<storage, read> rs_mean: array<f32>;
@group(0) @binding(4) var<storage, read> rs_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> rs_part: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_backward_reduce_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wid.x;
    let r = split_range(wid.y);
    let mean = rs_mean[ch];
    let rs = inverseSqrt(rs_var[ch] + p.eps);
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var i = r.x + lid; i < r.y; i += WG) {
        let idx = at(ch, i);
        let g = rs_grad_y[idx];
        sum_g += g;
        sum_gx += g * (rs_x[idx] - mean) * rs;
    }
    partial_a[lid] = sum_g;
    partial_b[lid] = sum_gx;
    tree_sum(lid);
    if (lid == 0u) {
        let o = (ch * p.splits + wid.y) * 2u;
        rs_part[o] = partial_a[0];
        rs_part[o + 1u] = partial_b[0];
    }
}

// ---- batch_norm2d_backward_reduce_combine: inputs (part), outputs (grad_weight, grad_bias)
@group(0) @binding(1) var<storage, read> rc_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> rc_grad_weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> rc_grad_bias: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_backward_reduce_combine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ch = gid.x;
    if (ch >= p.c) { return; }
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let o = (ch * p.splits + s) * 2u;
        sum_g += rc_part[o];
        sum_gx += rc_part[o + 1u];
    }
    rc_grad_bias[ch] = sum_g;
    rc_grad_weight[ch] = sum_gx;
}

// ---- batch_norm2d_backward_input: inputs (grad_y, x, weight, mean, var, grad_mean, grad_var),
// outputs (grad_weight, grad_bias, grad_x); the first two were written by the reduce above.
@group(0) @binding(1) var<storage, read> bi_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bi_x: array<f32>;
@group(0) @binding(3) var<storage, read> bi_weight: array<f32>;
@group(0) @binding(4) var<storage, read> bi_mean: array<f32>;
@group(0) @binding(5) var<storage, read> bi_var: array<f32>;
@group(0) @binding(6) var<storage, read> bi_grad_mean: array<f32>;
@group(0) @binding(7) var<storage, read> bi_grad_var: array<f32>;
@group(0) @binding(8) var<storage, read_write> bi_grad_weight: array<f32>;
@group(0) @binding(9) var<storage, read_write> bi_grad_bias: array<f32>;
@group(0) @binding(10) var<storage, read_write> bi_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.c * p.hw) { return; }
    let ch = (i / p.hw) % p.c;
    let inv_count = 1.0 / f32(p.count);
    let centred = bi_x[i] - bi_mean[ch];
    let rs = inverseSqrt(bi_var[ch] + p.eps);
    let x_hat = centred * rs;
    let through_y = bi_weight[ch] * rs
        * (bi_grad_y[i] - (bi_grad_bias[ch] + x_hat * bi_grad_weight[ch]) * inv_count);
    let through_stats = (bi_grad_mean[ch] + 2.0 * centred * bi_grad_var[ch]) * inv_count;
    bi_grad_x[i] = through_y + through_stats;
}

// ---- batch_norm2d_eval_backward_reduce: inputs (grad_y, x, weight, running_mean, running_var),
// outputs (grad_weight, grad_bias, grad_running_mean, grad_running_var)
@group(0) @binding(1) var<storage, read> er_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> er_x: array<f32>;
@group(0) @binding(3) var<storage, read> er_weight: array<f32>;
@group(0) @binding(4) var<storage, read> er_mean: array<f32>;
@group(0) @binding(5) var<storage, read> er_var: array<f32>;
@group(0) @binding(6) var<storage, read_write> er_grad_weight: array<f32>;
@group(0) @binding(7) var<storage, read_write> er_grad_bias: array<f32>;
@group(0) @binding(8) var<storage, read_write> er_grad_mean: array<f32>;
@group(0) @binding(9) var<storage, read_write> er_grad_var: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_eval_backward_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wid.x;
    let mean = er_mean[ch];
    let rs = inverseSqrt(er_var[ch] + p.eps);
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var i = lid; i < p.count; i += WG) {
        let idx = at(ch, i);
        let g = er_grad_y[idx];
        sum_g += g;
        sum_gx += g * (er_x[idx] - mean) * rs;
    }
    partial_a[lid] = sum_g;
    partial_b[lid] = sum_gx;
    tree_sum(lid);
    if (lid == 0u) {
        let w = er_weight[ch];
        er_grad_bias[ch] = partial_a[0];
        er_grad_weight[ch] = partial_b[0];
        // y = (x − m)·rs·w + b ⇒ ∂y/∂m = −w·rs, ∂y/∂v = −(x − m)·w·rs³/2 = −x̂·w·rs²/2.
        er_grad_mean[ch] = -w * rs * partial_a[0];
        er_grad_var[ch] = -0.5 * w * rs * rs * partial_b[0];
    }
}

// ---- batch_norm2d_eval_backward_input: inputs (grad_y, weight, running_var), outputs (grad_x)
@group(0) @binding(1) var<storage, read> eb_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> eb_weight: array<f32>;
@group(0) @binding(3) var<storage, read> eb_var: array<f32>;
@group(0) @binding(4) var<storage, read_write> eb_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_eval_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.c * p.hw) { return; }
    let ch = (i / p.hw) % p.c;
    eb_grad_x[i] = eb_grad_y[i] * eb_weight[ch] * inverseSqrt(eb_var[ch] + p.eps);
}

// ---- batch_norm2d_update_stats: inputs (running_mean, running_var: updated in place, mean, var)
@group(0) @binding(1) var<storage, read_write> up_running_mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> up_running_var: array<f32>;
@group(0) @binding(3) var<storage, read> up_mean: array<f32>;
@group(0) @binding(4) var<storage, read> up_var: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm2d_update_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ch = gid.x;
    if (ch >= p.c) { return; }
    let m = p.momentum;
    let unbiased = up_var[ch] * f32(p.count) / f32(p.count - 1u);
    up_running_mean[ch] = (1.0 - m) * up_running_mean[ch] + m * up_mean[ch];
    up_running_var[ch] = (1.0 - m) * up_running_var[ch] + m * unbiased;
}
