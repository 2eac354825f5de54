//! [`PROPERTIES`]: every property kstreams reads, with the setter that writes it into a
//! [`StreamsConfig`] (or into the security settings resolved after all are read), and the
//! value parsers those setters share.

use std::path::PathBuf;

use kstreams_core::client::fetcher::OffsetResetPolicy;
use kstreams_core::engine::ProcessingGuarantee;
use kstreams_core::task::ErrorPolicy;
use kstreams_core::time::Duration;

use crate::config::StreamsConfig;
use crate::security::SecuritySettings;

/// One property kstreams understands.
#[derive(Clone, Copy)]
pub struct Property {
    /// Its name, as Kafka (Streams) or librdkafka spell it.
    pub name: &'static str,
    /// What it sets, for documentation and `--help` output.
    pub description: &'static str,
    /// Whether its value is secret (never echoed in errors or logs).
    pub secret: bool,
    pub(super) apply: fn(&mut Target, &str) -> Result<(), String>,
}

impl std::fmt::Debug for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Property")
            .field("name", &self.name)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// What the setters write into: the configuration, and the security settings that are
/// resolved together once every property is read.
pub(super) struct Target {
    pub(super) config: StreamsConfig,
    pub(super) security: SecuritySettings,
}

macro_rules! property {
    ($name:literal, $description:literal, |$t:ident, $v:ident| $body:expr) => {
        Property {
            name: $name,
            description: $description,
            secret: false,
            apply: |$t: &mut Target, $v: &str| $body,
        }
    };
    (secret $name:literal, $description:literal, |$t:ident, $v:ident| $body:expr) => {
        Property {
            name: $name,
            description: $description,
            secret: true,
            apply: |$t: &mut Target, $v: &str| $body,
        }
    };
}

/// Every property kstreams reads, with what it sets. `application.id` and
/// `bootstrap.servers` are required; every other one has Kafka Streams' default.
pub const PROPERTIES: &[Property] = &[
    property!(
        "application.id",
        "the application id: group id and internal topics' prefix",
        |t, v| {
            t.config.engine.application_id = non_empty(v)?;
            Ok(())
        }
    ),
    property!(
        "bootstrap.servers",
        "comma-separated host:port list to bootstrap from",
        |t, v| {
            let servers: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if servers.is_empty() {
                return Err("no host:port given".into());
            }
            t.config.engine.bootstrap_servers = servers;
            Ok(())
        }
    ),
    property!(
        "client.id",
        "client.id sent to brokers (threads add -StreamThread-N)",
        |t, v| {
            t.config.engine.client_id = non_empty(v)?;
            Ok(())
        }
    ),
    property!(
        "num.stream.threads",
        "stream threads (engines) in this process",
        |t, v| {
            t.config.num_stream_threads = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "num.standby.replicas",
        "standby copies of each stateful task's stores on other instances (failover restores only the tail)",
        |t, v| {
            t.config.engine.num_standby_replicas = int(v)?;
            Ok(())
        }
    ),
    property!(
        "acceptable.recovery.lag",
        "changelog records a task's state may be behind and still count as caught up",
        |t, v| {
            t.config.engine.acceptable_recovery_lag = non_negative(v)?;
            Ok(())
        }
    ),
    property!(
        "max.warmup.replicas",
        "most warm-up copies in the group at a time (a task moves once its warm-up caught up)",
        |t, v| {
            t.config.engine.max_warmup_replicas = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "probing.rebalance.interval.ms",
        "rebalance this long after an assignment with warm-ups, to move the caught-up ones",
        |t, v| {
            t.config.engine.probing_rebalance_interval = positive_millis(v)?;
            Ok(())
        }
    ),
    property!("state.dir", "root directory of the local state", |t, v| {
        t.config.state_dir = PathBuf::from(non_empty(v)?);
        Ok(())
    }),
    property!(
        "processing.guarantee",
        "at_least_once or exactly_once_v2",
        |t, v| {
            t.config.engine.processing_guarantee = match v {
                "at_least_once" => ProcessingGuarantee::AtLeastOnce,
                "exactly_once_v2" | "exactly_once_beta" => ProcessingGuarantee::ExactlyOnce,
                "exactly_once" => {
                    return Err("`exactly_once` (one producer per task) is not supported; \
                            use `exactly_once_v2`"
                        .into());
                }
                other => return Err(format!("`{other}` is not at_least_once or exactly_once_v2")),
            };
            Ok(())
        }
    ),
    property!(
        "commit.interval.ms",
        "how often processed offsets are committed",
        |t, v| {
            t.config.engine.commit_interval = millis(v)?;
            Ok(())
        }
    ),
    property!("session.timeout.ms", "group session timeout", |t, v| {
        t.config.engine.session_timeout = millis(v)?;
        Ok(())
    }),
    property!(
        "group.instance.id",
        "static membership: a restart within the session timeout causes no rebalance (threads add -N)",
        |t, v| {
            t.config.engine.group_instance_id = Some(non_empty(v)?);
            Ok(())
        }
    ),
    property!(
        "heartbeat.interval.ms",
        "group heartbeat interval",
        |t, v| {
            t.config.engine.heartbeat_interval = millis(v)?;
            Ok(())
        }
    ),
    property!(
        "max.poll.interval.ms",
        "rebalance timeout: how long a rebalance may take a member",
        |t, v| {
            t.config.engine.rebalance_timeout = millis(v)?;
            Ok(())
        }
    ),
    property!(
        "request.timeout.ms",
        "an unanswered request closes its connection after this",
        |t, v| {
            t.config.engine.request_timeout = millis(v)?;
            Ok(())
        }
    ),
    property!(
        "max.block.ms",
        "how long sink topics may be missing from the metadata",
        |t, v| {
            t.config.engine.max_block = millis(v)?;
            Ok(())
        }
    ),
    property!("reconnect.backoff.ms", "first reconnect delay", |t, v| {
        t.config.engine.reconnect_backoff = millis(v)?;
        Ok(())
    }),
    property!(
        "reconnect.backoff.max.ms",
        "largest reconnect delay",
        |t, v| {
            t.config.engine.reconnect_backoff_max = millis(v)?;
            Ok(())
        }
    ),
    property!(
        "socket.connection.setup.timeout.ms",
        "how long a TCP (and TLS) connect may take",
        |t, v| {
            t.config.connect_timeout = millis(v)?.to_std();
            Ok(())
        }
    ),
    property!(
        "metadata.max.age.ms",
        "metadata refresh interval",
        |t, v| {
            t.config.engine.metadata.max_age = millis(v)?;
            Ok(())
        }
    ),
    property!(
        "auto.offset.reset",
        "earliest, latest or none: where a partition without a committed offset starts",
        |t, v| {
            t.config.engine.fetch.offset_reset = match v {
                "earliest" => OffsetResetPolicy::Earliest,
                "latest" => OffsetResetPolicy::Latest,
                "none" => OffsetResetPolicy::None,
                other => return Err(format!("`{other}` is not earliest, latest or none")),
            };
            Ok(())
        }
    ),
    property!("fetch.min.bytes", "bytes a fetch waits for", |t, v| {
        t.config.engine.fetch.min_bytes = int(v)?;
        Ok(())
    }),
    property!(
        "fetch.max.bytes",
        "bytes one fetch response may carry",
        |t, v| {
            t.config.engine.fetch.max_bytes = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "fetch.max.wait.ms",
        "longest time a fetch waits for fetch.min.bytes",
        |t, v| {
            t.config.engine.fetch.max_wait = millis(v)?;
            Ok(())
        }
    ),
    property!(
        "max.partition.fetch.bytes",
        "bytes one partition of a fetch may carry",
        |t, v| {
            t.config.engine.fetch.partition_max_bytes = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "buffered.records.per.partition",
        "unprocessed records per partition before it is left out of fetches",
        |t, v| {
            t.config.engine.max_queued_records_per_partition = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "linger.ms",
        "how long a producer batch waits for more records",
        |t, v| {
            t.config.engine.producer.linger = millis(v)?;
            Ok(())
        }
    ),
    property!(
        "batch.size",
        "producer batch bytes sent without waiting",
        |t, v| {
            t.config.engine.producer.batch_size = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "buffer.memory",
        "bound of unacknowledged produced bytes",
        |t, v| {
            t.config.engine.producer.buffer_memory = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "max.request.size",
        "bound of one Produce request (and of one record)",
        |t, v| {
            t.config.engine.producer.max_request_size = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "compression.type",
        "none, gzip, snappy, lz4 or zstd",
        |t, v| {
            use kstreams_core::client::producer::Compression;
            t.config.engine.producer.compression = match v {
                "none" => Compression::None,
                "gzip" => Compression::Gzip,
                "snappy" => Compression::Snappy,
                "lz4" => Compression::Lz4,
                "zstd" => Compression::Zstd,
                other => return Err(format!("`{other}` is not none, gzip, snappy, lz4 or zstd")),
            };
            Ok(())
        }
    ),
    property!(
        "delivery.timeout.ms",
        "bound from append to acknowledgement, retries included",
        |t, v| {
            t.config.engine.producer.delivery_timeout = millis(v)?;
            Ok(())
        }
    ),
    property!("retry.backoff.ms", "wait before a produce retry", |t, v| {
        t.config.engine.producer.retry_backoff = millis(v)?;
        Ok(())
    }),
    property!(
        "max.in.flight.requests.per.connection",
        "produce batches in flight per partition (at most 5)",
        |t, v| {
            let n: usize = positive(v)?;
            if n > 5 {
                return Err(format!("{n} is above 5, the most idempotence allows"));
            }
            t.config.engine.producer.max_in_flight_per_partition = n;
            Ok(())
        }
    ),
    property!(
        "transaction.timeout.ms",
        "transaction timeout under exactly_once_v2 (at most 10 s is used)",
        |t, v| {
            t.config.engine.producer.transaction_timeout = millis(v)?;
            Ok(())
        }
    ),
    property!(
        "replication.factor",
        "replication factor of the changelog and internal topics (-1: the broker's default)",
        |t, v| {
            let factor: i16 = v.parse().map_err(|_| format!("`{v}` is not an integer"))?;
            if factor == 0 || factor < -1 {
                return Err(format!("{factor} is not -1 or positive"));
            }
            t.config.engine.internal_topics.replication_factor = factor;
            Ok(())
        }
    ),
    property!(
        "default.deserialization.exception.handler",
        "LogAndFailExceptionHandler or LogAndContinueExceptionHandler",
        |t, v| {
            t.config.engine.deserialization_errors = error_handler(v)?;
            Ok(())
        }
    ),
    property!(
        "processing.exception.handler",
        "LogAndFailProcessingExceptionHandler or LogAndContinueProcessingExceptionHandler",
        |t, v| {
            t.config.engine.processing_errors = error_handler(v)?;
            Ok(())
        }
    ),
    property!(
        "kstreams.max.batch.records",
        "records per batch handed to processors",
        |t, v| {
            t.config.engine.max_batch_records = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "kstreams.max.queued.bytes.per.partition",
        "unprocessed bytes per partition before it is left out of fetches",
        |t, v| {
            t.config.engine.max_queued_bytes_per_partition = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "kstreams.restore.batch.bytes",
        "changelog bytes a restoring store writes per transaction",
        |t, v| {
            t.config.engine.restore_batch_bytes = positive(v)?;
            Ok(())
        }
    ),
    property!(
        "security.protocol",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
        |t, v| {
            t.security.protocol = Some(v.parse()?);
            Ok(())
        }
    ),
    property!(
        "sasl.mechanism",
        "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (librdkafka also spells it sasl.mechanisms)",
        |t, v| { t.security.set_mechanism(v) }
    ),
    property!(
        "sasl.mechanisms",
        "librdkafka's name of sasl.mechanism",
        |t, v| { t.security.set_mechanism(v) }
    ),
    property!("sasl.username", "SASL user (PLAIN, SCRAM)", |t, v| {
        t.security.username = Some(non_empty(v)?);
        Ok(())
    }),
    property!(secret "sasl.password", "SASL password (PLAIN, SCRAM)", |t, v| {
        t.security.password = Some(v.to_owned());
        Ok(())
    }),
    property!(secret "sasl.jaas.config", "the Java clients' PlainLoginModule or ScramLoginModule line with username and password", |t, v| {
        t.security.set_jaas_config(v)
    }),
    property!(
        "ssl.ca.location",
        "PEM file of the CA certificates to trust instead of the system's",
        |t, v| {
            t.security.ca_location = Some(PathBuf::from(non_empty(v)?));
            Ok(())
        }
    ),
    property!(
        "ssl.certificate.location",
        "PEM file of the client certificate (chain) for mutual TLS",
        |t, v| {
            t.security.certificate_location = Some(PathBuf::from(non_empty(v)?));
            Ok(())
        }
    ),
    property!(
        "ssl.key.location",
        "PEM file of the client certificate's private key (unencrypted)",
        |t, v| {
            t.security.key_location = Some(PathBuf::from(non_empty(v)?));
            Ok(())
        }
    ),
    property!(
        "ssl.endpoint.identification.algorithm",
        "https (the only value: broker names are always verified)",
        |t, v| {
            let _ = t;
            match v {
                "https" => Ok(()),
                _ => Err(
                    "broker name verification cannot be turned off; only `https` is accepted"
                        .into(),
                ),
            }
        }
    ),
];

fn non_empty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        Err("empty".into())
    } else {
        Ok(v.to_owned())
    }
}

fn int<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("`{v}` is not an integer in range"))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(v: &str) -> Result<T, String> {
    let n: T = int(v)?;
    if n <= T::default() {
        return Err(format!("`{v}` is not positive"));
    }
    Ok(n)
}

fn non_negative(v: &str) -> Result<i64, String> {
    let n: i64 = int(v)?;
    if n < 0 {
        return Err(format!("`{v}` is negative"));
    }
    Ok(n)
}

fn positive_millis(v: &str) -> Result<Duration, String> {
    positive::<u64>(v)?;
    millis(v)
}

fn millis(v: &str) -> Result<Duration, String> {
    let ms: u64 = int(v)?;
    // Engine durations are i64 milliseconds inside; larger values mean "forever" anyway.
    let ms = ms.min(i64::MAX as u64 / 2);
    Ok(Duration::from_millis(ms))
}

fn error_handler(v: &str) -> Result<ErrorPolicy, String> {
    // Java class names, with or without their package.
    let class = v.rsplit('.').next().unwrap_or(v);
    match class {
        "LogAndFailExceptionHandler" | "LogAndFailProcessingExceptionHandler" => {
            Ok(ErrorPolicy::Fail)
        }
        "LogAndContinueExceptionHandler" | "LogAndContinueProcessingExceptionHandler" => {
            Ok(ErrorPolicy::Skip)
        }
        other => Err(format!(
            "`{other}` is not LogAndFail…ExceptionHandler or LogAndContinue…ExceptionHandler \
             (a dead-letter topic is set in code: ErrorPolicy::DeadLetter)"
        )),
    }
}
