//! A negative remainder is never allocated (`docs/methodology.md` §2): on a
//! day when a parent meter's sub-meters read more than the parent, the
//! stored rollups carry the difference as negative consumption for whoever
//! shares the parent's remainder. Here, per day and per parent, that
//! amount is added back to each scope in the proportion it received it, so
//! the remainder counts as zero; the amount is reported.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use meterflow_core::aggregate::{carrier_unit, rollup_factor};
use meterflow_core::denominators::{Period, shares_on};
use meterflow_model::Site;
use meterflow_model::config::Meter;
use meterflow_store::Reader;

use crate::types::{CLASSES, Scope};

/// What clipping gives back to a scope: per day and class (carrier units),
/// and per parent meter the total clipped (its carrier unit).
#[derive(Debug, Default)]
pub(crate) struct Clip {
    pub by_day: BTreeMap<NaiveDate, [f64; 9]>,
    pub by_parent: Vec<(String, f64)>,
}

/// A meter's day totals over `period` in its class's carrier unit.
fn days_of(reader: &Reader, m: &Meter, period: Period) -> anyhow::Result<BTreeMap<String, f64>> {
    let Some(series) = reader.series_id(&m.id, m.counter_quantity())? else {
        return Ok(BTreeMap::new());
    };
    let ratio = match (
        rollup_factor(m.kind, &m.unit),
        rollup_factor(m.kind, carrier_unit(m.kind)),
    ) {
        (Some(a), Some(b)) => a as f64 / b as f64,
        _ => 1.0,
    };
    Ok(reader
        .days(series, &period.from.to_string(), &period.to.to_string())?
        .into_iter()
        .map(|r| (r.day, meterflow_core::from_micro(r.micro) * ratio))
        .collect())
}

/// The building a meter's own consumption counts in, when it serves one.
fn building_of<'a>(site: &'a Site, m: &'a Meter) -> Option<&'a str> {
    m.serves.building.as_deref().or_else(|| {
        m.serves.zone.as_deref().and_then(|z| {
            site.zones
                .iter()
                .find(|x| x.id == z)
                .map(|x| x.building.as_str())
        })
    })
}

/// What clipping every parent's negative remainder gives back to `scope`.
pub(crate) fn clip(
    site: &Site,
    reader: &Reader,
    scope: &Scope,
    period: Period,
) -> anyhow::Result<Clip> {
    let mut out = Clip::default();
    for p in &site.meters {
        let children: Vec<&Meter> = site
            .meters
            .iter()
            .filter(|c| c.parent.as_deref() == Some(p.id.as_str()) && c.kind == p.kind)
            .collect();
        if children.is_empty() {
            continue;
        }
        // Whether (and how much of) the parent's remainder reaches the scope.
        let reach = |day: NaiveDate| -> f64 {
            match scope {
                Scope::Site => 1.0,
                Scope::Building(b) => f64::from(u8::from(building_of(site, p) == Some(b.as_str()))),
                Scope::Agency(a) => shares_on(site, p, day).get(a).copied().unwrap_or(0.0),
            }
        };
        let own = days_of(reader, p, period)?;
        let mut below: BTreeMap<String, f64> = BTreeMap::new();
        for c in children {
            for (d, v) in days_of(reader, c, period)? {
                *below.entry(d).or_default() += v;
            }
        }
        let class = CLASSES.iter().position(|k| *k == p.kind).unwrap_or(0);
        let mut total = 0.0;
        for (d, sub) in &below {
            let parent = own.get(d).copied().unwrap_or(0.0);
            let negative = sub - parent;
            if negative <= 0.0 {
                continue;
            }
            let Ok(day) = NaiveDate::parse_from_str(d, "%Y-%m-%d") else {
                continue;
            };
            let share = reach(day);
            if share > 0.0 {
                out.by_day.entry(day).or_default()[class] += negative * share;
                total += negative * share;
            }
        }
        if total > 0.0 {
            out.by_parent.push((p.id.clone(), total));
        }
    }
    Ok(out)
}
