//! What the broker examples (`batch_count`, `wordcount`) share: the command line, the
//! no-bootstrap mode (librdkafka's in-process mock cluster with sample input), watching the
//! output topic for `--exit-when-idle`, running the application on tokio or smol, and what
//! they tell the user on stderr: log records (warnings by default, `RUST_LOG` to change) and
//! progress (state changes, task assignments, committed offsets; see [`progress`]).

pub mod metrics;
pub mod progress;
pub mod shutdown;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kstreams_core::engine::ProcessingGuarantee;
use kstreams_core::prelude::{Topology, TopologyError};
use kstreams_io_common::{
    KafkaStreams, Runtime, Stores, StreamsConfig, StreamsHandle, StreamsState,
};
use progress::Progress;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use shutdown::Shutdown;

/// Partitions of the topics the no-bootstrap mode creates.
pub const SAMPLE_PARTITIONS: i32 = 4;

/// Which count processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `BatchCountAggregator`.
    Batch,
    /// `RecordCountAggregator`.
    Record,
}

/// Which async runtime runs the stream threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// `kstreams-tokio`.
    Tokio,
    /// `kstreams-smol`.
    Smol,
}

/// The command line.
#[derive(Clone)]
pub struct Args {
    /// `--bootstrap`; `None`: an in-process mock cluster with sample input.
    pub bootstrap: Option<String>,
    /// `--input`.
    pub input: String,
    /// `--output`.
    pub output: String,
    /// `--application-id`.
    pub application_id: String,
    /// `--state-dir`; `None` only without `--bootstrap` (a temporary directory).
    pub state_dir: Option<PathBuf>,
    /// `--store lmdb|memory`: `true` for LMDB.
    pub lmdb: bool,
    /// `--mode`.
    pub mode: Mode,
    /// `--runtime`.
    pub runtime: RuntimeChoice,
    /// `--exit-when-idle`.
    pub exit_when_idle: Option<Duration>,
    /// `--logging on|off`: whether the store has a changelog (default on).
    pub logging: bool,
    /// `--processing-guarantee at-least-once|exactly-once`, else `processing.guarantee` of
    /// `--config`, else at-least-once.
    pub guarantee: ProcessingGuarantee,
    /// `--config FILE`: Kafka-style properties (`security.protocol`, `sasl.*`, `ssl.*`,
    /// `commit.interval.ms`, …) read from FILE, in file order. The flags above win over the
    /// properties they correspond to (`bootstrap.servers`, `application.id`, `state.dir`,
    /// `processing.guarantee`), as do `--group-instance-id ID` (`group.instance.id`) and
    /// `--num-standby-replicas N` (`num.standby.replicas`).
    pub properties: Vec<(String, String)>,
    /// `--metrics-addr HOST:PORT`: serve the metrics there (see [`metrics`]).
    pub metrics_addr: Option<String>,
}

/// Shows everything but the values of secret properties (`sasl.password`, …).
impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(key, value)| {
                let secret = kstreams_io_common::PROPERTIES
                    .iter()
                    .any(|p| p.name == key && p.secret);
                (key.as_str(), if secret { "***" } else { value.as_str() })
            })
            .collect();
        f.debug_struct("Args")
            .field("bootstrap", &self.bootstrap)
            .field("input", &self.input)
            .field("output", &self.output)
            .field("application_id", &self.application_id)
            .field("state_dir", &self.state_dir)
            .field("lmdb", &self.lmdb)
            .field("mode", &self.mode)
            .field("runtime", &self.runtime)
            .field("exit_when_idle", &self.exit_when_idle)
            .field("logging", &self.logging)
            .field("guarantee", &self.guarantee)
            .field("properties", &properties)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

impl Args {
    /// Parses the arguments after the program name of example `program`, whose
    /// application id defaults to `default_application_id` without `--bootstrap`.
    pub fn parse(
        program: &str,
        default_application_id: &str,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Self, String> {
        let usage = format!(
            "usage: {program} [--bootstrap HOST:PORT --input TOPIC --output TOPIC \
             --application-id ID --state-dir DIR] [--store lmdb|memory] [--mode batch|record] \
             [--runtime tokio|smol] [--exit-when-idle SECS] [--logging on|off] \
             [--processing-guarantee at-least-once|exactly-once] [--config FILE] [--metrics-addr HOST:PORT] \
             [--group-instance-id ID] [--num-standby-replicas N]"
        );
        let mut flags: BTreeMap<String, String> = BTreeMap::new();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let known = [
                "--bootstrap",
                "--input",
                "--output",
                "--application-id",
                "--state-dir",
                "--store",
                "--mode",
                "--runtime",
                "--exit-when-idle",
                "--logging",
                "--processing-guarantee",
                "--config",
                "--metrics-addr",
                "--group-instance-id",
                "--num-standby-replicas",
            ];
            if !known.contains(&flag.as_str()) {
                return Err(format!("unknown argument `{flag}`\n{usage}"));
            }
            let value = args
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{usage}"))?;
            if flags.insert(flag.clone(), value).is_some() {
                return Err(format!("{flag} given twice"));
            }
        }
        let properties = match flags.remove("--config") {
            Some(file) => {
                let entries = kstreams_io_common::read_properties_file(file.as_ref())
                    .map_err(|e| format!("--config: {e}"))?;
                // Unknown names now, with their line (values are checked below).
                if let Some((key, _, line)) = entries.iter().find(|(key, _, _)| {
                    !kstreams_io_common::PROPERTIES.iter().any(|p| p.name == key)
                }) {
                    return Err(format!(
                        "--config {file}: line {}: unknown property `{key}`",
                        line.unwrap_or_default()
                    ));
                }
                entries
                    .into_iter()
                    .map(|(key, value, _)| (key, value))
                    .collect()
            }
            None => Vec::new(),
        };
        let property = |name: &str| {
            properties
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value): &(String, String)| value.clone())
        };
        let bootstrap = flags
            .remove("--bootstrap")
            .or_else(|| property("bootstrap.servers"));
        if let (Some(id), None) = (property("application.id"), flags.get("--application-id")) {
            flags.insert("--application-id".into(), id);
        }
        if let (Some(dir), None) = (property("state.dir"), flags.get("--state-dir")) {
            flags.insert("--state-dir".into(), dir);
        }
        let mut required = |flag: &str, default: &str| match (flags.remove(flag), &bootstrap) {
            (Some(v), _) => Ok(v),
            (None, None) => Ok(default.to_owned()),
            (None, Some(_)) => Err(format!(
                "{flag} is required with --bootstrap (or bootstrap.servers in --config)\n{usage}"
            )),
        };
        let input = required("--input", "input")?;
        let output = required("--output", "output")?;
        let application_id = required("--application-id", default_application_id)?;
        let state_dir = match (flags.remove("--state-dir"), &bootstrap) {
            (Some(dir), _) => Some(PathBuf::from(dir)),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(format!("--state-dir is required with --bootstrap\n{usage}"));
            }
        };
        let lmdb = match flags.remove("--store").as_deref() {
            None | Some("lmdb") => true,
            Some("memory") => false,
            Some(other) => return Err(format!("--store: `{other}` is not lmdb or memory")),
        };
        let mode = match flags.remove("--mode").as_deref() {
            None | Some("batch") => Mode::Batch,
            Some("record") => Mode::Record,
            Some(other) => return Err(format!("--mode: `{other}` is not batch or record")),
        };
        let runtime = match flags.remove("--runtime").as_deref() {
            None | Some("tokio") => RuntimeChoice::Tokio,
            Some("smol") => RuntimeChoice::Smol,
            Some(other) => return Err(format!("--runtime: `{other}` is not tokio or smol")),
        };
        let exit_when_idle = match flags.remove("--exit-when-idle") {
            Some(secs) => Some(Duration::from_secs_f64(
                secs.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        format!("--exit-when-idle: `{secs}` is not a positive number")
                    })?,
            )),
            None if bootstrap.is_none() => Some(Duration::from_secs(3)),
            None => None,
        };
        let logging = match flags.remove("--logging").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => return Err(format!("--logging: `{other}` is not on or off")),
        };
        // The flag replaces the property; without it the property (checked with the rest of
        // --config below) decides, and the default is at-least-once.
        let mut properties = properties;
        match flags.remove("--processing-guarantee").as_deref() {
            None => {}
            Some(flag @ ("at-least-once" | "exactly-once")) => {
                properties.retain(|(key, _)| key != "processing.guarantee");
                let value = if flag == "exactly-once" {
                    "exactly_once_v2"
                } else {
                    "at_least_once"
                };
                properties.push(("processing.guarantee".into(), value.into()));
            }
            Some(other) => {
                return Err(format!(
                    "--processing-guarantee: `{other}` is not at-least-once or exactly-once"
                ));
            }
        }
        // Static membership: the flag replaces the property (threads add `-N`).
        if let Some(id) = flags.remove("--group-instance-id") {
            properties.retain(|(key, _)| key != "group.instance.id");
            properties.push(("group.instance.id".into(), id));
        }
        // Standby replicas: the flag replaces the property (checked with --config below).
        if let Some(n) = flags.remove("--num-standby-replicas") {
            properties.retain(|(key, _)| key != "num.standby.replicas");
            properties.push(("num.standby.replicas".into(), n));
        }
        let mut parsed = Self {
            bootstrap,
            input,
            output,
            application_id,
            state_dir,
            lmdb,
            mode,
            runtime,
            exit_when_idle,
            logging,
            guarantee: ProcessingGuarantee::AtLeastOnce,
            properties,
            metrics_addr: flags.remove("--metrics-addr"),
        };
        // Refuse a bad --config now, not after the mock cluster started.
        parsed.guarantee = parsed
            .streams_config(
                parsed.bootstrap.as_deref().unwrap_or("localhost:9092"),
                PathBuf::new(),
            )?
            .engine
            .processing_guarantee;
        if parsed.exit_when_idle.is_some() && !parsed.helper_clients_can_connect() {
            return Err(
                "--exit-when-idle reads the output topic with librdkafka, built here \
                        without TLS and SCRAM, so it cannot connect with this --config: run \
                        without --exit-when-idle and stop the example with Ctrl-C"
                    .into(),
            );
        }
        Ok(parsed)
    }

    /// Whether the example's own librdkafka clients can reach the cluster `--config`
    /// describes: the librdkafka built here has no TLS and no SCRAM (no OpenSSL, see
    /// docs/decisions.md §13), so only PLAINTEXT and SASL_PLAINTEXT with PLAIN.
    pub fn helper_clients_can_connect(&self) -> bool {
        let property = |name: &str| {
            self.properties
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.to_ascii_uppercase())
        };
        let mechanism = property("sasl.mechanism").or_else(|| property("sasl.mechanisms"));
        match property("security.protocol").as_deref() {
            None | Some("PLAINTEXT") => true,
            // librdkafka takes sasl.username/sasl.password, not the Java clients' JAAS line.
            Some("SASL_PLAINTEXT") => {
                mechanism.as_deref() == Some("PLAIN") && property("sasl.jaas.config").is_none()
            }
            _ => false,
        }
    }

    /// The properties the example's own librdkafka clients (topic creation, the output
    /// watcher) take from `--config`: how to reach and authenticate to the cluster.
    fn client_properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties
            .iter()
            .filter(|(key, _)| {
                ["security.", "sasl.", "ssl."]
                    .iter()
                    .any(|p| key.starts_with(p))
                    && key != "sasl.jaas.config"
            })
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// The application's configuration: `--config`'s properties, then the flags.
    fn streams_config(&self, bootstrap: &str, state_dir: PathBuf) -> Result<StreamsConfig, String> {
        let mut properties = self.properties.clone();
        properties.retain(|(key, _)| {
            !["bootstrap.servers", "application.id", "state.dir"].contains(&key.as_str())
        });
        properties.extend([
            ("bootstrap.servers".to_owned(), bootstrap.to_owned()),
            ("application.id".to_owned(), self.application_id.clone()),
        ]);
        let mut config =
            StreamsConfig::from_properties(properties).map_err(|e| format!("--config: {e}"))?;
        config.state_dir = state_dir;
        Ok(config)
    }
}

/// Records as `(key, value)` bytes.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// One of the broker examples.
pub struct Example {
    /// The topology for the parsed arguments.
    pub topology: fn(&Args) -> Result<Topology, TopologyError>,
    /// Topics of the application's own besides input and output (e.g. a repartition topic),
    /// created with the input topic's partition count when missing.
    pub own_topics: fn(&Args) -> Vec<String>,
    /// The sample input of the no-bootstrap mode: `(key, value)` records.
    pub sample: fn() -> KeyValues,
    /// The topology's stores; with `--logging on` each has a changelog topic
    /// `<ID>-<store>-changelog`, which the application creates itself on brokers that serve
    /// CreateTopics (the mock cluster does not: the no-bootstrap mode makes them).
    pub stores: &'static [&'static str],
}

impl Example {
    /// The changelog topics of its stores for `args` (none with `--logging off`).
    pub fn changelogs(&self, args: &Args) -> Vec<String> {
        if !args.logging {
            return Vec::new();
        }
        self.stores
            .iter()
            .map(|store| format!("{}-{store}-changelog", args.application_id))
            .collect()
    }
}

/// A mock cluster of three brokers, set up by `kstreams_tests::mock::mock_cluster`.
pub fn mock_cluster() -> Result<kstreams_tests::mock::Mock, String> {
    kstreams_tests::mock::mock_cluster(3).map_err(|e| format!("mock cluster: {e}"))
}

/// A librdkafka client configuration for `bootstrap` with the `security` properties.
fn client<'a>(
    bootstrap: &str,
    security: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in security {
        config.set(key, value);
    }
    config
}

/// Produces `records` to `topic` (partitioned by key) and waits until all are acknowledged.
pub fn produce(bootstrap: &str, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    for (key, value) in records {
        producer
            .send(BaseRecord::to(topic).key(key).payload(value))
            .map_err(|(e, _)| format!("produce: {e}"))?;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("produce: {e}"))
}

/// The partition count of `topic` (`None`: it does not exist).
fn partition_count(client: &ClientConfig, topic: &str) -> Result<Option<i32>, String> {
    let consumer: BaseConsumer = client.create().map_err(|e| format!("consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    Ok(metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// Creates `topic` with `partitions` through CreateTopics unless it exists.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), String> {
    create_topic_with(&client(bootstrap, []), topic, partitions)
}

/// [`create_topic`] with a client configuration.
fn create_topic_with(client: &ClientConfig, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        client.create().map_err(|e| format!("admin client: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = futures_lite::future::block_on(admin.create_topics([&new], &AdminOptions::new()))
        .map_err(|e| format!("create {topic}: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("create {topic}: {code}")),
        }
    }
    Ok(())
}

/// Reads `topic` from the beginning and hands each record to `on_record`; returns once the
/// instance has been `Running` with no new output for `idle`, or has stopped.
/// Returns early when `shutdown` is requested.
fn watch_output(
    args: &Args,
    bootstrap: &str,
    idle: Duration,
    handle: &StreamsHandle,
    shutdown: &Shutdown,
    mut on_record: impl FnMut(&[u8], i64),
) -> Result<(), String> {
    let topic = &args.output;
    let partitions = partition_count(&client(bootstrap, args.client_properties()), topic)?
        .ok_or_else(|| format!("output topic {topic} does not exist"))?;
    let security: Vec<(&str, &str)> = args.client_properties().collect();
    let consumer = kstreams_tests::reader::from_beginning(
        bootstrap,
        "kstreams-example-watcher",
        topic,
        partitions,
        &security,
    )
    .map_err(|e| format!("consumer of {topic}: {e}"))?;
    let mut last_output = Instant::now();
    loop {
        if shutdown.requested() {
            return Ok(());
        }
        match handle.state() {
            StreamsState::Running => {}
            state if state.is_terminal() => return Ok(()),
            // Idle time counts only while running (not while joining or rebalancing).
            _ => last_output = Instant::now(),
        }
        if last_output.elapsed() >= idle {
            return Ok(());
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.map_err(|e| format!("consume {topic}: {e}"))?;
        let count = message
            .payload()
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(i64::from_be_bytes)
            .ok_or_else(|| format!("{topic}: a value that is not an 8-byte count"))?;
        on_record(message.key().unwrap_or_default(), count);
        last_output = Instant::now();
    }
}

/// Runs `example` as `args` say; returns the final count per key seen on the output topic
/// (empty when it ran without `--exit-when-idle` and stopped by failing).
pub fn run(example: &Example, args: &Args) -> Result<BTreeMap<Vec<u8>, i64>, String> {
    run_until(example, args, &Shutdown::never())
}

/// [`run`], closing cleanly (commit, leave the group) as soon as `shutdown` is requested.
pub fn run_until(
    example: &Example,
    args: &Args,
    shutdown: &Shutdown,
) -> Result<BTreeMap<Vec<u8>, i64>, String> {
    let _metrics = args
        .metrics_addr
        .as_deref()
        .map(metrics::MetricsServer::start)
        .transpose()?;
    let mock = match &args.bootstrap {
        Some(_) => None,
        None => Some(mock_cluster()?),
    };
    let bootstrap = match (&args.bootstrap, &mock) {
        (Some(b), _) => b.clone(),
        (None, Some(mock)) => mock.bootstrap_servers(),
        (None, None) => unreachable!("a mock cluster runs without --bootstrap"),
    };
    let own_topics = (example.own_topics)(args);
    if let Some(mock) = &mock {
        // The mock cluster serves no CreateTopics: make every topic through its API.
        let changelogs = example.changelogs(args);
        for topic in [&args.input, &args.output]
            .into_iter()
            .chain(&own_topics)
            .chain(&changelogs)
        {
            mock.create_topic(topic, SAMPLE_PARTITIONS, 1)
                .map_err(|e| format!("create {topic}: {e}"))?;
        }
        let sample = (example.sample)();
        produce(&bootstrap, &args.input, &sample)?;
        eprintln!(
            "mock cluster at {bootstrap}: produced {} records to {}",
            sample.len(),
            args.input
        );
    } else if !own_topics.is_empty() && !args.helper_clients_can_connect() {
        eprintln!(
            "not creating {} (librdkafka, built here without TLS and SCRAM, cannot connect \
             with this --config): it must exist",
            own_topics.join(", ")
        );
    } else if !own_topics.is_empty() {
        let client = client(&bootstrap, args.client_properties());
        let partitions = partition_count(&client, &args.input)?
            .ok_or_else(|| format!("input topic {} does not exist", args.input))?;
        for topic in &own_topics {
            create_topic_with(&client, topic, partitions)?;
        }
    }
    let temp_dir;
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => {
            temp_dir = tempfile::tempdir().map_err(|e| format!("state dir: {e}"))?;
            temp_dir.path().to_owned()
        }
    };

    let topology = (example.topology)(args).map_err(|e| e.to_string())?;
    let config = args.streams_config(&bootstrap, state_dir)?;
    let stores = if args.lmdb {
        Stores::Lmdb
    } else {
        Stores::Memory
    };
    let commit_interval = config.engine.commit_interval.to_std();
    let progress = Progress::new(commit_interval);
    let handle = match args.runtime {
        RuntimeChoice::Tokio => start::<kstreams_tokio::Tokio>(topology, config, stores, &progress),
        RuntimeChoice::Smol => start::<kstreams_smol::Smol>(topology, config, stores, &progress),
    }?;
    let _summaries = progress.report_periodically(handle.clone());

    let mut counts = BTreeMap::new();
    match args.exit_when_idle {
        Some(idle) => {
            progress.watching_output();
            let watched = watch_output(args, &bootstrap, idle, &handle, shutdown, |key, count| {
                progress.output_record_read();
                counts.insert(key.to_vec(), count);
            });
            // Close whatever the watcher found: a clean close commits and leaves the group.
            let closed = futures_lite::future::block_on(handle.close());
            watched?;
            closed.map_err(|e| e.to_string())?;
        }
        None => {
            let stopped = futures_lite::future::block_on(futures_lite::future::or(
                async { Some(handle.wait().await) },
                async {
                    shutdown.wait().await;
                    None
                },
            ));
            match stopped {
                Some(result) => result.map_err(|e| e.to_string())?,
                None => {
                    futures_lite::future::block_on(handle.close()).map_err(|e| e.to_string())?
                }
            }
        }
    }
    Ok(counts)
}

/// Starts the application on runtime `R`, with `progress` listening.
fn start<R: Runtime>(
    topology: Topology,
    config: StreamsConfig,
    stores: Stores,
    progress: &Progress,
) -> Result<StreamsHandle, String> {
    let mut streams =
        KafkaStreams::<R>::new(topology, config, stores).map_err(|e| e.to_string())?;
    progress.listen(&mut streams);
    streams.start().map_err(|e| e.to_string())
}

/// Log records on stderr: warnings and errors, unless `RUST_LOG` says otherwise (e.g.
/// `RUST_LOG=debug` also shows every connection attempt and its failure).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person watching, not in a file or pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The examples' `main`: install the log subscriber, parse, run (progress on stderr), print
/// `key<TAB>count` lines on stdout, exit 1 on an error.
pub fn main(program: &str, default_application_id: &str, example: &Example) {
    init_logging();
    let result = Shutdown::install().and_then(|shutdown| {
        let args = Args::parse(program, default_application_id, std::env::args().skip(1))?;
        run_until(example, &args, &shutdown)
    });
    match result {
        Ok(counts) => {
            for (key, count) in counts {
                println!("{}\t{count}", String::from_utf8_lossy(&key));
            }
        }
        Err(error) => {
            eprintln!("{program}: {error}");
            std::process::exit(1);
        }
    }
}
