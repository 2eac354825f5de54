//! [`StreamsConfig`] and [`Stores`]: what a `KafkaStreams` instance needs besides its topology.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kstreams_core::engine::EngineConfig;
use kstreams_store_api::StoreFactory;

use crate::tls::TlsConfig;

/// Settings of a `KafkaStreams` instance: the engine's settings (shared by every stream
/// thread) plus what only the process-level wrapper knows.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Settings of each engine. Each stream thread's engine gets a copy whose `client_id` is
    /// `<client_id>-StreamThread-<n>` (n from 1), as Kafka Streams names its threads.
    pub engine: EngineConfig,
    /// Stream threads (engines) in this process (`num.stream.threads`), at least 1.
    pub num_stream_threads: usize,
    /// Root of the local state (`state.dir`); LMDB stores live under
    /// `<state_dir>/<application_id>/`.
    pub state_dir: PathBuf,
    /// How long opening a TCP connection (with TLS: and its handshake) may take before it
    /// counts as failed (`socket.connection.setup.timeout.ms`, 10 s by default).
    pub connect_timeout: Duration,
    /// Addresses to dial instead of the ones the cluster advertises: `"host:port"` as
    /// advertised (or as given in `bootstrap_servers`) → `"host:port"` to connect to. See
    /// [`StreamsConfig::map_broker_address`].
    pub broker_address_map: BTreeMap<String, String>,
    /// TLS to every broker (Kafka's `security.protocol=SSL`), or `None` for plaintext (the
    /// default). See [`TlsConfig`]: the broker's certificate must be valid for the broker's
    /// host as the engine names it (before [`StreamsConfig::broker_address_map`]). A TLS
    /// failure with a broker caused by the configuration (of either side, or a plaintext
    /// listener) stops the instance with `StreamsError::Tls`; see [`TlsConfig`].
    pub tls: Option<TlsConfig>,
}

impl StreamsConfig {
    /// Kafka Streams' defaults: one stream thread, state under the system temp directory
    /// (`<tmp>/kstreams`), a 10 s connect timeout, no address mapping, plaintext.
    pub fn new(
        application_id: impl Into<String>,
        bootstrap_servers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self::from_engine_config(EngineConfig::new(application_id, bootstrap_servers))
    }

    /// The defaults above around an existing engine configuration.
    pub fn from_engine_config(engine: EngineConfig) -> Self {
        Self {
            engine,
            num_stream_threads: 1,
            state_dir: std::env::temp_dir().join("kstreams"),
            connect_timeout: Duration::from_secs(10),
            broker_address_map: BTreeMap::new(),
            tls: None,
        }
    }

    /// Connects to the brokers over TLS with `tls` ([`StreamsConfig::tls`]).
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Keeps `replicas` standby copies of each stateful task's stores on other instances
    /// (`num.standby.replicas`; see `EngineConfig::num_standby_replicas`), so a failover
    /// restores only the changelog's tail.
    pub fn with_num_standby_replicas(mut self, replicas: usize) -> Self {
        self.engine.num_standby_replicas = replicas;
        self
    }

    /// How many changelog records behind the most caught-up copy a task's state may be and
    /// still count as caught up (`acceptable.recovery.lag`; see
    /// `EngineConfig::acceptable_recovery_lag`).
    pub fn with_acceptable_recovery_lag(mut self, records: i64) -> Self {
        self.engine.acceptable_recovery_lag = records;
        self
    }

    /// Most warm-up replicas in the group at a time (`max.warmup.replicas`; see
    /// `EngineConfig::max_warmup_replicas`).
    pub fn with_max_warmup_replicas(mut self, replicas: usize) -> Self {
        self.engine.max_warmup_replicas = replicas;
        self
    }

    /// How long after an assignment with warm-ups the group rebalances to move the tasks
    /// whose warm-ups caught up (`probing.rebalance.interval.ms`; see
    /// `EngineConfig::probing_rebalance_interval`).
    pub fn with_probing_rebalance_interval(mut self, interval: Duration) -> Self {
        self.engine.probing_rebalance_interval = interval.into();
        self
    }

    /// Dial `dial` (`host:port`) whenever the engine asks for `advertised` (`host:port`, as a
    /// broker advertises itself in Metadata or as written in `bootstrap_servers`).
    ///
    /// This is a static "DNS" for brokers that advertise names the client cannot reach (a
    /// broker behind NAT or a port forward, a test cluster on ephemeral loopback ports). It
    /// lives in the adapter because it is about reaching sockets, not about the protocol: the
    /// engine keeps using the advertised identity.
    pub fn map_broker_address(
        mut self,
        advertised: impl Into<String>,
        dial: impl Into<String>,
    ) -> Self {
        self.broker_address_map
            .insert(advertised.into(), dial.into());
        self
    }

    /// The application id (the consumer group id).
    pub fn application_id(&self) -> &str {
        &self.engine.application_id
    }

    /// Where the LMDB environment of this application lives: `<state_dir>/<application_id>`.
    pub fn app_state_dir(&self) -> PathBuf {
        self.state_dir.join(&self.engine.application_id)
    }

    /// Checks what the engines cannot check themselves.
    pub(crate) fn validate(&self) -> Result<AddressMap, String> {
        if self.num_stream_threads == 0 {
            return Err("num_stream_threads must be at least 1".into());
        }
        AddressMap::parse(&self.broker_address_map)
    }
}

/// Where the stream threads' state stores live.
#[derive(Clone, Default)]
pub enum Stores {
    /// In memory (lost when the process stops).
    #[default]
    Memory,
    /// One LMDB environment in `<state_dir>/<application_id>/`, shared by every stream
    /// thread (LMDB allows one environment per directory and process).
    Lmdb,
    /// Any other store factory, shared by every stream thread.
    Custom(Arc<dyn StoreFactory>),
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Lmdb => f.write_str("Lmdb"),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// [`StreamsConfig::broker_address_map`], parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddressMap(BTreeMap<String, (String, u16)>);

impl AddressMap {
    fn parse(map: &BTreeMap<String, String>) -> Result<Self, String> {
        map.iter()
            .map(|(from, to)| {
                let target = split_host_port(to)
                    .ok_or_else(|| format!("broker address map: `{to}` is not host:port"))?;
                Ok((from.clone(), target))
            })
            .collect::<Result<_, String>>()
            .map(Self)
    }

    /// The address to dial for the engine's `host:port`.
    pub(crate) fn resolve(&self, host: &str, port: i32) -> Result<(String, u16), String> {
        if let Some(target) = self.0.get(&format!("{host}:{port}")) {
            return Ok(target.clone());
        }
        let port = u16::try_from(port).map_err(|_| format!("invalid port {port} for {host}"))?;
        Ok((host.to_owned(), port))
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(())?;
    Some((host.to_owned(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_replace_advertised_ones_and_others_pass_through() {
        let config = StreamsConfig::new("app", ["sim-0:9092"])
            .map_broker_address("sim-0:9092", "127.0.0.1:40001")
            .map_broker_address("sim-1:9093", "[::1]:40002");
        let map = config.validate().unwrap();
        assert_eq!(
            map.resolve("sim-0", 9092).unwrap(),
            ("127.0.0.1".into(), 40001)
        );
        assert_eq!(map.resolve("sim-1", 9093).unwrap(), ("::1".into(), 40002));
        assert_eq!(map.resolve("kafka", 9092).unwrap(), ("kafka".into(), 9092));
        assert!(map.resolve("kafka", 70_000).is_err());
    }

    #[test]
    fn invalid_settings_are_refused() {
        let bad = StreamsConfig::new("app", ["a:1"]).map_broker_address("a:1", "nope");
        assert!(bad.validate().is_err());
        let mut zero = StreamsConfig::new("app", ["a:1"]);
        zero.num_stream_threads = 0;
        assert!(zero.validate().is_err());
    }

    #[test]
    fn the_standby_builders_set_the_engine_settings() {
        let config = StreamsConfig::new("app", ["a:1"])
            .with_num_standby_replicas(2)
            .with_acceptable_recovery_lag(500)
            .with_max_warmup_replicas(4)
            .with_probing_rebalance_interval(Duration::from_secs(90));
        assert_eq!(config.engine.num_standby_replicas, 2);
        assert_eq!(config.engine.acceptable_recovery_lag, 500);
        assert_eq!(config.engine.max_warmup_replicas, 4);
        assert_eq!(
            config.engine.probing_rebalance_interval,
            kstreams_core::time::Duration::from_secs(90)
        );
    }

    #[test]
    fn lmdb_lives_under_the_application_id() {
        let mut config = StreamsConfig::new("my-app", ["a:1"]);
        config.state_dir = PathBuf::from("/var/lib/kstreams");
        assert_eq!(
            config.app_state_dir(),
            PathBuf::from("/var/lib/kstreams/my-app")
        );
    }
}
