// pack: write GEMM operands into rgba32float textures (see src/ops/gemm.rs for the layout).
//
// A logical row r of `texels` texels occupies `lines` texture lines; texel t of row r is at
// (t mod 4096, r * lines + t / 4096). One invocation writes one texel (4 floats); rows past
// `rows` and columns past `cols` are written as zeros, so GEMM kernels need no k-edge logic.
//
// pack_matrix: X(r, c) = src[off + r*sr + (c / inner)*sb + (c % inner)*sc] (signed strides:
//   transposes, batch blocks and flipped kernels are all strided views).
// pack_im2col: row (ci, ky, kx), column (n, oy, ox) of the convolution windows of
//   src[n, ci, h, w]: src[n, ci, oy*stride + ky*dilation - pad, ox*stride + kx*dilation - pad],
//   zero in the padding.
// Bindings: 0 = params, 1 = src, 2 = dst.

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

fn texel_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn store(r: u32, t: u32, v: vec4<f32>) {
    textureStore(dst, vec2<u32>(t & 4095u, r * p.lines + (t >> 12u)), v);
}

@compute @workgroup_size(WG)
fn pack_matrix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = texel_index(gid, nwg);
    let r = idx / p.texels;
    let t = idx % p.texels;
    if (r >= p.rows_pad) { return; }
    var v = vec4<f32>(0.0);
    if (r < p.rows) {
        let row_base = p.off + i32(r) * p.sr;
        for (var i = 0u; i < 4u; i++) {
            let c = t * 4u + i;
            if (c < p.cols) {
                v[i] = src[u32(row_base + i32(c / p.inner) * p.sb + i32(c % p.inner) * p.sc)];
            }
        }
    }
    store(r, t, v);
}

@compute @workgroup_size(WG)
fn pack_im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = texel_index(gid, nwg);
    let r = idx / p.texels;
    let t = idx % p.texels;
    if (r >= p.rows_pad) { return; }
    // Field names of Params are shared with pack_matrix; here they mean:
    let c_in = p.off;
    let h = p.sr;
    let w = p.sb;
    let kh = p.sc;
    var v = vec4<f32>(0.0);
    if (r < p.rows) {
        let taps = kh * p.kw;
        let ci = i32(r) / taps;
        let ky = (i32(r) % taps) / p.kw;
        let kx = i32(r) % p.kw;
        let ohw = p.oh * p.ow;
        for (var i = 0u; i < 4u; i++) {
            let col = t * 4u + i;
            if (col < p.cols) {
                let n = i32(col) / ohw;
                let rest = i32(col) % ohw;
                let iy = (rest / p.ow) * p.stride + ky * p.dilation - p.pad;
                let ix = (rest % p.ow) * p.stride + kx * p.dilation - p.pad;
                if (iy >= 0 && iy < h && ix >= 0 && ix < w) {
                    v[i] = src[u32(((n * c_in + ci) * h + iy) * w + ix)];
                }
            }
        }
    }
    store(r, t, v);
}
