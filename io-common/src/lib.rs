//! # kstreams-io-common
//!
//! The runtime-independent half of the kstreams adapters (`kstreams-tokio`, `kstreams-smol`):
//!
//! - [`KafkaStreams`] / [`StreamsHandle`]: the application API, shaped like Kafka Streams'
//!   `KafkaStreams` (`new(topology, config, stores)`, `start`, `run`, `close`, `state`, a state
//!   listener, `local_thread_metadata`; also an event listener for the engines' events:
//!   assignments, commits, warnings), generic over a [`Runtime`]; each adapter names it
//!   for its runtime (`kstreams_tokio::KafkaStreams`, `kstreams_smol::KafkaStreams`).
//! - [`StreamsConfig`] and [`Stores`] (memory, LMDB under `<state_dir>/<application_id>/`,
//!   or any store factory).
//! - [`StreamsState`] and [`aggregate`]: the application state from its engines' states.
//! - [`metrics`]: each stream thread's metrics (records, batches, latencies,
//!   commits, lag, restores, rebalances, produce errors and retries) as a snapshot
//!   ([`StreamsHandle::metrics`]) and through the `metrics` facade for any exporter.
//! - [`Clock`]: the one place time is read (`SystemTime` ms, never decreasing; also the
//!   nanoseconds that seed each engine's reconnect jitter).
//! - [`TlsConfig`]: TLS to the brokers with rustls (ring provider): system roots or a CA file,
//!   client certificates, server-name verification against the broker's advertised host;
//!   [`TlsConfigError`] when its files are unusable, [`StreamsError::Tls`] with a
//!   [`TlsErrorKind`] when a handshake fails (which stops the instance).
//! - The connection task (private), written once for every runtime: connect within
//!   [`StreamsConfig::connect_timeout`], `TCP_NODELAY`, the TLS handshake when configured
//!   (`futures-rustls` over the adapter's socket), a read loop forwarding chunks to the
//!   stream thread's loop through a bounded channel, a write loop writing whole frames.
//! - The loop of one stream thread (private): engine outputs to connection tasks and
//!   back, timers from `Engine::poll_timeout`. It holds no protocol logic: connects,
//!   reconnect backoff, request timeouts and shutdown are all the engine's decisions.
//!
//! An adapter provides only [`Runtime`]: a thread-local executor, a TCP connect, a sleep and
//! its stream types ([`TcpSocket`], [`SplitStream`], [`ReadHalf`], [`WriteHalf`]); for TLS,
//! its TCP stream as a futures-io stream ([`TcpSocket::into_io`]).
//!
//! ## Module layering
//!
//! Modules import each other in one direction only (no cycles); each imports only modules
//! listed before it:
//!
//! 1. leaves: `tls` ([`TlsConfig`] and its errors, the classification of rustls errors), `runtime` (the [`Runtime`] and stream traits), `clock`,
//!    `state` ([`StreamsState`], [`aggregate`], [`ThreadMetadata`]), [`metrics`] (the stream
//!    threads' metrics: snapshot, rates, the `metrics` facade); `message` (what a stream
//!    thread's loop receives: connection reports, close commands) → `tls`; `config` → `tls`;
//!    `process_id` (the transactional ids' stable part) → `clock`; `security`
//!    (`security.protocol`, `sasl.*`, `ssl.*` checked together) → `config`, `tls`;
//!    `properties` ([`StreamsConfig::from_properties`], [`PROPERTIES`]) → `config`,
//!    `security`;
//! 2. `error` ([`StreamsError`]) → `state`, `tls`;
//! 3. `status` (what stream threads report into and handles read) → `error`, `message`,
//!    `metrics`, `state`;
//! 4. `connection` (the connection task, its TLS handshake and the plaintext-listener probe)
//!    → `message`, `runtime`, `tls`;
//! 5. `driver` (the stream thread's loop) → `connection`, `status`, `message`, `metrics`,
//!    `runtime`, `clock`, `config`, `error`, `tls`;
//! 6. `streams` ([`KafkaStreams`], [`StreamsHandle`]) → everything above.
//!
//! ## Decisions
//! - **One OS thread per stream thread** (see [`KafkaStreams`]): processing and LMDB
//!   transactions run on the engine's own thread, never on the application's executor.
//! - **Reconnect jitter lives in the engine**: the engine owns the reconnect schedule (it
//!   emits `Connect` again when its jittered backoff expires, 80–100 % of the exponential
//!   backoff). Delaying a `Connect` in the adapter would make the engine's idea of
//!   "connecting since" wrong. The adapter only supplies the entropy: each stream thread's
//!   engine gets `EngineConfig::random_seed` from the wall clock's nanoseconds, the process id
//!   and its thread index (any seed set in [`StreamsConfig`]'s engine config is replaced).
//! - **Broker address mapping** ([`StreamsConfig::map_broker_address`]) is a static
//!   `host:port → host:port` map applied to every `Connect` (bootstrap and advertised
//!   brokers): a declarative "DNS" that is enough for NAT, port forwards and test clusters on
//!   ephemeral ports.
//! - **Connect timeout** ([`StreamsConfig::connect_timeout`], 10 s like Kafka's
//!   `socket.connection.setup.timeout.ms`): a TCP connect that hangs counts as failed
//!   (`handle_disconnected`), so the engine's backoff takes over.
//! - One failed engine closes the others (Kafka Streams' default `SHUTDOWN_CLIENT`); the
//!   instance ends in [`StreamsState::Error`].
//! - **A TLS failure caused by the configuration is fatal** (an untrusted, misnamed or expired
//!   certificate, a refused client certificate, a plaintext listener, no common protocol
//!   version or cipher suite): it does not heal by reconnecting, so the stream thread's loop
//!   stops its engine at once and the instance ends in [`StreamsState::Error`] with
//!   [`StreamsError::Tls`], instead of reconnecting forever. Other TLS failures (an
//!   `internal_error` alert, a decrypt error, a handshake closed by a listener that does not
//!   answer plaintext Kafka either) are disconnects, retried on the engine's backoff. The
//!   core knows nothing of TLS (docs/decisions.md §14).

mod clock;
mod config;
mod connection;
mod driver;
mod error;
mod message;
pub mod metrics;
mod process_id;
mod properties;
mod runtime;
mod security;
mod state;
mod status;
mod streams;
mod tls;

pub use self::metrics::{MetricsSnapshot, ThreadMetrics};
pub use clock::Clock;
pub use config::{Stores, StreamsConfig};
pub use error::StreamsError;
pub use properties::{PROPERTIES, PropertiesError, Property, read_properties_file};
pub use runtime::{ReadHalf, Runtime, SplitStream, TcpSocket, WriteHalf};
pub use security::SecurityProtocol;
pub use state::{
    EventListener, StandbyUpdateListener, StateListener, StateRestoreListener, StreamsState,
    ThreadMetadata, ThreadState, aggregate,
};
pub use streams::{KafkaStreams, StreamsHandle};
pub use tls::{PemSource, TlsConfig, TlsConfigError, TlsErrorKind};
