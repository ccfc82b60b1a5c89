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
    // Dates as clerks write them.
    assert_eq!(date_field("until", "2025/01/01"), Ok(day(2025, 1, 1)));
    assert_eq!(date_field("until", "2025年1月1日"), Ok(day(2025, 1, 1)));
    for bad in [
        "2025-02-30",
        "2025年2月30日",
        "2025/01/01 08:00",
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

#[test]
fn vehicle_entries_are_checked_against_the_registry() {
    let s = site("");
    let kind = |path: &str| crate::find("vehicles", path).expect("kind");
    let reg = json!({"time": "2025-01-01", "plate": "鲁A-001", "agency": "fin", "fuel": "gasoline", "purpose": "general", "odometer_km": 10000});
    let c = crate::check(&s, kind("vehicles"), &[], &reg).expect("registered");
    let state = vec![crate::as_event(kind("vehicles"), &c, 1, "clerk")];
    let field = |path: &str, body: serde_json::Value, state: &[LedgerEvent]| {
        crate::check(&s, kind(path), state, &body)
            .expect_err("refused")
            .0
    };
    // The same plate twice, an unknown fuel or purpose, a trip or fill of a
    // vehicle nobody registered, a negative odometer: each names its field.
    assert_eq!(field("vehicles", reg.clone(), &state), "plate");
    assert_eq!(
        field(
            "vehicles",
            json!({"time": "2025-01-01", "plate": "鲁A-002", "agency": "fin", "fuel": "coal", "purpose": "general"}),
            &state
        ),
        "fuel"
    );
    assert_eq!(
        field(
            "vehicles",
            json!({"time": "2025-01-01", "plate": "鲁A-002", "agency": "fin", "fuel": "diesel", "purpose": "shopping"}),
            &state
        ),
        "purpose"
    );
    assert_eq!(
        field(
            "trips",
            json!({"time": "2025-02-01", "plate": "鲁X-404", "start_km": 0, "end_km": 5}),
            &state
        ),
        "plate"
    );
    assert_eq!(
        field(
            "trips",
            json!({"time": "2025-02-01", "plate": "鲁A-001", "start_km": -1, "end_km": 5}),
            &state
        ),
        "start_km"
    );
    assert_eq!(
        field(
            "fuel-fills",
            json!({"time": "2025-02-01", "plate": "鲁A-001", "litres": 0, "amount_cny": 0}),
            &state
        ),
        "litres"
    );
    assert_eq!(
        field(
            "maintenance",
            json!({"time": "2025-02-01", "plate": "鲁A-001", "work": "polish", "amount_cny": 1, "odometer_km": 10100}),
            &state
        ),
        "work"
    );
}

#[test]
fn a_vehicle_year_by_hand() {
    let s = site("");
    let d = |day: i64| JAN1_2025 + day * DAY;
    let v = |id, kind, day, body: serde_json::Value| event(id, "vehicles", kind, d(day), body);
    let events = vec![
        v(
            1,
            "vehicle",
            0,
            json!({"plate": "鲁A-001", "agency": "fin", "fuel": "gasoline", "purpose": "general", "odometer_km": 10000.0}),
        ),
        // 300 km; then an end below its start (no km, anomaly); then a start
        // below the 10 300 already read (anomaly, its 400 km still count).
        v(
            2,
            "trip",
            10,
            json!({"plate": "鲁A-001", "start_km": 10000.0, "end_km": 10300.0}),
        ),
        v(
            3,
            "trip",
            11,
            json!({"plate": "鲁A-001", "start_km": 10300.0, "end_km": 10200.0}),
        ),
        v(
            4,
            "trip",
            12,
            json!({"plate": "鲁A-001", "start_km": 10250.0, "end_km": 10650.0}),
        ),
        v(
            5,
            "fuel",
            13,
            json!({"plate": "鲁A-001", "litres": 30.0, "amount_cny": 240.0}),
        ),
        v(
            6,
            "fuel",
            20,
            json!({"plate": "鲁A-001", "litres": 27.0, "amount_cny": 216.0}),
        ),
        v(
            7,
            "maintenance",
            21,
            json!({"plate": "鲁A-001", "work": "routine", "amount_cny": 500.0, "odometer_km": 10650.0}),
        ),
        v(
            8,
            "insurance",
            22,
            json!({"plate": "鲁A-001", "amount_cny": 3000.0}),
        ),
        v(
            9,
            "toll",
            23,
            json!({"plate": "鲁A-001", "amount_cny": 50.0}),
        ),
    ];
    let y = crate::vehicles::summarize(&s, &events, JAN1_2025, JAN1_2025 + 365 * DAY);
    let car = &y.vehicles[0];
    // km = 300 + 400 = 700; litres 30 + 27 = 57; 57 / 700 × 100 = 8.142857 L/100 km.
    assert_eq!((car.trips, car.km, car.litres), (3, 700.0, 57.0));
    let l100 = car.l_per_100km.expect("L/100 km");
    assert!((l100 - 57.0 / 7.0).abs() < 1e-9, "{l100}");
    // Cost: fuel 240 + 216 = 456, maintenance 500, insurance 3 000, toll 50.
    assert_eq!(car.cost_cny["fuel"], 456.0);
    assert_eq!(car.total_cny, 456.0 + 500.0 + 3000.0 + 50.0);
    let kinds: Vec<&str> = car.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec!["end_below_start", "went_back"]);
    // Routine every 2 500 km from the last one (10 650): next at 13 150,
    // 2 500 km left at the 10 650 km the odometer reached. Service every
    // 7 000 km from registration (10 000): 17 000.
    let due = |w: &str| car.maintenance.iter().find(|m| m.work == w).expect(w);
    assert_eq!(
        (due("routine").next_km, due("routine").km_left),
        (13_150.0, 2_500.0)
    );
    assert_eq!(due("service").next_km, 17_000.0);
    assert!(car.maintenance.iter().all(|m| !m.due));
    // The agency's fuel for its comprehensive energy: 57 L of gasoline.
    assert_eq!(y.litres_by_agency["fin"]["gasoline"], 57.0);
}

#[test]
fn office_space_per_person_over_standard_and_idle_by_hand() {
    let s = site("[office]\nlevel = \"city\"\n");
    let sp = |id, kind, body: serde_json::Value| event(id, "space", kind, JAN1_2025, body);
    let events = vec![
        sp(
            1,
            "room",
            json!({"room": "R1", "building": "B1", "use_type": "office", "usable_m2": 30.0}),
        ),
        sp(
            2,
            "room",
            json!({"room": "R2", "building": "B1", "use_type": "office", "usable_m2": 20.0}),
        ),
        sp(
            3,
            "room",
            json!({"room": "R3", "building": "B1", "use_type": "office", "usable_m2": 16.0}),
        ),
        sp(
            4,
            "room",
            json!({"room": "M1", "building": "B1", "use_type": "service", "usable_m2": 40.0}),
        ),
        sp(
            5,
            "allocation",
            json!({"room": "R1", "agency": "fin", "agreement": "A-1"}),
        ),
        sp(
            6,
            "allocation",
            json!({"room": "R2", "agency": "fin", "agreement": "A-1"}),
        ),
        sp(
            7,
            "allocation",
            json!({"room": "R3", "agency": "fin", "agreement": "A-1"}),
        ),
        sp(
            8,
            "allocation",
            json!({"room": "M1", "agency": "fin", "agreement": "A-1"}),
        ),
        // R1: one 正局处 (24 m²) in 30 m² → over the standard by 6 m².
        sp(
            9,
            "occupant",
            json!({"person": "张", "agency": "fin", "rank": "正局处", "room": "R1"}),
        ),
        // R2: two 以下 (9 + 9 = 18 m²) in 20 m² → over by 2 m².
        sp(
            10,
            "occupant",
            json!({"person": "李", "agency": "fin", "rank": "以下", "room": "R2"}),
        ),
        sp(
            11,
            "occupant",
            json!({"person": "王", "agency": "fin", "rank": "以下", "room": "R2"}),
        ),
        // R3 is allocated but nobody sits there: idle.
    ];
    let sum = crate::space::summarize(&s, &events, day(2025, 6, 30));
    let fin = sum
        .agencies
        .iter()
        .find(|a| a.agency == "fin")
        .expect("fin");
    // Usable 30 + 20 + 16 + 40 = 106 m², of which offices 66; 3 occupants:
    // 66 / 3 = 22 m² per person against a standard of 24 + 9 + 9 = 42 m²
    // for the occupied rooms.
    assert_eq!((fin.rooms, fin.usable_m2, fin.office_m2), (4, 106.0, 66.0));
    assert_eq!(fin.occupants, 3);
    assert_eq!(fin.m2_per_person, Some(22.0));
    assert_eq!(fin.standard_m2, 42.0);
    // Offices 66 m² > 42 m²: over; rooms over their occupants' standard: R1, R2.
    assert!(fin.over_standard);
    assert_eq!(
        fin.over_standard_rooms,
        vec!["R1".to_string(), "R2".to_string()]
    );
    // Idle: R3 (16 m²) of 106 m² usable = 15.094 %; the service room is never idle.
    assert_eq!(fin.idle_rooms, vec!["R3".to_string()]);
    assert_eq!(fin.idle_m2, 16.0);
    let rate = fin.idle_rate_pct.expect("rate");
    assert!((rate - 16.0 / 106.0 * 100.0).abs() < 1e-9, "{rate}");
}

#[test]
fn an_inventory_round_finds_the_missing_the_misplaced_and_the_unexpected() {
    use crate::assets::{Scope, locate, reconcile};
    let s = site("");
    let card = |id, epc: &str, agency: &str, room: &str| {
        event(
            id,
            "assets",
            "card",
            JAN1_2025,
            json!({"epc": epc, "category": "desk", "value_cny": 1200.0, "life_years": 5.0, "agency": agency, "room": room}),
        )
    };
    let scan = |id, day: i64, epc: &str, room: &str| {
        event(
            id,
            "assets",
            "scan",
            JAN1_2025 + day * DAY,
            json!({"epc": epc, "room": room}),
        )
    };
    let events = vec![
        card(1, "E1", "fin", "R1"),
        card(2, "E2", "fin", "R1"),
        card(3, "E3", "fin", "R2"),
        card(4, "E4", "tax", "R9"),
        card(5, "E5", "fin", "R1"),
        card(11, "E6", "fin", "R1"),
        // E3 moves to R1 by a transfer; E5 is disposed of.
        event(
            6,
            "assets",
            "event",
            JAN1_2025 + 5 * DAY,
            json!({"epc": "E3", "action": "transfer", "room": "R1"}),
        ),
        event(
            7,
            "assets",
            "event",
            JAN1_2025 + 6 * DAY,
            json!({"epc": "E5", "action": "dispose"}),
        ),
        // The round on days 10–11: E1 at home in R1, E2 seen only in R2,
        // E3 seen in R1 (home since the transfer), tax's E4 seen in R1, E6
        // not seen at all.
        scan(8, 10, "E1", "R1"),
        scan(9, 10, "E3", "R1"),
        scan(10, 10, "E4", "R1"),
        scan(12, 11, "E2", "R2"),
    ];
    let at = locate(&events, JAN1_2025 + 20 * DAY, s.tz);
    assert_eq!(at["E3"].room.as_deref(), Some("R1"));
    assert!(at["E5"].disposed);
    let r = reconcile(
        &s,
        &events,
        &Scope::Room("R1".into()),
        JAN1_2025 + 9 * DAY,
        JAN1_2025 + 12 * DAY,
    );
    // Expected in R1: E1, E2, E3, E6 (E5 is disposed of) → 4; found E1 and
    // E3; E2 misplaced (seen in R2), E6 missing; tax's E4 unexpected in R1.
    assert_eq!((r.expected, r.found), (4, 2));
    let epcs = |v: &[crate::assets::Finding]| v.iter().map(|f| f.epc.clone()).collect::<Vec<_>>();
    assert_eq!(epcs(&r.missing), vec!["E6"]);
    assert_eq!(epcs(&r.misplaced), vec!["E2"]);
    assert_eq!(r.misplaced[0].seen_in, vec!["R2".to_string()]);
    assert_eq!(epcs(&r.unexpected), vec!["E4"]);
    assert_eq!(r.unexpected[0].expected_room.as_deref(), Some("R9"));
    // For the agency fin: the same four expected (all in R1), and tax's E4
    // seen in fin's room R1 is unexpected.
    let f = reconcile(
        &s,
        &events,
        &Scope::Agency("fin".into()),
        JAN1_2025 + 9 * DAY,
        JAN1_2025 + 12 * DAY,
    );
    assert_eq!((f.expected, f.found), (4, 2));
    assert_eq!(epcs(&f.unexpected), vec!["E4"]);
}

/// Every other kind of entry names the field it fails on.
#[test]
fn space_asset_and_remaining_vehicle_entries_name_their_field() {
    let s = site("[office]\nlevel = \"city\"\n");
    let kind = |ledger: &str, path: &str| crate::find(ledger, path).expect("kind");
    let ok = |ledger: &str, path: &str, state: &[LedgerEvent], body: serde_json::Value, id: i64| {
        let k = kind(ledger, path);
        let c = crate::check(&s, k, state, &body).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        crate::as_event(k, &c, id, "clerk")
    };
    let field = |ledger: &str, path: &str, state: &[LedgerEvent], body: serde_json::Value| {
        crate::check(&s, kind(ledger, path), state, &body)
            .expect_err("refused")
            .0
    };
    let t = "2025-03-01";
    // Space: rooms, occupants, headcounts.
    let mut space = vec![ok(
        "space",
        "rooms",
        &[],
        json!({"time": t, "room": "R1", "building": "B1", "use_type": "office", "usable_m2": 18.0}),
        1,
    )];
    assert_eq!(
        field(
            "space",
            "rooms",
            &space,
            json!({"time": t, "room": "R2", "building": "B9", "use_type": "office", "usable_m2": 18.0})
        ),
        "building"
    );
    assert_eq!(
        field(
            "space",
            "rooms",
            &space,
            json!({"time": t, "room": "R2", "building": "B1", "use_type": "gym", "usable_m2": 18.0})
        ),
        "use_type"
    );
    assert_eq!(
        field(
            "space",
            "rooms",
            &space,
            json!({"time": t, "room": "R2", "building": "B1", "use_type": "office", "usable_m2": 0.0})
        ),
        "usable_m2"
    );
    // A building area below the usable area is impossible.
    assert_eq!(
        field(
            "space",
            "rooms",
            &space,
            json!({"time": t, "room": "R2", "building": "B1", "use_type": "office", "usable_m2": 18.0, "area_m2": 10.0})
        ),
        "area_m2"
    );
    assert_eq!(
        field(
            "space",
            "allocations",
            &space,
            json!({"time": t, "room": "R9", "agency": "fin", "agreement": "A"})
        ),
        "room"
    );
    assert_eq!(
        field(
            "space",
            "allocations",
            &space,
            json!({"time": t, "room": "R1", "agency": "fin", "agreement": "A", "until": "2025-02-01"})
        ),
        "until"
    );
    space.push(ok(
        "space",
        "occupants",
        &space,
        json!({"time": t, "person": "张", "agency": "fin", "rank": "以下", "room": "R1"}),
        2,
    ));
    assert_eq!(
        field(
            "space",
            "occupants",
            &space,
            json!({"time": t, "person": "李", "agency": "fin", "rank": "部长", "room": "R1"})
        ),
        "rank"
    );
    assert_eq!(
        field(
            "space",
            "occupants",
            &space,
            json!({"time": t, "person": "李", "agency": "nope", "rank": "以下"})
        ),
        "agency"
    );
    assert_eq!(
        field(
            "space",
            "headcounts",
            &space,
            json!({"time": t, "agency": "fin", "persons": -1})
        ),
        "persons"
    );
    // Assets: cards, events, scans.
    let card = json!({"time": t, "epc": "E1", "category": "desk", "value_cny": 1200.0, "life_years": 5.0, "agency": "fin", "room": "R1"});
    let mut assets = vec![ok("assets", "cards", &[], card.clone(), 10)];
    assert_eq!(field("assets", "cards", &assets, card), "epc");
    assert_eq!(
        field(
            "assets",
            "cards",
            &assets,
            json!({"time": t, "epc": "E2", "category": "desk", "value_cny": 1.0, "life_years": 0.0, "agency": "fin"})
        ),
        "life_years"
    );
    assert_eq!(
        field(
            "assets",
            "events",
            &assets,
            json!({"time": t, "epc": "E9", "action": "repair"})
        ),
        "epc"
    );
    assert_eq!(
        field(
            "assets",
            "events",
            &assets,
            json!({"time": t, "epc": "E1", "action": "steal"})
        ),
        "action"
    );
    assets.push(ok(
        "assets",
        "events",
        &assets,
        json!({"time": t, "epc": "E1", "action": "dispose"}),
        11,
    ));
    assert_eq!(
        field(
            "assets",
            "events",
            &assets,
            json!({"time": t, "epc": "E1", "action": "repair"})
        ),
        "epc"
    );
    assert_eq!(
        field(
            "assets",
            "scans",
            &assets,
            json!({"time": t, "epc": "E1", "room": ""})
        ),
        "room"
    );
    // Vehicles: insurance, tolls, disposal of an unknown plate; a negative toll.
    let v = vec![ok(
        "vehicles",
        "vehicles",
        &[],
        json!({"time": "2025-01-01", "plate": "鲁A-001", "agency": "fin", "fuel": "diesel", "purpose": "enforcement"}),
        20,
    )];
    assert_eq!(
        field(
            "vehicles",
            "insurance",
            &v,
            json!({"time": t, "plate": "鲁A-009", "amount_cny": 1.0})
        ),
        "plate"
    );
    assert_eq!(
        field(
            "vehicles",
            "tolls",
            &v,
            json!({"time": t, "plate": "鲁A-001", "amount_cny": -5.0})
        ),
        "amount_cny"
    );
    assert_eq!(
        field(
            "vehicles",
            "disposals",
            &v,
            json!({"time": t, "plate": "鲁A-009"})
        ),
        "plate"
    );
}

#[test]
fn assets_by_agency_and_idle_by_hand() {
    let s = site("");
    let card = |id, epc: &str, value: f64| {
        event(
            id,
            "assets",
            "card",
            JAN1_2025,
            json!({"epc": epc, "category": "pc", "value_cny": value, "life_years": 5.0, "agency": "fin", "room": "R1"}),
        )
    };
    let events = vec![
        card(1, "P1", 6000.0),
        card(2, "P2", 3000.0),
        // P2 scanned on day 100; P1 not since its card.
        event(
            3,
            "assets",
            "scan",
            JAN1_2025 + 100 * DAY,
            json!({"epc": "P2", "room": "R1"}),
        ),
    ];
    // On day 120 (2025-05-01) with a 90-day threshold: P1 idle (120 days), P2 not (20).
    let idle = crate::assets::idle(&s, &events, JAN1_2025 + 120 * DAY, 90);
    assert_eq!(
        idle.iter().map(|a| a.epc.as_str()).collect::<Vec<_>>(),
        vec!["P1"]
    );
    let fin = crate::assets::by_agency(&s, &events, day(2025, 5, 1), 90)
        .into_iter()
        .find(|a| a.agency == "fin")
        .expect("fin");
    // 9 000 CNY over 60 months, January to May counted: 5 months,
    // 9 000 × 5 / 60 = 750 depreciated, 8 250 left.
    assert_eq!((fin.count, fin.value_cny, fin.idle), (2, 9000.0, 1));
    assert_eq!(fin.net_book_value_cny, 8250.0);
}

/// What clerks type: `厨余垃圾`, `2026年12月2日`, `"2.0"`, `堆肥` are read as
/// `kitchen`, 2026-12-02, 2.0 and `composting`; an unknown category is
/// refused with the codes and their Chinese names; a trip ending below its
/// start is refused at entry, naming `end_km`.
#[test]
fn entries_are_read_as_clerks_write_them() {
    let s = site("");
    let weigh = crate::find("waste", "weigh-ins").expect("kind");
    let c = crate::check(
        &s,
        weigh,
        &[],
        &json!({"time": "2026年12月2日", "agency": "fin", "point": "P1", "category": "厨余垃圾", "kg": "2.0", "destination": "堆肥"}),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.body["category"], "kitchen");
    assert_eq!(c.body["kg"], 2.0);
    assert_eq!(c.body["destination"], "composting");
    // 2026-12-02 00:00 in Shanghai = 2026-12-01T16:00Z.
    assert_eq!(c.ts_ms, 1_796_140_800_000);
    let same = crate::check(
        &s,
        weigh,
        &[],
        &json!({"time": "2026/12/2", "agency": "fin", "point": "P1", "category": "kitchen", "kg": 2, "destination": "composting"}),
    )
    .expect("the coded form");
    assert_eq!(same.ts_ms, c.ts_ms);
    assert_eq!(same.body, c.body);
    let e = crate::check(
        &s,
        weigh,
        &[],
        &json!({"time": "2026-12-02", "agency": "fin", "point": "P1", "category": "大件垃圾", "kg": 2, "destination": "composting"}),
    )
    .expect_err("unknown category");
    assert_eq!(e.0, "category");
    assert!(e.1.contains("kitchen (厨余垃圾)"), "{}", e.1);
    let e = crate::check(
        &s,
        weigh,
        &[],
        &json!({"time": "2026-12-02", "agency": "fin", "point": "P1", "category": "kitchen", "kg": "两公斤", "destination": "composting"}),
    )
    .expect_err("not a number");
    assert_eq!(e.0, "kg");

    let vehicles = crate::find("vehicles", "vehicles").expect("kind");
    let trips = crate::find("vehicles", "trips").expect("kind");
    let reg = json!({"time": "2025-01-01", "plate": "鲁A-001", "agency": "fin", "fuel": "汽油", "purpose": "一般公务"});
    let c = crate::check(&s, vehicles, &[], &reg).expect("registered");
    assert_eq!(
        (c.body["fuel"].as_str(), c.body["purpose"].as_str()),
        (Some("gasoline"), Some("general"))
    );
    let state = vec![crate::as_event(vehicles, &c, 1, "clerk")];
    let e = crate::check(
        &s,
        trips,
        &state,
        &json!({"time": "2025-02-01", "plate": "鲁A-001", "start_km": 10800, "end_km": 10700}),
    )
    .expect_err("end below start");
    assert_eq!(e.0, "end_km", "{e:?}");
    assert!(crate::check(
        &s,
        trips,
        &state,
        &json!({"time": "2025-02-01", "plate": "鲁A-001", "start_km": "10,700", "end_km": "10800"}),
    )
    .is_ok());
}

#[test]
fn import_columns_by_chinese_label_agencies_by_name_and_excel_dates() {
    let s = site("");
    let weigh = crate::find("waste", "weigh-ins").expect("kind");
    let agency = s.agencies.first().expect("an agency");
    // A sheet as a clerk makes it: Chinese column labels, the agency by its
    // name, the day as an Excel serial (46358 = 2026-12-02), a number as text.
    let headers: Vec<String> = ["称重时间", "单位", "投放点", "类别", "重量(kg)", "去向"]
        .iter()
        .map(|h| h.to_string())
        .collect();
    crate::csv_header(weigh, &headers).expect("labels name the columns");
    let row: Vec<String> = ["46358", &agency.name, "P1", "厨余垃圾", "1,234.5", "堆肥"]
        .iter()
        .map(|c| c.to_string())
        .collect();
    let v = crate::csv_row(weigh, &headers, &row).expect("row");
    assert_eq!(v["time"], "2026-12-02");
    assert_eq!(v["kg"], 1234.5);
    let c = crate::check(&s, weigh, &[], &v).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.agency.as_deref(), Some(agency.id.as_str()));
    assert_eq!(c.body["agency"], agency.id.as_str());
    // 2026-12-02 00:00 in Shanghai = 2026-12-01T16:00Z.
    assert_eq!(c.ts_ms, 1_796_140_800_000);
    // A required column missing is named with its label.
    let e = crate::csv_header(weigh, &headers[..5]).expect_err("no destination");
    assert_eq!(e.0, "destination");
    assert!(e.1.contains("去向"), "{e:?}");
}

#[test]
fn an_odometer_below_one_read_before_is_a_warning_to_confirm() {
    let s = site("");
    let agency = s.agencies.first().expect("an agency").id.clone();
    let vehicle = crate::find("vehicles", "vehicles").expect("kind");
    let trip = crate::find("vehicles", "trips").expect("kind");
    let mut state = Vec::new();
    let v = crate::check(
        &s,
        vehicle,
        &state,
        &json!({"time": "2026-01-05", "plate": "P1", "agency": agency, "fuel": "gasoline", "purpose": "general", "odometer_km": 1000}),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    state.push(crate::as_event(vehicle, &v, 1, "t"));
    // 1 000 → 1 042: nothing to confirm.
    let t1 = crate::check(
        &s,
        trip,
        &state,
        &json!({"time": "2026-11-30 08:30", "plate": "P1", "start_km": 1000, "end_km": 1042}),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(crate::warnings(trip, &state, &t1).is_empty());
    state.push(crate::as_event(trip, &t1, 2, "t"));
    // The next day from 1 030: 12 km below the 1 042 read before.
    let t2 = crate::check(
        &s,
        trip,
        &state,
        &json!({"time": "2026-12-01 08:30", "plate": "P1", "start_km": 1030, "end_km": 1050}),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let w = crate::warnings(trip, &state, &t2);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, "start_km");
    assert!(w[0].1.contains("1042"), "{w:?}");
}
