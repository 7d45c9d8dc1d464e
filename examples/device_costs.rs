//! What the device's basic operations cost, per invocation: storage loads and stores (scalar,
//! vector, gathered), texel fetches and texture stores, arithmetic. A development aid for
//! choosing kernel designs (on lavapipe the answers are far from a GPU's):
//! `cargo run --release --example device_costs`.
#![allow(clippy::print_stdout, missing_docs)]
use std::time::Instant;

use striate::GpuContext;

/// Invocations per dispatch.
const N: u32 = 1 << 20;
/// Texture side (N texels).
const SIDE: u32 = 1024;

#[derive(Clone, Copy)]
enum Res {
    /// Storage buffer of 4N floats, read-only.
    Src,
    /// Storage buffer of N floats (4N bytes x 4), read-write.
    Dst,
    /// Sampled rgba32float texture, SIDE x SIDE.
    Tex,
    /// Storage texture rgba32float, SIDE x SIDE, write-only.
    STex,
    /// The same storage texture, read-only.
    RTex,
}

struct Kernel {
    /// Workgroup size 8 instead of 64: one subgroup per workgroup, so values computed from the
    /// workgroup id alone are uniform to the compiler.
    wg8: bool,
    name: &'static str,
    bindings: &'static [Res],
    body: &'static str,
}

const KERNELS: &[Kernel] = &[
    Kernel {
        wg8: false,
        name: "store 1 f32",
        bindings: &[Res::Dst],
        body: "dst[i] = f32(i);",
    },
    Kernel {
        wg8: false,
        name: "load 1 f32 (consecutive) + store",
        bindings: &[Res::Src, Res::Dst],
        body: "dst[i] = src[i];",
    },
    Kernel {
        wg8: false,
        name: "load 4 f32 (4i..4i+3) + store",
        bindings: &[Res::Src, Res::Dst],
        body: "dst[i] = src[4u * i] + src[4u * i + 1u] + src[4u * i + 2u] + src[4u * i + 3u];",
    },
    Kernel {
        wg8: false,
        name: "load 1 f32 (consecutive) via uniform vec4 loads + selects + store",
        bindings: &[Res::Src, Res::Dst],
        body: "let base = subgroupBroadcastFirst(i >> 3u) * 2u; let lane = i & 7u; let v0 = src4[base]; let v1 = src4[base + 1u]; let lo = select(v0, v1, vec4<bool>(lane >= 4u)); let q = lane & 3u; dst[i] = select(select(lo.x, lo.y, q == 1u), select(lo.z, lo.w, q == 3u), q >= 2u);",
    },
    Kernel {
        wg8: false,
        name: "load 4 f32 (4i..4i+3) via uniform vec4 loads + selects + store",
        bindings: &[Res::Src, Res::Dst],
        body: "let base = subgroupBroadcastFirst(i >> 3u) * 8u; let lane = i & 7u; var v = src4[base]; for (var k = 1u; k < 8u; k++) { v = select(v, src4[base + k], vec4<bool>(lane == k)); } dst[i] = v.x + v.y + v.z + v.w;",
    },
    Kernel {
        wg8: true,
        name: "wg8: load 1 f32 (consecutive) + store",
        bindings: &[Res::Src, Res::Dst],
        body: "dst[i] = src[i];",
    },
    Kernel {
        wg8: true,
        name: "wg8: load 1 f32 (consecutive) via uniform vec4 loads + selects + store",
        bindings: &[Res::Src, Res::Dst],
        body: "let base = wgi * 2u; let lane = lid.x; let v0 = src4[base]; let v1 = src4[base + 1u]; let lo = select(v0, v1, vec4<bool>(lane >= 4u)); let q = lane & 3u; dst[i] = select(select(lo.x, lo.y, q == 1u), select(lo.z, lo.w, q == 3u), q >= 2u);",
    },
    Kernel {
        wg8: true,
        name: "wg8: load 4 f32 (4i..4i+3) via uniform vec4 loads + selects + store",
        bindings: &[Res::Src, Res::Dst],
        body: "let base = wgi * 8u; let lane = lid.x; var v = src4[base]; v = select(v, src4[base + 1u], vec4<bool>(lane == 1u)); v = select(v, src4[base + 2u], vec4<bool>(lane == 2u)); v = select(v, src4[base + 3u], vec4<bool>(lane == 3u)); v = select(v, src4[base + 4u], vec4<bool>(lane == 4u)); v = select(v, src4[base + 5u], vec4<bool>(lane == 5u)); v = select(v, src4[base + 6u], vec4<bool>(lane == 6u)); v = select(v, src4[base + 7u], vec4<bool>(lane == 7u)); dst[i] = v.x + v.y + v.z + v.w;",
    },
    Kernel {
        wg8: false,
        name: "load 1 vec4 + store",
        bindings: &[Res::Src, Res::Dst],
        body: "let v = src4[i]; dst[i] = v.x + v.y + v.z + v.w;",
    },
    Kernel {
        wg8: false,
        name: "load 1 f32 (scattered) + store",
        bindings: &[Res::Src, Res::Dst],
        body: "dst[i] = src[(i * 7919u) & (4u * N - 1u)];",
    },
    Kernel {
        wg8: false,
        name: "load 16 f32 (uniform address) + store",
        bindings: &[Res::Src, Res::Dst],
        body: "var a = 0.0; for (var k = 0u; k < 16u; k++) { a += src[k]; } dst[i] = a;",
    },
    Kernel {
        wg8: false,
        name: "texel fetch 1 + store",
        bindings: &[Res::Tex, Res::Dst],
        body: "let v = textureLoad(tex, vec2<u32>(i & (SIDE - 1u), i / SIDE), 0); dst[i] = v.x + v.y + v.z + v.w;",
    },
    Kernel {
        wg8: false,
        name: "texel fetch 4 (rows apart) + store",
        bindings: &[Res::Tex, Res::Dst],
        body: "var a = vec4<f32>(); for (var k = 0u; k < 4u; k++) { a += textureLoad(tex, vec2<u32>(i & (SIDE - 1u), (i / SIDE + k * 7u) & (SIDE - 1u)), 0); } dst[i] = a.x + a.y + a.z + a.w;",
    },
    Kernel {
        wg8: false,
        name: "storage texel load 1 + store",
        bindings: &[Res::RTex, Res::Dst],
        body: "let v = textureLoad(rtex, vec2<u32>(i & (SIDE - 1u), i / SIDE)); dst[i] = v.x + v.y + v.z + v.w;",
    },
    Kernel {
        wg8: false,
        name: "storage texel load 4 (rows apart) + store",
        bindings: &[Res::RTex, Res::Dst],
        body: "var a = vec4<f32>(); for (var k = 0u; k < 4u; k++) { a += textureLoad(rtex, vec2<u32>(i & (SIDE - 1u), (i / SIDE + k * 7u) & (SIDE - 1u))); } dst[i] = a.x + a.y + a.z + a.w;",
    },
    Kernel {
        wg8: false,
        name: "texel fetch 16 in a loop, column per lane",
        bindings: &[Res::Tex, Res::Dst],
        body: "var a = vec4<f32>(); for (var k = 0u; k < 16u; k++) { a += textureLoad(tex, vec2<u32>(i & (SIDE - 1u), k), 0); } dst[i] = a.x + a.y + a.z + a.w;",
    },
    Kernel {
        wg8: false,
        name: "texel fetch 16 in a loop, row per lane",
        bindings: &[Res::Tex, Res::Dst],
        body: "var a = vec4<f32>(); for (var k = 0u; k < 16u; k++) { a += textureLoad(tex, vec2<u32>(k, i & (SIDE - 1u)), 0); } dst[i] = a.x + a.y + a.z + a.w;",
    },
    Kernel {
        wg8: false,
        name: "storage texel load 16 in a loop, column per lane",
        bindings: &[Res::RTex, Res::Dst],
        body: "var a = vec4<f32>(); for (var k = 0u; k < 16u; k++) { a += textureLoad(rtex, vec2<u32>(i & (SIDE - 1u), k)); } dst[i] = a.x + a.y + a.z + a.w;",
    },
    Kernel {
        wg8: false,
        name: "storage texel load 16 in a loop, row per lane",
        bindings: &[Res::RTex, Res::Dst],
        body: "var a = vec4<f32>(); for (var k = 0u; k < 16u; k++) { a += textureLoad(rtex, vec2<u32>(k, i & (SIDE - 1u))); } dst[i] = a.x + a.y + a.z + a.w;",
    },
    Kernel {
        wg8: false,
        name: "texture store 1",
        bindings: &[Res::STex],
        body: "textureStore(stex, vec2<u32>(i & (SIDE - 1u), i / SIDE), vec4<f32>(f32(i)));",
    },
    Kernel {
        wg8: false,
        name: "64 vec4 FMAs + store",
        bindings: &[Res::Dst],
        body: "var a = vec4<f32>(f32(i)); let b = vec4<f32>(1.0001); for (var k = 0u; k < 64u; k++) { a = fma(a, b, b); } dst[i] = a.x + a.w;",
    },
    Kernel {
        wg8: false,
        name: "subgroupBroadcast 8 vec4 + store",
        bindings: &[Res::Dst],
        body: "var a = vec4<f32>(f32(i)); a += subgroupBroadcast(a, 0u); a += subgroupBroadcast(a, 1u); a += subgroupBroadcast(a, 2u); a += subgroupBroadcast(a, 3u); a += subgroupBroadcast(a, 4u); a += subgroupBroadcast(a, 5u); a += subgroupBroadcast(a, 6u); a += subgroupBroadcast(a, 7u); dst[i] = a.x + a.w;",
    },
    Kernel {
        wg8: false,
        name: "subgroupAdd 8 f32 + store",
        bindings: &[Res::Dst],
        body: "var a = f32(i); for (var k = 0u; k < 8u; k++) { a = subgroupAdd(a) + 1.0; } dst[i] = a;",
    },
    Kernel {
        wg8: false,
        name: "empty (bounds check only)",
        bindings: &[Res::Dst],
        body: "if (i > N) { dst[i] = 1.0; }",
    },
    Kernel {
        wg8: false,
        name: "store 4 f32 (4i..4i+3)",
        bindings: &[Res::Dst],
        body: "let j = (4u * i) & (N - 1u); dst[j] = 1.0; dst[j + 1u] = 2.0; dst[j + 2u] = 3.0; dst[j + 3u] = f32(i);",
    },
    Kernel {
        wg8: false,
        name: "load 1 f32 from read_write + store",
        bindings: &[Res::Dst],
        body: "dst[i] = dst[(i + 1u) & (N - 1u)] + 1.0;",
    },
    Kernel {
        wg8: false,
        name: "16 independent vec4 FMAs x 16 + store",
        bindings: &[Res::Dst],
        body: "var a0 = vec4<f32>(f32(i)); var a1 = a0 + 1.0; var a2 = a0 + 2.0; var a3 = a0 + 3.0; var a4 = a0 + 4.0; var a5 = a0 + 5.0; var a6 = a0 + 6.0; var a7 = a0 + 7.0; let b = vec4<f32>(1.0001); for (var k = 0u; k < 8u; k++) { a0 = fma(a0, b, b); a1 = fma(a1, b, b); a2 = fma(a2, b, b); a3 = fma(a3, b, b); a4 = fma(a4, b, b); a5 = fma(a5, b, b); a6 = fma(a6, b, b); a7 = fma(a7, b, b); } let s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7; dst[i] = s.x + s.w;",
    },
];

fn source(k: &Kernel) -> String {
    let mut s = format!("const N: u32 = {N}u;\nconst SIDE: u32 = {SIDE}u;\n");
    for (b, r) in k.bindings.iter().enumerate() {
        let decl = match r {
            Res::Src => {
                if k.body.contains("src4") {
                    "var<storage, read> src4: array<vec4<f32>>"
                } else {
                    "var<storage, read> src: array<f32>"
                }
            }
            Res::Dst => "var<storage, read_write> dst: array<f32>",
            Res::Tex => "var tex: texture_2d<f32>",
            Res::STex => "var stex: texture_storage_2d<rgba32float, write>",
            Res::RTex => "var rtex: texture_storage_2d<rgba32float, read>",
        };
        s += &format!("@group(0) @binding({b}) {decl};\n");
    }
    s += &format!(
        "@compute @workgroup_size({})\nfn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{\n  let i = gid.x + gid.y * 65536u;\n  let wgi = wid.x + wid.y * {}u;\n  {}\n}}\n",
        if k.wg8 { 8 } else { 64 },
        if k.wg8 { 8192 } else { 1024 },
        k.body
    );
    s
}

fn pipeline_of(device: &wgpu::Device, k: &Kernel) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(k.name),
        source: wgpu::ShaderSource::Wgsl(source(k).into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(k.name),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

fn main() -> anyhow::Result<()> {
    let gpu = GpuContext::from_env()?;
    println!("{}", gpu.describe());
    let device = gpu.device();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let src = gpu.create_buffer("src", 16 * u64::from(N), usage);
    let dst = gpu.create_buffer("dst", 4 * u64::from(N), usage);
    let tex_desc = |usage| wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d {
            width: SIDE,
            height: SIDE,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage,
        view_formats: &[],
    };
    let tex = device.create_texture(&tex_desc(wgpu::TextureUsages::TEXTURE_BINDING));
    let stex = device.create_texture(&tex_desc(wgpu::TextureUsages::STORAGE_BINDING));
    let tex_view = tex.create_view(&Default::default());
    let stex_view = stex.create_view(&Default::default());
    for k in KERNELS {
        let pipeline = pipeline_of(device, k);
        let entries: Vec<_> = k
            .bindings
            .iter()
            .enumerate()
            .map(|(b, r)| wgpu::BindGroupEntry {
                binding: b as u32,
                resource: match r {
                    Res::Src => src.as_entire_binding(),
                    Res::Dst => dst.as_entire_binding(),
                    Res::Tex => wgpu::BindingResource::TextureView(&tex_view),
                    Res::STex | Res::RTex => wgpu::BindingResource::TextureView(&stex_view),
                },
            })
            .collect();
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let run = |reps: u32| -> anyhow::Result<f64> {
            let mut encoder = gpu.encoder(k.name);
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                for _ in 0..reps {
                    pass.dispatch_workgroups(if k.wg8 { 8192 } else { 1024 }, N / 65536, 1);
                }
            }
            let t = Instant::now();
            gpu.submit(encoder);
            gpu.wait()?;
            Ok(t.elapsed().as_secs_f64())
        };
        run(1)?;
        let mut best = f64::MAX;
        for _ in 0..5 {
            best = best.min(run(4)? / 4.0);
        }
        println!(
            "{:7.2} ns/invocation  {:6.2} ms/dispatch  {}",
            best * 1e9 / f64::from(N),
            best * 1e3,
            k.name
        );
    }
    // The fixed cost of a dispatch: one workgroup of 64 invocations storing one value each,
    // 200 dispatches in one pass (a barrier between each, as between a step's kernels).
    let k = &KERNELS[0];
    let pipeline = pipeline_of(device, k);
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: dst.as_entire_binding(),
        }],
    });
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut encoder = gpu.encoder("tiny");
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            for _ in 0..200 {
                pass.dispatch_workgroups(1, 1, 1);
            }
        }
        let t = Instant::now();
        gpu.submit(encoder);
        gpu.wait()?;
        best = best.min(t.elapsed().as_secs_f64() / 200.0);
    }
    println!("{:7.2} us/dispatch of one workgroup", best * 1e6);
    Ok(())
}
