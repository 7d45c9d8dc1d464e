//! Prints the WGSL of any kernel striate dispatches, generated or written by hand, so that a
//! generated kernel can be read and reviewed as WGSL.
//!
//! ```text
//! cargo run --release --example kernel -- OP              the op's plan variants (catalogue shapes, every device kind)
//! cargo run --release --example kernel -- OP VARIANT      the WGSL of each shader that variant dispatches
//! cargo run --release --example kernel -- --shader NAME   one shader of the registry by name
//! cargo run --release --example kernel -- --shaders       every shader name in the registry
//! ```
//!
//! e.g. `-- conv2d` lists `tiled-64x64x16-4x4`, then `-- conv2d tiled-64x64x16-4x4` prints it.
//! Needs no GPU: plans are enumerated for the device kinds of `ops::all_device_caps`.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use striate::ir::{DeviceCaps, KernelPlan, Shader};
use striate::ops::{all_device_caps, catalog, shaders};
use striate::Shape;

/// `println!` that ends the program quietly when the reader has gone (`| head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

fn caps_label(caps: &DeviceCaps) -> String {
    let sub = match caps.subgroups {
        None => "no subgroups".to_string(),
        Some(share) => format!("subgroups {share:?}"),
    };
    let kind = if caps.workgroup_tiles {
        "GPU"
    } else {
        "CPU adapter"
    };
    format!("{kind}, {sub}")
}

/// Every (entry, caps, plan) the catalogue offers for `op`.
fn plans_of(op: &str) -> Vec<(String, DeviceCaps, KernelPlan)> {
    let mut res = Vec::new();
    for entry in catalog()
        .into_iter()
        .filter(|e| e.op.name() == op && !e.op.is_view())
    {
        let inputs: Vec<&Shape> = entry.inputs.iter().collect();
        let Ok(outputs) = entry.op.infer(&inputs) else {
            continue;
        };
        let outputs: Vec<&Shape> = outputs.iter().collect();
        let mut found = Vec::new();
        for caps in all_device_caps() {
            for plan in entry.op.plans(&inputs, &outputs, &caps) {
                found.push((caps, plan));
            }
        }
        let described = format!("{entry:?}");
        res.extend(
            found
                .into_iter()
                .map(|(caps, plan)| (described.clone(), caps, plan)),
        );
    }
    res
}

fn print_shader(shader: &Shader) {
    out!(
        "// ==== {} ({} bytes of Params)",
        shader.name,
        shader.params_size
    );
    out!("{}", shader.source);
}

fn run(args: &[String]) -> Result<(), String> {
    match args {
        [flag] if flag == "--shaders" => {
            for s in shaders() {
                out!("{}", s.name);
            }
            Ok(())
        }
        [flag, name] if flag == "--shader" => {
            let all = shaders();
            let shader = all
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| format!("no shader named {name:?} (--shaders lists them)"))?;
            print_shader(shader);
            Ok(())
        }
        [op] => {
            let plans = plans_of(op);
            if plans.is_empty() {
                return Err(unknown_op(op));
            }
            let mut seen = BTreeSet::new();
            let mut last_entry = "";
            for (entry, caps, plan) in &plans {
                if seen.insert(plan.variant.clone()) {
                    if entry != last_entry {
                        out!("{entry}:");
                        last_entry = entry;
                    }
                    out!("  {:<40} {}", plan.variant, caps_label(caps));
                }
            }
            Ok(())
        }
        [op, variant] => {
            let plans = plans_of(op);
            if plans.is_empty() {
                return Err(unknown_op(op));
            }
            let (entry, caps, plan) = plans
                .iter()
                .find(|(_, _, p)| p.variant == *variant)
                .ok_or_else(|| {
                    format!("{op} offers no variant {variant:?} (`-- {op}` lists them)")
                })?;
            out!("// {op} {variant}: {entry}, {}", caps_label(caps));
            let mut printed = BTreeSet::new();
            for (call, operands) in &plan.calls {
                out!(
                    "// dispatch {}::{} over {:?} workgroups, operands {operands:?}",
                    call.shader.name,
                    call.entry,
                    call.workgroups
                );
            }
            for (call, _) in &plan.calls {
                if printed.insert(call.shader.name) {
                    print_shader(call.shader);
                }
            }
            Ok(())
        }
        _ => Err("usage: kernel OP [VARIANT] | --shader NAME | --shaders".to_string()),
    }
}

fn unknown_op(op: &str) -> String {
    let names: BTreeSet<&str> = catalog().iter().map(|e| e.op.name()).collect();
    format!(
        "no catalogued op named {op:?}; the ops: {}",
        names.into_iter().collect::<Vec<_>>().join(", ")
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kernel: {e}");
            ExitCode::FAILURE
        }
    }
}
