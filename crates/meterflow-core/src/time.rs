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
}
