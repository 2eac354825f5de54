//! The external broker binaries the tests start (installed by `scripts/install-tansu.sh` and
//! `scripts/install-crabka.sh` into `$HOME/.cache/kstreams-tools/bin`): where they are looked
//! for, and the end of their logs for failure messages.

use std::path::{Path, PathBuf};

/// The binary `name`, looked up in this order: the path in the environment variable
/// `override_var`, `$KSTREAMS_TOOLS_DIR/bin/NAME`, `$HOME/.cache/kstreams-tools/bin/NAME`, then
/// `NAME` on `PATH`. `Err` lists the places looked at, comma-separated.
pub fn find_tool(override_var: &str, name: &str) -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os(override_var) {
        candidates.push(path.into());
    }
    if let Some(dir) = std::env::var_os("KSTREAMS_TOOLS_DIR") {
        candidates.push(Path::new(&dir).join("bin").join(name));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(
            Path::new(&home)
                .join(".cache/kstreams-tools/bin")
                .join(name),
        );
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
}

/// The last 30 lines of the file at `path` (empty if unreadable).
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
