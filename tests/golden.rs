//! Golden WGSL of the kernel generators: one file per representative variant of each family
//! (`tests/golden/<family>/<shader>.wgsl`), so a change to a generator shows up in review as a
//! diff of the kernels it emits. Representative: the first tile of every combination of the
//! family's switches (form, subgroup form, bias, row sums, k-slicing, kind); the tile sizes
//! only change constants.
//!
//! After an intended change: `STRIATE_BLESS=1 cargo test --release --test golden`, then
//! review `git diff tests/golden`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use striate::ir::Shader;
use striate::kernels::{conv_gemm, gemm, tiled, windows};

/// The first shader for each key, in the generators' order.
fn first_per_key<T, K: Ord>(
    tiles: Vec<T>,
    key: impl Fn(&T) -> K,
    shader: impl Fn(&T) -> &'static Shader,
) -> Vec<&'static Shader> {
    let mut seen = BTreeSet::new();
    tiles
        .iter()
        .filter(|t| seen.insert(key(t)))
        .map(shader)
        .collect()
}

/// Family name → its representative shaders.
fn families() -> BTreeMap<&'static str, Vec<&'static Shader>> {
    let mut res = BTreeMap::new();
    res.insert(
        "gemm",
        first_per_key(
            gemm::all_tiles(),
            |t| format!("{:?} {:?} {} {}", t.form, t.subgroups, t.bias, t.row_sums),
            gemm::GemmTile::shader,
        ),
    );
    res.insert(
        "conv_gemm",
        first_per_key(
            conv_gemm::all_tiles(),
            |t| format!("{:?} {:?} {} {}", t.form, t.subgroups, t.bias, t.kslice),
            conv_gemm::ConvTile::shader,
        ),
    );
    res.insert(
        "windows",
        first_per_key(
            windows::all_tiles(),
            |t| format!("{} {:?}", t.bias, t.subgroups),
            windows::WindowsTile::shader,
        ),
    );
    let kinds = [
        tiled::TiledKind::Matmul { bias: false },
        tiled::TiledKind::Matmul { bias: true },
        tiled::TiledKind::ConvForward { bias: false },
        tiled::TiledKind::ConvForward { bias: true },
        tiled::TiledKind::ConvBackwardInput,
        tiled::TiledKind::ConvBackwardWeight,
    ];
    res.insert(
        "tiled",
        kinds
            .into_iter()
            .map(|k| tiled::shader(k, tiled::TILES[0]))
            .collect(),
    );
    res
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The first line where `got` and `want` differ, with a little context, for the failure.
fn first_difference(got: &str, want: &str) -> String {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let at = (0..g.len().max(w.len()))
        .find(|&i| g.get(i) != w.get(i))
        .unwrap_or(0);
    format!(
        "line {}:\n  golden:    {}\n  generated: {}",
        at + 1,
        w.get(at).unwrap_or(&"<end of file>"),
        g.get(at).unwrap_or(&"<end of file>")
    )
}

#[test]
fn generated_kernels_match_their_golden_wgsl() {
    let bless = std::env::var_os("STRIATE_BLESS").is_some();
    let mut problems = Vec::new();
    let mut n_files = 0;
    for (family, shaders) in families() {
        assert!(!shaders.is_empty(), "{family}: no shader");
        let dir = golden_dir().join(family);
        if bless {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("golden directory");
        }
        let mut expected = BTreeSet::new();
        for shader in shaders {
            let file = format!("{}.wgsl", shader.name);
            let path = dir.join(&file);
            expected.insert(file);
            n_files += 1;
            if bless {
                std::fs::write(&path, shader.source).expect("write golden file");
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(want) if want == shader.source => {}
                Ok(want) => problems.push(format!(
                    "{} differs from the generator's output at {}",
                    path.display(),
                    first_difference(shader.source, &want)
                )),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for stale in on_disk.difference(&expected) {
            problems.push(format!("{}/{stale}: no generator emits it", dir.display()));
        }
    }
    assert!(n_files >= 20, "only {n_files} golden kernels");
    assert!(
        problems.is_empty(),
        "{}\nIf the change is intended: STRIATE_BLESS=1 cargo test --release --test golden, \
         then review git diff tests/golden",
        problems.join("\n")
    );
}
