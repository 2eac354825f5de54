//! # kstreams-core
//!
//! The sans-IO core of kstreams, a Kafka Streams–style stream-processing library whose
//! distinguishing feature is **full-stack batch processing**: records flow from the Kafka wire
//! through processors and state stores back to Kafka in per-partition batches, with the ordering
//! and delivery guarantees of record-at-a-time processing.
//!
//! This crate never opens a socket, reads a clock, sleeps or spawns: time is passed in.
//!
//! - [`topology`]: build a typed topology of sources, processors, sinks and stores.
//! - [`processor`]: the [`Processor`](processor::Processor) trait, with `process` and
//!   `process_batch`, the context, and ready processors (filter, map, count, …).
//! - [`state`]: typed key-value stores over byte backends (memory, LMDB).
//! - [`task`]: one task per (sub-topology, partition), running batches in offset order.
//! - [`testing`]: [`TopologyTestDriver`](testing::TopologyTestDriver) for unit tests.
//!
//! ```
//! use kstreams_core::prelude::*;
//!
//! let mut b = TopologyBuilder::new();
//! let src = b.add_source("src", &["words"], StringSerde, StringSerde)?;
//! let count = b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))?;
//! b.add_store(StoreBuilder::key_value("counts", StringSerde, I64Serde), &["count"])?;
//! b.add_sink("sink", "word-counts", &[&count], StringSerde, I64Serde)?;
//!
//! let mut driver = TopologyTestDriver::new(b.build()?)?;
//! let input = driver.input_topic("words", StringSerde, StringSerde);
//! for w in ["a", "b", "a"] {
//!     input.pipe(&mut driver, w.to_owned(), String::new(), 0)?;
//! }
//! let output = driver.output_topic("word-counts", StringSerde, I64Serde);
//! assert_eq!(
//!     output.read_key_values(&mut driver)?,
//!     vec![("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod client;
pub mod engine;
pub mod error;
pub mod ids;
pub mod partitioner;
pub mod processor;
pub mod record;
pub mod serde;
pub mod state;
pub mod task;
pub mod testing;
pub mod time;
pub mod topology;
pub mod wire;

/// SASL authentication settings: [`SaslConfig`](sasl::SaslConfig), [`SaslMechanism`](sasl::SaslMechanism), [`Secret`](sasl::Secret).
pub use wire::sasl;

/// The names most programs need.
pub mod prelude {
    pub use crate::error::{ProcessError, TaskError, TopologyError};
    pub use crate::processor::{
        Batch, BatchCountAggregator, Processor, ProcessorContext, ProcessorSupplier,
        PunctuationType, RecordCountAggregator,
    };
    pub use crate::record::{Headers, Record};
    pub use crate::serde::{
        BytesSerde, Deserializer, F64Serde, I32Serde, I64Serde, Nullable, Serde, Serializer,
        StringSerde, U32Serde, U64Serde, UnitSerde,
    };
    pub use crate::state::{KeyValueStore, StoreBuilder};
    pub use crate::task::{ErrorPolicy, TaskConfig};
    pub use crate::testing::TopologyTestDriver;
    pub use crate::time::{Duration, Instant};
    pub use crate::topology::{Topology, TopologyBuilder};
}
