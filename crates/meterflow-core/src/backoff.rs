//! Exponential back-off: the one rule behind every retry loop (MQTT and
//! RFID reconnects, the InfluxDB sink, restarting a panicked thread,
//! notification attempts): start at `initial`, double after each failure,
//! never above `max`, back to `initial` after a success.

use std::time::Duration;

/// A back-off's state.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starting at `initial` (at most `max`).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.min(max);
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next attempt; the one after it doubles.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }

    /// The wait the next failure will get, without taking it.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// After a success: start again from `initial`.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The wait after the `n`-th consecutive failure (0-based), for retries
    /// whose count is stored rather than held in memory.
    pub fn nth(initial: Duration, max: Duration, n: u32) -> Duration {
        initial
            .saturating_mul(2u32.saturating_pow(n.min(31)))
            .min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(200), ms(1000));
        let got: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(got, vec![ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        b.reset();
        assert_eq!(b.peek(), ms(200));
        assert_eq!(Backoff::nth(ms(200), ms(1000), 0), ms(200));
        assert_eq!(Backoff::nth(ms(200), ms(1000), 2), ms(800));
        assert_eq!(Backoff::nth(ms(200), ms(1000), u32::MAX), ms(1000));
    }
}
