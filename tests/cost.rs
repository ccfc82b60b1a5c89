//! Energy cost against hand computations (`docs/methodology.md` §14): a
//! shared meter under a three-period tariff with a July 尖峰, a tariff
//! change at midnight, a late reading that re-prices only its buckets, and
//! an agency's water 30 % over its monthly quota.

use meterflow_core::denominators::Period;
use meterflow_kpi::{KpiContext, Scope};
use meterflow_model::{Reading, Site, TimeSource};

const SITE: &str = r#"
[site]
name = "cost"
timezone = "Asia/Shanghai"
quota_set = "shandong-db37"
projection_min_days = 0

[store]
path = "s.db"

[[building]]
id = "B"
total_area_m2 = 2000
office_area_m2 = 1000

[[agency]]
id = "A1"
name = "一局"

[[agency]]
id = "A2"
name = "二局"

[[agency]]
id = "AW"
name = "水局"

[[headcount]]
agency = "A1"
from = 2026-01-01
persons = 10

[[headcount]]
agency = "A2"
from = 2026-01-01
persons = 10

# 73 persons: June's quota is 25 m³/person·a × 73 × 30 / 365 = 150 m³.
[[headcount]]
agency = "AW"
from = 2026-01-01
persons = 73

[[space]]
agency = "A1"
building = "B"
from = 2026-01-01
area_m2 = 600

[[space]]
agency = "A2"
building = "B"
from = 2026-01-01
area_m2 = 400

[[meter]]
id = "MAIN"
kind = "electricity"
unit = "kWh"
serves = { building = "B" }
allocation = "area_share"
interval_s = 900

[[meter]]
id = "WAT"
kind = "water"
unit = "m3"
serves = { agency = "AW" }
interval_s = 900

[[tariff]]
id = "elec-h1"
carrier = "electricity"
from = 2026-01-01
to = 2026-07-15
source = "test tariff (shape of methodology §14)"
periods = { valley = ["23:00-07:00"], flat = ["07:00-08:00", "11:00-18:00"], peak = ["08:00-11:00", "18:00-23:00"] }
prices = { critical = 1.3, peak = 1.0, flat = 0.7, valley = 0.3 }
critical = { months = [7, 8], hours = ["10:00-11:00", "19:00-21:00"] }

[[tariff]]
id = "elec-h2"
carrier = "electricity"
from = 2026-07-16
source = "test tariff, new prices from 16 July"
periods = { valley = ["23:00-07:00"], flat = ["07:00-08:00", "11:00-18:00"], peak = ["08:00-11:00", "18:00-23:00"] }
prices = { critical = 1.4, peak = 1.1, flat = 0.75, valley = 0.32 }
critical = { months = [7, 8], hours = ["10:00-11:00", "19:00-21:00"] }

[[budget]]
agency = "A1"
year = 2026
cny = 300
source = "test budget"

[[alert]]
id = "budget"
kind = "budget_overrun"

[[tariff]]
id = "water"
carrier = "water"
from = 2026-01-01
source = "test: 5 CNY/m³, +0.5× up to 20 % over the quota, +1× above"
price = 5.0
surcharge = [{ above_pct = 0, factor = 0.5 }, { above_pct = 20, factor = 1.0 }]
"#;

const Q: i64 = 900_000;

fn day(site: &Site, s: &str) -> i64 {
    meterflow_core::time::day_start(
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date"),
        site.tz,
    )
}

fn reading(meter: &str, quantity: &str, ts: i64, value: f64) -> Reading {
    Reading {
        meter: meter.into(),
        quantity: quantity.into(),
        ts_ms: ts,
        value,
        recv_ms: ts,
        time_source: TimeSource::Device,
    }
}

fn period(a: &str, b: &str) -> Period {
    Period {
        from: chrono::NaiveDate::parse_from_str(a, "%Y-%m-%d").expect("date"),
        to: chrono::NaiveDate::parse_from_str(b, "%Y-%m-%d").expect("date"),
    }
}

fn electricity(c: &meterflow_kpi::cost::Cost) -> (f64, Vec<(String, f64, f64)>) {
    let e = c
        .carriers
        .iter()
        .find(|x| x.carrier == "electricity")
        .expect("electricity");
    (
        e.base_cny,
        e.periods
            .iter()
            .map(|p| (p.period.clone(), p.quantity, p.cny))
            .collect(),
    )
}

#[test]
fn cost_by_time_of_use_tariff_change_late_data_and_water_surcharge_by_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, SITE).expect("site");
    let site = Site::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut writer = meterflow_store::Writer::open(&site).expect("store");

    // MAIN: 10 kW (2.5 kWh a quarter) on 15 and 16 July 2026, except on the
    // 16th 10:00-11:00 at 20 kW and 11:00-12:00 at 0 kW. The 11:00 reading
    // is held back (it arrives late, below).
    let (d15, d17) = (day(&site, "2026-07-15"), day(&site, "2026-07-17"));
    let (ten, eleven, noon) = (
        day(&site, "2026-07-16") + 10 * 3_600_000,
        day(&site, "2026-07-16") + 11 * 3_600_000,
        day(&site, "2026-07-16") + 12 * 3_600_000,
    );
    let kw = |t: i64| {
        if (ten..eleven).contains(&t) {
            20.0
        } else if (eleven..noon).contains(&t) {
            0.0
        } else {
            10.0
        }
    };
    let mut value = 1000.0;
    let mut batch = Vec::new();
    let mut late = None;
    let mut t = d15;
    while t <= d17 {
        let r = reading("MAIN", "energy_import", t, value);
        if t > ten && t < noon {
            if t == eleven {
                late = Some(r);
            }
        } else {
            batch.push(r);
        }
        value += kw(t) * 0.25;
        t += Q;
    }
    // WAT: 6.5 m³ a day through June 2026 = 195 m³, 30 % over the 150 m³ quota.
    let (j1, j30) = (day(&site, "2026-06-01"), day(&site, "2026-07-01"));
    let mut w = 0.0;
    let mut t = j1;
    while t <= j30 {
        batch.push(reading("WAT", "volume", t, w));
        w += 6.5 / 96.0;
        t += Q;
    }
    writer.write_batch(&batch, "test").expect("write");

    let kpi =
        KpiContext::new(&site).with_today(chrono::NaiveDate::from_ymd_opt(2026, 12, 3).expect("d"));
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let two_days = period("2026-07-15", "2026-07-17");
    let cost = |scope: &Scope| kpi.cost(&reader, scope, two_days).expect("cost");

    // Before the late reading, 10:00-12:00 on the 16th is spread evenly:
    // 10 kWh in 10-11 (尖峰) and 10 kWh in 11-12 (平).
    // 15 July (first tariff, July has 尖峰): valley 23-07 8 h = 80 kWh × 0.3 = 24;
    //   flat 07-08 + 11-18 = 8 h = 80 × 0.7 = 56; peak 08-11 + 18-23 = 8 h of
    //   which 10-11 and 19-21 (3 h) are 尖峰: 50 kWh × 1.0 = 50, 30 × 1.3 = 39;
    //   the day: 169 CNY for 240 kWh.
    // 16 July (second tariff): valley 80 × 0.32 = 25.6; flat 80 × 0.75 = 60;
    //   peak 50 × 1.1 = 55; critical 30 × 1.4 = 42; the day: 182.6 CNY.
    // Two days: 351.6 CNY.
    let (b0, periods0) = electricity(&cost(&Scope::Building("B".into())));
    assert!((b0 - 351.6).abs() < 1e-6, "{b0} {periods0:?}");
    let names: Vec<&str> = periods0.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["critical", "peak", "flat", "valley"]);
    // The shared meter's cost splits with its kWh: 60 % / 40 % by area.
    let (a1, _) = electricity(&cost(&Scope::Agency("A1".into())));
    let (a2, _) = electricity(&cost(&Scope::Agency("A2".into())));
    assert!((a1 - 0.6 * 351.6).abs() < 1e-6, "{a1}");
    assert!((a2 - 0.4 * 351.6).abs() < 1e-6, "{a2}");
    assert!((a1 + a2 - b0).abs() < 1e-6);

    // The late 11:00 reading: 10-11 really took 20 kWh (尖峰 1.4) and 11-12
    // none: 28 instead of 14 + 7.5 = 21.5, so +6.5 CNY; the 尖峰 grows by
    // 10 kWh and 14 CNY, the 平 shrinks by 10 kWh and 7.5 CNY, nothing else moves.
    writer
        .write_batch(&[late.expect("the 11:00 reading")], "test")
        .expect("late");
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let (b1, periods1) = electricity(
        &kpi.cost(&reader, &Scope::Building("B".into()), two_days)
            .expect("cost"),
    );
    assert!((b1 - b0 - 6.5).abs() < 1e-6, "{b0} → {b1}");
    for ((n0, q0, c0), (n1, q1, c1)) in periods0.iter().zip(&periods1) {
        assert_eq!(n0, n1);
        let (dq, dc) = match n0.as_str() {
            "critical" => (10.0, 14.0),
            "flat" => (-10.0, -7.5),
            _ => (0.0, 0.0),
        };
        assert!(
            (q1 - q0 - dq).abs() < 1e-6 && (c1 - c0 - dc).abs() < 1e-6,
            "{n0}: {q0} {c0} → {q1} {c1}"
        );
    }

    // Water in June: 195 m³ × 5 = 975 CNY; surcharge: 150..180 m³ = 30 × 0.5
    // × 5 = 75, 180..195 = 15 × 1 × 5 = 75: 150 CNY.
    let june = kpi
        .cost(
            &reader,
            &Scope::Agency("AW".into()),
            period("2026-06-01", "2026-07-01"),
        )
        .expect("cost");
    let water = june
        .carriers
        .iter()
        .find(|c| c.carrier == "water")
        .expect("water");
    assert!((water.quantity - 195.0).abs() < 1e-6, "{water:?}");
    assert!((water.base_cny - 975.0).abs() < 1e-6, "{water:?}");
    assert!((water.surcharge_cny - 150.0).abs() < 1e-6, "{water:?}");
    let m = &water.months[0];
    assert!(
        (m.quota_m3 - 150.0).abs() < 1e-9 && (m.over_pct - 30.0).abs() < 1e-6,
        "{m:?}"
    );
    assert!(!m.provisional);
    // A1's budget: 214.86 CNY spent on 2 days with data (15 and 16 July).
    // Pro-rated: 300 × 2 / 365 = 1.6438 CNY → 214.86 / 1.6438 = 130.7×; no
    // last year, so the run-rate: 214.86 × 365 / 2 = 39 211.95 CNY = 130.7×
    // the budget; the budget_overrun rule observes that ratio.
    let b = kpi
        .budget(&reader, "A1", 2026)
        .expect("budget")
        .expect("A1 has a budget");
    let pro_rated = 300.0 * 2.0 / 365.0;
    assert!((b.to_date_cny - 214.86).abs() < 1e-6, "{b:?}");
    assert!((b.budget_to_date_cny - pro_rated).abs() < 1e-9, "{b:?}");
    assert!((b.ratio_to_date - 214.86 / pro_rated).abs() < 1e-6, "{b:?}");
    assert!(
        b.projected_cny
            .is_some_and(|p| (p - 214.86 * 365.0 / 2.0).abs() < 1e-6),
        "{b:?}"
    );
    assert_eq!(b.method.as_deref(), Some("run-rate"));
    assert!(kpi.budget(&reader, "A2", 2026).expect("budget").is_none());
    let rule = site
        .alert_rules
        .iter()
        .find(|r| r.id == "budget")
        .expect("rule");
    let obs = meterflow_runtime::alerting::observe(
        &site,
        &reader,
        rule,
        day(&site, "2026-07-17"),
        &meterflow_runtime::alerting::LiveMetrics::default(),
    )
    .expect("observe");
    assert_eq!(obs.len(), 1, "only A1 has a budget");
    assert_eq!(obs[0].target, "A1");
    assert!(
        (obs[0].value - 214.86 * 365.0 / 2.0 / 300.0).abs() < 1e-6,
        "{}",
        obs[0].detail
    );
    // The peak-shifting view for July 2026 (after the late reading), by
    // hand per day: the 15th has 峰 50 + 尖峰 30 = 80 kWh of 240; the 16th
    // 峰 50 + 尖峰 40 (20 kW in 10-11) = 90 of 240: July 170 / 480 = 35.42 %.
    // There is no July 2025, so no comparison.
    let peaks = kpi
        .peak_shares(&reader, &Scope::Building("B".into()), 2026)
        .expect("peaks");
    let july = peaks.iter().find(|p| p.month == "2026-07").expect("July");
    assert!(
        (july.kwh - 480.0).abs() < 1e-6 && (july.peak_kwh - 170.0).abs() < 1e-6,
        "{july:?}"
    );
    assert!(
        july.peak_share_pct
            .is_some_and(|p| (p - 170.0 / 480.0 * 100.0).abs() < 1e-9)
    );
    assert_eq!(july.last_year_share_pct, None);
    assert_eq!(peaks.len(), 12, "January to December of a past year");
    // The `cost` points as the pipeline writes them, into a real InfluxDB
    // 1.x and read back with InfluxQL: July's building point has the
    // 358.1 CNY, 尖峰 30 + 40 = 70 kWh and 峰 50 + 50 = 100 kWh (170 of
    // 480 kWh); A1's year point carries its budget.
    let mut enc = meterflow_core::lineproto::Encoder::new();
    meterflow_runtime::points::kpi_points(&site, &reader, day(&site, "2026-07-20"), &mut enc)
        .expect("points");
    let (lines, _) = enc.take();
    let influx = crate::influx::Influx::start(dir.path());
    let (code, body) = crate::influx::http(
        influx.port,
        "POST",
        "/write?db=meterflow&precision=ms",
        &lines,
    );
    assert_eq!(code, 204, "{body}");
    let v = influx.query(
        "SELECT total_cny, critical_kwh, peak_kwh, peak_share_pct FROM cost WHERE id = 'B' AND \"period\" = 'month'",
    );
    let row = &v["results"][0]["series"][0]["values"][0];
    assert!((row[1].as_f64().unwrap_or(0.0) - 358.1).abs() < 1e-6, "{v}");
    assert!((row[2].as_f64().unwrap_or(0.0) - 70.0).abs() < 1e-6, "{v}");
    assert!((row[3].as_f64().unwrap_or(0.0) - 100.0).abs() < 1e-6, "{v}");
    assert!(
        (row[4].as_f64().unwrap_or(0.0) - 170.0 / 480.0 * 100.0).abs() < 1e-6,
        "{v}"
    );
    let v = influx.query(
        "SELECT budget_cny, budget_projected_ratio FROM cost WHERE id = 'A1' AND \"period\" = 'year'",
    );
    let row = &v["results"][0]["series"][0]["values"][0];
    assert_eq!(row[1].as_f64(), Some(300.0), "{v}");
    drop(influx);
    drop(writer);

    // `meterflow kpi` prints the cost and the budget too.
    let o = crate::support::bin()
        .args([
            "kpi",
            "--config",
            path.to_str().expect("p"),
            "--year",
            "2026",
        ])
        .output()
        .expect("kpi");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("B: energy cost 358.10 CNY: electricity 358.10"),
        "{text}"
    );
    assert!(text.contains("AW: energy cost 1125.00 CNY"), "{text}");
    assert!(
        text.contains("water 1125.00 (surcharge above the quota 150.00)"),
        "{text}"
    );
    // The site: the building's 358.10 and AW's water 1 125.00 = 1 483.10.
    assert!(text.contains("site: energy cost 1483.10 CNY"), "{text}");
    assert!(text.contains("A1: budget 300 CNY, 214.86 spent"), "{text}");

    // The annual export carries the cost columns: building B's year is the
    // two July days, 358.1 CNY, all electricity; AW's water is June's 975 +
    // 150 surcharge = 1 125 CNY.
    let out = dir.path().join("export");
    let o = crate::support::bin()
        .args([
            "export",
            "assessment",
            "--config",
            path.to_str().expect("p"),
            "--year",
            "2026",
            "--format",
            "csv",
            "--out",
            out.to_str().expect("p"),
        ])
        .output()
        .expect("export");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(out.join("assessment.csv")).expect("csv");
    let mut rdr = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let col = |h: &str| {
        headers
            .iter()
            .position(|x| x == h)
            .unwrap_or_else(|| panic!("no column {h}: {headers:?}"))
    };
    let (id, cost, elec, water) = (
        col("编号"),
        col("能源费用 (元)"),
        col("其中电费 (元)"),
        col("其中水费 (元, 含超定额加价)"),
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.expect("row")).collect();
    let num = |r: &csv::StringRecord, i: usize| {
        r.get(i)
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let b = rows
        .iter()
        .find(|r| r.get(id) == Some("B"))
        .expect("building B");
    assert!(
        (num(b, cost) - 358.1).abs() < 1e-6 && (num(b, elec) - 358.1).abs() < 1e-6,
        "{b:?}"
    );
    let aw = rows
        .iter()
        .find(|r| r.get(id) == Some("AW"))
        .expect("agency AW");
    assert!((num(aw, water) - 1125.0).abs() < 1e-6, "{aw:?}");
    // The cost table: the building's July electricity, AW's June water.
    let text = std::fs::read_to_string(out.join("cost.csv")).expect("cost.csv");
    let mut rdr = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let rows: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.expect("row").iter().map(str::to_string).collect())
        .collect();
    let find = |id: &str, month: &str, carrier: &str| -> f64 {
        rows.iter()
            .find(|r| r[1] == id && r[2] == month && r[3] == carrier)
            .and_then(|r| r[4].parse().ok())
            .unwrap_or_else(|| panic!("no {id} {month} {carrier}: {rows:?}"))
    };
    assert!((find("B", "7", "electricity") - 358.1).abs() < 1e-6);
    assert!((find("AW", "6", "water") - 1125.0).abs() < 1e-6);
    // The workbook, with its 费用 sheet, is written too.
    let o = crate::support::bin()
        .args([
            "export",
            "assessment",
            "--config",
            path.to_str().expect("p"),
            "--year",
            "2026",
            "--out",
            dir.path().join("a.xlsx").to_str().expect("p"),
        ])
        .output()
        .expect("export xlsx");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The same figures through the API and on the agency's page: July's
    // electricity of the building is the two days, 351.6 + 6.5 = 358.1 CNY;
    // the finance side's 60 % is 214.86 CNY.
    let port = crate::support::free_port();
    let token = "cost-manager-token-0123456789";
    std::fs::write(
        dir.path().join("tokens"),
        format!("manager sha256:{}\n", meterflow_http::hash_token(token)),
    )
    .expect("tokens");
    let mut text = std::fs::read_to_string(&path).expect("site");
    text.push_str(&format!(
        "\n[api]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = \"tokens\"\n"
    ));
    std::fs::write(&path, text).expect("site");
    let _run = crate::support::Proc(
        crate::support::bin()
            .args([
                "run",
                "--config",
                path.to_str().expect("p"),
                "--seconds",
                "60",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run"),
    );
    crate::support::wait_port(port);
    let (code, v) = crate::api::get(
        port,
        "/api/v1/kpis?scope=building&id=B&year=2026&month=7",
        Some(token),
    );
    assert_eq!(code, 200, "{v}");
    let e = v["cost"]["carriers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["carrier"] == "electricity"))
        .cloned()
        .unwrap_or_default();
    assert!(
        (e["base_cny"].as_f64().unwrap_or(0.0) - 358.1).abs() < 1e-6,
        "{v}"
    );
    let (code, page) = crate::api::request(
        port,
        "GET",
        "/agencies/A1?period=month&date=2026-07-15",
        Some(token),
        "",
    );
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("id=\"budget\""),
        "the agency page shows its budget"
    );
    assert!(
        page.contains("id=\"cost-total\">214.86<"),
        "{}",
        page.split("id=\"cost\"").nth(1).unwrap_or(&page)
    );
}

#[test]
fn tariff_gaps_overlaps_and_bad_periods_are_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    let bad = SITE.replace(
        r#"id = "elec-h2"
carrier = "electricity"
from = 2026-07-16"#,
        r#"id = "elec-h2"
carrier = "electricity"
from = 2026-07-10"#,
    )
    .replace(
        r#"periods = { valley = ["23:00-07:00"], flat = ["07:00-08:00", "11:00-18:00"], peak = ["08:00-11:00", "18:00-23:00"] }
prices = { critical = 1.3"#,
        r#"periods = { valley = ["23:00-06:00"], flat = ["07:00-08:00", "11:00-18:00"], peak = ["08:00-11:00", "17:00-23:00"] }
prices = { critical = 1.3"#,
    );
    std::fs::write(&path, bad).expect("site");
    let e = Site::load(&path).expect_err("refused").to_string();
    assert!(e.contains("overlaps `elec-h1`"), "{e}");
    assert!(e.contains("06:00 is in no period"), "{e}");
    assert!(e.contains("17:00 is in both"), "{e}");
    assert!(e.contains("site.toml:"), "file and line named: {e}");

    // A gap between two tariffs is allowed, and `check` names it.
    let gap = SITE.replace(
        r#"id = "elec-h2"
carrier = "electricity"
from = 2026-07-16"#,
        r#"id = "elec-h2"
carrier = "electricity"
from = 2026-07-20"#,
    );
    std::fs::write(&path, gap).expect("site");
    let o = crate::support::bin()
        .args(["check", "--config", path.to_str().expect("p")])
        .output()
        .expect("check");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("tariffs `elec-h1` and `elec-h2` leave 2026-07-16 to 2026-07-19 without a electricity price"),
        "{out}"
    );
}

/// A meter's own tariff registers (DL/T 645 费率 1–4) against the time-of-use
/// split of its 15-minute consumption on Wednesday 2026-07-15, under 谷
/// 23-07, 平 07-08 and 11-18, 峰 08-11 and 18-23, 尖峰 10-11 and 19-21
/// (July). The load is 10 kW from 09:00 to 17:00 and 2 kW otherwise: 112 kWh.
///
/// Our split: 谷 8 h × 2 = 16; 平 2 (07) and 60 (11-17) and 2 (17) = 64;
/// 峰 2 (08) and 10 (09) and 2 (18) and 4 (21-23) = 18; 尖峰 10 (10) and
/// 4 (19-21) = 14. A meter with the same table agrees (0 %).
///
/// A meter whose clock runs an hour fast files hour h under the period of
/// hour h + 1: 谷 16; 平 2 (06) and 10 (10) and 60 (11-17) = 72; 峰 2 (07)
/// and 2 (08) and 2 (17) and 4 (20-22) = 10; 尖峰 10 (09) and 4 (18-20) =
/// 14: 8 kWh moved from 峰 to 平, 8 / 112 = 7.1 %, above the 5 % default.
/// (A constant load would hide the shift: the periods' totals do not change
/// when the whole day turns by an hour.)
#[test]
fn tariff_registers_that_disagree_with_the_bucket_split_raise_the_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    let site_text = SITE.to_string()
        + r#"
[[meter]]
id = "E_OK"
kind = "electricity"
unit = "kWh"
serves = { building = "B" }
interval_s = 900

[[meter]]
id = "E_FAST"
kind = "electricity"
unit = "kWh"
serves = { building = "B" }
interval_s = 900

[[alert]]
id = "tou"
kind = "tou_mismatch"
"#;
    std::fs::write(&path, site_text).expect("site");
    let site = Site::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let tariff = site
        .tariffs
        .iter()
        .find(|t| t.id == "elec-h1")
        .expect("tariff");
    let (d15, d16) = (day(&site, "2026-07-15"), day(&site, "2026-07-16"));
    let mut batch = Vec::new();
    for (meter, shift_h) in [("E_OK", 0), ("E_FAST", 1)] {
        let mut total = 5000.0;
        let mut regs = [1000.0f64; 4];
        let mut t = d15;
        while t <= d16 {
            batch.push(reading(meter, "energy_import", t, total));
            for (k, q) in [
                "energy_import_t1",
                "energy_import_t2",
                "energy_import_t3",
                "energy_import_t4",
            ]
            .iter()
            .enumerate()
            {
                batch.push(reading(meter, q, t, regs[k]));
            }
            // The meter files this quarter hour under the period of its own clock.
            let minute = ((t - d15) / 60_000 + shift_h * 60).rem_euclid(24 * 60) as u32;
            let (name, _) = tariff.price_at(7, minute).expect("a period");
            let k = ["critical", "peak", "flat", "valley"]
                .iter()
                .position(|p| *p == name)
                .expect("known period");
            let hour = (t - d15) / 3_600_000 % 24;
            let kwh = if (9..17).contains(&hour) { 2.5 } else { 0.5 };
            total += kwh;
            regs[k] += kwh;
            t += Q;
        }
    }
    let mut writer = meterflow_store::Writer::open(&site).expect("store");
    writer.write_batch(&batch, "test").expect("write");
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let rule = site
        .alert_rules
        .iter()
        .find(|r| r.id == "tou")
        .expect("rule");
    let obs = meterflow_runtime::alerting::observe(
        &site,
        &reader,
        rule,
        d16 + 8 * 3_600_000,
        &meterflow_runtime::alerting::LiveMetrics::default(),
    )
    .expect("observe");
    let value = |m: &str| {
        obs.iter()
            .find(|o| o.target == m)
            .map(|o| (o.value, o.detail.clone()))
            .unwrap_or_else(|| panic!("no observation for {m}: {obs:?}"))
    };
    let (ok, detail) = value("E_OK");
    assert!(ok.abs() < 1e-9, "{detail}");
    let (fast, detail) = value("E_FAST");
    assert!((fast - 8.0 / 112.0).abs() < 1e-9, "{detail}");
    assert!(detail.contains("clock"), "{detail}");
    // Meters without tariff registers are not judged.
    assert!(obs.iter().all(|o| o.target != "MAIN"), "{obs:?}");
}

const ASSIGNED: &str = r#"
[site]
name = "assigned tariffs"
timezone = "Asia/Shanghai"

[store]
path = "s.db"

[[building]]
id = "B1"
total_area_m2 = 2000
office_area_m2 = 1000

[[building]]
id = "B2"
total_area_m2 = 1000
office_area_m2 = 500

[[agency]]
id = "A1"
name = "一局"

[[agency]]
id = "A2"
name = "二局"

[[space]]
agency = "A1"
building = "B1"
from = 2026-01-01
area_m2 = 600

[[space]]
agency = "A1"
building = "B2"
from = 2026-01-01
area_m2 = 500

[[space]]
agency = "A2"
building = "B1"
from = 2026-01-01
area_m2 = 400

[[meter]]
id = "E1"
kind = "electricity"
unit = "kWh"
serves = { building = "B1" }
allocation = "area_share"
interval_s = 900

[[meter]]
id = "E2"
kind = "electricity"
unit = "kWh"
serves = { building = "B2" }
allocation = "area_share"
interval_s = 900

[[meter]]
id = "EC"
kind = "electricity"
unit = "kWh"
serves = { agency = "A2" }
interval_s = 900

[[tariff]]
id = "e-default"
carrier = "electricity"
from = 2026-01-01
source = "test: one price"
price = 1.0

[[tariff]]
id = "e-b2"
carrier = "electricity"
from = 2026-01-01
source = "test: building B2's own supply, two-part"
price = 0.8
demand_cny_per_kw = 30.0
buildings = ["B2"]

[[tariff]]
id = "e-canteen"
carrier = "electricity"
from = 2026-01-01
source = "test: the canteen meter's own account"
price = 0.5
meters = ["EC"]

[[tariff]]
id = "heat-area"
carrier = "heat"
from = 2026-01-01
source = "test: 30 CNY/m² a season, 15 Nov to 15 Mar"
per_m2_season = 30.0
season = ["11-15", "03-15"]
"#;

/// Quarter-hour readings of `meter` over local 2026-07-01 at `kw(hour)`.
fn july_first(site: &Site, meter: &str, kw: &dyn Fn(i64) -> f64) -> Vec<Reading> {
    let d = day(site, "2026-07-01");
    let mut out = Vec::new();
    let mut value = 100.0;
    for q in 0..=96 {
        let t = d + q * Q;
        out.push(reading(meter, "energy_import", t, value));
        value += kw(q / 4) * 0.25;
    }
    out
}

/// The site `toml` in `dir`, with 1 July 2026 stored for its three
/// electricity meters: E1 10 kW, E2 20 kW 08-12 h and 5 kW otherwise, EC 2 kW.
fn assigned_july(dir: &std::path::Path, toml: &str) -> Site {
    let path = dir.join("site.toml");
    std::fs::write(&path, toml).expect("site");
    let site = Site::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut writer = meterflow_store::Writer::open(&site).expect("store");
    let e2 = |h: i64| if (8..12).contains(&h) { 20.0 } else { 5.0 };
    for (m, kw) in [
        ("E1", &(|_| 10.0) as &dyn Fn(i64) -> f64),
        ("E2", &e2),
        ("EC", &|_| 2.0),
    ] {
        writer
            .write_batch(&july_first(&site, m, kw), "test")
            .expect("write");
    }
    site
}

/// Tariffs by building and by meter, a demand charge, and heat by area.
/// 1 July 2026: E1 (building B1, split by area A1 600 / A2 400) 10 kW all
/// day = 240 kWh; E2 (building B2, A1 alone) 20 kW 08-12 h and 5 kW the
/// other 20 h = 80 + 100 = 180 kWh, greatest quarter 5 kWh = 20 kW; EC
/// (serving A2, so in B1) 2 kW = 48 kWh on its own tariff.
/// - B1: 240 × 1.0 + 48 × 0.5 = 264 CNY;
/// - B2: 180 × 0.8 = 144, demand 20 kW × 30 = 600 (all of the tariff's
///   July kWh are B2's): 744 CNY;
/// - A1: 144 kWh of E1 × 1.0 = 144, E2 144 + 600 = 744: 888 CNY;
/// - A2: 96 × 1.0 + 24 = 120 CNY;
/// - site: 264 + 744 = 1 008 = A1 + A2 (one price for all would be 468).
///
/// Heat by area in December 2026: the season 2026-11-15..2027-03-15 has
/// 16 + 31 + 31 + 28 + 15 = 121 days; B1's 2 000 m² × 30 × 31 / 121 =
/// 15 371.90, B2's 1 000 m² = 7 685.95; A1 takes 600/1000 of B1 and all of
/// B2 = 16 909.09, A2 400/1000 of B1 = 6 148.76; the site 23 057.85.
#[test]
fn tariffs_by_building_and_meter_demand_charges_and_heat_by_area_by_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = assigned_july(dir.path(), ASSIGNED);
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let ctx = KpiContext::new(&site);
    let july = period("2026-07-01", "2026-07-02");
    let cost = |s: Scope| {
        let c = ctx.cost(&reader, &s, july).expect("cost");
        assert!(c.unpriced.is_empty(), "{:?}", c.unpriced);
        c
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    let b1 = cost(Scope::Building("B1".into()));
    assert!(close(b1.total_cny, 264.0), "B1 {}", b1.total_cny);
    let b2 = cost(Scope::Building("B2".into()));
    assert!(close(b2.total_cny, 744.0), "B2 {}", b2.total_cny);
    let e = &b2.carriers[0];
    assert_eq!(e.fixed.len(), 1, "{:?}", e.fixed);
    let f = &e.fixed[0];
    assert_eq!((f.kind.as_str(), f.tariff.as_str()), ("demand", "e-b2"));
    assert!(close(f.basis, 20.0) && close(f.cny, 600.0), "{f:?}");
    let a1 = cost(Scope::Agency("A1".into()));
    assert!(close(a1.total_cny, 888.0), "A1 {}", a1.total_cny);
    let a2 = cost(Scope::Agency("A2".into()));
    assert!(close(a2.total_cny, 120.0), "A2 {}", a2.total_cny);
    let s = cost(Scope::Site);
    assert!(close(s.total_cny, 1008.0), "site {}", s.total_cny);
    assert!(close(s.carriers[0].quantity, 468.0));
    assert!(close(a1.total_cny + a2.total_cny, s.total_cny));
    // One meter: the canteen's 48 kWh × 0.5; E2's 180 × 0.8 and all of its
    // tariff's demand charge; E1's 240 × 1.0.
    let meter = |m: &str| {
        ctx.meter_cost(&reader, m, july)
            .expect("meter cost")
            .total_cny
    };
    assert!(close(meter("EC"), 24.0), "EC {}", meter("EC"));
    assert!(close(meter("E2"), 744.0), "E2 {}", meter("E2"));
    assert!(close(meter("E1"), 240.0), "E1 {}", meter("E1"));

    let dec = period("2026-12-01", "2027-01-01");
    let heat = |s: Scope| {
        let c = ctx.cost(&reader, &s, dec).expect("cost");
        c.carriers
            .iter()
            .find(|x| x.carrier == "heat")
            .map_or(0.0, |h| h.cny())
    };
    let per_day = 30.0 * 31.0 / 121.0;
    assert!(close(heat(Scope::Building("B1".into())), 2000.0 * per_day));
    assert!(close(heat(Scope::Building("B2".into())), 1000.0 * per_day));
    assert!(close(
        heat(Scope::Agency("A1".into())),
        (1200.0 + 1000.0) * per_day
    ));
    assert!(close(heat(Scope::Agency("A2".into())), 800.0 * per_day));
    assert!(close(heat(Scope::Site), 3000.0 * per_day));
    assert!((heat(Scope::Site) - 23_057.85).abs() < 0.01);
    // July is outside the season: no heating charge.
    assert_eq!(
        ctx.cost(&reader, &Scope::Site, july)
            .expect("cost")
            .carriers
            .iter()
            .find(|x| x.carrier == "heat")
            .map_or(-1.0, |h| h.cny()),
        0.0
    );
}

/// A capacity charge on the site's default tariff: 315 kVA × 20 CNY = 6 300
/// CNY in July, shared by kWh. With the same 1 July: the site has 468 kWh,
/// A1 144 + 180 = 324 (69.23 %), A2 96 + 48 = 144 (30.77 %): A1 pays
/// 324 + 6 300 × 324 / 468 = 324 + 4 361.54.
#[test]
fn a_capacity_charge_is_shared_by_kwh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let default_only = ASSIGNED
        .split("[[tariff]]")
        .next()
        .expect("head")
        .to_string()
        + "[[tariff]]\nid = \"e\"\ncarrier = \"electricity\"\nfrom = 2026-01-01\nsource = \"test\"\nprice = 1.0\ncapacity_kva = 315\ncapacity_cny_per_kva = 20\n";
    let site = assigned_july(dir.path(), &default_only);
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let ctx = KpiContext::new(&site);
    let july = period("2026-07-01", "2026-07-02");
    let total = |s: Scope| ctx.cost(&reader, &s, july).expect("cost").total_cny;
    assert!((total(Scope::Site) - (468.0 + 6300.0)).abs() < 1e-6);
    let a1 = total(Scope::Agency("A1".into()));
    assert!((a1 - (324.0 + 6300.0 * 324.0 / 468.0)).abs() < 1e-6, "{a1}");
    let a2 = total(Scope::Agency("A2".into()));
    assert!((a1 + a2 - total(Scope::Site)).abs() < 1e-6);
}

/// Assignment mistakes are config errors at their key.
#[test]
fn tariff_assignment_mistakes_are_config_errors() {
    let errors = |extra: &str| {
        let src = format!("{ASSIGNED}\n{extra}");
        match Site::parse(&src, std::path::Path::new("site.toml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    assert_eq!(errors(""), "");
    let e = errors(
        "[[tariff]]\nid = \"x\"\ncarrier = \"electricity\"\nfrom = 2026-01-01\nsource = \"t\"\nprice = 1\nbuildings = [\"B9\"]\n",
    );
    assert!(
        e.contains("buildings[0]") && e.contains("no building `B9`"),
        "{e}"
    );
    let e = errors(
        "[[tariff]]\nid = \"x\"\ncarrier = \"electricity\"\nfrom = 2026-06-01\nsource = \"t\"\nprice = 1\nbuildings = [\"B2\"]\n",
    );
    assert!(e.contains("overlaps `e-b2`"), "{e}");
    let e = errors(
        "[[tariff]]\nid = \"x\"\ncarrier = \"electricity\"\nfrom = 2025-01-01\nto = 2025-12-31\nsource = \"t\"\nprice = 1\nmeters = [\"EC\"]\nbuildings = [\"B2\"]\n",
    );
    assert!(e.contains("name one kind"), "{e}");
    let e = errors(
        "[[tariff]]\nid = \"x\"\ncarrier = \"heat\"\nfrom = 2025-01-01\nto = 2025-12-31\nsource = \"t\"\nper_m2_season = 30\n",
    );
    assert!(e.contains("season"), "{e}");
    let e = errors(
        "[[tariff]]\nid = \"x\"\ncarrier = \"water\"\nfrom = 2025-01-01\nto = 2025-12-31\nsource = \"t\"\nprice = 1\ndemand_cny_per_kw = 3\n",
    );
    assert!(
        e.contains("demand and capacity charges are for electricity"),
        "{e}"
    );
}

/// A zone's cost: its meters' consumption with the tariff. Zone Z of
/// building B has meter EZ at 3 kW on 1 July 2026 (72 kWh) under the site's
/// 0.6 CNY/kWh: 43.2 CNY; the building's own main meter is not the zone's.
#[test]
fn a_zone_is_priced_like_a_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    std::fs::write(
        &path,
        "[site]\nname = \"zones\"\ntimezone = \"Asia/Shanghai\"\n[store]\npath = \"s.db\"\n\
[[building]]\nid = \"B\"\ntotal_area_m2 = 1000\n[[zone]]\nid = \"Z\"\nbuilding = \"B\"\narea_m2 = 300\n\
[[meter]]\nid = \"EZ\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = { zone = \"Z\" }\ninterval_s = 900\n\
[[meter]]\nid = \"EB\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = { building = \"B\" }\ninterval_s = 900\n\
[[tariff]]\nid = \"e\"\ncarrier = \"electricity\"\nfrom = 2026-01-01\nsource = \"test\"\nprice = 0.6\n",
    )
    .expect("site");
    let site = Site::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut writer = meterflow_store::Writer::open(&site).expect("store");
    writer
        .write_batch(&july_first(&site, "EZ", &|_| 3.0), "test")
        .expect("write");
    writer
        .write_batch(&july_first(&site, "EB", &|_| 7.0), "test")
        .expect("write");
    drop(writer);
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let ctx = KpiContext::new(&site);
    let july = period("2026-07-01", "2026-07-02");
    let z = ctx.zone_cost(&reader, "Z", july).expect("zone cost");
    assert!((z.total_cny - 43.2).abs() < 1e-9, "{z:?}");
    let b = ctx
        .cost(&reader, &Scope::Building("B".into()), july)
        .expect("cost");
    assert!((b.total_cny - (72.0 + 168.0) * 0.6).abs() < 1e-9, "{b:?}");
}

/// A meter's cost over the API and on its page: three days of the example
/// site's lighting meter at one price of 0.5 CNY/kWh cost half its kWh.
#[test]
fn a_meters_cost_over_the_api_and_on_its_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = crate::api::server_with(
        dir.path(),
        false,
        "\n[[tariff]]\nid = \"e\"\ncarrier = \"electricity\"\nfrom = 2020-01-01\nsource = \"test\"\nprice = 0.5\n",
    );
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    let (from, to) = (
        today - chrono::Duration::days(3),
        today + chrono::Duration::days(1),
    );
    let (code, v) = crate::api::get(
        srv.port,
        &format!("/api/v1/meters/main-f2-light/consumption?from={from}&to={to}"),
        Some(crate::api::FIN),
    );
    assert_eq!(code, 200, "{v}");
    let kwh: f64 = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["value"].as_f64())
        .sum();
    assert!(kwh > 0.0, "{v}");
    let cny = v["cost"]["total_cny"].as_f64().expect("cost");
    assert!((cny - kwh * 0.5).abs() < 1e-6, "{cny} for {kwh} kWh");
    assert_eq!(v["cost"]["period"]["from"], from.to_string());
    // The meter's page shows the same cost table.
    let cookie = format!(
        "mf_session={}",
        crate::api::sign_in(srv.port, crate::api::MANAGER)
    );
    let (code, _, page) = crate::api::raw(
        srv.port,
        "GET",
        "/meters/main-f2-light?span=30d",
        &[("Cookie", cookie.as_str())],
        "",
    );
    assert_eq!(code, 200);
    assert!(
        page.contains("id=\"cost\""),
        "no cost table on the meter page"
    );
}

/// A summer and a winter table side by side (`months`): 1 July is priced
/// with the summer one (24 kWh × 1.2 = 28.8 CNY); two tables sharing a
/// month are refused.
#[test]
fn seasonal_tables_by_month() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    let head = "[site]\nname = \"seasons\"\ntimezone = \"Asia/Shanghai\"\n[store]\npath = \"s.db\"\n\
[[building]]\nid = \"B\"\ntotal_area_m2 = 1000\n\
[[meter]]\nid = \"E\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = { building = \"B\" }\ninterval_s = 900\n";
    let tariffs = |summer: &str| {
        format!(
            "[[tariff]]\nid = \"summer\"\ncarrier = \"electricity\"\nfrom = 2026-01-01\nsource = \"t\"\nprice = 1.2\nmonths = [{summer}]\n\
             [[tariff]]\nid = \"rest\"\ncarrier = \"electricity\"\nfrom = 2026-01-01\nsource = \"t\"\nprice = 0.9\nmonths = [1, 2, 3, 4, 5, 10, 11, 12]\n"
        )
    };
    let bad = format!("{head}{}", tariffs("5, 6, 7, 8, 9"));
    let e = Site::parse(&bad, &path)
        .expect_err("May in both")
        .to_string();
    assert!(e.contains("overlaps"), "{e}");
    std::fs::write(&path, format!("{head}{}", tariffs("6, 7, 8, 9"))).expect("site");
    let site = Site::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut writer = meterflow_store::Writer::open(&site).expect("store");
    writer
        .write_batch(&july_first(&site, "E", &|_| 1.0), "test")
        .expect("write");
    drop(writer);
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let c = KpiContext::new(&site)
        .cost(&reader, &Scope::Site, period("2026-07-01", "2026-07-02"))
        .expect("cost");
    assert!((c.total_cny - 28.8).abs() < 1e-9, "{c:?}");
}
