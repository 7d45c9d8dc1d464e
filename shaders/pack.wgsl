// pack: write GEMM operands into rgba32float textures (see src/ops/gemm.rs for the layout).
//
// A logical row r of `texels` texels occupies `lines` texture lines; texel t of row r is at
// (t mod 4096, r * lines + t / 4096). One invocation writes one texel (4 floats); rows past
// `rows` and columns past `cols` are written as zeros, so GEMM kernels need no k-edge logic.
// The grid is (texels / WG, rows_pad): gid.x is the texel, gid.y the row; pack_matrix and
// pack_matrix_masked run one flat index over rows_pad x texels instead (flat_row_texel).
//
// No integer division by a runtime value: llvmpipe has no vector integer divide and splits
// each into 8 scalar divides, which cost more than the loads. `div` divides through f32
// with an exact correction instead.
//
// pack_matrix: X(r, c) = src[off + r*sr + (c / inner)*sb + (c % inner)*sc] (signed strides:
//   transposes, batch blocks and flipped kernels are all strided views).
// pack_matrix_masked: pack_matrix of src where mask (same layout) > 0, zero elsewhere: a ReLU's
//   backward folded into the pack of its gradient (mask = the ReLU's output).
// pack_wrapped: the rows of an NCHW tensor (row = (n, c, y), `texels` texels of x each),
//   `inner` rows per texture line (a power of two): row r, texel t at ((r mod inner) * texels
//   + t, r / inner). The source of pack_im2col_tex (shaders/im2col.wgsl): each float is read
//   from the buffer once instead of once per kernel tap. Grid: (width / WG, height).
// pack_im2col: row (ci, ky, kx), column (n, oy, ox) of the convolution windows of
//   src[n, ci, h, w]: src[n, ci, oy*stride + ky*dilation - pad, ox*stride + kx*dilation - pad],
//   zero in the padding.
// Bindings: 0 = params, 1 = src, 2 = dst; pack_matrix_masked: 1 = src, 2 = mask, 3 = dst.

struct Params {
    rows: u32, cols: u32, rows_pad: u32, texels: u32,
    lines: u32, inner: u32, off: i32, sr: i32,
    sb: i32, sc: i32, kw: i32, oh: i32,
    ow: i32, stride: i32, dilation: i32, pad: i32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;


fn store(r: u32, t: u32, v: vec4<f32>) {
    textureStore(dst, vec2<u32>(t & 4095u, r * p.lines + (t >> 12u)), v);
}

// The (row, texel) of a flat invocation index over rows_pad x texels (pack_matrix*: every
// lane busy whatever the row length, where a grid of whole rows idled most of a workgroup on
// short rows).
fn flat_row_texel(gid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let i = gid.x + gid.y * nwg.x * WG;
    let r = div(i, p.texels);
    return vec2<u32>(r, i - r * p.texels);
}

@compute @workgroup_size(WG)
fn pack_matrix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let rt = flat_row_texel(gid, nwg);
    let r = rt.x;
    let t = rt.y;
    if (r >= p.rows_pad) { return; }
    var v = vec4<f32>(0.0);
    if (r < p.rows) {
        let idx = matrix_indices(r, t);
        for (var i = 0u; i < 4u; i++) {
            if (t * 4u + i < p.cols) {
                v[i] = src[idx[i]];
            }
        }
    }
    store(r, t, v);
}

@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var masked_dst: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(WG)
fn pack_matrix_masked(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let rt = flat_row_texel(gid, nwg);
    let r = rt.x;
    let t = rt.y;
    if (r >= p.rows_pad) { return; }
    var v = vec4<f32>(0.0);
    if (r < p.rows) {
        let idx = matrix_indices(r, t);
        for (var i = 0u; i < 4u; i++) {
            if (t * 4u + i < p.cols && mask[idx[i]] > 0.0) {
                v[i] = src[idx[i]];
            }
        }
    }
    textureStore(masked_dst, vec2<u32>(t & 4095u, r * p.lines + (t >> 12u)), v);
}

// The source indices of texel t of row r (columns 4t .. 4t + 3; past `cols` unused).
fn matrix_indices(r: u32, t: u32) -> vec4<u32> {
    let row_base = p.off + i32(r) * p.sr;
    // Column 4t splits into (block, within); the next three step within, carrying.
    var block = div(t * 4u, p.inner);
    var within = t * 4u - block * p.inner;
    var idx = vec4<u32>(0u);
    for (var i = 0u; i < 4u; i++) {
        idx[i] = u32(row_base + i32(block) * p.sb + i32(within) * p.sc);
        within += 1u;
        if (within == p.inner) { within = 0u; block += 1u; }
    }
    return idx;
}

@compute @workgroup_size(WG)
fn pack_im2col(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let r = gid.y;
    if (t >= p.texels || r >= p.rows_pad) { return; }
    // Field names of Params are shared with pack_matrix; here they mean:
    let c_in = p.off;
    let h = p.sr;
    let w = p.sb;
    let kh = p.sc;
    var v = vec4<f32>(0.0);
    if (r < p.rows) {
        let taps = u32(kh * p.kw);
        let ci = div(r, taps);
        let tap = r - ci * taps;
        let ky = i32(div(tap, u32(p.kw)));
        let kx = i32(tap) - ky * p.kw;
        // Column 4t splits into (n, oy, ox); the next three step ox, carrying.
        let ohw = u32(p.oh * p.ow);
        var n = div(t * 4u, ohw);
        let rest = t * 4u - n * ohw;
        var oy = div(rest, u32(p.ow));
        var ox = rest - oy * u32(p.ow);
        for (var i = 0u; i < 4u; i++) {
            if (t * 4u + i < p.cols) {
                let iy = i32(oy) * p.stride + ky * p.dilation - p.pad;
                let ix = i32(ox) * p.stride + kx * p.dilation - p.pad;
                if (iy >= 0 && iy < h && ix >= 0 && ix < w) {
                    v[i] = src[u32(((i32(n) * c_in + i32(ci)) * h + iy) * w + ix)];
                }
            }
            ox += 1u;
            if (ox == u32(p.ow)) {
                ox = 0u;
                oy += 1u;
                if (oy == u32(p.oh)) { oy = 0u; n += 1u; }
            }
        }
    }
    store(r, t, v);
}

@compute @workgroup_size(WG)
fn pack_wrapped(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row_in_line = div(gid.x, p.texels);
    let t = gid.x - row_in_line * p.texels;
    let r = gid.y * p.inner + row_in_line;
    if (row_in_line >= p.inner || r >= p.rows_pad) { return; }
    var v = vec4<f32>(0.0);
    if (r < p.rows) {
        for (var i = 0u; i < 4u; i++) {
            let c = t * 4u + i;
            if (c < p.cols) {
                v[i] = src[r * p.cols + c];
            }
        }
    }
    textureStore(dst, gid.xy, v);
}
