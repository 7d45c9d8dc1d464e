
// ---- div (appended to every shader that divides: `DIV_WGSL` in src/ir/op.rs)
// x / d for x, d < 2^24: the f32 quotient is off by at most one, then corrected. llvmpipe
// splits vector integer division into 8 scalar divides, which cost more than the loads.
fn div(x: u32, d: u32) -> u32 {
    var q = u32(f32(x) / f32(d));
    q -= select(0u, 1u, q * d > x);
    q += select(0u, 1u, (q + 1u) * d <= x);
    return q;
}
