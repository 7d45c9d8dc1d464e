// conv_stage: the operands of the implicit-GEMM convolution kernels (src/ops/conv_gemm.rs).
//
// stage_padded: an NCHW tensor src[n, c, h, w] written into an rgba32float texture as rows
//   (n, c, y') of `texels` texels, y' in [0, hp), x' in [0, 4 * texels), holding
//   S[n, c, y', x'] = src[n, c, y' - py, x' - px], zero outside the tensor. The zero border is
//   the convolution's padding, so the GEMM kernels fetch without bounds checks; every output
//   texel is 4 consecutive x' of one row, so the kernel builds any window of 4 from two fetches.
//   2^shift rows share a texture line: row r, texel t at ((r mod 2^shift) * texels + t, r >> shift).
//   Grid: (line width / WG, lines); one invocation writes one texel.
// stage_unpool: as stage_padded, for src the gradient of a 2x2, stride-2 max pool's input,
//   formed on the fly from the pool's output gradient gp[n, c, ph, pw] and its argmax (flat
//   index into src, 0xffffffff for none): src[i] = gp[o] where argmax[o] == i, else 0. One
//   pool window holds two x of a row, so a texel's 4 values take 2 or 3 windows' loads: the
//   pool's backward is never written out.
// stage_unpool_pairs: stage_unpool where the windows align with the staged rows and texels
//   (py, px even): one invocation writes texel t of staged rows (2q, 2q + 1) of one (n, c),
//   whose 8 values are exactly 2 windows: 2 loads of gp and 2 of argmax for 8 values.
//   Flat index = gid.x + gid.y * nwg.x * WG over (pair, t), pairs of ⌈hp / 2⌉ per (n, c).
// stage_weights: a convolution kernel as the row operand A[row, (ci, ky, kx4)] of the GEMM,
//   4 taps of kx per texel, zero for kx >= kw:
//   A = src[row * sm + ci * sc + ky' * kw + kx'], ky' = ky, kx' = kx, or the flipped
//   kh - 1 - ky, kw - 1 - kx when flip is 1 (the input gradient's kernel). Texel t of row r at
//   (t mod 4096, r * lines + t / 4096), the GEMM layout (src/ops/gemm.rs).
//   Grid: (texels / WG, rows).
// No integer division by a runtime value: llvmpipe splits vector integer division into 8 scalar
// divides; `div` divides through f32 and corrects.
// Bindings: 0 = params, 1 = src, 2 = dst (storage texture); stage_unpool: 1 = gp, 2 = argmax,
// 3 = dst.

struct Params {
    rows: u32, texels: u32, shift: u32, hp: u32,
    h: u32, w: u32, py: i32, px: i32,
    ch: u32, kh: u32, kw: u32, kw4: u32,
    sm: u32, sc: u32, flip: u32, lines: u32,
    ph: u32, pw: u32, _pad0: u32, _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;


// The staged texel an invocation of stage_padded or stage_unpool writes (it sits at gid.xy):
// (texel t, staged row r, its (n, c) plane, 1 when the invocation has one).
fn staged_texel(gid: vec3<u32>) -> vec4<u32> {
    let in_line = div(gid.x, p.texels);
    let r = (gid.y << p.shift) + in_line;
    let valid = in_line < (1u << p.shift) && r < p.rows;
    return vec4<u32>(gid.x - in_line * p.texels, r, div(r, p.hp), select(0u, 1u, valid));
}

@compute @workgroup_size(WG)
fn stage_padded(@builtin(global_invocation_id) gid: vec3<u32>) {
    let st = staged_texel(gid);
    if (st.w == 0u) { return; }
    let t = st.x;
    let nc = st.z;
    let y = i32(st.y - nc * p.hp) - p.py;
    var v = vec4<f32>(0.0);
    if (y >= 0 && y < i32(p.h)) {
        let base = (nc * p.h + u32(y)) * p.w;
        for (var i = 0u; i < 4u; i++) {
            let x = i32(t * 4u + i) - p.px;
            if (x >= 0 && x < i32(p.w)) {
                v[i] = src[base + u32(x)];
            }
        }
    }
    textureStore(dst, gid.xy, v);
}

@group(0) @binding(1) var<storage, read> gp: array<f32>;
@group(0) @binding(2) var<storage, read> argmax: array<u32>;
@group(0) @binding(3) var unpool_dst: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(WG)
fn stage_unpool(@builtin(global_invocation_id) gid: vec3<u32>) {
    let st = staged_texel(gid);
    if (st.w == 0u) { return; }
    let t = st.x;
    let nc = st.z;
    let y = i32(st.y - nc * p.hp) - p.py;
    var v = vec4<f32>(0.0);
    if (y >= 0 && y < i32(p.h) && u32(y) >> 1u < p.ph) {
        let row = (nc * p.h + u32(y)) * p.w;
        let prow = (nc * p.ph + (u32(y) >> 1u)) * p.pw;
        // x' = 4t + i holds x = x' - px; the windows x >> 1 for x in [x0, x0 + 3].
        let x0 = i32(t * 4u) - p.px;
        let w_lo = max(x0, 0) >> 1u;
        let w_hi = min(x0 + 3, i32(p.pw) * 2 - 1);
        for (var wx = w_lo; wx * 2 <= w_hi; wx++) {
            let o = prow + u32(wx);
            let a = argmax[o];
            let i = i32(a) - i32(row) - x0;
            // The argmax is this row's x = x0 + i for some lane i of the texel, or elsewhere
            // (the window's other row, another x, or none).
            if (a != 0xffffffffu && a >= row && a < row + p.w) {
                v = select(v, vec4<f32>(gp[o]), vec4<i32>(i) == vec4<i32>(0, 1, 2, 3));
            }
        }
    }
    textureStore(unpool_dst, gid.xy, v);
}

fn staged_at(r: u32, t: u32) -> vec2<u32> {
    let in_line = r & ((1u << p.shift) - 1u);
    return vec2<u32>(in_line * p.texels + t, r >> p.shift);
}

@compute @workgroup_size(WG)
fn stage_unpool_pairs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let pair = div(i, p.texels);
    let t = i - pair * p.texels;
    let hp2 = (p.hp + 1u) >> 1u;
    let nc = div(pair, hp2);
    if (nc >= div(p.rows, p.hp)) { return; }
    let yp = (pair - nc * hp2) * 2u;
    var top = vec4<f32>(0.0);
    var bottom = vec4<f32>(0.0);
    // Source row y0 = yp - py (even) and the window row y0 / 2.
    let y0 = i32(yp) - p.py;
    let x0 = i32(t * 4u) - p.px;
    if (y0 >= 0 && u32(y0) >> 1u < p.ph) {
        let base = (nc * p.h + u32(y0)) * p.w;
        let prow = (nc * p.ph + (u32(y0) >> 1u)) * p.pw;
        for (var k = 0; k < 2; k++) {
            let wx = (x0 >> 1u) + k;
            if (wx < 0 || wx >= i32(p.pw)) { continue; }
            let o = prow + u32(wx);
            let a = argmax[o];
            if (a == 0xffffffffu) { continue; }
            let g = gp[o];
            // In its window: row y0 or y0 + 1, x = 2wx or 2wx + 1.
            // (Selects, not dynamic indexing: llvmpipe keeps a dynamically indexed vector in
            // memory.)
            let d = vec4<i32>(i32(a - base) - x0);
            let lanes = vec4<i32>(0, 1, 2, 3);
            top = select(top, vec4<f32>(g), d == lanes);
            bottom = select(bottom, vec4<f32>(g), d - vec4<i32>(i32(p.w)) == lanes);
        }
    }
    let r = nc * p.hp + yp;
    textureStore(unpool_dst, staged_at(r, t), top);
    if (yp + 1u < p.hp) {
        textureStore(unpool_dst, staged_at(r + 1u, t), bottom);
    }
}

@compute @workgroup_size(WG)
fn stage_weights(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let r = gid.y;
    if (t >= p.texels || r >= p.rows) { return; }
    let g = div(t, p.kw4);
    let q = t - g * p.kw4;
    let ci = div(g, p.kh);
    let ky = g - ci * p.kh;
    let kyf = select(ky, p.kh - 1u - ky, p.flip != 0u);
    let base = r * p.sm + ci * p.sc + kyf * p.kw;
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let kx = q * 4u + i;
        if (kx < p.kw) {
            v[i] = src[base + select(kx, p.kw - 1u - kx, p.flip != 0u)];
        }
    }
    textureStore(dst, vec2<u32>(t & 4095u, r * p.lines + (t >> 12u)), v);
}
