//! [`StreamsError`]: why a `KafkaStreams` instance could not start or stopped.

use std::sync::Arc;

use kstreams_core::engine::EngineError;
use kstreams_store_api::StoreError;

use crate::state::StreamsState;

/// Why an application could not start or stopped.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
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
