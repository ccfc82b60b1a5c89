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
    let march = meterflow_kpi::period_of(2025, Some(3)).expect("period");
    let a = meterflow_kpi::agency_kpis(&site, &reader, "A", march).expect("kpis");
    let c = meterflow_kpi::agency_kpis(&site, &reader, "C", march).expect("kpis");
    let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
    // A: 24 + 24 + 0.75 × 100 = 123 kWh; C: 0.25 × 100 = 25 kWh.
    assert!(close(a.carriers.electricity_kwh, 123.0), "{a:?}");
    assert!(close(c.carriers.electricity_kwh, 25.0), "{c:?}");
    // 123 × 0.1229 = 15.1167 kgce; 100 persons → 0.151167 kgce/person; 300 m² → 0.050389 kgce/m².
    assert!(close(a.energy_kgce, 15.1167), "{}", a.energy_kgce);
    assert!(close(a.per_capita_energy.unwrap_or(0.0), 0.151167));
    // A's area: 300 occupied + 0.75 of B1's 600 m² common = 750 m² (the key
    // that splits M2's energy splits the common area): 15.1167 / 750.
    assert!(close(a.per_area_energy.unwrap_or(0.0), 15.1167 / 750.0));
    // CO₂: 123 kWh × 0.5306 kg/kWh (national grid, latest published data year) = 65.2638 kg.
    assert!(
        close(a.co2_t.unwrap_or(f64::NAN), 0.0652638),
        "{:?}",
        a.co2_t
    );
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
    let st = meterflow_kpi::site_kpis(&site, &reader, march).expect("site kpis");
    assert!(
        close(st.carriers.electricity_kwh, 148.0)
            && close(st.persons, 150.0)
            && close(st.area_m2, 1000.0),
        "{st:?}"
    );
    assert_eq!(st.agency, "site");
    // The year has data on 2 days only and runs (as of 3 March): no grade on
    // a part of a year; instead the tracking, pro-rated: 0.151167 kgce/person
    // over 2 days against 1 197.8 × 2 / 365 = 6.5633 → 2.303 %. Two days are
    // below the 30-day minimum window: no projection, with the reason.
    let year = meterflow_kpi::period_of(2025, None).expect("period");
    let mar3 = chrono::NaiveDate::from_ymd_opt(2025, 3, 3).expect("date");
    let ctx = meterflow_kpi::KpiContext::new(&site).with_today(mar3);
    let y = ctx
        .scope_kpis(&reader, &meterflow_kpi::Scope::Agency("A".into()), year)
        .expect("kpis");
    assert!(y.grades.is_empty(), "{:?}", y.grades);
    assert_eq!(y.days_with_data, 2);
    let t = y.tracking.clone().expect("tracking while the year runs");
    assert!(
        close(t.ratio_to_date, 0.151167 / (1197.8 * 2.0 / 365.0)),
        "{t:?}"
    );
    assert_eq!(
        (t.projected, t.projected_ratio, t.method),
        (None, None, None)
    );
    assert!(
        y.withheld
            .iter()
            .any(|(f, r)| f == "projection" && r.contains("2 days") && r.contains("30")),
        "{:?}",
        y.withheld
    );
    // The same year seen after it ended: not complete (2 of 365 days), so
    // neither graded nor tracked, and the reason says why.
    let after = meterflow_kpi::KpiContext::new(&site)
        .with_today(chrono::NaiveDate::from_ymd_opt(2026, 2, 1).expect("date"))
        .scope_kpis(&reader, &meterflow_kpi::Scope::Agency("A".into()), year)
        .expect("kpis");
    assert!(after.grades.is_empty() && after.tracking.is_none() && !after.complete);
    assert!(
        after
            .withheld
            .iter()
            .any(|(f, r)| f == "grades" && r.contains("below 95")),
        "{:?}",
        after.withheld
    );
}

/// The aggregation issue's fixture: 2 buildings, 4 agencies, a shared meter
/// split by area, a headcount change mid-month, an area move mid-year.
///
/// B1 (office 2 000 m²), B2 (office 1 000 m²).
/// A: 600 m² in B1 since 2020; 100 persons since 2020, 120 from 2025-03-16.
/// C: 400 m² in B1; 40 persons (2025). E: 300 m² in B2; 30 persons (2025).
/// D: 500 m² in B2 until 2025-06-30, then 500 m² in B1; 50 persons (2025).
/// SHARED (B1, area share), A_OWN (A direct), D_OWN (D direct), W2 (B2 water, area share).
const FIXTURE: &str = r#"
[site]
name = "aggregation fixture"
quota_set = "shandong-db37"

[store]
path = "store.db"

[[building]]
id = "B1"
total_area_m2 = 2500
office_area_m2 = 2000

[[building]]
id = "B2"
total_area_m2 = 1000

[[agency]]
id = "A"
name = "A"

[[agency]]
id = "C"
name = "C"

[[agency]]
id = "D"
name = "D"

[[agency]]
id = "E"
name = "E"

[[headcount]]
agency = "A"
from = 2020-01-01
persons = 100

[[headcount]]
agency = "A"
from = 2025-03-16
persons = 120

[[headcount]]
agency = "C"
from = 2025-01-01
persons = 40

[[headcount]]
agency = "D"
from = 2025-01-01
persons = 50

[[headcount]]
agency = "E"
from = 2025-01-01
persons = 30

[[space]]
agency = "A"
building = "B1"
from = 2020-01-01
area_m2 = 600

[[space]]
agency = "C"
building = "B1"
from = 2025-01-01
area_m2 = 400

[[space]]
agency = "D"
building = "B2"
from = 2025-01-01
to = 2025-06-30
area_m2 = 500

[[space]]
agency = "D"
building = "B1"
from = 2025-07-01
area_m2 = 500

[[space]]
agency = "E"
building = "B2"
from = 2025-01-01
area_m2 = 300

[[meter]]
id = "SHARED"
kind = "electricity"
unit = "kWh"
serves = { building = "B1" }
interval_s = 86400

[[meter]]
id = "A_OWN"
kind = "electricity"
unit = "kWh"
serves = { agency = "A" }
interval_s = 86400

[[meter]]
id = "D_OWN"
kind = "electricity"
unit = "kWh"
serves = { agency = "D" }
interval_s = 86400

[[meter]]
id = "W2"
kind = "water"
unit = "m3"
serves = { building = "B2" }
interval_s = 86400
"#;

/// A reading of a meter's counter quantity (energy for electricity, volume for water…).
fn counter_reading(site: &Site, meter: &str, ts_ms: i64, value: f64) -> Reading {
    let quantity = site
        .meter(meter)
        .map(|m| m.counter_quantity().to_string())
        .unwrap_or_default();
    Reading {
        quantity,
        ..reading(meter, ts_ms, value)
    }
}

/// Local midnight (UTC+8) of a date, ms.
fn midnight(y: i32, m: u32, d: u32) -> i64 {
    let date = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date");
    date.and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_millis()
        - 8 * 3_600_000
}

/// A date as (year, month, day).
type Ymd = (i32, u32, u32);

/// Daily readings of a counter growing `per_day` over each window of
/// `[from, to)` dates, holding its value between windows.
fn daily_counter(site: &Site, meter: &str, windows: &[(Ymd, Ymd)], per_day: f64) -> Vec<Reading> {
    let mut out = Vec::new();
    let mut value = 0.0;
    for ((fy, fm, fd), (ty, tm, td)) in windows {
        let (from, to) = (midnight(*fy, *fm, *fd), midnight(*ty, *tm, *td));
        let mut t = from;
        while t <= to {
            out.push(counter_reading(site, meter, t, value));
            if t < to {
                value += per_day;
            }
            t += 86_400_000;
        }
    }
    out
}

#[test]
fn fixture_kpis_for_the_month_and_the_year_match_the_hand_computation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, FIXTURE).expect("site");
    let site = Site::load(&path).expect("valid");
    let y2020 = ((2020, 1, 1), (2021, 1, 1));
    let mar2024 = ((2024, 3, 1), (2024, 4, 1));
    let y2025 = ((2025, 1, 1), (2026, 1, 1));
    let mut w = meterflow_store::Writer::open(&site).expect("store");
    for (meter, windows, per_day) in [
        ("SHARED", vec![y2020, mar2024, y2025], 240.0),
        ("W2", vec![y2025], 2.0),
        ("D_OWN", vec![y2025], 50.0),
    ] {
        w.write_batch(&daily_counter(&site, meter, &windows, per_day), "test")
            .expect("write");
    }
    // A_OWN: 150 kWh/day in 2020, 100 kWh/day in March 2024 and in 2025.
    let mut a_own = daily_counter(&site, "A_OWN", &[y2020], 150.0);
    let held = 366.0 * 150.0;
    for r in daily_counter(&site, "A_OWN", &[mar2024, y2025], 100.0) {
        a_own.push(reading("A_OWN", r.ts_ms, r.value + held));
    }
    w.write_batch(&a_own, "test").expect("write");
    drop(w);
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let close = |x: f64, y: f64| (x - y).abs() < 1e-6 * y.abs().max(1.0);
    let year = meterflow_kpi::period_of(2025, None).expect("period");
    let k = |a: &str| meterflow_kpi::agency_kpis(&site, &reader, a, year).expect("kpis");
    let (a, c, d, e) = (k("A"), k("C"), k("D"), k("E"));

    // Year 2025: 181 days to 30 June, 184 from 1 July.
    // SHARED 240 kWh/day in B1. To June: A 600 : C 400 → A 0.6, C 0.4.
    // From July (D moved in): A 600 : C 400 : D 500 → 0.4, 4/15, 1/3.
    // A = 181×240×0.6 + 184×240×0.4 + 365×100 (own) = 26 064 + 17 664 + 36 500 = 80 228 kWh.
    // C = 181×240×0.4 + 184×240×4/15 = 17 376 + 11 776 = 29 152 kWh.
    // D = 365×50 (own) + 184×240/3 = 18 250 + 14 720 = 32 970 kWh. E: none.
    assert!(close(a.carriers.electricity_kwh, 80_228.0), "{a:?}");
    assert!(close(c.carriers.electricity_kwh, 29_152.0), "{c:?}");
    assert!(close(d.carriers.electricity_kwh, 32_970.0), "{d:?}");
    assert!(close(e.carriers.electricity_kwh, 0.0), "{e:?}");
    // W2 2 m³/day in B2: to June D 500 : E 300 → 0.625 / 0.375; from July E alone.
    // D = 181×2×0.625 = 226.25 m³; E = 181×2×0.375 + 184×2 = 135.75 + 368 = 503.75 m³.
    assert!(close(d.carriers.water_m3, 226.25) && close(e.carriers.water_m3, 503.75));
    // Persons: A = (74 days × 100 + 291 × 120) / 365 = 42 320 / 365 = 115.945205.
    assert!(close(a.persons, 42_320.0 / 365.0), "{}", a.persons);
    // Areas follow the key that splits the energy (area share): each agency
    // gets its occupied area plus the same share of the building's common area.
    // B1 office 2 000 m². To June A 600 + C 400 occupied → 1 000 common:
    // A 600 + 1 000 × 0.6 = 1 200, C 400 + 400 = 800. From July A 600, C 400,
    // D 500 → 500 common: A 600 + 200 = 800, C 400 + 133.333 = 533.333,
    // D 500 + 166.667 = 666.667. B2 (1 000 m²) to June D 500 + E 300 → 200
    // common: D 625, E 375; from July E alone: 1 000.
    // Time-weighted: A (181 × 1 200 + 184 × 800) / 365 = 998.356164;
    // C (181 × 800 + 184 × 533.333) / 365 = 665.570776;
    // D (181 × 625 + 184 × 666.667) / 365 = 646.004566;
    // E (181 × 375 + 184 × 1 000) / 365 = 690.068493. Σ = 3 000 = B1 + B2.
    let a_area = (181.0 * 1_200.0 + 184.0 * 800.0) / 365.0;
    assert!(close(a.area_m2, a_area), "{}", a.area_m2);
    assert!(close(
        c.area_m2,
        (181.0 * 800.0 + 184.0 * 1_600.0 / 3.0) / 365.0
    ));
    assert!(close(
        d.area_m2,
        (181.0 * 625.0 + 184.0 * 2_000.0 / 3.0) / 365.0
    ));
    assert!(close(e.area_m2, (181.0 * 375.0 + 184.0 * 1_000.0) / 365.0));
    assert!(close(
        a.area_m2 + c.area_m2 + d.area_m2 + e.area_m2,
        3_000.0
    ));
    // A: 80 228 × 0.1229 = 9 860.0212 kgce → 85.040353 kgce/person, 9.876256 kgce/m².
    assert!(close(a.energy_kgce, 9_860.021_2));
    assert!(close(
        a.per_capita_energy.unwrap_or(0.0),
        9_860.021_2 * 365.0 / 42_320.0
    ));
    assert!(close(
        a.per_area_energy.unwrap_or(0.0),
        9_860.021_2 / a_area
    ));
    // CO₂: 80 228 × 0.5306 (2025 has no published factor: the nearest, 2023) =
    // 42 568.9768 kg = 42.569 t.
    assert!(
        close(a.co2_t.unwrap_or(f64::NAN), 42.5689768)
            && close(a.per_area_co2.unwrap_or(0.0), 42_568.976_8 / a_area)
    );
    assert_eq!(a.carbon.grid_factor_year, Some(2023));
    // C: 29 152 × 0.1229 = 3 582.7808 kgce / 40 = 89.56952 kgce/person.
    assert!(close(c.per_capita_energy.unwrap_or(0.0), 89.56952));
    assert!(close(
        c.per_area_energy.unwrap_or(0.0),
        3_582.780_8 / c.area_m2
    ));
    // D: 4 052.013 kgce / 50 = 81.04026; water
    // 226.25 / 50 = 4.525 m³/person; per day over D's 181 days with water
    // (B2's water reaches D until June): 226 250 L / (50 × 181) = 25.0 L/person·d.
    assert!(close(d.per_capita_energy.unwrap_or(0.0), 81.04026));
    assert!(close(d.water_per_capita.unwrap_or(0.0), 4.525));
    assert_eq!(d.water_days, 181);
    assert!(close(
        d.water_l_per_person_day.unwrap_or(0.0),
        226_250.0 / (50.0 * 181.0)
    ));
    // E: 503.75 / 30 = 16.791667 m³/person; 46.004566 L/person·d.
    assert!(close(e.water_per_capita.unwrap_or(0.0), 503.75 / 30.0));
    // Every meter read daily all year: A (SHARED, A_OWN) is 100 % complete; so is D,
    // whose meters count only while they serve it (W2 to June, SHARED from July).
    assert!(
        close(a.completeness_pct, 100.0) && close(d.completeness_pct, 100.0),
        "{} {}",
        a.completeness_pct,
        d.completeness_pct
    );
    // The full year is graded: 85.04 kgce/person ≤ the 引导值 453.7 → 先进.
    assert!(
        a.grades
            .iter()
            .any(|g| g.indicator == "per_capita_energy" && g.grade == "先进"),
        "{:?}",
        a.grades
    );
    // Against the 2020 base year (plan cn-2021-2025): in 2020 A alone occupied B1, so
    // it had all of SHARED: 366 × (240 + 150) = 142 740 kWh = 17 542.746 kgce / 100
    // persons = 175.42746 kgce/person; reduction (175.42746 − 85.040353) / 175.42746
    // = 51.524 % ≥ 6 % → met (2025 is the target year). Per area: A had all of
    // B1 then (600 occupied + 1 400 common = 2 000 m²): 8.771373 kgce/m²,
    // against 9.876256 now: −12.597 %, not met.
    let red = |ind: &str| {
        a.reductions
            .iter()
            .find(|r| r.indicator == ind)
            .cloned()
            .expect(ind)
    };
    let pc = red("per_capita_energy");
    assert!(
        close(pc.base, 175.42746)
            && pc.status == meterflow_kpi::TargetStatus::Met
            && close(pc.required_pct, 6.0),
        "{pc:?}"
    );
    assert!(close(
        pc.reduction_pct,
        (175.42746 - 9_860.021_2 * 365.0 / 42_320.0) / 175.42746 * 100.0
    ));
    let pa = red("per_area_energy");
    assert!(
        close(pa.base, 17_542.746 / 2_000.0)
            && close(
                pa.reduction_pct,
                (1.0 - 9_860.021_2 / a_area / (17_542.746 / 2_000.0)) * 100.0
            )
            && pa.status == meterflow_kpi::TargetStatus::NotMet,
        "{pa:?}"
    );

    // March 2025 (31 days): A persons (15 × 100 + 16 × 120) / 31 = 110.322581.
    // A = 31 × 240 × 0.6 + 31 × 100 = 4 464 + 3 100 = 7 564 kWh = 929.6156 kgce
    // → 8.426340 kgce/person, 0.774680 kgce/m² (1 200 m²).
    let march = meterflow_kpi::period_of(2025, Some(3)).expect("period");
    let am = meterflow_kpi::agency_kpis(&site, &reader, "A", march).expect("kpis");
    assert!(close(am.carriers.electricity_kwh, 7_564.0), "{am:?}");
    assert!(close(am.persons, 3_420.0 / 31.0));
    assert!(close(
        am.per_capita_energy.unwrap_or(0.0),
        929.6156 * 31.0 / 3_420.0
    ));
    // Area in March: 600 occupied + 0.6 of B1's 1 000 m² common = 1 200 m².
    assert!(close(am.per_area_energy.unwrap_or(0.0), 929.6156 / 1_200.0));
    // March 2024: A alone in B1: 31 × (240 + 100) = 10 540 kWh, 100 persons →
    // 12.953660 kgce/person; YoY (8.426340 − 12.953660) / 12.953660 = −34.950 %.
    let yoy = am.yoy_per_capita_energy_pct.expect("yoy");
    assert!(
        close(
            yoy,
            (929.6156 * 31.0 / 3_420.0 - 12.95366) / 12.95366 * 100.0
        ),
        "{yoy}"
    );
    // A month is not graded; D and E share B2's water in March: 38.75 and 23.25 m³,
    // both 25 L/person·d (38 750 / (50 × 31) and 23 250 / (30 × 31)).
    assert!(am.grades.is_empty());
    let dm = meterflow_kpi::agency_kpis(&site, &reader, "D", march).expect("kpis");
    assert!(
        close(dm.water_l_per_person_day.unwrap_or(0.0), 25.0),
        "{dm:?}"
    );

    // Buildings, 2025. B1: SHARED 87 600 + A_OWN 36 500 (A is only ever in B1) = 124 100 kWh;
    // D_OWN is in no one building (D moved), so it counts for the site only.
    // B1 persons: A 115.945205 + C 40 + D 50 × 184/365 (its area is in B1 from July) = 181.150685.
    let b1 = meterflow_kpi::building_kpis(&site, &reader, "B1", year).expect("kpis");
    assert!(close(b1.carriers.electricity_kwh, 124_100.0), "{b1:?}");
    assert!(
        close(b1.persons, 42_320.0 / 365.0 + 40.0 + 50.0 * 184.0 / 365.0),
        "{}",
        b1.persons
    );
    assert!(close(b1.area_m2, 2_000.0));
    let b2 = meterflow_kpi::building_kpis(&site, &reader, "B2", year).expect("kpis");
    assert!(close(b2.carriers.water_m3, 730.0) && close(b2.carriers.electricity_kwh, 0.0));
    // Site: 87 600 + 36 500 + 18 250 = 142 350 kWh (= A + C + D: nothing lost in the split);
    // persons 115.945205 + 40 + 50 + 30; area 2 000 + 1 000 m².
    let st = meterflow_kpi::site_kpis(&site, &reader, year).expect("kpis");
    assert!(
        close(st.carriers.electricity_kwh, 142_350.0)
            && close(80_228.0 + 29_152.0 + 32_970.0, 142_350.0)
    );
    assert!(close(st.persons, 42_320.0 / 365.0 + 120.0) && close(st.area_m2, 3_000.0));
}

/// `docs/methodology.md` §5 through the store and the KPI API, without the vehicle fuel
/// (the vehicle ledger supplies it): 1 200 000 kWh, 50 000 m³ gas, 3 000 GJ
/// heat, 9 000 m³ water over 2025; 400 persons, 20 000 m².
#[test]
fn domain_worked_example_through_the_kpi_api() {
    let site_toml = r#"
[site]
name = "worked example"

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
serves = { building = "B" }
interval_s = 31536000

[[meter]]
id = "gas"
kind = "gas"
unit = "m3"
serves = { building = "B" }
interval_s = 31536000

[[meter]]
id = "heat"
kind = "heat"
unit = "GJ"
serves = { building = "B" }
interval_s = 31536000

[[meter]]
id = "water"
kind = "water"
unit = "m3"
serves = { building = "B" }
interval_s = 31536000
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, site_toml).expect("site");
    let site = Site::load(&path).expect("valid");
    let (from, to) = (midnight(2025, 1, 1), midnight(2026, 1, 1));
    let mut w = meterflow_store::Writer::open(&site).expect("store");
    let mut batch = Vec::new();
    for (m, total) in [
        ("el", 1_200_000.0),
        ("gas", 50_000.0),
        ("heat", 3_000.0),
        ("water", 9_000.0),
    ] {
        batch.push(counter_reading(&site, m, from, 0.0));
        batch.push(counter_reading(&site, m, to, total));
    }
    w.write_batch(&batch, "test").expect("write");
    drop(w);
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let year = meterflow_kpi::period_of(2025, None).expect("period");
    let x = meterflow_kpi::agency_kpis(&site, &reader, "X", year).expect("kpis");
    let close = |a: f64, b: f64, tol: f64| (a - b).abs() < tol;
    // 147 480 + 60 715 + 102 360 = 310 555 kgce (E = 319 148 with the 8 593 of gasoline).
    assert!(close(x.energy_kgce, 310_555.0, 1e-6), "{x:?}");
    // Per area without vehicle fuel: 310 555 / 20 000 = 15.53 kgce/m² (domain: 15.53).
    assert!(close(x.per_area_energy.unwrap_or(0.0), 15.527_75, 1e-9));
    // 9 000 / 400 = 22.5 m³/person; 9 000 000 L / (400 × 365) = 61.6 L/person·d (domain: 61.6).
    assert!(close(x.water_per_capita.unwrap_or(0.0), 22.5, 1e-9));
    assert!(close(
        x.water_l_per_person_day.unwrap_or(0.0),
        61.643_835_6,
        1e-6
    ));
    // 310 555 / 400 = 776.3875 kgce/person.
    assert!(close(x.per_capita_energy.unwrap_or(0.0), 776.3875, 1e-9));
}
