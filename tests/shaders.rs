//! Every shader parses and validates with naga, translates to SPIR-V (Vulkan), MSL (Metal)
//! and HLSL (DX12) for each entry point, keeps the binding convention, and its `Params`
//! matches the size of its Rust twin. None of this needs a GPU.

use std::collections::BTreeMap;

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, ShaderStage, StorageAccess};
use striate::ir::{DeviceCaps, Operand, Shader};
use striate::ops::{catalog, shaders};
use striate::Shape;

struct Parsed {
    module: naga::Module,
    info: naga::valid::ModuleInfo,
}

fn parse(shader: &Shader) -> Parsed {
    let module = naga::front::wgsl::parse_str(shader.source)
        .unwrap_or_else(|e| panic!("{}.wgsl: {}", shader.name, e.emit_to_string(shader.source)));
    let caps = Capabilities::default() | Capabilities::SUBGROUP;
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| {
            panic!(
                "{}.wgsl fails validation: {}",
                shader.name,
                e.emit_to_string(shader.source)
            )
        });
    Parsed { module, info }
}

/// binding → (address space, access) of the globals one entry point uses.
fn bindings(p: &Parsed, entry: &str) -> BTreeMap<u32, (AddressSpace, String)> {
    let ep_idx = p
        .module
        .entry_points
        .iter()
        .position(|e| e.name == entry)
        .unwrap_or_else(|| panic!("no entry point {entry}"));
    let ep_info = p.info.get_entry_point(ep_idx);
    let mut res = BTreeMap::new();
    for (handle, var) in p.module.global_variables.iter() {
        let (Some(binding), false) = (&var.binding, ep_info[handle].is_empty()) else {
            continue;
        };
        let name = var.name.clone().unwrap_or_default();
        assert_eq!(binding.group, 0, "{entry}: {name} is not in group 0");
        let prev = res.insert(binding.binding, (var.space, name.clone()));
        assert!(
            prev.is_none(),
            "{entry}: two globals at binding {}",
            binding.binding
        );
    }
    res
}

#[test]
fn every_shader_validates_and_translates_to_spirv_msl_and_hlsl() {
    let mut n_entries = 0;
    for shader in shaders() {
        let p = parse(shader);
        for ep in &p.module.entry_points {
            assert_eq!(ep.stage, ShaderStage::Compute);
            let constants = naga::back::PipelineConstants::default();
            let (module, info) = naga::back::pipeline_constants::process_overrides(
                &p.module,
                &p.info,
                Some((ShaderStage::Compute, &ep.name)),
                &constants,
            )
            .unwrap_or_else(|e| panic!("{}:{}: overrides: {e}", shader.name, ep.name));
            let where_ = format!("{}.wgsl:{}", shader.name, ep.name);

            let spv_opts = spv::PipelineOptions {
                shader_stage: ShaderStage::Compute,
                entry_point: ep.name.clone(),
            };
            let words = spv::write_vec(&module, &info, &spv::Options::default(), Some(&spv_opts))
                .unwrap_or_else(|e| panic!("{where_} → SPIR-V: {e}"));
            assert_eq!(words[0], 0x0723_0203, "{where_}: SPIR-V magic number");

            let msl_opts = msl::PipelineOptions {
                entry_point: Some((ShaderStage::Compute, ep.name.clone())),
                ..Default::default()
            };
            let (msl_src, _) =
                msl::write_string(&module, &info, &msl::Options::default(), &msl_opts)
                    .unwrap_or_else(|e| panic!("{where_} → MSL: {e}"));
            assert!(
                msl_src.contains("kernel void"),
                "{where_}: MSL has no kernel"
            );

            let mut hlsl_src = String::new();
            let hlsl_opts = hlsl::PipelineOptions {
                entry_point: Some((ShaderStage::Compute, ep.name.clone())),
            };
            hlsl::Writer::new(&mut hlsl_src, &hlsl::Options::default(), &hlsl_opts)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{where_} → HLSL: {e}"));
            assert!(
                hlsl_src.contains("[numthreads("),
                "{where_}: HLSL has no compute entry"
            );
            n_entries += 1;
        }
    }
    assert!(n_entries >= 20, "only {n_entries} entry points translated");
}

#[test]
fn params_structs_match_their_rust_twins() {
    for shader in shaders() {
        let p = parse(shader);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(p.module.to_ctx()).expect("layout");
        let params: Vec<_> = p
            .module
            .types
            .iter()
            .filter(|(_, t)| t.name.as_deref() == Some("Params"))
            .collect();
        assert_eq!(
            params.len(),
            1,
            "{}.wgsl must declare exactly one struct Params",
            shader.name
        );
        let wgsl_size = layouter[params[0].0].size as usize;
        assert_eq!(
            wgsl_size, shader.params_size,
            "{}.wgsl: Params is {wgsl_size} bytes in WGSL, {} in Rust",
            shader.name, shader.params_size
        );
    }
}

/// Binding 0 is the `Params` uniform, then one binding per operand: inputs are read-only
/// storage buffers (read-write where the op mutates them), outputs read-write storage buffers,
/// scratch either. Checked for every call of every plan the catalogue's ops offer.
#[test]
fn every_kernel_follows_the_binding_convention() {
    let parsed: BTreeMap<&str, Parsed> =
        shaders().into_iter().map(|s| (s.name, parse(s))).collect();
    let caps = DeviceCaps {
        subgroups: Some(striate::ir::SubgroupShare::Blocks),
        max_texture_dim: 8192,
        workgroup_tiles: false,
    };
    let mut n_calls = 0;
    for entry in catalog() {
        if entry.op.is_view() {
            continue;
        }
        let inputs: Vec<&Shape> = entry.inputs.iter().collect();
        let out_shapes = entry.op.infer(&inputs).expect("catalogue shapes are valid");
        let outputs: Vec<&Shape> = out_shapes.iter().collect();
        for plan in entry.op.plans(&inputs, &outputs, &caps) {
            for (call, operands) in &plan.calls {
                let p = parsed
                    .get(call.shader.name)
                    .unwrap_or_else(|| panic!("{} is not in ops::shaders()", call.shader.name));
                let b = bindings(p, call.entry);
                let where_ = format!("{}:{} ({})", call.shader.name, call.entry, plan.variant);
                let n = operands.len();
                assert_eq!(
                    b.keys().copied().collect::<Vec<_>>(),
                    (0..=n as u32).collect::<Vec<_>>(),
                    "{where_}: bindings must be 0..={n}"
                );
                assert_eq!(
                    b[&0].0,
                    AddressSpace::Uniform,
                    "{where_}: binding 0 must be the Params uniform"
                );
                for (operand, (i, (space, name))) in operands.iter().zip(b.iter().skip(1)) {
                    let want_write = match *operand {
                        Operand::Input(k) => entry.op.mutates().contains(&k),
                        Operand::Output(_) => true,
                        Operand::Scratch(_) => continue,
                    };
                    let AddressSpace::Storage { access } = space else {
                        panic!("{where_}: {name} is not a storage buffer")
                    };
                    assert_eq!(
                        access.contains(StorageAccess::STORE),
                        want_write,
                        "{where_}: {name} (binding {i}) read_write must be {want_write}"
                    );
                }
                assert_eq!(
                    call.params.len(),
                    call.shader.params_size,
                    "{where_}: Params bytes"
                );
                n_calls += 1;
            }
        }
    }
    assert!(n_calls > 100, "only {n_calls} calls checked");
}

/// The registry is derived from the catalogue: every file in `shaders/` must be reached, whole,
/// by some registered shader (a new op's `.wgsl` that no catalogue entry dispatches fails here).
#[test]
fn every_shader_file_is_in_the_registry() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let registered = shaders();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("shaders/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).expect("shader is readable");
        assert!(
            registered.iter().any(|s| s.source.contains(text.as_str())),
            "{} is in no shader of ops::shaders(): no catalogue entry dispatches it",
            path.display()
        );
    }
    assert!(files >= 25, "only {files} .wgsl files in {}", dir.display());
}
