//! Peak memory of a restore into LMDB: restores a changelog of 1M records (16-byte keys,
//! 100-byte values, generated batch by batch as a fetcher would hand them over), default
//! configuration (`SyncMode::NoMetaSync`), either **batched** (one `restore_batch` per ~1 MiB
//! batch) or **bulk** (one `restore_run` per ~8 MiB batch into an empty store, then
//! `finish_restore_runs`), then prints the process's peak resident set (`VmHWM` of
//! `/proc/self/status`), the peak of its anonymous part (sampled every 2 ms by a thread,
//! so the merge inside `finish_restore_runs` is covered too) and the file-backed part at the end
//! (LMDB's memory map of the data file: page cache, not heap).
//!
//! Usage: `cargo run --release -p kstreams-benches --bin restore_rss -- [batched|bulk]
//! [random|sorted] [records] [records per batch] [nometasync|full|nosync]` (default: batched,
//! random keys, 1,000,000 records, 9,039 per batch for batched and 72,315 per run for bulk,
//! `nometasync`). Linux only (reads `/proc`).

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kstreams_benches::changelog::{
    Changelog, KeyOrder, RECORD_BYTES, RECORDS_PER_FETCH, RECORDS_PER_RUN,
};
use kstreams_store_api::{Checkpoint, KvBackend};
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment, SyncMode};

/// A `kB` field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> Result<u64, Box<dyn Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field) && line[field.len()..].starts_with(':'))
        .ok_or_else(|| format!("no {field} in /proc/self/status"))?;
    let kib = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Samples `RssAnon` every 2 ms until dropped; the peak is in `peak_kib`.
struct AnonSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnonSampler {
    fn start() -> Result<Self, Box<dyn Error>> {
        let peak_kib = Arc::new(AtomicU64::new(status_kib("RssAnon")?));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak_kib, stop) = (peak_kib.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(kib) = status_kib("RssAnon") {
                        peak_kib.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Ok(Self {
            peak_kib,
            stop,
            thread: Some(thread),
        })
    }

    fn peak_kib(&self) -> u64 {
        self.peak_kib.load(Ordering::Relaxed)
    }
}

impl Drop for AnonSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1).peekable();
    let bulk = match args.peek().map(String::as_str) {
        Some(method @ ("bulk" | "batched")) => {
            let bulk = method == "bulk";
            args.next();
            bulk
        }
        _ => false,
    };
    let order = match args.next().as_deref() {
        None | Some("random") => KeyOrder::Random,
        Some("sorted") => KeyOrder::Sorted,
        Some(other) => return Err(format!("key order {other:?}: random or sorted").into()),
    };
    let records: usize = match args.next() {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let per_batch: usize = match args.next() {
        Some(n) => n.parse()?,
        None if bulk => RECORDS_PER_RUN,
        None => RECORDS_PER_FETCH,
    };
    let sync_mode = match args.next().as_deref() {
        None | Some("nometasync") => SyncMode::NoMetaSync,
        Some("full") => SyncMode::Full,
        Some("nosync") => SyncMode::NoSync,
        Some(other) => {
            return Err(format!("sync mode {other:?}: nometasync, full or nosync").into());
        }
    };
    let changelog = Changelog::new(records, order);
    let before_kib = status_kib("VmHWM")?;

    let dir = tempfile::tempdir()?;
    let env = LmdbEnvironment::open(LmdbConfig::new(dir.path()).with_sync_mode(sync_mode))?;
    let mut store = env.open_store("counts", 0)?;
    let sampler = AnonSampler::start()?;
    let mut batches = 0_usize;
    let start = Instant::now();
    for (batch, offset) in changelog.batches(per_batch) {
        if bulk {
            store.restore_run(batch)?;
        } else {
            store.restore_batch(batch, Checkpoint::new(offset, None))?;
        }
        batches += 1;
    }
    let staged = start.elapsed().as_secs_f64();
    if bulk {
        store.finish_restore_runs(Checkpoint::new(records as i64, None))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let peak_anon_kib = sampler.peak_kib();
    drop(sampler);
    let restored = store.committed_len()?;
    if restored != records as u64 {
        return Err(format!("restored {restored} records of {records}").into());
    }
    let data_file = std::fs::metadata(dir.path().join("data.mdb"))?.len();

    println!(
        "restore_rss: {} restore, {records} records ({}), {batches} {} of <= {per_batch} \
         records, {sync_mode:?}",
        if bulk { "bulk" } else { "batched" },
        order.label(),
        if bulk { "runs" } else { "batches" },
    );
    if bulk {
        println!(
            "  staging the runs {staged:.2} s, finishing (merge) {:.2} s",
            seconds - staged
        );
    }
    println!(
        "  time {seconds:.2} s (records generated on the fly, inside the timing): \
         {:.0} records/s, {:.1} MB/s of keys and values",
        records as f64 / seconds,
        (records * RECORD_BYTES) as f64 / seconds / 1e6
    );
    println!(
        "  VmHWM {:.1} MiB (before the restore {:.1} MiB); peak RssAnon {:.1} MiB; at the end \
         RssAnon {:.1} MiB, RssFile {:.1} MiB",
        mib(status_kib("VmHWM")?),
        mib(before_kib),
        mib(peak_anon_kib),
        mib(status_kib("RssAnon")?),
        mib(status_kib("RssFile")?),
    );
    println!(
        "  data.mdb {:.1} MiB, map size {:.1} MiB",
        data_file as f64 / (1 << 20) as f64,
        env.map_size() as f64 / (1 << 20) as f64
    );
    Ok(())
}
