//! The operator's view: what the store says of every meter (last reading,
//! its age, silent or not, anomalies of the last day), the outbox and the
//! alerts, merged with what a running process knows (parked meters, failed
//! polls). `meterflow status` prints it; `run` on a terminal prints a
//! one-line summary of it every few seconds.

use std::collections::BTreeMap;

use meterflow_core::counter::{CounterSpec, is_silent};
use meterflow_core::time::{human_duration, local_text};
use meterflow_model::Site;
use serde::Serialize;

/// One meter as the operator sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MeterStatus {
    /// Meter id.
    pub meter: String,
    /// `ok`, `silent`, `parked` (the poller backs off after failures) or `no data`.
    pub state: String,
    /// Time of the last counter reading, ms.
    pub last_ms: Option<i64>,
    /// Its value.
    pub last_value: Option<f64>,
    /// Its age at the view's time, s.
    pub age_s: Option<i64>,
    /// Anomalies recorded in the 24 h before the view's time.
    pub anomalies_24h: usize,
    /// Polls that gave nothing since the process started (live only).
    pub failed_polls: Option<u64>,
    /// Polls taken of those due since the process started, % (live only,
    /// Modbus meters).
    pub polls_taken_pct: Option<f64>,
}

/// The whole view.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct View {
    /// The view's time, ms.
    pub at_ms: i64,
    /// Meters in site-file order.
    pub meters: Vec<MeterStatus>,
    /// Points waiting for InfluxDB.
    pub outbox_points: i64,
    /// Age of the oldest, s.
    pub outbox_age_s: Option<i64>,
    /// Alerts firing.
    pub alerts_firing: usize,
    /// Bytes of the store in use.
    pub store_bytes: i64,
    /// Series-months of readings kept compacted.
    pub compacted_months: i64,
    /// Whether a running process answered (its polls are in the view).
    pub process: bool,
}

/// What a running process says of one polled meter.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveMeter {
    /// Consecutive failed polls (> 0: parked with back-off).
    pub consecutive_failures: u64,
    /// Failed polls since start.
    pub failed_polls: u64,
    /// Polls due since start.
    pub polls_due: u64,
    /// Polls taken since start.
    pub polls_taken: u64,
}

/// The view of `site` at `now_ms` from its store, with `live` poll state
/// when a process gave it.
pub fn view(
    site: &Site,
    now_ms: i64,
    live: Option<&BTreeMap<String, LiveMeter>>,
) -> anyhow::Result<View> {
    let path = site.store_path();
    let reader = meterflow_store::Reader::open(&path)?;
    let mut anomalies: BTreeMap<String, usize> = BTreeMap::new();
    for a in reader.anomalies(
        None,
        now_ms.saturating_sub(86_400_000),
        now_ms.saturating_add(1),
    )? {
        *anomalies.entry(a.meter).or_default() += 1;
    }
    let mut meters = Vec::new();
    for m in &site.meters {
        let last = match reader.series_id(&m.id, m.counter_quantity())? {
            Some(series) => reader.last_value(series)?,
            None => None,
        };
        let l = live.and_then(|l| l.get(&m.id)).copied();
        let spec = CounterSpec::from_meter(m);
        let state = match (last, l) {
            (_, Some(l)) if l.consecutive_failures > 0 => "parked",
            (None, _) => "no data",
            (Some((ts, _)), _) if is_silent(&spec, ts, now_ms) => "silent",
            _ => "ok",
        };
        meters.push(MeterStatus {
            meter: m.id.clone(),
            state: state.to_string(),
            last_ms: last.map(|(t, _)| t),
            last_value: last.map(|(_, v)| v),
            age_s: last.map(|(t, _)| (now_ms - t).max(0) / 1000),
            anomalies_24h: anomalies.get(&m.id).copied().unwrap_or(0),
            failed_polls: l.map(|l| l.failed_polls),
            polls_taken_pct: l
                .filter(|l| l.polls_due > 0)
                .map(|l| l.polls_taken as f64 * 100.0 / l.polls_due as f64),
        });
    }
    let outbox = meterflow_store::Outbox::open(&path)?.stats()?;
    let firing = meterflow_store::AlertDb::open(&path)?.firing()?.len();
    let (store_bytes, compacted_months) = reader.storage()?;
    Ok(View {
        store_bytes,
        compacted_months,
        at_ms: now_ms,
        meters,
        outbox_points: outbox.points,
        outbox_age_s: outbox.oldest_ms.map(|t| (now_ms - t).max(0) / 1000),
        alerts_firing: firing,
        process: live.is_some(),
    })
}

/// The view as a table for a terminal, times in the site's zone.
pub fn table(site: &Site, v: &View) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} at {}",
        site.site.name,
        local_text(v.at_ms, site.tz)
    );
    let _ = writeln!(
        out,
        "process   {}",
        if v.process {
            "running (poll state from its /metrics)"
        } else {
            "not reachable: no [api], or not running (poll state unknown)"
        }
    );
    let _ = writeln!(
        out,
        "outbox    {} point(s) waiting{}",
        v.outbox_points,
        v.outbox_age_s
            .map(|a| format!(", oldest {}", human_duration(a * 1000)))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "alerts    {} firing", v.alerts_firing);
    let _ = writeln!(
        out,
        "store     {:.1} MiB in use, {} series-months compacted (`[store] compact_after_days` = {})",
        v.store_bytes as f64 / 1_048_576.0,
        v.compacted_months,
        site.store.compact_after_days
    );
    let _ = writeln!(
        out,
        "{:<18} {:<8} {:<26} {:>10} {:>16} {:>9} {:>11} {:>12}",
        "meter",
        "state",
        "last reading",
        "age",
        "value",
        "anomalies",
        "polls taken",
        "failed polls"
    );
    for m in &v.meters {
        let _ = writeln!(
            out,
            "{:<18} {:<8} {:<26} {:>10} {:>16} {:>9} {:>11} {:>12}",
            m.meter,
            m.state,
            m.last_ms
                .map(|t| local_text(t, site.tz))
                .unwrap_or_else(|| "-".into()),
            m.age_s
                .map(|a| human_duration(a * 1000))
                .unwrap_or_else(|| "-".into()),
            m.last_value
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "-".into()),
            m.anomalies_24h,
            m.polls_taken_pct
                .map(|p| format!("{p:.1} %"))
                .unwrap_or_else(|| "-".into()),
            m.failed_polls
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
        );
    }
    out
}

/// One line for a terminal while `run` works: readings per second, meters
/// by state, the outbox and the alerts.
pub fn line(site: &Site, v: &View, readings_per_s: f64) -> String {
    let count = |s: &str| v.meters.iter().filter(|m| m.state == s).count();
    let time = local_text(v.at_ms, site.tz);
    let clock = time.get(11..19).unwrap_or(&time);
    format!(
        "{clock}  {readings_per_s:.1} readings/s · meters {} ok, {} parked, {} silent, {} without data · outbox {}{} · alerts {} firing",
        count("ok"),
        count("parked"),
        count("silent"),
        count("no data"),
        v.outbox_points,
        v.outbox_age_s
            .filter(|_| v.outbox_points > 0)
            .map(|a| format!(" (oldest {})", human_duration(a * 1000)))
            .unwrap_or_default(),
        v.alerts_firing
    )
}
