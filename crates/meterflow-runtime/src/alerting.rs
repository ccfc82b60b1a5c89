//! The alert engine: each `[[alert]]` rule turns the store (and live bus
//! health) into one value per target at an evaluation time; the pure
//! lifecycle of `meterflow_core::alerts` decides pending → firing →
//! resolved; transitions, history and the notification outbox are recorded
//! durably, so a restart resumes where it was and never re-fires.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{Datelike, NaiveDate, Timelike};
use meterflow_core::aggregate::{Grain, Level};
use meterflow_core::alerts::{Condition, State, evaluate};
use meterflow_core::time::{day_start, local_date};
use meterflow_model::config::{AlertKind, AlertRule, parse_hours};
use meterflow_model::factors::to_date;
use meterflow_model::{EnergyClass, Site};
use meterflow_store::{AlertDb, AlertEvent, AlertStateRow, Reader, Transition};

use meterflow_kpi::{KpiContext, Scope, period_of};

/// Live figures the store does not hold.
#[derive(Debug, Clone, Default)]
pub struct LiveMetrics {
    /// Bus id → share of failed requests since the last evaluation.
    pub bus_error_rate: BTreeMap<String, f64>,
    /// When the running process started, ms: silence is counted from then at
    /// the latest, so a restart does not find every meter silent.
    pub started_ms: Option<i64>,
}

/// One value of a rule for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Agency, building, meter or bus id.
    pub target: String,
    /// The rule's value (NaN: no data, no change of state).
    pub value: f64,
    /// What the value means, for the notification text.
    pub detail: String,
}

/// Threshold (with the rule's default) and direction.
pub fn threshold(rule: &AlertRule) -> f64 {
    rule.threshold.unwrap_or(match rule.kind {
        AlertKind::QuotaOverrun | AlertKind::QuotaProjection | AlertKind::BudgetOverrun => 1.0,
        AlertKind::OffHoursBaseload => 0.5,
        AlertKind::NightFlow => 0.02,
        AlertKind::Imbalance => 0.1,
        AlertKind::MeterSilent => 1.0,
        AlertKind::TouMismatch => 0.05,
        AlertKind::CounterReset | AlertKind::ImplausibleDelta => 0.5,
        AlertKind::BusErrorRate => 0.2,
        AlertKind::BatteryLow | AlertKind::ValveFault => 0.5,
        AlertKind::BackupStale => 1.5,
    })
}

fn condition(rule: &AlertRule) -> Condition {
    let threshold = match rule.kind {
        // The night-flow value is a count of nights in a row.
        AlertKind::NightFlow => f64::from(rule.nights.unwrap_or(3)) - 0.5,
        _ => threshold(rule),
    };
    Condition {
        threshold,
        above: true,
        for_ms: i64::try_from(rule.for_s.saturating_mul(1000)).unwrap_or(i64::MAX),
        hysteresis: match rule.kind {
            AlertKind::NightFlow | AlertKind::CounterReset | AlertKind::ImplausibleDelta => 0.0,
            _ => rule.hysteresis,
        },
    }
}

fn wanted<'a>(rule: &AlertRule, all: impl Iterator<Item = &'a str>) -> Vec<String> {
    all.filter(|id| rule.targets.is_empty() || rule.targets.iter().any(|t| t == id))
        .map(str::to_string)
        .collect()
}

fn scopes(site: &Site, rule: &AlertRule, default: &str) -> Vec<Scope> {
    match rule.level.as_deref().unwrap_or(default) {
        "site" => vec![Scope::Site],
        "building" => wanted(rule, site.buildings.iter().map(|b| b.id.as_str()))
            .into_iter()
            .map(Scope::Building)
            .collect(),
        _ => wanted(rule, site.agencies.iter().map(|a| a.id.as_str()))
            .into_iter()
            .map(Scope::Agency)
            .collect(),
    }
}

fn level_of(scope: &Scope) -> (Level, String) {
    match scope {
        Scope::Agency(a) => (Level::Agency, a.clone()),
        Scope::Building(b) => (Level::Building, b.clone()),
        Scope::Site => (Level::Site, "site".into()),
    }
}

/// Local hour containing `ms`, as UTC ms of its start.
fn hour_floor(ms: i64) -> i64 {
    ms.div_euclid(3_600_000) * 3_600_000
}

fn local(site: &Site, ms: i64) -> chrono::DateTime<chrono_tz::Tz> {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&site.tz)
}

struct WorkCalendar {
    start: u32,
    end: u32,
    /// The rule's own working days, if it names them; else the national
    /// working calendar (weekends, statutory holidays, make-up days).
    days: Option<Vec<u8>>,
    /// The rule's and the site's closures (off all day).
    holidays: Vec<NaiveDate>,
}

impl WorkCalendar {
    fn of(site: &Site, rule: &AlertRule) -> WorkCalendar {
        let (start, end) = rule
            .work_hours
            .as_deref()
            .and_then(parse_hours)
            .unwrap_or((8 * 60, 18 * 60));
        WorkCalendar {
            start,
            end,
            days: rule.workdays.clone(),
            holidays: rule
                .holidays
                .iter()
                .chain(&site.site.closures)
                .filter_map(to_date)
                .collect(),
        }
    }

    fn workday(&self, d: NaiveDate) -> bool {
        if self.holidays.contains(&d) {
            return false;
        }
        match &self.days {
            Some(days) => days.contains(&(d.weekday().number_from_monday() as u8)),
            None => meterflow_model::calendar::Calendar::shipped()
                .kind(d)
                .worked(),
        }
    }

    /// Is the hour starting at local time `t` a working hour?
    fn working(&self, t: chrono::DateTime<chrono_tz::Tz>) -> bool {
        let m = t.hour() * 60 + t.minute();
        self.workday(t.date_naive()) && m >= self.start && m < self.end
    }
}

/// The rule's values at `now_ms`.
pub fn observe(
    site: &Site,
    reader: &Reader,
    rule: &AlertRule,
    now_ms: i64,
    live: &LiveMetrics,
) -> anyhow::Result<Vec<Observation>> {
    let mut out = Vec::new();
    match rule.kind {
        AlertKind::QuotaOverrun | AlertKind::QuotaProjection => {
            let year = local_date(now_ms, site.tz).year();
            let Some(period) = period_of(year, None) else {
                return Ok(out);
            };
            // As of the evaluation time (a replay evaluates the past).
            let kpi = KpiContext::new(site).with_today(local_date(now_ms, site.tz));
            for scope in scopes(site, rule, "agency") {
                let k = kpi.scope_kpis(reader, &scope, period)?;
                let Some(t) = k.tracking else { continue };
                let (value, detail) = if rule.kind == AlertKind::QuotaOverrun {
                    (
                        t.ratio_to_date,
                        format!(
                            "per-capita energy to date {:.2} kgce/person is {:.0} % of the 约束值 pro-rated over {} days",
                            t.to_date,
                            t.ratio_to_date * 100.0,
                            k.days_with_data
                        ),
                    )
                } else {
                    // No projection (and no projected-overrun alert) below
                    // the minimum window.
                    let (Some(projected), Some(ratio), Some(method)) =
                        (t.projected, t.projected_ratio, t.method)
                    else {
                        continue;
                    };
                    (
                        ratio,
                        format!(
                            "projected year end {:.2} kgce/person = {:.0} % of the 约束值 ({} projection)",
                            projected,
                            ratio * 100.0,
                            method.as_str()
                        ),
                    )
                };
                out.push(Observation {
                    target: scope.label().to_string(),
                    value,
                    detail,
                });
            }
        }
        AlertKind::BudgetOverrun => {
            let year = local_date(now_ms, site.tz).year();
            let kpi = KpiContext::new(site).with_today(local_date(now_ms, site.tz));
            for scope in scopes(site, rule, "agency") {
                let Some(b) = kpi.budget(reader, scope.label(), year)? else {
                    continue;
                };
                // No projection (and no alert) below the minimum window.
                let (Some(projected), Some(ratio), Some(method)) =
                    (b.projected_cny, b.projected_ratio, b.method)
                else {
                    continue;
                };
                out.push(Observation {
                    target: scope.label().to_string(),
                    value: ratio,
                    detail: format!(
                        "projected {year} energy cost {projected:.0} CNY = {:.0} % of the budget {:.0} CNY ({method} projection; {:.0} CNY so far)",
                        ratio * 100.0,
                        b.budget_cny,
                        b.to_date_cny
                    ),
                });
            }
        }
        AlertKind::OffHoursBaseload => {
            let cal = WorkCalendar::of(site, rule);
            let hour = hour_floor(now_ms) - 3_600_000;
            let at = local(site, hour);
            for scope in scopes(site, rule, "building") {
                let (level, id) = level_of(&scope);
                let target = scope.label().to_string();
                if cal.working(at) {
                    out.push(Observation {
                        target,
                        value: 0.0,
                        detail: "working hours".into(),
                    });
                    continue;
                }
                let hourly = |from: i64, to: i64| -> anyhow::Result<BTreeMap<i64, f64>> {
                    Ok(reader
                        .agg(
                            level,
                            &id,
                            EnergyClass::Electricity,
                            "",
                            Grain::Hour,
                            from,
                            to,
                        )?
                        .into_iter()
                        .map(|r| (r.start_ms, r.value))
                        .collect())
                };
                let Some(load) = hourly(hour, hour + 1).map(|m| m.get(&hour).copied())? else {
                    continue;
                };
                // Reference: mean working-hour load of the last working day before.
                let mut day = at.date_naive();
                let mut reference = None;
                for _ in 0..14 {
                    day = day.pred_opt().unwrap_or(day);
                    if !cal.workday(day) {
                        continue;
                    }
                    let (lo, hi) = (
                        day_start(day, site.tz),
                        day_start(day.succ_opt().unwrap_or(day), site.tz),
                    );
                    let rows = hourly(lo, hi)?;
                    let work: Vec<f64> = rows
                        .iter()
                        .filter(|(t, _)| cal.working(local(site, **t)))
                        .map(|(_, v)| *v)
                        .collect();
                    if !work.is_empty() {
                        reference = Some(work.iter().sum::<f64>() / work.len() as f64);
                        break;
                    }
                }
                let Some(reference) = reference.filter(|r| *r > 0.0) else {
                    continue;
                };
                out.push(Observation {
                    target,
                    value: load / reference,
                    detail: format!(
                        "{load:.2} kWh in the off-hours hour from {} = {:.0} % of the last working day's mean {reference:.2} kWh/h",
                        at.format("%Y-%m-%d %H:%M"),
                        load / reference * 100.0
                    ),
                });
            }
        }
        AlertKind::NightFlow => {
            let (start, end) = rule
                .night
                .as_deref()
                .and_then(parse_hours)
                .unwrap_or((60, 300));
            let nights = rule.nights.unwrap_or(3).max(1);
            let limit = threshold(rule);
            let today = local_date(now_ms, site.tz);
            let night_of = |d: NaiveDate| -> (i64, i64) {
                let lo = day_start(d, site.tz) + i64::from(start) * 60_000;
                let mut hi = day_start(d, site.tz) + i64::from(end) * 60_000;
                if end <= start {
                    hi += 86_400_000;
                }
                (lo, hi)
            };
            // The last night that has ended.
            let mut last = today;
            while night_of(last).1 > now_ms {
                last = last.pred_opt().unwrap_or(last);
            }
            let meters = wanted(
                rule,
                site.meters
                    .iter()
                    .filter(|m| m.kind == EnergyClass::Water)
                    .map(|m| m.id.as_str()),
            );
            for id in meters {
                let Some(m) = site.meter(&id) else { continue };
                let Some(series) = reader.series_id(&id, m.counter_quantity())? else {
                    continue;
                };
                let per_m3 = if m.unit == "L" { 1000.0 } else { 1.0 };
                let mut count = 0u32;
                let mut lowest = Vec::new();
                let mut d = last;
                while count < nights {
                    let (lo, hi) = night_of(d);
                    let rows = reader.hours(series, lo, hi)?;
                    let expected = ((hi - lo) / 3_600_000) as usize;
                    if rows.len() < expected {
                        break; // an hour without flow data: not a leak night
                    }
                    let min = rows
                        .iter()
                        .map(|r| meterflow_core::from_micro(r.micro) / per_m3)
                        .fold(f64::INFINITY, f64::min);
                    if min <= limit {
                        break;
                    }
                    lowest.push(min);
                    count += 1;
                    d = d.pred_opt().unwrap_or(d);
                }
                out.push(Observation {
                    target: id,
                    value: f64::from(count),
                    detail: format!(
                        "night flow above {limit} m³/h for {count} night(s) in a row (lowest hourly flow {})",
                        lowest.first().map_or("-".into(), |v| format!("{v:.3} m³/h"))
                    ),
                });
            }
        }
        AlertKind::Imbalance => {
            let day = local_date(now_ms, site.tz)
                .pred_opt()
                .unwrap_or(NaiveDate::MIN);
            // A meter's day in its class's carrier unit (kWh, m³, GJ): a
            // parent in MWh and sub-meters in kWh subtract correctly.
            let daily = |id: &str| -> anyhow::Result<Option<f64>> {
                let Some(m) = site.meter(id) else {
                    return Ok(None);
                };
                let Some(series) = reader.series_id(id, m.counter_quantity())? else {
                    return Ok(None);
                };
                let d = day.to_string();
                let next = day.succ_opt().unwrap_or(day).to_string();
                let unit = meterflow_core::aggregate::carrier_unit(m.kind);
                let to_carrier = match (
                    meterflow_core::aggregate::rollup_factor(m.kind, &m.unit),
                    meterflow_core::aggregate::rollup_factor(m.kind, unit),
                ) {
                    (Some(a), Some(b)) => a as f64 / b as f64,
                    _ => 1.0,
                };
                Ok(reader
                    .days(series, &d, &next)?
                    .first()
                    .map(|r| meterflow_core::from_micro(r.micro) * to_carrier))
            };
            let parents = site.meters.iter().filter(|p| {
                site.meters
                    .iter()
                    .any(|c| c.parent.as_deref() == Some(p.id.as_str()) && c.kind == p.kind)
            });
            for p in parents {
                if !(rule.targets.is_empty() || rule.targets.contains(&p.id)) {
                    continue;
                }
                let Some(own) = daily(&p.id)?.filter(|v| *v > 0.0) else {
                    continue;
                };
                let mut below = 0.0;
                for c in site
                    .meters
                    .iter()
                    .filter(|c| c.parent.as_deref() == Some(p.id.as_str()) && c.kind == p.kind)
                {
                    below += daily(&c.id)?.unwrap_or(0.0);
                }
                let share = (own - below) / own;
                let unit = meterflow_core::aggregate::carrier_unit(p.kind);
                // Both ways: a positive remainder beyond the tolerance is
                // unmetered load or loss (a leak on water); a negative one
                // (sub-meters reading more than their parent) is a metering
                // fault: wrong CT ratio, a swapped meter, a double count.
                let detail = if share >= 0.0 {
                    format!(
                        "on {day}: parent {own:.3} − sub-meters {below:.3} = {:.3} {unit} ({:.1} % unmetered or lost)",
                        own - below,
                        share * 100.0
                    )
                } else {
                    format!(
                        "on {day}: sub-meters {below:.3} read more than their parent {own:.3} {unit} (by {:.3}, {:.1} %): check CT ratios and sub-meter wiring; the remainder counts as zero",
                        below - own,
                        -share * 100.0
                    )
                };
                out.push(Observation {
                    target: p.id.clone(),
                    value: share.abs(),
                    detail,
                });
            }
        }
        AlertKind::TouMismatch => {
            // The last complete local day, with the tariff in force on it.
            let today = local_date(now_ms, site.tz);
            let Some(day) = today.pred_opt() else {
                return Ok(out);
            };
            let Some(tariff) =
                meterflow_model::config::tariff_on(&site.tariffs, EnergyClass::Electricity, day)
                    .filter(|t| !t.periods.is_empty())
            else {
                return Ok(out);
            };
            let (from, to) = (
                day_start(day, site.tz),
                day_start(day.succ_opt().unwrap_or(day), site.tz),
            );
            // DL/T 645 费率 1–4 are 尖峰, 峰, 平, 谷.
            const REGISTERS: [(&str, &str); 4] = [
                ("critical", "energy_import_t1"),
                ("peak", "energy_import_t2"),
                ("flat", "energy_import_t3"),
                ("valley", "energy_import_t4"),
            ];
            for id in wanted(rule, site.meters.iter().map(|m| m.id.as_str())) {
                let Some(total) = reader.series_id(&id, "energy_import")? else {
                    continue;
                };
                // The registers are read like any other value (not counted
                // into intervals): their change between the day's first and
                // last reading, and our split over the same span.
                let mut registers = BTreeMap::new();
                let (mut span_from, mut span_to) = (i64::MAX, i64::MIN);
                for (period, quantity) in REGISTERS {
                    let Some(s) = reader.series_id(&id, quantity)? else {
                        continue;
                    };
                    let rows: Vec<_> = reader
                        .readings(s, from, to + 1)?
                        .into_iter()
                        .filter(|r| r.kind == 0 && r.value.is_finite())
                        .collect();
                    if let (Some(a), Some(b)) = (rows.first(), rows.last())
                        && b.ts_ms > a.ts_ms
                    {
                        registers.insert(period, b.value - a.value);
                        span_from = span_from.min(a.ts_ms);
                        span_to = span_to.max(b.ts_ms);
                    }
                }
                if registers.is_empty() {
                    continue;
                }
                let mut split: BTreeMap<&str, f64> = BTreeMap::new();
                // The buckets the span touches (a span that starts inside a
                // bucket keeps that bucket's consumption).
                let first = meterflow_core::buckets::bucket_of(span_from);
                for r in reader.intervals(total, first, span_to)? {
                    let t = local(site, r.bucket_ms);
                    let Some((name, _)) = tariff.price_at(t.month(), t.hour() * 60 + t.minute())
                    else {
                        continue;
                    };
                    let key = REGISTERS
                        .iter()
                        .map(|(p, _)| *p)
                        .find(|p| *p == name)
                        .unwrap_or("flat");
                    *split.entry(key).or_default() += meterflow_core::from_micro(r.micro);
                }
                let energy: f64 = split.values().sum();
                if energy < 1.0 {
                    continue;
                }
                // Energy counted in another period: half the sum of the
                // differences (what one period gains, another loses).
                let moved: f64 = REGISTERS
                    .iter()
                    .map(|(p, _)| {
                        (registers.get(p).copied().unwrap_or(0.0)
                            - split.get(p).copied().unwrap_or(0.0))
                        .abs()
                    })
                    .sum::<f64>()
                    / 2.0;
                let show = |m: &BTreeMap<&str, f64>| {
                    REGISTERS
                        .iter()
                        .map(|(p, _)| format!("{p} {:.1}", m.get(p).copied().unwrap_or(0.0)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                out.push(Observation {
                    target: id.clone(),
                    value: moved / energy,
                    detail: format!(
                        "{day}: the meter's tariff registers ({}) against the tariff `{}` split of its consumption ({}) kWh: {:.1} kWh ({:.0} %) in another period — check the meter's TOU table and clock",
                        show(&registers),
                        tariff.id,
                        show(&split),
                        moved,
                        moved / energy * 100.0
                    ),
                });
            }
        }
        AlertKind::MeterSilent => {
            for id in wanted(rule, site.meters.iter().map(|m| m.id.as_str())) {
                let Some(m) = site.meter(&id) else { continue };
                let Some(series) = reader.series_id(&id, m.counter_quantity())? else {
                    continue;
                };
                let Some(last) = reader.last_ts(series)? else {
                    continue;
                };
                let last = live.started_ms.map_or(last, |s| last.max(s));
                let allowed =
                    i64::from(m.effective_interval_s()) * 1000 * i64::from(m.silent_after.max(1));
                let value = (now_ms - last) as f64 / allowed as f64;
                out.push(Observation {
                    target: id,
                    value,
                    detail: format!(
                        "no reading for {} (expected every {})",
                        meterflow_core::time::human_duration(now_ms - last),
                        meterflow_core::time::human_duration(
                            i64::from(m.effective_interval_s()) * 1000
                        )
                    ),
                });
            }
        }
        AlertKind::CounterReset | AlertKind::ImplausibleDelta => {
            let kind = rule.kind.as_str();
            let window = i64::try_from(rule.window_s.unwrap_or(86_400).saturating_mul(1000))
                .unwrap_or(i64::MAX);
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for a in reader.anomalies(None, now_ms.saturating_sub(window), now_ms + 1)? {
                if a.kind == kind {
                    *counts.entry(a.meter).or_default() += 1;
                }
            }
            for id in wanted(rule, site.meters.iter().map(|m| m.id.as_str())) {
                let n = counts.get(&id).copied().unwrap_or(0);
                out.push(Observation {
                    target: id,
                    value: n as f64,
                    detail: format!(
                        "{n} `{kind}` anomal{} in the last {} h",
                        if n == 1 { "y" } else { "ies" },
                        window / 3_600_000
                    ),
                });
            }
        }
        AlertKind::BackupStale => {
            if let (Some(cfg), Some(dir)) = (site.backup.as_ref(), site.backup_dir()) {
                let period_ms = i64::from(cfg.every_h.max(1)) * 3_600_000;
                let newest = crate::backup::list(&dir).last().map(|(_, m)| m.created_ms);
                // With none yet, the age counts from the process start.
                if let Some(since) = newest.or(live.started_ms) {
                    let age_ms = (now_ms - since).max(0);
                    out.push(Observation {
                        target: "store".into(),
                        value: age_ms as f64 / period_ms as f64,
                        detail: match newest {
                            Some(_) => format!(
                                "the newest good backup in {} is {:.1} h old (every {} h)",
                                dir.display(),
                                age_ms as f64 / 3_600_000.0,
                                cfg.every_h
                            ),
                            None => format!(
                                "no good backup in {} yet ({:.1} h since start, every {} h)",
                                dir.display(),
                                age_ms as f64 / 3_600_000.0,
                                cfg.every_h
                            ),
                        },
                    });
                }
            }
        }
        AlertKind::BatteryLow | AlertKind::ValveFault => {
            // The status gauges the CJ/T 188 poller stores with each reading.
            let (quantity, what) = if rule.kind == AlertKind::BatteryLow {
                ("battery_low", "battery low")
            } else {
                ("valve", "valve abnormal")
            };
            let status_meters = site
                .meters
                .iter()
                .filter(|m| m.cjt188.is_some())
                .map(|m| m.id.as_str());
            for id in wanted(rule, status_meters) {
                let Some(series) = reader.series_id(&id, quantity)? else {
                    continue;
                };
                let Some(last) = reader.last_ts(series)? else {
                    continue;
                };
                let Some(v) = reader
                    .readings(series, last, last + 1)?
                    .first()
                    .map(|r| r.value)
                    .filter(|v| v.is_finite())
                else {
                    continue;
                };
                let value = if rule.kind == AlertKind::BatteryLow {
                    v
                } else {
                    f64::from(u8::from(v >= 2.0))
                };
                out.push(Observation {
                    target: id,
                    value,
                    detail: if value > 0.5 {
                        format!("the meter reports: {what}")
                    } else {
                        format!("no {what}")
                    },
                });
            }
        }
        AlertKind::BusErrorRate => {
            for id in wanted(rule, site.buses.iter().map(|b| b.id.as_str())) {
                if let Some(rate) = live.bus_error_rate.get(&id) {
                    out.push(Observation {
                        target: id,
                        value: *rate,
                        detail: format!("{:.0} % of requests failed", rate * 100.0),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn to_core(row: Option<&AlertStateRow>) -> State {
    match row {
        Some(r) if r.state == "pending" => State::Pending {
            since_ms: r.since_ms.unwrap_or(0),
        },
        Some(r) if r.state == "firing" => State::Firing {
            since_ms: r.since_ms.unwrap_or(0),
            acknowledged: r.acknowledged,
        },
        _ => State::Inactive,
    }
}

fn from_core(s: State, value: f64) -> AlertStateRow {
    let (state, since_ms, acknowledged) = match s {
        State::Inactive => ("inactive", None, false),
        State::Pending { since_ms } => ("pending", Some(since_ms), false),
        State::Firing {
            since_ms,
            acknowledged,
        } => ("firing", Some(since_ms), acknowledged),
    };
    AlertStateRow {
        state: state.into(),
        since_ms,
        acknowledged,
        value: value.is_finite().then_some(value),
    }
}

/// Evaluates every rule and records what changed.
pub struct Evaluator {
    db: AlertDb,
}

impl Evaluator {
    /// Open the alert tables of a site's store.
    pub fn open(site: &Site) -> anyhow::Result<Evaluator> {
        let path = site.store_path();
        Ok(Evaluator {
            db: AlertDb::open(&path).with_context(|| format!("opening {}", path.display()))?,
        })
    }

    /// The alert tables.
    pub fn db(&self) -> &AlertDb {
        &self.db
    }

    /// The alert tables, to write (dry runs).
    pub fn db_mut(&mut self) -> &mut AlertDb {
        &mut self.db
    }

    /// Evaluate every rule at `now_ms`; returns the new events (fired, resolved).
    pub fn evaluate(
        &mut self,
        site: &Site,
        reader: &Reader,
        now_ms: i64,
        live: &LiveMetrics,
    ) -> anyhow::Result<Vec<AlertEvent>> {
        let mut changes = Vec::new();
        for rule in &site.alert_rules {
            let c = condition(rule);
            let observations = match observe(site, reader, rule, now_ms, live) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(rule = %rule.id, "alert rule not evaluated: {e:#}");
                    continue;
                }
            };
            let notifiers: Vec<String> = site
                .notifiers
                .iter()
                .filter(|n| n.min_severity <= rule.severity)
                .map(|n| n.id.clone())
                .collect();
            for o in observations {
                let stored = self.db.state(&rule.id, &o.target)?;
                let mut state = to_core(stored.as_ref());
                let before = state;
                let t = evaluate(&mut state, &c, o.value, now_ms);
                if state == before && t.is_none() {
                    continue;
                }
                let event = t.map(|t| {
                    let (what, text) = match t {
                        meterflow_core::alerts::Transition::Fired { .. } => ("fired", "firing"),
                        meterflow_core::alerts::Transition::Resolved { .. } => {
                            ("resolved", "resolved")
                        }
                    };
                    (
                        AlertEvent {
                            id: 0,
                            rule: rule.id.clone(),
                            target: o.target.clone(),
                            kind: rule.kind.as_str().into(),
                            severity: rule.severity.as_str().into(),
                            event: what.into(),
                            ts_ms: now_ms,
                            value: o.value.is_finite().then_some(o.value),
                            threshold: Some(c.threshold),
                            message: format!(
                                "[{}] {} {}: {} on {}: {}",
                                site.site.name,
                                rule.severity.as_str(),
                                text,
                                rule.id,
                                o.target,
                                o.detail
                            ),
                        },
                        notifiers.clone(),
                    )
                });
                changes.push(Transition {
                    rule: rule.id.clone(),
                    target: o.target.clone(),
                    state: from_core(state, o.value),
                    event,
                });
            }
        }
        let ids = self.db.record(now_ms, &changes)?;
        Ok(changes
            .into_iter()
            .filter_map(|t| t.event.map(|e| e.0))
            .zip(ids)
            .map(|(mut e, id)| {
                e.id = id;
                e
            })
            .collect())
    }

    /// Acknowledge a firing alert; false if it is not firing.
    pub fn acknowledge(&mut self, rule: &str, target: &str, now_ms: i64) -> anyhow::Result<bool> {
        let stored = self.db.state(rule, target)?;
        let mut state = to_core(stored.as_ref());
        if !meterflow_core::alerts::acknowledge(&mut state) {
            return Ok(false);
        }
        let value = stored.and_then(|s| s.value).unwrap_or(f64::NAN);
        self.db.record(
            now_ms,
            &[Transition {
                rule: rule.into(),
                target: target.into(),
                state: from_core(state, value),
                event: Some((
                    AlertEvent {
                        id: 0,
                        rule: rule.into(),
                        target: target.into(),
                        kind: String::new(),
                        severity: String::new(),
                        event: "acknowledged".into(),
                        ts_ms: now_ms,
                        value: value.is_finite().then_some(value),
                        threshold: None,
                        message: format!("{rule} on {target} acknowledged"),
                    },
                    Vec::new(),
                )),
            }],
        )?;
        Ok(true)
    }
}
