//! [`PlaintextGuess`]: telling a plaintext listener from a broker that is going away.
//!
//! A Kafka broker never speaks first, so a plaintext listener that receives a TLS hello does
//! not answer it: it reads the hello's first bytes as a request size (about 369 MB), refuses
//! it and closes the socket. A broker that is restarting, over its connection quota or behind
//! a load balancer with no healthy backend closes the socket the same way. The difference is
//! that the plaintext listener does it every time, and never completes a handshake: an address
//! that closed [`CLOSES_BEFORE_NOT_TLS`] handshakes in a row without a byte of answer, and never
//! completed one, counts as not speaking TLS (`TlsErrorKind::NotTls`). With the engine's
//! reconnect backoff (50 ms doubling) that takes well under a second. An address that once
//! completed a handshake is never taken for plaintext.

use std::collections::{BTreeMap, BTreeSet};

/// Handshakes in a row that a broker closes without answering before it counts as plaintext.
pub(crate) const CLOSES_BEFORE_NOT_TLS: u32 = 3;

/// What one stream thread saw of each address it dialled (`host:port`, after the address
/// map): see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct PlaintextGuess {
    /// Addresses that completed a handshake.
    speak_tls: BTreeSet<String>,
    /// Handshakes closed without an answer in a row, per address.
    unanswered: BTreeMap<String, u32>,
}

impl PlaintextGuess {
    /// A handshake with `address` completed.
    pub(crate) fn handshake_done(&mut self, address: &str) {
        self.unanswered.remove(address);
        if !self.speak_tls.contains(address) {
            self.speak_tls.insert(address.to_owned());
        }
    }

    /// The broker at `address` closed a handshake without answering; `true` when it now
    /// counts as a plaintext listener.
    pub(crate) fn closed_unanswered(&mut self, address: &str) -> bool {
        if self.speak_tls.contains(address) {
            return false;
        }
        let count = self.unanswered.entry(address.to_owned()).or_default();
        *count += 1;
        *count >= CLOSES_BEFORE_NOT_TLS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_repeated_unanswered_closes_of_an_address_that_never_spoke_tls_count() {
        let mut guess = PlaintextGuess::default();
        assert!(!guess.closed_unanswered("a:1"));
        assert!(!guess.closed_unanswered("a:1"));
        assert!(!guess.closed_unanswered("b:1"), "counted per address");
        assert!(guess.closed_unanswered("a:1"));

        guess.handshake_done("b:1");
        for _ in 0..10 {
            assert!(
                !guess.closed_unanswered("b:1"),
                "an address that completed a handshake speaks TLS"
            );
        }
    }
}
