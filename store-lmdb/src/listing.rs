//! [`LmdbEnvironment::local_checkpoints`]: the checkpoints of every store partition in a state
//! directory, read from the checkpoints database in one read transaction.

use kstreams_store_api::{LocalCheckpoint, StoreError};
use tracing::warn;

use crate::checkpoint;
use crate::env::LmdbEnvironment;
use crate::error;

impl LmdbEnvironment {
    /// Every (store, partition) of this environment with a checkpoint, and the checkpoint, in
    /// the order of their database names (see [`StoreFactory::local_checkpoints`]).
    ///
    /// One read transaction over the checkpoints database: opens no store, so a store open
    /// now (by any handle of this environment) stays open and is listed with its last committed
    /// checkpoint. An entry whose name is not `"{store}.{partition}"` or whose value is not a
    /// checkpoint is left out with a warning (it cannot name a task's state).
    ///
    /// [`StoreFactory::local_checkpoints`]: kstreams_store_api::StoreFactory::local_checkpoints
    pub fn local_checkpoints(&self) -> Result<Vec<LocalCheckpoint>, StoreError> {
        let shared = &self.shared;
        let label = &shared.label;
        let _guard = shared.txn_guard();
        let rtxn = shared
            .env
            .read_txn()
            .map_err(|e| error::backend(label, e))?;
        let mut listed = Vec::new();
        for entry in shared
            .checkpoints
            .iter(&rtxn)
            .map_err(|e| error::backend(label, e))?
        {
            let (name, raw) = entry.map_err(|e| error::backend(label, e))?;
            let name = String::from_utf8_lossy(name);
            let Some((store, partition)) = parse_db_name(&name) else {
                warn!(env = %label, db = %name, "checkpoint of an unknown database name left out");
                continue;
            };
            match checkpoint::decode(raw) {
                Ok(checkpoint) => listed.push(LocalCheckpoint {
                    store: store.to_owned(),
                    partition,
                    checkpoint,
                }),
                Err(detail) => {
                    warn!(env = %label, db = %name, %detail, "corrupt checkpoint left out");
                }
            }
        }
        Ok(listed)
    }
}

/// Splits a store database name `"{store}.{partition}"` (the store name may contain dots).
fn parse_db_name(name: &str) -> Option<(&str, i32)> {
    let (store, digits) = name.rsplit_once('.')?;
    let canonical =
        digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    let partition: i32 = digits.parse().ok()?;
    (!store.is_empty() && canonical).then_some((store, partition))
}

#[cfg(test)]
mod tests {
    use super::parse_db_name;

    #[test]
    fn database_names_split_at_the_last_dot() {
        assert_eq!(parse_db_name("counts.3"), Some(("counts", 3)));
        assert_eq!(
            parse_db_name("app.counts-store.12"),
            Some(("app.counts-store", 12))
        );
        for bad in [
            "counts",
            ".3",
            "counts.",
            "counts.-1",
            "counts.x",
            "counts.+3",
            "counts.03",
        ] {
            assert_eq!(parse_db_name(bad), None, "{bad:?}");
        }
    }
}
