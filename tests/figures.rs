//! Figures an energy manager signs (`docs/methodology.md` §2, §5–§7):
//! year-on-year on the same days, complete years only for reductions, the
//! quota's own electricity factor, projections by last year's shape, and
//! areas that split like the energy. Every expected value is worked out by
//! hand in the comments.

use chrono::{Datelike, NaiveDate};
use meterflow_kpi::{KpiContext, Scope, TargetStatus, period_of};
use meterflow_model::{Reading, Site, TimeSource};

/// Local midnight (UTC+8) of a date, ms.
fn midnight(y: i32, m: u32, d: u32) -> i64 {
    let date = NaiveDate::from_ymd_opt(y, m, d).expect("date");
    date.and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_millis()
        - 8 * 3_600_000
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

/// A stretch of days `(from, to, per_day)`.
type Stretch = (NaiveDate, NaiveDate, f64);

/// Daily readings of `meter`'s counter (its counter quantity) over
/// consecutive stretches `(from, to, per_day)`: one reading each local
/// midnight from `from` to `to` inclusive, growing `per_day` a day.
fn daily(site: &Site, meter: &str, stretches: &[Stretch]) -> Vec<Reading> {
    let quantity = site
        .meter(meter)
        .map(|m| m.counter_quantity().to_string())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut value = 1_000.0;
    for &(from, to, per_day) in stretches {
        let mut d = from;
        while d <= to {
            let ts = midnight(d.year(), d.month(), d.day());
            if out.last().is_none_or(|r: &Reading| r.ts_ms != ts) {
                out.push(Reading {
                    meter: meter.into(),
                    quantity: quantity.clone(),
                    ts_ms: ts,
                    value,
                    recv_ms: ts,
                    time_source: TimeSource::Import,
                });
            }
            if d < to {
                value += per_day;
            }
            d = d.succ_opt().expect("date");
        }
    }
    out
}

fn store(dir: &std::path::Path, toml: &str, batches: &[(&str, Vec<Stretch>)]) -> Site {
    let path = dir.join("site.toml");
    std::fs::write(&path, toml).expect("site");
    let site = Site::load(&path).expect("valid site");
    let mut w = meterflow_store::Writer::open(&site).expect("store");
    for (meter, stretches) in batches {
        w.write_batch(&daily(&site, meter, stretches), "test")
            .expect("write");
    }
    drop(w);
    site
}

/// A scope's KPIs for a calendar year, as of `today`, and its grade of `indicator`.
fn year_grade(
    site: &Site,
    today: NaiveDate,
    scope: Scope,
    year: i32,
    indicator: &str,
) -> (meterflow_kpi::ScopeKpis, meterflow_kpi::GradeRow) {
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let k = KpiContext::new(site)
        .with_today(today)
        .scope_kpis(&reader, &scope, period_of(year, None).expect("year"))
        .expect("kpis");
    let g = k
        .grades
        .iter()
        .find(|g| g.indicator == indicator)
        .cloned()
        .unwrap_or_else(|| panic!("no grade {indicator}: {:?}", k.withheld));
    (k, g)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

const ONE_AGENCY: &str = r#"
[site]
name = "figures"
quota_set = "shandong-db37"

[store]
path = "store.db"

[[building]]
id = "B"
total_area_m2 = 1000

[[agency]]
id = "X"
name = "X"

[[headcount]]
agency = "X"
from = 2020-01-01
persons = 50

[[space]]
agency = "X"
building = "B"
from = 2020-01-01
area_m2 = 1000

[[meter]]
id = "M"
kind = "electricity"
unit = "kWh"
serves = { agency = "X" }
interval_s = 86400

[[target]]
plan = "local-2025-2027"
base_year = 2025
target_year = 2027
indicator = "per_capita_energy"
reduction_pct = 5.0
source = "test plan"
confidence = "C"
"#;

/// A second year with three months of data, a first year whose first three
/// days are missing: 同比 on the same days, the full-year comparison
/// withheld, the running year tracked and never met.
#[test]
fn year_on_year_takes_the_same_days_and_a_running_year_is_never_met() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 2025: from 4 January 100 kWh/day to 1 April, then 200 kWh/day; 2026:
    // 90 kWh/day from 1 January to 1 April.
    let site = store(
        dir.path(),
        ONE_AGENCY,
        &[(
            "M",
            vec![
                (date(2025, 1, 4), date(2025, 4, 1), 100.0),
                (date(2025, 4, 1), date(2026, 1, 1), 200.0),
                (date(2026, 1, 1), date(2026, 4, 1), 90.0),
            ],
        )],
    );
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let x = Scope::Agency("X".into());

    // 2026 as of 1 April. Window: 1 January – 31 March 2026 (90 days with
    // data): 90 × 90 = 8 100 kWh. The same days of 2025: data from 4 January
    // only, 87 days × 100 = 8 700 kWh, coverage 87 / 90 = 96.67 % ≥ 95 %.
    // 同比 per capita (50 persons both years): (8 100 − 8 700) / 8 700 = −6.8966 %.
    // (The whole of 2025, 8 700 + 275 × 200 = 63 700 kWh, would give −87.3 %.)
    let ctx = KpiContext::new(&site).with_today(date(2026, 4, 1));
    let year = period_of(2026, None).expect("period");
    let k = ctx.scope_kpis(&reader, &x, year).expect("kpis");
    let yoy = k.yoy_per_capita_energy_pct.expect("yoy on the same days");
    assert!(
        close(yoy, (8_100.0 - 8_700.0) / 8_700.0 * 100.0, 1e-9),
        "{yoy}"
    );
    let w = k.yoy_window.clone().expect("window");
    assert_eq!(
        (w.from, w.to, w.days),
        (date(2026, 1, 1), date(2026, 3, 31), 90)
    );
    assert!(
        close(w.coverage_before_pct, 87.0 * 100.0 / 90.0, 1e-9),
        "{w:?}"
    );
    // The running year is tracked against the base year's same days, never met:
    // reduction 6.8966 % ≥ the plan's 5 %, but the status is "tracking"; the
    // linear path asks 5 × (2026 − 2025) / (2027 − 2025) = 2.5 % now.
    let r = k
        .reductions
        .iter()
        .find(|r| r.plan == "local-2025-2027")
        .expect("tracking reduction");
    assert_eq!(r.status, TargetStatus::Tracking);
    assert_eq!(r.met(), None);
    assert!(
        close(r.reduction_pct, 600.0 / 8_700.0 * 100.0, 1e-9),
        "{r:?}"
    );
    assert!(close(r.path_pct, 2.5, 1e-12) && r.on_path);
    // No grade for a running year; tracking instead (90 days ≥ 30: projected).
    assert!(k.grades.is_empty() && k.tracking.is_some());

    // The same days with a stricter threshold (97 %): 96.67 % is not enough,
    // so 同比 is withheld with the coverage in the reason, never computed.
    let strict = ONE_AGENCY.replace(
        "quota_set = \"shandong-db37\"",
        "quota_set = \"shandong-db37\"\ncompleteness_threshold_pct = 97.0",
    );
    std::fs::write(dir.path().join("site.toml"), strict).expect("site");
    let strict_site = Site::load(&dir.path().join("site.toml")).expect("valid");
    let s = KpiContext::new(&strict_site)
        .with_today(date(2026, 4, 1))
        .scope_kpis(&reader, &x, year)
        .expect("kpis");
    assert!(s.yoy.is_empty() && s.yoy_per_capita_energy_pct.is_none());
    let reason = s
        .withheld
        .iter()
        .find(|(f, _)| f == "yoy")
        .map(|(_, r)| r.clone())
        .expect("a reason");
    assert!(
        reason.contains("96.7 %") && reason.contains("97"),
        "{reason}"
    );

    // 2025, finished (as of 1 April 2026): 362 of 365 days → 99.18 %, complete,
    // so graded; its 同比 against 2024 (no data) is withheld with the reason.
    let k25 = ctx
        .scope_kpis(&reader, &x, period_of(2025, None).expect("period"))
        .expect("kpis");
    assert!(k25.complete && !k25.grades.is_empty(), "{:?}", k25.withheld);
    assert!(k25.yoy.is_empty());
    assert!(
        k25.withheld
            .iter()
            .any(|(f, r)| f == "yoy" && r.contains("0.0 %")),
        "{:?}",
        k25.withheld
    );

    // A month: March 2026 against March 2025: 31 × 90 vs 31 × 100 → −10 %.
    let march = ctx
        .scope_kpis(&reader, &x, period_of(2026, Some(3)).expect("period"))
        .expect("kpis");
    assert!(close(
        march.yoy_per_capita_energy_pct.unwrap_or(f64::NAN),
        -10.0,
        1e-9
    ));
}

/// A winter-heavy site: the projection follows last year's shape and lands
/// on the real year end; run-rate only where there is no last year.
#[test]
fn the_projection_follows_last_years_shape() {
    let mut toml = ONE_AGENCY.to_string();
    toml.push_str(
        r#"
[[agency]]
id = "Y"
name = "Y"

[[headcount]]
agency = "Y"
from = 2026-01-01
persons = 50

[[meter]]
id = "N"
kind = "electricity"
unit = "kWh"
serves = { agency = "Y" }
interval_s = 86400
"#,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // X in 2025: 300 kWh/day in January–February and December, 100 otherwise;
    // 2026: 10 % more (330/day) in January–February. Y: 2026 only, the same.
    let site = store(
        dir.path(),
        &toml,
        &[
            (
                "M",
                vec![
                    (date(2025, 1, 1), date(2025, 3, 1), 300.0),
                    (date(2025, 3, 1), date(2025, 12, 1), 100.0),
                    (date(2025, 12, 1), date(2026, 1, 1), 300.0),
                    (date(2026, 1, 1), date(2026, 3, 1), 330.0),
                ],
            ),
            ("N", vec![(date(2026, 1, 1), date(2026, 3, 1), 330.0)]),
        ],
    );
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let ctx = KpiContext::new(&site).with_today(date(2026, 3, 1));
    let year = period_of(2026, None).expect("period");
    let x = ctx
        .scope_kpis(&reader, &Scope::Agency("X".into()), year)
        .expect("kpis");
    // To date: 59 × 330 = 19 470 kWh. 2025 over the same days: 59 × 300 =
    // 17 700; the whole of 2025: 17 700 + 275 × 100 + 31 × 300 = 54 500.
    // By last year's shape: 19 470 × 54 500 / 17 700 = 59 950 kWh, which is
    // exactly 1.1 × 54 500 (the real year end if the year keeps its shape);
    // per person: 59 950 × 0.1229 / 50 = 147.3571 kgce.
    // Run-rate would say 19 470 / 59 × 365 = 120 450 kWh (2.0 × too high).
    let t = x.tracking.clone().expect("tracking");
    assert_eq!(
        t.method,
        Some(meterflow_core::quota::Projection::SamePeriodLastYear)
    );
    let real = 1.1 * 54_500.0 * 0.1229 / 50.0;
    let p = t.projected.expect("projected");
    assert!((p - real).abs() / real < 0.05, "{p} vs {real}");
    assert!(close(p, 59_950.0 * 0.1229 / 50.0, 1e-9), "{p}");
    // Y has no 2025: run-rate, 19 470 / 59 × 365 × 0.1229 / 50 = 296.0700 kgce/person.
    let y = ctx
        .scope_kpis(&reader, &Scope::Agency("Y".into()), year)
        .expect("kpis");
    let ty = y.tracking.expect("tracking");
    assert_eq!(ty.method, Some(meterflow_core::quota::Projection::RunRate));
    assert!(close(
        ty.projected.unwrap_or(f64::NAN),
        19_470.0 / 59.0 * 365.0 * 0.1229 / 50.0,
        1e-9
    ));
}

/// A quota whose standard converts electricity with 0.31 kgce/kWh (等价值):
/// the grade uses it, the statistics figure stays with 0.1229.
#[test]
fn a_quota_grades_with_its_own_electricity_factor() {
    let base = r#"
[site]
name = "quota factor"
quota_set = "test-equivalent"

[store]
path = "store.db"

[[building]]
id = "B"
total_area_m2 = 20000

[[agency]]
id = "X"
name = "X"

[[headcount]]
agency = "X"
from = 2025-01-01
persons = 400

[[space]]
agency = "X"
building = "B"
from = 2025-01-01
area_m2 = 20000

[[meter]]
id = "el"
kind = "electricity"
unit = "kWh"
serves = { agency = "X" }
interval_s = 86400

[[meter]]
id = "heat"
kind = "heat"
unit = "GJ"
serves = { agency = "X" }
interval_s = 86400

[[quota]]
quota_set = "test-equivalent"
institution_type = "office"
admin_level = "city"
climate_zone = "A"
indicator = "per_capita_energy"
unit = "kgce/person·a"
guide = 453.7
baseline = 781.0
constraint = 1197.8
electricity_factor = FACTOR
source = "test quota"
confidence = "C"
"#;
    // 1 200 000 kWh and 3 000 GJ over 2025 (3 287.671 kWh and 8.219 GJ a day
    // make the daily counters): E = 1 200 000 × 0.1229 + 3 000 × 34.12 =
    // 147 480 + 102 360 = 249 840 kgce → 624.60 kgce/person with 当量值.
    // With k: (102 360 + 1 200 000 k) / 400. The grade crosses 1 197.8 (合格 →
    // 超定额) at k = (1 197.8 × 400 − 102 360) / 1 200 000 = 0.314967.
    // k = 0.31: (102 360 + 372 000) / 400 = 1 185.90 → 合格;
    // k = 0.32: (102 360 + 384 000) / 400 = 1 215.90 → 超定额.
    for (factor, value, grade) in [(0.31, 1_185.9, "合格"), (0.32, 1_215.9, "超定额")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = store(
            dir.path(),
            &base.replace("FACTOR", &factor.to_string()),
            &[
                (
                    "el",
                    vec![(date(2025, 1, 1), date(2026, 1, 1), 1_200_000.0 / 365.0)],
                ),
                (
                    "heat",
                    vec![(date(2025, 1, 1), date(2026, 1, 1), 3_000.0 / 365.0)],
                ),
            ],
        );
        let (k, g) = year_grade(
            &site,
            date(2026, 3, 1),
            Scope::Agency("X".into()),
            2025,
            "per_capita_energy",
        );
        assert!(close(g.value, value, 1e-3), "{factor}: {g:?}");
        assert_eq!(g.grade, grade, "{factor}: {g:?}");
        assert_eq!(g.electricity_factor, factor);
        // Both figures: the statistics one stays 624.60 (graded 合理 there).
        assert!(
            close(g.statistics_value.unwrap_or(f64::NAN), 624.6, 1e-3),
            "{g:?}"
        );
        assert!(close(k.per_capita_energy.unwrap_or(f64::NAN), 624.6, 1e-3));
    }
}

/// The shipped example: areas split like the energy, so the agencies add up
/// to the building on both sides of the ratio.
#[test]
fn the_shipped_example_balances_area_and_energy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = crate::support::example_site(dir.path(), 5_000);
    let csv = crate::support::repo().join("examples/shared-office/readings.csv");
    let out = crate::support::run(&[
        "import",
        "--config",
        path.to_str().expect("utf-8"),
        csv.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{:?}", crate::support::text(&out));
    let site = Site::load(&path).expect("valid");
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let ctx = KpiContext::new(&site).with_today(date(2025, 3, 20));
    let march = period_of(2025, Some(3)).expect("period");
    let main = ctx
        .scope_kpis(&reader, &Scope::Building("main".into()), march)
        .expect("kpis");
    let agencies: Vec<_> = ["fin", "tax", "stat"]
        .iter()
        .map(|a| {
            ctx.scope_kpis(&reader, &Scope::Agency((*a).into()), march)
                .expect("kpis")
        })
        .collect();
    // Σ agency area = the building's office area, 16 000 m² (the agencies
    // occupy 8 500; the other 7 500 are common, split by occupied area).
    let area: f64 = agencies.iter().map(|k| k.area_m2).sum();
    assert!(close(area, 16_000.0, 1e-6), "{area}");
    assert!(close(main.area_m2, 16_000.0, 1e-9));
    // Σ agency energy = the building's (every meter in `main` is allocated).
    let energy: f64 = agencies.iter().map(|k| k.energy_kgce).sum();
    assert!(
        close(energy, main.energy_kgce, 1e-6 * main.energy_kgce),
        "{energy} vs {}",
        main.energy_kgce
    );
    // And so fin's kgce/m² sits with its neighbours' (before: 1.804 for fin
    // against 0.949 for the building): within 2 % of tax, which shares the
    // data centre with it; stat, without a data-centre share, within 5 %, as
    // is every agency of the building's own figure.
    let pa: Vec<f64> = agencies
        .iter()
        .map(|k| k.per_area_energy.expect("per area"))
        .collect();
    let building = main.per_area_energy.expect("per area");
    for (k, v) in agencies.iter().zip(&pa) {
        println!("{}: {v:.4} kgce/m² (building {building:.4})", k.agency);
    }
    let (fin, tax, stat) = (pa[0], pa[1], pa[2]);
    assert!((fin - tax).abs() / tax < 0.02, "{pa:?}");
    assert!((fin - stat).abs() / stat < 0.05, "{pa:?}");
    for v in &pa {
        assert!(
            (v - building).abs() / building < 0.05,
            "{pa:?} vs {building}"
        );
    }
}

const IMBALANCE: &str = r#"
[site]
name = "imbalance"

[store]
path = "store.db"

[[building]]
id = "B"
total_area_m2 = 1000

[[agency]]
id = "X"
name = "X"

[[agency]]
id = "Y"
name = "Y"

[[space]]
agency = "X"
building = "B"
from = 2025-01-01
area_m2 = 600

[[space]]
agency = "Y"
building = "B"
from = 2025-01-01
area_m2 = 400

[[meter]]
id = "P"
kind = "electricity"
unit = "kWh"
serves = { building = "B" }
interval_s = 86400

[[meter]]
id = "C"
kind = "electricity"
unit = "kWh"
parent = "P"
serves = { agency = "X" }
interval_s = 86400

[[alert]]
id = "balance"
kind = "imbalance"
"#;

/// Sub-meters reading more than their parent: the negative remainder is
/// counted as zero per day, reported, and alerted; a sub-meter of another
/// carrier is refused.
#[test]
fn a_negative_remainder_counts_as_zero_and_is_alerted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Day 1 (1 March): P 100 kWh, C 130 → remainder −30. Day 2: P 100, C 40 → +60.
    let site = store(
        dir.path(),
        IMBALANCE,
        &[
            (
                "P",
                vec![
                    (date(2025, 3, 1), date(2025, 3, 2), 100.0),
                    (date(2025, 3, 2), date(2025, 3, 3), 100.0),
                ],
            ),
            (
                "C",
                vec![
                    (date(2025, 3, 1), date(2025, 3, 2), 130.0),
                    (date(2025, 3, 2), date(2025, 3, 3), 40.0),
                ],
            ),
        ],
    );
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let ctx = KpiContext::new(&site).with_today(date(2025, 3, 10));
    let march = period_of(2025, Some(3)).expect("period");
    let k = |s: Scope| ctx.scope_kpis(&reader, &s, march).expect("kpis");
    let (x, y, b) = (
        k(Scope::Agency("X".into())),
        k(Scope::Agency("Y".into())),
        k(Scope::Building("B".into())),
    );
    // The remainder splits 0.6 / 0.4. Day 1 without the clip: X 130 − 18 = 112,
    // Y −12; with it the remainder is 0: X 130, Y 0. Day 2: X 40 + 36 = 76, Y 24.
    // X = 130 + 76 = 206, Y = 24, building = 230 (= Σ agencies; P read 200).
    let e = |k: &meterflow_kpi::ScopeKpis| k.carriers.electricity_kwh;
    assert!(close(e(&x), 206.0, 1e-6), "{}", e(&x));
    assert!(close(e(&y), 24.0, 1e-6), "{}", e(&y));
    assert!(close(e(&b), 230.0, 1e-6), "{}", e(&b));
    assert!(close(e(&x) + e(&y), e(&b), 1e-6));
    // The clipped amount is reported: 18 to X, 12 to Y, 30 to the building.
    let clipped = |k: &meterflow_kpi::ScopeKpis| k.imbalance_clipped.clone();
    assert_eq!(clipped(&b).len(), 1);
    assert!(close(clipped(&b)[0].1, 30.0, 1e-6) && clipped(&b)[0].0 == "P");
    assert!(close(clipped(&x)[0].1, 18.0, 1e-6) && close(clipped(&y)[0].1, 12.0, 1e-6));

    // The imbalance rule looks at yesterday: on 2 March, −30 / 100 = 30 % the
    // wrong way (sub-meters above their parent) fires like a 30 % loss would;
    // on 3 March, +60 %.
    let rule = site
        .alert_rules
        .iter()
        .find(|r| r.id == "balance")
        .expect("rule");
    let at = |d: NaiveDate| midnight(d.year(), d.month(), d.day()) + 3_600_000;
    let live = meterflow_runtime::alerting::LiveMetrics::default();
    let obs =
        meterflow_runtime::alerting::observe(&site, &reader, rule, at(date(2025, 3, 2)), &live)
            .expect("observe");
    assert_eq!(obs.len(), 1, "{obs:?}");
    assert!(close(obs[0].value, 0.3, 1e-9), "{obs:?}");
    assert!(
        obs[0].detail.contains("read more than their parent"),
        "{obs:?}"
    );
    let obs =
        meterflow_runtime::alerting::observe(&site, &reader, rule, at(date(2025, 3, 3)), &live)
            .expect("observe");
    assert!(
        close(obs[0].value, 0.6, 1e-9) && obs[0].detail.contains("unmetered"),
        "{obs:?}"
    );

    // A sub-meter of another carrier is refused, naming the line.
    let bad = IMBALANCE.replace(
        "id = \"C\"\nkind = \"electricity\"\nunit = \"kWh\"",
        "id = \"C\"\nkind = \"water\"\nunit = \"m3\"",
    );
    let err = Site::parse(&bad, &dir.path().join("bad.toml"))
        .err()
        .map(|e| e.to_string())
        .expect("refused");
    assert!(
        err.contains("parent") && err.contains("electricity meter and this is a water meter"),
        "{err}"
    );
}

/// LPG and coal meters feed the KPIs like any carrier: kgce with GB/T 2589's
/// coefficients, CO₂ where a factor ships, absent with the reason where not.
#[test]
fn lpg_and_coal_meters_count_in_energy_and_carbon() {
    let toml = r#"
[site]
name = "carriers"

[store]
path = "store.db"

[[building]]
id = "B"
total_area_m2 = 1000

[[agency]]
id = "X"
name = "X"

[[headcount]]
agency = "X"
from = 2025-01-01
persons = 10

[[space]]
agency = "X"
building = "B"
from = 2025-01-01
area_m2 = 1000

[[meter]]
id = "el"
kind = "electricity"
unit = "kWh"
serves = { agency = "X" }
interval_s = 86400

[[meter]]
id = "lpg"
kind = "lpg"
unit = "kg"
serves = { agency = "X" }
interval_s = 86400

[[meter]]
id = "coal"
kind = "coal"
unit = "t"
serves = { building = "B" }
interval_s = 86400
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    // March 2025: 100 kWh and 5 kg of LPG a day; the boiler 0.2 t of coal a day.
    let site = store(
        dir.path(),
        toml,
        &[
            ("el", vec![(date(2025, 3, 1), date(2025, 4, 1), 100.0)]),
            ("lpg", vec![(date(2025, 3, 1), date(2025, 4, 1), 5.0)]),
            ("coal", vec![(date(2025, 3, 1), date(2025, 4, 1), 0.2)]),
        ],
    );
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let ctx = KpiContext::new(&site).with_today(date(2025, 4, 10));
    let march = period_of(2025, Some(3)).expect("period");
    let x = ctx
        .scope_kpis(&reader, &Scope::Agency("X".into()), march)
        .expect("kpis");
    // X: 3 100 kWh × 0.1229 = 380.99 + 155 kg LPG × 1.7143 = 265.7165 → 646.7065 kgce;
    // the coal (boiler, building-wide, split by area: all X's) 6.2 t = 6 200 kg
    // × 0.7143 = 4 428.66 → 5 075.3665 kgce.
    assert!(close(x.carriers.lpg_kg, 155.0, 1e-6), "{:?}", x.carriers);
    assert!(close(x.carriers.coal_kg, 6_200.0, 1e-6), "{:?}", x.carriers);
    assert!(close(x.energy_kgce, 5_075.366_5, 1e-6), "{}", x.energy_kgce);
    // CO₂: coal has no shipped factor: absent, with the reason; never the
    // 1 645 + 480.66 kg of the other two alone.
    assert_eq!(x.co2_t, None);
    assert!(
        x.withheld
            .iter()
            .any(|(f, r)| f == "co2" && r.contains("co2.raw_coal")),
        "{:?}",
        x.withheld
    );
    // With the site's own coal factor row (an illustrative 1.9 kg/kg) it is
    // given: 3 100 × 0.5306 + 155 × 3.101 + 6 200 × 1.9 = 1 644.86 + 480.655
    // + 11 780 = 13 905.515 kg.
    let with = format!(
        "{toml}\n[[factor]]\nfactor_set = \"cn-public-institution\"\nindicator = \"co2.raw_coal\"\nunit_in = \"kg\"\nunit_out = \"kgCO2\"\nvalue = 1.9\nsource = \"site's supplier\"\nconfidence = \"C\"\n"
    );
    std::fs::write(dir.path().join("site.toml"), with).expect("site");
    let site2 = Site::load(&dir.path().join("site.toml")).expect("valid");
    let x2 = KpiContext::new(&site2)
        .with_today(date(2025, 4, 10))
        .scope_kpis(&reader, &Scope::Agency("X".into()), march)
        .expect("kpis");
    assert!(
        close(x2.co2_t.unwrap_or(f64::NAN), 13.905_515, 1e-9),
        "{:?}",
        x2.co2_t
    );
}

/// The quota standard's non-heating intensity takes special-function loads
/// out with their floor area: (E − E_heat − E_vehicle − E_special) / (A − A_special).
#[test]
fn the_non_heating_intensity_takes_special_functions_out() {
    let toml = r#"
[site]
name = "special"
quota_set = "shandong-db37"

[store]
path = "store.db"

[[building]]
id = "B"
total_area_m2 = 1000
special_area_m2 = 200

[[meter]]
id = "P"
kind = "electricity"
unit = "kWh"
serves = { building = "B" }
interval_s = 86400

[[meter]]
id = "DC"
kind = "electricity"
unit = "kWh"
parent = "P"
subitem = "D"
serves = { building = "B" }
interval_s = 86400
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    // 2025: the building 1 000 kWh a day, of which the data centre 300.
    let site = store(
        dir.path(),
        toml,
        &[
            ("P", vec![(date(2025, 1, 1), date(2026, 1, 1), 1_000.0)]),
            ("DC", vec![(date(2025, 1, 1), date(2026, 1, 1), 300.0)]),
        ],
    );
    let (b, g) = year_grade(
        &site,
        date(2026, 2, 1),
        Scope::Building("B".into()),
        2025,
        "per_area_nonheating_energy",
    );
    // E = 365 000 × 0.1229 = 44 858.5 kgce; E_special = 109 500 × 0.1229 =
    // 13 457.55; (44 858.5 − 13 457.55) / (1 000 − 200) = 39.2511875 kgce/m²
    // (> 20.0: 超定额), where E / A alone would say 44.8585.
    assert!(close(g.value, 39.251_187_5, 1e-9), "{g:?}");
    assert_eq!(g.grade, "超定额");
    assert!(close(b.per_area_energy.unwrap_or(f64::NAN), 44.858_5, 1e-9));
}

/// An estimated bucket counts as covered only when its gap lasts at most
/// `[site] covered_gap_max_h` (24 h by default). January 2026 with daily
/// readings on the 1st–10th and the 20th–31st and nothing between (interval
/// one day, so the 10-day gap is estimated): measured 9 + 11 days (the 31st
/// has no reading after it), estimated 10 days, of 31 expected.
/// - cap 24 h: covered (9 + 11) / 31 = 64.516 %; the total is unchanged;
/// - cap 300 h: (9 + 11 + 10) / 31 = 96.774 %.
#[test]
fn a_long_estimated_gap_keeps_its_total_but_not_its_coverage() {
    let stretches = [
        (date(2026, 1, 1), date(2026, 1, 10), 100.0),
        (date(2026, 1, 20), date(2026, 1, 31), 100.0),
    ];
    let coverage = |extra: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = ONE_AGENCY.replace(
            "quota_set = \"shandong-db37\"",
            &format!("quota_set = \"shandong-db37\"\n{extra}"),
        );
        let path = dir.path().join("site.toml");
        std::fs::write(&path, &toml).expect("site");
        let site = Site::load(&path).expect("valid site");
        // Readings on the 1st..10th, then the 20th..31st (the counter rose 1 000 kWh across the gap).
        let mut readings = daily(&site, "M", &stretches[..1]);
        let mut later = daily(&site, "M", &stretches[1..]);
        for r in &mut later {
            r.value += 900.0 + 1_000.0;
        }
        readings.append(&mut later);
        let mut w = meterflow_store::Writer::open(&site).expect("store");
        w.write_batch(&readings, "test").expect("write");
        drop(w);
        let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
        let k = KpiContext::new(&site)
            .with_today(date(2026, 3, 1))
            .scope_kpis(
                &reader,
                &Scope::Agency("X".into()),
                period_of(2026, Some(1)).expect("month"),
            )
            .expect("kpis");
        (k.coverage_pct, k.carriers.electricity_kwh)
    };
    let (capped, total) = coverage("");
    assert!(close(capped, 20.0 / 31.0 * 100.0, 1e-6), "{capped}");
    // 1st..10th: 900; the gap: 1 000; 20th..31st: 1 100.
    assert!(close(total, 3_000.0, 1e-6), "{total}");
    let (long, total_long) = coverage("covered_gap_max_h = 300");
    assert!(close(long, 30.0 / 31.0 * 100.0, 1e-6), "{long}");
    assert!(close(total_long, total, 1e-9));
}

/// A per-day water quota on the working-day basis (`day_basis = "working"`,
/// the 250-day convention) divides by the worked days with data: the
/// national calendar (holidays, make-up days) less the site's closures.
/// 2026 begins on a Thursday: 52 weeks and a Thursday = 261 weekdays. The
/// State Council's notice takes the weekdays of 元旦 01-01/02 (2), 春节
/// 02-16..20 and 02-23 (6), 清明 04-06 (1), 劳动节 05-01, 04, 05 (3), 端午
/// 06-19 (1), 中秋 09-25 (1), 国庆 10-01, 02, 05, 06, 07 (5): 19; it adds
/// six make-up weekend days (01-04, 02-14, 02-28, 05-09, 09-20, 10-10):
/// 261 − 19 + 6 = 248 worked days; the site's closure on Tuesday 10-13
/// leaves 247. Water 0.85 m³ a day for 10 persons, 365 days: 310 250 L.
/// - calendar basis: 310 250 / (10 × 365) = 85.0 L/person·d (within 90);
/// - working basis: 310 250 / (10 × 247) = 125.607 L/person·d (over 90).
#[test]
fn a_working_day_water_quota_divides_by_the_worked_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = r#"
[site]
name = "working days"
quota_set = "test-working"
closures = [2026-10-13]

[store]
path = "store.db"

[[building]]
id = "B"
total_area_m2 = 1000

[[agency]]
id = "X"
name = "X"

[[headcount]]
agency = "X"
from = 2026-01-01
persons = 10

[[space]]
agency = "X"
building = "B"
from = 2026-01-01
area_m2 = 1000

[[meter]]
id = "W"
kind = "water"
unit = "m3"
serves = { agency = "X" }
interval_s = 86400

[[quota]]
quota_set = "test-working"
institution_type = "office"
admin_level = "city"
climate_zone = "A"
indicator = "water_per_person_day"
unit = "L/person·d"
day_basis = "working"
constraint = 90.0
source = "test quota"
confidence = "C"
"#;
    let site = store(
        dir.path(),
        toml,
        &[("W", vec![(date(2026, 1, 1), date(2027, 1, 1), 0.85)])],
    );
    let (k, g) = year_grade(
        &site,
        date(2027, 1, 5),
        Scope::Agency("X".into()),
        2026,
        "water_per_person_day",
    );
    assert_eq!(k.water_days, 365);
    assert_eq!(k.water_working_days, 247);
    let cal = k.water_l_per_person_day.expect("calendar figure");
    assert!(close(cal, 85.0, 1e-6), "{cal}");
    let work = k.water_l_per_person_working_day.expect("working figure");
    assert!(close(work, 310_250.0 / 2470.0, 1e-9), "{work}");
    assert!(close(g.value, work, 1e-12), "graded on {}", g.value);
    assert!(g.value > 90.0);

    // A typo in the basis is refused where it is written.
    let bad = toml.replace("day_basis = \"working\"", "day_basis = \"workday\"");
    let e = Site::parse(&bad, std::path::Path::new("site.toml"))
        .expect_err("a bad day basis")
        .to_string();
    assert!(e.contains("day_basis") && e.contains("`workday`"), "{e}");
}
