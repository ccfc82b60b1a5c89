//! Denominators and allocation on a hand-computed fixture.
//!
//! Building B1 (1 000 m²): zone Z1 (400 m²), zone Z2 (600 m²).
//! Agency A: 100 persons from 2025-01-01, 120 from 2025-07-01; 300 m² in Z1 all year.
//! Agency C: 50 persons; 100 m² in Z1 until 2025-06-30, then 200 m² in Z2 (moved floors).

use std::path::Path;

use chrono::{Datelike, NaiveDate};
use meterflow_model::Site;

use crate::denominators::{
    Period, agency_consumption, area_on, persons_on, shares_on, time_weighted,
};
use crate::kpi::{Carriers, comprehensive_energy, per};

const SITE: &str = r#"
[site]
name = "fixture"

[[building]]
id = "B1"
total_area_m2 = 1000

[[zone]]
id = "Z1"
building = "B1"
area_m2 = 400

[[zone]]
id = "Z2"
building = "B1"
area_m2 = 600

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
agency = "A"
from = 2025-07-01
persons = 120

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
to = 2025-06-30
area_m2 = 100

[[space]]
agency = "C"
zone = "Z2"
from = 2025-07-01
area_m2 = 200

[[meter]]
id = "M1"
kind = "electricity"
unit = "kWh"
serves = { zone = "Z1" }

[[meter]]
id = "M2"
kind = "electricity"
unit = "kWh"
serves = { building = "B1" }

[[meter]]
id = "M3"
kind = "electricity"
unit = "kWh"
serves = { agencies = ["A", "C"] }
allocation = "fixed"
shares = { A = 0.7, C = 0.3 }

[[meter]]
id = "M4"
kind = "electricity"
unit = "kWh"
serves = { agency = "A" }
"#;

fn site() -> Site {
    match Site::parse(SITE, Path::new("fixture.toml")) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
}

fn year() -> Period {
    Period {
        from: d(2025, 1, 1),
        to: d(2026, 1, 1),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn headcount_is_time_weighted_over_the_year() {
    let s = site();
    assert_eq!(persons_on(&s, "A", d(2025, 6, 30)), 100.0);
    assert_eq!(persons_on(&s, "A", d(2025, 7, 1)), 120.0);
    // Jan 1 – Jun 30: 181 days × 100; Jul 1 – Dec 31: 184 days × 120.
    // (18 100 + 22 080) / 365 = 40 180 / 365 = 110.0822 (docs/methodology.md §3: "110 for the year").
    let p = time_weighted(year(), |day| persons_on(&s, "A", day)).unwrap_or(0.0);
    assert!(close(p, 40_180.0 / 365.0), "{p}");
    // July alone: 120 every day.
    let july = Period {
        from: d(2025, 7, 1),
        to: d(2025, 8, 1),
    };
    assert_eq!(
        time_weighted(july, |day| persons_on(&s, "A", day)),
        Some(120.0)
    );
}

#[test]
fn area_follows_the_move_and_is_time_weighted() {
    let s = site();
    assert_eq!(area_on(&s, "C", d(2025, 6, 30), None), 100.0);
    assert_eq!(area_on(&s, "C", d(2025, 7, 1), None), 200.0);
    // (181 × 100 + 184 × 200) / 365 = 54 900 / 365 = 150.4110
    let a = time_weighted(year(), |day| area_on(&s, "C", day, None)).unwrap_or(0.0);
    assert!(close(a, 54_900.0 / 365.0), "{a}");
}

#[test]
fn shares_by_occupied_area_fixed_and_direct() {
    let s = site();
    let m = |id: &str| s.meter(id).cloned().unwrap_or_else(|| panic!("meter {id}"));
    // Z1 in March: A 300, C 100 → 0.75 / 0.25. In August only A occupies Z1 → 1.0.
    let mar = shares_on(&s, &m("M1"), d(2025, 3, 1));
    assert!(close(mar["A"], 0.75) && close(mar["C"], 0.25), "{mar:?}");
    let aug = shares_on(&s, &m("M1"), d(2025, 8, 1));
    assert!(close(aug["A"], 1.0) && !aug.contains_key("C"), "{aug:?}");
    // Building B1 in August: A 300 (Z1), C 200 (Z2) → 0.6 / 0.4.
    let b = shares_on(&s, &m("M2"), d(2025, 8, 1));
    assert!(close(b["A"], 0.6) && close(b["C"], 0.4), "{b:?}");
    // Fixed 0.7 / 0.3 whatever the areas; direct: all to A.
    let f = shares_on(&s, &m("M3"), d(2025, 8, 1));
    assert!(close(f["A"], 0.7) && close(f["C"], 0.3));
    assert_eq!(shares_on(&s, &m("M4"), d(2025, 8, 1)).get("A"), Some(&1.0));
}

#[test]
fn agency_consumption_uses_the_shares_of_each_day() {
    let s = site();
    // M2 (building B1) uses 20 kWh every day. June (30 days): shares 0.75/0.25 →
    // A 450, C 150. July (31 days): 0.6/0.4 → A 372, C 248.
    let daily = |meter: &str, _day: NaiveDate| if meter == "M2" { 20.0 } else { 0.0 };
    let june = Period {
        from: d(2025, 6, 1),
        to: d(2025, 7, 1),
    };
    let july = Period {
        from: d(2025, 7, 1),
        to: d(2025, 8, 1),
    };
    let c = |agency: &str, p: Period| agency_consumption(&s, agency, p, s.meters.iter(), daily);
    assert!(close(c("A", june), 450.0) && close(c("C", june), 150.0));
    assert!(close(c("A", july), 372.0) && close(c("C", july), 248.0));
    // Nothing is created or lost: the agencies' parts add up to the meter's 20 × 61 = 1 220 kWh.
    let both = Period {
        from: d(2025, 6, 1),
        to: d(2025, 8, 1),
    };
    assert!(close(c("A", both) + c("C", both), 1_220.0));
}

#[test]
fn per_capita_energy_with_the_time_weighted_headcount() {
    let s = site();
    // M4 serves A directly: 5 kWh a day for 2025 = 1 825 kWh → 1 825 × 0.1229 = 224.2925 kgce.
    let daily = |meter: &str, _day: NaiveDate| if meter == "M4" { 5.0 } else { 0.0 };
    let kwh = agency_consumption(&s, "A", year(), s.meters.iter(), daily);
    assert!(close(kwh, 1_825.0));
    let e = comprehensive_energy(
        &Carriers {
            electricity_kwh: kwh,
            ..Carriers::default()
        },
        &s.factors,
        &s.site.factor_set,
        2025,
    )
    .map(|e| e.total)
    .unwrap_or(0.0);
    assert!((e - 224.2925).abs() < 1e-9, "{e}");
    // ÷ 40 180 / 365 persons = 224.2925 × 365 / 40 180 = 2.037 5 kgce/person·a.
    let persons = time_weighted(year(), |day| persons_on(&s, "A", day)).unwrap_or(0.0);
    let pc = per(e, persons).unwrap_or(0.0);
    assert!(
        (pc - 224.2925 * 365.0 / 40_180.0).abs() < 1e-9 && (pc - 2.0375).abs() < 5e-5,
        "{pc}"
    );
}

/// The fixture with a level-1 meter P over the building, parent of M4.
fn site_with_parent() -> Site {
    let src = SITE.replace(
        "[[meter]]\nid = \"M4\"",
        "[[meter]]\nid = \"P\"\nkind = \"electricity\"\nunit = \"kWh\"\nlevel = 1\nserves = { building = \"B1\" }\n\n[[meter]]\nid = \"M4\"\nparent = \"P\"",
    );
    match Site::parse(&src, Path::new("fixture.toml")) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// A parent meter and a sub-meter below it: every kWh counts once. The parent
/// contributes only its remainder (own − children), split by its own rule.
#[test]
fn a_parent_meter_contributes_only_its_remainder() {
    let s = site_with_parent();
    // One day in March: P reads 100 kWh; its child M4 (A direct) 30 kWh.
    // P's remainder 70 is split by building area (A 300 : C 100) → A 52.5, C 17.5.
    // A = 30 + 52.5 = 82.5; C = 17.5; together 100 = the parent: nothing counted twice.
    let daily = |meter: &str, _day: NaiveDate| match meter {
        "P" => 100.0,
        "M4" => 30.0,
        _ => 0.0,
    };
    let day = Period {
        from: d(2025, 3, 1),
        to: d(2025, 3, 2),
    };
    let a = agency_consumption(&s, "A", day, s.meters.iter(), daily);
    let c = agency_consumption(&s, "C", day, s.meters.iter(), daily);
    assert!(close(a, 82.5) && close(c, 17.5), "A {a}, C {c}");
}

#[test]
fn the_site_total_is_what_the_root_meters_read() {
    let s = site_with_parent();
    // P 100 (with child M4 30) and M1 (a root meter) 10: the site used 110, not 140.
    let daily = |meter: &str, _day: NaiveDate| match meter {
        "P" => 100.0,
        "M4" => 30.0,
        "M1" => 10.0,
        _ => 0.0,
    };
    let day = Period {
        from: d(2025, 3, 1),
        to: d(2025, 3, 2),
    };
    assert!(close(
        crate::denominators::site_consumption(&s, day, s.meters.iter(), daily),
        110.0
    ));
    // 100 + 50 persons; building B1 has no office area → its total 1 000 m².
    assert_eq!(
        crate::denominators::site_persons_on(&s, d(2025, 3, 1)),
        150.0
    );
    assert_eq!(crate::denominators::site_area(&s), 1000.0);
}

#[test]
fn balance_and_imbalanced_days_of_a_parent_meter() {
    let s = site_with_parent();
    let p = s.meter("P").cloned().unwrap_or_else(|| panic!("P"));
    // P reads 100 each day; its child M4 reads 95 on 1 March and 60 on 2 March.
    // Remainders 5 (5 %) and 40 (40 %); with a 10 % tolerance only 2 March is flagged.
    let daily = |meter: &str, day: NaiveDate| match (meter, day.day()) {
        ("P", _) => 100.0,
        ("M4", 1) => 95.0,
        ("M4", _) => 60.0,
        _ => 0.0,
    };
    assert_eq!(
        crate::denominators::balance(&s, &p, d(2025, 3, 1), daily),
        Some((100.0, 95.0, 5.0))
    );
    let two = Period {
        from: d(2025, 3, 1),
        to: d(2025, 3, 3),
    };
    assert_eq!(
        crate::denominators::imbalanced_days(&s, &p, two, 0.10, daily),
        vec![(d(2025, 3, 2), 40.0)]
    );
    // A meter without children has no balance.
    let m4 = s.meter("M4").cloned().unwrap_or_else(|| panic!("M4"));
    assert_eq!(
        crate::denominators::balance(&s, &m4, d(2025, 3, 1), daily),
        None
    );
}
