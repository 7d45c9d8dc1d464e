// conv2d: NCHW activations, OIHW weights, f32; stride, zero padding, dilation, bias.
//
//   forward:         y[n,co,oy,ox] = b[co] + sum_{ci,ky,kx} x[n,ci, oy*s-pad+ky*d, ox*s-pad+kx*d] * w[co,ci,ky,kx]
//   backward_input:  grad_x[n,ci,iy,ix] = sum over (co,ky,kx) with iy = oy*s-pad+ky*d (same for x)
//                                         of grad_y[n,co,oy,ox] * w[co,ci,ky,kx]
//   backward_weight: grad_w[co,ci,ky,kx] = sum_{n,oy,ox} grad_y[n,co,oy,ox] * x[n,ci, oy*s-pad+ky*d, ox*s-pad+kx*d]
// (grad_b is the bias_add reduction of grad_y over n, oy, ox.)
//
// Register blocking, so every load feeds several multiply-adds (loads, not arithmetic, bound
// these kernels on CPUs and GPUs alike):
// - forward: one invocation computes TC = 8 output channels x TP = 4 consecutive output
//   columns; per tap it loads 4 inputs and 8 weights for 32 multiply-adds.
// - backward_input: one invocation computes 8 input channels x 4 consecutive input columns
//   (a gather over the outputs each input feeds, since WGSL has no f32 atomics).
// - backward_weight: one workgroup of WR invocations computes an 8 (c_out) x 4 (taps) block
//   of grad_w; each invocation sums over every WR-th row (n, oy), then one barrier and a
//   reduction through workgroup memory.
// Edge blocks clamp their loads and mask their stores. Flat index = gid.x + gid.y * nwg.x * WG.
// Bindings, per entry point: 0 = params, then inputs in OpDef order, then outputs.

struct Params {
    n: u32, c_in: u32, h: u32, w: u32,
    c_out: u32, kh: u32, kw: u32, oh: u32,
    ow: u32, stride: u32, pad: u32, dilation: u32,
    relu: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

override WG: u32 = 64u;
const TC: u32 = 8u;
const TP: u32 = 4u;
const WR: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- conv2d_forward: inputs (x, w, b), outputs (y)
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_w: array<f32>;
@group(0) @binding(3) var<storage, read> fwd_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> fwd_y: array<f32>;

@compute @workgroup_size(WG)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let flat = gid.x + gid.y * nwg.x * WG;
    let n_col_blocks = (p.ow + TP - 1u) / TP;
    let n_pix_blocks = p.n * p.oh * n_col_blocks;
    if (flat >= n_pix_blocks * ((p.c_out + TC - 1u) / TC)) { return; }
    // Neighbouring invocations take neighbouring pixel blocks of the same channel block.
    let pb = flat % n_pix_blocks;
    let co0 = (flat / n_pix_blocks) * TC;
    let ox0 = (pb % n_col_blocks) * TP;
    let oy = (pb / n_col_blocks) % p.oh;
    let n = pb / (n_col_blocks * p.oh);

    let khw = p.kh * p.kw;
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let ix0 = vec4<i32>(i32(ox0 * p.stride)) + vec4<i32>(0, 1, 2, 3) * i32(p.stride) - vec4<i32>(i32(p.pad));
    var w_base: array<u32, 8>;
    var acc: array<vec4<f32>, 8>;
    for (var c = 0u; c < TC; c++) {
        let co = min(co0 + c, p.c_out - 1u);
        w_base[c] = co * p.c_in * khw;
        acc[c] = vec4<f32>(fwd_b[co]);
    }
    let w_max = vec4<i32>(i32(p.w) - 1);
    for (var ci = 0u; ci < p.c_in; ci++) {
        let x_plane = (n * p.c_in + ci) * p.h;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky * p.dilation);
            if (iy < 0 || iy >= i32(p.h)) { continue; }
            let x_row = (x_plane + u32(iy)) * p.w;
            let w_tap = ci * khw + ky * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ix0 + vec4<i32>(i32(kx * p.dilation));
                let ok = (ix >= vec4<i32>(0)) & (ix <= w_max);
                let col = vec4<u32>(clamp(ix, vec4<i32>(0), w_max)) + vec4<u32>(x_row);
                let xv = select(vec4<f32>(0.0), vec4<f32>(fwd_x[col.x], fwd_x[col.y], fwd_x[col.z], fwd_x[col.w]), ok);
                for (var c = 0u; c < TC; c++) {
                    acc[c] += fwd_w[w_base[c] + w_tap + kx] * xv;
                }
            }
        }
    }
    for (var c = 0u; c < TC; c++) {
        let co = co0 + c;
        if (co >= p.c_out) { break; }
        let y_row = ((n * p.c_out + co) * p.oh + oy) * p.ow;
        for (var j = 0u; j < TP; j++) {
            // conv2d_relu: ReLU applied in the epilogue.
            let v = select(acc[c][j], max(acc[c][j], 0.0), p.relu != 0u);
            if (ox0 + j < p.ow) { fwd_y[y_row + ox0 + j] = v; }
        }
    }
}

// ---- conv2d_backward_input: inputs (grad_y, w), outputs (grad_x)
@group(0) @binding(1) var<storage, read> bi_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bi_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> bi_grad_x: array<f32>;

@compute @workgroup_size(WG)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let flat = gid.x + gid.y * nwg.x * WG;
    let n_col_blocks = (p.w + TP - 1u) / TP;
    let n_pix_blocks = p.n * p.h * n_col_blocks;
    if (flat >= n_pix_blocks * ((p.c_in + TC - 1u) / TC)) { return; }
    let pb = flat % n_pix_blocks;
    let ci0 = (flat / n_pix_blocks) * TC;
    let ix0 = (pb % n_col_blocks) * TP;
    let iy = (pb / n_col_blocks) % p.h;
    let n = pb / (n_col_blocks * p.h);

    let khw = p.kh * p.kw;
    var w_base: array<u32, 8>;
    var acc: array<vec4<f32>, 8>;
    for (var c = 0u; c < TC; c++) {
        w_base[c] = min(ci0 + c, p.c_in - 1u) * khw;
    }
    let s = i32(p.stride);
    let tx0 = vec4<i32>(i32(ix0 + p.pad)) + vec4<i32>(0, 1, 2, 3);
    for (var ky = 0u; ky < p.kh; ky++) {
        // oy * stride = iy + pad - ky * dilation must be a non-negative multiple of stride.
        let ty = i32(iy + p.pad) - i32(ky * p.dilation);
        if (ty < 0 || ty % s != 0 || ty / s >= i32(p.oh)) { continue; }
        let oy = u32(ty / s);
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = tx0 - vec4<i32>(i32(kx * p.dilation));
            let txc = max(tx, vec4<i32>(0));
            let ok = (tx >= vec4<i32>(0)) & (txc % vec4<i32>(s) == vec4<i32>(0)) & (txc / vec4<i32>(s) < vec4<i32>(i32(p.ow)));
            let ox = vec4<u32>(min(txc / vec4<i32>(s), vec4<i32>(i32(p.ow) - 1)));
            let w_tap = ky * p.kw + kx;
            for (var co = 0u; co < p.c_out; co++) {
                let g = vec4<u32>(((n * p.c_out + co) * p.oh + oy) * p.ow) + ox;
                let gv = select(vec4<f32>(0.0), vec4<f32>(bi_grad_y[g.x], bi_grad_y[g.y], bi_grad_y[g.z], bi_grad_y[g.w]), ok);
                let w_co = co * p.c_in * khw + w_tap;
                for (var c = 0u; c < TC; c++) {
                    acc[c] += bi_w[w_co + w_base[c]] * gv;
                }
            }
        }
    }
    for (var c = 0u; c < TC; c++) {
        let ci = ci0 + c;
        if (ci >= p.c_in) { break; }
        let x_row = ((n * p.c_in + ci) * p.h + iy) * p.w;
        for (var j = 0u; j < TP; j++) {
            if (ix0 + j < p.w) { bi_grad_x[x_row + ix0 + j] = acc[c][j]; }
        }
    }
}

// ---- conv2d_backward_weight: inputs (grad_y, x), outputs (grad_w)
@group(0) @binding(1) var<storage, read> bw_grad_y: array<f32>;
@group(0) @binding(2) var<storage, read> bw_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> bw_grad_w: array<f32>;

var<workgroup> bw_partial: array<f32, 2048>; // WR invocations x TC x TP

@compute @workgroup_size(WR)
fn conv2d_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let khw = p.kh * p.kw;
    let n_taps = p.c_in * khw;
    let n_tap_blocks = (n_taps + TP - 1u) / TP;
    if (wid.x >= n_tap_blocks * ((p.c_out + TC - 1u) / TC)) { return; }
    let t0 = (wid.x % n_tap_blocks) * TP;
    let co0 = (wid.x / n_tap_blocks) * TC;

    // Each of the 4 taps (ci, ky, kx) reads x at plane ci, offset (ky*d - pad, kx*d - pad).
    let t = min(vec4<u32>(t0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(n_taps - 1u));
    let plane = (t / vec4<u32>(khw)) * (p.h * p.w);
    let dy = vec4<i32>(((t / vec4<u32>(p.kw)) % vec4<u32>(p.kh)) * p.dilation) - vec4<i32>(i32(p.pad));
    let dx = vec4<i32>((t % vec4<u32>(p.kw)) * p.dilation) - vec4<i32>(i32(p.pad));
    var g_off: array<u32, 8>;
    for (var c = 0u; c < TC; c++) {
        g_off[c] = min(co0 + c, p.c_out - 1u) * p.oh * p.ow;
    }
    let h_max = vec4<i32>(i32(p.h) - 1);
    let w_max = vec4<i32>(i32(p.w) - 1);
    var acc: array<vec4<f32>, 8>;
    for (var r = lid; r < p.n * p.oh; r += WR) {
        let n = r / p.oh;
        let oy = r % p.oh;
        let iy = vec4<i32>(i32(oy * p.stride)) + dy;
        let row_ok = (iy >= vec4<i32>(0)) & (iy <= h_max);
        let x_row = vec4<u32>(n * p.c_in * p.h * p.w) + plane + vec4<u32>(clamp(iy, vec4<i32>(0), h_max)) * p.w;
        let g_row = n * p.c_out * p.oh * p.ow + oy * p.ow;
        for (var ox = 0u; ox < p.ow; ox++) {
            let ix = vec4<i32>(i32(ox * p.stride)) + dx;
            let ok = row_ok & (ix >= vec4<i32>(0)) & (ix <= w_max);
            let xi = x_row + vec4<u32>(clamp(ix, vec4<i32>(0), w_max));
            let xv = select(vec4<f32>(0.0), vec4<f32>(bw_x[xi.x], bw_x[xi.y], bw_x[xi.z], bw_x[xi.w]), ok);
            for (var c = 0u; c < TC; c++) {
                acc[c] += bw_grad_y[g_row + g_off[c] + ox] * xv;
            }
        }
    }
    for (var c = 0u; c < TC; c++) {
        for (var j = 0u; j < TP; j++) {
            bw_partial[lid * TC * TP + c * TP + j] = acc[c][j];
        }
    }
    workgroupBarrier();
    if (lid < TC * TP) {
        let c = lid / TP;
        let j = lid % TP;
        var sum = 0.0;
        for (var i = 0u; i < WR; i++) { sum += bw_partial[i * TC * TP + lid]; }
        if (co0 + c < p.c_out && t0 + j < n_taps) { bw_grad_w[(co0 + c) * n_taps + t0 + j] = sum; }
    }
}
