//! The assigned partitions: each one's position, pending reset, leader, pause, halt and retry
//! backoff, and the [`Fetcher`] methods that change or read them.

use super::config::ResetTarget;
use super::{FetchError, FetchEvent, Fetcher, OffsetResetPolicy};
use crate::client::BrokerId;
use crate::client::metadata::Metadata;
use crate::record::TopicPartition;
use crate::time::Instant;

/// One assigned partition.
#[derive(Debug, Clone)]
pub(super) struct PartitionState {
    /// Next offset to fetch; `None` until seeked or reset.
    pub(super) position: Option<i64>,
    /// A ListOffsets reset waiting to be sent or answered.
    pub(super) reset: Option<ResetTarget>,
    pub(super) leader: Option<BrokerId>,
    pub(super) leader_epoch: Option<i32>,
    pub(super) paused: bool,
    /// Stopped after an error retrying cannot fix; cleared by seek/reset.
    pub(super) halted: bool,
    /// Not fetched (or reset) before this time.
    pub(super) retry_at: Instant,
    /// Current per-partition limit.
    pub(super) max_bytes: i32,
    /// A decoded batch of it waits in the ready queue.
    pub(super) buffered: bool,
    /// What OFFSET_OUT_OF_RANGE does to it (the config's policy unless assigned with another).
    pub(super) out_of_range: OffsetResetPolicy,
    /// The partition's end in the last response without error: the high watermark, or the
    /// last stable offset under read_committed.
    pub(super) end_offset: Option<i64>,
    /// Read to its end as fast as possible: a Fetch holding it does not wait for data.
    pub(super) eager: bool,
    /// The partition's high watermark in the last response without error (above
    /// [`end_offset`](Self::end_offset) under read_committed while a transaction is open).
    pub(super) high_watermark: Option<i64>,
}

impl Fetcher {
    /// Assigns a partition at `position`, or with no position yet (`None`: it is not fetched
    /// until [`seek`](Self::seek) or [`reset_position`](Self::reset_position)). Replaces an
    /// existing assignment of it. Its leader is unknown until
    /// [`update_leaders`](Self::update_leaders).
    pub fn assign(&mut self, tp: TopicPartition, position: Option<i64>) {
        let policy = self.config.offset_reset;
        self.insert_partition(tp, position, policy, false);
    }

    /// Assigns a partition to be read to its end once, from `position` (`None`: not fetched
    /// until a seek or reset), as a changelog being restored is: a Fetch that holds it asks
    /// the broker not to wait for data (max wait 0, so an empty or caught-up changelog
    /// answers at once, not after the long-poll wait), and OFFSET_OUT_OF_RANGE is reported
    /// ([`FetchError::OffsetOutOfRange`]) instead of moving the position by the config's
    /// policy, so a checkpoint past the log's end is noticed. Its end is
    /// [`end_offset`](Self::end_offset).
    pub fn assign_to_read_to_end(&mut self, tp: TopicPartition, position: Option<i64>) {
        self.insert_partition(tp, position, OffsetResetPolicy::None, true);
    }

    /// Assigns a partition to be followed from `position` (`None`: not fetched until a seek
    /// or reset), as a standby task follows a changelog: fetched like any assigned partition
    /// (with the long-poll wait: it has no end to reach), but OFFSET_OUT_OF_RANGE is reported
    /// ([`FetchError::OffsetOutOfRange`]) instead of moving the position by the config's
    /// policy, as for [`assign_to_read_to_end`](Self::assign_to_read_to_end), so a checkpoint
    /// outside the log is noticed.
    pub fn assign_to_follow(&mut self, tp: TopicPartition, position: Option<i64>) {
        self.insert_partition(tp, position, OffsetResetPolicy::None, false);
    }

    fn insert_partition(
        &mut self,
        tp: TopicPartition,
        position: Option<i64>,
        out_of_range: OffsetResetPolicy,
        eager: bool,
    ) {
        self.drop_buffered(&tp);
        self.partitions.insert(
            tp,
            PartitionState {
                position,
                reset: None,
                leader: None,
                leader_epoch: None,
                paused: false,
                halted: false,
                retry_at: Instant::MIN,
                max_bytes: self.config.partition_max_bytes,
                buffered: false,
                out_of_range,
                end_offset: None,
                eager,
                high_watermark: None,
            },
        );
    }

    /// Drops a partition and its undelivered records; a response for it in flight is ignored.
    pub fn unassign(&mut self, tp: &TopicPartition) {
        self.drop_buffered(tp);
        self.partitions.remove(tp);
    }

    /// Moves an assigned partition's position; undelivered records and a response in flight
    /// for the old position are dropped. Clears a halt or pending reset. Returns false when
    /// the partition is not assigned.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> bool {
        self.drop_buffered(tp);
        let Some(state) = self.partitions.get_mut(tp) else {
            return false;
        };
        state.position = Some(offset);
        state.reset = None;
        state.halted = false;
        state.retry_at = Instant::MIN;
        true
    }

    /// Asks for the partition's position to be reset by ListOffsets (earliest or latest) to
    /// its leader; [`FetchEvent::PositionReset`] follows. With [`OffsetResetPolicy::None`] it
    /// is a [`FetchError::NoOffset`] event and the partition waits for a seek. Returns false
    /// when the partition is not assigned.
    pub fn reset_position(&mut self, tp: &TopicPartition, policy: OffsetResetPolicy) -> bool {
        self.drop_buffered(tp);
        let Some(state) = self.partitions.get_mut(tp) else {
            return false;
        };
        state.position = None;
        state.retry_at = Instant::MIN;
        match ResetTarget::from_policy(policy) {
            Some(target) => {
                state.reset = Some(target);
                state.halted = false;
            }
            None => {
                state.reset = None;
                state.halted = true;
                self.events
                    .push_back(FetchEvent::Error(FetchError::NoOffset {
                        partition: tp.clone(),
                    }));
            }
        }
        true
    }

    /// Leaves a partition out of Fetches while `paused` (its task queue is full). A Fetch
    /// already in flight still delivers.
    pub fn set_paused(&mut self, tp: &TopicPartition, paused: bool) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.paused = paused;
        }
    }

    /// Copies leaders and leader epochs of the assigned partitions from `metadata`. A
    /// partition whose leader changed is fetched again without waiting for its backoff.
    pub fn update_leaders(&mut self, metadata: &Metadata) {
        for (tp, state) in &mut self.partitions {
            let leader = metadata.leader(tp);
            let epoch = metadata.leader_epoch(tp);
            if leader != state.leader || epoch != state.leader_epoch {
                if leader.is_some() && !state.halted {
                    state.retry_at = Instant::MIN;
                }
                state.leader = leader;
                state.leader_epoch = epoch;
            }
        }
    }

    /// The next fetch position of an assigned partition (`None` while unpositioned).
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(|state| state.position)
    }

    /// The end of an assigned partition as its last Fetch response without error said: the
    /// high watermark, or the last stable offset under read_committed (`None` before the first
    /// such response since it was assigned).
    pub fn end_offset(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(|state| state.end_offset)
    }

    /// The high watermark of an assigned partition in the last response without error.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions
            .get(tp)
            .and_then(|state| state.high_watermark)
    }

    /// The leader the fetcher uses for a partition.
    pub fn leader(&self, tp: &TopicPartition) -> Option<BrokerId> {
        self.partitions.get(tp).and_then(|state| state.leader)
    }

    /// The assigned partitions.
    pub fn assigned(&self) -> impl Iterator<Item = &TopicPartition> + '_ {
        self.partitions.keys()
    }

    /// The current per-partition byte limit of an assigned partition.
    pub fn partition_max_bytes(&self, tp: &TopicPartition) -> Option<i32> {
        self.partitions.get(tp).map(|state| state.max_bytes)
    }

    /// Stops fetching (and resetting) a partition until it is seeked, reset or reassigned.
    pub(super) fn halt(&mut self, tp: &TopicPartition) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.halted = true;
        }
    }

    /// Drops the partition's decoded records not taken yet.
    pub(super) fn drop_buffered(&mut self, tp: &TopicPartition) {
        self.ready.retain(|batch| &batch.partition != tp);
        if let Some(state) = self.partitions.get_mut(tp) {
            state.buffered = false;
        }
    }
}
