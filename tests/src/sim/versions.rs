//! The API version table the simulated brokers advertise in ApiVersions and enforce.

use std::collections::BTreeMap;

use kafka_protocol::messages::ApiKey;

/// Which APIs the simulated brokers serve, and at which versions.
///
/// Requests for an API or version outside this table close the connection (as a real broker
/// does when it cannot parse a request), except ApiVersions itself, which is answered with
/// `UNSUPPORTED_VERSION` and a v0 body so a client can retry at a version it sees advertised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersionTable {
    ranges: BTreeMap<i16, (i16, i16)>,
}

impl Default for ApiVersionTable {
    /// Every API the simulator implements, from `kafka-protocol`'s minimum version up to the
    /// last version that still names topics (no topic ids) or uses single-group requests.
    fn default() -> Self {
        let mut table = Self {
            ranges: BTreeMap::new(),
        };
        for (api, max) in [
            (ApiKey::ApiVersions, 3),
            (ApiKey::Metadata, 12),
            (ApiKey::Produce, 12),
            (ApiKey::Fetch, 12),
            (ApiKey::ListOffsets, 7),
            (ApiKey::FindCoordinator, 4),
            (ApiKey::JoinGroup, 9),
            (ApiKey::SyncGroup, 5),
            (ApiKey::Heartbeat, 4),
            (ApiKey::LeaveGroup, 5),
            (ApiKey::OffsetCommit, 8),
            (ApiKey::OffsetFetch, 7),
            (ApiKey::InitProducerId, 4),
            (ApiKey::CreateTopics, 7),
            // The transaction APIs at the versions of transaction version 0 (classic
            // transactions): AddPartitionsToTxn v4+ is inter-broker only, EndTxn v5 and
            // TxnOffsetCommit v5 belong to transaction version 2 (KIP-890).
            (ApiKey::AddPartitionsToTxn, 3),
            (ApiKey::AddOffsetsToTxn, 4),
            (ApiKey::EndTxn, 4),
            (ApiKey::TxnOffsetCommit, 4),
        ] {
            table.set(api, api.valid_versions().min, max);
        }
        table
    }
}

/// The APIs only a broker with transactions serves.
pub const TRANSACTION_APIS: [ApiKey; 4] = [
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
];

impl ApiVersionTable {
    /// The default table without [`TRANSACTION_APIS`]: a broker without transactions (like
    /// Tansu 0.6.0, which has no EndTxn). InitProducerId stays, as idempotence needs it.
    pub fn without_transactions() -> Self {
        let mut table = Self::default();
        for api in TRANSACTION_APIS {
            table.remove(api);
        }
        table
    }

    /// An empty table (nothing served; ApiVersions still answers, advertising nothing).
    pub fn empty() -> Self {
        Self {
            ranges: BTreeMap::new(),
        }
    }

    /// Serves `api` at `min..=max`, clamped to what `kafka-protocol` can decode and to what
    /// the simulator implements (callers may only narrow the default table).
    pub fn set(&mut self, api: ApiKey, min: i16, max: i16) -> &mut Self {
        let valid = api.valid_versions();
        let (min, max) = (min.max(valid.min), max.min(valid.max));
        if min <= max {
            self.ranges.insert(api as i16, (min, max));
        } else {
            self.ranges.remove(&(api as i16));
        }
        self
    }

    /// Stops serving `api` (it disappears from ApiVersions).
    pub fn remove(&mut self, api: ApiKey) -> &mut Self {
        self.ranges.remove(&(api as i16));
        self
    }

    /// The served range of `api`, if served.
    pub fn range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.ranges.get(&(api as i16)).copied()
    }

    /// Whether `api` is served at `version`.
    pub fn supports(&self, api: ApiKey, version: i16) -> bool {
        self.range(api)
            .is_some_and(|(min, max)| (min..=max).contains(&version))
    }

    /// `(api key, min, max)` in api key order.
    pub fn iter(&self) -> impl Iterator<Item = (i16, i16, i16)> + '_ {
        self.ranges.iter().map(|(&k, &(min, max))| (k, min, max))
    }
}
