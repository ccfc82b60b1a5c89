//! The waste-sorting ledger (`docs/methodology.md` §10): weigh-ins as append-only
//! events, and per agency and year the totals by category, 回收利用率, the
//! incentive points and the one-vote veto.

use std::collections::BTreeMap;

use meterflow_model::Site;
use serde::{Deserialize, Serialize};

/// The four categories.
pub const CATEGORIES: [&str; 4] = ["recyclable", "kitchen", "hazardous", "residual"];

/// Where a weigh-in went; the first three count as recovered.
pub const DESTINATIONS: [&str; 6] = [
    "recycling",
    "composting",
    "anaerobic_digestion",
    "hazardous_treatment",
    "incineration",
    "landfill",
];

/// Recovered: not incinerated or landfilled, nor merely treated as hazardous.
pub fn recovered(destination: &str) -> bool {
    matches!(
        destination,
        "recycling" | "composting" | "anaerobic_digestion"
    )
}

/// One weigh-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeighIn {
    /// Agency.
    pub agency: String,
    /// Office or collection point.
    pub point: String,
    /// Category.
    pub category: String,
    /// Weighed, kg.
    pub kg: f64,
    /// Destination.
    pub destination: String,
    /// Receiving company.
    #[serde(default)]
    pub company: Option<String>,
    /// Receipt number.
    #[serde(default)]
    pub receipt: Option<String>,
}

impl WeighIn {
    /// Check against the site; the offending field and why.
    pub fn check(&self, site: &Site) -> Result<(), (&'static str, String)> {
        if !site.agencies.iter().any(|a| a.id == self.agency) {
            return Err(("agency", format!("no agency `{}`", self.agency)));
        }
        if self.point.trim().is_empty() {
            return Err(("point", "the collection point is required".into()));
        }
        if !CATEGORIES.contains(&self.category.as_str()) {
            return Err((
                "category",
                format!("`{}`: one of {}", self.category, CATEGORIES.join(", ")),
            ));
        }
        if !(self.kg.is_finite() && self.kg > 0.0 && self.kg < 1.0e6) {
            return Err((
                "kg",
                format!("{} is not a weight in kg (0 < kg < 1 000 000)", self.kg),
            ));
        }
        if !DESTINATIONS.contains(&self.destination.as_str()) {
            return Err((
                "destination",
                format!("`{}`: one of {}", self.destination, DESTINATIONS.join(", ")),
            ));
        }
        Ok(())
    }
}

/// One agency's year.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WasteSummary {
    /// Agency.
    pub agency: String,
    /// kg by category.
    pub kg_by_category: BTreeMap<String, f64>,
    /// All categories, kg.
    pub total_kg: f64,
    /// Recyclables and kitchen waste recovered, kg.
    pub recovered_kg: f64,
    /// 回收利用率 = recovered / total × 100 (`None` without records).
    pub recovery_rate_pct: Option<f64>,
    /// Meets the configured target.
    pub meets_target: Option<bool>,
    /// Incentive points (`None` when no prices are configured).
    pub points: Option<f64>,
    /// Weigh-ins in effect.
    pub records: usize,
    /// No records in the year: the one-vote veto of the annual assessment.
    pub veto: bool,
}

/// Summaries of every agency from the weigh-ins in effect in the year.
pub fn summarize(site: &Site, weigh_ins: &[WeighIn]) -> Vec<WasteSummary> {
    let s = &site.waste;
    site.agencies
        .iter()
        .map(|a| {
            let mine: Vec<&WeighIn> = weigh_ins.iter().filter(|w| w.agency == a.id).collect();
            let mut by: BTreeMap<String, f64> =
                CATEGORIES.iter().map(|c| (c.to_string(), 0.0)).collect();
            let mut recovered_kg = 0.0;
            let mut cny = 0.0;
            for w in &mine {
                *by.entry(w.category.clone()).or_default() += w.kg;
                if matches!(w.category.as_str(), "recyclable" | "kitchen")
                    && recovered(&w.destination)
                {
                    recovered_kg += w.kg;
                }
                cny += w.kg * s.price_per_kg.get(&w.category).copied().unwrap_or(0.0);
            }
            let total_kg: f64 = by.values().sum();
            let rate = (total_kg > 0.0).then(|| recovered_kg / total_kg * 100.0);
            WasteSummary {
                agency: a.id.clone(),
                kg_by_category: by,
                total_kg,
                recovered_kg,
                recovery_rate_pct: rate,
                meets_target: rate.map(|r| r >= s.recovery_target_pct),
                points: (!s.price_per_kg.is_empty()).then(|| cny / s.point_value_cny),
                records: mine.len(),
                veto: mine.is_empty(),
            }
        })
        .collect()
}
