//! Unit tests of the ledger rules: the shared checks, and derived figures
//! of each ledger against hand computations (methodology §8–§11).

use chrono::NaiveDate;
use meterflow_model::Site;
use meterflow_store::LedgerEvent;
use serde_json::json;

use crate::rules::{FIRST_YEAR, LAST_YEAR, date_field, entry_time, number, text};

fn site(extra: &str) -> Site {
    let src = format!(
        r#"
[site]
name = "t"

[[building]]
id = "B1"
total_area_m2 = 1000.0

[[agency]]
id = "fin"
name = "财政局"

[[agency]]
id = "tax"
name = "税务局"
{extra}
"#
    );
    match Site::parse(&src, std::path::Path::new("site.toml")) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn event(id: i64, ledger: &str, kind: &str, ts_ms: i64, body: serde_json::Value) -> LedgerEvent {
    LedgerEvent {
        id,
        ledger: ledger.into(),
        kind: kind.into(),
        agency: body["agency"].as_str().map(str::to_string),
        ts_ms,
        body: body.to_string(),
        corrects: None,
        void: false,
        author: "clerk".into(),
        created_ms: ts_ms,
    }
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(y, m, d) {
        Some(d) => d,
        None => panic!("{y}-{m}-{d}"),
    }
}

/// 2025-01-01T00:00+08:00.
const JAN1_2025: i64 = 1_735_660_800_000;
const DAY: i64 = 86_400_000;

#[test]
fn date_fields_are_dates_within_the_years_a_ledger_can_mean() {
    assert_eq!(date_field("until", "2031-06-30"), Ok(day(2031, 6, 30)));
    assert_eq!(date_field("acquired", "1985-03-01"), Ok(day(1985, 3, 1)));
    for bad in [
        "2025-02-30",
        "2025/01/01",
        "",
        "+262142-12-31",
        "-262143-01-01",
    ] {
        let e = date_field("until", bad).expect_err(bad);
        assert_eq!(e.0, "until", "{bad}");
    }
    // The bounds themselves are accepted, one day outside is not.
    assert!(date_field("d", &format!("{FIRST_YEAR}-01-01")).is_ok());
    assert!(date_field("d", &format!("{LAST_YEAR}-12-31")).is_ok());
    assert!(date_field("d", &format!("{}-12-31", FIRST_YEAR - 1)).is_err());
    assert!(date_field("d", &format!("{}-01-01", LAST_YEAR + 1)).is_err());
}

#[test]
fn an_entry_time_lies_between_the_site_s_earliest_date_and_a_year_ahead() {
    let earliest = 946_656_000_000; // 2000-01-01T00:00+08:00
    let now = JAN1_2025;
    assert!(entry_time(earliest, earliest, now).is_ok());
    assert!(entry_time(now + 366 * DAY, earliest, now).is_ok());
    let before = entry_time(earliest - 1, earliest, now).expect_err("before");
    assert_eq!(before.0, "time");
    assert!(before.1.contains("earliest"), "{}", before.1);
    let ahead = entry_time(now + 366 * DAY + 1, earliest, now).expect_err("ahead");
    assert!(ahead.1.contains("a year ahead"), "{}", ahead.1);
    // The extremes an attacker sends are refused, not overflowed.
    assert!(entry_time(i64::MIN, earliest, now).is_err());
    assert!(entry_time(i64::MAX, earliest, now).is_err());
}

#[test]
fn numbers_and_text_are_checked_with_the_field_named() {
    assert!(number("kg", 12.5, 0.0, 1e6).is_ok());
    for v in [f64::NAN, f64::INFINITY, -1.0, 2e6] {
        let e = number("kg", v, 0.0, 1e6).expect_err("out of range");
        assert_eq!(e.0, "kg");
    }
    assert!(text("plate", "鲁A12345").is_ok());
    assert_eq!(text("plate", "  ").expect_err("blank").0, "plate");
}

#[test]
fn a_space_entry_dated_at_the_end_of_time_is_refused_and_nothing_panics() {
    let s = site("");
    let kind = crate::find("space", "allocations").expect("kind");
    let body =
        json!({"time": "-262143-01-01", "room": "R101", "agency": "fin", "agreement": "A-1"});
    let e = crate::check(&s, kind, &[], &body).expect_err("refused");
    assert_eq!(e.0, "time", "{e:?}");
    // Even if such events were in a store from before, the derived figures
    // do not panic: two allocations of one room at the first representable day.
    let first = i64::MIN / 4;
    let events = vec![
        event(
            1,
            "space",
            "allocation",
            first,
            json!({"room": "R101", "agency": "fin", "agreement": "A-1"}),
        ),
        event(
            2,
            "space",
            "allocation",
            first,
            json!({"room": "R101", "agency": "tax", "agreement": "A-2"}),
        ),
    ];
    let periods = crate::space::allocation_periods(&s, &events);
    assert!(periods.len() <= 2);
    let _ = crate::space::merged_site(&s, &events);
}

#[test]
fn allocation_periods_end_the_day_before_the_room_s_next_allocation() {
    let s = site("");
    // R101: fin from 2025-01-01, tax from 2025-03-01; R102: fin from
    // 2025-02-01 until 2025-02-14 (its own `until`).
    let events = vec![
        event(
            1,
            "space",
            "allocation",
            JAN1_2025,
            json!({"room": "R101", "agency": "fin", "agreement": "A-1"}),
        ),
        event(
            2,
            "space",
            "allocation",
            JAN1_2025 + 31 * DAY,
            json!({"room": "R102", "agency": "fin", "agreement": "A-3", "until": "2025-02-14"}),
        ),
        event(
            3,
            "space",
            "allocation",
            JAN1_2025 + 59 * DAY,
            json!({"room": "R101", "agency": "tax", "agreement": "A-2"}),
        ),
    ];
    let p = crate::space::allocation_periods(&s, &events);
    let got: Vec<(&str, &str, NaiveDate, Option<NaiveDate>)> = p
        .iter()
        .map(|p| (p.room.as_str(), p.agency.as_str(), p.from, p.to))
        .collect();
    assert_eq!(
        got,
        vec![
            ("R101", "fin", day(2025, 1, 1), Some(day(2025, 2, 28))),
            ("R102", "fin", day(2025, 2, 1), Some(day(2025, 2, 14))),
            ("R101", "tax", day(2025, 3, 1), None),
        ]
    );
}

#[test]
fn waste_recovery_rate_points_and_the_veto_by_hand() {
    let s = site(
        "[waste]\nprice_per_kg = { recyclable = 0.5, kitchen = 0.2 }\npoint_value_cny = 0.1\nrecovery_target_pct = 35\n",
    );
    let w = |agency: &str, category: &str, kg: f64, destination: &str| crate::waste::WeighIn {
        agency: agency.into(),
        point: "P1".into(),
        category: category.into(),
        kg,
        destination: destination.into(),
        company: None,
        receipt: None,
    };
    let ins = vec![
        w("fin", "recyclable", 40.0, "recycling"),
        w("fin", "kitchen", 30.0, "composting"),
        w("fin", "kitchen", 10.0, "incineration"),
        w("fin", "residual", 120.0, "incineration"),
    ];
    let out = crate::waste::summarize(&s, &ins);
    let fin = out.iter().find(|x| x.agency == "fin").expect("fin");
    // Total 40 + 30 + 10 + 120 = 200 kg; recovered 40 + 30 = 70 kg (the
    // incinerated kitchen waste is not) → 35.0 %, which meets 35 %.
    assert_eq!(fin.total_kg, 200.0);
    assert_eq!(fin.recovered_kg, 70.0);
    assert_eq!(fin.recovery_rate_pct, Some(35.0));
    assert_eq!(fin.meets_target, Some(true));
    // Points: (40 × 0.5 + 40 × 0.2) CNY / 0.1 CNY a point = 28 / 0.1 = 280.
    let pts = fin.points.expect("points");
    assert!((pts - 280.0).abs() < 1e-9, "{pts}");
    assert!(!fin.veto);
    // tax has no weigh-in this year: no rate, and the one-vote veto.
    let tax = out.iter().find(|x| x.agency == "tax").expect("tax");
    assert_eq!(tax.recovery_rate_pct, None);
    assert!(tax.veto);
}

#[test]
fn a_weigh_in_names_the_field_it_fails_on() {
    let s = site("");
    let ok = crate::waste::WeighIn {
        agency: "fin".into(),
        point: "P1".into(),
        category: "kitchen".into(),
        kg: 2.0,
        destination: "composting".into(),
        company: None,
        receipt: None,
    };
    assert!(ok.check(&s).is_ok());
    let field = |f: &dyn Fn(&mut crate::waste::WeighIn)| {
        let mut w = ok.clone();
        f(&mut w);
        w.check(&s).expect_err("refused").0
    };
    assert_eq!(field(&|w| w.agency = "nope".into()), "agency");
    assert_eq!(field(&|w| w.point = " ".into()), "point");
    assert_eq!(field(&|w| w.category = "厨余垃圾".into()), "category");
    assert_eq!(field(&|w| w.kg = 0.0), "kg");
    assert_eq!(field(&|w| w.kg = f64::NAN), "kg");
    assert_eq!(field(&|w| w.destination = "river".into()), "destination");
}

#[test]
fn straight_line_net_book_value_by_hand() {
    use crate::assets::net_book_value;
    // 12 000 CNY over 5 years = 60 months, 200 CNY a month, counting the
    // month of acquisition: March 2024 → December 2024 is 10 months,
    // 2 000 depreciated, 10 000 left.
    assert_eq!(
        net_book_value(12_000.0, 5.0, day(2024, 3, 15), day(2024, 12, 31)),
        10_000.0
    );
    // Before acquisition: the full value; after the life: zero.
    assert_eq!(
        net_book_value(12_000.0, 5.0, day(2024, 3, 15), day(2024, 1, 1)),
        12_000.0
    );
    assert_eq!(
        net_book_value(12_000.0, 5.0, day(2024, 3, 15), day(2035, 1, 1)),
        0.0
    );
}
