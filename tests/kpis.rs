//! Per-agency KPIs read from the store, on a hand-computed fixture.

use meterflow_model::{Reading, Site, TimeSource};

/// Building B1: zones Z1, Z2. A: 100 persons, 300 m² in Z1. C: 50 persons,
/// 100 m² in Z1 (March). M2 serves the building (area shares), M4 serves A directly.
const SITE: &str = r#"
[site]
name = "kpi fixture"
quota_set = "shandong-db37"

[store]
path = "store.db"

[[building]]
id = "B1"
total_area_m2 = 1000

[[zone]]
id = "Z1"
building = "B1"
area_m2 = 400

[[agency]]
id = "A"
name = "Agency A"

[[agency]]
id = "C"
name = "Agency C"

[[headcount]]
agency = "A"
from = 2025-01-01
persons = 100

[[headcount]]
agency = "C"
from = 2025-01-01
persons = 50

[[space]]
agency = "A"
zone = "Z1"
from = 2025-01-01
area_m2 = 300

[[space]]
agency = "C"
zone = "Z1"
from = 2025-01-01
area_m2 = 100

[[meter]]
id = "M2"
kind = "electricity"
unit = "kWh"
serves = { building = "B1" }
interval_s = 86400

[[meter]]
id = "M4"
kind = "electricity"
unit = "kWh"
serves = { agency = "A" }
interval_s = 86400
"#;

fn reading(meter: &str, ts_ms: i64, value: f64) -> Reading {
    Reading {
        meter: meter.into(),
        quantity: "energy_import".into(),
        ts_ms,
        value,
        recv_ms: ts_ms,
        time_source: TimeSource::Import,
    }
}

#[test]
fn agency_kpis_from_the_store_match_the_hand_computation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, SITE).expect("site");
    let site = Site::load(&path).expect("valid");
    // Local midnights (UTC+8): 2025-03-01 00:00 = 2025-02-28T16:00Z = 1 740 758 400 000 ms.
    let mar1 = 1_740_758_400_000i64;
    let day = 86_400_000i64;
    let mut w = meterflow_store::Writer::open(&site).expect("store");
    w.write_batch(
        &[
            // M4 (A direct): 24 kWh on 1 March, 24 kWh on 2 March.
            reading("M4", mar1, 0.0),
            reading("M4", mar1 + day, 24.0),
            reading("M4", mar1 + 2 * day, 48.0),
            // M2 (building, A 300 : C 100 → 0.75 / 0.25): 100 kWh on 1 March.
            reading("M2", mar1, 1000.0),
            reading("M2", mar1 + day, 1100.0),
        ],
        "test",
    )
    .expect("write");
    drop(w);
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let march = meterflow::kpis::period_of(2025, Some(3)).expect("period");
    let a = meterflow::kpis::agency_kpis(&site, &reader, "A", march).expect("kpis");
    let c = meterflow::kpis::agency_kpis(&site, &reader, "C", march).expect("kpis");
    let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
    // A: 24 + 24 + 0.75 × 100 = 123 kWh; C: 0.25 × 100 = 25 kWh.
    assert!(close(a.carriers.electricity_kwh, 123.0), "{a:?}");
    assert!(close(c.carriers.electricity_kwh, 25.0), "{c:?}");
    // 123 × 0.1229 = 15.1167 kgce; 100 persons → 0.151167 kgce/person; 300 m² → 0.050389 kgce/m².
    assert!(close(a.energy_kgce, 15.1167), "{}", a.energy_kgce);
    assert!(close(a.per_capita_energy.unwrap_or(0.0), 0.151167));
    assert!(close(a.per_area_energy.unwrap_or(0.0), 15.1167 / 300.0));
    // CO₂: 123 kWh × 0.5306 kg/kWh (national grid, latest published data year) = 65.2638 kg.
    assert!(close(a.co2_t, 0.0652638), "{}", a.co2_t);
    // Completeness: A is served by M2 and M4: 2 × 31 days × 96 buckets = 5 952 expected;
    // measured: M4 192 (two days) + M2 96 (one day) = 288 → 4.8387 %.
    assert!(
        close(a.completeness_pct, 288.0 * 100.0 / 5952.0),
        "{}",
        a.completeness_pct
    );
    // A month is not graded against annual quotas; no data a year earlier → no YoY.
    assert!(a.grades.is_empty() && a.yoy_per_capita_energy_pct.is_none());
    // The site: both meters are roots: 100 + 48 = 148 kWh; persons 100 + 50;
    // area = B1's total 1 000 m² (no office area given).
    let st = meterflow::kpis::site_kpis(&site, &reader, march).expect("site kpis");
    assert!(
        close(st.carriers.electricity_kwh, 148.0)
            && close(st.persons, 150.0)
            && close(st.area_m2, 1000.0),
        "{st:?}"
    );
    assert_eq!(st.agency, "site");
    // The year has data on 2 days only: no grade on a part of a year; instead the
    // tracking: 0.151167 kgce/person over 2 days → run-rate year end
    // 0.151167 / 2 × 365 = 27.588 kgce/person = 2.30 % of the 约束值 1 197.8.
    let year = meterflow::kpis::period_of(2025, None).expect("period");
    let y = meterflow::kpis::agency_kpis(&site, &reader, "A", year).expect("kpis");
    assert!(y.grades.is_empty(), "{:?}", y.grades);
    assert_eq!(y.days_with_data, 2);
    let t = y.tracking.expect("tracking while the year runs");
    assert!(close(t.projected, 0.151167 / 2.0 * 365.0), "{t:?}");
    assert!(
        close(t.projected_ratio, 0.151167 / 2.0 * 365.0 / 1197.8),
        "{t:?}"
    );
}
