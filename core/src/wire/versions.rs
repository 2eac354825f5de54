//! API version negotiation: from a broker's ApiVersions response, the version of every API that
//! both sides speak.
//!
//! Our side of each range is what `kafka-protocol` can encode and decode
//! ([`ApiKey::valid_versions`]), optionally lowered by a per-API cap in [`VersionPolicy`] (for
//! when higher layers only understand requests up to some version). The broker's side is its
//! ApiVersions response. The negotiated range is the intersection; requests use its maximum
//! unless the caller asks for a lower one inside it.

use std::collections::BTreeMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

/// Which APIs a connection must have and how far we are willing to go per API.
#[derive(Debug, Clone, Default)]
pub struct VersionPolicy {
    required: Vec<ApiKey>,
    caps: BTreeMap<i16, i16>,
}

impl VersionPolicy {
    /// A policy with no required APIs and no caps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `apis`: negotiation fails, naming the API, if the broker lacks one of them or
    /// shares no version of it with us.
    pub fn require(mut self, apis: impl IntoIterator<Item = ApiKey>) -> Self {
        self.required.extend(apis);
        self
    }

    /// Never uses a version of `api` above `max_version`. Caps add up: with two caps on one
    /// API the lower holds.
    pub fn cap(mut self, api: ApiKey, max_version: i16) -> Self {
        let cap = self.caps.entry(api as i16).or_insert(max_version);
        *cap = (*cap).min(max_version);
        self
    }

    /// The APIs negotiation insists on.
    pub fn required(&self) -> &[ApiKey] {
        &self.required
    }

    /// Our supported range for `api`: the crate's range, with the cap applied to its maximum.
    pub fn our_range(&self, api: ApiKey) -> VersionRange {
        let mut range = api.valid_versions();
        if let Some(&cap) = self.caps.get(&(api as i16)) {
            range.max = range.max.min(cap);
        }
        range
    }
}

/// Why no usable version table came out of the ApiVersions exchange.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NegotiationError {
    /// The broker does not list a required API at all.
    #[error("broker does not support required API {api:?} (key {})", *api as i16)]
    MissingApi {
        /// The missing API.
        api: ApiKey,
    },
    /// The broker lists a required API but no version of it overlaps with ours.
    #[error(
        "no common version of required API {api:?}: broker supports {broker}, we support {ours}"
    )]
    NoCommonVersion {
        /// The API without a common version.
        api: ApiKey,
        /// The broker's advertised range.
        broker: VersionRange,
        /// Our range (crate range with caps applied).
        ours: VersionRange,
    },
    /// The ApiVersions response carried an error code other than a version mismatch.
    #[error("ApiVersions failed with broker error code {error_code}")]
    BrokerError {
        /// The Kafka error code.
        error_code: i16,
    },
    /// The ApiVersions response body could not be decoded.
    #[error("malformed ApiVersions v{version} response: {detail}")]
    MalformedResponse {
        /// The version it was decoded at.
        version: i16,
        /// The decoder's message.
        detail: String,
    },
    /// The broker rejected our ApiVersions request version even after falling back to the
    /// version it advertised.
    #[error("broker rejected ApiVersions v{version} as unsupported after the fallback")]
    ApiVersionsUnsupported {
        /// The version of the rejected retry.
        version: i16,
    },
}

/// One API's versions after negotiation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NegotiatedApi {
    /// What the broker advertised.
    pub broker: VersionRange,
    /// The versions both sides support; never empty.
    pub usable: VersionRange,
}

/// The per-API version table of one broker connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NegotiatedVersions {
    apis: BTreeMap<i16, NegotiatedApi>,
}

impl NegotiatedVersions {
    /// Computes the table from a successful ApiVersions response. APIs the broker lists that the
    /// crate does not know, and APIs without a common version, are left out; a required API
    /// left out is an error.
    pub fn negotiate(
        response: &ApiVersionsResponse,
        policy: &VersionPolicy,
    ) -> Result<Self, NegotiationError> {
        if response.error_code != 0 {
            return Err(NegotiationError::BrokerError {
                error_code: response.error_code,
            });
        }
        let mut apis = BTreeMap::new();
        let mut broker_ranges = BTreeMap::new();
        for entry in &response.api_keys {
            let Ok(api) = ApiKey::try_from(entry.api_key) else {
                continue;
            };
            let broker = VersionRange {
                min: entry.min_version,
                max: entry.max_version,
            };
            broker_ranges.insert(entry.api_key, broker);
            let usable = broker.intersect(&policy.our_range(api));
            if !usable.is_empty() {
                apis.insert(entry.api_key, NegotiatedApi { broker, usable });
            }
        }
        for &api in policy.required() {
            if apis.contains_key(&(api as i16)) {
                continue;
            }
            return Err(match broker_ranges.get(&(api as i16)) {
                None => NegotiationError::MissingApi { api },
                Some(&broker) => NegotiationError::NoCommonVersion {
                    api,
                    broker,
                    ours: policy.our_range(api),
                },
            });
        }
        Ok(Self { apis })
    }

    /// The highest version of `api` both sides support, if any.
    pub fn version(&self, api: ApiKey) -> Option<i16> {
        self.get(api).map(|negotiated| negotiated.usable.max)
    }

    /// The negotiated entry for `api`, if both sides support some version of it.
    pub fn get(&self, api: ApiKey) -> Option<NegotiatedApi> {
        self.apis.get(&(api as i16)).copied()
    }

    /// Every usable API with its negotiated entry, by API key.
    pub fn iter(&self) -> impl Iterator<Item = (ApiKey, NegotiatedApi)> + '_ {
        self.apis
            .iter()
            .filter_map(|(&key, &entry)| ApiKey::try_from(key).ok().map(|api| (api, entry)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    pub(crate) fn response(entries: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(
            entries
                .iter()
                .map(|&(api, min, max)| {
                    ApiVersion::default()
                        .with_api_key(api as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
    }

    #[test]
    fn picks_highest_common_version_per_api() {
        let ours = ApiKey::Fetch.valid_versions();
        let table = NegotiatedVersions::negotiate(
            &response(&[(ApiKey::Fetch, 0, ours.max + 5), (ApiKey::Metadata, 0, 7)]),
            &VersionPolicy::new(),
        )
        .unwrap();
        assert_eq!(table.version(ApiKey::Fetch), Some(ours.max));
        assert_eq!(table.version(ApiKey::Metadata), Some(7));
        assert_eq!(table.get(ApiKey::Fetch).unwrap().usable.min, ours.min);
        assert_eq!(table.version(ApiKey::Produce), None);
    }

    #[test]
    fn cap_lowers_the_negotiated_version() {
        let table = NegotiatedVersions::negotiate(
            &response(&[(ApiKey::Metadata, 0, 12)]),
            &VersionPolicy::new().cap(ApiKey::Metadata, 9),
        )
        .unwrap();
        assert_eq!(table.version(ApiKey::Metadata), Some(9));
    }

    #[test]
    fn missing_required_api_is_named() {
        let err = NegotiatedVersions::negotiate(
            &response(&[(ApiKey::Metadata, 0, 12)]),
            &VersionPolicy::new().require([ApiKey::Metadata, ApiKey::JoinGroup]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            NegotiationError::MissingApi {
                api: ApiKey::JoinGroup
            }
        );
        assert!(err.to_string().contains("JoinGroup"), "{err}");
    }

    #[test]
    fn required_api_without_overlap_reports_both_ranges() {
        // Produce is 3..=13 in kafka-protocol 0.18; a broker offering only v0..v2 shares none.
        let err = NegotiatedVersions::negotiate(
            &response(&[(ApiKey::Produce, 0, 2)]),
            &VersionPolicy::new().require([ApiKey::Produce]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            NegotiationError::NoCommonVersion {
                api: ApiKey::Produce,
                broker: VersionRange { min: 0, max: 2 },
                ours: ApiKey::Produce.valid_versions(),
            }
        );
    }

    #[test]
    fn unknown_api_keys_from_newer_brokers_are_ignored() {
        let mut resp = response(&[(ApiKey::Metadata, 0, 12)]);
        resp.api_keys.push(
            ApiVersion::default()
                .with_api_key(9999)
                .with_min_version(0)
                .with_max_version(1),
        );
        let table = NegotiatedVersions::negotiate(&resp, &VersionPolicy::new()).unwrap();
        assert_eq!(table.iter().count(), 1);
    }

    #[test]
    fn broker_error_code_fails_negotiation() {
        let resp = response(&[]).with_error_code(31);
        assert_eq!(
            NegotiatedVersions::negotiate(&resp, &VersionPolicy::new()),
            Err(NegotiationError::BrokerError { error_code: 31 })
        );
    }
}
