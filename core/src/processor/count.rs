//! Counting records per key: the batch aggregator and its record-at-a-time twin.
//!
//! Both keep `key → count` in a store of `(K, i64)` and forward, for every input record, the
//! key's running count (value = count, timestamp/headers/metadata of the input record), so on
//! the same input they give identical output and store contents — the batch one with one
//! `get_batch`, one `put_batch` and one `forward_batch` per batch instead of a get, a put and
//! a forward per record.

use std::collections::HashMap;
use std::hash::Hash;

use super::{Batch, Processor, ProcessorContext, ProcessorSupplier};
use crate::error::ProcessError;
use crate::record::Record;

/// Counts per key a batch at a time: groups the batch by key, reads all current counts with one
/// `get_batch`, writes the new ones with one `put_batch` and forwards the running counts with
/// one `forward_batch`.
pub struct BatchCountAggregator<K> {
    store: String,
    /// Scratch space reused across batches: key → slot (foldhash: keys are hashed once per
    /// record, and SipHash cost more than the store access per key), distinct keys,
    /// per-record slot.
    slots: HashMap<K, usize, foldhash::fast::RandomState>,
    keys: Vec<K>,
    record_slots: Vec<usize>,
}

impl<K> BatchCountAggregator<K> {
    /// A counter keeping its counts in `store`.
    pub fn new(store: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            slots: HashMap::default(),
            keys: Vec::new(),
            record_slots: Vec::new(),
        }
    }

    /// A supplier that declares `store` as used (it must be connected to the processor).
    pub fn supplier(store: impl Into<String>) -> CountAggregatorSupplier<Self> {
        CountAggregatorSupplier {
            store: store.into(),
            make: |s| Self::new(s),
        }
    }
}

impl<K, V> Processor<K, V, K, i64> for BatchCountAggregator<K>
where
    K: Clone + Eq + Hash + Send + 'static,
    V: 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, i64>,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        self.process_batch(ctx, vec![record])
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, i64>,
        batch: Batch<K, V>,
    ) -> Result<(), ProcessError> {
        self.slots.clear();
        self.keys.clear();
        self.record_slots.clear();
        for record in &batch {
            // Look up before cloning: most records of a batch hit a key seen earlier in it.
            let slot = match self.slots.get(&record.key) {
                Some(&slot) => slot,
                None => {
                    let slot = self.keys.len();
                    self.slots.insert(record.key.clone(), slot);
                    self.keys.push(record.key.clone());
                    slot
                }
            };
            self.record_slots.push(slot);
        }
        let mut counts: Vec<i64> = {
            let store = ctx.store::<K, i64>(&self.store)?;
            store
                .get_batch(&self.keys)?
                .into_iter()
                .map(|c| c.unwrap_or(0))
                .collect()
        };
        let mut out = Vec::with_capacity(batch.len());
        for (record, &slot) in batch.into_iter().zip(&self.record_slots) {
            counts[slot] += 1;
            out.push(record.with_value(counts[slot]));
        }
        ctx.store::<K, i64>(&self.store)?
            .put_batch(self.keys.iter().zip(&counts))?;
        ctx.forward_batch(out)
    }
}

/// Counts per key one record at a time: a get, a put and a forward per record.
pub struct RecordCountAggregator {
    store: String,
}

impl RecordCountAggregator {
    /// A counter keeping its counts in `store`.
    pub fn new(store: impl Into<String>) -> Self {
        Self {
            store: store.into(),
        }
    }

    /// A supplier that declares `store` as used (it must be connected to the processor).
    pub fn supplier(store: impl Into<String>) -> CountAggregatorSupplier<Self> {
        CountAggregatorSupplier {
            store: store.into(),
            make: |s| Self::new(s),
        }
    }
}

impl<K, V> Processor<K, V, K, i64> for RecordCountAggregator
where
    K: Clone + 'static,
    V: 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, i64>,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        let mut store = ctx.store::<K, i64>(&self.store)?;
        let count = store.get(&record.key)?.unwrap_or(0) + 1;
        store.put(&record.key, &count)?;
        ctx.forward(record.with_value(count))
    }
}

/// Makes count aggregators for each task and declares their store.
pub struct CountAggregatorSupplier<P> {
    store: String,
    make: fn(&str) -> P,
}

impl<P, K, V> ProcessorSupplier<K, V, K, i64> for CountAggregatorSupplier<P>
where
    P: Processor<K, V, K, i64>,
{
    type Processor = P;

    fn get(&self) -> P {
        (self.make)(&self.store)
    }

    fn stores(&self) -> Vec<String> {
        vec![self.store.clone()]
    }
}
