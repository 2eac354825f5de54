//! SCRAM client nonces from the engine's seeded randomness (the core reads no entropy).
//!
//! SplitMix64, seeded per connection by the router from
//! [`EngineConfig::random_seed`](crate::engine::EngineConfig::random_seed). A SCRAM client
//! nonce must be unique, not secret (RFC 5802 §5.1): the server adds its own random part, and
//! the proof is bound to both. The adapters seed from time, process id and thread.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A deterministic nonce source.
#[derive(Debug, Clone)]
pub(crate) struct NonceSource {
    state: u64,
}

impl NonceSource {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 24 bytes, base64: printable and free of `,` as RFC 5802 requires.
    pub(crate) fn nonce(&mut self) -> String {
        let mut bytes = Vec::with_capacity(24);
        for _ in 0..3 {
            bytes.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        STANDARD.encode(bytes)
    }
}
