//! Denominators over time (`docs/methodology.md` §3) and allocation of shared meters
//! (`docs/methodology.md` §2): headcount and occupied area per agency as step functions
//! of the local date, time-weighted over a period; a meter's shares by agency
//! on a date.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use meterflow_model::config::{Allocation, Meter, Site};
use meterflow_model::factors::to_date;

/// A half-open range of local dates `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// Day after the last.
    pub to: NaiveDate,
}

impl Period {
    /// Days in the period.
    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days().max(0)
    }

    /// The days, in order.
    pub fn iter(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.from.iter_days().take_while(move |d| *d < self.to)
    }
}

/// 用能人数 of `agency` on `day`: the latest `[[headcount]]` row from on or before it (0 before the first).
pub fn persons_on(site: &Site, agency: &str, day: NaiveDate) -> f64 {
    site.headcounts
        .iter()
        .filter(|h| h.agency == agency)
        .filter_map(|h| to_date(&h.from).map(|d| (d, h.persons)))
        .filter(|(d, _)| *d <= day)
        .max_by_key(|(d, _)| *d)
        .map_or(0.0, |(_, p)| p)
}

/// Office area (m²) `agency` occupies on `day`, optionally only within `building`.
pub fn area_on(site: &Site, agency: &str, day: NaiveDate, building: Option<&str>) -> f64 {
    site.spaces
        .iter()
        .filter(|s| s.agency == agency)
        .filter(|s| {
            let from = to_date(&s.from);
            let to = s.to.as_ref().and_then(to_date);
            from.is_some_and(|f| f <= day) && to.is_none_or(|t| day <= t)
        })
        .filter(|s| match building {
            None => true,
            Some(b) => {
                s.building.as_deref() == Some(b)
                    || s.zone
                        .as_ref()
                        .is_some_and(|z| site.zones.iter().any(|x| &x.id == z && x.building == b))
            }
        })
        .map(|s| s.area_m2)
        .sum()
}

/// Area (m²) each agency occupies in `zone` on `day`.
fn zone_areas(site: &Site, zone: &str, day: NaiveDate) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in site
        .spaces
        .iter()
        .filter(|s| s.zone.as_deref() == Some(zone))
    {
        let from = to_date(&s.from);
        let to = s.to.as_ref().and_then(to_date);
        if from.is_some_and(|f| f <= day) && to.is_none_or(|t| day <= t) {
            *out.entry(s.agency.clone()).or_insert(0.0) += s.area_m2;
        }
    }
    out
}

/// Time-weighted average over `period` of a daily quantity: Σ value(day) / days.
pub fn time_weighted(period: Period, value: impl Fn(NaiveDate) -> f64) -> Option<f64> {
    let days = period.days();
    (days > 0).then(|| period.iter().map(value).sum::<f64>() / days as f64)
}

/// Shares (summing to 1) of a meter's consumption by agency on `day`; empty
/// when nobody occupies what it serves (its consumption stays unallocated).
pub fn shares_on(site: &Site, meter: &Meter, day: NaiveDate) -> BTreeMap<String, f64> {
    let s = &meter.serves;
    let by_area = |areas: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        let total: f64 = areas.values().sum();
        if total <= 0.0 {
            return BTreeMap::new();
        }
        areas
            .into_iter()
            .filter(|(_, a)| *a > 0.0)
            .map(|(k, a)| (k, a / total))
            .collect()
    };
    match meter.effective_allocation() {
        Allocation::Fixed => meter.shares.clone(),
        Allocation::Direct => s.agency.iter().map(|a| (a.clone(), 1.0)).collect(),
        Allocation::AreaShare => {
            if let Some(z) = &s.zone {
                by_area(zone_areas(site, z, day))
            } else if let Some(b) = &s.building {
                by_area(
                    site.agencies
                        .iter()
                        .map(|a| (a.id.clone(), area_on(site, &a.id, day, Some(b))))
                        .collect(),
                )
            } else if let Some(list) = &s.agencies {
                by_area(
                    list.iter()
                        .map(|a| (a.clone(), area_on(site, a, day, None)))
                        .collect(),
                )
            } else if let Some(a) = &s.agency {
                BTreeMap::from([(a.clone(), 1.0)])
            } else {
                BTreeMap::new()
            }
        }
    }
}

/// Consumption attributed to `agency` over `period`. Every unit counts once:
/// a meter with sub-meters contributes only its remainder (its own consumption
/// minus its children's of the same class: common areas, unmetered loads and
/// losses), split by its own allocation; a leaf meter contributes all of it.
/// Each day uses that day's shares. `daily(meter, day)` gives a meter's
/// consumption on a local day (in its unit).
pub fn agency_consumption<'a>(
    site: &'a Site,
    agency: &str,
    period: Period,
    meters: impl Iterator<Item = &'a Meter>,
    daily: impl Fn(&str, NaiveDate) -> f64,
) -> f64 {
    let meters: Vec<&Meter> = meters.collect();
    let children: BTreeMap<&str, Vec<&str>> = meters.iter().fold(BTreeMap::new(), |mut acc, m| {
        if let Some(p) = m.parent.as_deref()
            && site.meter(p).is_some_and(|parent| parent.kind == m.kind)
        {
            acc.entry(p).or_insert_with(Vec::new).push(m.id.as_str());
        }
        acc
    });
    let mut total = 0.0;
    for day in period.iter() {
        for m in &meters {
            let own = daily(&m.id, day);
            let below: f64 = children
                .get(m.id.as_str())
                .map_or(0.0, |cs| cs.iter().map(|c| daily(c, day)).sum());
            let c = own - below;
            if c != 0.0 {
                total += c * shares_on(site, m, day).get(agency).copied().unwrap_or(0.0);
            }
        }
    }
    total
}

/// Consumption of the whole site over `period`: every meter's remainder (own −
/// children of the same class) summed, which equals what the root meters read,
/// unallocated consumption included.
pub fn site_consumption<'a>(
    site: &'a Site,
    period: Period,
    meters: impl Iterator<Item = &'a Meter>,
    daily: impl Fn(&str, NaiveDate) -> f64,
) -> f64 {
    let meters: Vec<&Meter> = meters.collect();
    let mut total = 0.0;
    for day in period.iter() {
        for m in &meters {
            let below: f64 = meters
                .iter()
                .filter(|c| c.parent.as_deref() == Some(m.id.as_str()) && c.kind == m.kind)
                .map(|c| daily(&c.id, day))
                .sum();
            total += daily(&m.id, day) - below;
        }
    }
    let _ = site;
    total
}

/// Office area of the site's buildings (total area where no office area is given), m².
pub fn site_area(site: &Site) -> f64 {
    site.buildings
        .iter()
        .map(|b| b.office_area_m2.unwrap_or(b.total_area_m2))
        .sum()
}

/// 用能人数 in `building` on `day`: each agency's persons in proportion to
/// the share of its office area that lies in the building.
pub fn building_persons_on(site: &Site, building: &str, day: NaiveDate) -> f64 {
    site.agencies
        .iter()
        .map(|a| {
            let all = area_on(site, &a.id, day, None);
            if all <= 0.0 {
                return 0.0;
            }
            persons_on(site, &a.id, day) * area_on(site, &a.id, day, Some(building)) / all
        })
        .sum()
}

/// 用能人数 of all agencies on `day`.
pub fn site_persons_on(site: &Site, day: NaiveDate) -> f64 {
    site.agencies
        .iter()
        .map(|a| persons_on(site, &a.id, day))
        .sum()
}

/// Balance of a parent meter on a day (`docs/methodology.md` §2): `(parent, Σ children,
/// remainder)` where remainder = parent − Σ children = unmetered loads +
/// losses; a persistent positive remainder on water is a leak signal.
/// `None` if the meter has no children of its class.
pub fn balance(
    site: &Site,
    parent: &Meter,
    day: NaiveDate,
    daily: impl Fn(&str, NaiveDate) -> f64,
) -> Option<(f64, f64, f64)> {
    let children: Vec<&Meter> = site
        .meters
        .iter()
        .filter(|m| m.parent.as_deref() == Some(parent.id.as_str()) && m.kind == parent.kind)
        .collect();
    if children.is_empty() {
        return None;
    }
    let own = daily(&parent.id, day);
    let below: f64 = children.iter().map(|c| daily(&c.id, day)).sum();
    Some((own, below, own - below))
}

/// Days of `period` on which the remainder of `parent` exceeds `tolerance`
/// (a fraction of the parent's consumption), with the remainder.
pub fn imbalanced_days(
    site: &Site,
    parent: &Meter,
    period: Period,
    tolerance: f64,
    daily: impl Fn(&str, NaiveDate) -> f64,
) -> Vec<(NaiveDate, f64)> {
    period
        .iter()
        .filter_map(|d| {
            balance(site, parent, d, &daily)
                .filter(|(own, _, rest)| *own > 0.0 && *rest > own * tolerance)
                .map(|(_, _, rest)| (d, rest))
        })
        .collect()
}
