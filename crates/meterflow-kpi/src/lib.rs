//! Per-agency KPIs for a period, from the store's daily rollups: consumption
//! by carrier (shared meters allocated per day), comprehensive energy, CO₂,
//! time-weighted persons and area, per-capita and per-area figures,
//! completeness, quota grades and year-on-year change. The one KPI service
//! that the API, the page, the alerting rules, the InfluxDB points and the
//! annual export call, through a [`KpiContext`] each of them owns.

mod clip;
pub mod cost;
pub mod figures;
pub mod ownership;
mod sums;
mod types;

pub use types::{GradeRow, Reduction, Scope, ScopeKpis, TargetStatus, Yoy, YoyWindow, period_of};

use std::sync::{Arc, Mutex, OnceLock};

use chrono::NaiveDate;
use meterflow_core::aggregate::Aggregator;
use meterflow_core::denominators::Period;
use meterflow_model::Site;
use meterflow_store::Reader;

/// What the KPI computations of one site share, owned by whoever computes
/// (the API's state, one alerting round, one export, one round of points):
/// the site, its hierarchy walk (built on first use: it walks every meter's
/// share timeline), and the site merged with the office-space ledger, kept
/// while the ledger does not change (a merge clones the whole site: with
/// 1 000 meters it dominated a KPI request). Nothing is global: two sites, or
/// two versions of one site, never share a cache.
pub struct KpiContext {
    site: Arc<Site>,
    agg: OnceLock<Arc<Aggregator>>,
    merged: Mutex<Option<(LedgerState, Merged)>>,
    today: Option<NaiveDate>,
}

/// The site merged with the office-space ledger, and the ledger's rooms left
/// out of the areas (agency, room), both kept per ledger state.
#[derive(Clone)]
struct Merged {
    site: Arc<Site>,
    left_out: Arc<Vec<(String, String)>>,
}

/// The state of an append-only ledger: its length and the greatest and the
/// sum of its event ids (an appended event changes all three).
type LedgerState = (usize, i64, i64);

impl KpiContext {
    /// A context for `site` (cloned once into an `Arc`).
    pub fn new(site: &Site) -> KpiContext {
        KpiContext::from_arc(Arc::new(site.clone()))
    }

    /// A context for a site already shared.
    pub fn from_arc(site: Arc<Site>) -> KpiContext {
        KpiContext {
            site,
            agg: OnceLock::new(),
            merged: Mutex::new(None),
            today: None,
        }
    }

    /// The same context computing as of local date `today` (whether a year
    /// is still running) instead of the clock's: for replays and tests.
    pub fn with_today(mut self, today: NaiveDate) -> KpiContext {
        self.today = Some(today);
        self
    }

    /// The site as configured (without the ledger's rooms and headcounts).
    pub fn site(&self) -> &Arc<Site> {
        &self.site
    }

    /// The site's hierarchy walk, built on first use.
    pub fn aggregator(&self) -> Arc<Aggregator> {
        Arc::clone(
            self.agg
                .get_or_init(|| Arc::new(Aggregator::new(&self.site))),
        )
    }

    /// The site merged with the office-space ledger `space`: from this
    /// context's cache while the ledger is unchanged.
    pub fn merged_site(&self, space: &[meterflow_store::LedgerEvent]) -> Arc<Site> {
        self.merged(space).site
    }

    /// The merge and the rooms it left out, from the cache while the ledger
    /// is unchanged.
    fn merged(&self, space: &[meterflow_store::LedgerEvent]) -> Merged {
        if space.is_empty() {
            return Merged {
                site: Arc::clone(&self.site),
                left_out: Arc::new(Vec::new()),
            };
        }
        let key: LedgerState = (
            space.len(),
            space.iter().map(|e| e.id).max().unwrap_or(0),
            space.iter().map(|e| e.id).sum(),
        );
        if let Ok(c) = self.merged.lock()
            && let Some((k, merged)) = c.as_ref()
            && *k == key
        {
            return merged.clone();
        }
        let merged = Merged {
            site: Arc::new(meterflow_ledgers::space::merged_site(&self.site, space)),
            left_out: Arc::new(meterflow_ledgers::space::rooms_without_gross_area(
                &self.site, space,
            )),
        };
        if let Ok(mut c) = self.merged.lock() {
            *c = Some((key, merged.clone()));
        }
        merged
    }

    /// KPIs of any scope over `period`, from the stored scope rollups, with
    /// the office-space ledger's headcounts and rooms joining the site's
    /// denominators.
    pub fn scope_kpis(
        &self,
        reader: &Reader,
        scope: &Scope,
        period: Period,
    ) -> anyhow::Result<ScopeKpis> {
        let space = reader.ledger_until("space", i64::MAX)?;
        let merged = self.merged(&space);
        let today = self.today.unwrap_or_else(|| {
            meterflow_core::time::local_date(meterflow_model::clock::now_ms(), self.site.tz)
        });
        let mut k = figures::compute(
            &merged.site,
            &self.aggregator(),
            reader,
            scope,
            period,
            today,
        )?;
        let left_out: std::collections::BTreeSet<&str> = merged
            .left_out
            .iter()
            .filter(|(a, _)| match scope {
                Scope::Agency(x) => a == x,
                _ => true,
            })
            .map(|(_, room)| room.as_str())
            .collect();
        if !left_out.is_empty() {
            k.withheld.push((
                "area.rooms".into(),
                format!(
                    "rooms known only by usable area (使用面积) are left out of the area, their building declares no usable_to_gross: {}",
                    left_out.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok(k)
    }
}

/// KPIs of the whole site over `period`: the root meters' consumption (nothing
/// counted twice, unallocated consumption included), all agencies' persons,
/// the buildings' office area. A one-off context; callers computing many
/// scopes keep a [`KpiContext`].
pub fn site_kpis(site: &Site, reader: &Reader, period: Period) -> anyhow::Result<ScopeKpis> {
    KpiContext::new(site).scope_kpis(reader, &Scope::Site, period)
}

/// KPIs of `agency` over `period` (a one-off context).
pub fn agency_kpis(
    site: &Site,
    reader: &Reader,
    agency: &str,
    period: Period,
) -> anyhow::Result<ScopeKpis> {
    KpiContext::new(site).scope_kpis(reader, &Scope::Agency(agency.to_string()), period)
}

/// KPIs of `building` over `period` (a one-off context).
pub fn building_kpis(
    site: &Site,
    reader: &Reader,
    building: &str,
    period: Period,
) -> anyhow::Result<ScopeKpis> {
    KpiContext::new(site).scope_kpis(reader, &Scope::Building(building.to_string()), period)
}

/// Every scope of a site: agencies, buildings, then the site.
pub fn scopes(site: &Site) -> Vec<Scope> {
    site.agencies
        .iter()
        .map(|a| Scope::Agency(a.id.clone()))
        .chain(site.buildings.iter().map(|b| Scope::Building(b.id.clone())))
        .chain(std::iter::once(Scope::Site))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterflow_store::LedgerEvent;

    fn site() -> Site {
        let src = r#"
[site]
name = "t"

[[building]]
id = "B1"
total_area_m2 = 1000.0
office_area_m2 = 800.0

[[agency]]
id = "fin"
name = "财政局"
"#;
        match Site::parse(src, std::path::Path::new("site.toml")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn headcount(id: i64, persons: f64) -> LedgerEvent {
        LedgerEvent {
            id,
            ledger: "space".into(),
            kind: "headcount".into(),
            agency: Some("fin".into()),
            // 2025-01-01T00:00+08:00.
            ts_ms: 1_735_660_800_000,
            body: format!(r#"{{"agency":"fin","persons":{persons}}}"#),
            corrects: None,
            void: false,
            author: "clerk:space".into(),
            created_ms: 1_735_660_800_000 + id,
        }
    }

    #[test]
    fn the_merged_site_is_kept_until_the_ledger_changes_and_never_shared() {
        let site = site();
        let ctx = KpiContext::new(&site);
        // No ledger: the configured site itself, no merge.
        assert!(Arc::ptr_eq(&ctx.merged_site(&[]), ctx.site()));

        let one = vec![headcount(1, 40.0)];
        let a = ctx.merged_site(&one);
        let b = ctx.merged_site(&one);
        assert!(Arc::ptr_eq(&a, &b), "same ledger: the cached merge");
        // The ledger's headcount joined the site's rows.
        assert_eq!(a.headcounts.len(), site.headcounts.len() + 1);
        assert_eq!(a.headcounts.last().map(|h| h.persons), Some(40.0));

        // An appended entry is a new ledger state: merged again.
        let two = vec![headcount(1, 40.0), headcount(2, 45.0)];
        let c = ctx.merged_site(&two);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.headcounts.len(), site.headcounts.len() + 2);

        // Another context (another site, or the same one reloaded) has its
        // own cache: the global cache keyed by a pointer is gone.
        let other = KpiContext::new(&site);
        assert!(!Arc::ptr_eq(&other.merged_site(&two), &c));
    }
}
