use std::io::Write;
use std::time::Duration as StdDuration;

use kstreams_core::client::fetcher::OffsetResetPolicy;
use kstreams_core::client::producer::Compression;
use kstreams_core::task::ErrorPolicy;

use super::*;

fn base() -> Vec<(&'static str, &'static str)> {
    vec![
        ("application.id", "app"),
        ("bootstrap.servers", "k1:9092, k2:9093"),
    ]
}

fn with(extra: &[(&'static str, &'static str)]) -> Result<StreamsConfig, PropertiesError> {
    let mut props = base();
    props.extend_from_slice(extra);
    StreamsConfig::from_properties(props)
}

#[test]
fn the_required_properties_give_kafka_streams_defaults() {
    let config = with(&[]).unwrap();
    let defaults = StreamsConfig::new("app", ["k1:9092", "k2:9093"]);
    assert_eq!(
        config.engine.bootstrap_servers,
        defaults.engine.bootstrap_servers
    );
    assert_eq!(config.engine.client_id, "app-kstreams");
    assert_eq!(
        config.engine.commit_interval,
        defaults.engine.commit_interval
    );
    assert_eq!(config.num_stream_threads, 1);
    assert_eq!(
        StreamsConfig::from_properties([("bootstrap.servers", "k:1")]).unwrap_err(),
        PropertiesError::Missing {
            property: "application.id"
        }
    );
    assert_eq!(
        StreamsConfig::from_properties([("application.id", "a")]).unwrap_err(),
        PropertiesError::Missing {
            property: "bootstrap.servers"
        }
    );
}

/// What a property must have set.
type Check = fn(&StreamsConfig) -> bool;

/// One value for every property of [`PROPERTIES`] but the security ones (tested below), and
/// what it must set.
#[test]
fn every_supported_property_sets_its_field() {
    let checks: Vec<(&str, &str, Check)> = vec![
        ("application.id", "other", |c| {
            c.engine.application_id == "other"
        }),
        ("bootstrap.servers", "a:1,b:2", |c| {
            c.engine.bootstrap_servers == ["a:1", "b:2"]
        }),
        ("client.id", "me", |c| c.engine.client_id == "me"),
        ("num.stream.threads", "3", |c| c.num_stream_threads == 3),
        ("num.standby.replicas", "2", |c| {
            c.engine.num_standby_replicas == 2
        }),
        ("acceptable.recovery.lag", "500", |c| {
            c.engine.acceptable_recovery_lag == 500
        }),
        ("max.warmup.replicas", "4", |c| {
            c.engine.max_warmup_replicas == 4
        }),
        ("probing.rebalance.interval.ms", "60000", |c| {
            c.engine.probing_rebalance_interval == Duration::from_millis(60_000)
        }),
        ("state.dir", "/var/state", |c| {
            c.state_dir == Path::new("/var/state")
        }),
        ("processing.guarantee", "exactly_once_v2", |c| {
            c.engine.processing_guarantee == ProcessingGuarantee::ExactlyOnce
        }),
        ("commit.interval.ms", "100", |c| {
            c.engine.commit_interval == Duration::from_millis(100)
        }),
        ("session.timeout.ms", "10000", |c| {
            c.engine.session_timeout == Duration::from_millis(10_000)
        }),
        ("group.instance.id", "instance-a", |c| {
            c.engine.group_instance_id.as_deref() == Some("instance-a")
        }),
        ("heartbeat.interval.ms", "500", |c| {
            c.engine.heartbeat_interval == Duration::from_millis(500)
        }),
        ("max.poll.interval.ms", "60000", |c| {
            c.engine.rebalance_timeout == Duration::from_millis(60_000)
        }),
        ("request.timeout.ms", "5000", |c| {
            c.engine.request_timeout == Duration::from_millis(5_000)
        }),
        ("max.block.ms", "7000", |c| {
            c.engine.max_block == Duration::from_millis(7_000)
        }),
        ("reconnect.backoff.ms", "20", |c| {
            c.engine.reconnect_backoff == Duration::from_millis(20)
        }),
        ("reconnect.backoff.max.ms", "2000", |c| {
            c.engine.reconnect_backoff_max == Duration::from_millis(2_000)
        }),
        ("socket.connection.setup.timeout.ms", "3000", |c| {
            c.connect_timeout == StdDuration::from_secs(3)
        }),
        ("metadata.max.age.ms", "60000", |c| {
            c.engine.metadata.max_age == Duration::from_millis(60_000)
        }),
        ("auto.offset.reset", "latest", |c| {
            c.engine.fetch.offset_reset == OffsetResetPolicy::Latest
        }),
        ("fetch.min.bytes", "10", |c| c.engine.fetch.min_bytes == 10),
        ("fetch.max.bytes", "1000000", |c| {
            c.engine.fetch.max_bytes == 1_000_000
        }),
        ("fetch.max.wait.ms", "50", |c| {
            c.engine.fetch.max_wait == Duration::from_millis(50)
        }),
        ("max.partition.fetch.bytes", "65536", |c| {
            c.engine.fetch.partition_max_bytes == 65_536
        }),
        ("buffered.records.per.partition", "1000", |c| {
            c.engine.max_queued_records_per_partition == 1_000
        }),
        ("linger.ms", "5", |c| {
            c.engine.producer.linger == Duration::from_millis(5)
        }),
        ("batch.size", "32768", |c| {
            c.engine.producer.batch_size == 32_768
        }),
        ("buffer.memory", "1048576", |c| {
            c.engine.producer.buffer_memory == 1_048_576
        }),
        ("max.request.size", "2000000", |c| {
            c.engine.producer.max_request_size == 2_000_000
        }),
        ("compression.type", "zstd", |c| {
            c.engine.producer.compression == Compression::Zstd
        }),
        ("delivery.timeout.ms", "90000", |c| {
            c.engine.producer.delivery_timeout == Duration::from_millis(90_000)
        }),
        ("retry.backoff.ms", "250", |c| {
            c.engine.producer.retry_backoff == Duration::from_millis(250)
        }),
        ("max.in.flight.requests.per.connection", "2", |c| {
            c.engine.producer.max_in_flight_per_partition == 2
        }),
        ("transaction.timeout.ms", "8000", |c| {
            c.engine.producer.transaction_timeout == Duration::from_millis(8_000)
        }),
        ("replication.factor", "3", |c| {
            c.engine.internal_topics.replication_factor == 3
        }),
        (
            "default.deserialization.exception.handler",
            "org.apache.kafka.streams.errors.LogAndContinueExceptionHandler",
            |c| c.engine.deserialization_errors == ErrorPolicy::Skip,
        ),
        (
            "processing.exception.handler",
            "LogAndContinueProcessingExceptionHandler",
            |c| c.engine.processing_errors == ErrorPolicy::Skip,
        ),
        ("kstreams.max.batch.records", "64", |c| {
            c.engine.max_batch_records == 64
        }),
        ("kstreams.max.queued.bytes.per.partition", "4096", |c| {
            c.engine.max_queued_bytes_per_partition == 4_096
        }),
        ("kstreams.restore.batch.bytes", "1024", |c| {
            c.engine.restore_batch_bytes == 1_024
        }),
        ("ssl.endpoint.identification.algorithm", "https", |_| true),
    ];
    let security = [
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "sasl.jaas.config",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
    ];
    for property in PROPERTIES {
        assert!(
            security.contains(&property.name) || checks.iter().any(|(n, _, _)| *n == property.name),
            "no check for {}",
            property.name
        );
    }
    for (name, value, check) in checks {
        let mut props = base();
        props.retain(|(k, _)| *k != name);
        props.push((name, value));
        let config =
            StreamsConfig::from_properties(props).unwrap_or_else(|e| panic!("{name}={value}: {e}"));
        assert!(check(&config), "{name}={value} did not set its field");
        assert!(
            PROPERTIES.iter().any(|p| p.name == name),
            "{name} is not in PROPERTIES"
        );
    }
}

#[test]
fn unknown_properties_are_errors_naming_them() {
    assert_eq!(
        with(&[("commit.intervall.ms", "100")]).unwrap_err(),
        PropertiesError::Unknown {
            property: "commit.intervall.ms".into(),
            line: None
        }
    );
}

#[test]
fn invalid_values_are_errors_naming_the_property() {
    for (name, value) in [
        ("commit.interval.ms", "soon"),
        ("commit.interval.ms", "-5"),
        ("num.stream.threads", "0"),
        ("num.standby.replicas", "-1"),
        ("acceptable.recovery.lag", "-1"),
        ("max.warmup.replicas", "0"),
        ("probing.rebalance.interval.ms", "0"),
        ("processing.guarantee", "exactly_once"),
        ("processing.guarantee", "sometimes"),
        ("auto.offset.reset", "smallest"),
        ("compression.type", "brotli"),
        ("max.in.flight.requests.per.connection", "6"),
        ("replication.factor", "0"),
        ("default.deserialization.exception.handler", "MyHandler"),
        ("ssl.endpoint.identification.algorithm", "none"),
        ("security.protocol", "TLS"),
        ("sasl.mechanism", "GSSAPI"),
        ("sasl.mechanism", "OAUTHBEARER"),
        ("bootstrap.servers", " , "),
    ] {
        match with(&[(name, value)]) {
            Err(PropertiesError::Invalid {
                property,
                line: None,
                ..
            }) => {
                assert_eq!(property, name, "{name}={value}")
            }
            other => panic!("{name}={value}: {other:?}"),
        }
    }
}

#[test]
fn sasl_settings_must_be_complete_and_match_the_protocol() {
    let invalid = |extra: &[(&'static str, &'static str)]| match with(extra) {
        Err(PropertiesError::Invalid { property, .. }) => property,
        other => panic!("{extra:?}: {other:?}"),
    };
    assert_eq!(
        invalid(&[("security.protocol", "SASL_SSL")]),
        "sasl.mechanism"
    );
    assert_eq!(
        invalid(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN")
        ]),
        "sasl.username"
    );
    assert_eq!(
        invalid(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "alice")
        ]),
        "sasl.password"
    );
    assert_eq!(invalid(&[("sasl.username", "alice")]), "sasl.username");
    assert_eq!(
        invalid(&[("ssl.ca.location", "/ca.pem")]),
        "ssl.ca.location"
    );
    assert_eq!(
        invalid(&[
            ("security.protocol", "SSL"),
            ("ssl.certificate.location", "/c.pem")
        ]),
        "ssl.key.location"
    );
    assert_eq!(
        invalid(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="a" password="b";"#
            )
        ]),
        "sasl.jaas.config"
    );
}

#[test]
fn secret_values_never_appear_in_errors() {
    let secret = "hunter2-secret";
    let jaas = format!(r#"ScramLoginModule required username="a" password="{secret}" extra="x";"#);
    let errors = [
        with(&[("sasl.jaas.config", Box::leak(jaas.into_boxed_str()))]).unwrap_err(),
        // A password with a space or a stray quote splits into "options": their text must
        // not be shown either.
        with(&[(
            "sasl.jaas.config",
            r#"ScramLoginModule required username="a" password=hunter2 secret;"#,
        )])
        .unwrap_err(),
        with(&[(
            "sasl.jaas.config",
            r#"ScramLoginModule required username="a" password="hunter2"secret";"#,
        )])
        .unwrap_err(),
        with(&[("sasl.jaas.config", "hunter2-secret")]).unwrap_err(),
        with(&[("sasl.password", "hunter2-secret")]).unwrap_err(),
    ];
    for error in errors {
        let shown = format!("{error} {error:?}");
        assert!(
            !shown.contains(secret) && !shown.contains("secret"),
            "{shown}"
        );
    }
}

#[test]
fn a_properties_file_reads_with_comments_continuations_and_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.properties");
    let mut file = std::fs::File::create(&path).unwrap();
    write!(
        file,
        "# kstreams\n\
         application.id = word-count\n\
         ! another comment\n\
         bootstrap.servers: k1:9092,\\\n    k2:9092\n\
         commit.interval.ms=250\n\
         client.id=caf\\u00e9-é\n"
    )
    .unwrap();
    let config = StreamsConfig::from_properties_file(&path).unwrap();
    assert_eq!(config.engine.application_id, "word-count");
    assert_eq!(config.engine.bootstrap_servers, ["k1:9092", "k2:9092"]);
    assert_eq!(config.engine.commit_interval, Duration::from_millis(250));
    assert_eq!(config.engine.client_id, "café-é");

    std::fs::write(
        &path,
        "application.id=a\nbootstrap.servers=b:1\n\nnum.stream.thread=2\n",
    )
    .unwrap();
    assert_eq!(
        StreamsConfig::from_properties_file(&path).unwrap_err(),
        PropertiesError::Unknown {
            property: "num.stream.thread".into(),
            line: Some(4)
        }
    );
    std::fs::write(
        &path,
        "application.id=a\nbootstrap.servers=b:1\nlinger.ms=x\n",
    )
    .unwrap();
    let error = StreamsConfig::from_properties_file(&path).unwrap_err();
    assert!(
        matches!(&error, PropertiesError::Invalid { line: Some(3), .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("`linger.ms` (line 3)"),
        "{error}"
    );
    std::fs::write(
        &path,
        "application.id=a\nbootstrap.servers=b:1\napplication.id=c\n",
    )
    .unwrap();
    assert_eq!(
        StreamsConfig::from_properties_file(&path).unwrap_err(),
        PropertiesError::Duplicate {
            property: "application.id".into(),
            first: 1,
            second: 3
        }
    );
    let missing = dir.path().join("missing.properties");
    assert!(matches!(
        StreamsConfig::from_properties_file(&missing),
        Err(PropertiesError::Read { .. })
    ));
}

#[test]
fn ssl_properties_become_the_tls_settings() {
    assert!(with(&[]).unwrap().tls.is_none());
    let config = with(&[("security.protocol", "SSL")]).unwrap();
    assert!(config.tls.is_some(), "SSL uses TLS with the system roots");
    let config = with(&[
        ("security.protocol", "ssl"),
        ("ssl.ca.location", "/etc/kafka/ca.pem"),
        ("ssl.certificate.location", "/etc/kafka/client.pem"),
        ("ssl.key.location", "/etc/kafka/client.key"),
    ])
    .unwrap();
    let shown = format!("{:?}", config.tls.expect("TLS settings"));
    for file in [
        "/etc/kafka/ca.pem",
        "/etc/kafka/client.pem",
        "/etc/kafka/client.key",
    ] {
        assert!(shown.contains(file), "{file} missing from {shown}");
    }
}

#[test]
fn sasl_properties_become_the_sasl_settings() {
    use kstreams_core::sasl::SaslMechanism;
    assert!(with(&[]).unwrap().engine.sasl.is_none());
    let config = with(&[
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "alice"),
        ("sasl.password", "hunter2"),
    ])
    .unwrap();
    let sasl = config.engine.sasl.as_ref().expect("SASL settings");
    assert_eq!(sasl.mechanism(), SaslMechanism::ScramSha512);
    assert_eq!(sasl.username(), Some("alice"));
    assert!(config.tls.is_some(), "SASL_SSL also uses TLS");
    assert!(
        !format!("{config:?}").contains("hunter2"),
        "the password leaked into Debug"
    );

    let config = with(&[
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", "PLAIN"),
        (
            "sasl.jaas.config",
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="bob" password="pw";"#,
        ),
    ])
    .unwrap();
    let sasl = config.engine.sasl.as_ref().expect("SASL settings");
    assert_eq!(sasl.mechanism(), SaslMechanism::Plain);
    assert_eq!(sasl.username(), Some("bob"));
    assert!(config.tls.is_none());
    let config = with(&[
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", "carol"),
        ("sasl.password", "pw"),
    ])
    .unwrap();
    assert_eq!(
        config.engine.sasl.unwrap().mechanism(),
        SaslMechanism::ScramSha256
    );
}

#[test]
fn exactly_once_commits_every_100_ms_unless_told_otherwise() {
    let eos = with(&[("processing.guarantee", "exactly_once_v2")]).unwrap();
    assert_eq!(eos.engine.commit_interval, Duration::from_millis(100));
    let set = with(&[
        ("processing.guarantee", "exactly_once_v2"),
        ("commit.interval.ms", "1000"),
    ])
    .unwrap();
    assert_eq!(set.engine.commit_interval, Duration::from_millis(1_000));
    assert_eq!(
        with(&[]).unwrap().engine.commit_interval,
        Duration::from_secs(30)
    );
}
