//! Giving up on batches: delivery timeouts, a new producer id after a hole in a partition's
//! sequence, and failing everything when the producer becomes unusable.

use std::fmt::Debug;
use std::hash::Hash;

use super::accumulator::BatchState;
use super::{DeliveryError, Producer, ProducerError, ProducerIdentity};
use crate::time::Instant;

impl<O: Clone + Eq + Hash + Debug> Producer<O> {
    /// Asks for a new producer id if `stale` is still the current one. A transactional
    /// producer keeps its id until the transaction (which fails) is aborted, and takes a new
    /// epoch then.
    pub(super) fn renew_identity(&mut self, stale: ProducerIdentity) {
        if let Some(txn) = self.txn.as_mut() {
            if self.identity == Some(stale) {
                txn.new_epoch_needed = true;
            }
            return;
        }
        if self.identity == Some(stale) {
            tracing::info!(?stale, "requesting a new producer id");
            self.identity = None;
            self.init_retry_at = Instant::MIN;
        }
    }

    /// Fails batches past their delivery timeout that are not in flight. A sent batch may
    /// have been written, so it fails together with every later sent batch of its partition.
    pub(super) fn expire(&mut self, now: Instant) {
        let timeout = self.config.delivery_timeout;
        let mut renew = Vec::new();
        for (tp, queue) in &mut self.partitions {
            let mut index = 0;
            while let Some(batch) = queue.batches.get(index) {
                let expired =
                    batch.state != BatchState::InFlight && now >= batch.created_at + timeout;
                if !expired {
                    index += 1;
                    continue;
                }
                let error = DeliveryError::DeliveryTimeout { timeout };
                if let Some((identity, _)) = batch.sequence {
                    renew.push(identity);
                    let mut later = index;
                    while let Some(batch) = queue.batches.get(later) {
                        if batch.sequence.is_some() {
                            if let Some(batch) = queue.batches.remove(later) {
                                self.ledger.fail(tp, batch, error.clone());
                            }
                        } else {
                            later += 1;
                        }
                    }
                } else if let Some(batch) = queue.batches.remove(index) {
                    self.ledger.fail(tp, batch, error);
                }
            }
        }
        for identity in renew {
            self.renew_identity(identity);
        }
    }

    /// Makes the producer unusable: every batch fails with `error`.
    pub(super) fn fail_all(&mut self, error: ProducerError) {
        tracing::error!(%error, "producer failed");
        let delivery = DeliveryError::ProducerFailed(Box::new(error.clone()));
        for (tp, queue) in &mut self.partitions {
            while let Some(batch) = queue.batches.pop_front() {
                self.ledger.fail(tp, batch, delivery.clone());
            }
        }
        self.fatal = Some(error);
    }
}
