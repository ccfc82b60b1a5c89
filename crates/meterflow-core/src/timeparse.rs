//! Timestamps as people and files write them: RFC 3339 or a local time in
//! the site's zone (import files, ledger entries, API parameters), and the
//! date-or-time arguments of commands and queries.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// RFC 3339 (`2025-01-01T08:15:00+08:00`, `…Z`), or local time in `tz`
/// (`2025-01-01 08:15`, `2025-01-01T08:15:00`, fractional seconds allowed).
/// A local time in a DST gap or overlap is an error naming it.
pub fn parse_timestamp(s: &str, tz: Tz) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    const LOCAL: &[&str] = &[
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
    ];
    for f in LOCAL {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, f) {
            return match tz.from_local_datetime(&naive) {
                LocalResult::Single(t) => Ok(t.timestamp_millis()),
                LocalResult::Ambiguous(_, _) => Err(format!(
                    "`{s}` happens twice in {tz} (DST change): give an offset"
                )),
                LocalResult::None => Err(format!("`{s}` does not exist in {tz} (DST gap)")),
            };
        }
    }
    Err(format!(
        "`{s}` is not RFC 3339 or a local time like 2025-01-01 08:15:00"
    ))
}

/// A `--from`/`--to` argument or a query parameter: a local date
/// (`2025-03-09`, the start of that day in `tz`) or anything
/// [`parse_timestamp`] takes; UTC ms.
pub fn parse_time_arg(s: &str, tz: Tz) -> Result<i64, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(crate::time::day_start(d, tz));
    }
    parse_timestamp(s, tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Asia::Shanghai};

    #[test]
    fn forms() {
        // 2025-01-01T00:15+08:00 = 2024-12-31T16:15Z = 1 735 661 700 000 ms.
        let want = 1_735_661_700_000;
        assert_eq!(
            parse_timestamp("2025-01-01T00:15:00+08:00", Shanghai),
            Ok(want)
        );
        assert_eq!(parse_timestamp("2024-12-31T16:15:00Z", Shanghai), Ok(want));
        assert_eq!(parse_timestamp("2025-01-01 00:15", Shanghai), Ok(want));
        assert_eq!(
            parse_timestamp("2025-01-01 00:15:00.000", Shanghai),
            Ok(want)
        );
        assert!(parse_timestamp("yesterday", Shanghai).is_err());
        assert!(parse_timestamp("2025-13-01 00:00", Shanghai).is_err());
        // 2025-03-09 02:30 does not exist in New York.
        assert!(
            parse_timestamp("2025-03-09 02:30", New_York).is_err_and(|e| e.contains("DST gap"))
        );
    }
}
