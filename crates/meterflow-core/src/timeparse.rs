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
    // The common case of a CSV export, read by hand: chrono's format
    // parser was ~10 % of an import. Same meaning (no offset: local time,
    // so RFC 3339 could not take it either); anything else goes the long way.
    if let Some(naive) = plain_local(s) {
        return local_ms(s, naive, tz);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    parse_local(s, tz)
}

/// `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD HH:MM` (space or `T`), digits only.
fn plain_local(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if !(b.len() == 19 || b.len() == 16) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let seps = b[4] == b'-' && b[7] == b'-' && (b[10] == b' ' || b[10] == b'T') && b[13] == b':';
    if !seps || (b.len() == 19 && b[16] != b':') {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let sec = if b.len() == 19 { num(17, 19)? } else { 0 };
    date.and_hms_opt(num(11, 13)?, num(14, 16)?, sec)
}

/// A local time in `tz`, with the DST errors.
fn local_ms(s: &str, naive: NaiveDateTime, tz: Tz) -> Result<i64, String> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.timestamp_millis()),
        LocalResult::Ambiguous(_, _) => Err(format!(
            "`{s}` happens twice in {tz} (DST change): give an offset"
        )),
        LocalResult::None => Err(format!("`{s}` does not exist in {tz} (DST gap)")),
    }
}

/// The local formats, through chrono's parser.
fn parse_local(s: &str, tz: Tz) -> Result<i64, String> {
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
            return local_ms(s, naive, tz);
        }
    }
    Err(format!(
        "`{s}` is not RFC 3339 or a local time like 2025-01-01 08:15:00"
    ))
}

/// A `--from`/`--to` argument, a query parameter or a ledger entry's time:
/// a local date (`2025-03-09`, the start of that day in `tz`) or anything
/// [`parse_timestamp`] takes; dates and times as people write them in China
/// are read too (`2026年12月2日`, `2026/12/2 8:30`, `2026.12.2`,
/// `2026年12月2日 8时30分`); UTC ms.
pub fn parse_time_arg(s: &str, tz: Tz) -> Result<i64, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(crate::time::day_start(d, tz));
    }
    match parse_timestamp(s, tz) {
        Ok(t) => Ok(t),
        Err(e) => match written_date(s) {
            Some((d, None)) => Ok(crate::time::day_start(d, tz)),
            Some((d, Some((h, m)))) => parse_timestamp(&format!("{d} {h:02}:{m:02}"), tz),
            None => Err(e),
        },
    }
}

/// A date as people write it (`2026年12月2日`, `2026/12/2`, `2026.12.2`,
/// `2026-12-2`), with an optional time (`8:30`, `8时30分`, `8点`): the date
/// and (hour, minute). `None` when it is not one.
pub fn written_date(s: &str) -> Option<(NaiveDate, Option<(u32, u32)>)> {
    let s = s.trim();
    let (date, time) = match s.find(|c: char| c.is_whitespace() || c == 'T') {
        Some(i) => (
            &s[..i],
            Some(s[i..].trim_start_matches(|c: char| c.is_whitespace() || c == 'T')),
        ),
        None => match s.find('日') {
            // `2026年12月2日8时30分` without a space.
            Some(i) if i + '日'.len_utf8() < s.len() => {
                (&s[..i + '日'.len_utf8()], Some(&s[i + '日'.len_utf8()..]))
            }
            _ => (s, None),
        },
    };
    let parts: Vec<&str> = date
        .trim_end_matches('日')
        .split(['年', '月', '/', '.', '-'])
        .collect();
    let [y, m, d] = parts[..] else { return None };
    let number = |t: &str, max: u32| t.parse::<u32>().ok().filter(|n| *n <= max);
    let date = NaiveDate::from_ymd_opt(y.parse().ok()?, number(m, 12)?, number(d, 31)?)?;
    let time = match time.map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            let t = t.trim_end_matches(['分', '秒']);
            let (h, m) = match t.split_once([':', '时', '点']) {
                Some((h, m)) => (h, m.split([':', '分']).next().unwrap_or("0")),
                None => (t, "0"),
            };
            let m = if m.is_empty() { "0" } else { m };
            Some((number(h, 23)?, number(m, 59)?))
        }
    };
    Some((date, time))
}

/// An Excel serial date (`46358` = 2026-12-02, `46358.5` = its noon), as a
/// spreadsheet's date cell becomes when saved as CSV or typed as a number:
/// days since 1899-12-30 (Excel's 1900 system, whose phantom 1900-02-29
/// this origin absorbs for every date after February 1900). Only plain
/// numbers from 1 (1900) to 2 958 465 (9999-12-31) are taken.
pub fn excel_serial(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if !(61.0..=2_958_465.999_999).contains(&v) {
        return None;
    }
    let days = v.trunc() as i64;
    // Rounded to the second: 0.5 is noon, 0.25 six o'clock.
    let secs = ((v - v.trunc()) * 86_400.0).round() as i64;
    let origin = NaiveDate::from_ymd_opt(1899, 12, 30)?.and_hms_opt(0, 0, 0)?;
    origin.checked_add_signed(chrono::Duration::days(days) + chrono::Duration::seconds(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hand_read_local_times_mean_what_chrono_reads() {
        // Every 7 h 13 min 11 s over three years in a zone with DST (gaps
        // and repeated hours) and in Shanghai, both forms and separators,
        // plus near misses: the fast path gives what the format parser
        // gives (values and error texts), or leaves the string to it.
        for zone in ["Europe/Berlin", "Asia/Shanghai"] {
            let tz: chrono_tz::Tz = zone.parse().expect("zone");
            let mut t = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .expect("start");
            for _ in 0..3_700 {
                for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
                    let text = t.format(f).to_string();
                    assert_eq!(
                        super::parse_timestamp(&text, tz),
                        super::parse_local(&text, tz),
                        "{text} in {zone}"
                    );
                }
                t += chrono::Duration::seconds(7 * 3600 + 13 * 60 + 11);
            }
            // The DST hours by hand (Berlin): 2025-03-30 02:30 does not
            // exist, 2025-10-26 02:30 happens twice.
            for text in [
                "2025-03-30 02:30:00",
                "2025-10-26 02:30:00",
                "2025-02-29 10:00:00",
                "2025-13-01 10:00:00",
                "2025-01-01 24:00:00",
                "2025-01-01 10:60:00",
                "2025-01-01 10:00:60",
                "2025-01-01 10:00:0x",
                "2025-01-01_10:00:00",
                "2025-01-01 10:00:00Z",
                "2025-01-01 10:00",
                "+025-01-01 10:00:00",
            ] {
                assert_eq!(
                    super::parse_timestamp(text, tz).is_ok(),
                    super::parse_local(text, tz).is_ok()
                        || chrono::DateTime::parse_from_rfc3339(text).is_ok(),
                    "{text} in {zone}"
                );
                if super::plain_local(text).is_some() {
                    assert_eq!(
                        super::parse_timestamp(text, tz),
                        super::parse_local(text, tz),
                        "{text} in {zone}"
                    );
                }
            }
        }
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().expect("zone");
        assert!(
            super::parse_timestamp("2025-10-26 02:30:00", berlin)
                .is_err_and(|e| e.contains("happens twice"))
        );
        assert!(
            super::parse_timestamp("2025-03-30 02:30:00", berlin)
                .is_err_and(|e| e.contains("does not exist"))
        );
    }

    #[test]
    fn excel_serial_dates() {
        // 45658 is 2025-01-01 in Excel (=DATE(2025,1,1)); 45658.75 its 18:00.
        assert_eq!(
            excel_serial("45658").map(|t| t.to_string()),
            Some("2025-01-01 00:00:00".into())
        );
        assert_eq!(
            excel_serial("45658.75").map(|t| t.to_string()),
            Some("2025-01-01 18:00:00".into())
        );
        // 61 is 1900-03-01, the first day after Excel's phantom 29 February.
        assert_eq!(
            excel_serial("61").map(|t| t.date().to_string()),
            Some("1900-03-01".into())
        );
        for no in ["2026-12-02", "1e5", "-3", "", "12", "99999999"] {
            assert_eq!(excel_serial(no), None, "{no}");
        }
    }

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
        // As people write dates: 2025年1月1日 0时15分 is the same instant.
        assert_eq!(parse_time_arg("2025年1月1日 0时15分", Shanghai), Ok(want));
        assert_eq!(parse_time_arg("2025/1/1 0:15", Shanghai), Ok(want));
        // A date alone is its local midnight: 2024-12-31T16:00Z.
        let midnight = 1_735_660_800_000;
        for d in [
            "2025年1月1日",
            "2025/1/1",
            "2025.1.1",
            "2025-1-1",
            "2025年01月01日",
        ] {
            assert_eq!(parse_time_arg(d, Shanghai), Ok(midnight), "{d}");
        }
        assert!(parse_time_arg("2025年13月1日", Shanghai).is_err());
        assert!(parse_time_arg("2025年2月30日", Shanghai).is_err());
        assert!(parse_time_arg("1/2/3/4", Shanghai).is_err());
        // 2025-03-09 02:30 does not exist in New York.
        assert!(
            parse_timestamp("2025-03-09 02:30", New_York).is_err_and(|e| e.contains("DST gap"))
        );
    }
}
