//! Denominators over time (`docs/methodology.md` §3) and allocation of shared meters
//! (`docs/methodology.md` §2): headcount and occupied area per agency as step functions
//! of the local date, time-weighted over a period; a meter's shares by agency
//! on a date.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use meterflow_model::config::{Allocation, Meter, Remainder, Site};
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
/// A parent meter's `remainder` setting decides its key: with
/// `unallocated` its remainder (and so its share of everything) reaches no
/// agency, with `headcount_share` it is split by persons.
pub fn shares_on(site: &Site, meter: &Meter, day: NaiveDate) -> BTreeMap<String, f64> {
    let s = &meter.serves;
    let normalise = |weights: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        let total: f64 = weights.values().sum();
        if total <= 0.0 {
            return BTreeMap::new();
        }
        weights
            .into_iter()
            .filter(|(_, a)| *a > 0.0)
            .map(|(k, a)| (k, a / total))
            .collect()
    };
    let is_parent = || {
        site.meters
            .iter()
            .any(|c| c.parent.as_deref() == Some(meter.id.as_str()) && c.kind == meter.kind)
    };
    let key = match meter.remainder {
        Remainder::Unallocated if is_parent() => return BTreeMap::new(),
        Remainder::HeadcountShare if is_parent() => Allocation::HeadcountShare,
        _ => meter.effective_allocation(),
    };
    // Area each agency occupies in what the meter serves.
    let areas = || -> BTreeMap<String, f64> {
        if let Some(z) = &s.zone {
            zone_areas(site, z, day)
        } else if let Some(b) = &s.building {
            site.agencies
                .iter()
                .map(|a| (a.id.clone(), area_on(site, &a.id, day, Some(b))))
                .collect()
        } else if let Some(list) = &s.agencies {
            list.iter()
                .map(|a| (a.clone(), area_on(site, a, day, None)))
                .collect()
        } else if let Some(a) = &s.agency {
            BTreeMap::from([(a.clone(), 1.0)])
        } else {
            BTreeMap::new()
        }
    };
    match key {
        Allocation::Fixed => meter.shares.clone(),
        Allocation::Direct => s.agency.iter().map(|a| (a.clone(), 1.0)).collect(),
        Allocation::AreaShare => normalise(areas()),
        Allocation::HeadcountShare => normalise(
            areas()
                .into_iter()
                .map(|(a, here)| {
                    // Persons of the agency in what the meter serves: its
                    // headcount in proportion to its area there.
                    let all = area_on(site, &a, day, None);
                    let p = persons_on(site, &a, day);
                    let w = if s.agencies.is_some() || s.agency.is_some() || all <= 0.0 {
                        p
                    } else {
                        p * here / all
                    };
                    (a, if here > 0.0 { w } else { 0.0 })
                })
                .collect(),
        ),
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

/// Office area of `building` on `day` (total area where no office area is
/// given), m²; 0 before its `in_service` date.
pub fn building_area_on(site: &Site, building: &str, day: NaiveDate) -> f64 {
    site.buildings
        .iter()
        .filter(|b| b.id == building)
        .filter(|b| {
            b.in_service
                .as_ref()
                .and_then(to_date)
                .is_none_or(|d| d <= day)
        })
        .map(|b| b.office_area_m2.unwrap_or(b.total_area_m2))
        .sum()
}

/// Office area of every building in service on `day`, m².
pub fn site_area_on(site: &Site, day: NaiveDate) -> f64 {
    site.buildings
        .iter()
        .map(|b| building_area_on(site, &b.id, day))
        .sum()
}

/// How a building's common area (its area minus what agencies occupy) is
/// shared: with the key of its main meter's remainder (the meter serving
/// the building whose parent does not).
pub fn common_key(site: &Site, building: &str) -> Remainder {
    let serves_b = |m: &Meter| m.serves.building.as_deref() == Some(building);
    let main = site.meters.iter().find(|m| {
        serves_b(m)
            && m.parent
                .as_deref()
                .and_then(|p| site.meter(p))
                .is_none_or(|p| !serves_b(p))
    });
    match main {
        Some(m) if m.remainder == Remainder::Unallocated => Remainder::Unallocated,
        Some(m)
            if m.remainder == Remainder::HeadcountShare
                || m.effective_allocation() == Allocation::HeadcountShare =>
        {
            Remainder::HeadcountShare
        }
        _ => Remainder::AreaShare,
    }
}

/// The area denominator of `agency` on `day` (`docs/methodology.md` §2):
/// the area it occupies plus, in each building, the same share of the
/// building's common and unoccupied area as the key that splits the
/// building's energy gives it (none with an unallocated remainder). Summed
/// over agencies it gives the buildings' area.
pub fn agency_area_on(site: &Site, agency: &str, day: NaiveDate) -> f64 {
    let mut area = area_on(site, agency, day, None);
    for b in &site.buildings {
        let mine = area_on(site, agency, day, Some(&b.id));
        if mine > 0.0 {
            area += common_share(site, agency, &b.id, day, mine);
        }
    }
    area
}

/// The part of [`agency_area_on`] in one building: what the agency occupies
/// there and its share of the building's common and unoccupied area.
pub fn agency_area_in(site: &Site, agency: &str, building: &str, day: NaiveDate) -> f64 {
    let mine = area_on(site, agency, day, Some(building));
    if mine <= 0.0 {
        return 0.0;
    }
    mine + common_share(site, agency, building, day, mine)
}

/// The agency's part of building `b`'s common and unoccupied area on `day`,
/// by the key that splits the building's energy; `mine` is what it occupies.
fn common_share(site: &Site, agency: &str, b: &str, day: NaiveDate, mine: f64) -> f64 {
    let key = common_key(site, b);
    if key == Remainder::Unallocated {
        return 0.0;
    }
    let occupied: BTreeMap<&str, f64> = site
        .agencies
        .iter()
        .map(|a| (a.id.as_str(), area_on(site, &a.id, day, Some(b))))
        .collect();
    let total_occupied: f64 = occupied.values().sum();
    let common = (building_area_on(site, b, day) - total_occupied).max(0.0);
    let share = match key {
        Remainder::HeadcountShare => {
            let here = |a: &str, occ: f64| {
                let all = area_on(site, a, day, None);
                if all > 0.0 {
                    persons_on(site, a, day) * occ / all
                } else {
                    0.0
                }
            };
            let total: f64 = occupied.iter().map(|(a, o)| here(a, *o)).sum();
            if total > 0.0 {
                here(agency, mine) / total
            } else {
                0.0
            }
        }
        _ => {
            if total_occupied > 0.0 {
                mine / total_occupied
            } else {
                0.0
            }
        }
    };
    common * share
}

/// Special-function floor area (`special_area_m2`) reaching a scope on
/// `day`: a building's own; an agency's share of each building's by its
/// occupied area there; `None` = the whole site.
pub fn special_area_on(
    site: &Site,
    agency: Option<&str>,
    building: Option<&str>,
    day: NaiveDate,
) -> f64 {
    site.buildings
        .iter()
        .filter(|b| building.is_none_or(|x| x == b.id))
        .filter(|b| {
            b.in_service
                .as_ref()
                .and_then(to_date)
                .is_none_or(|d| d <= day)
        })
        .map(|b| {
            let special = b.special_area_m2.unwrap_or(0.0);
            match agency {
                None => special,
                Some(a) => {
                    let total: f64 = site
                        .agencies
                        .iter()
                        .map(|x| area_on(site, &x.id, day, Some(&b.id)))
                        .sum();
                    if total > 0.0 {
                        special * area_on(site, a, day, Some(&b.id)) / total
                    } else {
                        0.0
                    }
                }
            }
        })
        .sum()
}

/// Dates on which a denominator can change: occupancies starting or ending
/// (the day after), headcounts, buildings entering service.
pub fn change_dates(site: &Site) -> Vec<NaiveDate> {
    let mut out: Vec<NaiveDate> = Vec::new();
    for s in &site.spaces {
        out.extend(to_date(&s.from));
        out.extend(s.to.as_ref().and_then(to_date).and_then(|d| d.succ_opt()));
    }
    out.extend(site.headcounts.iter().filter_map(|h| to_date(&h.from)));
    out.extend(
        site.buildings
            .iter()
            .filter_map(|b| b.in_service.as_ref().and_then(to_date)),
    );
    out.sort_unstable();
    out.dedup();
    out
}

/// Time-weighted average of a step function over a set of days: `value` is
/// asked once per run of days between two `changes`, not once per day.
pub fn time_weighted_steps(
    days: &std::collections::BTreeSet<NaiveDate>,
    changes: &[NaiveDate],
    value: &dyn Fn(NaiveDate) -> f64,
) -> Option<f64> {
    if days.is_empty() {
        return None;
    }
    let mut sum = 0.0;
    let mut current: Option<(usize, f64)> = None;
    for &d in days {
        // Index of the step the day falls in.
        let step = changes.partition_point(|c| *c <= d);
        let v = match current {
            Some((s, v)) if s == step => v,
            _ => {
                let v = value(d);
                current = Some((step, v));
                v
            }
        };
        sum += v;
    }
    Some(sum / days.len() as f64)
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
