//! Ready stateless processors. Each one is batch-native: its `process_batch` transforms the
//! whole batch and forwards it with one `forward_batch`, so batches stay whole down the
//! topology.

use super::{Batch, Processor, ProcessorContext};
use crate::error::ProcessError;
use crate::record::Record;

/// Keeps the records for which the predicate is true.
#[derive(Debug, Clone)]
pub struct Filter<F>(F);

impl<F> Filter<F> {
    /// A filter with `predicate`.
    pub fn new(predicate: F) -> Self {
        Self(predicate)
    }
}

impl<K, V, F> Processor<K, V, K, V> for Filter<F>
where
    K: Clone + 'static,
    V: Clone + 'static,
    F: Fn(&Record<K, V>) -> bool + Send + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, V>,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        if (self.0)(&record) {
            ctx.forward(record)
        } else {
            Ok(())
        }
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, V>,
        mut batch: Batch<K, V>,
    ) -> Result<(), ProcessError> {
        batch.retain(|r| (self.0)(r));
        ctx.forward_batch(batch)
    }
}

/// Replaces key and value; timestamp, headers and metadata are kept.
#[derive(Debug, Clone)]
pub struct Map<F>(F);

impl<F> Map<F> {
    /// A map with `f(key, value) -> (key, value)`.
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<K, V, K2, V2, F> Processor<K, V, K2, V2> for Map<F>
where
    K: 'static,
    V: 'static,
    K2: Clone + 'static,
    V2: Clone + 'static,
    F: Fn(K, V) -> (K2, V2) + Send + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K2, V2>,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        ctx.forward(map_record(&self.0, record))
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, K2, V2>,
        batch: Batch<K, V>,
    ) -> Result<(), ProcessError> {
        ctx.forward_batch(batch.into_iter().map(|r| map_record(&self.0, r)).collect())
    }
}

fn map_record<K, V, K2, V2>(f: &impl Fn(K, V) -> (K2, V2), r: Record<K, V>) -> Record<K2, V2> {
    let Record {
        key,
        value,
        timestamp,
        headers,
        metadata,
    } = r;
    let (key, value) = f(key, value);
    Record {
        key,
        value,
        timestamp,
        headers,
        metadata,
    }
}

/// Replaces the value; the key and everything else are kept.
#[derive(Debug, Clone)]
pub struct MapValues<F>(F);

impl<F> MapValues<F> {
    /// A value mapper with `f(&value) -> value`.
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<K, V, V2, F> Processor<K, V, K, V2> for MapValues<F>
where
    K: Clone + 'static,
    V: 'static,
    V2: Clone + 'static,
    F: Fn(&V) -> V2 + Send + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, V2>,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        let value = (self.0)(&record.value);
        ctx.forward(record.with_value(value))
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, V2>,
        batch: Batch<K, V>,
    ) -> Result<(), ProcessError> {
        ctx.forward_batch(
            batch
                .into_iter()
                .map(|r| {
                    let value = (self.0)(&r.value);
                    r.with_value(value)
                })
                .collect(),
        )
    }
}

/// Turns each record into zero or more records with the input's timestamp, headers and
/// metadata.
#[derive(Debug, Clone)]
pub struct FlatMap<F>(F);

impl<F> FlatMap<F> {
    /// A flat map with `f(&key, &value) -> [(key, value)]`.
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<K, V, K2, V2, I, F> Processor<K, V, K2, V2> for FlatMap<F>
where
    K: 'static,
    V: 'static,
    K2: Clone + 'static,
    V2: Clone + 'static,
    I: IntoIterator<Item = (K2, V2)>,
    F: Fn(&K, &V) -> I + Send + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K2, V2>,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        for (k, v) in (self.0)(&record.key, &record.value) {
            ctx.forward(Record {
                key: k,
                value: v,
                timestamp: record.timestamp,
                headers: record.headers.clone(),
                metadata: record.metadata.clone(),
            })?;
        }
        Ok(())
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, K2, V2>,
        batch: Batch<K, V>,
    ) -> Result<(), ProcessError> {
        let mut out = Vec::with_capacity(batch.len());
        for record in &batch {
            for (k, v) in (self.0)(&record.key, &record.value) {
                out.push(Record {
                    key: k,
                    value: v,
                    timestamp: record.timestamp,
                    headers: record.headers.clone(),
                    metadata: record.metadata.clone(),
                });
            }
        }
        ctx.forward_batch(out)
    }
}

/// Calls a function on each record and forwards nothing (a terminal node).
#[derive(Debug, Clone)]
pub struct ForEach<F>(F);

impl<F> ForEach<F> {
    /// A terminal node calling `f`.
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<K, V, F> Processor<K, V, K, V> for ForEach<F>
where
    K: 'static,
    V: 'static,
    F: FnMut(&Record<K, V>) + Send + 'static,
{
    fn process(
        &mut self,
        _: &mut ProcessorContext<'_, K, V>,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        (self.0)(&record);
        Ok(())
    }

    fn process_batch(
        &mut self,
        _: &mut ProcessorContext<'_, K, V>,
        batch: Batch<K, V>,
    ) -> Result<(), ProcessError> {
        batch.iter().for_each(&mut self.0);
        Ok(())
    }
}

/// Calls a function on each record and forwards it unchanged.
#[derive(Debug, Clone)]
pub struct Peek<F>(F);

impl<F> Peek<F> {
    /// A pass-through node calling `f`.
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<K, V, F> Processor<K, V, K, V> for Peek<F>
where
    K: Clone + 'static,
    V: Clone + 'static,
    F: FnMut(&Record<K, V>) + Send + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, V>,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        (self.0)(&record);
        ctx.forward(record)
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, V>,
        batch: Batch<K, V>,
    ) -> Result<(), ProcessError> {
        batch.iter().for_each(&mut self.0);
        ctx.forward_batch(batch)
    }
}
