//! The one wall clock of meterflow. Every receive time, poll time and
//! "now" of a command is read here, so there is one place to change (or to
//! reason about) how the current time is taken.

/// Current time, ms since the Unix epoch (0 if the system clock is set
/// before 1970, which no plausible reading can then be compared against).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::now_ms;

    #[test]
    fn now_is_after_this_code_was_written_and_moves_forward() {
        // 2026-01-01T00:00:00Z = 1 767 225 600 000 ms.
        let a = now_ms();
        assert!(a > 1_767_225_600_000, "{a}");
        let b = now_ms();
        assert!(b >= a);
    }
}
