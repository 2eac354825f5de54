//! The instance's process id: the middle part of its engines' transactional ids under
//! exactly-once (`<application_id>-<process id>-<thread>`), as Kafka Streams keeps one per
//! state directory.
//!
//! With LMDB stores it is kept in `<state_dir>/<application_id>/kstreams.process-id`, so an
//! instance restarted on the same state directory uses the same transactional ids: its first
//! InitProducerId fences the previous incarnation and aborts the transaction it left open at
//! once, instead of leaving read_committed readers (and the group's `require_stable` offset
//! fetches) waiting until the transaction timeout. The LMDB environment's lock makes the
//! directory, and so the id, one process's. Other stores draw a fresh id per instance: two
//! instances may share a state directory there, and a shared id would fence each other.

use std::path::Path;

use crate::clock::jitter_seed;

/// The file holding the id, in the application's state directory.
pub(crate) const PROCESS_ID_FILE: &str = "kstreams.process-id";

/// A fresh random id: 16 hexadecimal digits.
pub(crate) fn fresh() -> String {
    // The seed mixes the wall clock's nanoseconds and the OS process id.
    format!(
        "{:016x}",
        jitter_seed(u64::from(std::process::id()).rotate_left(17))
    )
}

/// The id kept in `dir` (created with a fresh one when missing or unreadable).
pub(crate) fn kept_in(dir: &Path) -> std::io::Result<String> {
    let path = dir.join(PROCESS_ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(id.to_owned());
        }
        tracing::warn!(path = %path.display(), "process id file unreadable; writing a new one");
    }
    let id = fresh();
    let temp = dir.join(format!("{PROCESS_ID_FILE}.tmp"));
    std::fs::write(&temp, format!("{id}\n"))?;
    std::fs::rename(&temp, &path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_kept_in_the_directory_and_replaced_when_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let first = kept_in(dir.path()).unwrap();
        assert_eq!(first.len(), 16);
        assert_eq!(
            kept_in(dir.path()).unwrap(),
            first,
            "the same id on restart"
        );
        std::fs::write(dir.path().join(PROCESS_ID_FILE), "not an id").unwrap();
        let replaced = kept_in(dir.path()).unwrap();
        assert_eq!(replaced.len(), 16);
        assert_eq!(kept_in(dir.path()).unwrap(), replaced);
    }
}
