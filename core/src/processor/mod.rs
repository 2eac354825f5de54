//! The processor API: record-at-a-time and batch processing in one trait.
//!
//! Every [`Processor`] is batch-capable: the default [`Processor::process_batch`] calls
//! [`Processor::process`] for each record, so record-at-a-time code works unchanged, and a
//! processor that overrides `process_batch` receives whole batches — runs of records from one
//! input partition, in offset order. [`ProcessorContext::forward_batch`] hands a batch to the
//! children's `process_batch`; [`ProcessorContext::forward`] hands one record to their
//! `process`. Forwarding is depth-first: the children have run when `forward*` returns.
//!
//! This module also holds, crate-private, what processors run in: the type-erased node graph
//! of a sub-topology (`graph`, built by the topology), one task's mutable side of it
//! (`task_state`, owned by the task) and its punctuation schedule.

mod builtin;
mod context;
mod count;
pub(crate) mod graph;
mod punctuation;
pub(crate) mod task_state;

pub use builtin::{Filter, FlatMap, ForEach, Map, MapValues, Peek};
pub use context::ProcessorContext;
pub(crate) use context::{dispatch_batch, with_processor};
pub use count::{BatchCountAggregator, CountAggregatorSupplier, RecordCountAggregator};

use crate::error::ProcessError;
use crate::record::Record;

/// A run of records from one partition, in offset order.
pub type Batch<K, V> = Vec<Record<K, V>>;

/// Identifies a scheduled punctuation of a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PunctuatorId(pub(crate) u64);

/// Which clock drives a punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PunctuationType {
    /// The task's stream time (largest record timestamp processed). Fires after the batch
    /// that moves stream time past the due time; the first firing is at the first record.
    StreamTime,
    /// Wall-clock time as passed to the task by its owner (the core never reads a clock).
    WallClock,
}

/// A stream processor with input types `KIn`/`VIn` and output types `KOut`/`VOut`.
///
/// Errors returned from any method go to the task's processing-error policy (fail the task,
/// skip the record, or send it to a dead-letter topic). An error that names the offset of the
/// failing input record ([`ProcessError::at_offset`]) lets the task keep the records of the
/// batch before it; an error without one fails the whole batch, so an overriding
/// `process_batch` should either make its effects all-or-nothing or name the offset.
pub trait Processor<KIn, VIn, KOut, VOut>: Send + 'static {
    /// Called once before the first record: look up stores, schedule punctuations.
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), ProcessError> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record.
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        record: Record<KIn, VIn>,
    ) -> Result<(), ProcessError>;

    /// Processes a batch: records of one input partition in offset order. The default calls
    /// [`Processor::process`] for each record and names the failing record's offset.
    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        batch: Batch<KIn, VIn>,
    ) -> Result<(), ProcessError> {
        for record in batch {
            let offset = record.offset();
            ctx.set_current(offset, record.timestamp);
            self.process(ctx, record).map_err(|e| e.at_offset(offset))?;
        }
        Ok(())
    }

    /// Called when a punctuation scheduled with [`ProcessorContext::schedule`] is due;
    /// `timestamp` is the stream time or wall-clock time that triggered it, in milliseconds
    /// since the epoch either way (the scale of record timestamps; for wall clock,
    /// [`Instant::as_millis`](crate::time::Instant::as_millis)), as Kafka Streams'
    /// `Punctuator::punctuate(long)`.
    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        id: PunctuatorId,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        let _ = (ctx, id, timestamp);
        Ok(())
    }

    /// Called once when the task closes.
    fn close(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), ProcessError> {
        let _ = ctx;
        Ok(())
    }
}

/// Makes one processor instance per task, and names the stores its processors use.
///
/// Any `Fn() -> P` closure is a supplier that uses no store.
pub trait ProcessorSupplier<KIn, VIn, KOut, VOut>: Send + Sync + 'static {
    /// The processor type made.
    type Processor: Processor<KIn, VIn, KOut, VOut>;

    /// A fresh processor for one task.
    fn get(&self) -> Self::Processor;

    /// Names of the stores the processor uses; building the topology fails unless each is
    /// connected to the processor.
    fn stores(&self) -> Vec<String> {
        Vec::new()
    }
}

impl<F, P, KIn, VIn, KOut, VOut> ProcessorSupplier<KIn, VIn, KOut, VOut> for F
where
    F: Fn() -> P + Send + Sync + 'static,
    P: Processor<KIn, VIn, KOut, VOut>,
{
    type Processor = P;

    fn get(&self) -> P {
        self()
    }
}
