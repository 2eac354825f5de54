//! Why a transaction failed ([`TransactionError`]) and how each broker error of a
//! transactional request is handled ([`classify`]), after Java's `TransactionManager`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

use super::DeliveryError;
use crate::record::TopicPartition;

/// Why a transaction, or the transactional producer as a whole, failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransactionError {
    /// The coordinator bumped the producer's epoch (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH):
    /// a newer producer with the same transactional id took over, or the coordinator aborted
    /// a transaction left open past its timeout. This epoch is done; see
    /// [`TransactionError::is_fencing`].
    #[error(
        "producer fenced: a newer producer with the same transactional id, or a transaction timed out ({api:?}: {error})"
    )]
    Fenced {
        /// The request that said so.
        api: ApiKey,
        /// The broker's error.
        error: ResponseError,
    },
    /// A broker refused a transactional request (TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    /// INVALID_TXN_STATE, GROUP_AUTHORIZATION_FAILED, ...).
    #[error("{api:?} failed: {error}")]
    Broker {
        /// The request.
        api: ApiKey,
        /// The broker's error.
        error: ResponseError,
    },
    /// The group coordinator refused an offset of the transaction (UNKNOWN_MEMBER_ID,
    /// ILLEGAL_GENERATION, FENCED_INSTANCE_ID: the member is no longer in the group as it was).
    #[error("TxnOffsetCommit of {topic_partition} failed: {error}")]
    OffsetCommit {
        /// The offset's partition.
        topic_partition: TopicPartition,
        /// The broker's error.
        error: ResponseError,
    },
    /// Records of the transaction were not delivered.
    #[error("records of the transaction were not delivered: {0}")]
    Delivery(DeliveryError),
    /// The brokers lack an API (or the version of it) that transactions need.
    #[error("the brokers do not support transactions: no usable version of {missing_api:?}")]
    Unsupported {
        /// The API missing.
        missing_api: ApiKey,
    },
}

impl TransactionError {
    /// Whether this is a fencing ([`TransactionError::Fenced`]): the coordinator bumped the
    /// producer's epoch, because a newer instance initialised the transactional id or because
    /// it aborted a transaction open past its timeout. Unlike the other fatal errors, a new
    /// epoch ([`Producer::restart_after_fencing`](super::Producer::restart_after_fencing))
    /// may heal it.
    pub fn is_fencing(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }
}

/// What to do about a broker error in the answer to a transactional request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxnErrorAction {
    /// Send the request again after `retry_backoff`.
    Retry,
    /// The coordinator moved: find it again, then send the request again.
    FindCoordinator,
    /// The transaction must be aborted.
    Abortable,
    /// The transaction must be aborted, and the producer needs a new epoch after it (the
    /// coordinator does not know our producer id any more).
    AbortableWithNewEpoch,
    /// A newer producer took over: fatal.
    Fenced,
    /// Fatal for this producer.
    Fatal,
}

/// How to handle `error` in the answer to `api` (FindCoordinator, InitProducerId,
/// AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit or EndTxn).
pub(super) fn classify(api: ApiKey, error: ResponseError) -> TxnErrorAction {
    use ResponseError as E;
    match error {
        E::ProducerFenced | E::InvalidProducerEpoch => TxnErrorAction::Fenced,
        E::TransactionalIdAuthorizationFailed
        | E::InvalidTxnState
        | E::ClusterAuthorizationFailed
        | E::UnsupportedVersion
        | E::UnsupportedForMessageFormat => TxnErrorAction::Fatal,
        // The group coordinator: TxnOffsetCommit goes to the group member's coordinator, which
        // the group member finds again on its own; this request is retried meanwhile.
        E::NotCoordinator | E::CoordinatorNotAvailable | E::RequestTimedOut
            if api == ApiKey::TxnOffsetCommit =>
        {
            TxnErrorAction::Retry
        }
        E::NotCoordinator | E::CoordinatorNotAvailable => TxnErrorAction::FindCoordinator,
        E::CoordinatorLoadInProgress | E::ConcurrentTransactions | E::UnknownTopicOrPartition => {
            TxnErrorAction::Retry
        }
        E::UnknownProducerId | E::InvalidProducerIdMapping => TxnErrorAction::AbortableWithNewEpoch,
        E::TopicAuthorizationFailed
        | E::GroupAuthorizationFailed
        | E::TransactionAbortable
        | E::UnknownMemberId
        | E::IllegalGeneration
        | E::FencedInstanceId => TxnErrorAction::Abortable,
        other if other.is_retriable() => TxnErrorAction::Retry,
        _ => TxnErrorAction::Fatal,
    }
}

/// Whether a Produce error ends a transactional producer (rather than only its
/// transaction): a newer instance fenced it, or it may not use its transactional id.
pub(super) fn is_fatal_produce_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::ProducerFenced
            | ResponseError::InvalidProducerEpoch
            | ResponseError::TransactionalIdAuthorizationFailed
            | ResponseError::ClusterAuthorizationFailed
            | ResponseError::InvalidTxnState
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_like_java() {
        use ResponseError as E;
        let add = ApiKey::AddPartitionsToTxn;
        assert_eq!(classify(add, E::ProducerFenced), TxnErrorAction::Fenced);
        assert_eq!(
            classify(add, E::InvalidProducerEpoch),
            TxnErrorAction::Fenced
        );
        assert_eq!(classify(add, E::InvalidTxnState), TxnErrorAction::Fatal);
        assert_eq!(
            classify(add, E::NotCoordinator),
            TxnErrorAction::FindCoordinator
        );
        assert_eq!(
            classify(ApiKey::TxnOffsetCommit, E::NotCoordinator),
            TxnErrorAction::Retry
        );
        assert_eq!(
            classify(add, E::ConcurrentTransactions),
            TxnErrorAction::Retry
        );
        assert_eq!(
            classify(add, E::TopicAuthorizationFailed),
            TxnErrorAction::Abortable
        );
        assert_eq!(
            classify(ApiKey::TxnOffsetCommit, E::IllegalGeneration),
            TxnErrorAction::Abortable
        );
        assert_eq!(
            classify(ApiKey::EndTxn, E::UnknownProducerId),
            TxnErrorAction::AbortableWithNewEpoch
        );
        assert_eq!(
            classify(ApiKey::EndTxn, E::NotEnoughReplicas),
            TxnErrorAction::Retry
        );
        assert_eq!(
            classify(ApiKey::EndTxn, E::InvalidRequest),
            TxnErrorAction::Fatal
        );
    }
}
