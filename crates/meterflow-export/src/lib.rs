//! The annual energy-assessment export (`docs/methodology.md` §4–§5, §10, §8): the
//! only crate that compiles polars (ADR 0012).
//!
//! [`gather`] collects plain rows from the store —
//! each scope's carriers, denominators, quality and grades for the year and
//! for the year before, daily consumption, the waste and vehicle ledgers'
//! figures per agency, and the factors in use — and this crate does the table
//! work with polars: indicator columns from the carriers and denominators
//! (per the export profile), year-on-year by joining the two years,
//! the ledgers joined per agency, months grouped from days, a deterministic
//! order; then writes CSV (UTF-8 with BOM), Parquet (typed columns) or one
//! Excel workbook (Chinese headers with units, frozen header rows, number
//! formats, a cover sheet).

pub mod gather;

use std::path::{Path, PathBuf};

/// polars, for readers of the Parquet files (tests).
pub use polars;

use anyhow::Context;
use polars::prelude::*;

/// Which indicator definitions to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// National public-institution statistics: per-area energy includes
    /// vehicle fuel; water per person-day over calendar days.
    National,
    /// Quota standards: per-area energy without vehicle fuel; water per
    /// person-day over working days.
    QuotaStandard,
}

impl Profile {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::National => "national",
            Profile::QuotaStandard => "quota-standard",
        }
    }
}

/// One scope's cost of one carrier in one month.
#[derive(Debug, Clone)]
pub struct CostRow {
    /// `agency`, `building` or `site`.
    pub level: String,
    /// Id (`site` for the site).
    pub id: String,
    /// Month 1-12.
    pub month: i32,
    /// Carrier.
    pub carrier: String,
    /// CNY, the water surcharge included.
    pub cny: f64,
}

/// One scope's year, as the store and the KPI functions give it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeRow {
    /// `agency`, `building` or `site`.
    pub level: String,
    /// Id (`site` for the site).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Electricity, kWh.
    pub electricity_kwh: f64,
    /// Natural gas, m³.
    pub gas_m3: f64,
    /// Heat, GJ.
    pub heat_gj: f64,
    /// District cooling, GJ.
    pub cooling_gj: f64,
    /// LPG, kg.
    pub lpg_kg: f64,
    /// Raw coal, kg.
    pub coal_kg: f64,
    /// Purchased steam, kg.
    pub steam_kg: f64,
    /// Fuel oil, kg.
    pub fuel_oil_kg: f64,
    /// Vehicle gasoline, L.
    pub gasoline_l: f64,
    /// Vehicle diesel, L.
    pub diesel_l: f64,
    /// Water, m³.
    pub water_m3: f64,
    /// Comprehensive energy, kgce (all carriers).
    pub energy_kgce: f64,
    /// The vehicle fuel's part of it, kgce.
    pub vehicle_kgce: f64,
    /// CO₂ of every carrier, t; `None` when a factor is missing.
    pub co2_t: Option<f64>,
    /// Time-weighted 用能人数.
    pub persons: f64,
    /// Time-weighted area, m².
    pub area_m2: f64,
    /// Measured buckets / expected, %.
    pub completeness_pct: f64,
    /// Estimated buckets / all buckets with data, %.
    pub estimated_pct: Option<f64>,
    /// Anomalies recorded for its meters in the year.
    pub anomalies: i64,
    /// Energy cost of the year with the site's tariffs, CNY (`None` without
    /// `[[tariff]]`): all carriers, electricity, water with its surcharge.
    pub cost_cny: Option<f64>,
    /// Electricity's part of it, CNY.
    pub electricity_cny: Option<f64>,
    /// Water's part of it, surcharge included, CNY.
    pub water_cny: Option<f64>,
    /// Electricity in 峰 and 尖峰, % of the priced electricity.
    pub peak_share_pct: Option<f64>,
    /// Quota grades, e.g. `[("per_capita_energy", "B")]`.
    pub grades: Vec<(String, String)>,
    /// Cumulative reductions against a plan's base year: (indicator, %,
    /// required %, met; `None` while the year runs).
    pub reductions: Vec<(String, f64, f64, Option<bool>)>,
    /// Year-on-year change per indicator on the same calendar days with
    /// data in both years (from the KPI service): (indicator, %).
    pub yoy: Vec<(String, f64)>,
    /// Days with water data (the national profile's per-day divisor).
    pub water_days: f64,
    /// Measured or estimated buckets / expected, %.
    pub coverage_pct: f64,
    /// Figures not given, with the reason: (figure, reason).
    pub withheld: Vec<(String, String)>,
}

/// One day of one carrier of a scope.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    /// Level.
    pub level: String,
    /// Id.
    pub id: String,
    /// Month 1-12.
    pub month: i32,
    /// Carrier: electricity, water, gas, heat.
    pub carrier: String,
    /// Unit.
    pub unit: String,
    /// Quantity.
    pub quantity: f64,
}

/// An agency's waste year.
#[derive(Debug, Clone, PartialEq)]
pub struct WasteRow {
    /// Agency.
    pub agency: String,
    /// kg per category: recyclable, kitchen, hazardous, residual.
    pub kg: [f64; 4],
    /// All, kg.
    pub total_kg: f64,
    /// 回收利用率, %.
    pub recovery_rate_pct: Option<f64>,
    /// Incentive points.
    pub points: Option<f64>,
    /// No record in the year: one-vote veto.
    pub veto: bool,
}

/// An agency's vehicles' year.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleRow {
    /// Agency.
    pub agency: String,
    /// Vehicles registered (not disposed of before the year).
    pub vehicles: i64,
    /// km.
    pub km: f64,
    /// Litres filled.
    pub litres: f64,
    /// Running cost, CNY.
    pub cost_cny: f64,
}

/// A factor, quota or target in use.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    /// `factor`, `quota` or `target`.
    pub kind: String,
    /// What it is, e.g. `kgce.electricity`.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Unit.
    pub unit: String,
    /// Where it comes from.
    pub source: String,
    /// Confidence grade A/B/C.
    pub grade: String,
}

/// Everything the export needs.
#[derive(Debug, Clone)]
pub struct Input {
    /// Site name.
    pub site: String,
    /// Year.
    pub year: i32,
    /// Profile.
    pub profile: Profile,
    /// Factor set name.
    pub factor_set: String,
    /// Year of the grid CO₂ factor used.
    pub grid_factor_year: Option<i32>,
    /// Days for water per person-day under the quota-standard profile
    /// (working days); the national profile divides by each scope's days
    /// with water data.
    pub water_days: f64,
    /// Last day with data (cover).
    pub data_through: Option<String>,
    /// This year per scope.
    pub scopes: Vec<ScopeRow>,
    /// Conventions the figures follow (cover lines).
    pub conventions: Vec<(String, String)>,
    /// Daily quantities per scope and carrier.
    pub days: Vec<DayRow>,
    /// Waste per agency.
    pub waste: Vec<WasteRow>,
    /// Vehicles per agency.
    pub vehicles: Vec<VehicleRow>,
    /// Factors, quotas, targets.
    pub sources: Vec<SourceRow>,
    /// Cost by scope, month and carrier (empty without `[[tariff]]`).
    pub costs: Vec<CostRow>,
    /// Warning lines (grade-C factors, gaps).
    pub warnings: Vec<String>,
}

/// The export's tables.
pub struct Tables {
    /// Per scope: carriers, energy, denominators, indicators, YoY, reductions, grades, ledgers, quality.
    pub assessment: DataFrame,
    /// Month × scope × carrier.
    pub monthly: DataFrame,
    /// Factors, quotas and targets used.
    pub sources: DataFrame,
    /// Cover lines (key, value).
    pub cover: Vec<(String, String)>,
    /// Cost by scope × month × carrier.
    pub cost: DataFrame,
}

/// The indicators compared year on year.
const INDICATORS: [&str; 4] = [
    "per_capita_energy",
    "per_area_energy",
    "per_capita_water",
    "per_area_co2",
];

fn f64_col(name: &str, v: impl IntoIterator<Item = f64>) -> Column {
    Column::new(name.into(), v.into_iter().collect::<Vec<f64>>())
}

fn opt_col(name: &str, v: impl IntoIterator<Item = Option<f64>>) -> Column {
    Column::new(name.into(), v.into_iter().collect::<Vec<Option<f64>>>())
}

fn str_col(name: &str, v: impl IntoIterator<Item = String>) -> Column {
    Column::new(name.into(), v.into_iter().collect::<Vec<String>>())
}

fn scope_frame(rows: &[ScopeRow]) -> PolarsResult<DataFrame> {
    let order: Vec<i64> = (0..rows.len() as i64).collect();
    let get = |f: fn(&ScopeRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let mut cols = vec![
        Column::new("order".into(), order),
        str_col("level", rows.iter().map(|r| r.level.clone())),
        str_col("id", rows.iter().map(|r| r.id.clone())),
        str_col("name", rows.iter().map(|r| r.name.clone())),
        f64_col("electricity_kwh", get(|r| r.electricity_kwh)),
        f64_col("gas_m3", get(|r| r.gas_m3)),
        f64_col("heat_gj", get(|r| r.heat_gj)),
        f64_col("cooling_gj", get(|r| r.cooling_gj)),
        f64_col("lpg_kg", get(|r| r.lpg_kg)),
        f64_col("coal_kg", get(|r| r.coal_kg)),
        f64_col("steam_kg", get(|r| r.steam_kg)),
        f64_col("fuel_oil_kg", get(|r| r.fuel_oil_kg)),
        f64_col("gasoline_l", get(|r| r.gasoline_l)),
        f64_col("diesel_l", get(|r| r.diesel_l)),
        f64_col("water_m3", get(|r| r.water_m3)),
        f64_col("energy_kgce", get(|r| r.energy_kgce)),
        f64_col("vehicle_kgce", get(|r| r.vehicle_kgce)),
        opt_col("co2_t", rows.iter().map(|r| r.co2_t)),
        f64_col("water_days", get(|r| r.water_days)),
        f64_col("persons", get(|r| r.persons)),
        f64_col("area_m2", get(|r| r.area_m2)),
        f64_col("completeness_pct", get(|r| r.completeness_pct)),
        opt_col("estimated_pct", rows.iter().map(|r| r.estimated_pct)),
        Column::new(
            "anomalies".into(),
            rows.iter().map(|r| r.anomalies).collect::<Vec<i64>>(),
        ),
        opt_col("cost_cny", rows.iter().map(|r| r.cost_cny)),
        opt_col("electricity_cny", rows.iter().map(|r| r.electricity_cny)),
        opt_col("water_cny", rows.iter().map(|r| r.water_cny)),
        opt_col("peak_share_pct", rows.iter().map(|r| r.peak_share_pct)),
    ];
    for ind in INDICATORS {
        let find = |r: &ScopeRow| r.reductions.iter().find(|x| x.0 == ind).cloned();
        cols.push(opt_col(
            &format!("reduction_{ind}_pct"),
            rows.iter().map(|r| find(r).map(|x| x.1)),
        ));
        cols.push(Column::new(
            format!("target_{ind}_met").into(),
            rows.iter()
                .map(|r| find(r).and_then(|x| x.3))
                .collect::<Vec<Option<bool>>>(),
        ));
        cols.push(opt_col(
            &format!("yoy_{ind}_pct"),
            rows.iter()
                .map(|r| r.yoy.iter().find(|y| y.0 == ind).map(|y| y.1)),
        ));
    }
    for ind in ["per_capita_energy", "per_capita_water"] {
        cols.push(Column::new(
            format!("grade_{ind}").into(),
            rows.iter()
                .map(|r| r.grades.iter().find(|g| g.0 == ind).map(|g| g.1.clone()))
                .collect::<Vec<Option<String>>>(),
        ));
    }
    DataFrame::new(rows.len(), cols)
}

/// `num / den` where `den > 0`, else null.
fn ratio(num: Expr, den: Expr) -> Expr {
    when(den.clone().gt(lit(0.0)))
        .then(num / den)
        .otherwise(lit(NULL))
}

fn indicators(lf: LazyFrame, profile: Profile, water_days: f64) -> LazyFrame {
    let area_energy = match profile {
        Profile::National => col("energy_kgce"),
        Profile::QuotaStandard => col("energy_kgce") - col("vehicle_kgce"),
    };
    // Persons belong to agencies: a building's per-person figures are
    // absent (the cover says why), never a share of someone's headcount.
    let persons = when(col("level").eq(lit("building")))
        .then(lit(NULL).cast(DataType::Float64))
        .otherwise(col("persons"));
    lf.with_columns([
        (col("energy_kgce") / lit(1000.0)).alias("energy_tce"),
        ratio(col("energy_kgce"), persons.clone()).alias("per_capita_energy"),
        ratio(area_energy, col("area_m2")).alias("per_area_energy"),
        ratio(col("water_m3"), persons.clone()).alias("per_capita_water"),
        ratio(
            col("water_m3") * lit(1000.0),
            persons
                * match profile {
                    Profile::National => col("water_days"),
                    Profile::QuotaStandard => lit(water_days),
                },
        )
        .alias("water_l_per_person_day"),
        ratio(col("co2_t") * lit(1000.0), col("area_m2")).alias("per_area_co2"),
    ])
}

/// Build the tables.
pub fn build(input: &Input) -> anyhow::Result<Tables> {
    let this = indicators(
        scope_frame(&input.scopes)?.lazy(),
        input.profile,
        input.water_days,
    );
    // Year-on-year columns come from the KPI service (the same calendar
    // days with data in both years), not from last year's whole year.
    let mut lf = this;
    // Ledgers per agency.
    let waste = DataFrame::new(
        input.waste.len(),
        vec![
            str_col("w_agency", input.waste.iter().map(|w| w.agency.clone())),
            f64_col("waste_recyclable_kg", input.waste.iter().map(|w| w.kg[0])),
            f64_col("waste_kitchen_kg", input.waste.iter().map(|w| w.kg[1])),
            f64_col("waste_hazardous_kg", input.waste.iter().map(|w| w.kg[2])),
            f64_col("waste_residual_kg", input.waste.iter().map(|w| w.kg[3])),
            f64_col("waste_total_kg", input.waste.iter().map(|w| w.total_kg)),
            opt_col(
                "waste_recovery_rate_pct",
                input.waste.iter().map(|w| w.recovery_rate_pct),
            ),
            opt_col("waste_points", input.waste.iter().map(|w| w.points)),
            Column::new(
                "waste_veto".into(),
                input.waste.iter().map(|w| w.veto).collect::<Vec<bool>>(),
            ),
        ],
    )?;
    let vehicles = DataFrame::new(
        input.vehicles.len(),
        vec![
            str_col("v_agency", input.vehicles.iter().map(|v| v.agency.clone())),
            Column::new(
                "vehicles".into(),
                input
                    .vehicles
                    .iter()
                    .map(|v| v.vehicles)
                    .collect::<Vec<i64>>(),
            ),
            f64_col("vehicle_km", input.vehicles.iter().map(|v| v.km)),
            f64_col("vehicle_fuel_l", input.vehicles.iter().map(|v| v.litres)),
            f64_col(
                "vehicle_cost_cny",
                input.vehicles.iter().map(|v| v.cost_cny),
            ),
        ],
    )?;
    let agency_key = when(col("level").eq(lit("agency")))
        .then(col("id"))
        .otherwise(lit(NULL).cast(DataType::String));
    lf = lf
        .with_column(agency_key.alias("agency_key"))
        .left_join(waste.lazy(), col("agency_key"), col("w_agency"))
        .left_join(vehicles.lazy(), col("agency_key"), col("v_agency"))
        .with_column(
            ratio(col("vehicle_fuel_l") * lit(100.0), col("vehicle_km"))
                .alias("vehicle_l_per_100km"),
        )
        .sort(["order"], SortMultipleOptions::default());
    let assessment = lf
        .select(ASSESSMENT.iter().map(|c| col(c.name)).collect::<Vec<_>>())
        .collect()?;

    // Months from days.
    let days = DataFrame::new(
        input.days.len(),
        vec![
            str_col("level", input.days.iter().map(|d| d.level.clone())),
            str_col("id", input.days.iter().map(|d| d.id.clone())),
            Column::new(
                "month".into(),
                input.days.iter().map(|d| d.month).collect::<Vec<i32>>(),
            ),
            str_col("carrier", input.days.iter().map(|d| d.carrier.clone())),
            str_col("unit", input.days.iter().map(|d| d.unit.clone())),
            f64_col("quantity", input.days.iter().map(|d| d.quantity)),
        ],
    )?;
    let monthly = days
        .lazy()
        .group_by([
            col("level"),
            col("id"),
            col("month"),
            col("carrier"),
            col("unit"),
        ])
        .agg([col("quantity").sum()])
        .sort(
            ["month", "level", "id", "carrier"],
            SortMultipleOptions::default(),
        )
        .select(MONTHLY.iter().map(|c| col(c.name)).collect::<Vec<_>>())
        .collect()?;

    let s = &input.sources;
    let sources = DataFrame::new(
        s.len(),
        vec![
            str_col("kind", s.iter().map(|r| r.kind.clone())),
            str_col("name", s.iter().map(|r| r.name.clone())),
            f64_col("value", s.iter().map(|r| r.value)),
            str_col("unit", s.iter().map(|r| r.unit.clone())),
            str_col("source", s.iter().map(|r| r.source.clone())),
            str_col("grade", s.iter().map(|r| r.grade.clone())),
        ],
    )?
    .lazy()
    .sort(["kind", "name"], SortMultipleOptions::default())
    .collect()?;

    let site_row = input.scopes.iter().find(|r| r.level == "site");
    let mut cover = vec![
        ("单位 Site".to_string(), input.site.clone()),
        ("年度 Year".to_string(), input.year.to_string()),
        ("口径 Profile".to_string(), input.profile.name().to_string()),
        ("折标系数 Factor set".to_string(), input.factor_set.clone()),
        (
            "电网排放因子年份 Grid factor year".to_string(),
            input
                .grid_factor_year
                .map_or_else(|| "-".into(), |y| y.to_string()),
        ),
        (
            "数据截至 Data through".to_string(),
            input.data_through.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "数据完整率 Completeness (site, %)".to_string(),
            site_row.map_or_else(|| "-".into(), |r| format!("{:.2}", r.completeness_pct)),
        ),
    ];
    cover.extend(input.conventions.iter().cloned());
    for w in &input.warnings {
        cover.push(("警告 Warning".to_string(), w.clone()));
    }
    let cost = DataFrame::new(
        input.costs.len(),
        vec![
            str_col("level", input.costs.iter().map(|c| c.level.clone())),
            str_col("id", input.costs.iter().map(|c| c.id.clone())),
            Column::new(
                "month".into(),
                input.costs.iter().map(|c| c.month).collect::<Vec<i32>>(),
            ),
            str_col("carrier", input.costs.iter().map(|c| c.carrier.clone())),
            f64_col("cny", input.costs.iter().map(|c| c.cny)),
        ],
    )?;
    Ok(Tables {
        assessment,
        monthly,
        sources,
        cover,
        cost,
    })
}

/// How a column is shown.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// Column (Parquet name).
    pub name: &'static str,
    /// Chinese header with unit (CSV, Excel).
    pub header: &'static str,
    /// Excel number format (`""` for text).
    pub format: &'static str,
}

const fn c(name: &'static str, header: &'static str, format: &'static str) -> ColumnSpec {
    ColumnSpec {
        name,
        header,
        format,
    }
}

const N2: &str = "#,##0.00";
const N0: &str = "#,##0";

/// The cost table's columns: scope, month and carrier, CNY.
pub const COST: &[ColumnSpec] = &[
    c("level", "层级", ""),
    c("id", "编号", ""),
    c("month", "月份", "0"),
    c("carrier", "能源", ""),
    c("cny", "费用 (元, 含水超定额加价)", N2),
];

/// The assessment table's columns, in order.
pub const ASSESSMENT: &[ColumnSpec] = &[
    c("level", "层级", ""),
    c("id", "编号", ""),
    c("name", "名称", ""),
    c("electricity_kwh", "电力 (kWh)", N2),
    c("gas_m3", "天然气 (m³)", N2),
    c("heat_gj", "热力 (GJ)", N2),
    c("cooling_gj", "区域供冷 (GJ)", N2),
    c("lpg_kg", "液化石油气 (kg)", N2),
    c("coal_kg", "原煤 (kg)", N2),
    c("steam_kg", "外购蒸汽 (kg)", N2),
    c("fuel_oil_kg", "燃料油 (kg)", N2),
    c("gasoline_l", "公务车汽油 (L)", N2),
    c("diesel_l", "公务车柴油 (L)", N2),
    c("water_m3", "用水量 (m³)", N2),
    c("energy_kgce", "综合能耗 (kgce)", N2),
    c("energy_tce", "综合能耗 (tce)", "#,##0.000"),
    c("vehicle_kgce", "其中公务车燃油 (kgce)", N2),
    c("co2_t", "二氧化碳排放 (tCO₂)", "#,##0.000"),
    c("persons", "用能人数 (人, 时间加权)", N2),
    c("area_m2", "建筑面积 (m², 时间加权)", N2),
    c("per_capita_energy", "人均综合能耗 (kgce/人)", N2),
    c("per_area_energy", "单位建筑面积能耗 (kgce/m²)", N2),
    c("per_capita_water", "人均用水量 (m³/人)", N2),
    c("water_l_per_person_day", "人均日用水量 (L/人·d)", N2),
    c("per_area_co2", "单位面积碳排放 (kgCO₂/m²)", N2),
    c("yoy_per_capita_energy_pct", "人均综合能耗同比 (%)", N2),
    c("yoy_per_area_energy_pct", "单位面积能耗同比 (%)", N2),
    c("yoy_per_capita_water_pct", "人均用水量同比 (%)", N2),
    c("yoy_per_area_co2_pct", "单位面积碳排放同比 (%)", N2),
    c(
        "reduction_per_capita_energy_pct",
        "人均综合能耗累计下降率 (%)",
        N2,
    ),
    c("target_per_capita_energy_met", "人均综合能耗目标完成", ""),
    c(
        "reduction_per_area_energy_pct",
        "单位面积能耗累计下降率 (%)",
        N2,
    ),
    c("target_per_area_energy_met", "单位面积能耗目标完成", ""),
    c(
        "reduction_per_capita_water_pct",
        "人均用水量累计下降率 (%)",
        N2,
    ),
    c("target_per_capita_water_met", "人均用水量目标完成", ""),
    c(
        "reduction_per_area_co2_pct",
        "单位面积碳排放累计下降率 (%)",
        N2,
    ),
    c("target_per_area_co2_met", "单位面积碳排放目标完成", ""),
    c("grade_per_capita_energy", "人均综合能耗定额等级", ""),
    c("grade_per_capita_water", "人均用水定额等级", ""),
    c("waste_recyclable_kg", "可回收物 (kg)", N2),
    c("waste_kitchen_kg", "厨余垃圾 (kg)", N2),
    c("waste_hazardous_kg", "有害垃圾 (kg)", N2),
    c("waste_residual_kg", "其他垃圾 (kg)", N2),
    c("waste_total_kg", "垃圾合计 (kg)", N2),
    c("waste_recovery_rate_pct", "回收利用率 (%)", N2),
    c("waste_points", "积分", N2),
    c("waste_veto", "垃圾分类一票否决", ""),
    c("vehicles", "公务车数量 (辆)", N0),
    c("vehicle_km", "行驶里程 (km)", N2),
    c("vehicle_fuel_l", "加油量 (L)", N2),
    c("vehicle_l_per_100km", "百公里油耗 (L/100km)", N2),
    c("vehicle_cost_cny", "运行费用 (元)", N2),
    c("completeness_pct", "数据完整率 (%)", N2),
    c("estimated_pct", "估算数据占比 (%)", N2),
    c("anomalies", "异常数 (个)", N0),
    c("cost_cny", "能源费用 (元)", N2),
    c("electricity_cny", "其中电费 (元)", N2),
    c("water_cny", "其中水费 (元, 含超定额加价)", N2),
    c("peak_share_pct", "峰段用电占比 (%, 峰+尖峰)", N2),
];

/// The monthly table's columns.
pub const MONTHLY: &[ColumnSpec] = &[
    c("month", "月份", "0"),
    c("level", "层级", ""),
    c("id", "编号", ""),
    c("carrier", "能源品种", ""),
    c("unit", "单位", ""),
    c("quantity", "数量", N2),
];

/// The sources table's columns.
pub const SOURCES: &[ColumnSpec] = &[
    c("kind", "类别", ""),
    c("name", "项目", ""),
    c("value", "数值", "0.0000####"),
    c("unit", "单位", ""),
    c("source", "来源", ""),
    c("grade", "可信度等级", ""),
];

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One workbook.
    Xlsx,
    /// One CSV file per table in a directory.
    Csv,
    /// One Parquet file per table in a directory.
    Parquet,
}

fn with_headers(df: &DataFrame, specs: &[ColumnSpec]) -> PolarsResult<DataFrame> {
    let mut out = df.clone();
    for s in specs {
        out.rename(s.name, s.header.into())?;
    }
    Ok(out)
}

/// Write the tables; the files written.
pub fn write(tables: &Tables, format: Format, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let named: [(&str, &DataFrame, &[ColumnSpec]); 4] = [
        ("assessment", &tables.assessment, ASSESSMENT),
        ("monthly", &tables.monthly, MONTHLY),
        ("sources", &tables.sources, SOURCES),
        ("cost", &tables.cost, COST),
    ];
    match format {
        Format::Xlsx => {
            xlsx(tables, out)?;
            Ok(vec![out.to_path_buf()])
        }
        Format::Csv | Format::Parquet => {
            std::fs::create_dir_all(out)
                .with_context(|| format!("creating the directory {}", out.display()))?;
            let cover = DataFrame::new(
                tables.cover.len(),
                vec![
                    str_col("key", tables.cover.iter().map(|c| c.0.clone())),
                    str_col("value", tables.cover.iter().map(|c| c.1.clone())),
                ],
            )?;
            let ext = if format == Format::Csv {
                "csv"
            } else {
                "parquet"
            };
            let mut files = Vec::new();
            for (name, df, specs) in named.into_iter().chain([("cover", &cover, &[][..])]) {
                let path = out.join(format!("{name}.{ext}"));
                let file = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                if format == Format::Csv {
                    let mut df = with_headers(df, specs)?;
                    CsvWriter::new(file)
                        .include_bom(true)
                        .with_line_terminator("\r\n".into())
                        .finish(&mut df)?;
                } else {
                    let mut df = df.clone();
                    ParquetWriter::new(file)
                        .with_compression(ParquetCompression::Snappy)
                        .finish(&mut df)?;
                }
                files.push(path);
            }
            Ok(files)
        }
    }
}

fn xlsx(tables: &Tables, out: &Path) -> anyhow::Result<()> {
    use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format as XFormat, Workbook};
    let mut wb = Workbook::new();
    // Fixed document dates: the same inputs give the same file.
    let when = ExcelDateTime::from_ymd(2000, 1, 1)?;
    wb.set_properties(&DocProperties::new().set_creation_datetime(&when));
    let bold = XFormat::new().set_bold();
    let head = XFormat::new()
        .set_bold()
        .set_text_wrap()
        .set_background_color(0xDDEBF7);
    {
        let ws = wb.add_worksheet().set_name("封面")?;
        ws.write_string_with_format(
            0,
            0,
            "公共机构能源资源消费统计 Annual energy assessment",
            &bold,
        )?;
        for (i, (k, v)) in tables.cover.iter().enumerate() {
            let r = i as u32 + 2;
            ws.write_string_with_format(r, 0, k, &bold)?;
            ws.write_string(r, 1, v)?;
        }
        ws.set_column_width(0, 36)?;
        ws.set_column_width(1, 60)?;
    }
    for (title, df, specs) in [
        ("按单位 Assessment", &tables.assessment, ASSESSMENT),
        ("按月 Monthly", &tables.monthly, MONTHLY),
        ("系数与定额 Sources", &tables.sources, SOURCES),
        ("费用 Cost", &tables.cost, COST),
    ] {
        let ws = wb.add_worksheet().set_name(title)?;
        ws.set_freeze_panes(1, 0)?;
        ws.set_row_height(0, 45)?;
        for (j, spec) in specs.iter().enumerate() {
            let j = j as u16;
            ws.write_string_with_format(0, j, spec.header, &head)?;
            ws.set_column_width(j, if spec.format.is_empty() { 14 } else { 16 })?;
            let column = df.column(spec.name)?.as_materialized_series();
            let number = XFormat::new().set_num_format(if spec.format.is_empty() {
                "General"
            } else {
                spec.format
            });
            for i in 0..df.height() {
                let r = i as u32 + 1;
                match column.get(i)? {
                    AnyValue::Null => {}
                    AnyValue::Float64(x) => {
                        ws.write_number_with_format(r, j, x, &number)?;
                    }
                    AnyValue::Int64(x) => {
                        ws.write_number_with_format(r, j, x as f64, &number)?;
                    }
                    AnyValue::Int32(x) => {
                        ws.write_number_with_format(r, j, f64::from(x), &number)?;
                    }
                    AnyValue::Boolean(b) => {
                        ws.write_boolean(r, j, b)?;
                    }
                    AnyValue::String(s) => {
                        ws.write_string(r, j, s)?;
                    }
                    AnyValue::StringOwned(s) => {
                        ws.write_string(r, j, s.as_str())?;
                    }
                    other => {
                        ws.write_string(r, j, other.to_string())?;
                    }
                }
            }
        }
    }
    wb.save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
