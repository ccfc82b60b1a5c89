//! Simulated meters: counters that advance consistently with a realistic load
//! shape (office hours, nights, weekends; canteen meal times; water with an
//! optional night leak), deterministic for a given meter id and time, so a
//! test can compute what any meter read at any instant.

pub mod cn;
pub mod mqtt;
pub mod rtu;
pub mod server;
pub mod site;

use chrono::{Datelike, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;
use meterflow_model::EnergyClass;
use meterflow_model::config::{Meter, ReplacementEvent, Site};

/// A simulated meter.
#[derive(Debug, Clone)]
pub struct SimMeter {
    /// Meter id.
    pub id: String,
    /// Energy class.
    pub kind: EnergyClass,
    /// Nominal peak consumption per hour (meter unit, after multiplier).
    pub peak_per_h: f64,
    /// CT × PT: the register advances by consumption / multiplier.
    pub multiplier: f64,
    /// Register value at the simulation start (register units).
    pub start_register: f64,
    /// Leak flow for water meters, m³/h (0 = none).
    pub leak_per_h: f64,
    seed: u64,
}

impl SimMeter {
    /// A simulated counterpart of a configured meter (peak at 40 % of its max rate).
    pub fn from_meter(m: &Meter) -> SimMeter {
        let seed = fnv(&m.id);
        let peak = m.max_rate.unwrap_or(100.0) * 0.4;
        SimMeter {
            id: m.id.clone(),
            kind: m.kind,
            peak_per_h: peak,
            multiplier: m.multiplier,
            start_register: 1000.0 + (seed % 50_000) as f64,
            leak_per_h: 0.0,
            seed,
        }
    }

    /// Load factor (0..1] of this meter at a local time: office hours high,
    /// nights and weekends low, a little deterministic noise per quarter hour.
    pub fn load_factor(&self, local_hour: f64, weekday: Weekday, quarter: i64) -> f64 {
        let working = !matches!(weekday, Weekday::Sat | Weekday::Sun);
        let shape = match self.kind {
            EnergyClass::Gas => {
                // Canteen: breakfast, lunch and dinner peaks on working days.
                let meal = [7.0, 11.5, 17.5]
                    .iter()
                    .any(|m| (local_hour - m).abs() < 1.0);
                if working && meal { 1.0 } else { 0.05 }
            }
            EnergyClass::Heat | EnergyClass::Cooling => {
                if working && (7.0..19.0).contains(&local_hour) {
                    0.9
                } else {
                    0.5
                }
            }
            _ => {
                if working && (8.5..18.0).contains(&local_hour) {
                    0.85
                } else if working
                    && ((7.0..8.5).contains(&local_hour) || (18.0..21.0).contains(&local_hour))
                {
                    0.45
                } else {
                    0.15
                }
            }
        };
        let noise = (splitmix(self.seed ^ quarter as u64) % 1000) as f64 / 1000.0 * 0.1;
        (shape + noise).min(1.0)
    }

    /// Consumption (meter unit) in the 15 minutes starting at `bucket_ms`.
    pub fn quarter_consumption(&self, bucket_ms: i64, tz: Tz) -> f64 {
        let Some(t) = tz.timestamp_millis_opt(bucket_ms).single() else {
            return 0.0;
        };
        let hour = f64::from(t.hour()) + f64::from(t.minute()) / 60.0;
        let f = self.load_factor(hour, t.weekday(), bucket_ms / 900_000);
        let leak = if hour < 5.0 { self.leak_per_h } else { 0.0 };
        (self.peak_per_h * f + leak) / 4.0
    }
}

/// One generated reading.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReading {
    /// Meter id.
    pub meter: String,
    /// Time, ms.
    pub ts_ms: i64,
    /// Register value as the meter shows it (0.01 resolution).
    pub value: f64,
}

/// Register values every `step_ms` from `from_ms` (inclusive) to `to_ms`
/// (exclusive) for each meter, time-major (all meters at t, then t + step),
/// honouring replacement events (the register restarts at the new meter's
/// initial value, and reaches the old meter's final value at the event).
pub fn generate<'a>(
    meters: &'a [SimMeter],
    replacements: &'a [ReplacementEvent],
    tz: Tz,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
) -> impl Iterator<Item = SimReading> + 'a {
    let mut registers: Vec<f64> = meters.iter().map(|m| m.start_register).collect();
    let mut t = from_ms;
    let mut pending = Vec::new();
    std::iter::from_fn(move || {
        loop {
            if let Some(r) = pending.pop() {
                return Some(r);
            }
            if t >= to_ms {
                return None;
            }
            for (i, m) in meters.iter().enumerate() {
                let consumption: f64 = if t == from_ms {
                    0.0
                } else {
                    sum_quarters(m, tz, t - step_ms, t)
                };
                let before = registers[i];
                registers[i] += consumption / m.multiplier;
                if let Some(rep) = replacements.iter().find(|r| {
                    r.meter == m.id && r.ts_ms > t - step_ms && r.ts_ms <= t && t != from_ms
                }) {
                    // Consumption after the swap starts from the new meter's initial value.
                    let after = sum_quarters(m, tz, rep.ts_ms, t) / m.multiplier;
                    let _ = before;
                    registers[i] = rep.new_initial + after;
                }
                pending.push(SimReading {
                    meter: m.id.clone(),
                    ts_ms: t,
                    value: (registers[i] * 100.0).round() / 100.0,
                });
            }
            pending.reverse();
            t += step_ms;
        }
    })
}

/// Consumption of a meter between two instants (quarter-hour granularity, prorated).
pub fn sum_quarters(m: &SimMeter, tz: Tz, from_ms: i64, to_ms: i64) -> f64 {
    let mut total = 0.0;
    let mut b = from_ms.div_euclid(900_000) * 900_000;
    while b < to_ms {
        let lo = b.max(from_ms);
        let hi = (b + 900_000).min(to_ms);
        total += m.quarter_consumption(b, tz) * (hi - lo) as f64 / 900_000.0;
        b += 900_000;
    }
    total
}

/// Start registers so that each replaced meter shows exactly its declared
/// final value at the replacement instant.
pub fn align_to_replacements(meters: &mut [SimMeter], site: &Site, from_ms: i64) {
    for m in meters.iter_mut() {
        if let Some(rep) = site
            .replacements
            .iter()
            .find(|r| r.meter == m.id && r.ts_ms > from_ms)
        {
            let before = sum_quarters(m, site.tz, from_ms, rep.ts_ms) / m.multiplier;
            m.start_register = (rep.old_final - before).max(0.0);
        }
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter() -> SimMeter {
        SimMeter {
            id: "m".into(),
            kind: EnergyClass::Electricity,
            peak_per_h: 100.0,
            multiplier: 1.0,
            start_register: 1000.0,
            leak_per_h: 0.0,
            seed: 7,
        }
    }

    #[test]
    fn office_hours_use_more_than_nights_and_weekends() {
        let m = meter();
        let tue_day = m.load_factor(10.0, Weekday::Tue, 1);
        assert!(
            tue_day > 0.8
                && m.load_factor(3.0, Weekday::Tue, 1) < 0.3
                && m.load_factor(10.0, Weekday::Sun, 1) < 0.3
        );
    }

    #[test]
    fn a_leak_adds_night_flow_only() {
        let tz = chrono_tz::Asia::Shanghai;
        let mut water = meter();
        water.kind = EnergyClass::Water;
        let mut leaking = water.clone();
        leaking.leak_per_h = 0.5;
        // 03:00 local on 2025-01-01 = 2024-12-31T19:00Z; 10:00 local = 02:00Z.
        let (night, day) = (1_735_671_600_000, 1_735_696_800_000);
        // 0.5 m³/h over a quarter hour = 0.125 m³ extra at night, nothing by day.
        assert!(
            (leaking.quarter_consumption(night, tz) - water.quarter_consumption(night, tz) - 0.125)
                .abs()
                < 1e-12
        );
        assert_eq!(
            leaking.quarter_consumption(day, tz),
            water.quarter_consumption(day, tz)
        );
    }

    #[test]
    fn counters_advance_by_the_load() {
        let tz = chrono_tz::Asia::Shanghai;
        let m = vec![meter()];
        let t0 = 1_735_660_800_000; // local midnight 2025-01-01
        let rs: Vec<_> = generate(&m, &[], tz, t0, t0 + 4 * 3_600_000, 900_000).collect();
        assert_eq!(rs.len(), 16);
        let expected = 1000.0 + sum_quarters(&m[0], tz, t0, t0 + 15 * 900_000);
        assert!(
            (rs[15].value - expected).abs() <= 0.005,
            "{} vs {expected}",
            rs[15].value
        );
        assert!(rs.windows(2).all(|w| w[1].value >= w[0].value));
    }
}
