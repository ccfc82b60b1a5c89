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
    /// Only in these months, 1–12 (a season's own hours: a summer and a
    /// winter time-of-use table side by side); all months when empty.
    #[serde(default)]
    pub months: Vec<u32>,
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
    /// Heat billed by area (按面积收费): CNY per m² of the buildings'
    /// total area (建筑面积) per heating season, instead of a price per GJ.
    #[serde(default)]
    pub per_m2_season: Option<f64>,
    /// The heating season of `per_m2_season`: its first and last local day,
    /// `["11-15", "03-15"]` (it may run into the next year).
    #[serde(default)]
    pub season: Option<[String; 2]>,
    /// Electricity: monthly demand charge (按需量), CNY per kW of the
    /// month's greatest 15-minute demand of the tariff's meters.
    #[serde(default)]
    pub demand_cny_per_kw: Option<f64>,
    /// Electricity: monthly capacity charge (按容量): the transformer's kVA …
    #[serde(default)]
    pub capacity_kva: Option<f64>,
    /// … × this price, CNY per kVA a month.
    #[serde(default)]
    pub capacity_cny_per_kva: Option<f64>,
    /// The meters this tariff prices (their own supply account).
    #[serde(default)]
    pub meters: Vec<String>,
    /// The agencies whose meters (meters serving only that agency) it prices.
    #[serde(default)]
    pub agencies: Vec<String>,
    /// The buildings whose meters it prices. With no `meters`, `agencies`
    /// or `buildings`, the tariff is the site's default for its carrier.
    #[serde(default)]
    pub buildings: Vec<String>,
}

/// Whom a tariff prices: the site default, or named meters, agencies or
/// buildings (a meter takes its own, else its agency's, else its
/// building's, else the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Assigned {
    /// Named meters.
    Meter,
    /// Meters serving only a named agency.
    Agency,
    /// Meters of a named building.
    Building,
    /// Everything else.
    Default,
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

/// Day of the year as `(month, day)` from `MM-DD`.
fn month_day(s: &str) -> Option<(u32, u32)> {
    let (m, d) = s.split_once('-')?;
    let (m, d): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    chrono::NaiveDate::from_ymd_opt(2024, m, d).map(|_| (m, d))
}

impl Tariff {
    /// Whom it prices.
    pub fn assigned(&self) -> Assigned {
        if !self.meters.is_empty() {
            Assigned::Meter
        } else if !self.agencies.is_empty() {
            Assigned::Agency
        } else if !self.buildings.is_empty() {
            Assigned::Building
        } else {
            Assigned::Default
        }
    }

    /// The heating season containing `d`, as its first and last day, if
    /// `d` is in one.
    pub fn season_of(
        &self,
        d: chrono::NaiveDate,
    ) -> Option<(chrono::NaiveDate, chrono::NaiveDate)> {
        use chrono::Datelike;
        let [a, b] = self.season.as_ref()?;
        let ((am, ad), (bm, bd)) = (month_day(a)?, month_day(b)?);
        let on = |y: i32, m: u32, dd: u32| {
            chrono::NaiveDate::from_ymd_opt(y, m, dd)
                .or_else(|| chrono::NaiveDate::from_ymd_opt(y, m, dd - 1))
        };
        let wraps = (bm, bd) < (am, ad);
        for start_year in [d.year() - 1, d.year()] {
            let start = on(start_year, am, ad)?;
            let end = on(if wraps { start_year + 1 } else { start_year }, bm, bd)?;
            if start <= d && d <= end {
                return Some((start, end));
            }
        }
        None
    }

    /// Local dates in force: `[from, to]`.
    pub fn days(&self) -> (Option<chrono::NaiveDate>, Option<chrono::NaiveDate>) {
        (to_date(&self.from), self.to.as_ref().and_then(to_date))
    }

    /// In force on `d`?
    pub fn in_force(&self, d: chrono::NaiveDate) -> bool {
        use chrono::Datelike;
        let (a, b) = self.days();
        a.is_some_and(|a| a <= d)
            && b.is_none_or(|b| d <= b)
            && (self.months.is_empty() || self.months.contains(&d.month()))
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
pub(crate) fn check_tariffs(
    ctx: &mut Ctx<'_>,
    tariffs: &[Located<'_, Tariff>],
    ids: &super::site::Ids,
) {
    for l in tariffs {
        let t = &l.value;
        check_extras(ctx, l, ids);
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
        if t.per_m2_season.is_some() {
            // Billed by area: checked with the extras.
        } else if t.periods.is_empty() {
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
            let (x, y) = (&a.value, &b.value);
            let months_meet = x.months.is_empty()
                || y.months.is_empty()
                || x.months.iter().any(|m| y.months.contains(m));
            let overlap = overlap && months_meet;
            let same_target = x.assigned() == y.assigned()
                && (x.assigned() == Assigned::Default
                    || x.meters.iter().any(|m| y.meters.contains(m))
                    || x.agencies.iter().any(|m| y.agencies.contains(m))
                    || x.buildings.iter().any(|m| y.buildings.contains(m)));
            if overlap && same_target {
                ctx.error(
                    a.span_of(&["from"]),
                    a.key("from"),
                    format!(
                        "tariff `{}` overlaps `{}` for {}{}: end the earlier one with `to`",
                        x.id,
                        y.id,
                        x.carrier.as_str(),
                        match x.assigned() {
                            Assigned::Default => String::new(),
                            _ => " on the same meters, agencies or buildings".to_string(),
                        }
                    ),
                );
            }
        }
    }
}

/// The site's default tariff of `carrier` in force on `d`.
pub fn tariff_on(
    tariffs: &[Tariff],
    carrier: EnergyClass,
    d: chrono::NaiveDate,
) -> Option<&Tariff> {
    tariffs
        .iter()
        .find(|t| t.carrier == carrier && t.assigned() == Assigned::Default && t.in_force(d))
}

/// Whom a meter is billed as: its id, the one agency it serves, its building.
#[derive(Debug, Clone, Copy, Default)]
pub struct BilledAs<'a> {
    /// Meter id.
    pub meter: Option<&'a str>,
    /// The agency it serves alone.
    pub agency: Option<&'a str>,
    /// Its building.
    pub building: Option<&'a str>,
}

/// The tariff of `carrier` in force on `d` for `who`: the meter's own, else
/// its agency's, else its building's, else the site default.
pub fn tariff_for<'t>(
    tariffs: &'t [Tariff],
    carrier: EnergyClass,
    d: chrono::NaiveDate,
    who: BilledAs<'_>,
) -> Option<&'t Tariff> {
    let on = |f: &dyn Fn(&Tariff) -> bool| {
        tariffs
            .iter()
            .find(|t| t.carrier == carrier && t.in_force(d) && f(t))
    };
    who.meter
        .and_then(|m| on(&|t| t.meters.iter().any(|x| x == m)))
        .or_else(|| {
            who.agency
                .and_then(|a| on(&|t| t.agencies.iter().any(|x| x == a)))
        })
        .or_else(|| {
            who.building
                .and_then(|b| on(&|t| t.buildings.iter().any(|x| x == b)))
        })
        .or_else(|| tariff_on(tariffs, carrier, d))
}

/// The checks of a tariff's area billing, demand and capacity charges and
/// assignment.
fn check_extras(ctx: &mut Ctx<'_>, l: &Located<'_, Tariff>, ids: &super::site::Ids) {
    let t = &l.value;
    let bad = |p: f64| !(p.is_finite() && (0.0..=100_000.0).contains(&p));
    if let Some(p) = t.per_m2_season {
        if t.carrier != EnergyClass::Heat {
            ctx.error(
                l.span_of(&["per_m2_season"]),
                l.key("per_m2_season"),
                "billing by area (per m² and season) is for heat",
            );
        }
        if bad(p) {
            ctx.error(
                l.span_of(&["per_m2_season"]),
                l.key("per_m2_season"),
                format!("{p}: a price from 0 to 100 000 CNY per m² and season"),
            );
        }
        if t.price.is_some() {
            ctx.error(
                l.span_of(&["price"]),
                l.key("price"),
                "heat is billed by area or by GJ: give `per_m2_season` or `price`, not both",
            );
        }
        let ok = t
            .season
            .as_ref()
            .is_some_and(|[a, b]| month_day(a).is_some() && month_day(b).is_some() && a != b);
        if !ok {
            ctx.error(
                l.span_of(&["season"]),
                l.key("season"),
                "the heating season as [\"MM-DD\", \"MM-DD\"], its first and last day, e.g. [\"11-15\", \"03-15\"]",
            );
        }
    } else if t.season.is_some() {
        ctx.error(
            l.span_of(&["season"]),
            l.key("season"),
            "a season belongs with `per_m2_season` (heat billed by area)",
        );
    }
    for (key, v) in [
        ("demand_cny_per_kw", t.demand_cny_per_kw),
        ("capacity_kva", t.capacity_kva),
        ("capacity_cny_per_kva", t.capacity_cny_per_kva),
    ] {
        let Some(v) = v else { continue };
        if t.carrier != EnergyClass::Electricity {
            ctx.error(
                l.span_of(&[key]),
                l.key(key),
                "demand and capacity charges are for electricity",
            );
        } else if bad(v) {
            ctx.error(
                l.span_of(&[key]),
                l.key(key),
                format!("{v}: a number from 0 to 100 000"),
            );
        }
    }
    if t.capacity_kva.is_some() != t.capacity_cny_per_kva.is_some() {
        ctx.error(
            l.span_of(&["capacity_kva"]),
            l.key("capacity_kva"),
            "a capacity charge needs both `capacity_kva` and `capacity_cny_per_kva`",
        );
    }
    if t.demand_cny_per_kw.is_some() && t.capacity_kva.is_some() {
        ctx.error(
            l.span_of(&["demand_cny_per_kw"]),
            l.key("demand_cny_per_kw"),
            "a tariff charges by demand or by capacity, not both",
        );
    }
    if t.months.iter().any(|m| !(1..=12).contains(m)) {
        ctx.error(l.span_of(&["months"]), l.key("months"), "months 1 to 12");
    }
    let lists = [
        !t.meters.is_empty(),
        !t.agencies.is_empty(),
        !t.buildings.is_empty(),
    ];
    if lists.iter().filter(|x| **x).count() > 1 {
        ctx.error(
            l.span_of(&[]),
            l.key("meters"),
            "a tariff prices meters, agencies or buildings: name one kind (a meter takes its own tariff, else its agency's, else its building's)",
        );
    }
    for (key, one, names, known) in [
        ("meters", "meter", &t.meters, &ids.meters),
        ("agencies", "agency", &t.agencies, &ids.agencies),
        ("buildings", "building", &t.buildings, &ids.buildings),
    ] {
        for (i, n) in names.iter().enumerate() {
            if !known.contains(n) {
                let idx = i.to_string();
                ctx.error(
                    l.span_of(&[key, &idx]),
                    l.key(&format!("{key}[{i}]")),
                    format!("no {one} `{n}`"),
                );
            }
        }
    }
}
