//! [`StreamsError`]: why a `KafkaStreams` instance could not start or stopped.

use std::sync::Arc;

use kstreams_core::engine::EngineError;
use kstreams_store_api::StoreError;

use crate::state::StreamsState;
use crate::tls::{TlsConfigError, TlsErrorKind};

/// Why an application could not start or stopped.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The TLS configuration cannot be used (a file is missing or holds no usable
    /// certificate or key; found by `KafkaStreams::new`).
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] TlsConfigError),
    /// TLS with a broker failed because of the configuration: its certificate is not trusted,
    /// not valid for its name, expired or not valid yet, it refused the client certificate,
    /// the two sides share no protocol version or cipher suite, or it does not speak TLS. A
    /// problem that reconnecting does not heal, so the stream thread stopped at once (without
    /// a clean close) and the instance with it. (TLS failures the configuration does not
    /// cause are disconnects, retried; see [`TlsErrorKind`].)
    #[error("{thread}: TLS with broker {broker} failed: {kind}: {detail}")]
    Tls {
        /// The stream thread.
        thread: String,
        /// The broker, `host:port` as the engine named it (bootstrap or advertised, before
        /// the broker address map); its host is the name its certificate must carry.
        broker: String,
        /// Why, as a kind to match on.
        kind: TlsErrorKind,
        /// Why, in rustls' words.
        detail: String,
    },
    /// The state stores could not be opened.
    #[error("state stores: {0}")]
    Store(Arc<StoreError>),
    /// An engine failed (or refused its configuration).
    #[error("{thread}: {error}")]
    Engine {
        /// The stream thread.
        thread: String,
        /// Why.
        error: Arc<EngineError>,
    },
    /// A stream thread or its executor could not be started.
    #[error("{thread}: cannot start: {error}")]
    Spawn {
        /// The stream thread.
        thread: String,
        /// Why.
        error: Arc<std::io::Error>,
    },
    /// A stream thread panicked (in user code or in kstreams).
    #[error("{thread} panicked")]
    Panicked {
        /// The stream thread.
        thread: String,
    },
    /// `start`/`run` on an instance that is not `Created`.
    #[error("cannot start in state {0:?}")]
    IllegalState(StreamsState),
}
