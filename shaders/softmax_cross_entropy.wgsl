// Softmax cross-entropy over logits [n, c] with integer labels [n], class weights w [c] and
// label smoothing ε (PyTorch's F.cross_entropy(weight=w, label_smoothing=ε), mean), and the
// metric accumulator. With lse_r = logsumexp(logits[r, :]), y = label[r], p = softmax:
//   forward:  loss = Σ_r [ (1−ε)·w_y·(lse_r − x_ry) + (ε/c)·Σ_j w_j·(lse_r − x_rj) ] / W,
//             W = Σ_r w_y  (all w = 1, ε = 0: the plain mean over rows)
//   backward: grad_logits[r, j] = grad_loss · [ (1−ε)·w_y·(p_j − [j = y]) + (ε/c)·(S·p_j − w_j) ] / W,
//             S = Σ_k w_k
//   classification_metrics: over rows whose label < c (label >= c marks padding),
//             metrics[0] += sum of per-row losses, metrics[1] += rows whose argmax (first
//             maximum) equals the label, metrics[2] += rows counted.
// logsumexp subtracts the row maximum first, so large logits do not overflow.
//
// Threads: forward and metrics run one workgroup of RED invocations that stride over rows,
// then reduce in workgroup memory; backward runs one invocation per row (each sums W over the
// labels itself: n is a batch).
// Bindings, per entry point: 0 = params, then inputs in OpDef order (mutated inputs are
// read_write), then outputs.

struct Params { n: u32, c: u32, smoothing: f32, _pad0: u32 }

override WG: u32 = 256u;
const RED: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- softmax_cross_entropy_forward: inputs (logits, labels, weight), outputs (loss)
@group(0) @binding(1) var<storage, read> fwd_logits: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_labels: array<u32>;
@group(0) @binding(3) var<storage, read> fwd_weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> fwd_loss: array<f32>;

var<workgroup> partial_loss: array<f32, RED>;
var<workgroup> partial_correct: array<f32, RED>;
var<workgroup> partial_count: array<f32, RED>;

@compute @workgroup_size(RED)
fn softmax_cross_entropy_forward(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    var weight_sum = 0.0;
    for (var r = lid; r < p.n; r += RED) {
        let base = r * p.c;
        var row_max = fwd_logits[base];
        for (var j = 1u; j < p.c; j++) { row_max = max(row_max, fwd_logits[base + j]); }
        var sum = 0.0;
        for (var j = 0u; j < p.c; j++) { sum += exp(fwd_logits[base + j] - row_max); }
        let lse = log(sum) + row_max;
        let y = min(fwd_labels[r], p.c - 1u);
        var smoothed = 0.0;
        for (var j = 0u; j < p.c; j++) { smoothed += fwd_weight[j] * (lse - fwd_logits[base + j]); }
        let w_y = fwd_weight[y];
        acc += (1.0 - p.smoothing) * w_y * (lse - fwd_logits[base + y])
            + p.smoothing / f32(p.c) * smoothed;
        weight_sum += w_y;
    }
    partial_loss[lid] = acc;
    partial_count[lid] = weight_sum;
    workgroupBarrier();
    for (var stride = RED / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial_loss[lid] += partial_loss[lid + stride];
            partial_count[lid] += partial_count[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) { fwd_loss[0] = partial_loss[0] / partial_count[0]; }
}

// ---- softmax_cross_entropy_backward: inputs (logits, labels, weight, grad_loss),
// outputs (grad_logits)
@group(0) @binding(1) var<storage, read> bwd_logits: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_labels: array<u32>;
@group(0) @binding(3) var<storage, read> bwd_weight: array<f32>;
@group(0) @binding(4) var<storage, read> bwd_grad_loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> bwd_grad_logits: array<f32>;

@compute @workgroup_size(WG)
fn softmax_cross_entropy_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * WG;
    if (r >= p.n) { return; }
    var weight_sum = 0.0;
    for (var k = 0u; k < p.n; k++) { weight_sum += bwd_weight[min(bwd_labels[k], p.c - 1u)]; }
    var class_weights = 0.0;
    for (var j = 0u; j < p.c; j++) { class_weights += bwd_weight[j]; }
    let base = r * p.c;
    var row_max = bwd_logits[base];
    for (var j = 1u; j < p.c; j++) { row_max = max(row_max, bwd_logits[base + j]); }
    var sum = 0.0;
    for (var j = 0u; j < p.c; j++) { sum += exp(bwd_logits[base + j] - row_max); }
    let scale = bwd_grad_loss[0] / weight_sum;
    let label = bwd_labels[r];
    let w_y = bwd_weight[min(label, p.c - 1u)];
    let eps_c = p.smoothing / f32(p.c);
    for (var j = 0u; j < p.c; j++) {
        let softmax = exp(bwd_logits[base + j] - row_max) / sum;
        let hard = (1.0 - p.smoothing) * w_y * (softmax - select(0.0, 1.0, j == label));
        bwd_grad_logits[base + j] = scale * (hard + eps_c * (class_weights * softmax - bwd_weight[j]));
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
