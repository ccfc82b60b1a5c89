//! Checks shared by the sections: unique ids, references, numbers, dates
//! and instants in the site's zone, identifier shapes.

use crate::factors::to_date;
use chrono::{LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use std::collections::{BTreeMap, BTreeSet};

use super::document::{Ctx, Located, suggest};
use toml::value::Datetime;

pub(crate) fn unique_ids<T>(
    ctx: &mut Ctx<'_>,
    items: &[Located<'_, T>],
    id: impl Fn(&T) -> &String,
    what: &str,
) -> BTreeSet<String> {
    let mut seen = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let value = id(&item.value);
        if value.is_empty()
            || value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            ctx.error(
                item.span_of(&["id"]),
                item.key("id"),
                format!(
                    "a {what} id must be non-empty, without spaces or backslashes, got `{value}`"
                ),
            );
        }
        if let Some(first) = seen.insert(value.clone(), i) {
            ctx.error(
                item.span_of(&["id"]),
                item.key("id"),
                format!("duplicate {what} id `{value}` (first defined as {what}[{first}])"),
            );
        }
    }
    seen.into_keys().collect()
}

pub(crate) fn reference<T>(
    ctx: &mut Ctx<'_>,
    item: &Located<'_, T>,
    key: &str,
    value: &str,
    known: &BTreeSet<String>,
    what: &str,
) -> bool {
    if known.contains(value) {
        return true;
    }
    let path: Vec<&str> = key.split('.').collect();
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    let hint = if names.is_empty() {
        format!(" (no {what} is defined)")
    } else {
        suggest(value, names.iter())
    };
    ctx.error(
        item.span_of(&path),
        item.key(key),
        format!("no {what} `{value}`{hint}"),
    );
    false
}

pub(crate) fn non_negative<T>(
    ctx: &mut Ctx<'_>,
    item: &Located<'_, T>,
    key: &str,
    value: Option<f64>,
) {
    if let Some(v) = value
        && (!v.is_finite() || v < 0.0)
    {
        ctx.error(
            item.span_of(&[key]),
            item.key(key),
            format!("must be a finite number >= 0, got {v}"),
        );
    }
}

pub(crate) fn positive<T>(ctx: &mut Ctx<'_>, item: &Located<'_, T>, key: &str, value: Option<f64>) {
    if let Some(v) = value
        && (!v.is_finite() || v <= 0.0)
    {
        ctx.error(
            item.span_of(&[key]),
            item.key(key),
            format!("must be a finite number > 0, got {v}"),
        );
    }
}

pub(crate) fn date<T>(
    ctx: &mut Ctx<'_>,
    item: &Located<'_, T>,
    key: &str,
    value: &Datetime,
) -> Option<NaiveDate> {
    let d = to_date(value);
    if d.is_none() {
        ctx.error(
            item.span_of(&[key]),
            item.key(key),
            format!("expected a date like 2025-07-01, got {value}"),
        );
    }
    d
}

/// A TOML datetime as an instant: with an offset it is exact; a local
/// datetime or date is read in the site's zone. DST gaps and overlaps are errors.
pub fn instant(value: &Datetime, tz: chrono_tz::Tz) -> Result<i64, String> {
    let Some(d) = value.date else {
        return Err(format!("expected a date and time, got {value}"));
    };
    let date = NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
        .ok_or_else(|| format!("not a calendar date: {value}"))?;
    let time = match value.time {
        Some(t) => NaiveTime::from_hms_nano_opt(
            u32::from(t.hour),
            u32::from(t.minute),
            u32::from(t.second.unwrap_or(0)),
            t.nanosecond.unwrap_or(0),
        )
        .ok_or_else(|| format!("not a time of day: {value}"))?,
        None => NaiveTime::MIN,
    };
    let naive = NaiveDateTime::new(date, time);
    match value.offset {
        Some(toml::value::Offset::Z) => Ok(naive.and_utc().timestamp_millis()),
        Some(toml::value::Offset::Custom { minutes }) => {
            Ok(naive.and_utc().timestamp_millis() - i64::from(minutes) * 60_000)
        }
        None => match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => Ok(t.timestamp_millis()),
            LocalResult::Ambiguous(_, _) => Err(format!(
                "{value} happens twice in {tz} (DST change): add an offset"
            )),
            LocalResult::None => Err(format!("{value} does not exist in {tz} (DST gap)")),
        },
    }
}

pub(crate) fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn is_snake_case(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
