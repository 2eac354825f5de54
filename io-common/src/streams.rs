//! [`KafkaStreams`]: a kstreams application in one process, shaped like Kafka Streams'
//! `KafkaStreams`, generic over the adapter's [`Runtime`].

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use futures_rustls::TlsConnector;
use kstreams_core::engine::{Engine, Event, ProcessingGuarantee};
use kstreams_core::state::MemoryStoreFactory;
use kstreams_core::topology::Topology;
use kstreams_store_api::{KvBackend, StoreError, StoreFactory};
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment};

use crate::clock::{Clock, jitter_seed};
use crate::config::{AddressMap, Stores, StreamsConfig};
use crate::driver::StreamThread;
use crate::error::StreamsError;
use crate::message::{CONNECTION_REPORT_CAPACITY, Input, Report};
use crate::metrics::{MetricsPublisher, MetricsSnapshot};
use crate::process_id;
use crate::runtime::Runtime;
use crate::state::{StandbyUpdateListener, StateRestoreListener, StreamsState, ThreadMetadata};
use crate::status::InstanceStatus;

/// A kstreams application instance: `num_stream_threads` engines, each on its own OS thread
/// (a "stream thread", as in Kafka Streams) that runs the engine's loop and its broker
/// connections on a thread-local executor of the adapter's runtime.
///
/// Why dedicated threads: an engine processes records, runs user processors and commits its
/// stores (LMDB write transactions, `fsync` on commit) synchronously inside its `poll_output`
/// and `handle_*` calls. On a dedicated thread that work never stalls the tasks of the
/// application's executor, needs no per-call hop to a blocking pool (`spawn_blocking` would
/// move the engine back and forth on every read), works the same under tokio, smol and
/// async-std, and keeps an engine and its sockets on one thread. The cost is one OS thread
/// per stream thread, as in Kafka Streams.
///
/// ```no_run
/// # async fn demo<R: kstreams_io_common::Runtime>(topology: kstreams_core::topology::Topology)
/// # -> Result<(), kstreams_io_common::StreamsError> {
/// use kstreams_io_common::{KafkaStreams, Stores, StreamsConfig};
/// let config = StreamsConfig::new("word-count", ["localhost:9092"]);
/// let streams = KafkaStreams::<R>::new(topology, config, Stores::Lmdb)?;
/// let handle = streams.start()?;
/// // ... later
/// handle.close().await?;
/// # Ok(()) }
/// ```
pub struct KafkaStreams<R: Runtime> {
    topology: Arc<Topology>,
    config: StreamsConfig,
    addresses: AddressMap,
    /// The rustls configuration every connection shares, if the instance uses TLS.
    tls: Option<TlsConnector>,
    stores: StoreChoice,
    /// The stable part of the engines' transactional ids (see `process_id`).
    process_id: String,
    handle: StreamsHandle,
    runtime: PhantomData<fn() -> R>,
}

enum StoreChoice {
    Memory,
    Shared(Arc<dyn StoreFactory>),
    Lmdb(LmdbEnvironment),
}

/// A [`StoreFactory`] shared by several engines.
struct SharedStores(Arc<dyn StoreFactory>);

impl StoreFactory for SharedStores {
    fn open(&self, store: &str, partition: i32) -> Result<Box<dyn KvBackend>, StoreError> {
        self.0.open(store, partition)
    }
}

impl<R: Runtime> KafkaStreams<R> {
    /// An instance running `topology` with `config`, keeping state in `stores`. Opens the
    /// LMDB environment (`<state_dir>/<application_id>/`) and reads the TLS files now, so a
    /// bad state directory or TLS file fails here ([`StreamsError::Store`],
    /// [`StreamsError::TlsConfig`]); nothing connects before [`KafkaStreams::start`].
    pub fn new(
        topology: impl Into<Arc<Topology>>,
        config: StreamsConfig,
        stores: Stores,
    ) -> Result<Self, StreamsError> {
        let addresses = config.validate().map_err(StreamsError::Config)?;
        let tls = match &config.tls {
            Some(tls) => Some(TlsConnector::from(tls.client_config()?)),
            None => None,
        };
        let (stores, process_id) = match stores {
            Stores::Memory => (StoreChoice::Memory, process_id::fresh()),
            Stores::Custom(factory) => (StoreChoice::Shared(factory), process_id::fresh()),
            Stores::Lmdb => {
                let env = LmdbEnvironment::open(LmdbConfig::new(config.app_state_dir()))
                    .map_err(|e| StreamsError::Store(Arc::new(e)))?;
                // Under the environment's lock: the id is this process's.
                let id = process_id::kept_in(&config.app_state_dir()).map_err(|e| {
                    StreamsError::Config(format!(
                        "process id in {}: {e}",
                        config.app_state_dir().display()
                    ))
                })?;
                (StoreChoice::Lmdb(env), id)
            }
        };
        Ok(Self {
            topology: topology.into(),
            config,
            addresses,
            tls,
            stores,
            process_id,
            handle: StreamsHandle {
                status: InstanceStatus::new(),
            },
            runtime: PhantomData,
        })
    }

    /// Calls `listener(new, old)` on every state change (from the thread that caused it; it
    /// may call [`StreamsHandle::close`] or read the state, and should return quickly).
    pub fn set_state_listener(
        &mut self,
        listener: impl FnMut(StreamsState, StreamsState) + Send + 'static,
    ) {
        self.handle.status.set_listener(Box::new(listener));
    }

    /// Calls `listener(thread_name, event)` with every event of every stream thread's engine:
    /// its state changes, tasks assigned, revoked or lost, offsets committed, warnings and a
    /// failure. For progress reports, monitoring and tests.
    ///
    /// It is called on the stream thread whose engine produced the event, in that engine's
    /// order, before the instance's state reflects the event; calls of different threads
    /// never overlap. It holds up that engine while it runs: return quickly (hand slow work to
    /// another thread). It may call [`StreamsHandle::request_close`].
    pub fn set_event_listener(&mut self, listener: impl FnMut(&str, &Event) + Send + 'static) {
        self.handle.status.set_event_listener(Box::new(listener));
    }

    /// Tells `listener` about every state restore (start, each batch, end), like Kafka
    /// Streams' `StateRestoreListener`. Called on the restoring stream thread, like the event
    /// listener (and before it): return quickly.
    pub fn set_restore_listener(&mut self, listener: impl StateRestoreListener + 'static) {
        self.handle.status.set_restore_listener(Box::new(listener));
    }

    /// Tells `listener` how standby tasks follow their changelogs (start, each batch,
    /// suspension), like Kafka Streams' `StandbyUpdateListener` (KIP-988). Called on the
    /// stream thread, like the event listener (and before it): return quickly.
    pub fn set_standby_listener(&mut self, listener: impl StandbyUpdateListener + 'static) {
        self.handle.status.set_standby_listener(Box::new(listener));
    }

    /// The current state.
    pub fn state(&self) -> StreamsState {
        self.handle.state()
    }

    /// A handle to watch and close this instance (also before it starts).
    pub fn handle(&self) -> StreamsHandle {
        self.handle.clone()
    }

    /// Builds the engines and starts one stream thread for each; returns at once.
    pub fn start(self) -> Result<StreamsHandle, StreamsError> {
        let clock = Arc::new(Clock::new());
        let threads = self.config.num_stream_threads;
        let mut engines = Vec::with_capacity(threads);
        for n in 1..=threads {
            let name = format!("{}-StreamThread-{n}", self.config.engine.client_id);
            let mut config = self.config.engine.clone();
            config.client_id = name.clone();
            config.random_seed = jitter_seed(n as u64);
            // The assignor keeps a task's standbys out of its active's process. A static
            // instance without a kept state directory (memory stores) is named by its
            // `group.instance.id`, unique per instance and stable across restarts: its
            // subscription stays the same, so a restart within the session is not taken for
            // a changed member (Tansu then sometimes held the rejoin until the old session
            // expired).
            if config.process_id.is_empty() {
                config.process_id = match (&self.stores, &config.group_instance_id) {
                    (StoreChoice::Memory, Some(instance)) => format!("static-{instance}"),
                    _ => self.process_id.clone(),
                };
            }
            // One static member per engine, as Kafka Streams names its threads' consumers.
            if let Some(id) = &mut config.group_instance_id {
                id.push_str(&format!("-{n}"));
            }
            if config.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
                // Stable across restarts on the same state directory (see `process_id`); one
                // per thread (threads sharing an id would fence each other).
                config.producer.transactional_id = Some(match config.producer.transactional_id {
                    Some(id) if threads > 1 => format!("{id}-{n}"),
                    Some(id) => id,
                    None => format!("{}-{}-{n}", config.application_id, self.process_id),
                });
            }
            let stores: Box<dyn StoreFactory> = match &self.stores {
                StoreChoice::Memory => Box::new(MemoryStoreFactory),
                StoreChoice::Shared(factory) => Box::new(SharedStores(factory.clone())),
                StoreChoice::Lmdb(env) => Box::new(env.clone()),
            };
            let engine = Engine::new(self.topology.clone(), config, stores, clock.now()).map_err(
                |error| StreamsError::Engine {
                    thread: name.clone(),
                    error: Arc::new(error),
                },
            )?;
            engines.push((name, engine));
        }
        let channels: Vec<_> = engines
            .iter()
            .map(|_| async_channel::bounded::<Report>(CONNECTION_REPORT_CAPACITY))
            .collect();
        let commands: Vec<_> = engines
            .iter()
            .map(|_| async_channel::unbounded::<Input>())
            .collect();
        let status = self.handle.status.clone();
        status
            .start(
                engines
                    .iter()
                    .zip(&commands)
                    .map(|((name, _), (tx, _))| (name.clone(), tx.clone()))
                    .collect(),
            )
            .map_err(StreamsError::IllegalState)?;
        for (index, (((name, engine), (reports_tx, reports)), (_, commands))) in
            engines.into_iter().zip(channels).zip(commands).enumerate()
        {
            let addresses = self.addresses.clone();
            let connect_timeout = self.config.connect_timeout;
            let tls = self.tls.clone();
            let clock = clock.clone();
            let thread_status = status.clone();
            let guard = FinishGuard {
                status: status.clone(),
                index,
                thread: name.clone(),
                failure: None,
            };
            let spawned = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let mut guard = guard;
                    // Built here: its connections (runtime tasks) never cross threads.
                    let thread = StreamThread::<R> {
                        index,
                        name: guard.thread.clone(),
                        engine,
                        clock,
                        reports,
                        reports_tx,
                        commands,
                        status: thread_status,
                        addresses,
                        connect_timeout,
                        tls,
                        connections: BTreeMap::new(),
                        metrics: MetricsPublisher::new(guard.thread.clone()),
                    };
                    guard.failure = match R::block_on(thread.run()) {
                        Ok(Ok(())) => None,
                        Ok(Err(failure)) => Some(failure),
                        Err(error) => Some(StreamsError::Spawn {
                            thread: guard.thread.clone(),
                            error: Arc::new(error),
                        }),
                    };
                });
            if let Err(error) = spawned {
                // The closure (and its guard) was dropped: the thread counts as failed.
                status.finish(
                    index,
                    Some(StreamsError::Spawn {
                        thread: name,
                        error: Arc::new(error),
                    }),
                );
            }
        }
        Ok(self.handle)
    }

    /// Starts and runs until every stream thread stopped; `Err` with the first failure.
    /// Dropping the future before that starts a clean close (not awaited: keep a
    /// [`KafkaStreams::handle`] and await [`StreamsHandle::close`] to wait for it).
    pub async fn run(self) -> Result<(), StreamsError> {
        let handle = self.start()?;
        let mut close_on_drop = CloseOnDrop(Some(handle.clone()));
        let result = handle.wait().await;
        close_on_drop.0 = None;
        result
    }
}

/// Marks a stream thread ended when its OS thread ends, also by a panic.
struct FinishGuard {
    status: Arc<InstanceStatus>,
    index: usize,
    thread: String,
    failure: Option<StreamsError>,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        let mut failure = self.failure.take();
        if std::thread::panicking() && failure.is_none() {
            failure = Some(StreamsError::Panicked {
                thread: self.thread.clone(),
            });
        }
        self.status.finish(self.index, failure);
    }
}

struct CloseOnDrop(Option<StreamsHandle>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.request_close();
        }
    }
}

/// Watches and closes a [`KafkaStreams`] instance; cheap to clone, usable from any runtime.
#[derive(Clone)]
pub struct StreamsHandle {
    status: Arc<InstanceStatus>,
}

impl std::fmt::Debug for StreamsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsHandle")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl StreamsHandle {
    /// The current state (aggregated over the stream threads).
    pub fn state(&self) -> StreamsState {
        self.status.state()
    }

    /// The stream threads and the tasks each runs.
    pub fn local_thread_metadata(&self) -> Vec<ThreadMetadata> {
        self.status.threads()
    }

    /// The metrics of every stream thread, as each last published them (every 250 ms while
    /// it runs, and when it stops; see [`crate::metrics`]). The same numbers go to the
    /// `metrics` facade, for the exporter the application installed.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.status.metrics()
    }

    /// Starts a clean shutdown without waiting: every engine commits acknowledged output,
    /// closes its tasks and leaves the group (a static member, with `group.instance.id`,
    /// stays in it until its session times out: see `EngineConfig::group_instance_id`).
    pub fn request_close(&self) {
        self.status.request_close();
    }

    /// Clean shutdown: [`request_close`](Self::request_close), then waits until every stream
    /// thread stopped (`NotRunning`; `Error` if one failed). Bound it with your runtime's
    /// timeout if brokers may be unreachable.
    pub async fn close(&self) -> Result<(), StreamsError> {
        self.request_close();
        self.wait().await
    }

    /// Waits until every stream thread stopped; `Err` with the first failure.
    pub async fn wait(&self) -> Result<(), StreamsError> {
        self.status.wait_for(StreamsState::is_terminal).await;
        self.status.outcome()
    }

    /// Waits until `done(state)` holds, or the instance stopped; returns the state then.
    pub async fn wait_for_state(&self, mut done: impl FnMut(StreamsState) -> bool) -> StreamsState {
        self.status.wait_for(|s| done(s) || s.is_terminal()).await
    }
}
