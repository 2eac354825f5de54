//! Produce requests awaiting an answer, per broker, in send order.
//!
//! A Kafka connection answers requests in the order they were sent, and the engine reports
//! every Produce request exactly once (a response or `handle_request_failed`), so the answer
//! from a broker belongs to the oldest request outstanding there.

use std::collections::{HashMap, VecDeque};

use crate::client::BrokerId;
use crate::record::TopicPartition;

/// One batch inside a sent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentBatch {
    /// Its partition.
    pub topic_partition: TopicPartition,
    /// The batch id.
    pub batch_id: u64,
    /// The attempt the request carried; if the batch has moved on, the answer is stale.
    pub attempt: u32,
}

/// A sent Produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// Batches it carried, one per partition.
    pub batches: Vec<SentBatch>,
}

/// Outstanding Produce requests per broker.
#[derive(Debug, Default)]
pub struct InFlightRequests {
    per_broker: HashMap<BrokerId, VecDeque<SentRequest>>,
}

impl InFlightRequests {
    /// Records a request sent to `broker`.
    pub fn push(&mut self, broker: BrokerId, request: SentRequest) {
        self.per_broker
            .entry(broker)
            .or_default()
            .push_back(request);
    }

    /// Takes the oldest request outstanding at `broker`.
    pub fn pop(&mut self, broker: BrokerId) -> Option<SentRequest> {
        let queue = self.per_broker.get_mut(&broker)?;
        let request = queue.pop_front();
        if queue.is_empty() {
            self.per_broker.remove(&broker);
        }
        request
    }
}
