//! The command line of the end-to-end bench: the broker, the workload's size and the
//! contenders.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokerKind {
    Tansu,
    Mock,
    Crabka,
}

/// One contender: who processes the input, on which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contender {
    Rdkafka,
    Kstreams {
        batch: bool,
        lmdb: bool,
    },
    /// Batch mode on LMDB with the store logged to its changelog, at-least-once or
    /// exactly-once.
    KstreamsLogged {
        exactly_once: bool,
    },
}

impl Contender {
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "rdkafka" => Contender::Rdkafka,
            "record" => Contender::Kstreams {
                batch: false,
                lmdb: true,
            },
            "batch" => Contender::Kstreams {
                batch: true,
                lmdb: true,
            },
            "record-mem" => Contender::Kstreams {
                batch: false,
                lmdb: false,
            },
            "batch-mem" => Contender::Kstreams {
                batch: true,
                lmdb: false,
            },
            "batch-logged" => Contender::KstreamsLogged {
                exactly_once: false,
            },
            "batch-eos" => Contender::KstreamsLogged { exactly_once: true },
            other => return Err(format!("unknown contender `{other}`")),
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Contender::Rdkafka => "rdkafka",
            Contender::Kstreams {
                batch: false,
                lmdb: true,
            } => "record",
            Contender::Kstreams {
                batch: true,
                lmdb: true,
            } => "batch",
            Contender::Kstreams {
                batch: false,
                lmdb: false,
            } => "record-mem",
            Contender::Kstreams {
                batch: true,
                lmdb: false,
            } => "batch-mem",
            Contender::KstreamsLogged {
                exactly_once: false,
            } => "batch-logged",
            Contender::KstreamsLogged { exactly_once: true } => "batch-eos",
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            Contender::Rdkafka => "rdkafka loop (HashMap)",
            Contender::Kstreams {
                batch: false,
                lmdb: true,
            } => "kstreams record mode, LMDB",
            Contender::Kstreams {
                batch: true,
                lmdb: true,
            } => "kstreams batch mode, LMDB",
            Contender::Kstreams {
                batch: false,
                lmdb: false,
            } => "kstreams record mode, memory",
            Contender::Kstreams {
                batch: true,
                lmdb: false,
            } => "kstreams batch mode, memory",
            Contender::KstreamsLogged {
                exactly_once: false,
            } => "kstreams batch mode, LMDB, logged",
            Contender::KstreamsLogged { exactly_once: true } => {
                "kstreams batch mode, LMDB, logged, exactly-once"
            }
        }
    }

    /// Whether this contender's output and offsets are transactional: its output is read with
    /// `isolation.level=read_committed`, and it needs a broker with transactions.
    pub(crate) fn exactly_once(self) -> bool {
        matches!(self, Contender::KstreamsLogged { exactly_once: true })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) broker: BrokerKind,
    pub(crate) records: usize,
    pub(crate) keys: usize,
    pub(crate) repeat: usize,
    pub(crate) commit_ms: u64,
    pub(crate) linger_ms: u64,
    pub(crate) fetch_wait_ms: i32,
    pub(crate) contenders: Vec<Contender>,
}

const USAGE: &str = "usage: end_to_end [--broker tansu|mock|crabka] [--records N] [--keys K] \
[--repeat R] [--commit-ms MS] [--linger-ms MS] [--fetch-wait-ms MS] \
[--contenders rdkafka,record,batch,record-mem,batch-mem,batch-logged,batch-eos]";

impl Options {
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut options = Options {
            broker: BrokerKind::Tansu,
            records: 1_000_000,
            keys: 10_000,
            repeat: 3,
            commit_ms: 1_000,
            linger_ms: 5,
            // Both clients' default (`fetch.max.wait.ms`, `fetch.wait.max.ms`).
            fetch_wait_ms: 500,
            contenders: ["rdkafka", "record", "batch", "record-mem", "batch-mem"]
                .into_iter()
                .map(Contender::parse)
                .collect::<Result<_, _>>()?,
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            // `cargo bench` passes `--bench` to every bench binary.
            if flag == "--bench" {
                continue;
            }
            let value = args
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = |v: &str| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{flag}: `{v}` is not a positive number"))
            };
            match flag.as_str() {
                "--broker" => {
                    options.broker = match value.as_str() {
                        "tansu" => BrokerKind::Tansu,
                        "mock" => BrokerKind::Mock,
                        "crabka" => BrokerKind::Crabka,
                        other => {
                            return Err(format!(
                                "--broker: `{other}` is not tansu, mock or crabka"
                            ));
                        }
                    }
                }
                "--records" => options.records = number(&value)?,
                "--keys" => options.keys = number(&value)?,
                "--repeat" => options.repeat = number(&value)?,
                "--commit-ms" => options.commit_ms = number(&value)? as u64,
                "--linger-ms" => options.linger_ms = value.parse().map_err(|_| "--linger-ms")?,
                "--fetch-wait-ms" => {
                    options.fetch_wait_ms = value.parse().map_err(|_| "--fetch-wait-ms")?
                }
                "--contenders" => {
                    options.contenders = value
                        .split(',')
                        .map(Contender::parse)
                        .collect::<Result<_, _>>()?
                }
                _ => return Err(format!("unknown argument `{flag}`\n{USAGE}")),
            }
        }
        if options.broker == BrokerKind::Tansu
            && let Some(c) = options.contenders.iter().find(|c| c.exactly_once())
        {
            return Err(format!(
                "contender `{}` needs a broker with transactions (Tansu 0.6.0 has none): \
                 add --broker crabka",
                c.name()
            ));
        }
        // librdkafka's mock cluster keeps at most 5 MiB of record batches per partition
        // (`rdkafka_mock.c`, `rd_kafka_mock_partition_init`: `max_size`, not configurable) and
        // deletes the oldest beyond that, so a larger input loses its head before any
        // contender reads it (at 1M records 322,145 survived).
        let input_per_partition = options.records / crate::PARTITIONS as usize
            * (crate::VALUE_BYTES + MOCK_RECORD_OVERHEAD_BYTES);
        if options.broker == BrokerKind::Mock && input_per_partition > MOCK_PARTITION_RETENTION {
            return Err(format!(
                "--broker mock keeps only the last 5 MiB of each partition (librdkafka's mock \
                 cluster deletes older batches): {} records are ~{} KiB per partition; use at \
                 most {} records, or --broker crabka",
                options.records,
                input_per_partition / 1024,
                MOCK_PARTITION_RETENTION / (crate::VALUE_BYTES + MOCK_RECORD_OVERHEAD_BYTES)
                    * crate::PARTITIONS as usize
            ));
        }
        Ok(options)
    }
}

/// What librdkafka's mock cluster retains per partition (`max_size` in `rdkafka_mock.c`).
const MOCK_PARTITION_RETENTION: usize = 5 * 1024 * 1024;
/// A 16-byte key, the record's varint fields and its share of the batch header, rounded up.
const MOCK_RECORD_OVERHEAD_BYTES: usize = 32;
