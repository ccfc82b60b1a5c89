//! `meterflow report`: a meter's consumption with quality, without SQL.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{Duration, NaiveDate, TimeZone};
use meterflow_core::buckets::BUCKET_MS;
use meterflow_core::from_micro;
use meterflow_core::time::{day_start, hour_start, local_date};
use meterflow_store::Reader;

/// Row size of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum By {
    /// One row per local day.
    Day,
    /// One row per local hour.
    Hour,
    /// One row per 15-minute bucket.
    Interval,
}

/// One report row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// Label (local date, hour or bucket start).
    pub(crate) label: String,
    /// Consumption in the meter's unit.
    pub(crate) consumption: f64,
    /// Buckets measured.
    pub(crate) measured: i64,
    /// Buckets estimated.
    pub(crate) estimated: i64,
    /// Buckets missing.
    pub(crate) missing: i64,
}

impl Row {
    /// Quality of the row as a word.
    pub(crate) fn quality(&self) -> &'static str {
        match (self.measured, self.estimated, self.missing) {
            (_, 0, 0) => "measured",
            (0, 0, _) => "missing",
            (_, _, 0) => "estimated",
            _ => "partial",
        }
    }
}

/// `meterflow report` entry point.
pub(crate) fn run(
    config: &Path,
    meter: &str,
    from: &str,
    to: &str,
    by: By,
) -> anyhow::Result<ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let Some(m) = site.meter(meter) else {
        let ids: Vec<&str> = site.meters.iter().map(|m| m.id.as_str()).collect();
        eprintln!(
            "error: no meter `{meter}` in {}; meters: {}",
            config.display(),
            ids.join(", ")
        );
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    };
    let (from_ms, to_ms) = match (
        meterflow_core::timeparse::parse_time_arg(from, site.tz),
        meterflow_core::timeparse::parse_time_arg(to, site.tz),
    ) {
        (Ok(a), Ok(b)) if a < b => (a, b),
        (Ok(_), Ok(_)) => {
            eprintln!("error: --from must be before --to");
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        }
    };
    let path = site.store_path();
    if !path.exists() {
        eprintln!(
            "error: no store at {} yet: import or run first",
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let reader = Reader::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let rows = rows(
        &reader,
        meter,
        m.counter_quantity(),
        site.tz,
        from_ms,
        to_ms,
        by,
    )?;
    let unit = &m.unit;
    println!(
        "meter {} ({}, {}, multiplier {}), {} to {} ({})",
        m.id,
        m.kind.as_str(),
        unit,
        m.multiplier,
        fmt_local(from_ms, site.tz),
        fmt_local(to_ms, site.tz),
        site.site.timezone
    );
    let head = match by {
        By::Day => "day",
        By::Hour => "hour",
        By::Interval => "interval",
    };
    println!(
        "{head:<17} {:>16} {:>9} {:>9} {:>8}  quality",
        format!("{unit}"),
        "measured",
        "estimated",
        "missing"
    );
    let (mut total, mut me, mut es, mut mi) = (0.0, 0, 0, 0);
    for r in &rows {
        println!(
            "{:<17} {:>16.3} {:>9} {:>9} {:>8}  {}",
            r.label,
            r.consumption,
            r.measured,
            r.estimated,
            r.missing,
            r.quality()
        );
        total += r.consumption;
        me += r.measured;
        es += r.estimated;
        mi += r.missing;
    }
    let all = (me + es + mi).max(1);
    println!(
        "{:<17} {:>16.3} {:>9} {:>9} {:>8}  completeness {:.1} % measured",
        "total",
        total,
        me,
        es,
        mi,
        me as f64 * 100.0 / all as f64
    );
    let anomalies = reader.anomalies(Some(meter), from_ms, to_ms)?;
    if !anomalies.is_empty() {
        println!("anomalies ({}):", anomalies.len());
        for a in anomalies.iter().take(50) {
            println!(
                "  {}  {:<18} {}",
                fmt_local(a.ts_ms, site.tz),
                a.kind,
                a.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Report rows of a meter between two instants (missing buckets filled in).
pub(crate) fn rows(
    reader: &Reader,
    meter: &str,
    quantity: &str,
    tz: chrono_tz::Tz,
    from_ms: i64,
    to_ms: i64,
    by: By,
) -> anyhow::Result<Vec<Row>> {
    let Some(series) = reader.series_id(meter, quantity)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    match by {
        By::Interval => {
            let stored: std::collections::BTreeMap<i64, meterflow_store::IntervalRow> = reader
                .intervals(series, from_ms, to_ms)?
                .into_iter()
                .map(|i| (i.bucket_ms, i))
                .collect();
            let mut b = meterflow_core::buckets::bucket_of(from_ms);
            while b < to_ms {
                let row = match stored.get(&b) {
                    Some(i) => {
                        let q = if i.measured_ms > 0 {
                            (1, 0, 0)
                        } else if i.estimated_ms > 0 {
                            (0, 1, 0)
                        } else {
                            (0, 0, 1)
                        };
                        (from_micro(i.micro), q)
                    }
                    None => (0.0, (0, 0, 1)),
                };
                out.push(Row {
                    label: fmt_local(b, tz),
                    consumption: row.0,
                    measured: row.1.0,
                    estimated: row.1.1,
                    missing: row.1.2,
                });
                b += BUCKET_MS;
            }
        }
        By::Hour => {
            let stored = reader.hours(series, hour_start(from_ms, tz), to_ms)?;
            let mut h = hour_start(meterflow_core::buckets::bucket_of(from_ms), tz);
            while h < to_ms {
                let next = h + 3_600_000;
                let found = stored.iter().find(|r| r.hour_ms == h);
                let (c, me, es) = found.map_or((0.0, 0, 0), |r| {
                    (from_micro(r.micro), r.measured, r.estimated)
                });
                out.push(Row {
                    label: fmt_local(h, tz),
                    consumption: c,
                    measured: me,
                    estimated: es,
                    missing: 4 - me - es,
                });
                h = next;
            }
        }
        By::Day => {
            let first = local_date(from_ms, tz);
            let last = local_date(to_ms - 1, tz);
            let stored = reader.days(
                series,
                &first.to_string(),
                &(last + Duration::days(1)).to_string(),
            )?;
            let mut d: NaiveDate = first;
            while d <= last {
                let buckets = (day_start(d + Duration::days(1), tz) - day_start(d, tz)) / BUCKET_MS;
                let key = d.to_string();
                let found = stored.iter().find(|r| r.day == key);
                let (c, me, es) = found.map_or((0.0, 0, 0), |r| {
                    (from_micro(r.micro), r.measured, r.estimated)
                });
                out.push(Row {
                    label: key,
                    consumption: c,
                    measured: me,
                    estimated: es,
                    missing: buckets - me - es,
                });
                d += Duration::days(1);
            }
        }
    }
    Ok(out)
}

fn fmt_local(ts_ms: i64, tz: chrono_tz::Tz) -> String {
    match tz.timestamp_millis_opt(ts_ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => ts_ms.to_string(),
    }
}
