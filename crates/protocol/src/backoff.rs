//! Exponential reconnect back-off: 1 s doubling to 60 s, as IoT Edge's store-and-forward retry
//! policy (`RoutingModule.cs`), with jitter so many identities do not reconnect in lockstep. Used by
//! the edge hub's and the edge agent's upstream links; callers pass the jitter (no clock here).

use std::time::Duration;

/// Back-off state for one connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt; `jitter` in `[0, 1)` takes up to a quarter off it.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let base = self.min.saturating_mul(factor).min(self.max);
        let cut = base.mul_f64(jitter.clamp(0.0, 1.0) / 4.0);
        base.saturating_sub(cut)
    }

    /// Back to the minimum after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_reset() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay(0.0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_only_shortens_the_delay() {
        let mut b = Backoff::new(Duration::from_secs(4), Duration::from_secs(60));
        let d = b.next_delay(0.99);
        assert!(d <= Duration::from_secs(4) && d >= Duration::from_secs(3));
    }
}
