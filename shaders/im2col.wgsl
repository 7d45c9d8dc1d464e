// pack_im2col_tex: the im2col matrix of a convolution (row (ci, ky, kx), column (n, oy, ox)),
// like pack_im2col in pack.wgsl, but read from the texture pack_wrapped made of the input
// instead of from the buffer: texel fetches are vectorised on every backend, buffer loads
// with per-invocation addresses are not on llvmpipe. Layout of the source: row (n, ci, y) of
// `src_texels` texels at ((row mod rows_per_line) * src_texels + x / 4, row / rows_per_line).
// Bindings: 0 = params, 1 = src (texture), 2 = dst (storage texture).

struct Params {
    rows: u32, cols: u32, rows_pad: u32, texels: u32,
    lines: u32, inner: u32, off: i32, sr: i32,
    sb: i32, sc: i32, kw: i32, oh: i32,
    ow: i32, stride: i32, dilation: i32, pad: i32,
}
// Field meanings here: off = channels, sr = h, sb = w, sc = kh, lines = texture lines per
// destination row; the source's layout is packed into inner: (rows_per_line << 16) | src_texels.

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var src: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;


// Component j of t, by selects: indexing a vector with a per-invocation index is a memory
// round trip on llvmpipe.
fn pick(t: vec4<f32>, j: u32) -> f32 {
    return select(select(t.x, t.y, j == 1u), select(t.z, t.w, j == 3u), j >= 2u);
}

@compute @workgroup_size(WG)
fn pack_im2col_tex(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let r = gid.y;
    if (t >= p.texels || r >= p.rows_pad) { return; }
    let c_in = p.off;
    let h = p.sr;
    let w = p.sb;
    let kh = p.sc;
    let src_texels = p.inner & 0xffffu;
    let rows_per_line = p.inner >> 16u;
    var v = vec4<f32>(0.0);
    if (r < p.rows) {
        let taps = u32(kh * p.kw);
        let ci = div(r, taps);
        let tap = r - ci * taps;
        let ky = i32(div(tap, u32(p.kw)));
        let kx = i32(tap) - ky * p.kw;
        let ohw = u32(p.oh * p.ow);
        var n = div(t * 4u, ohw);
        let rest = t * 4u - n * ohw;
        var oy = div(rest, u32(p.ow));
        var ox = rest - oy * u32(p.ow);
        let kyd = ky * p.dilation - p.pad;
        let kxd = kx * p.dilation - p.pad;
        for (var i = 0u; i < 4u; i++) {
            // Branch-free: always fetch (at a clamped address), then keep or zero the value.
            let iy = i32(oy) * p.stride + kyd;
            let ix = i32(ox) * p.stride + kxd;
            let inside = (t * 4u + i < p.cols) & (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w);
            let row = (n * u32(c_in) + ci) * u32(h) + u32(clamp(iy, 0, h - 1));
            let line = div(row, rows_per_line);
            let xc = u32(clamp(ix, 0, w - 1));
            let x = (row - line * rows_per_line) * src_texels + xc / 4u;
            let texel = textureLoad(src, vec2<u32>(x, line));
            v[i] = select(0.0, pick(texel, xc & 3u), inside);
            ox += 1u;
            if (ox == u32(p.ow)) {
                ox = 0u;
                oy += 1u;
                if (oy == u32(p.oh)) { oy = 0u; n += 1u; }
            }
        }
    }
    textureStore(dst, vec2<u32>(t & 4095u, r * p.lines + (t >> 12u)), v);
}
