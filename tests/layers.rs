//! ARCHITECTURE.md's layer rule, checked on the source itself: every top-level module of
//! `src/` imports (`crate::…`, `super::…`) only modules of a lower layer in [`LAYERS`], and no
//! module imports one that imports it back, directly or around a longer circle. A parent and
//! its own submodules are one unit (a family's `mod.rs` registers its ops, the ops use the
//! family's shared items) and are not counted as a circle. The binaries use the library as any
//! user does (`striate::…`) and are not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may import modules of lower layers only; two modules of
/// one layer never import each other.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["shape", "rng"],
    &["ir", "data"],
    &["kernels", "gpu", "checkpoint", "plots"],
    &["ops"],
    &["graph"],
    &["exec"],
    &["nn"],
    &["models"],
    &["infer"],
    &["train"],
];

/// A module path (`["ops", "conv", "general"]`); the crate root is `[]`.
type ModPath = Vec<String>;

/// The source with comments, string and char literals blanked, so that only code is searched.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
            out.push(' ');
        } else if b[i] == b'r' && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#')) {
            // A raw string: r"…", r#"…"#.
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            i = src[start..]
                .find(&close)
                .map_or(b.len(), |e| start + e + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3;
            out.push_str("' '");
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            let end = src[i + 2..].find('\'').map_or(b.len(), |e| i + 2 + e + 1);
            i = end;
            out.push_str("' '");
        } else {
            let ch = src[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Every path the code names from `crate::` or `super::`, relative to the crate root, with
/// `use` groups expanded (`crate::ir::{Graph, TensorId}` gives two paths).
fn paths_named(code: &str, module: &[String]) -> Vec<ModPath> {
    fn ident_at(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }
    /// Parses `a::b::{c, d::e}` at the start of `s` into full paths under `prefix`.
    fn parse(s: &str, prefix: ModPath, out: &mut Vec<ModPath>) -> usize {
        let mut path = prefix;
        let mut i = 0;
        loop {
            let rest = s[i..].trim_start();
            i = s.len() - rest.len();
            if let Some(group) = rest.strip_prefix('{') {
                i += 1;
                let mut off = 0;
                loop {
                    let item = group[off..].trim_start();
                    off = group.len() - item.len();
                    if item.starts_with('}') {
                        return i + off + 1;
                    }
                    off += parse(&group[off..], path.clone(), out);
                    let after = group[off..].trim_start();
                    off = group.len() - after.len();
                    if let Some(stripped) = after.strip_prefix(',') {
                        off = group.len() - stripped.len();
                    } else if after.starts_with('}') {
                        return i + off + 1;
                    } else {
                        return i + off;
                    }
                }
            }
            let id = ident_at(rest);
            if id.is_empty() {
                out.push(path);
                return i;
            }
            i += id.len();
            if id != "self" {
                path.push(id.to_string());
            }
            if s[i..].starts_with("::") {
                i += 2;
            } else {
                out.push(path);
                return i;
            }
        }
    }
    let mut out = Vec::new();
    for (anchor, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut from = 0;
        while let Some(at) = code[from..].find(anchor) {
            let start = from + at;
            from = start + anchor.len();
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            parse(&code[from..], base.clone(), &mut out);
        }
    }
    out
}

/// `src/ops/conv/mod.rs` → `["ops", "conv"]`, `src/lib.rs` → `[]`.
fn module_of(rel: &Path) -> ModPath {
    let mut parts: ModPath = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a named path lands in: its longest prefix that is a module, with the crate
/// root's re-exports (`crate::Error` is `error`'s) followed once.
fn resolve(
    path: &[String],
    modules: &BTreeSet<ModPath>,
    root_exports: &BTreeMap<String, String>,
) -> ModPath {
    let path: ModPath = match path.first() {
        Some(first) if !modules.contains(&vec![first.clone()]) => match root_exports.get(first) {
            Some(m) => vec![m.clone()],
            None => Vec::new(),
        },
        _ => path.to_vec(),
    };
    (0..=path.len())
        .rev()
        .map(|k| path[..k].to_vec())
        .find(|p| modules.contains(p))
        .unwrap_or_default()
}

/// `pub use error::{Error, Result};` in lib.rs: `Error` → `error`, `Result` → `error`.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lib.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        if module == "crate" {
            continue;
        }
        for item in items.trim_matches(|c| c == '{' || c == '}').split(',') {
            let name = item.rsplit("::").next().unwrap_or("").trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.to_string());
            }
        }
    }
    out
}

/// Module → the modules it imports (itself, its ancestors and its descendants left out).
fn import_graph(src: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.retain(|f| !f.starts_with(src.join("bin")));
    let sources: Vec<(ModPath, String)> = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(src).expect("under src/");
            let text = std::fs::read_to_string(f).expect("source is readable");
            (module_of(rel), text)
        })
        .collect();
    let modules: BTreeSet<ModPath> = sources.iter().map(|(m, _)| m.clone()).collect();
    let lib = &sources
        .iter()
        .find(|(m, _)| m.is_empty())
        .expect("src/lib.rs")
        .1;
    let exports = root_exports(lib);
    let mut graph = BTreeMap::new();
    for (module, text) in &sources {
        let targets: BTreeSet<ModPath> = paths_named(&code_only(text), module)
            .iter()
            .map(|p| resolve(p, &modules, &exports))
            .filter(|t| !t.starts_with(module) && !module.starts_with(t))
            .collect();
        graph.insert(module.clone(), targets);
    }
    graph
}

fn layer_of(module: &[String]) -> Option<usize> {
    let top = module.first()?;
    LAYERS.iter().position(|l| l.contains(&top.as_str()))
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate".to_string()
    } else {
        m.join("::")
    }
}

/// Every breach of the layer table and every import circle in `graph`.
fn breaches(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<String> {
    let mut out = Vec::new();
    for (module, targets) in graph {
        if module.is_empty() {
            continue;
        }
        let Some(layer) = layer_of(module) else {
            out.push(format!("{} is in no layer of LAYERS", show(module)));
            continue;
        };
        for t in targets {
            if t.first() == module.first() {
                continue;
            }
            match layer_of(t) {
                Some(tl) if tl < layer => {}
                _ => out.push(format!(
                    "{} (layer {layer}) imports {}, which is not below it",
                    show(module),
                    show(t)
                )),
            }
        }
    }
    // Circles: a module that reaches itself.
    let mut reported = BTreeSet::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((m, trail)) = stack.pop() {
            for t in graph.get(&m).into_iter().flatten() {
                if t == start {
                    let mut members: Vec<String> = trail.iter().map(|p| show(p)).collect();
                    let key: BTreeSet<String> = members.iter().cloned().collect();
                    if reported.insert(key) {
                        members.push(show(start));
                        out.push(format!("import circle: {}", members.join(" -> ")));
                    }
                } else if seen.insert(t.clone()) {
                    let mut next = trail.clone();
                    next.push(t.clone());
                    stack.push((t.clone(), next));
                }
            }
        }
    }
    out
}

#[test]
fn every_module_imports_only_layers_below_it_and_no_module_imports_itself_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    assert!(
        graph.len() > 50,
        "found only {} modules under {}",
        graph.len(),
        src.display()
    );
    // The check sees real imports: ops' families import `ir`, models import `nn`.
    let has = |from: &str, to: &str| {
        graph
            .iter()
            .any(|(m, ts)| show(m).starts_with(from) && ts.iter().any(|t| show(t).starts_with(to)))
    };
    assert!(has("ops::conv", "ir") && has("models", "nn") && has("exec", "gpu"));
    let found = breaches(&graph);
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md's layer rule is broken:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_check_finds_circles_and_upward_imports() {
    let m = |s: &str| -> ModPath { s.split("::").map(str::to_string).collect() };
    let modules: BTreeSet<ModPath> = ["ir", "kernels", "ops", "ops::conv::a", "ops::conv::b"]
        .iter()
        .map(|s| m(s))
        .chain([Vec::new()])
        .collect();
    let exports = root_exports("pub use error::{Error, Result};\npub use ir::Graph;");
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    let sources = [
        (
            "ir",
            "use crate::kernels::SubgroupShare; // crate::ops in a comment\n",
        ),
        (
            "kernels",
            "use crate::{ir::DeviceCaps, Error};\nlet s = \"crate::ops\";",
        ),
        (
            "ops::conv::a",
            "use crate::ops::conv::b::f;\nuse super::b::{self, g};",
        ),
        (
            "ops::conv::b",
            "pub(crate) fn f() { crate::ops::conv::a::h() }",
        ),
    ];
    for (name, text) in sources {
        let module = m(name);
        let targets = paths_named(&code_only(text), &module)
            .iter()
            .map(|p| resolve(p, &modules, &exports))
            .filter(|t| !t.starts_with(&module) && !module.starts_with(t))
            .collect();
        graph.insert(module, targets);
    }
    assert_eq!(graph[&m("kernels")], BTreeSet::from([m("ir")]));
    assert_eq!(
        graph[&m("ops::conv::a")],
        BTreeSet::from([m("ops::conv::b")])
    );
    let found = breaches(&graph);
    let has = |s: &str| found.iter().any(|f| f.contains(s));
    assert!(has("ir (layer 2) imports kernels"), "{found:?}");
    assert!(has("import circle: ir -> kernels -> ir"), "{found:?}");
    assert!(
        has("import circle: ops::conv::a -> ops::conv::b -> ops::conv::a"),
        "{found:?}"
    );
    assert_eq!(found.len(), 3, "{found:?}");
}
