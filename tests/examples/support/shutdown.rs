//! Ctrl-C and SIGTERM (and SIGHUP) in the examples: the first one asks the example to close
//! cleanly (commit, leave the group, print what it counted); a second one exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Exit status of a second signal (128 + SIGINT, as shells report an interrupted program).
const FORCED_EXIT: i32 = 130;

/// Whether a shutdown was asked for, and a wake-up for whoever waits on it.
#[derive(Clone)]
pub struct Shutdown {
    signals: Arc<AtomicUsize>,
    wake: async_channel::Receiver<()>,
}

impl Shutdown {
    /// Installs the process's signal handler (once per process: examples call it from
    /// `main`; tests that run examples in process use [`Shutdown::never`]).
    pub fn install() -> Result<Self, String> {
        let signals = Arc::new(AtomicUsize::new(0));
        let (wake_tx, wake) = async_channel::bounded(1);
        let counted = Arc::clone(&signals);
        ctrlc::set_handler(move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!("signal received: closing (commit, leave the group); again to exit now");
                let _ = wake_tx.try_send(());
            } else {
                std::process::exit(FORCED_EXIT);
            }
        })
        .map_err(|e| format!("cannot install the signal handler: {e}"))?;
        Ok(Self { signals, wake })
    }

    /// A shutdown that is never asked for.
    pub fn never() -> Self {
        let (_, wake) = async_channel::bounded(1);
        Self {
            signals: Arc::new(AtomicUsize::new(0)),
            wake,
        }
    }

    /// Whether a signal arrived.
    pub fn requested(&self) -> bool {
        self.signals.load(Ordering::SeqCst) > 0
    }

    /// Completes when a signal arrives (at once if one already did).
    pub async fn wait(&self) {
        if self.requested() {
            return;
        }
        // A closed channel (never()) waits forever.
        if self.wake.recv().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
