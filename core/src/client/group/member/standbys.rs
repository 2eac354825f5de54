//! What the member reports about the state it has locally and what it gets back besides its
//! active tasks: the task offsets sent in every subscription, the standby tasks of an
//! assignment, and the follow-up rejoin an assignment may ask for.
//!
//! The follow-up: an assignment may carry a delay (a probing rebalance when the leader placed
//! warm-up replicas; a short one for the target owner of a task withheld until its holder
//! revoked it, see [`assignor`](crate::client::group::assignor)). The member then rejoins by
//! itself once the delay passed, as at a rebalance of its generation's protocol. Any new
//! generation cancels it (every assignment sets it again or not), and it waits while the
//! member is not stable or a cooperative revoke is pending (that revoke rejoins anyway). A
//! follow-up fires once per generation: should the coordinator answer the rejoin with the
//! same generation and assignment (no rebalance), the member does not loop.

use std::collections::BTreeMap;

use super::{GroupMember, Phase};
use crate::task::TaskId;
use crate::time::{Duration, Instant};

impl GroupMember {
    /// The engine's local state: for every task whose state it has locally (active or
    /// standby), the sum over the task's logged stores of the changelog position its copy
    /// reached. Sent in every following subscription (the leader computes lags from them);
    /// negative sums are dropped (an offset never is).
    pub fn set_task_offsets(&mut self, offsets: BTreeMap<TaskId, i64>) {
        let mut offsets = offsets;
        offsets.retain(|task, sum| {
            let valid = *sum >= 0;
            if !valid {
                tracing::warn!(%task, offset_sum = *sum, "negative task offset sum not reported");
            }
            valid
        });
        self.task_offsets = offsets;
    }

    /// The standbys the member has (as of its last assignment), sorted.
    pub fn standbys(&self) -> &[TaskId] {
        &self.standbys
    }

    /// When the member rejoins by itself for a follow-up its assignment asked for, if any.
    pub fn followup_at(&self) -> Option<Instant> {
        self.followup_at
    }

    /// The standbys of an assignment, sorted and without duplicates; a task also assigned
    /// active is dropped (a leader must never send one: logged, never kept).
    pub(super) fn take_standbys(&mut self, tasks: &[TaskId], standbys: Vec<TaskId>) -> Vec<TaskId> {
        let mut standbys = standbys;
        standbys.sort_unstable();
        standbys.dedup();
        standbys.retain(|task| {
            let active = tasks.contains(task);
            if active {
                tracing::warn!(%task, "assignment names a task both active and standby; kept active only");
            }
            !active
        });
        self.standbys = standbys.clone();
        standbys
    }

    /// Schedules (or cancels, with `None`) the follow-up rejoin of the assignment just taken.
    /// Not again for a generation whose follow-up already fired: the coordinator answered
    /// that rejoin with the same generation (no rebalance), and would again.
    pub(super) fn schedule_followup(&mut self, followup: Option<Duration>, now: Instant) {
        let repeated = self.followup_fired_in == Some(self.generation);
        if repeated && followup.is_some() {
            tracing::debug!(
                generation = self.generation,
                "follow-up of this generation already done: not scheduled again"
            );
        }
        self.followup_at = followup
            .filter(|_| !repeated)
            .map(|delay| now.saturating_add(delay));
        if let Some(at) = self.followup_at {
            tracing::info!(
                generation = self.generation,
                delay_ms = followup.map_or(0, Duration::as_millis),
                %at,
                "assignment asks for a follow-up rebalance"
            );
        }
    }

    /// Whether the follow-up rejoin is due at `now`: stable, no revoke pending, deadline past.
    pub(super) fn followup_due(&self, now: Instant) -> bool {
        self.phase == Phase::Stable
            && self.revoke_pending.is_none()
            && self.followup_at.is_some_and(|at| now >= at)
    }

    /// The follow-up deadline while it can fire (for [`GroupMember::poll_timeout`]).
    pub(super) fn followup_deadline(&self) -> Option<Instant> {
        self.followup_at
            .filter(|_| self.phase == Phase::Stable && self.revoke_pending.is_none())
    }

    /// Rejoins for the follow-up, as at a rebalance of the generation's protocol.
    pub(super) fn start_followup(&mut self, now: Instant) {
        self.followup_at = None;
        self.followup_fired_in = Some(self.generation);
        tracing::info!(
            generation = self.generation,
            "rejoining for the follow-up rebalance the assignment asked for"
        );
        self.start_rebalance(now);
    }
}
