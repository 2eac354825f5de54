//! A task's stores as its owner sees them: commits with changelog checkpoints, rollback, the
//! pending writes its changelogs carry, and restore.

use super::Task;
use crate::error::TaskError;
use crate::state::{Checkpoint, KvBackend, WriteBatch, WriteOp};

/// A task's stores, open, as (store name, backend) (see [`Task::close_keeping_stores`]).
pub type OpenStores = Vec<(String, Box<dyn KvBackend>)>;

impl Task {
    /// Closes the processors like [`Task::close`] and hands back the task's stores, still
    /// open, as (store name, backend) in topology order: for a standby that keeps the state
    /// (a memory store keeps its data and checkpoint only while open). Commit or roll back
    /// the stores first: their pending writes go with them.
    pub fn close_keeping_stores(mut self) -> (Result<(), TaskError>, OpenStores) {
        let closed = self.close_processors();
        let backends = std::mem::take(&mut self.state.stores);
        let stores = self
            .graph
            .stores
            .iter()
            .map(|def| def.name.clone())
            .zip(backends)
            .collect();
        (closed, stores)
    }

    /// Makes the stores' writes since the last commit durable, each store's with no new
    /// checkpoint (it keeps its last). Call after the output up to now is acknowledged and
    /// before committing [`Task::committable_offsets`].
    pub fn commit_stores(&mut self) -> Result<(), TaskError> {
        self.commit_stores_with(|_| None)
    }

    /// [`Task::commit_stores`] with a checkpoint per store: `checkpoint(store)` is the
    /// changelog position the store's state corresponds to after this commit (`None`: keep
    /// the last one). Each store commits its writes (frozen or not) and its checkpoint
    /// atomically.
    pub fn commit_stores_with(
        &mut self,
        checkpoint: impl Fn(&str) -> Option<Checkpoint>,
    ) -> Result<(), TaskError> {
        for store in &mut self.state.stores {
            // Everything: a frozen layer and the writes after it together.
            store.freeze();
        }
        self.commit_frozen_stores_with(checkpoint)
    }

    /// Freezes every store's writes since the last commit (see
    /// [`KvBackend::freeze`]): a pipelined commit persists
    /// them with [`Task::commit_frozen_stores_with`] once their changelog writes are
    /// acknowledged, while the task goes on writing. Take [`Task::changelog_writes`] first.
    pub fn freeze_stores(&mut self) {
        for store in &mut self.state.stores {
            store.freeze();
        }
    }

    /// Commits each store's frozen writes (only those; a store without a frozen layer
    /// commits its pending writes) with `checkpoint(store)`, atomically per store.
    pub fn commit_frozen_stores_with(
        &mut self,
        checkpoint: impl Fn(&str) -> Option<Checkpoint>,
    ) -> Result<(), TaskError> {
        let task = self.id();
        for store in &mut self.state.stores {
            let at = checkpoint(store.name());
            store
                .commit(at)
                .map_err(|source| TaskError::Store { task, source })?;
        }
        Ok(())
    }

    /// Discards the stores' writes since the last commit, frozen or not (after a failure).
    pub fn rollback_stores(&mut self) {
        for store in &mut self.state.stores {
            store.rollback();
        }
    }

    /// The names of the task's stores backed by a changelog topic.
    pub fn logged_stores(&self) -> impl Iterator<Item = &str> {
        self.graph
            .stores
            .iter()
            .filter(|def| def.logging)
            .map(|def| def.name.as_str())
    }

    /// Each logged store's writes since the last commit (one per key, in key order; deletes
    /// have no value): what its changelog must carry before the commit. Stores without
    /// writes are left out.
    pub fn changelog_writes(&self) -> Vec<(&str, Vec<WriteOp>)> {
        self.graph
            .stores
            .iter()
            .zip(&self.state.stores)
            .filter(|(def, _)| def.logging)
            .map(|(def, store)| (def.name.as_str(), store.pending_writes()))
            .filter(|(_, writes)| !writes.is_empty())
            .collect()
    }

    /// The checkpoint `store` committed last (`None`: never restored or committed with one).
    pub fn store_checkpoint(&self, store: &str) -> Result<Option<Checkpoint>, TaskError> {
        let task = self.id();
        self.backend(store)?
            .checkpoint()
            .map_err(|source| TaskError::Store { task, source })
    }

    /// Writes a batch read from `store`'s changelog straight into its durable state, with
    /// `checkpoint` (the changelog position after the batch), atomically.
    pub fn restore_store(
        &mut self,
        store: &str,
        batch: WriteBatch,
        checkpoint: Checkpoint,
    ) -> Result<(), TaskError> {
        let task = self.id();
        self.backend_mut(store)?
            .restore_batch(batch, checkpoint)
            .map_err(|source| TaskError::Store { task, source })
    }

    /// Stages a batch read from `store`'s changelog as a sorted run of a bulk restore into the
    /// empty store (see [`KvBackend::restore_run`]); nothing is visible before
    /// [`Task::finish_restore_runs`].
    pub fn restore_run(&mut self, store: &str, batch: WriteBatch) -> Result<(), TaskError> {
        let task = self.id();
        self.backend_mut(store)?
            .restore_run(batch)
            .map_err(|source| TaskError::Store { task, source })
    }

    /// Merges `store`'s staged runs into it with `checkpoint`, ending a bulk restore.
    pub fn finish_restore_runs(
        &mut self,
        store: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), TaskError> {
        let task = self.id();
        self.backend_mut(store)?
            .finish_restore_runs(checkpoint)
            .map_err(|source| TaskError::Store { task, source })
    }

    /// Deletes `store`'s data and checkpoint (its local state cannot be trusted).
    pub fn wipe_store(&mut self, store: &str) -> Result<(), TaskError> {
        let task = self.id();
        self.backend_mut(store)?
            .wipe()
            .map_err(|source| TaskError::Store { task, source })
    }

    fn slot(&self, store: &str) -> Result<usize, TaskError> {
        self.graph
            .stores
            .iter()
            .position(|def| def.name == store)
            .ok_or_else(|| TaskError::InvalidInput {
                task: self.id(),
                detail: format!("the task has no store `{store}`"),
            })
    }

    fn backend(&self, store: &str) -> Result<&dyn KvBackend, TaskError> {
        let slot = self.slot(store)?;
        Ok(self.state.stores[slot].as_ref())
    }

    fn backend_mut(&mut self, store: &str) -> Result<&mut dyn KvBackend, TaskError> {
        let slot = self.slot(store)?;
        Ok(self.state.stores[slot].as_mut())
    }
}
