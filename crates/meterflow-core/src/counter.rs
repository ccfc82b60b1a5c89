//! The counter rules of `docs/methodology.md` §1 as a deterministic fold over a meter's
//! time-ordered items (readings and operator replacement events).

use meterflow_model::AnomalyKind;
use meterflow_model::config::Meter;

use crate::MICRO;
use crate::buckets::{BucketDelta, Span, spread_or_span};

/// Largest register magnitude accepted, in units (keeps micro-units inside i64 with room for sums).
const MAX_REGISTER: f64 = 9.0e12;

/// Per-meter counter settings, from the meter's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterSpec {
    /// CT × PT, applied to register deltas.
    pub multiplier: f64,
    /// Source value → register value.
    pub scale: f64,
    /// Register value at which the counter wraps to zero.
    pub rollover: Option<f64>,
    /// Maximum plausible consumption per hour, in the meter's unit.
    pub max_rate_per_h: Option<f64>,
    /// Expected interval between readings, ms.
    pub interval_ms: i64,
    /// Source values that mean "invalid".
    pub sentinels: Vec<f64>,
    /// Intervals without a good reading before `meter_silent`.
    pub silent_after: u32,
    /// One step of the source value (its register's last digit), source
    /// units; 0 when unknown. A delta may exceed `max_rate × dt` by one
    /// step: a 0.01 GJ register read every 5 s moves in steps of 7.2 GJ/h.
    pub resolution: f64,
    /// The site's zone, for the times in anomaly texts.
    pub tz: chrono_tz::Tz,
}

impl CounterSpec {
    /// Settings of a configured meter (resolution unknown).
    pub fn from_meter(m: &Meter) -> CounterSpec {
        CounterSpec {
            multiplier: m.multiplier,
            scale: m.scale,
            rollover: m.rollover,
            max_rate_per_h: m.max_rate,
            interval_ms: i64::from(m.effective_interval_s()) * 1000,
            sentinels: m.sentinels.clone(),
            silent_after: m.silent_after,
            resolution: 0.0,
            tz: chrono_tz::UTC,
        }
    }

    /// Settings of a meter of `site`, with the resolution its source gives:
    /// the scale of the Modbus profile's counter field, the decimals of the
    /// DL/T 645 identifier (a site `[[dlt645_item]]`, else 2), 0.01 for CJ/T 188.
    pub fn for_site(site: &meterflow_model::Site, m: &Meter) -> CounterSpec {
        let q = m.counter_quantity();
        let resolution = if let Some(src) = &m.modbus {
            site.profile(&src.profile)
                .and_then(|p| p.field.iter().find(|f| f.quantity == q))
                .map_or(0.0, |f| f.scale.abs())
        } else if m.dlt645.is_some() {
            // The shipped energy identifiers are XXXXXX.XX kWh.
            let decimals = site
                .dlt645_items
                .iter()
                .find(|i| i.quantity == q)
                .map_or(2, |i| i.decimals);
            10f64.powi(-i32::from(decimals))
        } else if m.cjt188.is_some() {
            0.01
        } else {
            0.0
        };
        CounterSpec {
            resolution,
            tz: site.tz,
            ..CounterSpec::from_meter(m)
        }
    }

    /// Register value in micro-units, or why the source value is invalid.
    pub fn register_micro(&self, value: f64) -> Result<i64, String> {
        if !value.is_finite() {
            return Err(format!("value {value} is not a finite number"));
        }
        if self.sentinels.contains(&value) {
            return Err(format!("value {value} is a sentinel (invalid) pattern"));
        }
        let reg = value * self.scale;
        if reg < 0.0 {
            return Err(format!(
                "register {reg} is negative: a cumulative counter cannot be"
            ));
        }
        if reg > MAX_REGISTER {
            return Err(format!("register {reg} is beyond the supported range"));
        }
        Ok((reg * MICRO).round() as i64)
    }

    /// Register of an operator-entered value (no sentinel check: an operator
    /// who writes 65535 means it).
    pub fn operator_register_micro(&self, value: f64) -> Result<i64, String> {
        let reg = value * self.scale;
        if !reg.is_finite() || !(0.0..=MAX_REGISTER).contains(&reg) {
            return Err(format!("register {reg} is not a valid counter value"));
        }
        Ok((reg * MICRO).round() as i64)
    }

    /// The baseline an item leaves behind, if its status sets one.
    pub fn point_after(&self, item: &Item) -> Option<Point> {
        match *item {
            Item::Reading { ts_ms, value } => self
                .register_micro(value)
                .ok()
                .map(|reg| Point { ts_ms, reg }),
            Item::Replacement {
                ts_ms, new_initial, ..
            } => self
                .operator_register_micro(new_initial)
                .ok()
                .map(|reg| Point { ts_ms, reg }),
        }
    }

    /// Consumption (micro-units of the meter's unit) of a register delta.
    pub fn consumption(&self, register_delta_micro: i64) -> i64 {
        if self.multiplier.fract() == 0.0 && self.multiplier.abs() < 1.0e6 {
            register_delta_micro.saturating_mul(self.multiplier as i64)
        } else {
            (register_delta_micro as f64 * self.multiplier).round() as i64
        }
    }

    /// Largest plausible consumption over `dt_ms`, micro-units, if a rate is set.
    fn limit_micro(&self, dt_ms: i64) -> Option<i64> {
        let step = self.resolution * self.scale.abs() * self.multiplier.abs();
        self.max_rate_per_h
            .map(|rate| ((rate * dt_ms as f64 / 3_600_000.0 + step) * MICRO).floor() as i64)
    }
}

/// One item of a meter's counter sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item {
    /// A reading of the counter (source value, before scale).
    Reading {
        /// Time, ms since the epoch.
        ts_ms: i64,
        /// Source value.
        value: f64,
    },
    /// An operator-declared replacement (source values).
    Replacement {
        /// Time, ms since the epoch.
        ts_ms: i64,
        /// Old meter's final value.
        old_final: f64,
        /// New meter's initial value.
        new_initial: f64,
    },
}

impl Item {
    /// The item's time.
    pub fn ts_ms(&self) -> i64 {
        match *self {
            Item::Reading { ts_ms, .. } | Item::Replacement { ts_ms, .. } => ts_ms,
        }
    }
}

/// What the fold decided about an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// First reading of a series: the baseline.
    Start,
    /// Normal delta, counted.
    Good,
    /// Wrapped at the rollover value, counted.
    Rollover,
    /// Counter went down: not counted, new baseline.
    Reset,
    /// Implausible delta: quarantined, not counted, baseline unchanged.
    Spike,
    /// Second reading agreeing with a quarantined level: re-based on it; the jump not counted.
    Jump,
    /// Sentinel / non-finite / negative: rejected.
    Invalid,
    /// Replacement event: old series closed, new baseline.
    Replacement,
}

impl Status {
    /// Does the item become the baseline for the next one?
    pub fn sets_base(self) -> bool {
        matches!(
            self,
            Status::Start
                | Status::Good
                | Status::Rollover
                | Status::Reset
                | Status::Jump
                | Status::Replacement
        )
    }

    /// Stable numeric code for the store.
    pub fn code(self) -> i64 {
        match self {
            Status::Start => 0,
            Status::Good => 1,
            Status::Rollover => 2,
            Status::Reset => 3,
            Status::Spike => 4,
            Status::Jump => 5,
            Status::Invalid => 6,
            Status::Replacement => 7,
        }
    }

    /// Inverse of [`Status::code`].
    pub fn from_code(code: i64) -> Option<Status> {
        Some(match code {
            0 => Status::Start,
            1 => Status::Good,
            2 => Status::Rollover,
            3 => Status::Reset,
            4 => Status::Spike,
            5 => Status::Jump,
            6 => Status::Invalid,
            7 => Status::Replacement,
            _ => return None,
        })
    }

    /// Text form for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Start => "start",
            Status::Good => "good",
            Status::Rollover => "rollover",
            Status::Reset => "reset",
            Status::Spike => "quarantined",
            Status::Jump => "jump",
            Status::Invalid => "rejected",
            Status::Replacement => "replacement",
        }
    }
}

/// A register value at an instant, micro-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Time, ms since the epoch.
    pub ts_ms: i64,
    /// Register, micro-units (after scale, before multiplier).
    pub reg: i64,
}

/// The fold's state: the baseline and a quarantined candidate level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// Last good reading ("p" in docs/methodology.md §1).
    pub base: Option<Point>,
    /// Most recent quarantined reading since the baseline.
    pub pending: Option<Point>,
}

/// An anomaly found by the fold, attached to the item at `ts_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// Kind.
    pub kind: AnomalyKind,
    /// Item time, ms.
    pub ts_ms: i64,
    /// Human-readable detail with figures.
    pub detail: String,
}

/// The fold's result for one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Decision.
    pub status: Status,
    /// Bucket contributions.
    pub deltas: Vec<BucketDelta>,
    /// Long estimated gaps kept whole (their edge buckets are in `deltas`).
    pub spans: Vec<Span>,
    /// Anomalies.
    pub anomalies: Vec<Anomaly>,
}

/// Apply one item to the state (the rules of `docs/methodology.md` §1).
pub fn step(spec: &CounterSpec, state: &mut State, item: &Item) -> Step {
    let mut out = Step {
        status: Status::Invalid,
        deltas: Vec::new(),
        spans: Vec::new(),
        anomalies: Vec::new(),
    };
    match *item {
        Item::Reading { ts_ms, value } => {
            let reg = match spec.register_micro(value) {
                Ok(r) => r,
                Err(why) => {
                    out.status = Status::Invalid;
                    out.anomalies.push(Anomaly {
                        kind: AnomalyKind::InvalidValue,
                        ts_ms,
                        detail: why,
                    });
                    return out;
                }
            };
            let v = Point { ts_ms, reg };
            out.status = reading(spec, state, v, &mut out);
        }
        Item::Replacement {
            ts_ms,
            old_final,
            new_initial,
        } => {
            let (Ok(old), Ok(new)) = (
                spec.operator_register_micro(old_final),
                spec.operator_register_micro(new_initial),
            ) else {
                out.anomalies.push(Anomaly {
                    kind: AnomalyKind::InvalidValue,
                    ts_ms,
                    detail: format!(
                        "replacement values {old_final} / {new_initial} are not valid registers"
                    ),
                });
                return out;
            };
            if let Some(p) = state.base {
                let d = old - p.reg;
                if d >= 0 {
                    let dt = ts_ms - p.ts_ms;
                    count_pair(spec, p, ts_ms, spec.consumption(d), dt, &mut out);
                } else {
                    out.anomalies.push(Anomaly {
                        kind: AnomalyKind::CounterReset,
                        ts_ms,
                        detail: format!("old meter's final reading {old_final} is below its last good reading; the last stretch is not counted"),
                    });
                }
            }
            out.anomalies.push(Anomaly {
                kind: AnomalyKind::Replacement,
                ts_ms,
                detail: format!(
                    "old meter closed at {old_final}, new meter starts at {new_initial}"
                ),
            });
            *state = State {
                base: Some(Point { ts_ms, reg: new }),
                pending: None,
            };
            out.status = Status::Replacement;
        }
    }
    out
}

fn reading(spec: &CounterSpec, state: &mut State, v: Point, out: &mut Step) -> Status {
    let Some(p) = state.base else {
        *state = State {
            base: Some(v),
            pending: None,
        };
        return Status::Start;
    };
    let dt = v.ts_ms - p.ts_ms;
    let d = v.reg - p.reg;
    let counted = if d >= 0 {
        Some((spec.consumption(d), false))
    } else {
        rollover_delta(spec, p.reg, v.reg).map(|rd| (spec.consumption(rd), true))
    };
    match counted {
        Some((micro, wrapped)) if within_limit(spec, micro, dt) => {
            if wrapped {
                out.anomalies.push(Anomaly {
                    kind: AnomalyKind::Rollover,
                    ts_ms: v.ts_ms,
                    detail: format!(
                        "counter wrapped from {} to {}",
                        crate::from_micro(p.reg),
                        crate::from_micro(v.reg)
                    ),
                });
            }
            count_pair(spec, p, v.ts_ms, micro, dt, out);
            *state = State {
                base: Some(v),
                pending: None,
            };
            if wrapped {
                Status::Rollover
            } else {
                Status::Good
            }
        }
        Some((micro, _)) => {
            // Implausible. Two readings that agree with each other at a new
            // level are a level shift, not a glitch: re-base, count nothing across.
            if let Some(s) = state.pending {
                let ds = v.reg - s.reg;
                let dts = v.ts_ms - s.ts_ms;
                if ds >= 0 && within_limit(spec, spec.consumption(ds), dts) {
                    out.anomalies.push(Anomaly {
                        kind: AnomalyKind::CounterJump,
                        ts_ms: v.ts_ms,
                        detail: format!(
                            "counter moved from {} to a new level {} and stayed: re-based, the jump is not counted",
                            crate::from_micro(p.reg),
                            crate::from_micro(s.reg)
                        ),
                    });
                    count_pair(spec, s, v.ts_ms, spec.consumption(ds), dts, out);
                    *state = State {
                        base: Some(v),
                        pending: None,
                    };
                    return Status::Jump;
                }
            }
            out.anomalies.push(Anomaly {
                kind: AnomalyKind::ImplausibleDelta,
                ts_ms: v.ts_ms,
                detail: format!(
                    "delta {} over {} exceeds the {} that the maximum plausible rate {}/h allows: quarantined, not counted",
                    crate::from_micro(micro),
                    crate::time::human_duration(dt),
                    crate::from_micro(spec.limit_micro(dt).unwrap_or(i64::MAX)),
                    spec.max_rate_per_h.unwrap_or(f64::INFINITY)
                ),
            });
            state.pending = Some(v);
            Status::Spike
        }
        None => {
            out.anomalies.push(Anomaly {
                kind: AnomalyKind::CounterReset,
                ts_ms: v.ts_ms,
                detail: format!(
                    "counter went down from {} to {} (not a rollover): nothing counted, resuming from the new value",
                    crate::from_micro(p.reg),
                    crate::from_micro(v.reg)
                ),
            });
            silent_check(spec, p, v.ts_ms, dt, out);
            *state = State {
                base: Some(v),
                pending: None,
            };
            Status::Reset
        }
    }
}

/// `(rollover − p) + v` when `p` is within 10 % of the rollover value and `v`
/// is small (within the first 10 %).
fn rollover_delta(spec: &CounterSpec, p: i64, v: i64) -> Option<i64> {
    let r = (spec.rollover? * MICRO).round() as i64;
    let tenth = r / 10;
    (p >= r - tenth && v <= tenth && p <= r).then(|| (r - p) + v)
}

fn within_limit(spec: &CounterSpec, micro: i64, dt_ms: i64) -> bool {
    match spec.limit_micro(dt_ms) {
        Some(limit) => micro <= limit,
        None => true,
    }
}

fn count_pair(spec: &CounterSpec, p: Point, to_ms: i64, micro: i64, dt: i64, out: &mut Step) {
    let estimated = dt > 2 * spec.interval_ms;
    spread_or_span(
        p.ts_ms,
        to_ms,
        micro,
        estimated,
        &mut out.deltas,
        &mut out.spans,
    );
    silent_check(spec, p, to_ms, dt, out);
}

fn silent_check(spec: &CounterSpec, p: Point, to_ms: i64, dt: i64, out: &mut Step) {
    if dt > i64::from(spec.silent_after) * spec.interval_ms {
        out.anomalies.push(Anomaly {
            kind: AnomalyKind::MeterSilent,
            ts_ms: to_ms,
            detail: format!(
                "no reading for {} after {} (more than {} intervals)",
                crate::time::human_duration(dt),
                crate::time::local_text(p.ts_ms, spec.tz),
                spec.silent_after
            ),
        });
    }
}

/// Is a meter whose last good reading was at `last_ms` silent at `now_ms`?
pub fn is_silent(spec: &CounterSpec, last_ms: i64, now_ms: i64) -> bool {
    now_ms - last_ms > i64::from(spec.silent_after) * spec.interval_ms
}
