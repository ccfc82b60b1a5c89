//! Time arguments: a local date (`2025-03-09`), a local datetime, or RFC 3339.

use chrono::NaiveDate;
use chrono_tz::Tz;

/// Parse a `--from`/`--to` argument to UTC ms in the site zone.
pub(crate) fn parse(s: &str, tz: Tz) -> Result<i64, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(meterflow_core::time::day_start(d, tz));
    }
    meterflow_import::parse_timestamp(s, tz)
}
