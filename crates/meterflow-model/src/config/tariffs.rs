//! `[[tariff]]`: prices as data, with the dates they are in force and their
//! source (`docs/methodology.md` §14). Electricity by time of use (尖峰 /
//! 峰 / 平 / 谷 by hour, 尖峰 in some months), or one price; water with the
//! progressive surcharge above the quota (超定额累进加价); gas and heat
//! (per GJ) one price. Site-wide per carrier; one tariff in force at a time.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::value::Datetime;

use super::document::{Ctx, Located};
use crate::EnergyClass;
use crate::factors::to_date;

/// The time-of-use periods, most expensive first: 尖峰, 峰, 平, 谷.
pub const TOU_PERIODS: [&str; 4] = ["critical", "peak", "flat", "valley"];

/// One tariff.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    /// Name.
    pub id: String,
    /// `electricity`, `water`, `gas` or `heat`.
    pub carrier: EnergyClass,
    /// In force from this local date.
    pub from: Datetime,
    /// Until this local date, inclusive (open-ended when absent).
    #[serde(default)]
    pub to: Option<Datetime>,
    /// Where the prices come from (the price bureau's document).
    pub source: String,
    /// One price per unit (CNY per kWh, m³ or GJ): water, gas, heat, or
    /// electricity without time of use.
    #[serde(default)]
    pub price: Option<f64>,
    /// Electricity by time of use: `peak`, `flat`, `valley` → local hours
    /// `["08:00-11:00", "18:00-23:00"]`; together they cover the day once.
    #[serde(default)]
    pub periods: BTreeMap<String, Vec<String>>,
    /// CNY per kWh of each period (with `critical` when there is a 尖峰).
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
    /// 尖峰: hours inside 峰 that cost more in some months.
    #[serde(default)]
    pub critical: Option<Critical>,
    /// Water: surcharge bands above the monthly quota, ascending.
    #[serde(default)]
    pub surcharge: Vec<Band>,
}

/// 尖峰 hours and the months they apply.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Critical {
    /// Months, 1–12.
    pub months: Vec<u32>,
    /// Local hours, `HH:MM-HH:MM`.
    pub hours: Vec<String>,
}

/// One surcharge band: the water above `quota × (1 + above_pct / 100)` (up
/// to the next band) costs `factor` × the price on top of the price.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Where the band starts, % above the quota.
    pub above_pct: f64,
    /// Added price, × the base price.
    pub factor: f64,
}

/// Minutes of the day `[start, end)`, the day wrapping at midnight.
fn minutes(h: &str) -> Option<Vec<u32>> {
    let (a, b) = super::alerts::parse_hours(h)?;
    let mut out = Vec::new();
    let mut m = a;
    while m != b {
        out.push(m);
        m = (m + 15) % (24 * 60);
        if out.len() > 96 {
            return None;
        }
    }
    (a % 15 == 0 && b % 15 == 0).then_some(out)
}

impl Tariff {
    /// Local dates in force: `[from, to]`.
    pub fn days(&self) -> (Option<chrono::NaiveDate>, Option<chrono::NaiveDate>) {
        (to_date(&self.from), self.to.as_ref().and_then(to_date))
    }

    /// In force on `d`?
    pub fn in_force(&self, d: chrono::NaiveDate) -> bool {
        let (a, b) = self.days();
        a.is_some_and(|a| a <= d) && b.is_none_or(|b| d <= b)
    }

    /// The period and price of the 15 minutes starting at `minute` of a day
    /// in `month`: `("flat", 0.7)`, or `("", price)` without time of use.
    pub fn price_at(&self, month: u32, minute: u32) -> Option<(&str, f64)> {
        if self.periods.is_empty() {
            return self.price.map(|p| ("", p));
        }
        if let Some(c) = &self.critical
            && c.months.contains(&month)
            && c.hours
                .iter()
                .filter_map(|h| minutes(h))
                .any(|ms| ms.contains(&minute))
        {
            return self.prices.get("critical").map(|p| ("critical", *p));
        }
        let (name, _) = self.periods.iter().find(|(_, hours)| {
            hours
                .iter()
                .filter_map(|h| minutes(h))
                .any(|ms| ms.contains(&minute))
        })?;
        let name = TOU_PERIODS.iter().find(|p| **p == name.as_str())?;
        self.prices.get(*name).map(|p| (*name, *p))
    }
}

/// `[[budget]]`: an agency's energy budget (能耗经费预算) for a year.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Agency.
    pub agency: String,
    /// Calendar year.
    pub year: i32,
    /// CNY for the year's energy and water.
    pub cny: f64,
    /// Where the figure comes from (the budget document).
    #[serde(default)]
    pub source: Option<String>,
}

/// The checks of `[[budget]]`: a known agency, a plausible year and amount,
/// one budget per agency and year.
pub(crate) fn check_budgets(
    ctx: &mut Ctx<'_>,
    budgets: &[Located<'_, Budget>],
    agencies: &std::collections::BTreeSet<String>,
) {
    for (i, l) in budgets.iter().enumerate() {
        let b = &l.value;
        if !agencies.contains(&b.agency) {
            ctx.error(
                l.span_of(&["agency"]),
                l.key("agency"),
                format!("no agency `{}`", b.agency),
            );
        }
        if !(2000..=2100).contains(&b.year) {
            ctx.error(
                l.span_of(&["year"]),
                l.key("year"),
                format!("{}: a year from 2000 to 2100", b.year),
            );
        }
        if !(b.cny.is_finite() && b.cny > 0.0) {
            ctx.error(
                l.span_of(&["cny"]),
                l.key("cny"),
                format!("{}: a budget above 0 CNY", b.cny),
            );
        }
        if budgets[..i]
            .iter()
            .any(|o| o.value.agency == b.agency && o.value.year == b.year)
        {
            ctx.error(
                l.span_of(&["year"]),
                l.key("year"),
                format!("a second budget for `{}` in {}", b.agency, b.year),
            );
        }
    }
}

/// The checks of `[[tariff]]`: prices given, periods covering each quarter
/// hour of the day exactly once, critical hours and months readable, bands
/// ascending, and no two tariffs of a carrier in force on the same day.
pub(crate) fn check_tariffs(ctx: &mut Ctx<'_>, tariffs: &[Located<'_, Tariff>]) {
    for l in tariffs {
        let t = &l.value;
        if !matches!(
            t.carrier,
            EnergyClass::Electricity | EnergyClass::Water | EnergyClass::Gas | EnergyClass::Heat
        ) {
            ctx.error(
                l.span_of(&["carrier"]),
                l.key("carrier"),
                "a tariff is for electricity, water, gas or heat",
            );
        }
        let (from, to) = t.days();
        if from.is_none() {
            ctx.error(
                l.span_of(&["from"]),
                l.key("from"),
                "a local date, e.g. 2026-01-01",
            );
        }
        if let (Some(a), Some(b)) = (from, to)
            && b < a
        {
            ctx.error(
                l.span_of(&["to"]),
                l.key("to"),
                format!("`to` {b} is before `from` {a}"),
            );
        }
        let bad_price = |p: f64| !(p.is_finite() && (0.0..=10_000.0).contains(&p));
        if t.periods.is_empty() {
            match t.price {
                None => ctx.error(
                    l.span_of(&[]),
                    l.key("price"),
                    "give `price` (CNY per unit), or `periods` and `prices` for time of use",
                ),
                Some(p) if bad_price(p) => ctx.error(
                    l.span_of(&["price"]),
                    l.key("price"),
                    format!("{p}: a price from 0 to 10 000 CNY per unit"),
                ),
                Some(_) => {}
            }
        } else {
            if t.carrier != EnergyClass::Electricity {
                ctx.error(
                    l.span_of(&["periods"]),
                    l.key("periods"),
                    "time-of-use periods are for electricity",
                );
            }
            // Each quarter hour of the day in exactly one period.
            let mut owner: Vec<Option<&str>> = vec![None; 96];
            for (name, hours) in &t.periods {
                if !["peak", "flat", "valley"].contains(&name.as_str()) {
                    ctx.error(l.span_of(&["periods", name]), l.key(&format!("periods.{name}")), format!("`{name}`: the periods are peak (峰), flat (平) and valley (谷); 尖峰 is `critical`"));
                    continue;
                }
                for h in hours {
                    let Some(ms) = minutes(h) else {
                        ctx.error(
                            l.span_of(&["periods", name]),
                            l.key(&format!("periods.{name}")),
                            format!("`{h}`: local hours HH:MM-HH:MM on quarter hours"),
                        );
                        continue;
                    };
                    for m in ms {
                        let slot = (m / 15) as usize;
                        if let Some(other) = owner[slot] {
                            ctx.error(
                                l.span_of(&["periods", name]),
                                l.key(&format!("periods.{name}")),
                                format!(
                                    "{:02}:{:02} is in both `{other}` and `{name}`",
                                    m / 60,
                                    m % 60
                                ),
                            );
                        }
                        owner[slot] = Some(name);
                    }
                }
                match t.prices.get(name) {
                    None => ctx.error(
                        l.span_of(&["prices"]),
                        l.key("prices"),
                        format!("no price for `{name}`"),
                    ),
                    Some(p) if bad_price(*p) => ctx.error(
                        l.span_of(&["prices", name]),
                        l.key(&format!("prices.{name}")),
                        format!("{p}: a price from 0 to 10 000 CNY per kWh"),
                    ),
                    Some(_) => {}
                }
            }
            if let Some(gap) = owner.iter().position(Option::is_none) {
                let m = gap * 15;
                ctx.error(
                    l.span_of(&["periods"]),
                    l.key("periods"),
                    format!(
                        "{:02}:{:02} is in no period: the periods must cover the day",
                        m / 60,
                        m % 60
                    ),
                );
            }
            if let Some(c) = &t.critical {
                if c.months.is_empty() || c.months.iter().any(|m| !(1..=12).contains(m)) {
                    ctx.error(
                        l.span_of(&["critical", "months"]),
                        l.key("critical.months"),
                        "months 1 to 12",
                    );
                }
                for h in &c.hours {
                    if minutes(h).is_none() {
                        ctx.error(
                            l.span_of(&["critical", "hours"]),
                            l.key("critical.hours"),
                            format!("`{h}`: local hours HH:MM-HH:MM on quarter hours"),
                        );
                    }
                }
                if !t.prices.contains_key("critical") {
                    ctx.error(
                        l.span_of(&["prices"]),
                        l.key("prices"),
                        "no price for `critical` (尖峰)",
                    );
                }
            }
        }
        if !t.surcharge.is_empty() && t.carrier != EnergyClass::Water {
            ctx.error(
                l.span_of(&["surcharge"]),
                l.key("surcharge"),
                "a surcharge above the quota is for water",
            );
        }
        if t.surcharge
            .windows(2)
            .any(|w| w[1].above_pct <= w[0].above_pct)
            || t.surcharge
                .iter()
                .any(|b| b.above_pct < 0.0 || b.factor < 0.0 || !b.factor.is_finite())
        {
            ctx.error(
                l.span_of(&["surcharge"]),
                l.key("surcharge"),
                "bands ascending by above_pct (≥ 0), each with a factor ≥ 0",
            );
        }
    }
    // One tariff per carrier per day.
    for (i, a) in tariffs.iter().enumerate() {
        for b in &tariffs[..i] {
            if a.value.carrier != b.value.carrier {
                continue;
            }
            let ((af, at), (bf, bt)) = (a.value.days(), b.value.days());
            let (Some(af), Some(bf)) = (af, bf) else {
                continue;
            };
            let overlap = at.is_none_or(|at| bf <= at) && bt.is_none_or(|bt| af <= bt);
            if overlap {
                ctx.error(
                    a.span_of(&["from"]),
                    a.key("from"),
                    format!(
                        "tariff `{}` overlaps `{}` for {}: end the earlier one with `to`",
                        a.value.id,
                        b.value.id,
                        a.value.carrier.as_str()
                    ),
                );
            }
        }
    }
}

/// The tariff of `carrier` in force on `d`.
pub fn tariff_on(
    tariffs: &[Tariff],
    carrier: EnergyClass,
    d: chrono::NaiveDate,
) -> Option<&Tariff> {
    tariffs
        .iter()
        .find(|t| t.carrier == carrier && t.in_force(d))
}
