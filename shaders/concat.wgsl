// Concatenation along one dimension, and its adjoint, the slice. A tensor is viewed as
// [outer, len, inner] around the dimension `dim` (outer = product of the dims before it,
// inner = product of those after it); `in_row` and `out_row` are len·inner of the source and
// the destination, `offset` where the slice starts along `dim`, times inner.
//   concat_copy: out[o·out_row + offset + r] = in[o·in_row + r]   for r < in_row
//                (one dispatch per input; together they fill the output)
//   slice:       out[o·out_row + r] = in[o·in_row + offset + r]   for r < out_row
//                (the backward of concat: each input's gradient is its slice of grad_y)
// Threads: one invocation per element written; grids over 65,535 workgroups fold into y.
// Bindings, per entry point: 0 = params, then the input, then the output.

struct Params { outer: u32, in_row: u32, out_row: u32, offset: u32 }

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- concat_copy: inputs (x_i), outputs (y)
@group(0) @binding(1) var<storage, read> cat_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> cat_y: array<f32>;

@compute @workgroup_size(WG)
fn concat_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.outer * p.in_row) { return; }
    let o = i / p.in_row;
    cat_y[o * p.out_row + p.offset + (i - o * p.in_row)] = cat_x[i];
}

// ---- slice: inputs (x), outputs (y)
@group(0) @binding(1) var<storage, read> sl_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> sl_y: array<f32>;

@compute @workgroup_size(WG)
fn slice(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.outer * p.out_row) { return; }
    let o = i / p.out_row;
    sl_y[i] = sl_x[o * p.in_row + p.offset + (i - o * p.out_row)];
}
