// matmul: C[m, n] = sum_k A(m, k) * B(k, n), f32.
//
// Operands are read through strides, so transposes cost nothing:
//   A(i, kk) = a[i * a_stride_m + kk * a_stride_k]     B(kk, j) = b[kk * b_stride_k + j * b_stride_n]
// A linear layer's forward (x · Wᵀ) and both of its backward products use this one entry.
//
// Register blocking: each invocation computes a TM×TN = 4×4 block of C, loading 4 values of A
// and 4 of B per k step for 16 multiply-adds. A workgroup is WG_N × WG_M invocations, so it
// covers a (4·WG_M) × (4·WG_N) tile. Edge blocks clamp their loads to the last row/column and
// mask their stores, so any m, n, k works.
// Bindings: 0 = params, 1 = a, 2 = b, 3 = c.

struct Params { m: u32, n: u32, k: u32, a_stride_m: u32, a_stride_k: u32, b_stride_k: u32, b_stride_n: u32, _pad0: u32 }

override WG_M: u32 = 8u;
override WG_N: u32 = 8u;
const TM: u32 = 4u;
const TN: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(WG_N, WG_M)
fn matmul_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * TM;
    let col0 = gid.x * TN;
    if (row0 >= p.m || col0 >= p.n) { return; }

    var a_off: array<u32, 4>;
    for (var r = 0u; r < TM; r++) { a_off[r] = min(row0 + r, p.m - 1u) * p.a_stride_m; }
    let b_off = vec4<u32>(
        min(col0, p.n - 1u), min(col0 + 1u, p.n - 1u), min(col0 + 2u, p.n - 1u), min(col0 + 3u, p.n - 1u)
    ) * p.b_stride_n;

    var acc: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < p.k; kk++) {
        let bk = kk * p.b_stride_k;
        let bv = vec4<f32>(b[bk + b_off.x], b[bk + b_off.y], b[bk + b_off.z], b[bk + b_off.w]);
        let ak = kk * p.a_stride_k;
        for (var r = 0u; r < TM; r++) {
            acc[r] += a[a_off[r] + ak] * bv;
        }
    }

    for (var r = 0u; r < TM; r++) {
        let row = row0 + r;
        if (row >= p.m) { break; }
        for (var j = 0u; j < TN; j++) {
            if (col0 + j < p.n) { c[row * p.n + col0 + j] = acc[r][j]; }
        }
    }
}
