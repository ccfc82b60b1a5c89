//! The KPI service's types: what a scope's figures are, and which scope.

use chrono::NaiveDate;
use meterflow_core::aggregate::Level;
use meterflow_core::denominators::Period;
use meterflow_core::kpi::{Carbon, Carriers};
use meterflow_model::EnergyClass;

/// Every energy class, in table order (indices of per-class arrays).
pub(crate) const CLASSES: [EnergyClass; 9] = EnergyClass::ALL;

/// KPIs of one scope over one period (`docs/methodology.md` §5).
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeKpis {
    /// Scope label (agency id, building id, or `site`).
    pub agency: String,
    /// Period.
    pub period: Period,
    /// Quantities by carrier (allocated shares of every meter serving the agency).
    pub carriers: Carriers,
    /// Comprehensive energy, kgce (water excluded), with the statistics factor (当量值).
    pub energy_kgce: f64,
    /// CO₂ of every carrier, t; absent (see `withheld`) when a factor is missing.
    pub co2_t: Option<f64>,
    /// CO₂ by carrier, the grid factor's year and its warnings.
    pub carbon: Carbon,
    /// Time-weighted 用能人数.
    pub persons: f64,
    /// Time-weighted area, m²: for an agency, its occupied area plus its
    /// share of the common area, by the key that splits the energy.
    pub area_m2: f64,
    /// kgce per person over the period.
    pub per_capita_energy: Option<f64>,
    /// kgce per m² over the period.
    pub per_area_energy: Option<f64>,
    /// m³ per person over the period.
    pub water_per_capita: Option<f64>,
    /// L per person per day with water data.
    pub water_l_per_person_day: Option<f64>,
    /// Days of the period with water data (the divisor of the per-day figure).
    pub water_days: usize,
    /// L per person per working day with water data (the 250-day basis of
    /// a quota whose `day_basis` is `working`).
    pub water_l_per_person_working_day: Option<f64>,
    /// Of `water_days`, those worked at the site (national calendar less
    /// the site's closures).
    pub water_working_days: usize,
    /// Measured buckets / expected, %.
    pub completeness_pct: f64,
    /// Measured or estimated buckets / expected, % (the completeness
    /// threshold applies to this).
    pub coverage_pct: f64,
    /// A whole calendar year, over, whose coverage reaches the threshold.
    pub complete: bool,
    /// Year-on-year changes on the same calendar days with data in both years.
    pub yoy: Vec<Yoy>,
    /// The window of `yoy`.
    pub yoy_window: Option<YoyWindow>,
    /// Year-on-year change of per-capita energy, % (from `yoy`).
    pub yoy_per_capita_energy_pct: Option<f64>,
    /// Quota grades (complete years only).
    pub grades: Vec<GradeRow>,
    /// Factors used with grade C (unverified).
    pub unverified: Vec<String>,
    /// Last local day with data in the period.
    pub last_day: Option<NaiveDate>,
    /// Days of the period that have data.
    pub days_with_data: usize,
    /// Per-capita energy against the quota's constraint while the year runs.
    pub tracking: Option<meterflow_core::quota::Tracking>,
    /// kgCO₂ per m² over the period.
    pub per_area_co2: Option<f64>,
    /// Reduction against each active plan's base year.
    pub reductions: Vec<Reduction>,
    /// Figures that could not be given, with the reason: (figure, reason).
    pub withheld: Vec<(String, String)>,
    /// Negative remainders counted as zero (sub-meters reading more than
    /// their parent), per parent meter: the amount given back to this
    /// scope, in the carrier unit.
    pub imbalance_clipped: Vec<(String, f64)>,
}

/// A year-on-year change of one indicator.
#[derive(Debug, Clone, PartialEq)]
pub struct Yoy {
    /// `per_capita_energy`, `per_area_energy`, `per_capita_water`, `per_area_co2`.
    pub indicator: String,
    /// Value over the window this year.
    pub now: f64,
    /// Value over the same calendar days a year earlier.
    pub before: f64,
    /// (now − before) / before × 100.
    pub pct: f64,
}

/// The days a year-on-year comparison covers.
#[derive(Debug, Clone, PartialEq)]
pub struct YoyWindow {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
    /// Days in the window (days with data this period, 29 February left out).
    pub days: usize,
    /// Coverage this year over the window, %.
    pub coverage_now_pct: f64,
    /// Coverage a year earlier over the same days, %.
    pub coverage_before_pct: f64,
}

/// A quota grade.
#[derive(Debug, Clone, PartialEq)]
pub struct GradeRow {
    /// Quota indicator.
    pub indicator: String,
    /// The value graded, in the quota's unit and with its electricity factor.
    pub value: f64,
    /// 先进 / 合理 / 合格 / 超定额, or 先进 / 达标 / 超定额 for water.
    pub grade: &'static str,
    /// The same indicator with the statistics factor (当量值), when the
    /// quota converts electricity with another factor.
    pub statistics_value: Option<f64>,
    /// kgce per kWh the grade used.
    pub electricity_factor: f64,
    /// The quota's unit.
    pub unit: String,
}

/// Where a year stands against a plan's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStatus {
    /// The target year, complete: the required reduction was reached.
    Met,
    /// The target year, complete: it was not.
    NotMet,
    /// A complete year before the target year already at the target's reduction.
    Reached,
    /// A complete year before the target year not yet at it.
    NotYet,
    /// A running year: compared on its days with data against the base
    /// year's same days, never "met".
    Tracking,
}

impl TargetStatus {
    /// Text for tables (English).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Met => "met",
            TargetStatus::NotMet => "not met",
            TargetStatus::Reached => "reached",
            TargetStatus::NotYet => "not yet",
            TargetStatus::Tracking => "tracking",
        }
    }

    /// Text for tables (Chinese).
    pub fn zh(self) -> &'static str {
        match self {
            TargetStatus::Met => "已完成",
            TargetStatus::NotMet => "未完成",
            TargetStatus::Reached => "已达到目标值",
            TargetStatus::NotYet => "尚未达到",
            TargetStatus::Tracking => "年度进行中",
        }
    }

    /// `Some(true)` met or reached, `Some(false)` not, `None` while tracking.
    pub fn met(self) -> Option<bool> {
        match self {
            TargetStatus::Met | TargetStatus::Reached => Some(true),
            TargetStatus::NotMet | TargetStatus::NotYet => Some(false),
            TargetStatus::Tracking => None,
        }
    }
}

/// Cumulative reduction of one indicator against a plan's base year (`docs/methodology.md` §5).
#[derive(Debug, Clone, PartialEq)]
pub struct Reduction {
    /// Plan, e.g. `cn-2021-2025`.
    pub plan: String,
    /// Indicator: `per_capita_energy`, `per_area_energy`, `per_capita_water`, `per_area_co2`.
    pub indicator: String,
    /// Base year.
    pub base_year: i32,
    /// The plan's target year.
    pub target_year: i32,
    /// The indicator in the base year (over the same days while a year runs).
    pub base: f64,
    /// The indicator this year.
    pub value: f64,
    /// 累计下降率, %.
    pub reduction_pct: f64,
    /// The plan's required reduction by its target year, %.
    pub required_pct: f64,
    /// The reduction the linear path from the base year requires this year, %.
    pub path_pct: f64,
    /// At or beyond the linear path.
    pub on_path: bool,
    /// Status.
    pub status: TargetStatus,
}

impl Reduction {
    /// Reached the required reduction (`None` while the year runs).
    pub fn met(&self) -> Option<bool> {
        self.status.met()
    }
}

/// A calendar month or year.
pub fn period_of(year: i32, month: Option<u32>) -> Option<Period> {
    let from = NaiveDate::from_ymd_opt(year, month.unwrap_or(1), 1)?;
    let to = match month {
        Some(12) | None => NaiveDate::from_ymd_opt(year + 1, 1, 1)?,
        Some(m) => NaiveDate::from_ymd_opt(year, m + 1, 1)?,
    };
    Some(Period { from, to })
}

/// What a KPI row is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// An agency (its allocated shares of every meter serving it).
    Agency(String),
    /// A building (its meters; persons of the agencies in it, by area share).
    Building(String),
    /// The whole site (the root meters; all agencies; the buildings' office area).
    Site,
}

impl Scope {
    pub(crate) fn level_id(&self) -> (Level, &str) {
        match self {
            Scope::Agency(a) => (Level::Agency, a.as_str()),
            Scope::Building(b) => (Level::Building, b.as_str()),
            Scope::Site => (Level::Site, "site"),
        }
    }

    /// Label in tables (`site` for the site).
    pub fn label(&self) -> &str {
        self.level_id().1
    }
}
