//! Counting failed authentications per key (a client address, a presented
//! token's hash) in a fixed window, in a table of bounded size. Pure: the
//! caller passes the time, so the rules are tested without waiting.
//!
//! The rules the API and push ingest apply with it: a valid token is never
//! refused (the limiter is consulted only after a token failed), a key with
//! `max` failures in the current window is refused until the window ends,
//! and the table never holds more than `cap` keys: expired entries are
//! pruned first, then the oldest window is dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Failures per key in a window.
#[derive(Debug)]
pub struct FailureLimiter<K> {
    max: u32,
    window: Duration,
    cap: usize,
    map: HashMap<K, (u32, Instant)>,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    /// At most `max` failures per key in `window`; at most `cap` keys kept.
    pub fn new(max: u32, window: Duration, cap: usize) -> Self {
        FailureLimiter {
            max,
            window,
            cap: cap.max(1),
            map: HashMap::new(),
        }
    }

    /// Whether `key` has used up its failures in the current window.
    pub fn blocked(&self, key: &K, now: Instant) -> bool {
        self.map.get(key).is_some_and(|(n, since)| {
            now.saturating_duration_since(*since) <= self.window && *n >= self.max
        })
    }

    /// Count one failure of `key`.
    pub fn fail(&mut self, key: K, now: Instant) {
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            self.prune(now);
            if self.map.len() >= self.cap {
                // Still full of live windows: drop the oldest one.
                if let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, (_, since))| *since)
                    .map(|(k, _)| k.clone())
                {
                    self.map.remove(&oldest);
                }
            }
        }
        let e = self.map.entry(key).or_insert((0, now));
        if now.saturating_duration_since(e.1) > self.window {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
    }

    /// Forget windows that have ended.
    pub fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.map
            .retain(|_, (_, since)| now.saturating_duration_since(*since) <= window);
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_max_th_failure_blocks_until_the_window_ends() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(3, Duration::from_secs(60), 100);
        for i in 0..3 {
            assert!(!l.blocked(&"a", t0), "after {i} failures");
            l.fail("a", t0 + Duration::from_secs(i));
        }
        assert!(l.blocked(&"a", t0 + Duration::from_secs(3)));
        // Another key is not affected.
        assert!(!l.blocked(&"b", t0 + Duration::from_secs(3)));
        // The window started at t0: 61 s later the key is free again, and
        // its next failure starts a new window of one.
        let later = t0 + Duration::from_secs(61);
        assert!(!l.blocked(&"a", later));
        l.fail("a", later);
        assert!(!l.blocked(&"a", later));
    }

    #[test]
    fn the_table_stays_within_its_cap_and_prunes_ended_windows() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(2, Duration::from_secs(60), 1_000);
        for i in 0..10_000u32 {
            l.fail(i, t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(l.len(), 1_000);
        // The newest keys are the ones kept (the oldest windows went).
        l.fail(10_000, t0 + Duration::from_secs(11));
        l.fail(10_000, t0 + Duration::from_secs(11));
        assert!(l.blocked(&10_000, t0 + Duration::from_secs(11)));
        // Two minutes on, every window has ended.
        l.prune(t0 + Duration::from_secs(200));
        assert!(l.is_empty());
    }
}
