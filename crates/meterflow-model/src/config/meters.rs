//! `[[meter]]` and `[[replacement]]`: meters, what they serve and how they
//! are split, and operator-declared replacements, with their checks.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::value::Datetime;

use super::checks::*;
use super::document::{Ctx, Located, suggest};
use super::*;
use crate::reading::EnergyClass;

/// What a meter serves: exactly one of the keys.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Serves {
    /// A whole building.
    #[serde(default)]
    pub building: Option<String>,
    /// A zone (floor, wing).
    #[serde(default)]
    pub zone: Option<String>,
    /// One agency.
    #[serde(default)]
    pub agency: Option<String>,
    /// Several agencies sharing the meter.
    #[serde(default)]
    pub agencies: Option<Vec<String>>,
}

/// How a meter's consumption is split between the agencies it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// All to the one agency served.
    Direct,
    /// By occupied area share at that time (default for shared meters).
    AreaShare,
    /// By the fixed `shares` of the meter.
    Fixed,
    /// By the agencies' 用能人数 at that time (a canteen): among the
    /// agencies that the area share would select.
    HeadcountShare,
}

/// What happens to a parent meter's remainder (own − Σ children: common
/// loads and losses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Remainder {
    /// Split with the meter's own allocation (area share by default).
    #[default]
    AreaShare,
    /// Split by headcount share among the agencies it serves.
    HeadcountShare,
    /// Kept as 公共/未分摊: counted in the building's and the site's totals,
    /// in no agency's.
    Unallocated,
}

/// `[[meter]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meter {
    /// Unique meter id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Energy class: electricity, water, gas, heat, cooling.
    pub kind: EnergyClass,
    /// Unit of the counter after scale and multiplier (kWh, MWh, m3, L, GJ, MJ).
    pub unit: String,
    /// Metering level (GB 17167): 1 site, 2 building/department, 3 equipment.
    #[serde(default = "default_level")]
    pub level: u8,
    /// Parent meter id (for balance checks).
    #[serde(default)]
    pub parent: Option<String>,
    /// Electricity sub-item (分项): A, A1–A3, B, B1–B2, C, C1–C3, D.
    #[serde(default)]
    pub subitem: Option<String>,
    /// What the meter serves.
    pub serves: Serves,
    /// The local date the meter went into service: earlier readings are
    /// dead letters (`implausible_time`). Absent = `[store] earliest`.
    #[serde(default)]
    pub in_service: Option<Datetime>,
    /// Allocation between agencies; default: direct for one agency, area_share otherwise.
    #[serde(default)]
    pub allocation: Option<Allocation>,
    /// What happens to this meter's remainder when it has sub-meters:
    /// `area_share` (default: its own key), `headcount_share`, `unallocated`.
    #[serde(default)]
    pub remainder: Remainder,
    /// Fixed shares by agency id (fractions summing to 1) when `allocation = "fixed"`.
    #[serde(default)]
    pub shares: BTreeMap<String, f64>,
    /// Transformer ratio CT × PT (互感器倍率), dimensionless.
    #[serde(default = "default_one")]
    pub multiplier: f64,
    /// Factor from the source's value to the register value (e.g. 0.01 for a raw integer in 0.01 kWh).
    #[serde(default = "default_one")]
    pub scale: f64,
    /// Register value at which the counter wraps to zero (after scale, before multiplier).
    #[serde(default)]
    pub rollover: Option<f64>,
    /// Maximum plausible rate, counter unit per hour (kW for kWh, m³/h for m³); absent = no spike check.
    #[serde(default)]
    pub max_rate: Option<f64>,
    /// Expected seconds between readings, s; default: the `poll_s` of the
    /// protocol that polls the meter (Modbus, DL/T 645, CJ/T 188), else 900.
    #[serde(default)]
    pub interval_s: Option<u32>,
    /// Counter quantity normalised into intervals; default from `kind`.
    #[serde(default)]
    pub quantity: Option<String>,
    /// Decimal values a collector is declared to forward for "invalid"
    /// (compared before scale): rejected, never zero. Default none: register
    /// patterns are recognised on the raw words by the Modbus decoder.
    #[serde(default = "default_sentinels")]
    pub sentinels: Vec<f64>,
    /// Intervals without a good reading before `meter_silent` is raised, count.
    #[serde(default = "default_silent_after")]
    pub silent_after: u32,
    /// Polled over Modbus: bus, unit, profile and rates.
    #[serde(default)]
    pub modbus: Option<ModbusSource>,
    /// Polled over DL/T 645-2007: bus, address, identifiers.
    #[serde(default)]
    pub dlt645: Option<Dlt645Source>,
    /// Polled over CJ/T 188: bus, address, meter type.
    #[serde(default)]
    pub cjt188: Option<Cjt188Source>,
}

impl Meter {
    /// The counter quantity normalised into intervals.
    pub fn counter_quantity(&self) -> &str {
        self.quantity
            .as_deref()
            .unwrap_or_else(|| self.kind.default_quantity())
    }

    /// Expected seconds between readings.
    pub fn effective_interval_s(&self) -> u32 {
        self.interval_s.or(self.poll_s()).unwrap_or(900)
    }

    /// The poll period of the protocol that polls this meter, s (`None`: pushed).
    pub fn poll_s(&self) -> Option<u32> {
        self.modbus
            .as_ref()
            .map(|m| m.poll_s)
            .or(self.dlt645.as_ref().map(|d| d.poll_s))
            .or(self.cjt188.as_ref().map(|c| c.poll_s))
    }

    /// Effective allocation.
    pub fn effective_allocation(&self) -> Allocation {
        self.allocation
            .unwrap_or(if self.serves.agencies.is_some() {
                Allocation::AreaShare
            } else if self.serves.agency.is_some() {
                Allocation::Direct
            } else {
                Allocation::AreaShare
            })
    }
}

const fn default_level() -> u8 {
    2
}
const fn default_one() -> f64 {
    1.0
}
const fn default_silent_after() -> u32 {
    3
}

/// Values a meter's source is declared to send for "invalid": none by
/// default. A register's invalid patterns (0xFFFF, 0x7FFF, 0x8000_0000,
/// 0xFFFF_FFFF) are recognised on the raw words by the Modbus decoder; a
/// decimal value from a file, a message or line protocol is never a
/// sentinel (a water meter standing at 32 767.00 m³ is a real reading)
/// unless the site declares `sentinels = [...]` for a collector that
/// forwards such patterns as numbers (`docs/methodology.md` §1).
pub fn default_sentinels() -> Vec<f64> {
    Vec::new()
}

/// The raw-register invalid patterns as numbers, for a site (or a test)
/// declaring a collector that forwards them unchanged.
pub const REGISTER_SENTINELS: [f64; 4] = [65535.0, 32767.0, 2_147_483_648.0, 4_294_967_295.0];

/// `[[replacement]]`: an operator-declared meter replacement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replacement {
    /// Meter id (the logical meter continues under the same id).
    pub meter: String,
    /// When the old meter was removed and the new one fitted (local time, or with offset).
    pub at: Datetime,
    /// Old meter's final register value (source units).
    pub old_final: f64,
    /// New meter's initial register value (source units).
    pub new_initial: f64,
    /// Free text (work order, technician).
    #[serde(default)]
    pub note: Option<String>,
}

/// A replacement resolved to UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplacementEvent {
    /// Meter id.
    pub meter: String,
    /// Instant, ms since the Unix epoch.
    pub ts_ms: i64,
    /// Old meter's final register value (source units).
    pub old_final: f64,
    /// New meter's initial register value (source units).
    pub new_initial: f64,
}

pub(crate) const SUBITEMS: &[&str] = &[
    "A", "A1", "A2", "A3", "B", "B1", "B2", "C", "C1", "C2", "C3", "D",
];

/// Every meter, and the parent links.
pub(crate) fn check_meters(
    ctx: &mut Ctx<'_>,
    meters_rows: &[Located<'_, Meter>],
    ids: &super::site::Ids,
) {
    let (buildings, zones, agencies, meters) =
        (&ids.buildings, &ids.zones, &ids.agencies, &ids.meters);
    for m in meters_rows {
        check_meter(ctx, m, buildings, zones, agencies, meters);
        if let Some(d) = &m.value.in_service {
            date(ctx, m, "in_service", d);
        }
    }
    check_parent_cycles(ctx, meters_rows);
    check_parent_kinds(ctx, meters_rows);
}

/// A sub-meter measures the same carrier as its parent: the balance and the
/// remainder subtract one from the other (their units, all of one class,
/// convert exactly; a sub-meter of another class was silently ignored).
fn check_parent_kinds(ctx: &mut Ctx<'_>, meters: &[Located<'_, Meter>]) {
    let kinds: BTreeMap<&str, EnergyClass> = meters
        .iter()
        .map(|m| (m.value.id.as_str(), m.value.kind))
        .collect();
    for m in meters {
        let Some(parent) = m.value.parent.as_deref() else {
            continue;
        };
        if let Some(pk) = kinds.get(parent)
            && *pk != m.value.kind
        {
            ctx.error(
                m.span_of(&["parent"]),
                m.key("parent"),
                format!(
                    "parent `{parent}` is a {} meter and this is a {} meter: a sub-meter measures its parent's carrier",
                    pk.as_str(),
                    m.value.kind.as_str()
                ),
            );
        }
    }
}

/// The replacements, resolved in the site's zone.
pub(crate) fn check_replacements(
    ctx: &mut Ctx<'_>,
    replacements_rows: &[Located<'_, Replacement>],
    meters: &BTreeSet<String>,
    tz: Option<chrono_tz::Tz>,
) -> Vec<ReplacementEvent> {
    let mut replacements = Vec::new();
    for r in replacements_rows {
        let known = reference(ctx, r, "meter", &r.value.meter, meters, "meter");
        for key in ["old_final", "new_initial"] {
            let v = if key == "old_final" {
                r.value.old_final
            } else {
                r.value.new_initial
            };
            if !v.is_finite() || v < 0.0 {
                ctx.error(
                    r.span_of(&[key]),
                    r.key(key),
                    format!("must be a register value >= 0, got {v}"),
                );
            }
        }
        if let (true, Some(tz)) = (known, tz) {
            match instant(&r.value.at, tz) {
                Ok(ts_ms) => replacements.push(ReplacementEvent {
                    meter: r.value.meter.clone(),
                    ts_ms,
                    old_final: r.value.old_final,
                    new_initial: r.value.new_initial,
                }),
                Err(msg) => ctx.error(r.span_of(&["at"]), r.key("at"), msg),
            }
        }
    }
    replacements.sort_by(|a, b| (a.meter.as_str(), a.ts_ms).cmp(&(b.meter.as_str(), b.ts_ms)));
    for pair in replacements.windows(2) {
        if pair[0].meter == pair[1].meter
            && pair[0].ts_ms == pair[1].ts_ms
            && let Some(r) = replacements_rows
                .iter()
                .find(|r| r.value.meter == pair[1].meter)
        {
            ctx.error(
                r.span_of(&["at"]),
                r.key("at"),
                "two replacements of the same meter at the same instant",
            );
        }
    }

    replacements
}

pub(crate) fn check_meter(
    ctx: &mut Ctx<'_>,
    m: &Located<'_, Meter>,
    buildings: &BTreeSet<String>,
    zones: &BTreeSet<String>,
    agencies: &BTreeSet<String>,
    meters: &BTreeSet<String>,
) {
    let v = &m.value;
    let units = v.kind.allowed_units();
    if !units.contains(&v.unit.as_str()) {
        ctx.error(
            m.span_of(&["unit"]),
            m.key("unit"),
            format!(
                "`{}` is not a unit of a {} meter; expected one of {}",
                v.unit,
                v.kind.as_str(),
                units.join(", ")
            ),
        );
    }
    if !(1..=3).contains(&v.level) {
        ctx.error(
            m.span_of(&["level"]),
            m.key("level"),
            format!(
                "metering level must be 1, 2 or 3 (GB 17167), got {}",
                v.level
            ),
        );
    }
    if let Some(parent) = v.parent.as_ref() {
        if parent == &v.id {
            ctx.error(
                m.span_of(&["parent"]),
                m.key("parent"),
                "a meter cannot be its own parent",
            );
        } else {
            reference(ctx, m, "parent", parent, meters, "meter");
        }
    }
    if let Some(sub) = v.subitem.as_ref() {
        if v.kind != EnergyClass::Electricity {
            ctx.error(
                m.span_of(&["subitem"]),
                m.key("subitem"),
                "sub-items (分项) apply to electricity meters only",
            );
        } else if !SUBITEMS.contains(&sub.as_str()) {
            ctx.error(
                m.span_of(&["subitem"]),
                m.key("subitem"),
                format!(
                    "unknown sub-item `{sub}`; expected one of {}",
                    SUBITEMS.join(", ")
                ),
            );
        }
    }
    let s = &v.serves;
    let given = [
        s.building.is_some(),
        s.zone.is_some(),
        s.agency.is_some(),
        s.agencies.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        ctx.error(m.span_of(&["serves"]), m.key("serves"), "give exactly one of building, zone, agency or agencies, e.g. serves = { zone = \"b1-f3\" }");
    }
    if let Some(b) = s.building.as_ref() {
        reference(ctx, m, "serves.building", b, buildings, "building");
    }
    if let Some(z) = s.zone.as_ref() {
        reference(ctx, m, "serves.zone", z, zones, "zone");
    }
    if let Some(a) = s.agency.as_ref() {
        reference(ctx, m, "serves.agency", a, agencies, "agency");
    }
    if let Some(list) = s.agencies.as_ref() {
        if list.len() < 2 {
            ctx.error(
                m.span_of(&["serves", "agencies"]),
                m.key("serves.agencies"),
                "list at least two agencies (use `agency` for one)",
            );
        }
        for (i, a) in list.iter().enumerate() {
            let idx = i.to_string();
            if !agencies.contains(a) {
                let hint = suggest(
                    a,
                    agencies
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .iter(),
                );
                ctx.error(
                    m.span_of(&["serves", "agencies", &idx]),
                    m.key(&format!("serves.agencies[{i}]")),
                    format!("no agency `{a}`{hint}"),
                );
            }
        }
    }
    match v.effective_allocation() {
        Allocation::Fixed => {
            if v.shares.is_empty() {
                ctx.error(
                    m.span_of(&["allocation"]),
                    m.key("allocation"),
                    "fixed allocation needs `shares`, e.g. shares = { fin = 0.6, tax = 0.4 }",
                );
            } else {
                let sum: f64 = v.shares.values().sum();
                if (sum - 1.0).abs() > 1e-6 {
                    ctx.error(
                        m.span_of(&["shares"]),
                        m.key("shares"),
                        format!("shares must sum to 1, they sum to {sum}"),
                    );
                }
                for (agency, share) in &v.shares {
                    if !agencies.contains(agency) {
                        ctx.error(
                            m.span_of(&["shares", agency]),
                            m.key(&format!("shares.{agency}")),
                            format!("no agency `{agency}`"),
                        );
                    }
                    if !(0.0..=1.0).contains(share) {
                        ctx.error(
                            m.span_of(&["shares", agency]),
                            m.key(&format!("shares.{agency}")),
                            format!("a share is a fraction between 0 and 1, got {share}"),
                        );
                    }
                }
            }
        }
        Allocation::Direct => {
            if s.agency.is_none() && given == 1 {
                ctx.error(m.span_of(&["allocation"]), m.key("allocation"), "direct allocation needs the meter to serve one agency (serves = { agency = \"...\" })");
            }
        }
        Allocation::AreaShare | Allocation::HeadcountShare => {}
    }
    if !v.shares.is_empty() && v.effective_allocation() != Allocation::Fixed {
        ctx.error(
            m.span_of(&["shares"]),
            m.key("shares"),
            "`shares` is only used with allocation = \"fixed\"",
        );
    }
    positive(ctx, m, "multiplier", Some(v.multiplier));
    positive(ctx, m, "scale", Some(v.scale));
    positive(ctx, m, "rollover", v.rollover);
    positive(ctx, m, "max_rate", v.max_rate);
    if v.interval_s == Some(0) {
        ctx.error(
            m.span_of(&["interval_s"]),
            m.key("interval_s"),
            "the reading interval must be at least 1 s",
        );
    }
    if v.silent_after == 0 {
        ctx.error(
            m.span_of(&["silent_after"]),
            m.key("silent_after"),
            "must be at least 1 interval",
        );
    }
    if let Some(q) = v.quantity.as_ref()
        && !is_snake_case(q)
    {
        ctx.error(
            m.span_of(&["quantity"]),
            m.key("quantity"),
            format!("quantity names are ASCII snake_case, got `{q}`"),
        );
    }
}

pub(crate) fn check_parent_cycles(ctx: &mut Ctx<'_>, meters: &[Located<'_, Meter>]) {
    let parent: BTreeMap<&str, &str> = meters
        .iter()
        .filter_map(|m| m.value.parent.as_deref().map(|p| (m.value.id.as_str(), p)))
        .collect();
    for m in meters {
        let mut seen = BTreeSet::new();
        let mut cur = m.value.id.as_str();
        while let Some(&p) = parent.get(cur) {
            if !seen.insert(cur) {
                break;
            }
            if p == m.value.id {
                ctx.error(
                    m.span_of(&["parent"]),
                    m.key("parent"),
                    format!("parent chain of `{}` loops back to itself", m.value.id),
                );
                break;
            }
            cur = p;
        }
    }
}
