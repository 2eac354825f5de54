//! Reconnect jitter: the engine's only randomness, drawn from
//! [`EngineConfig::random_seed`](crate::engine::EngineConfig::random_seed).
//!
//! Without jitter, clients that lost a broker at the same moment (a broker restart) would
//! reconnect in lockstep, at the same doubling delays. Each reconnect delay is therefore the
//! exponential backoff scaled by a factor drawn uniformly from `[0.8, 1.0]`.
//!
//! Kafka's clients spread the backoff by ±20 %; the spread here is one-sided so that a delay
//! never exceeds [`EngineConfig::reconnect_backoff_max`](crate::engine::EngineConfig::reconnect_backoff_max)
//! (the cap holds) and never falls below 80 % of the backoff.
//!
//! The generator is SplitMix64: tiny, fast, and good enough to spread delays; it is not
//! cryptographic and needs not be. The same seed gives the same delays.

use crate::time::Duration;

/// A deterministic source of reconnect jitter.
#[derive(Debug, Clone)]
pub(crate) struct Jitter {
    /// The SplitMix64 state.
    state: u64,
}

impl Jitter {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// When to re-authenticate a SASL session of `lifetime`: after 85–95 % of it, as
    /// Kafka's Java client does, so connections opened together do not re-authenticate
    /// together.
    pub(crate) fn reauth_delay(&mut self, lifetime: Duration) -> Duration {
        let ms = u128::from(lifetime.as_millis());
        let fraction = u128::from(self.next_u64() >> 32);
        // 85 % plus up to 10 %: below the lifetime, so it fits a u64.
        let delay = ms * 85 / 100 + ms * fraction / (10 * (1_u128 << 32));
        Duration::from_millis(u64::try_from(delay).unwrap_or(lifetime.as_millis()))
    }

    /// The next SplitMix64 output.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `backoff` scaled by a factor drawn uniformly from `[0.8, 1.0]`, rounded so the result
    /// lies in `[0.8 * backoff, backoff]`.
    pub(crate) fn scale(&mut self, backoff: Duration) -> Duration {
        let ms = u128::from(backoff.as_millis());
        // A fraction of 2^32 in [0, 1): the reduction is below a fifth of the backoff.
        let fraction = u128::from(self.next_u64() >> 32);
        let reduction = ms * fraction / (5 * (1_u128 << 32));
        // ms - reduction lies in [0.8 * ms, ms], so it fits a u64.
        Duration::from_millis(u64::try_from(ms - reduction).unwrap_or(backoff.as_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_splitmix64() {
        let mut jitter = Jitter::new(0);
        assert_eq!(jitter.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(jitter.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn delays_lie_between_80_and_100_percent_of_the_backoff() {
        let mut jitter = Jitter::new(7);
        for backoff in [0, 1, 4, 5, 50, 1_000, 999_999, u64::MAX] {
            for _ in 0..200 {
                let delay = jitter.scale(Duration::from_millis(backoff)).as_millis();
                assert!(delay <= backoff, "{delay} > {backoff}");
                assert!(
                    u128::from(delay) * 5 >= u128::from(backoff) * 4,
                    "{delay} < 0.8 * {backoff}"
                );
            }
        }
    }

    #[test]
    fn delays_spread_over_the_range() {
        let mut jitter = Jitter::new(42);
        let delays: Vec<u64> = (0..1_000)
            .map(|_| jitter.scale(Duration::from_secs(1)).as_millis())
            .collect();
        let (min, max) = (
            delays.iter().copied().min().unwrap_or_default(),
            delays.iter().copied().max().unwrap_or_default(),
        );
        assert!(min < 820, "lowest delay {min}");
        assert!(max > 980, "highest delay {max}");
    }

    #[test]
    fn the_same_seed_gives_the_same_delays_and_another_seed_others() {
        let draw = |seed| {
            let mut jitter = Jitter::new(seed);
            (0..16)
                .map(|_| jitter.scale(Duration::from_secs(1)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }
}
