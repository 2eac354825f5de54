//! [`Secret`]: a password or token that never shows in `Debug` output or logs.

use std::fmt;

/// A password, token or other credential. Its `Debug` prints `***` and it has no `Display`,
/// so it cannot reach a log line or an error message by accident; [`Secret::expose`] is the
/// one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the code that must send or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Bytes that carry a secret (a PLAIN message, a SCRAM client proof, a salted password, an
/// OAUTHBEARER message): `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct SecretBytes(pub(crate) Vec<u8>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "*** ({} bytes)", self.0.len())
    }
}
