// Softmax cross-entropy over logits [n, c] with integer labels [n], and the metric accumulator.
//
//   forward:  loss = (1/n) * sum_r ( logsumexp(logits[r, :]) - logits[r, label[r]] )
//   backward: grad_logits[r, j] = grad_loss * (softmax(logits[r, :])[j] - [j == label[r]]) / n
//   classification_metrics: over rows whose label < c (label >= c marks padding),
//             metrics[0] += sum of per-row losses, metrics[1] += rows whose argmax (first
//             maximum) equals the label, metrics[2] += rows counted.
// logsumexp subtracts the row maximum first, so large logits do not overflow.
//
// Threads: forward and metrics run one workgroup of RED invocations that stride over rows,
// then reduce in workgroup memory; backward runs one invocation per row.
// Bindings, per entry point: 0 = params, then inputs in OpDef order (mutated inputs are
// read_write), then outputs.

struct Params { n: u32, c: u32, _pad0: u32, _pad1: u32 }

override WG: u32 = 256u;
const RED: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- softmax_cross_entropy_forward: inputs (logits, labels), outputs (loss)
@group(0) @binding(1) var<storage, read> fwd_logits: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> fwd_loss: array<f32>;

var<workgroup> partial_loss: array<f32, RED>;
var<workgroup> partial_correct: array<f32, RED>;
var<workgroup> partial_count: array<f32, RED>;

@compute @workgroup_size(RED)
fn softmax_cross_entropy_forward(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var r = lid; r < p.n; r += RED) {
        let base = r * p.c;
        var row_max = fwd_logits[base];
        for (var j = 1u; j < p.c; j++) { row_max = max(row_max, fwd_logits[base + j]); }
        var sum = 0.0;
        for (var j = 0u; j < p.c; j++) { sum += exp(fwd_logits[base + j] - row_max); }
        acc += log(sum) + row_max - fwd_logits[base + min(fwd_labels[r], p.c - 1u)];
    }
    partial_loss[lid] = acc;
    workgroupBarrier();
    for (var stride = RED / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) { partial_loss[lid] += partial_loss[lid + stride]; }
        workgroupBarrier();
    }
    if (lid == 0u) { fwd_loss[0] = partial_loss[0] / f32(p.n); }
}

// ---- softmax_cross_entropy_backward: inputs (logits, labels, grad_loss), outputs (grad_logits)
@group(0) @binding(1) var<storage, read> bwd_logits: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_labels: array<u32>;
@group(0) @binding(3) var<storage, read> bwd_grad_loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> bwd_grad_logits: array<f32>;

@compute @workgroup_size(WG)
fn softmax_cross_entropy_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * WG;
    if (r >= p.n) { return; }
    let base = r * p.c;
    var row_max = bwd_logits[base];
    for (var j = 1u; j < p.c; j++) { row_max = max(row_max, bwd_logits[base + j]); }
    var sum = 0.0;
    for (var j = 0u; j < p.c; j++) { sum += exp(bwd_logits[base + j] - row_max); }
    let scale = bwd_grad_loss[0] / f32(p.n);
    let label = bwd_labels[r];
    for (var j = 0u; j < p.c; j++) {
        let softmax = exp(bwd_logits[base + j] - row_max) / sum;
        bwd_grad_logits[base + j] = scale * (softmax - select(0.0, 1.0, j == label));
    }
}

// ---- classification_metrics: inputs (logits, labels, metrics [mutated])
@group(0) @binding(1) var<storage, read> met_logits: array<f32>;
@group(0) @binding(2) var<storage, read> met_labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> met_metrics: array<f32>;

@compute @workgroup_size(RED)
fn classification_metrics(@builtin(local_invocation_index) lid: u32) {
    var loss = 0.0;
    var correct = 0.0;
    var count = 0.0;
    for (var r = lid; r < p.n; r += RED) {
        let label = met_labels[r];
        if (label >= p.c) { continue; }
        let base = r * p.c;
        var row_max = met_logits[base];
        var arg = 0u;
        for (var j = 1u; j < p.c; j++) {
            let v = met_logits[base + j];
            if (v > row_max) { row_max = v; arg = j; }
        }
        var sum = 0.0;
        for (var j = 0u; j < p.c; j++) { sum += exp(met_logits[base + j] - row_max); }
        loss += log(sum) + row_max - met_logits[base + label];
        correct += select(0.0, 1.0, arg == label);
        count += 1.0;
    }
    partial_loss[lid] = loss;
    partial_correct[lid] = correct;
    partial_count[lid] = count;
    workgroupBarrier();
    for (var stride = RED / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial_loss[lid] += partial_loss[lid + stride];
            partial_correct[lid] += partial_correct[lid + stride];
            partial_count[lid] += partial_count[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        met_metrics[0] += partial_loss[0];
        met_metrics[1] += partial_correct[0];
        met_metrics[2] += partial_count[0];
    }
}
