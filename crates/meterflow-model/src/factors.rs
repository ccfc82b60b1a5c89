//! The versioned factor registry (`docs/methodology.md` "data, not code"): conversion
//! coefficients, CO₂ factors, reduction targets and quotas, each row with its
//! source and confidence grade. Shipped defaults live in `factors/default.toml`;
//! a site file overrides rows with `[[factor]]`, `[[target]]`, `[[quota]]`.

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use toml::value::Datetime;

/// Confidence grade of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Grade {
    /// Checked against an official text or several agreeing sources.
    A,
    /// One good secondary source.
    B,
    /// Unverified: an overridable default, flagged in exports.
    C,
}

/// One coefficient.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorRow {
    /// Factor set the row belongs to.
    pub factor_set: String,
    /// What it converts, e.g. `kgce.electricity`, `co2.grid.national`, `density.gasoline`.
    pub indicator: String,
    /// Unit of the input quantity (kWh, m3, kg, L, MJ).
    pub unit_in: String,
    /// Unit of the result (kgce, kgCO2, kg).
    pub unit_out: String,
    /// The coefficient: unit_out per unit_in.
    pub value: f64,
    /// Standard the value comes from (e.g. GB/T 2589-2020).
    #[serde(default)]
    pub standard_ref: Option<String>,
    /// First day the row applies (inclusive); absent = always.
    #[serde(default)]
    pub effective_from: Option<Datetime>,
    /// Last day the row applies (inclusive); absent = open.
    #[serde(default)]
    pub effective_to: Option<Datetime>,
    /// Where the value was found.
    pub source: String,
    /// Confidence grade.
    pub confidence: Grade,
}

/// A reduction target of a plan (e.g. national 2021–2025 vs 2020).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRow {
    /// Plan name, e.g. `cn-14th-five-year`.
    pub plan: String,
    /// Base year of the reduction.
    pub base_year: i32,
    /// Year the reduction is due.
    pub target_year: i32,
    /// Indicator, e.g. `per_area_energy`, `per_capita_energy`, `per_capita_water`, `per_area_co2`.
    pub indicator: String,
    /// Required reduction against the base year, %.
    pub reduction_pct: f64,
    /// Where the value was found.
    pub source: String,
    /// Confidence grade.
    pub confidence: Grade,
}

/// One quota (定额) line: up to three levels, guide ≤ baseline ≤ constraint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRow {
    /// Quota set name, selected by `site.quota_set`.
    pub quota_set: String,
    /// Institution type, e.g. `office`.
    pub institution_type: String,
    /// Administrative level, e.g. `city`.
    pub admin_level: String,
    /// Climate zone, e.g. `A`.
    pub climate_zone: String,
    /// Indicator, e.g. `per_area_nonheating_energy`, `per_capita_water`.
    pub indicator: String,
    /// Unit of the levels, e.g. `kgce/m2·a`, `m3/person·a`, `L/person·d`.
    pub unit: String,
    /// Period the quota is stated for: `year`.
    #[serde(default = "default_period")]
    pub period: String,
    /// Day basis for per-day quotas: `calendar` or `working`.
    #[serde(default)]
    pub day_basis: Option<String>,
    /// 引导值 (energy) or 先进值 (water).
    #[serde(default)]
    pub guide: Option<f64>,
    /// 基准值 (energy only).
    #[serde(default)]
    pub baseline: Option<f64>,
    /// 约束值 (energy) or 通用值 (water).
    pub constraint: f64,
    /// kgce per kWh the quota's standard converts electricity with (当量值
    /// 0.1229, or an 等价值 such as 0.28078 or 0.31); absent = the factor
    /// set's statistics factor. Grading converts with it; the statistics
    /// report keeps 当量值 (`docs/methodology.md` §7).
    #[serde(default)]
    pub electricity_factor: Option<f64>,
    /// Where the value was found.
    pub source: String,
    /// Confidence grade.
    pub confidence: Grade,
}

fn default_period() -> String {
    "year".to_string()
}

/// Factors, targets and quotas in force.
#[derive(Debug, Clone, Default)]
pub struct FactorRegistry {
    /// Coefficient rows.
    pub factors: Vec<FactorRow>,
    /// Target rows.
    pub targets: Vec<TargetRow>,
    /// Quota rows.
    pub quotas: Vec<QuotaRow>,
}

/// The registry shipped with meterflow.
pub const SHIPPED_TOML: &str = include_str!("../factors/default.toml");

impl FactorRegistry {
    /// The row of `indicator` in `factor_set` in force on `date`.
    pub fn factor(&self, factor_set: &str, indicator: &str, date: NaiveDate) -> Option<&FactorRow> {
        self.factors
            .iter()
            .filter(|r| r.factor_set == factor_set && r.indicator == indicator)
            .filter(|r| {
                let from = r.effective_from.as_ref().and_then(to_date);
                let to = r.effective_to.as_ref().and_then(to_date);
                from.is_none_or(|f| f <= date) && to.is_none_or(|t| date <= t)
            })
            // When ranges overlap, the latest start wins (a newer row supersedes).
            .max_by_key(|r| r.effective_from.as_ref().and_then(to_date))
    }

    /// The row in force on 1 July of `year` (mid-year, for annual figures).
    pub fn factor_for_year(
        &self,
        factor_set: &str,
        indicator: &str,
        year: i32,
    ) -> Option<&FactorRow> {
        let date = NaiveDate::from_ymd_opt(year, 7, 1)?;
        self.factor(factor_set, indicator, date)
    }

    /// Replace rows with the same key, append the rest.
    pub fn apply_overrides(
        &mut self,
        factors: Vec<FactorRow>,
        targets: Vec<TargetRow>,
        quotas: Vec<QuotaRow>,
    ) {
        for row in factors {
            let same = |r: &FactorRow| {
                r.factor_set == row.factor_set
                    && r.indicator == row.indicator
                    && r.effective_from.as_ref().and_then(to_date)
                        == row.effective_from.as_ref().and_then(to_date)
            };
            self.factors.retain(|r| !same(r));
            self.factors.push(row);
        }
        for row in targets {
            self.targets
                .retain(|r| !(r.plan == row.plan && r.indicator == row.indicator));
            self.targets.push(row);
        }
        for row in quotas {
            self.quotas.retain(|r| {
                !(r.quota_set == row.quota_set
                    && r.institution_type == row.institution_type
                    && r.admin_level == row.admin_level
                    && r.climate_zone == row.climate_zone
                    && r.indicator == row.indicator)
            });
            self.quotas.push(row);
        }
    }

    /// Quota rows of a quota set.
    pub fn quotas_of<'a>(&'a self, quota_set: &'a str) -> impl Iterator<Item = &'a QuotaRow> + 'a {
        self.quotas.iter().filter(move |q| q.quota_set == quota_set)
    }
}

/// A `NaiveDate` as a TOML date (the inverse of [`to_date`]).
pub fn from_date(d: NaiveDate) -> Datetime {
    use chrono::Datelike;
    Datetime {
        date: Some(toml::value::Date {
            year: u16::try_from(d.year()).unwrap_or(0),
            month: u8::try_from(d.month()).unwrap_or(1),
            day: u8::try_from(d.day()).unwrap_or(1),
        }),
        time: None,
        offset: None,
    }
}

/// A TOML date (no time) as a `NaiveDate`.
pub fn to_date(d: &Datetime) -> Option<NaiveDate> {
    if d.time.is_some() || d.offset.is_some() {
        return None;
    }
    let date = d.date?;
    NaiveDate::from_ymd_opt(
        i32::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    )
}

/// Calendar year of a date.
pub fn year_of(d: NaiveDate) -> i32 {
    d.year()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_registry_is_valid() {
        let r = crate::config::parse_registry(SHIPPED_TOML, std::path::Path::new("default.toml"));
        assert!(
            r.is_ok(),
            "{}",
            r.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }

    #[test]
    fn grid_factor_is_pinned_by_data_year() {
        let r = FactorRegistry::shipped();
        let set = "cn-public-institution";
        // docs/methodology.md §6: 2022 national 0.5366 (A), 2023 national 0.5306 (B).
        assert_eq!(
            r.factor_for_year(set, "co2.grid.national", 2022)
                .map(|f| f.value),
            Some(0.5366)
        );
        assert_eq!(
            r.factor_for_year(set, "co2.grid.national", 2023)
                .map(|f| f.value),
            Some(0.5306)
        );
        // Electricity kgce (当量值) has no date range: same every year.
        assert_eq!(
            r.factor_for_year(set, "kgce.electricity", 2019)
                .map(|f| f.value),
            Some(0.1229)
        );
    }

    #[test]
    fn override_replaces_same_key_only() {
        let mut r = FactorRegistry::shipped();
        let before = r.factors.len();
        let row = FactorRow {
            factor_set: "cn-public-institution".into(),
            indicator: "density.gasoline".into(),
            unit_in: "L".into(),
            unit_out: "kg".into(),
            value: 0.74,
            standard_ref: None,
            effective_from: None,
            effective_to: None,
            source: "site measurement".into(),
            confidence: Grade::B,
        };
        r.apply_overrides(vec![row], vec![], vec![]);
        assert_eq!(r.factors.len(), before);
        let d = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default();
        assert_eq!(
            r.factor("cn-public-institution", "density.gasoline", d)
                .map(|f| f.value),
            Some(0.74)
        );
    }
}
