//! A synthetic changelog for the restore benchmarks: `n` distinct records of 16-byte keys and
//! 100-byte values, in the order a compacted changelog would hand them to a restore, cut into
//! fetch-sized batches.

use bytes::Bytes;
use kstreams_store_api::{WriteBatch, WriteOp};

/// Key length in bytes.
pub const KEY_LEN: usize = 16;
/// Value length in bytes.
pub const VALUE_LEN: usize = 100;
/// Bytes a restore moves per record: key and value.
pub const RECORD_BYTES: usize = KEY_LEN + VALUE_LEN;
/// Records per restored batch: about 1 MiB of keys and values, what one fetch of the changelog
/// partition returns with a 1 MiB `max.partition.fetch.bytes` (9,039 records).
pub const RECORDS_PER_FETCH: usize = (1 << 20) / RECORD_BYTES;
/// Records per staged run of a bulk restore (`KvBackend::restore_run`): about 8 MiB of keys and
/// values (72,315 records), what the engine stages per run.
pub const RECORDS_PER_RUN: usize = (8 << 20) / RECORD_BYTES;

/// The order of the keys along the changelog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// Pseudo-random: each batch's keys land all over the store (real keys).
    Random,
    /// Increasing along the changelog: every batch sorts after the store's last key, so LMDB
    /// writes it with `MDB_APPEND`.
    Sorted,
}

impl KeyOrder {
    /// A short name for benchmark ids.
    pub fn label(self) -> &'static str {
        match self {
            KeyOrder::Random => "random_keys",
            KeyOrder::Sorted => "sorted_keys",
        }
    }
}

/// `n` records generated on demand (nothing is held in memory but the batch being built).
#[derive(Debug, Clone, Copy)]
pub struct Changelog {
    /// Number of records.
    pub len: usize,
    /// Key order along the changelog.
    pub order: KeyOrder,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Changelog {
    /// A changelog of `len` records with keys in `order`.
    pub fn new(len: usize, order: KeyOrder) -> Self {
        Self { len, order }
    }

    /// The record at offset `i`: a distinct key (random: a hash of `i` then `i`; sorted: `i`
    /// big-endian after eight zero bytes) and a 100-byte value.
    pub fn record(&self, i: usize) -> WriteOp {
        let i = i as u64;
        let mut key = [0_u8; KEY_LEN];
        if self.order == KeyOrder::Random {
            key[..8].copy_from_slice(&splitmix64(i).to_be_bytes());
        }
        key[8..].copy_from_slice(&i.to_be_bytes());
        WriteOp {
            key: Bytes::copy_from_slice(&key),
            value: Some(Bytes::from(vec![(i % 251) as u8; VALUE_LEN])),
        }
    }

    /// The records of offsets `from..to` as one batch.
    pub fn batch(&self, from: usize, to: usize) -> WriteBatch {
        (from..to.min(self.len)).map(|i| self.record(i)).collect()
    }

    /// The changelog as consecutive batches of `per_batch` records, each with the offset after
    /// its last record (what the restore checkpoints), built on demand.
    pub fn batches(&self, per_batch: usize) -> impl Iterator<Item = (WriteBatch, i64)> + '_ {
        assert!(per_batch > 0, "batches of zero records");
        (0..self.len).step_by(per_batch).map(move |from| {
            let to = (from + per_batch).min(self.len);
            (self.batch(from, to), to as i64)
        })
    }

    /// Key and value bytes of the whole changelog.
    pub fn bytes(&self) -> u64 {
        (self.len * RECORD_BYTES) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_record_once_with_distinct_keys() {
        for order in [KeyOrder::Random, KeyOrder::Sorted] {
            let changelog = Changelog::new(25, order);
            let batches: Vec<_> = changelog.batches(10).collect();
            assert_eq!(
                batches
                    .iter()
                    .map(|(b, o)| (b.len(), *o))
                    .collect::<Vec<_>>(),
                vec![(10, 10), (10, 20), (5, 25)]
            );
            let mut keys: Vec<Bytes> = batches
                .into_iter()
                .flat_map(|(b, _)| b.into_ops().into_iter().map(|op| op.key))
                .collect();
            assert!(keys.iter().all(|k| k.len() == KEY_LEN));
            assert_eq!(keys.is_sorted(), order == KeyOrder::Sorted, "{order:?}");
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), 25);
        }
        assert_eq!(RECORDS_PER_FETCH, 9039);
        assert_eq!(RECORDS_PER_RUN, 72_315);
    }
}
