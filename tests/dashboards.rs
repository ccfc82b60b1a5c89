//! Every Grafana panel query, template-variable query and provisioned alert
//! query runs against a real InfluxDB 1.6 filled by meterflow itself, with
//! Grafana's macros substituted the way Grafana does; key panels are checked
//! against the store. The dashboards and deploy files are validated by
//! tests/peers/validate_deploy.py (JSON Schema, YAML, Dockerfile, unit).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chrono::{Datelike as _, Duration as Days};

use crate::influx::{Influx, demo_site, v1_section};
use crate::support::{bin, free_port, repo};

/// Grafana's `$__interval`: the range over ~1000 points, rounded up to a
/// round step, never below the panel's `interval`.
fn grafana_interval(range_ms: i64, min: Option<&str>) -> String {
    const STEPS: [(i64, &str); 15] = [
        (1_000, "1s"),
        (5_000, "5s"),
        (10_000, "10s"),
        (15_000, "15s"),
        (30_000, "30s"),
        (60_000, "1m"),
        (300_000, "5m"),
        (600_000, "10m"),
        (900_000, "15m"),
        (1_800_000, "30m"),
        (3_600_000, "1h"),
        (10_800_000, "3h"),
        (21_600_000, "6h"),
        (43_200_000, "12h"),
        (86_400_000, "1d"),
    ];
    let min_ms = min
        .and_then(|m| STEPS.iter().find(|(_, s)| *s == m))
        .map_or(0, |(ms, _)| *ms);
    let raw = (range_ms / 1000).max(min_ms);
    STEPS
        .iter()
        .find(|(ms, _)| *ms >= raw)
        .map_or("1d", |(_, s)| s)
        .to_string()
}

/// Milliseconds of a Grafana relative time like `now-7d` / `now-1h`.
fn relative_ms(from: &str) -> i64 {
    let spec = from.trim_start_matches("now-");
    let (n, unit) = spec.split_at(spec.len() - 1);
    let n: i64 = n.parse().unwrap_or_else(|_| panic!("time.from {from}"));
    n * match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => panic!("unit {other}"),
    }
}

/// A value formatted for a regex the way Grafana's InfluxDB datasource does:
/// escaped, several values as an alternation.
fn regex_value(values: &[String]) -> String {
    let esc = |v: &String| {
        v.chars()
            .flat_map(|c| {
                if "\\^$.|?*+()[]{}/".contains(c) {
                    vec!['\\', c]
                } else {
                    vec![c]
                }
            })
            .collect::<String>()
    };
    match values {
        [one] => esc(one),
        many => format!("({})", many.iter().map(esc).collect::<Vec<_>>().join("|")),
    }
}

fn substitute(
    q: &str,
    from_ms: i64,
    to_ms: i64,
    interval: &str,
    vars: &BTreeMap<String, String>,
) -> String {
    let mut out = q
        .replace(
            "$timeFilter",
            &format!("time >= {from_ms}ms and time <= {to_ms}ms"),
        )
        .replace("$__interval", interval);
    for (k, v) in vars {
        out = out.replace(&format!("${k}"), v);
    }
    let unsubstituted = out
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && (w[1].is_ascii_alphabetic() || w[1] == b'_'));
    assert!(!unsubstituted, "unsubstituted macro in {out}");
    out
}

/// Some series has some row with a non-null value.
fn has_data(series: &[crate::influx::Series]) -> bool {
    series
        .iter()
        .any(|(_, rows)| rows.iter().any(|r| r.iter().skip(1).any(|v| !v.is_null())))
}

fn fixture(dir: &Path) -> (Influx, std::path::PathBuf) {
    let influx = Influx::start(dir);
    let sim_port = free_port();
    let site = demo_site(
        dir,
        sim_port,
        &format!("{}\n[alerting]\ninterval_s = 2\n", v1_section(influx.port)),
    );
    // The provisioned projection alert queries `projected_ratio`, which is
    // given from 30 days with data by default: project at once here.
    let src = std::fs::read_to_string(&site).expect("site");
    assert!(src.contains("[site]\n"), "the demo site has a [site] table");
    std::fs::write(
        &site,
        src.replacen("[site]\n", "[site]\nprojection_min_days = 0\n", 1),
    )
    .expect("site");
    // History: the 7 local days before today (with faults), and the same
    // window a year earlier, so year-on-year figures exist.
    let tz = meterflow_model::Site::load(&site).expect("site").tz;
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    for (from, days, name, faults) in [
        (today - Days::days(7), "7", "recent.csv", true),
        (today - Days::days(372), "14", "last-year.csv", false),
    ] {
        let out = dir.join(name);
        let mut args = vec![
            "generate".to_string(),
            "--config".into(),
            site.display().to_string(),
            "--from".into(),
            from.to_string(),
            "--days".into(),
            days.into(),
            "--out".into(),
            out.display().to_string(),
        ];
        if faults {
            args.push("--faults".into());
        }
        let o = bin().args(&args).output().expect("generate");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = bin()
            .args([
                "import",
                "--config",
                &site.display().to_string(),
                &out.display().to_string(),
            ])
            .output()
            .expect("import");
        // The faulty file has malformed lines: import reports them and goes on.
        assert!(
            o.status.success() || o.status.code() == Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Live: the simulator with a counter reset, the pipeline for 10 s.
    let sim = bin()
        .args([
            "simulate",
            "--config",
            &site.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{sim_port}"),
            "--fault",
            "1=reset@4",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("simulate");
    let _sim = crate::support::Proc(sim);
    crate::support::wait_port(sim_port);
    // The waste ledger through the API while the pipeline runs: a clerk token,
    // weigh-ins of two agencies yesterday (the third has none: its veto).
    const CLERK: &str = "dashboards-clerk-token-0123456789";
    const MANAGER: &str = "dashboards-manager-token-012345678";
    std::fs::write(
        dir.join("api-tokens"),
        format!(
            "clerk:waste sha256:{}\nmanager sha256:{}\n",
            meterflow_http::hash_token(CLERK),
            meterflow_http::hash_token(MANAGER)
        ),
    )
    .expect("tokens");
    let text = std::fs::read_to_string(&site).expect("site");
    let api_port: u16 = text
        .split("[api]")
        .nth(1)
        .and_then(|t| t.split("listen = \"127.0.0.1:").nth(1))
        .and_then(|t| t.split('"').next())
        .and_then(|p| p.parse().ok())
        .expect("the demo site's [api] port");
    let mut run = bin()
        .args([
            "run",
            "--config",
            &site.display().to_string(),
            "--seconds",
            "10",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run");
    crate::support::wait_port(api_port);
    let yesterday = today - Days::days(1);
    let agencies: Vec<String> = meterflow_model::Site::load(&site)
        .expect("site")
        .agencies
        .iter()
        .map(|a| a.id.clone())
        .collect();
    for (agency, category, kg, dest) in [
        (&agencies[0], "recyclable", 12.5, "recycling"),
        (&agencies[0], "kitchen", 30.0, "composting"),
        (&agencies[1], "residual", 8.0, "landfill"),
    ] {
        let body = format!(
            r#"{{"time": "{yesterday} 09:00", "agency": "{agency}", "point": "lobby", "category": "{category}", "kg": {kg}, "destination": "{dest}"}}"#
        );
        let (code, text) = crate::api::request(
            api_port,
            "POST",
            "/api/v1/ledgers/waste/weigh-ins",
            Some(CLERK),
            &body,
        );
        assert_eq!(code, 201, "{text}");
    }
    // The vehicle, office-space and asset ledgers: one entry of each kind the
    // dashboards read. By hand: 100 km on 8 L = 8 L/100 km.
    let a0 = &agencies[0];
    for (path, body) in [
        (
            "vehicles/vehicles",
            format!(
                r#"{{"time": "{yesterday} 08:00", "plate": "京A-D01", "agency": "{a0}", "fuel": "gasoline", "purpose": "general", "odometer_km": 1000}}"#
            ),
        ),
        (
            "vehicles/trips",
            format!(
                r#"{{"time": "{yesterday} 09:00", "plate": "京A-D01", "start_km": 1000, "end_km": 1100}}"#
            ),
        ),
        (
            "vehicles/fuel-fills",
            format!(
                r#"{{"time": "{yesterday} 17:00", "plate": "京A-D01", "litres": 8, "amount_cny": 64}}"#
            ),
        ),
        (
            "space/rooms",
            format!(
                r#"{{"time": "{yesterday}", "room": "M-201", "building": "main", "use_type": "office", "usable_m2": 30}}"#
            ),
        ),
        (
            "space/allocations",
            format!(
                r#"{{"time": "{yesterday}", "room": "M-201", "agency": "{a0}", "agreement": "UA-1"}}"#
            ),
        ),
        (
            "space/occupants",
            format!(
                r#"{{"time": "{yesterday}", "person": "p1", "agency": "{a0}", "rank": "正局处", "room": "M-201"}}"#
            ),
        ),
        (
            "assets/cards",
            format!(
                r#"{{"time": "{yesterday}", "epc": "E1", "category": "laptop", "value_cny": 6000, "life_years": 5, "agency": "{a0}", "room": "M-201"}}"#
            ),
        ),
        (
            "assets/scans",
            format!(r#"{{"time": "{yesterday} 10:00", "epc": "E1", "room": "M-201"}}"#),
        ),
    ] {
        let (code, text) = crate::api::request(
            api_port,
            "POST",
            &format!("/api/v1/ledgers/{path}"),
            Some(MANAGER),
            &body,
        );
        assert_eq!(code, 201, "{path}: {text}");
    }
    let _ = run.wait();
    (influx, site)
}

/// Run every panel of every dashboard once with the first value of each
/// variable and once with All; returns (dashboard, panel title, variant) → series.
#[test]
fn every_dashboard_query_returns_data_and_key_panels_match_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (influx, site_path) = fixture(dir.path());

    let v = Command::new("python3")
        .arg(repo().join("tests/peers/validate_deploy.py"))
        .output()
        .expect("python3 (see .ci/run)");
    assert!(
        v.status.success(),
        "deploy/dashboards validation:\n{}",
        String::from_utf8_lossy(&v.stderr)
    );
    let checked: serde_json::Value = serde_json::from_slice(&v.stdout).expect("validator output");
    // The scale-out deploy's --shard arguments parse with meterflow's own
    // parser; a StatefulSet pod name stands in for $(POD_NAME).
    let shard_args = checked["shard_args"].as_array().expect("shard_args");
    assert!(shard_args.len() >= 4, "{shard_args:?}");
    for a in shard_args {
        let a = a
            .as_str()
            .expect("text")
            .replace("$(POD_NAME)", "meterflow-2");
        let s: meterflow_model::shard::Shard = a.parse().expect("a valid --shard");
        assert!(s.is_sharded(), "{a}");
    }

    let now = chrono::Utc::now().timestamp_millis() + 60_000;
    let mut results: BTreeMap<(String, String, &str), Vec<crate::influx::Series>> = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(repo().join("dashboards"))
        .expect("dashboards/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "{files:?}");
    let mut queries_run = 0;
    for f in &files {
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f).expect("read")).expect("json");
        let name = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let range = relative_ms(d["time"]["from"].as_str().unwrap_or("now-7d"));
        let from = now - range;
        // Template variables: their queries must return values.
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for var in d["templating"]["list"].as_array().into_iter().flatten() {
            let q = var["query"].as_str().expect("variable query");
            let rows = influx.series(q);
            queries_run += 1;
            let mut vals: Vec<String> = rows
                .iter()
                .flat_map(|(_, r)| r.iter())
                .filter_map(|r| r.get(1).and_then(|v| v.as_str()).map(str::to_string))
                .collect();
            vals.sort();
            assert!(
                !vals.is_empty(),
                "{name}: variable {} has no values: {q}",
                var["name"]
            );
            values.insert(var["name"].as_str().unwrap_or_default().to_string(), vals);
        }
        for variant in ["one", "all"] {
            let vars: BTreeMap<String, String> = values
                .iter()
                .map(|(k, v)| {
                    let chosen = if variant == "one" { &v[..1] } else { &v[..] };
                    (k.clone(), regex_value(chosen))
                })
                .collect();
            for p in d["panels"].as_array().into_iter().flatten() {
                let title = p["title"].as_str().unwrap_or_default().to_string();
                let interval = grafana_interval(range, p["interval"].as_str());
                for t in p["targets"].as_array().into_iter().flatten() {
                    let q = substitute(
                        t["query"].as_str().expect("query"),
                        from,
                        now,
                        &interval,
                        &vars,
                    );
                    let s = influx.series(&q);
                    queries_run += 1;
                    assert!(
                        has_data(&s),
                        "{name} / {title} ({variant}): no data for\n{q}"
                    );
                    results.insert((name.clone(), title.clone(), variant), s);
                }
            }
            if values.is_empty() {
                break;
            }
        }
    }
    // The provisioned Grafana alert rules' queries too.
    for a in checked["alert_queries"].as_array().into_iter().flatten() {
        let from_s = a["from_s"].as_i64().unwrap_or(900);
        let q = substitute(
            a["query"].as_str().unwrap_or_default(),
            now - from_s * 1000,
            now,
            "1m",
            &BTreeMap::new(),
        );
        assert!(
            has_data(&influx.series(&q)),
            "alert rule {}: no data for\n{q}",
            a["rule"]
        );
        queries_run += 1;
    }
    assert!(queries_run >= 40, "{queries_run} queries");

    // Key panel 1: the site's daily electricity equals the store's day rollups.
    let site = meterflow_model::Site::load(&site_path).expect("site");
    let c = rusqlite::Connection::open_with_flags(
        site.store_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("store");
    let store_days: BTreeMap<i64, f64> = {
        let mut s = c
            .prepare("SELECT a.start_ms, a.value FROM agg a JOIN agg_scope s ON s.id = a.scope WHERE s.level = 'site' AND s.class = 'electricity' AND s.subitem = '' AND a.grain = 'day' AND a.start_ms >= ?1")
            .expect("prepare");
        s.query_map([now - 7 * 86_400_000 - 86_400_000], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as f64 / 1e9))
        })
        .expect("q")
        .map(|r| r.expect("row"))
        .collect()
    };
    let panel = &results[&(
        "site".to_string(),
        "Daily electricity, site (local days)".to_string(),
        "one",
    )];
    let panel_days: BTreeMap<i64, f64> = panel[0]
        .1
        .iter()
        .filter_map(|r| Some((r[0].as_i64()?, r[1].as_f64()?)))
        .collect();
    assert!(panel_days.len() >= 7, "{panel_days:?}");
    // The first bucket holds only the part of its day inside $timeFilter; whole days compare.
    let window_from = now - relative_ms("now-7d");
    let whole: Vec<_> = panel_days
        .iter()
        .filter(|(d, _)| **d >= window_from)
        .collect();
    assert!(whole.len() >= 6, "{panel_days:?}");
    for (day, v) in whole {
        // Buckets start at local midnight, where the store's day rollups start.
        let want = store_days
            .get(day)
            .unwrap_or_else(|| panic!("no store day at {day}: {store_days:?}"));
        assert!(
            (v - want).abs() <= 1e-9 * want.abs().max(1.0),
            "day {day}: panel {v}, store {want}"
        );
    }

    // Key panel 2: per-capita energy of the first agency this year equals the library's KPI.
    let first_agency = site
        .agencies
        .iter()
        .map(|a| a.id.clone())
        .min()
        .expect("agencies");
    let period = meterflow_kpi::period_of(chrono::Utc::now().with_timezone(&site.tz).year(), None)
        .expect("year");
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let k = meterflow_kpi::agency_kpis(&site, &reader, &first_agency, period).expect("kpis");
    let want = k.per_capita_energy.expect("per-capita energy");
    let panel = &results[&(
        "agency".to_string(),
        "Per-capita energy this year (kgce/person)".to_string(),
        "one",
    )];
    assert_eq!(panel.len(), 1, "one agency selected: {panel:?}");
    assert_eq!(panel[0].0.get("id"), Some(&first_agency));
    // To 1e-12 relative (the last bit has been seen to differ between processes).
    let got = panel[0].1[0][1].as_f64().unwrap_or(f64::NAN);
    assert!(
        (got - want).abs() <= 1e-12 * want.abs(),
        "per-capita kgce of {first_agency}: {got} vs {want}"
    );
    // Key panel 3: the waste ledger. By hand: the first agency weighed 12.5 kg
    // recyclables (recycled) + 30 kg kitchen waste (composted) = 42.5 kg, all
    // recovered: 100 %; the second 8 kg residual to landfill: 0 %; the third
    // nothing: the one-vote veto.
    let ids: Vec<String> = site.agencies.iter().map(|a| a.id.clone()).collect();
    let year_rows = influx.series("SELECT last(recovery_rate_pct), last(total_kg), last(veto) FROM waste_year GROUP BY agency");
    let row_of = |a: &str| {
        year_rows
            .iter()
            .find(|(t, _)| t.get("agency").map(String::as_str) == Some(a))
            .map(|(_, r)| r[0].clone())
            .expect("waste_year row")
    };
    assert_eq!(row_of(&ids[0])[1].as_f64(), Some(100.0));
    assert_eq!(row_of(&ids[0])[2].as_f64(), Some(42.5));
    assert_eq!(row_of(&ids[1])[1].as_f64(), Some(0.0));
    assert_eq!(row_of(&ids[2])[3].as_bool(), Some(true), "no record: veto");
    assert!(row_of(&ids[2])[1].is_null(), "no rate without records");
    // Key panel 4: the vehicle's year (8 L over 100 km) and the office space
    // (30 m² for one 正局处 person, standard 24 m²: 超标).
    let v = influx.series(
        "SELECT last(km), last(l_per_100km), last(total_cny) FROM vehicle_year GROUP BY plate",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].1[0][1].as_f64(), Some(100.0));
    assert_eq!(v[0].1[0][2].as_f64(), Some(8.0));
    assert_eq!(v[0].1[0][3].as_f64(), Some(64.0));
    let o = influx.series("SELECT last(m2_per_person), last(standard_m2), last(over_standard) FROM office_space GROUP BY agency");
    let mine = o
        .iter()
        .find(|(t, _)| t.get("agency") == Some(&ids[0]))
        .map(|(_, r)| r[0].clone())
        .expect("office_space row");
    assert_eq!(mine[1].as_f64(), Some(30.0));
    assert_eq!(mine[2].as_f64(), Some(24.0));
    assert_eq!(mine[3].as_bool(), Some(true));
    // With All, every agency has its row.
    let all = &results[&(
        "agency".to_string(),
        "Per-capita energy this year (kgce/person)".to_string(),
        "all",
    )];
    assert_eq!(all.len(), site.agencies.len());
}
