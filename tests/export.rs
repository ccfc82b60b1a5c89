//! The annual assessment export (`meterflow export assessment`) through the
//! real binary: the `domain.md` §5 worked example as a one-agency site, in
//! both profiles and all three formats; the workbook read back by openpyxl
//! (PyPI) and compared with the CSV; the same inputs give the same bytes.

use std::path::Path;
use std::process::Command;

use meterflow_model::{Reading, Site, TimeSource};

use crate::support::bin;

/// One building, one agency with 400 persons on 20 000 m², four meters and
/// an official car: the worked example of domain.md §5 for 2025.
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
    // domain.md §5: electricity 1 200 000 × 0.1229 = 147 480; gas 50 000 × 1.2143 = 60 715;
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
