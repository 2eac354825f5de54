//! Applying Fetch and ListOffsets answers: decoded records and new positions per partition,
//! partition and broker errors, and requests that got no answer.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchResponse, ListOffsetsResponse, ResponseKind};

use super::config::ResetTarget;
use super::{FetchError, FetchEvent, FetchedBatch, Fetcher};
use crate::client::metadata::response_api;
use crate::client::{BrokerId, Target};
use crate::record::{Header, Headers, RawRecord, TopicPartition};
use crate::time::Instant;
use crate::wire::records::{
    AbortedTransaction, DecodedRecord, DecompressBudget, FetchedPartition, IsolationLevel,
    WireRecord, decode_fetched_records_within,
};

impl Fetcher {
    /// Handles the answer to a Fetch or ListOffsets from [`poll_request`](Self::poll_request).
    /// Problems of single partitions become events; the error is for responses this component
    /// cannot have asked for.
    pub fn handle_response(
        &mut self,
        from: BrokerId,
        response: ResponseKind,
        now: Instant,
    ) -> Result<(), FetchError> {
        match response {
            ResponseKind::Fetch(response) => self.handle_fetch_response(from, response, now),
            ResponseKind::ListOffsets(response) => {
                self.handle_list_offsets_response(from, response, now)
            }
            other => Err(FetchError::UnexpectedResponse {
                from,
                api: response_api(&other),
            }),
        }
    }

    /// A request from [`poll_request`](Self::poll_request) got no answer: its broker is
    /// backed off, its partitions are fetched (or reset) again afterwards, and a metadata
    /// refresh is asked for.
    pub fn handle_request_failed(&mut self, target: Target, api: ApiKey, now: Instant) {
        self.observe(now);
        debug_assert!(
            matches!(target, Target::Broker(_)),
            "the fetcher sends to partition leaders only, not {target:?}"
        );
        let Target::Broker(broker) = target else {
            return;
        };
        let removed = match api {
            ApiKey::Fetch => self.fetches.remove(&broker).is_some(),
            ApiKey::ListOffsets => self.list_offsets.remove(&broker).is_some(),
            _ => false,
        };
        if removed {
            tracing::debug!(broker, ?api, "request failed; backing off");
            self.broker_retry_at
                .insert(broker, self.now + self.config.retry_backoff);
            self.events.push_back(FetchEvent::MetadataRefreshNeeded {
                reason: format!("{api:?} request to broker {broker} failed"),
            });
        }
    }

    /// Handles a Fetch response (see [`handle_response`](Self::handle_response)).
    pub fn handle_fetch_response(
        &mut self,
        from: BrokerId,
        response: FetchResponse,
        now: Instant,
    ) -> Result<(), FetchError> {
        self.observe(now);
        let in_flight = self.fetches.remove(&from).ok_or(FetchError::NotInFlight {
            from,
            api: ApiKey::Fetch,
        })?;
        if response.error_code != 0 {
            let error = ResponseError::try_from_code(response.error_code)
                .unwrap_or(ResponseError::Unknown(response.error_code));
            tracing::warn!(from, %error, "Fetch failed as a whole");
            self.broker_retry_at
                .insert(from, self.now + self.config.retry_backoff);
            self.events.push_back(FetchEvent::Error(FetchError::Broker {
                broker: from,
                error,
            }));
            return Ok(());
        }
        // The partitions share one decompression budget, in the order the request listed
        // them (rotated from one Fetch to the next, so a partition left over budget is not
        // always the last served).
        let mut budget =
            DecompressBudget::new(self.config.decode_limits.max_decompressed_response_bytes);
        for topic in response.responses {
            let name: std::sync::Arc<str> = topic.topic.0.as_str().into();
            for partition in topic.partitions {
                let tp = TopicPartition::new(name.clone(), partition.partition_index);
                // A broker may answer for a partition the request did not ask for.
                let Some(&sent_offset) = in_flight.offsets.get(&tp) else {
                    tracing::debug!(%tp, "Fetch response for a partition not asked for");
                    continue;
                };
                self.apply_partition(from, tp, sent_offset, partition, &mut budget);
            }
        }
        Ok(())
    }

    /// Applies one partition of a Fetch response asked at `sent_offset`.
    fn apply_partition(
        &mut self,
        from: BrokerId,
        tp: TopicPartition,
        sent_offset: i64,
        data: PartitionData,
        budget: &mut DecompressBudget,
    ) {
        // Unassigned while the Fetch was in flight.
        let Some(state) = self.partitions.get_mut(&tp) else {
            tracing::debug!(%tp, "Fetch data for an unassigned partition discarded");
            return;
        };
        if state.position != Some(sent_offset) || state.reset.is_some() || state.halted {
            tracing::debug!(%tp, sent_offset, position = ?state.position, "stale Fetch data discarded");
            return;
        }
        if data.error_code != 0 {
            let error = ResponseError::try_from_code(data.error_code)
                .unwrap_or(ResponseError::Unknown(data.error_code));
            self.partition_error(from, &tp, ApiKey::Fetch, sent_offset, error);
            return;
        }
        let aborted: Vec<AbortedTransaction> = data
            .aborted_transactions
            .iter()
            .flatten()
            .map(AbortedTransaction::from)
            .collect();
        let empty = bytes::Bytes::new();
        let records = data.records.as_ref().unwrap_or(&empty);
        let decoded = decode_fetched_records_within::<RawRecord>(
            &FetchedPartition {
                partition: tp.partition,
                fetch_offset: sent_offset,
                records,
                isolation: self.config.isolation,
                aborted_transactions: &aborted,
            },
            &self.config.decode_limits,
            budget,
        );
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(source) => {
                let offset = source.base_offset.unwrap_or(sent_offset);
                tracing::warn!(%tp, offset, %source, "corrupt record data");
                state.halted = true;
                self.events
                    .push_back(FetchEvent::Error(FetchError::CorruptRecords {
                        partition: tp,
                        offset,
                        source,
                    }));
                return;
            }
        };
        // Under read_committed the end is the last stable offset (brokers before Fetch v4 do
        // not send one: -1).
        let end = match self.config.isolation {
            IsolationLevel::ReadCommitted if data.last_stable_offset >= 0 => {
                data.last_stable_offset
            }
            _ => data.high_watermark,
        };
        state.end_offset = Some(end);
        state.high_watermark = Some(data.high_watermark);
        let stalled = decoded.is_stalled();
        let truncated_len = decoded.truncated.and_then(|t| t.batch_len);
        state.position = Some(decoded.next_offset);
        if stalled {
            let limit = self.config.partition_max_bytes_limit;
            let limit_bytes = usize::try_from(limit).unwrap_or(0);
            if let Some(batch_len) = truncated_len.filter(|&len| len > limit_bytes) {
                // Growing without bound would let one broker answer make us ask for (and
                // hold) gigabytes.
                tracing::warn!(%tp, offset = sent_offset, batch_len, limit, "record batch above the fetch size limit");
                state.position = Some(sent_offset);
                state.halted = true;
                self.events
                    .push_back(FetchEvent::Error(FetchError::BatchTooLarge {
                        partition: tp,
                        offset: sent_offset,
                        batch_len,
                        limit,
                    }));
                return;
            }
            let wanted = truncated_len
                .and_then(|len| i32::try_from(len).ok())
                .unwrap_or(0);
            let raised = state.max_bytes.saturating_mul(2).max(wanted).min(limit);
            state.max_bytes = raised;
            tracing::warn!(%tp, offset = sent_offset, raised, "partition max bytes below one batch; raised");
            self.events.push_back(FetchEvent::PartitionMaxBytesRaised {
                partition: tp.clone(),
                offset: sent_offset,
                partition_max_bytes: raised,
            });
        }
        if !decoded.records.is_empty() {
            state.buffered = true;
            self.ready.push_back(FetchedBatch {
                partition: tp,
                records: decoded.records,
                high_watermark: data.high_watermark,
            });
        }
    }

    /// Reacts to a partition-level error of a Fetch or ListOffsets.
    fn partition_error(
        &mut self,
        from: BrokerId,
        tp: &TopicPartition,
        api: ApiKey,
        offset: i64,
        error: ResponseError,
    ) {
        let retry_at = self.now + self.config.retry_backoff;
        if is_leadership_error(error) {
            tracing::debug!(%tp, from, %error, "leadership error; metadata refresh needed");
            if let Some(state) = self.partitions.get_mut(tp) {
                state.retry_at = retry_at;
            }
            self.events.push_back(FetchEvent::MetadataRefreshNeeded {
                reason: format!("{api:?} {tp} on broker {from}: {error}"),
            });
        } else if error == ResponseError::OffsetOutOfRange && api == ApiKey::Fetch {
            let policy = self
                .partitions
                .get(tp)
                .map_or(self.config.offset_reset, |state| state.out_of_range);
            match ResetTarget::from_policy(policy) {
                Some(target) => {
                    tracing::info!(%tp, offset, ?target, "offset out of range; resetting");
                    if let Some(state) = self.partitions.get_mut(tp) {
                        state.position = None;
                        state.reset = Some(target);
                    }
                }
                None => {
                    self.halt(tp);
                    self.events
                        .push_back(FetchEvent::Error(FetchError::OffsetOutOfRange {
                            partition: tp.clone(),
                            offset,
                        }));
                }
            }
        } else {
            tracing::warn!(%tp, from, %error, ?api, "partition error");
            if error.is_retriable() {
                if let Some(state) = self.partitions.get_mut(tp) {
                    state.retry_at = retry_at;
                }
            } else {
                self.halt(tp);
            }
            self.events
                .push_back(FetchEvent::Error(FetchError::Partition {
                    partition: tp.clone(),
                    api,
                    error,
                }));
        }
    }

    /// Handles a ListOffsets response (see [`handle_response`](Self::handle_response)).
    pub fn handle_list_offsets_response(
        &mut self,
        from: BrokerId,
        response: ListOffsetsResponse,
        now: Instant,
    ) -> Result<(), FetchError> {
        self.observe(now);
        let in_flight = self
            .list_offsets
            .remove(&from)
            .ok_or(FetchError::NotInFlight {
                from,
                api: ApiKey::ListOffsets,
            })?;
        for topic in response.topics {
            let name: std::sync::Arc<str> = topic.name.0.as_str().into();
            for partition in topic.partitions {
                let tp = TopicPartition::new(name.clone(), partition.partition_index);
                // A broker may answer for a partition the request did not ask for.
                let Some(&target) = in_flight.targets.get(&tp) else {
                    continue;
                };
                // Unassigned while the request was in flight.
                let Some(state) = self.partitions.get_mut(&tp) else {
                    continue;
                };
                if state.reset != Some(target) || state.halted {
                    tracing::debug!(%tp, "stale ListOffsets answer discarded");
                    continue;
                }
                if partition.error_code != 0 {
                    let error = ResponseError::try_from_code(partition.error_code)
                        .unwrap_or(ResponseError::Unknown(partition.error_code));
                    self.partition_error(from, &tp, ApiKey::ListOffsets, -1, error);
                    continue;
                }
                if partition.offset < 0 {
                    tracing::warn!(%tp, offset = partition.offset, "ListOffsets gave no offset; retrying");
                    state.retry_at = self.now + self.config.retry_backoff;
                    continue;
                }
                state.reset = None;
                state.position = Some(partition.offset);
                state.retry_at = Instant::MIN;
                tracing::info!(%tp, offset = partition.offset, ?target, "position reset");
                self.events.push_back(FetchEvent::PositionReset {
                    partition: tp,
                    offset: partition.offset,
                });
            }
        }
        Ok(())
    }
}

/// Errors after which the partition's leader must be looked up again.
fn is_leadership_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::ReplicaNotAvailable
            | ResponseError::KafkaStorageError
            | ResponseError::UnknownTopicId
            | ResponseError::InconsistentTopicId
    )
}

/// A decoded record as a task takes it, built by the decoder itself (keys and values stay
/// slices, no copy, no conversion pass).
impl DecodedRecord for RawRecord {
    fn from_wire(record: WireRecord<'_>) -> Self {
        let headers = if record.headers.is_empty() {
            Headers::new()
        } else {
            record
                .headers
                .iter()
                .map(|(key, value)| Header {
                    key: key.as_str().to_owned(),
                    value,
                })
                .collect()
        };
        RawRecord {
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key,
            value: record.value,
            headers,
        }
    }
}
