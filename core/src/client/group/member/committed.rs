//! The member's side of committed offsets: queueing fetches and commits on its
//! [`OffsetClient`](crate::client::group::offsets::OffsetClient), and turning their outcomes
//! into events and, when a commit reveals a rebalance or lost membership, into transitions.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, OffsetCommitResponse, OffsetFetchResponse};

use super::{GroupMember, Phase};
use crate::client::group::offsets::{CommitOutcome, FetchOutcome};
use crate::client::group::{CommitError, CommitId, GroupError, GroupEvent};
use crate::record::TopicPartition;
use crate::time::Instant;

impl GroupMember {
    /// Asks for the committed offsets of `partitions` → [`GroupEvent::OffsetsFetched`].
    pub fn fetch_committed(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        self.offsets.fetch(partitions);
    }

    /// Commits `offsets` (the next offset to read, per partition) under the current generation
    /// → [`GroupEvent::CommitSucceeded`] or [`GroupEvent::CommitFailed`] with the returned id.
    /// When no commit can be accepted now (see [`may_commit`](Self::may_commit): not joined,
    /// rebalancing after an eager revoke, waiting for the assignment, lost) it fails at once.
    pub fn commit(&mut self, offsets: BTreeMap<TopicPartition, i64>, now: Instant) -> CommitId {
        self.observe(now);
        if self.may_commit() {
            return self
                .offsets
                .commit(offsets, self.generation, self.member_id.clone());
        }
        let id = self.offsets.next_id();
        self.events.push_back(GroupEvent::CommitFailed {
            id,
            offsets,
            error: CommitError::NotMember,
        });
        id
    }

    /// Takes an OffsetFetch answer → [`GroupEvent::OffsetsFetched`] or
    /// [`GroupEvent::OffsetFetchFailed`], or a retry.
    pub(super) fn on_offset_fetch(
        &mut self,
        r: OffsetFetchResponse,
        now: Instant,
    ) -> Result<(), GroupError> {
        if !self.offsets.fetch_in_flight() {
            return Err(GroupError::UnexpectedResponse {
                api: ApiKey::OffsetFetch,
            });
        }
        let backoff = self.config.retry_backoff;
        match self.offsets.handle_fetch_response(&r, now, backoff) {
            FetchOutcome::Fetched(offsets) => self
                .events
                .push_back(GroupEvent::OffsetsFetched { offsets }),
            FetchOutcome::Retry => {}
            FetchOutcome::CoordinatorMoved => self.coordinator_lost(now),
            FetchOutcome::Failed(partitions, error) => self
                .events
                .push_back(GroupEvent::OffsetFetchFailed { partitions, error }),
        }
        Ok(())
    }

    /// Takes an OffsetCommit answer (see [`on_commit_outcome`](Self::on_commit_outcome)).
    pub(super) fn on_offset_commit(
        &mut self,
        r: OffsetCommitResponse,
        now: Instant,
    ) -> Result<(), GroupError> {
        if !self.offsets.commit_in_flight() {
            return Err(GroupError::UnexpectedResponse {
                api: ApiKey::OffsetCommit,
            });
        }
        let backoff = self.config.retry_backoff;
        let outcome = self.offsets.handle_commit_response(&r, now, backoff);
        self.on_commit_outcome(outcome, now);
        Ok(())
    }

    /// A commit's outcome → [`GroupEvent::CommitSucceeded`] or [`GroupEvent::CommitFailed`];
    /// a rejection of the current generation starts a rebalance or ends membership.
    fn on_commit_outcome(&mut self, outcome: CommitOutcome, now: Instant) {
        match outcome {
            CommitOutcome::Committed(c) => self.events.push_back(GroupEvent::CommitSucceeded {
                id: c.id,
                offsets: c.offsets,
            }),
            CommitOutcome::Failed(c, error) => {
                let current = c.generation == self.generation;
                self.events.push_back(GroupEvent::CommitFailed {
                    id: c.id,
                    offsets: c.offsets,
                    error: error.clone(),
                });
                match error {
                    CommitError::Rejected(ResponseError::RebalanceInProgress)
                        if current && self.phase == Phase::Stable =>
                    {
                        self.start_rebalance(now)
                    }
                    // Only under the current member id: a commit of a membership this member
                    // lost, answered after it rejoined under its instance id, names the member
                    // id it replaced itself (`seed_4549…`).
                    CommitError::Rejected(ResponseError::FencedInstanceId)
                        if c.member_id == self.member_id =>
                    {
                        self.fenced(ApiKey::OffsetCommit);
                    }
                    CommitError::Rejected(
                        e @ (ResponseError::IllegalGeneration | ResponseError::UnknownMemberId),
                    ) if current
                        && matches!(self.phase, Phase::Stable | Phase::Revoking { .. }) =>
                    {
                        self.lose_membership(e, now)
                    }
                    _ => {}
                }
            }
            CommitOutcome::Retry => {}
            CommitOutcome::CoordinatorMoved => self.coordinator_lost(now),
        }
    }
}
