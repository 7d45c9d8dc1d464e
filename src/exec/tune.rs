//! The autotuner's choices, kept on disk so a second run starts at once.
//!
//! A choice is keyed by adapter, driver, op, shapes and a hash of the candidate plans' kernel
//! code (so a changed kernel is timed again); its value is the winning plan's
//! variant name. The file is `$STRIATE_CACHE_DIR/tuning.json`, else
//! `$XDG_CACHE_HOME/striate/tuning.json`, else `~/.cache/striate/tuning.json`. It is written
//! whole to a temporary file and renamed, so a crash never leaves half a file; an unreadable
//! or corrupt file is treated as empty (the choices are only speed, never results).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Where the default cache lives (see the module docs), if anywhere.
pub fn cache_path() -> Option<PathBuf> {
    std::env::var_os("STRIATE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("striate")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("striate"))
        })
        .map(|d| d.join("tuning.json"))
}

/// Loaded choices and where they live.
#[derive(Debug)]
pub struct TuningCache {
    path: Option<PathBuf>,
    entries: Mutex<BTreeMap<String, String>>,
}

impl TuningCache {
    /// The cache at its default path (see the module docs).
    pub fn open_default() -> Self {
        Self::open(cache_path())
    }

    /// The cache in `path` (`None`: in memory only).
    pub fn open(path: Option<PathBuf>) -> Self {
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        TuningCache {
            path,
            entries: Mutex::new(entries),
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// The stored choice for `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.entries
            .lock()
            .expect("tuning cache lock")
            .get(key)
            .cloned()
    }

    /// Stores a choice and rewrites the file (best effort: a read-only disk costs only the
    /// next run's tuning time).
    pub fn put(&self, key: String, variant: String) {
        let mut entries = self.entries.lock().expect("tuning cache lock");
        entries.insert(key, variant);
        let Some(path) = &self.path else { return };
        let Ok(text) = serde_json::to_string_pretty(&*entries) else {
            return;
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
