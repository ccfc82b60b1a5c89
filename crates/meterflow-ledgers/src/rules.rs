//! The checks every ledger's entries share: a rejection names the field and
//! the reason; numbers within bounds, non-empty text, known agencies and
//! dates; an entry body read into its typed form; the events of one kind in
//! effect.

use meterflow_model::Site;
use meterflow_store::LedgerEvent;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A rejected entry: the field at fault and why.
pub type Reject = (String, String);

pub(crate) fn reject(field: &str, message: impl Into<String>) -> Reject {
    (field.to_string(), message.into())
}

/// Parse a local date field.
pub fn date_field(field: &str, s: &str) -> Result<chrono::NaiveDate, Reject> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            meterflow_core::timeparse::written_date(s)
                .filter(|(_, time)| time.is_none())
                .map(|(d, _)| d)
        })
        .ok_or_else(|| {
            reject(
                field,
                format!("`{s}` is not a date (2026-12-02, 2026/12/2 or 2026年12月2日)"),
            )
        })?;
    if !(FIRST_YEAR..=LAST_YEAR).contains(&chrono::Datelike::year(&d)) {
        return Err(reject(
            field,
            format!("`{s}` is outside the years {FIRST_YEAR}–{LAST_YEAR}"),
        ));
    }
    Ok(d)
}

/// The years a date field of an entry may have (an asset bought in 1985, an
/// insurance valid until 2031: yes; year −262143: no).
pub const FIRST_YEAR: i32 = 1900;
/// See [`FIRST_YEAR`].
pub const LAST_YEAR: i32 = 2200;

/// How far ahead of now an entry's `time` may be: a year (a booking, an
/// allocation agreed in advance).
pub const MAX_AHEAD_MS: i64 = 366 * 86_400_000;

/// Whether an entry's `time` is plausible: not before the site's earliest
/// date (`[store] earliest`, default 2000-01-01) and not more than
/// [`MAX_AHEAD_MS`] after `now_ms`.
pub fn entry_time(ts_ms: i64, earliest_ms: i64, now_ms: i64) -> Result<(), Reject> {
    let show = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map_or_else(|| format!("{ms} ms"), |t| t.format("%Y-%m-%d").to_string())
    };
    if ts_ms < earliest_ms {
        return Err(reject(
            "time",
            format!(
                "{} is before the site's earliest date {} ([store] earliest)",
                show(ts_ms),
                show(earliest_ms)
            ),
        ));
    }
    if ts_ms > now_ms.saturating_add(MAX_AHEAD_MS) {
        return Err(reject(
            "time",
            format!("{} is more than a year ahead of today", show(ts_ms)),
        ));
    }
    Ok(())
}

/// Deserialise an entry's fields into its typed form; unknown keys, missing
/// keys and wrong types name the field.
pub fn typed<T: DeserializeOwned>(body: &Value) -> Result<T, Reject> {
    serde_path_to_error::deserialize::<_, T>(body.clone()).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = if path == "." {
            // serde names an unknown or missing key in its message.
            inner
                .split('`')
                .nth(1)
                .map_or_else(|| "body".to_string(), str::to_string)
        } else {
            path
        };
        (field, inner)
    })
}

/// An entry's typed form back as JSON.
pub fn norm<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// A number field that must be finite and within `[lo, hi]`.
pub fn number(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), Reject> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(reject(field, format!("{v} is outside {lo}..={hi}")))
    }
}

/// A required text field that must not be blank.
pub fn text(field: &str, v: &str) -> Result<(), Reject> {
    if v.trim().is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
        Err(reject(
            field,
            "must be 1-200 characters, without control characters",
        ))
    } else {
        Ok(())
    }
}

/// The agency must exist.
pub fn agency(site: &Site, field: &str, id: &str) -> Result<(), Reject> {
    if site.agencies.iter().any(|a| a.id == id) {
        Ok(())
    } else {
        Err(reject(field, format!("no agency `{id}`")))
    }
}

/// The entries of `kind` among `events`, with their typed bodies (entries
/// that no longer parse are skipped: they were checked when written).
pub fn of_kind<'a, T: DeserializeOwned>(
    events: &'a [LedgerEvent],
    kind: &'a str,
) -> impl Iterator<Item = (&'a LedgerEvent, T)> + 'a {
    events
        .iter()
        .filter(move |e| e.kind == kind)
        .filter_map(|e| serde_json::from_str::<T>(&e.body).ok().map(|t| (e, t)))
}
