//! The annual assessment export (`meterflow export assessment`) through the
//! real binary: the `docs/methodology.md` §5 worked example as a one-agency site, in
//! both profiles and all three formats; the workbook read back by openpyxl
//! (PyPI) and compared with the CSV; the same inputs give the same bytes.

use std::path::Path;
use std::process::Command;

use meterflow_model::{Reading, Site, TimeSource};

use crate::support::bin;

/// One building, one agency with 400 persons on 20 000 m², four meters and
/// an official car: the worked example of docs/methodology.md §5 for 2025.
const SITE: &str = r#"
[site]
name = "worked example"

[store]
path = "store.db"

[[building]]
id = "B"
total_area_m2 = 20000

[[agency]]
id = "a"
name = "示例单位"

[[headcount]]
agency = "a"
from = 2024-01-01
persons = 400

[[space]]
agency = "a"
building = "B"
from = 2024-01-01
area_m2 = 20000

[[meter]]
id = "elec"
kind = "electricity"
unit = "kWh"
serves = { agency = "a" }
interval_s = 86400

[[meter]]
id = "gas"
kind = "gas"
unit = "m3"
serves = { agency = "a" }
interval_s = 86400

[[meter]]
id = "heat"
kind = "heat"
unit = "GJ"
serves = { agency = "a" }
interval_s = 86400

[[meter]]
id = "water"
kind = "water"
unit = "m3"
serves = { agency = "a" }
interval_s = 86400
"#;

/// 2025 in daily readings: each counter rises evenly from 0 on 1 January to
/// its annual total on 1 January 2026 (local midnights); the consumption of
/// the year is exactly the total (the differences telescope).
fn fixture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("site.toml");
    std::fs::write(&path, SITE).expect("site");
    let site = Site::load(&path).expect("valid site");
    // 2025-01-01 00:00 +08:00 = 2024-12-31T16:00Z = 1 735 660 800 000 ms.
    let jan1 = 1_735_660_800_000i64;
    let day = 86_400_000i64;
    let mut readings = Vec::new();
    for (meter, total) in [
        ("elec", 1_200_000.0),
        ("gas", 50_000.0),
        ("heat", 3_000.0),
        ("water", 9_000.0),
    ] {
        let q = site
            .meters
            .iter()
            .find(|m| m.id == meter)
            .expect("meter")
            .counter_quantity()
            .to_string();
        for d in 0..=365i64 {
            readings.push(Reading {
                meter: meter.into(),
                quantity: q.clone(),
                ts_ms: jan1 + d * day,
                value: total * d as f64 / 365.0,
                recv_ms: jan1 + d * day,
                time_source: TimeSource::Import,
            });
        }
    }
    let mut w = meterflow_store::Writer::open(&site).expect("store");
    w.write_batch(&readings, "test").expect("write");
    drop(w);
    // 8 000 L of gasoline for the agency's car, in four fills.
    let mut db = meterflow_store::LedgerDb::open(&site.store_path()).expect("ledger");
    let mut add = |kind: &str, ts: i64, body: &str| {
        db.append(
            &meterflow_store::NewLedgerEvent {
                ledger: "vehicles",
                kind,
                agency: Some("a"),
                ts_ms: ts,
                body,
                corrects: None,
                void: false,
                author: "test",
            },
            0,
        )
        .expect("append")
        .expect("id");
    };
    add(
        "vehicle",
        jan1,
        r#"{"plate":"京A-1","agency":"a","fuel":"gasoline","purpose":"general"}"#,
    );
    for m in 0..4 {
        add(
            "fuel",
            jan1 + (10 + 60 * m) * day,
            r#"{"plate":"京A-1","litres":2000,"amount_cny":16000}"#,
        );
    }
    path
}

fn export(config: &Path, format: &str, profile: &str, out: &Path) {
    let o = bin()
        .args([
            "export",
            "assessment",
            "--config",
            config.to_str().expect("path"),
            "--year",
            "2025",
            "--format",
            format,
            "--profile",
            profile,
            "--out",
            out.to_str().expect("path"),
        ])
        .output()
        .expect("meterflow export");
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The CSV as (header → value) rows, without the BOM.
fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("csv");
    assert!(text.starts_with('\u{feff}'), "UTF-8 with BOM");
    let mut r = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            headers
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

fn num(row: &std::collections::BTreeMap<String, String>, header: &str) -> f64 {
    row.get(header)
        .unwrap_or_else(|| panic!("no column {header}: {row:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{header} = {:?}", row.get(header)))
}

#[test]
fn worked_example_export_matches_the_hand_computation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture(dir.path());
    let national = dir.path().join("national");
    export(&config, "csv", "national", &national);
    let rows = csv_rows(&national.join("assessment.csv"));
    // Rows: the agency, the building, the site.
    let levels: Vec<&str> = rows.iter().map(|r| r["层级"].as_str()).collect();
    assert_eq!(levels, vec!["agency", "building", "site"]);
    let a = &rows[0];
    let close = |x: f64, y: f64, tol: f64| (x - y).abs() <= tol;
    // docs/methodology.md §5: electricity 1 200 000 × 0.1229 = 147 480; gas 50 000 × 1.2143 = 60 715;
    // gasoline 8 000 × 0.73 × 1.4714 = 8 592.976; heat 3 000 × 34.12 = 102 360;
    // E = 319 147.976 kgce = 319.148 tce.
    assert!(close(num(a, "电力 (kWh)"), 1_200_000.0, 1e-6), "{a:?}");
    assert!(close(num(a, "公务车汽油 (L)"), 8000.0, 1e-9));
    assert!(close(num(a, "综合能耗 (kgce)"), 319_147.976, 1e-6), "{a:?}");
    assert!(close(num(a, "综合能耗 (tce)"), 319.147976, 1e-9));
    assert!(close(num(a, "其中公务车燃油 (kgce)"), 8592.976, 1e-6));
    // Per capita 319 147.976 / 400 = 797.87; per m² / 20 000 = 15.96 (national: with the car).
    assert!(close(num(a, "人均综合能耗 (kgce/人)"), 797.86994, 1e-5));
    assert!(close(
        num(a, "单位建筑面积能耗 (kgce/m²)"),
        15.9573988,
        1e-6
    ));
    // Water 9 000 / 400 = 22.5 m³/person; per person-day over 365 days: 9 000 000 / (400 × 365) = 61.64 L.
    assert!(close(num(a, "人均用水量 (m³/人)"), 22.5, 1e-9));
    assert!(close(
        num(a, "人均日用水量 (L/人·d)"),
        9_000_000.0 / 146_000.0,
        1e-9
    ));
    assert_eq!(a["公务车数量 (辆)"], "1");
    // No waste record in 2025: the one-vote veto.
    assert_eq!(a["垃圾分类一票否决"], "true");
    // Quota-standard profile: per m² without the car (310 555 / 20 000 = 15.53), water over 250 working days (90 L).
    let quota = dir.path().join("quota");
    export(&config, "csv", "quota-standard", &quota);
    let q = &csv_rows(&quota.join("assessment.csv"))[0];
    assert!(close(
        num(q, "单位建筑面积能耗 (kgce/m²)"),
        310_555.0 / 20_000.0,
        1e-6
    ));
    assert!(close(num(q, "人均日用水量 (L/人·d)"), 90.0, 1e-9));
    // The monthly table: 12 months of electricity adding up to the year.
    let months = csv_rows(&national.join("monthly.csv"));
    let elec: f64 = months
        .iter()
        .filter(|r| r["层级"] == "agency" && r["能源品种"] == "electricity")
        .map(|r| num(r, "数量"))
        .sum();
    assert!(close(elec, 1_200_000.0, 1e-6), "{elec}");
    assert_eq!(
        months
            .iter()
            .filter(|r| r["层级"] == "agency" && r["能源品种"] == "electricity")
            .count(),
        12
    );
    // The factors used are listed with their sources.
    let sources = csv_rows(&national.join("sources.csv"));
    let factor = |name: &str| {
        sources
            .iter()
            .find(|r| r["项目"] == name)
            .map(|r| num(r, "数值"))
    };
    assert_eq!(factor("kgce.electricity"), Some(0.1229));
    assert_eq!(factor("density.gasoline"), Some(0.73));

    // Same inputs, same bytes: CSV and Parquet.
    let again = dir.path().join("again");
    export(&config, "csv", "national", &again);
    for f in ["assessment.csv", "monthly.csv", "sources.csv", "cover.csv"] {
        assert_eq!(
            std::fs::read(national.join(f)).expect("file"),
            std::fs::read(again.join(f)).expect("file"),
            "{f} differs between two runs"
        );
    }
    let (p1, p2) = (dir.path().join("p1"), dir.path().join("p2"));
    export(&config, "parquet", "national", &p1);
    export(&config, "parquet", "national", &p2);
    assert_eq!(
        std::fs::read(p1.join("assessment.parquet")).expect("parquet"),
        std::fs::read(p2.join("assessment.parquet")).expect("parquet")
    );
    // Parquet columns are typed: read back with polars.
    let df = {
        use meterflow_export::polars::prelude::*;
        let f = std::fs::File::open(p1.join("assessment.parquet")).expect("open");
        ParquetReader::new(f).finish().expect("parquet")
    };
    let e = df.column("energy_kgce").expect("energy_kgce");
    assert_eq!(
        e.dtype(),
        &meterflow_export::polars::prelude::DataType::Float64
    );
    assert!(close(
        e.f64().expect("f64").get(0).unwrap_or(0.0),
        319_147.976,
        1e-6
    ));
    assert_eq!(
        df.column("waste_veto").expect("veto").dtype(),
        &meterflow_export::polars::prelude::DataType::Boolean
    );

    // The workbook, read by openpyxl: every cell of the assessment sheet equals the CSV's.
    let x1 = dir.path().join("a.xlsx");
    let x2 = dir.path().join("b.xlsx");
    export(&config, "xlsx", "national", &x1);
    export(&config, "xlsx", "national", &x2);
    let dump = |p: &Path| -> serde_json::Value {
        let script = r#"
import json, sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
out = {}
for ws in wb.worksheets:
    out[ws.title] = {"rows": [[c.value for c in row] for row in ws.iter_rows()], "freeze": ws.freeze_panes}
print(json.dumps(out, ensure_ascii=False, default=str))
"#;
        let o = Command::new("python3")
            .args(["-c", script, p.to_str().expect("path")])
            .output()
            .expect("python3 with openpyxl (see .ci/run)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    let (w1, w2) = (dump(&x1), dump(&x2));
    assert_eq!(w1, w2, "the workbook's cells differ between two runs");
    let sheet = &w1["按单位 Assessment"];
    assert_eq!(sheet["freeze"], "A2", "the header row is frozen");
    let cells = sheet["rows"].as_array().expect("rows");
    let header: Vec<String> = cells[0]
        .as_array()
        .expect("header")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(cells.len(), rows.len() + 1);
    for (row, csv_row) in cells[1..].iter().zip(&rows) {
        for (h, v) in header.iter().zip(row.as_array().expect("row")) {
            let want = &csv_row[h];
            match v {
                serde_json::Value::Null => assert_eq!(want, "", "{h}"),
                serde_json::Value::Number(n) => {
                    let w: f64 = want.parse().unwrap_or(f64::NAN);
                    let g = n.as_f64().unwrap_or(f64::NAN);
                    assert!(
                        (w - g).abs() <= 1e-9 * w.abs().max(1.0),
                        "{h}: {g} vs {want}"
                    );
                }
                serde_json::Value::Bool(b) => assert_eq!(want, &b.to_string(), "{h}"),
                serde_json::Value::String(s) => assert_eq!(want, s, "{h}"),
                other => panic!("{h}: {other}"),
            }
        }
    }
    assert!(w1["封面"]["rows"].to_string().contains("worked example"));
}

/// Two years, agencies A and C in building B (1 000 m²): A's headcount
/// grows from 100 to 120 on 1 July 2025; C moves from 100 m² in Z1 to 200 m²
/// in Z2 on 1 April 2025; A's electricity meter is replaced on 1 July 2025
/// and misses three daily readings in March (estimated buckets); only A has
/// waste records. Daily readings: A 100 kWh/day and 10 m³ water/day, C 50
/// kWh/day, both years.
const TWO_YEARS: &str = r#"
[site]
name = "two years"

[store]
path = "store.db"

[[building]]
id = "B"
total_area_m2 = 1000

[[zone]]
id = "Z1"
building = "B"
area_m2 = 500

[[zone]]
id = "Z2"
building = "B"
area_m2 = 500

[[agency]]
id = "A"
name = "Agency A"

[[agency]]
id = "C"
name = "Agency C"

[[headcount]]
agency = "A"
from = 2024-01-01
persons = 100

[[headcount]]
agency = "A"
from = 2025-07-01
persons = 120

[[headcount]]
agency = "C"
from = 2024-01-01
persons = 50

[[space]]
agency = "A"
zone = "Z1"
from = 2024-01-01
area_m2 = 400

[[space]]
agency = "C"
zone = "Z1"
from = 2024-01-01
to = 2025-03-31
area_m2 = 100

[[space]]
agency = "C"
zone = "Z2"
from = 2025-04-01
area_m2 = 200

[[meter]]
id = "EA"
kind = "electricity"
unit = "kWh"
serves = { agency = "A" }
interval_s = 86400

[[meter]]
id = "EC"
kind = "electricity"
unit = "kWh"
serves = { agency = "C" }
interval_s = 86400

[[meter]]
id = "WA"
kind = "water"
unit = "m3"
serves = { agency = "A" }
interval_s = 86400

[[replacement]]
meter = "EA"
at = 2025-07-01T00:00:00
old_final = 54700
new_initial = 0
"#;

#[test]
fn two_year_export_matches_the_hand_computation_cell_by_cell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("site.toml");
    std::fs::write(&config, TWO_YEARS).expect("site");
    let site = Site::load(&config).expect("valid site");
    // 2024-01-01 00:00 +08:00 = 2023-12-31T16:00Z = 1 704 038 400 000 ms; 731 days to 2026-01-01.
    let jan1_2024 = 1_704_038_400_000i64;
    let day = 86_400_000i64;
    let q = |m: &str| {
        site.meters
            .iter()
            .find(|x| x.id == m)
            .expect("meter")
            .counter_quantity()
            .to_string()
    };
    let r = |meter: &str, d: i64, value: f64| Reading {
        meter: meter.into(),
        quantity: q(meter),
        ts_ms: jan1_2024 + d * day,
        value,
        recv_ms: jan1_2024 + d * day,
        time_source: TimeSource::Import,
    };
    // Day numbers: 2025-01-01 = 366; 2025-03-10..12 = 434..436; 2025-07-01 = 547.
    let mut readings = Vec::new();
    for d in 0..=731i64 {
        readings.push(r("EC", d, 50.0 * d as f64));
        readings.push(r("WA", d, 10.0 * d as f64));
        if (434..=436).contains(&d) || d == 547 {
            continue; // the gap; and no reading at the replacement instant
        }
        if d < 547 {
            readings.push(r("EA", d, 100.0 * d as f64));
        } else {
            // The new meter starts at 0 on 1 July 2025 (the old one ended at 547 x 100 = 54 700).
            readings.push(r("EA", d, 100.0 * (d - 547) as f64));
        }
    }
    // Two readings of EC that the meter sent as NaN: rejected (anomaly
    // invalid_value), consumption unchanged. 2024-04-10 12:00 (day 100) is
    // outside the exported year; 2025-08-23 12:00 (day 600) is inside it.
    for d in [100i64, 600] {
        readings.push(Reading {
            ts_ms: jan1_2024 + d * day + day / 2,
            recv_ms: jan1_2024 + d * day + day / 2,
            ..r("EC", d, f64::NAN)
        });
    }
    let mut w = meterflow_store::Writer::open(&site).expect("store");
    // The configured replacement goes into the counter's item stream first
    // (what `import` and `run` do on start).
    w.sync_replacements(&site, 0).expect("replacement");
    w.write_batch(&readings, "test").expect("write");
    drop(w);
    let mut db = meterflow_store::LedgerDb::open(&site.store_path()).expect("ledger");
    // 2025-05-01 10:00 +08:00.
    let may1 = jan1_2024 + 486 * day + 2 * 3_600_000;
    for body in [
        r#"{"agency":"A","point":"lobby","category":"recyclable","kg":10.0,"destination":"recycling"}"#,
        r#"{"agency":"A","point":"lobby","category":"residual","kg":30.0,"destination":"landfill"}"#,
    ] {
        db.append(
            &meterflow_store::NewLedgerEvent {
                ledger: "waste",
                kind: "weigh_in",
                agency: Some("A"),
                ts_ms: may1,
                body,
                corrects: None,
                void: false,
                author: "test",
            },
            0,
        )
        .expect("append")
        .expect("id");
    }
    drop(db);
    let out = dir.path().join("out");
    export(&config, "csv", "national", &out);
    let rows = csv_rows(&out.join("assessment.csv"));
    let row = |level: &str, id: &str| {
        rows.iter()
            .find(|r| r["层级"] == level && r["编号"] == id)
            .unwrap_or_else(|| panic!("no row {level} {id}"))
            .clone()
    };
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * y.abs().max(1.0);
    let a = row("agency", "A");
    let c = row("agency", "C");

    // A, 2025: 365 days x 100 kWh = 36 500 kWh (the replacement and the gap change nothing);
    // kgce 36 500 x 0.1229 = 4 485.85; tce 4.48585.
    assert!(close(num(&a, "电力 (kWh)"), 36_500.0), "{a:?}");
    assert!(close(num(&a, "综合能耗 (kgce)"), 4_485.85));
    assert!(close(num(&a, "综合能耗 (tce)"), 4.48585));
    // Persons: 100 for 181 days (1 Jan - 30 Jun), 120 for 184 days: 40 180 / 365 = 110.0822.
    let pa = (100.0 * 181.0 + 120.0 * 184.0) / 365.0;
    assert!(close(num(&a, "用能人数 (人, 时间加权)"), pa));
    // Area: B (1 000 m², no meter of its own) splits its common area by
    // occupied area, like the energy. To 31 March A 400 + C 100 occupied, 500
    // common: A 400 + 400 = 800, C 200; from 1 April A 400 + C 200, 400
    // common: A 666.667, C 333.333. A: (90 × 800 + 275 × 666.667) / 365 =
    // 699.543379 m²; C: (90 × 200 + 275 × 333.333) / 365 = 300.456621 m².
    let aa = (90.0 * 800.0 + 275.0 * 2_000.0 / 3.0) / 365.0;
    assert!(close(num(&a, "建筑面积 (m², 时间加权)"), aa));
    assert!(close(num(&a, "人均综合能耗 (kgce/人)"), 4_485.85 / pa));
    assert!(close(num(&a, "单位建筑面积能耗 (kgce/m²)"), 4_485.85 / aa));
    // Water: 3 650 m³; per person 3 650 / 110.08; per person-day over 365 days.
    assert!(close(num(&a, "用水量 (m³)"), 3_650.0));
    assert!(close(num(&a, "人均用水量 (m³/人)"), 3_650.0 / pa));
    assert!(close(
        num(&a, "人均日用水量 (L/人·d)"),
        3_650_000.0 / (pa * 365.0)
    ));
    // CO₂: 36 500 kWh x 0.5306 kg/kWh (2023, the nearest published year) =
    // 19.3669 t; per m²: 19 366.9 / 699.543379 kg.
    assert!(close(num(&a, "二氧化碳排放 (tCO₂)"), 19.3669));
    assert!(close(num(&a, "单位面积碳排放 (kgCO₂/m²)"), 19_366.9 / aa));
    // YoY on the same calendar days: every day of 2025 has data, so 2024
    // without 29 February: 365 x 100 = 36 500 kWh, 100 persons, 800 m².
    // per capita 448.585 / 100 -> 4 485.85 / 110.08; per m² 5.6073 -> 6.4125.
    let pc24 = 36_500.0 * 0.1229 / 100.0;
    let pc25 = 4_485.85 / pa;
    assert!(close(
        num(&a, "人均综合能耗同比 (%)"),
        (pc25 - pc24) / pc24 * 100.0
    ));
    let pa24 = 36_500.0 * 0.1229 / 800.0;
    let pa25 = 4_485.85 / aa;
    assert!(close(
        num(&a, "单位面积能耗同比 (%)"),
        (pa25 - pa24) / pa24 * 100.0
    ));
    // Water per person on the same days: 3 650 / 100 = 36.5 in 2024.
    assert!(close(
        num(&a, "人均用水量同比 (%)"),
        (3_650.0 / pa - 36.5) / 36.5 * 100.0
    ));
    // Waste: 10 kg recycled + 30 kg landfilled = 40 kg, 回收利用率 10 / 40 = 25 %; no veto.
    assert!(close(num(&a, "垃圾合计 (kg)"), 40.0));
    assert!(close(num(&a, "可回收物 (kg)"), 10.0));
    assert!(close(num(&a, "回收利用率 (%)"), 25.0));
    assert_eq!(a["垃圾分类一票否决"], "false");
    assert_eq!(a["积分"], "", "no prices configured: no points");
    // No vehicles: 0 (not −0).
    assert_eq!(
        (a["公务车数量 (辆)"].as_str(), a["行驶里程 (km)"].as_str()),
        ("0", "0.0")
    );
    // Quality: the three missing readings make one 4-day pair (10 - 13 March) spread
    // over 4 x 96 = 384 estimated buckets of EA; A's two meters have 2 x 35 040
    // buckets in 2025: completeness (70 080 - 384) / 70 080 = 99.452 %, estimated
    // 384 / 70 080 = 0.548 %.
    assert!(
        close(
            num(&a, "数据完整率 (%)"),
            (70_080.0 - 384.0) / 70_080.0 * 100.0
        ),
        "{a:?}"
    );
    assert!(
        close(num(&a, "估算数据占比 (%)"), 384.0 / 70_080.0 * 100.0),
        "{a:?}"
    );

    // C: 365 x 50 = 18 250 kWh = 2 242.925 kgce; 50 persons; area (above)
    // 300.456621 m².
    let ac = (200.0 * 90.0 + 275.0 * 1_000.0 / 3.0) / 365.0;
    assert!(close(aa + ac, 1_000.0), "the agencies' areas add up to B's");
    assert!(close(num(&c, "电力 (kWh)"), 18_250.0));
    assert!(close(num(&c, "用能人数 (人, 时间加权)"), 50.0));
    assert!(close(num(&c, "建筑面积 (m², 时间加权)"), ac));
    assert!(close(num(&c, "人均综合能耗 (kgce/人)"), 2_242.925 / 50.0));
    assert!(close(num(&c, "单位建筑面积能耗 (kgce/m²)"), 2_242.925 / ac));
    // No water meter: 0 m³, 0 per person. No waste record: the veto, for C only.
    assert!(close(num(&c, "用水量 (m³)"), 0.0));
    assert_eq!(c["垃圾分类一票否决"], "true");
    assert_eq!(c["垃圾合计 (kg)"], "0.0");
    assert_eq!(c["回收利用率 (%)"], "");
    assert!(close(num(&c, "数据完整率 (%)"), 100.0));
    assert!(close(num(&c, "估算数据占比 (%)"), 0.0));
    // YoY of C per m²: 2024 on the same days = 18 250 x 0.1229 / 200 m² = 11.214625.
    let c24 = 18_250.0 * 0.1229 / 200.0;
    assert!(close(
        num(&c, "单位面积能耗同比 (%)"),
        (2_242.925 / ac - c24) / c24 * 100.0
    ));
    let vetoed: Vec<&str> = rows
        .iter()
        .filter(|r| r["垃圾分类一票否决"] == "true")
        .map(|r| r["编号"].as_str())
        .collect();
    assert_eq!(vetoed, vec!["C"], "the veto is set for exactly C");

    // Anomalies in 2025 (data-quality findings): A's 4-day gap in March
    // (meter_silent: no reading for more than 3 intervals) and C's NaN reading
    // of 23 August. Not counted: A's configured replacement (planned work) and
    // C's NaN of April 2024 (the year before).
    assert_eq!(num(&a, "异常数 (个)"), 1.0, "{a:?}");
    assert_eq!(num(&c, "异常数 (个)"), 1.0, "{c:?}");

    // The building: A and C together. 54 750 kWh, 3 650 m³; 6 728.775 kgce;
    // its own 1 000 m²; persons 110.08 + 50; per m² 6.728775 against 2024's
    // same days (29 February left out): 54 750 kWh x 0.1229 / 1 000 = 6.728775,
    // so 0 % (the old whole-year comparison said −0.27 %, the leap day);
    // CO₂ 54 750 x 0.5306 = 29.05035 t;
    // 384 estimated of 3 meters x 35 040 buckets; both findings above.
    let b = row("building", "B");
    assert_eq!(b["名称"], "B");
    assert!(close(num(&b, "电力 (kWh)"), 54_750.0), "{b:?}");
    assert!(close(num(&b, "用水量 (m³)"), 3_650.0));
    assert!(close(num(&b, "综合能耗 (kgce)"), 6_728.775));
    assert!(close(num(&b, "建筑面积 (m², 时间加权)"), 1_000.0));
    assert!(close(num(&b, "用能人数 (人, 时间加权)"), pa + 50.0));
    // Persons belong to agencies: no per-person figure for a building.
    assert_eq!(b["人均综合能耗 (kgce/人)"], "", "{b:?}");
    assert!(close(num(&b, "单位建筑面积能耗 (kgce/m²)"), 6.728775));
    assert!(close(num(&b, "单位面积能耗同比 (%)"), 0.0));
    assert!(close(num(&b, "二氧化碳排放 (tCO₂)"), 29.05035));
    assert!(close(
        num(&b, "估算数据占比 (%)"),
        384.0 / 105_120.0 * 100.0
    ));
    assert!(close(
        num(&b, "数据完整率 (%)"),
        (105_120.0 - 384.0) / 105_120.0 * 100.0
    ));
    assert_eq!(num(&b, "异常数 (个)"), 2.0);
    // Waste and vehicles are agency ledgers: no building figures, and no veto.
    assert_eq!(
        (b["垃圾合计 (kg)"].as_str(), b["垃圾分类一票否决"].as_str()),
        ("", "")
    );

    // The site: 36 500 + 18 250 = 54 750 kWh; persons 110.08 + 50.
    let s = row("site", "site");
    assert!(close(num(&s, "电力 (kWh)"), 54_750.0));
    assert!(close(num(&s, "用能人数 (人, 时间加权)"), pa + 50.0));
    assert_eq!(num(&s, "异常数 (个)"), 2.0);

    // Months: A's March is 31 x 100 kWh despite the gap; July 31 x 100 after the replacement.
    let months = csv_rows(&out.join("monthly.csv"));
    let month = |id: &str, m: &str, carrier: &str| {
        months
            .iter()
            .find(|r| r["编号"] == id && r["月份"] == m && r["能源品种"] == carrier)
            .map(|r| num(r, "数量"))
    };
    assert_eq!(month("A", "3", "electricity"), Some(3_100.0));
    // July: 31 x 100 kWh after the replacement, less what the 1 ms between the
    // replacement item (stored at 1 July 00:00 − 1 ms) and midnight takes into
    // 30 June: 100 kWh x 1 / 86 400 001 ms = 1.16e-6 kWh.
    let july = month("A", "7", "electricity").expect("July");
    assert!(
        (july - (3_100.0 - 100.0 / 86_400_001.0)).abs() < 1e-6,
        "{july}"
    );
    let june = month("A", "6", "electricity").expect("June");
    assert!(
        (june - (3_000.0 + 100.0 / 86_400_001.0)).abs() < 1e-6,
        "{june}"
    );
    assert_eq!(month("A", "2", "electricity"), Some(2_800.0));
    assert_eq!(month("C", "4", "electricity"), Some(1_500.0));
}
