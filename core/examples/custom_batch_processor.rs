//! A user-written batch processor: drops duplicate events (same event id, the record key),
//! keeping the first one. `process_batch` looks up every id of the batch with one `get_batch`,
//! records the new ids with one `put_batch` and forwards the survivors with one
//! `forward_batch`; `process` does the same for a single record.
//!
//! ```text
//! cargo run --example custom_batch_processor
//! ```

use std::collections::HashSet;

use kstreams_core::prelude::*;

/// Forwards the first record of each key; the store `seen` maps a key to the timestamp of its
/// first record.
struct Dedup;

impl Processor<String, String, String, String> for Dedup {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        self.process_batch(ctx, vec![record])
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        batch: Batch<String, String>,
    ) -> Result<(), ProcessError> {
        let mut seen = ctx.store::<String, i64>("seen")?;
        let stored = seen.get_batch(batch.iter().map(|r| &r.key))?;
        // Keep a record if its key is neither stored nor earlier in this batch.
        let mut new_keys = HashSet::new();
        let fresh: Vec<Record<String, String>> = batch
            .into_iter()
            .zip(stored)
            .filter(|(r, stored)| stored.is_none() && new_keys.insert(r.key.clone()))
            .map(|(r, _)| r)
            .collect();
        seen.put_batch(fresh.iter().map(|r| (&r.key, &r.timestamp)))?;
        ctx.forward_batch(fresh)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut b = TopologyBuilder::new();
    let events = b.add_source("events", &["events"], StringSerde, StringSerde)?;
    let dedup = b.add_processor("dedup", &[&events], || Dedup)?;
    b.add_store(
        StoreBuilder::key_value("seen", StringSerde, I64Serde),
        &["dedup"],
    )?;
    b.add_sink("sink", "unique-events", &[&dedup], StringSerde, StringSerde)?;
    let topology = b.build()?;
    print!("{}", topology.describe());

    let mut driver = TopologyTestDriver::builder(topology)
        .batch_size(4)
        .build()?;
    let input = driver.input_topic("events", StringSerde, StringSerde);
    let events = [
        ("e1", "login"),
        ("e2", "click"),
        ("e1", "login (retry)"),
        ("e3", "click"),
        ("e2", "click (retry)"),
        ("e4", "logout"),
        ("e4", "logout (retry)"),
        ("e5", "login"),
    ];
    for (ts, (id, payload)) in events.into_iter().enumerate() {
        input.pipe(&mut driver, id.to_owned(), payload.to_owned(), ts as i64)?;
    }

    let output = driver.output_topic("unique-events", StringSerde, StringSerde);
    println!("\n{} events in, unique ones out:", events.len());
    for (id, payload) in output.read_key_values(&mut driver)? {
        println!("  {id}: {payload}");
    }
    Ok(())
}
