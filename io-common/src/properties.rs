//! [`StreamsConfig`] from Kafka-style properties: the names Kafka Streams, the Java clients
//! and librdkafka use (`bootstrap.servers`, `commit.interval.ms`, `security.protocol`, …),
//! from a map ([`StreamsConfig::from_properties`]) or a Java properties file
//! ([`StreamsConfig::from_properties_file`]).
//!
//! Every property this module knows is in [`PROPERTIES`] with what it sets. A property not
//! in that table, a value that does not parse, or a combination that cannot work (SASL
//! settings under `security.protocol=PLAINTEXT`, a key without a certificate) is a
//! [`PropertiesError`] naming the property: a typo must not silently fall back to a default.
//! Values of secret properties (`sasl.password`, `sasl.jaas.config`, …) never appear in an
//! error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kstreams_core::engine::{EngineConfig, ProcessingGuarantee};
use kstreams_core::time::Duration;

use crate::config::StreamsConfig;
use crate::security::{self, SecuritySettings};

mod table;

use table::Target;
pub use table::{PROPERTIES, Property};

/// Why properties could not become a [`StreamsConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropertiesError {
    /// The properties file could not be read.
    #[error("cannot read properties file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O or syntax error.
        reason: String,
    },
    /// A property kstreams does not know (see [`PROPERTIES`]).
    #[error("unknown property `{property}`{}", location(.line))]
    Unknown {
        /// Its name.
        property: String,
        /// Its line in the properties file (from 1), if it came from a file.
        line: Option<usize>,
    },
    /// A required property is missing.
    #[error("missing required property `{property}`")]
    Missing {
        /// Its name.
        property: &'static str,
    },
    /// A property's value is not valid (secret values are not repeated here).
    #[error("invalid value for `{property}`{}: {reason}", location(.line))]
    Invalid {
        /// Its name.
        property: String,
        /// Its line in the properties file (from 1), if it came from a file.
        line: Option<usize>,
        /// What is wrong, with the value unless the property is secret.
        reason: String,
    },
    /// A property given twice in one file.
    #[error("property `{property}` given twice (lines {first} and {second})")]
    Duplicate {
        /// Its name.
        property: String,
        /// The line of its first value.
        first: usize,
        /// The line of its second value.
        second: usize,
    },
}

fn location(line: &Option<usize>) -> String {
    line.map(|n| format!(" (line {n})")).unwrap_or_default()
}

impl StreamsConfig {
    /// The configuration the properties `props` describe (names as in [`PROPERTIES`]); the
    /// defaults of [`StreamsConfig::new`] for every property not given, except that, as in
    /// Kafka Streams, `commit.interval.ms` defaults to 100 under `exactly_once_v2` (30 s
    /// otherwise). `application.id` and `bootstrap.servers` are required.
    ///
    /// ```
    /// use kstreams_io_common::StreamsConfig;
    ///
    /// let config = StreamsConfig::from_properties([
    ///     ("application.id", "word-count"),
    ///     ("bootstrap.servers", "kafka-1:9092,kafka-2:9092"),
    ///     ("commit.interval.ms", "100"),
    ///     ("num.stream.threads", "2"),
    /// ])?;
    /// assert_eq!(config.num_stream_threads, 2);
    /// assert!(StreamsConfig::from_properties([("bootstrap.server", "x:1")]).is_err());
    /// # Ok::<(), kstreams_io_common::PropertiesError>(())
    /// ```
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        props: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, PropertiesError> {
        let entries = props
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned(), None))
            .collect::<Vec<_>>();
        build(entries)
    }

    /// The configuration in the Java properties file at `path` (`key=value` or `key: value`
    /// lines, `#`/`!` comments, `\` continuations and escapes, UTF-8), as
    /// [`StreamsConfig::from_properties`]; errors name the line. A property given twice is
    /// an error.
    pub fn from_properties_file(path: impl AsRef<Path>) -> Result<Self, PropertiesError> {
        build(read_properties_file(path.as_ref())?)
    }
}

/// The `(key, value, line)` entries of a properties file, in order; a key given twice is an
/// error.
pub fn read_properties_file(
    path: &Path,
) -> Result<Vec<(String, String, Option<usize>)>, PropertiesError> {
    let read_error = |reason: String| PropertiesError::Read {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| read_error(e.to_string()))?;
    let mut entries = Vec::new();
    let mut lines_of: BTreeMap<String, usize> = BTreeMap::new();
    for line in java_properties::PropertiesIter::new_with_encoding(
        std::io::BufReader::new(file),
        encoding_rs::UTF_8,
    ) {
        let line = line.map_err(|e| read_error(e.to_string()))?;
        let number = line.line_number();
        if let java_properties::LineContent::KVPair(key, value) = line.consume_content() {
            if let Some(first) = lines_of.insert(key.clone(), number) {
                return Err(PropertiesError::Duplicate {
                    property: key,
                    first,
                    second: number,
                });
            }
            entries.push((key, value, Some(number)));
        }
    }
    Ok(entries)
}

/// Applies `entries` in order over the defaults, then resolves and checks the security
/// settings.
fn build(entries: Vec<(String, String, Option<usize>)>) -> Result<StreamsConfig, PropertiesError> {
    let find = |name: &str| entries.iter().find(|(k, _, _)| k == name);
    let application_id = find("application.id").ok_or(PropertiesError::Missing {
        property: "application.id",
    })?;
    find("bootstrap.servers").ok_or(PropertiesError::Missing {
        property: "bootstrap.servers",
    })?;
    let mut target = Target {
        config: StreamsConfig::from_engine_config(EngineConfig::new(
            application_id.1.trim(),
            Vec::<String>::new(),
        )),
        security: SecuritySettings::default(),
    };
    let mut client_id_set = false;
    let mut commit_interval_set = false;
    for (key, value, line) in &entries {
        let property =
            PROPERTIES
                .iter()
                .find(|p| p.name == key)
                .ok_or_else(|| PropertiesError::Unknown {
                    property: key.clone(),
                    line: *line,
                })?;
        client_id_set |= property.name == "client.id";
        commit_interval_set |= property.name == "commit.interval.ms";
        (property.apply)(&mut target, value.trim()).map_err(|reason| PropertiesError::Invalid {
            property: key.clone(),
            line: *line,
            reason: if property.secret {
                redact(&reason, value)
            } else {
                reason
            },
        })?;
    }
    if !commit_interval_set
        && target.config.engine.processing_guarantee == ProcessingGuarantee::ExactlyOnce
    {
        // Kafka Streams' default under exactly-once: a transaction per 100 ms.
        target.config.engine.commit_interval = Duration::from_millis(100);
    }
    if !client_id_set {
        // The default client id follows the application id given.
        target.config.engine.client_id = format!("{}-kstreams", target.config.application_id());
    }
    security::apply(target.security, &mut target.config).map_err(|(property, reason)| {
        PropertiesError::Invalid {
            line: entries
                .iter()
                .find(|(k, _, _)| k == property)
                .and_then(|(_, _, line)| *line),
            property: property.to_owned(),
            reason,
        }
    })?;
    Ok(target.config)
}

/// `reason` with every occurrence of the secret `value` masked (setters should not repeat
/// secret values; this makes sure).
fn redact(reason: &str, value: &str) -> String {
    if value.is_empty() {
        reason.to_owned()
    } else {
        reason.replace(value, "***")
    }
}

#[cfg(test)]
mod tests;
