//! Local-time keys for hourly and daily rollups.

use chrono::{NaiveDate, Offset, TimeZone, Timelike};
use chrono_tz::Tz;

/// Start (UTC ms) of the local hour containing the bucket starting at `bucket_ms`.
/// Keyed by instant, so the repeated hour of a DST fall-back stays two hours.
pub fn hour_start(bucket_ms: i64, tz: Tz) -> i64 {
    let Some(utc) = chrono::DateTime::from_timestamp_millis(bucket_ms) else {
        return bucket_ms;
    };
    let local = utc.with_timezone(&tz);
    let into_hour_ms = i64::from(local.minute()) * 60_000 + i64::from(local.second()) * 1000;
    bucket_ms - into_hour_ms
}

/// Local calendar date of an instant.
pub fn local_date(ts_ms: i64, tz: Tz) -> NaiveDate {
    match chrono::DateTime::from_timestamp_millis(ts_ms) {
        Some(utc) => utc.with_timezone(&tz).date_naive(),
        None => NaiveDate::MIN,
    }
}

/// UTC ms of local midnight starting `date` (the first instant of the day if
/// midnight falls in a DST gap).
pub fn day_start(date: NaiveDate, tz: Tz) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&midnight) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.timestamp_millis()
        }
        chrono::LocalResult::None => {
            // Midnight skipped: the day starts when the clock jumps.
            let offset = tz
                .offset_from_utc_datetime(&midnight)
                .fix()
                .local_minus_utc();
            midnight.and_utc().timestamp_millis() - i64::from(offset) * 1000
        }
    }
}

/// A duration for people: `45 s`, `12 min 5 s`, `3 h 20 min`, `628 d 1 h`
/// (a negative one, e.g. seen from an earlier `--at`, is `0 s`).
pub fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec} s"),
        (0, 0, _) if sec == 0 => format!("{m} min"),
        (0, 0, _) => format!("{m} min {sec} s"),
        (0, _, 0) => format!("{h} h"),
        (0, _, _) => format!("{h} h {m} min"),
        (_, 0, _) => format!("{d} d"),
        _ => format!("{d} d {h} h"),
    }
}

/// An instant for messages: UTC, RFC 3339 to the second (never raw epoch ms).
pub fn utc_text(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms).map_or_else(
        || format!("{ts_ms} ms"),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// An instant in the site's zone for people: `2026-12-02 14:05:00 +08:00`.
pub fn local_text(ts_ms: i64, tz: Tz) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms).map_or_else(
        || format!("{ts_ms} ms"),
        |t| {
            t.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Asia::Kathmandu, Asia::Shanghai};

    #[test]
    fn shanghai_hours_and_days() {
        // 2025-01-01T00:15+08:00 = 2024-12-31T16:15Z = 1735661700000 ms.
        let t = 1_735_661_700_000;
        assert_eq!(hour_start(t, Shanghai), t - 15 * 60_000);
        assert_eq!(
            local_date(t, Shanghai),
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default()
        );
        assert_eq!(
            day_start(
                NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default(),
                Shanghai
            ),
            t - 15 * 60_000
        );
    }

    #[test]
    fn quarter_hour_offset_zone_hours_start_at_utc_quarter_past() {
        // Kathmandu is +05:45: local 06:00 is 00:15Z. Bucket 00:30Z is local 06:15.
        let bucket = 1_735_691_400_000; // 2025-01-01T00:30:00Z
        assert_eq!(hour_start(bucket, Kathmandu), bucket - 15 * 60_000);
    }

    #[test]
    fn dst_fall_back_keeps_two_distinct_hours() {
        // New York 2025-11-02: 01:00-02:00 local happens twice (05:00Z and 06:00Z).
        let first = 1_762_059_600_000; // 05:00Z = 01:00 EDT
        let second = first + 3_600_000; // 06:00Z = 01:00 EST
        assert_eq!(hour_start(first + 15 * 60_000, New_York), first);
        assert_eq!(hour_start(second + 15 * 60_000, New_York), second);
        assert_eq!(local_date(first, New_York), local_date(second, New_York));
    }

    #[test]
    fn durations_and_instants_read_like_text() {
        assert_eq!(human_duration(45_000), "45 s");
        assert_eq!(human_duration(12 * 60_000 + 5_000), "12 min 5 s");
        assert_eq!(human_duration(3 * 3_600_000), "3 h");
        assert_eq!(
            human_duration(3 * 3_600_000 + 20 * 60_000 + 59_000),
            "3 h 20 min"
        );
        // The 54 262 464 s: 628 days and 1 h (628 × 86 400 = 54 259 200; + 3 264 s).
        assert_eq!(human_duration(54_262_464_000), "628 d");
        assert_eq!(human_duration(54_262_464_000 + 3_600_000), "628 d 1 h");
        assert_eq!(human_duration(-42_300_000), "0 s");
        // 1 754 755 200 000 ms = 2025-08-09T16:00:00Z.
        assert_eq!(utc_text(1_754_755_200_000), "2025-08-09T16:00:00Z");
    }
}
