//! Idempotence bookkeeping: the producer id and epoch from InitProducerId, sequence number
//! arithmetic, and how a partition error in a Produce response is handled.

use kafka_protocol::ResponseError;

/// Producer id and epoch assigned by InitProducerId; written into every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerIdentity {
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
}

/// The sequence that follows a batch of `count` records starting at `sequence`; wraps from
/// `i32::MAX` to 0 like Kafka's `DefaultRecordBatch.incrementSequence`.
pub fn increment_sequence(sequence: i32, count: i32) -> i32 {
    if sequence > i32::MAX - count {
        count - (i32::MAX - sequence) - 1
    } else {
        sequence + count
    }
}

/// What to do with a batch given the error code of its partition in a Produce response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionOutcome {
    /// Written (no error, or DUPLICATE_SEQUENCE_NUMBER: written by an earlier attempt).
    Written,
    /// Not written, worth retrying; `refresh_metadata` when the leader is in doubt.
    Retry {
        /// The error.
        error: ResponseError,
        /// Whether partition leadership must be looked up again.
        refresh_metadata: bool,
    },
    /// The broker's view of this producer's sequences disagrees with ours
    /// (OUT_OF_ORDER_SEQUENCE_NUMBER for the first unacknowledged batch, UNKNOWN_PRODUCER_ID,
    /// INVALID_PRODUCER_EPOCH): the batch fails and the producer needs a new id.
    SequenceBroken(ResponseError),
    /// Not written and never will be (RECORD_TOO_LARGE, INVALID_RECORD,
    /// TOPIC_AUTHORIZATION_FAILED, ...): the batch fails.
    Rejected(ResponseError),
}

/// Classifies a partition's error code. `first_unacked` says whether the batch is the oldest
/// unacknowledged batch of its partition: an OUT_OF_ORDER_SEQUENCE_NUMBER for a later batch
/// only means an earlier one failed and is being retried, so it is retriable then (as in
/// Java's `TransactionManager.canRetry`).
pub fn classify(error_code: i16, first_unacked: bool) -> PartitionOutcome {
    let Some(error) = ResponseError::try_from_code(error_code) else {
        return PartitionOutcome::Written;
    };
    match error {
        ResponseError::DuplicateSequenceNumber => PartitionOutcome::Written,
        ResponseError::OutOfOrderSequenceNumber if !first_unacked => PartitionOutcome::Retry {
            error,
            refresh_metadata: false,
        },
        ResponseError::OutOfOrderSequenceNumber
        | ResponseError::UnknownProducerId
        | ResponseError::InvalidProducerEpoch => PartitionOutcome::SequenceBroken(error),
        ResponseError::NotLeaderOrFollower
        | ResponseError::LeaderNotAvailable
        | ResponseError::UnknownTopicOrPartition
        | ResponseError::FencedLeaderEpoch
        | ResponseError::KafkaStorageError
        | ResponseError::NetworkException => PartitionOutcome::Retry {
            error,
            refresh_metadata: true,
        },
        other if other.is_retriable() => PartitionOutcome::Retry {
            error: other,
            refresh_metadata: false,
        },
        other => PartitionOutcome::Rejected(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_sequence(0, 3), 3);
        assert_eq!(increment_sequence(i32::MAX - 2, 2), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX - 1, 2), 0);
        assert_eq!(increment_sequence(i32::MAX, 5), 4);
    }

    #[test]
    fn classifies_idempotence_errors() {
        let code = |e: ResponseError| e.code();
        assert_eq!(classify(0, true), PartitionOutcome::Written);
        assert_eq!(
            classify(code(ResponseError::DuplicateSequenceNumber), true),
            PartitionOutcome::Written
        );
        assert!(matches!(
            classify(code(ResponseError::OutOfOrderSequenceNumber), false),
            PartitionOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify(code(ResponseError::OutOfOrderSequenceNumber), true),
            PartitionOutcome::SequenceBroken(_)
        ));
        assert!(matches!(
            classify(code(ResponseError::NotLeaderOrFollower), true),
            PartitionOutcome::Retry {
                refresh_metadata: true,
                ..
            }
        ));
        assert!(matches!(
            classify(code(ResponseError::NotEnoughReplicas), true),
            PartitionOutcome::Retry {
                refresh_metadata: false,
                ..
            }
        ));
        assert!(matches!(
            classify(code(ResponseError::MessageTooLarge), true),
            PartitionOutcome::Rejected(_)
        ));
    }
}
