//! Our own data inside the embedded consumer protocol: the `user_data` of subscriptions and
//! of assignments, every version (layouts in the [parent module](super)).

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolError;
use super::reader::Reader;
use crate::task::TaskId;
use crate::time::Duration;

/// Subscription `user_data`: claimed tasks only (also the assignment's version 1).
pub const USER_DATA_VERSION: u8 = 1;
/// Subscription `user_data`: claimed and held tasks.
pub const USER_DATA_VERSION_HELD: u8 = 2;
/// Subscription `user_data`: claimed and held tasks, process id and task offsets. A member
/// writing it reads assignments of [`ASSIGNMENT_USER_DATA_VERSION_STANDBYS`].
pub const USER_DATA_VERSION_STATE: u8 = 3;
/// Assignment `user_data`: active tasks, standby tasks and the follow-up delay.
pub const ASSIGNMENT_USER_DATA_VERSION_STANDBYS: u8 = 2;

/// The `followup_ms` of an assignment without a follow-up.
const NO_FOLLOWUP: i32 = -1;

/// A subscription's `user_data`, any version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionUserData {
    /// Claimed tasks (owned in the subscription's generation).
    pub tasks: Vec<TaskId>,
    /// Tasks held through a cooperative rebalance (version 2+).
    pub held: Vec<TaskId>,
    /// The member's process id, `""` when unknown (version 3).
    pub process_id: String,
    /// Per task with local state, the sum of its logged stores' changelog positions
    /// (version 3).
    pub offsets: BTreeMap<TaskId, i64>,
    /// Version 3: the layout with process id and offsets, written by every member that reads
    /// assignments with standbys and follow-ups. Without it: version 1, or 2 when tasks are
    /// held (what a kstreams before standbys writes), which cannot carry a process id or
    /// offsets.
    pub state_aware: bool,
}

/// An assignment's `user_data`, either version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssignmentUserData {
    /// Active tasks.
    pub tasks: Vec<TaskId>,
    /// Standby (and warm-up) tasks (version 2).
    pub standbys: Vec<TaskId>,
    /// Rejoin after this long (version 2; saturating at `i32::MAX` ms on the wire).
    pub followup: Option<Duration>,
}

/// Encodes task ids as `user_data` version 1.
pub fn encode_task_user_data(tasks: &[TaskId]) -> Result<Bytes, ProtocolError> {
    let mut buf = BytesMut::with_capacity(5 + tasks.len() * 8);
    buf.put_u8(USER_DATA_VERSION);
    put_tasks(&mut buf, tasks)?;
    Ok(buf.freeze())
}

/// Decodes `user_data` version 1 (what a kstreams without held tasks reads): any other
/// version is [`ProtocolError::UnknownUserDataVersion`].
pub fn decode_task_user_data(data: &[u8]) -> Result<Vec<TaskId>, ProtocolError> {
    let mut reader = Reader::new(data);
    let version = reader.u8()?;
    if version != USER_DATA_VERSION {
        return Err(ProtocolError::UnknownUserDataVersion(version));
    }
    let tasks = reader.tasks()?;
    finish(&reader)?;
    Ok(tasks)
}

/// Encodes a subscription's `user_data`: version 3 when `state_aware`, else version 1, or 2
/// when tasks are held (then a process id or offsets are
/// [`ProtocolError::NotInUserDataVersion`]).
pub fn encode_subscription_user_data(data: &SubscriptionUserData) -> Result<Bytes, ProtocolError> {
    let version = if data.state_aware {
        USER_DATA_VERSION_STATE
    } else if data.held.is_empty() {
        USER_DATA_VERSION
    } else {
        USER_DATA_VERSION_HELD
    };
    if !data.state_aware && (!data.process_id.is_empty() || !data.offsets.is_empty()) {
        return Err(ProtocolError::NotInUserDataVersion(version));
    }
    let mut buf = BytesMut::with_capacity(
        15 + data.process_id.len()
            + (data.tasks.len() + data.held.len()) * 8
            + data.offsets.len() * 16,
    );
    buf.put_u8(version);
    put_tasks(&mut buf, &data.tasks)?;
    if version >= USER_DATA_VERSION_HELD {
        put_tasks(&mut buf, &data.held)?;
    }
    if version >= USER_DATA_VERSION_STATE {
        put_string(&mut buf, &data.process_id)?;
        put_offsets(&mut buf, &data.offsets)?;
    }
    Ok(buf.freeze())
}

/// Decodes a subscription's `user_data`, version 1, 2 or 3.
pub fn decode_subscription_user_data(data: &[u8]) -> Result<SubscriptionUserData, ProtocolError> {
    let mut reader = Reader::new(data);
    let version = reader.u8()?;
    if !(USER_DATA_VERSION..=USER_DATA_VERSION_STATE).contains(&version) {
        return Err(ProtocolError::UnknownUserDataVersion(version));
    }
    let mut decoded = SubscriptionUserData {
        tasks: reader.tasks()?,
        state_aware: version >= USER_DATA_VERSION_STATE,
        ..SubscriptionUserData::default()
    };
    if version >= USER_DATA_VERSION_HELD {
        decoded.held = reader.tasks()?;
    }
    if version >= USER_DATA_VERSION_STATE {
        decoded.process_id = reader.string_value()?;
        decoded.offsets = reader.task_offsets()?;
    }
    finish(&reader)?;
    Ok(decoded)
}

/// Encodes an assignment's `user_data`: version 2 when there are standbys or a follow-up,
/// else version 1 (which every kstreams reads).
pub fn encode_assignment_user_data(data: &AssignmentUserData) -> Result<Bytes, ProtocolError> {
    if data.standbys.is_empty() && data.followup.is_none() {
        return encode_task_user_data(&data.tasks);
    }
    let mut buf = BytesMut::with_capacity(13 + (data.tasks.len() + data.standbys.len()) * 8);
    buf.put_u8(ASSIGNMENT_USER_DATA_VERSION_STANDBYS);
    put_tasks(&mut buf, &data.tasks)?;
    put_tasks(&mut buf, &data.standbys)?;
    buf.put_i32(data.followup.map_or(NO_FOLLOWUP, Duration::as_millis_i32));
    Ok(buf.freeze())
}

/// Decodes an assignment's `user_data`, version 1 or 2.
pub fn decode_assignment_user_data(data: &[u8]) -> Result<AssignmentUserData, ProtocolError> {
    let mut reader = Reader::new(data);
    let version = reader.u8()?;
    if version != USER_DATA_VERSION && version != ASSIGNMENT_USER_DATA_VERSION_STANDBYS {
        return Err(ProtocolError::UnknownUserDataVersion(version));
    }
    let mut decoded = AssignmentUserData {
        tasks: reader.tasks()?,
        ..AssignmentUserData::default()
    };
    if version == ASSIGNMENT_USER_DATA_VERSION_STANDBYS {
        decoded.standbys = reader.tasks()?;
        let followup_ms = reader.i32()?;
        decoded.followup = match followup_ms {
            NO_FOLLOWUP => None,
            ms => Some(Duration::from_millis(
                u64::try_from(ms).map_err(|_| ProtocolError::InvalidFollowup(ms))?,
            )),
        };
    }
    finish(&reader)?;
    Ok(decoded)
}

fn finish(reader: &Reader<'_>) -> Result<(), ProtocolError> {
    match reader.remaining() {
        0 => Ok(()),
        n => Err(ProtocolError::TrailingBytes(n)),
    }
}

fn put_count(buf: &mut BytesMut, count: usize) -> Result<(), ProtocolError> {
    let count = i32::try_from(count).map_err(|_| ProtocolError::InvalidLength {
        offset: buf.len(),
        length: i32::MAX,
    })?;
    buf.put_i32(count);
    Ok(())
}

fn put_task(buf: &mut BytesMut, task: TaskId) -> Result<(), ProtocolError> {
    let sub = i32::try_from(task.subtopology).map_err(|_| ProtocolError::InvalidTaskId {
        subtopology: i64::try_from(task.subtopology).unwrap_or(i64::MAX),
        partition: task.partition,
    })?;
    buf.put_i32(sub);
    buf.put_i32(task.partition);
    Ok(())
}

fn put_tasks(buf: &mut BytesMut, tasks: &[TaskId]) -> Result<(), ProtocolError> {
    put_count(buf, tasks.len())?;
    tasks.iter().try_for_each(|&task| put_task(buf, task))
}

fn put_string(buf: &mut BytesMut, value: &str) -> Result<(), ProtocolError> {
    let length = i16::try_from(value.len()).map_err(|_| ProtocolError::InvalidLength {
        offset: buf.len(),
        length: i32::try_from(value.len()).unwrap_or(i32::MAX),
    })?;
    buf.put_i16(length);
    buf.put_slice(value.as_bytes());
    Ok(())
}

fn put_offsets(buf: &mut BytesMut, offsets: &BTreeMap<TaskId, i64>) -> Result<(), ProtocolError> {
    put_count(buf, offsets.len())?;
    for (&task, &offset_sum) in offsets {
        if offset_sum < 0 {
            return Err(ProtocolError::InvalidOffsetSum { task, offset_sum });
        }
        put_task(buf, task)?;
        buf.put_i64(offset_sum);
    }
    Ok(())
}
