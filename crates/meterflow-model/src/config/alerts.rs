//! `[alerting]` and `[[alert]]` rules, with their checks.

use std::collections::BTreeSet;

use serde::Deserialize;
use toml::value::Datetime;

use super::checks::*;
use super::document::{Ctx, Located, suggest};
use super::*;

/// `[alerting]`: how often alert rules are evaluated and how notifications are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerting {
    /// Seconds between evaluations while `meterflow run` runs.
    #[serde(default = "default_alert_interval")]
    pub interval_s: u64,
    /// First retry delay of an undelivered notification, s (doubles up to `retry_max_s`).
    #[serde(default = "default_retry_initial")]
    pub retry_initial_s: f64,
    /// Longest retry delay, s.
    #[serde(default = "default_retry_max")]
    pub retry_max_s: f64,
    /// Give up on a notification after this many attempts (it stays in the history).
    #[serde(default = "default_retry_attempts")]
    pub max_attempts: u32,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            interval_s: default_alert_interval(),
            retry_initial_s: default_retry_initial(),
            retry_max_s: default_retry_max(),
            max_attempts: default_retry_attempts(),
        }
    }
}

const fn default_alert_interval() -> u64 {
    300
}
const fn default_retry_initial() -> f64 {
    5.0
}
const fn default_retry_max() -> f64 {
    900.0
}
const fn default_retry_attempts() -> u32 {
    50
}

/// What an alert rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Year to date above the quota's 约束值 pro-rated to the days with data (ratio > threshold, default 1).
    QuotaOverrun,
    /// Projected year end above the quota's 约束值 (ratio > threshold, default 1).
    QuotaProjection,
    /// An agency's projected year-end energy cost above its `[[budget]]`
    /// (ratio > threshold, default 1).
    BudgetOverrun,
    /// A meter's own tariff registers (DL/T 645 费率 1–4: 尖峰, 峰, 平, 谷)
    /// disagree with the time-of-use split of its 15-minute consumption on
    /// the last complete day: the share of energy in another period above
    /// `threshold` (default 0.05) — a wrong TOU table or the meter's clock.
    TouMismatch,
    /// Mean power in off-hours above a share of the last working day's working-hours mean (default 0.5).
    OffHoursBaseload,
    /// Minimum hourly night flow above `threshold` m³/h (default 0.02) on `nights` nights in a row (default 3).
    NightFlow,
    /// Parent meter − Σ children above `threshold` × parent on the last complete day (default 0.1).
    Imbalance,
    /// No reading for more than `threshold` × the meter's `silent_after` intervals (default 1).
    MeterSilent,
    /// A `counter_reset` anomaly within the last `window_s` (default 1 day).
    CounterReset,
    /// An `implausible_delta` anomaly within the last `window_s` (default 1 day).
    ImplausibleDelta,
    /// Share of failed polls of a bus above `threshold` (default 0.2).
    BusErrorRate,
    /// A CJ/T 188 meter reports a low battery in its last reading.
    BatteryLow,
    /// A CJ/T 188 meter reports its valve abnormal in its last reading.
    ValveFault,
    /// The newest good backup of `[backup]` is older than `threshold` ×
    /// `every_h` (default 1.5); none at all counts from the process start.
    BackupStale,
}

impl AlertKind {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::QuotaOverrun => "quota_overrun",
            AlertKind::QuotaProjection => "quota_projection",
            AlertKind::BudgetOverrun => "budget_overrun",
            AlertKind::TouMismatch => "tou_mismatch",
            AlertKind::OffHoursBaseload => "off_hours_baseload",
            AlertKind::NightFlow => "night_flow",
            AlertKind::Imbalance => "imbalance",
            AlertKind::MeterSilent => "meter_silent",
            AlertKind::CounterReset => "counter_reset",
            AlertKind::ImplausibleDelta => "implausible_delta",
            AlertKind::BusErrorRate => "bus_error_rate",
            AlertKind::BatteryLow => "battery_low",
            AlertKind::ValveFault => "valve_fault",
            AlertKind::BackupStale => "backup_stale",
        }
    }
}

/// Severity of an alert rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    /// Informational.
    Info,
    /// Needs a look.
    Warning,
    /// Needs action now.
    Critical,
}

impl AlertSeverity {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        }
    }
}

/// `[[alert]]`: one rule. Without any, a default set is used (see `Site::alert_rules`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique rule id.
    pub id: String,
    /// What it watches.
    pub kind: AlertKind,
    /// Severity.
    #[serde(default = "default_severity")]
    pub severity: AlertSeverity,
    /// The condition must hold this long before the alert fires, s.
    #[serde(default)]
    pub for_s: u64,
    /// A firing alert resolves once the value is this fraction back past the threshold.
    #[serde(default = "default_hysteresis")]
    pub hysteresis: f64,
    /// Threshold; its meaning and default depend on `kind`.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// For quota and off-hours rules: `agency`, `building` or `site` (default agency / building).
    #[serde(default)]
    pub level: Option<String>,
    /// Only these agencies, buildings, meters or buses (default: all that apply).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Working hours, local `HH:MM-HH:MM` (off-hours rule; default 08:00-18:00).
    #[serde(default)]
    pub work_hours: Option<String>,
    /// Working days, 1 = Monday … 7 = Sunday (default: the national
    /// working calendar, with its holidays and make-up working days).
    #[serde(default)]
    pub workdays: Option<Vec<u8>>,
    /// Holidays (off-hours all day).
    #[serde(default)]
    pub holidays: Vec<Datetime>,
    /// Night window, local `HH:MM-HH:MM` (night-flow rule; default 01:00-05:00).
    #[serde(default)]
    pub night: Option<String>,
    /// Nights in a row (night-flow rule; default 3).
    #[serde(default)]
    pub nights: Option<u32>,
    /// Look-back window of anomaly rules, s (default 86 400).
    #[serde(default)]
    pub window_s: Option<u64>,
}

const fn default_severity() -> AlertSeverity {
    AlertSeverity::Warning
}
const fn default_hysteresis() -> f64 {
    0.05
}

/// `HH:MM-HH:MM` → minutes after midnight (start, end); the end may be before the start (overnight).
pub fn parse_hours(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('-')?;
    let m = |x: &str| -> Option<u32> {
        let (h, mi) = x.trim().split_once(':')?;
        let (h, mi): (u32, u32) = (h.parse().ok()?, mi.parse().ok()?);
        (h <= 24 && mi < 60 && h * 60 + mi <= 24 * 60).then_some(h * 60 + mi)
    };
    let (a, b) = (m(a)?, m(b)?);
    (a != b).then_some((a, b))
}

/// The sections `[[alert]]` rules and `[[notifier]]`s may refer to.
pub(crate) struct Referable<'a, 'd> {
    pub(crate) broker: Option<&'a Located<'d, EmbeddedBroker>>,
    pub(crate) buses: &'a [Located<'d, Bus>],
    pub(crate) meters: &'a [Located<'d, Meter>],
    pub(crate) mqtt: &'a [Located<'d, MqttBroker>],
}

/// `[alerting]`, `[[alert]]` and `[[notifier]]`: the settings, the rules
/// (the default set without any) and the notifiers.
pub(crate) fn validate_alerts(
    ctx: &mut Ctx<'_>,
    alerting_rows: Option<&Located<'_, Alerting>>,
    alerts: &[Located<'_, AlertRule>],
    notifiers: &[Located<'_, NotifierConfig>],
    refs: &Referable<'_, '_>,
    ids: &super::site::Ids,
) -> (Alerting, Vec<AlertRule>, Vec<NotifierConfig>) {
    let Referable {
        broker,
        buses: buses_rows,
        meters: meters_rows,
        mqtt,
    } = *refs;
    let (buildings, agencies) = (&ids.buildings, &ids.agencies);
    let alerting = alerting_rows
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or_default();
    if let Some(a) = alerting_rows {
        for (key, v) in [
            ("retry_initial_s", a.value.retry_initial_s),
            ("retry_max_s", a.value.retry_max_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                ctx.error(
                    a.span_of(&[key]),
                    a.key(key),
                    format!("must be a number > 0, got {v}"),
                );
            }
        }
        if a.value.interval_s == 0 {
            ctx.error(
                a.span_of(&["interval_s"]),
                a.key("interval_s"),
                "must be at least 1 s",
            );
        }
    }
    unique_ids(ctx, alerts, |a| &a.id, "alert");
    let meters: BTreeSet<String> = meters_rows.iter().map(|m| m.value.id.clone()).collect();
    let buses: BTreeSet<String> = buses_rows.iter().map(|b| b.value.id.clone()).collect();
    for r in alerts {
        let v = &r.value;
        if let Some(t) = v.threshold
            && !t.is_finite()
        {
            ctx.error(
                r.span_of(&["threshold"]),
                r.key("threshold"),
                "must be a finite number",
            );
        }
        if !(0.0..1.0).contains(&v.hysteresis) {
            ctx.error(
                r.span_of(&["hysteresis"]),
                r.key("hysteresis"),
                format!("a fraction in [0, 1), got {}", v.hysteresis),
            );
        }
        if let Some(level) = &v.level
            && !["agency", "building", "site"].contains(&level.as_str())
        {
            let hint = suggest(level, ["agency", "building", "site"].iter());
            ctx.error(
                r.span_of(&["level"]),
                r.key("level"),
                format!("`{level}` is not agency, building or site{hint}"),
            );
        }
        for (key, val) in [("work_hours", &v.work_hours), ("night", &v.night)] {
            if let Some(h) = val
                && parse_hours(h).is_none()
            {
                ctx.error(
                    r.span_of(&[key]),
                    r.key(key),
                    format!("`{h}` is not a local time range like 08:00-18:00"),
                );
            }
        }
        if let Some(days) = &v.workdays
            && days.iter().any(|d| !(1..=7).contains(d))
        {
            ctx.error(
                r.span_of(&["workdays"]),
                r.key("workdays"),
                "days are 1 (Monday) to 7 (Sunday)",
            );
        }
        for (i, h) in v.holidays.iter().enumerate() {
            if crate::factors::to_date(h).is_none() {
                let idx = i.to_string();
                ctx.error(
                    r.span_of(&["holidays", &idx]),
                    r.key(&format!("holidays[{i}]")),
                    format!("`{h}` is not a date"),
                );
            }
        }
        let level = v.level.as_deref();
        let known: (&BTreeSet<String>, &str) = match v.kind {
            AlertKind::QuotaOverrun | AlertKind::QuotaProjection if level == Some("building") => {
                (buildings, "building")
            }
            AlertKind::QuotaOverrun | AlertKind::QuotaProjection | AlertKind::BudgetOverrun => {
                (agencies, "agency")
            }
            AlertKind::OffHoursBaseload if level == Some("agency") => (agencies, "agency"),
            AlertKind::OffHoursBaseload => (buildings, "building"),
            AlertKind::BusErrorRate => (&buses, "bus"),
            _ => (&meters, "meter"),
        };
        for (i, t) in v.targets.iter().enumerate() {
            if level != Some("site") {
                reference(ctx, r, &format!("targets.{i}"), t, known.0, known.1);
            }
        }
    }
    unique_ids(ctx, notifiers, |n| &n.id, "notifier");
    let brokers: BTreeSet<String> = mqtt.iter().map(|b| b.value.id.clone()).collect();
    for n in notifiers {
        let v = &n.value;
        let http = matches!(
            v.kind,
            NotifierKind::Webhook
                | NotifierKind::Wecom
                | NotifierKind::Dingtalk
                | NotifierKind::Feishu
        );
        if http && v.url.is_none() == v.url_env.is_none() {
            ctx.error(n.span_of(&["kind"]), n.key("url"), "give exactly one of `url` or `url_env` (the name of an environment variable holding the URL)");
        }
        if let Some(u) = &v.url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            ctx.error(
                n.span_of(&["url"]),
                n.key("url"),
                format!("`{u}` is not an http(s) URL"),
            );
        }
        if v.kind == NotifierKind::Mqtt {
            match v.broker.as_deref() {
                None => ctx.error(
                    n.span_of(&["kind"]),
                    n.key("broker"),
                    "an MQTT notifier needs `broker` (a [[mqtt]] id, or \"embedded\")",
                ),
                Some("embedded") if broker.is_none() => ctx.error(
                    n.span_of(&["broker"]),
                    n.key("broker"),
                    "`embedded` needs a [broker] section",
                ),
                Some("embedded") => {}
                Some(b) => {
                    reference(ctx, n, "broker", b, &brokers, "mqtt broker");
                }
            }
        }
        if !(v.timeout_s.is_finite() && v.timeout_s > 0.0) {
            ctx.error(
                n.span_of(&["timeout_s"]),
                n.key("timeout_s"),
                format!("must be a number > 0, got {}", v.timeout_s),
            );
        }
    }
    let rules = if alerts.is_empty() {
        default_alert_rules()
    } else {
        alerts.iter().map(|a| a.value.clone()).collect()
    };
    (
        alerting,
        rules,
        notifiers.iter().map(|n| n.value.clone()).collect(),
    )
}
