//! Sharded instances (ADR 0013) against a real Mosquitto: two shards of one
//! site and an unsharded instance take the same MQTT stream. Each shard keeps
//! exactly its metering groups (a parent meter with its sub-meters), the two
//! are disjoint and cover the site, and their scope rollups add up to the
//! unsharded instance's, integer for integer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::mqtt::{http_post, mosquitto, publish_lines, stop, wait_subscribed};
use crate::support::{Proc, bin, count, free_port, wait_port};

const TOKEN: &str = "shard-token-0123456789abcdef";

/// Building b with zones z1 (agency A) and z2 (agency C). m0 is the
/// building's main meter with sub-meters s1 (z1) and s2 (z2): one metering
/// group. d1..d12 serve A or C directly, w1..w4 are water meters of the
/// zones: one group each.
fn site(dir: &Path, mqtt_port: u16, extra: &str) -> PathBuf {
    let mut s = format!(
        "[site]\nname = \"sharded\"\n{extra}\n[store]\npath = \"store.db\"\n\n\
[[building]]\nid = \"b\"\ntotal_area_m2 = 1000\n\n\
[[zone]]\nid = \"z1\"\nbuilding = \"b\"\narea_m2 = 400\n\n[[zone]]\nid = \"z2\"\nbuilding = \"b\"\narea_m2 = 600\n\n\
[[agency]]\nid = \"A\"\nname = \"A\"\n\n[[agency]]\nid = \"C\"\nname = \"C\"\n\n\
[[headcount]]\nagency = \"A\"\nfrom = 2025-01-01\npersons = 40\n\n[[headcount]]\nagency = \"C\"\nfrom = 2025-01-01\npersons = 60\n\n\
[[space]]\nagency = \"A\"\nzone = \"z1\"\nfrom = 2025-01-01\narea_m2 = 400\n\n\
[[space]]\nagency = \"C\"\nzone = \"z2\"\nfrom = 2025-01-01\narea_m2 = 600\n\n\
[[meter]]\nid = \"m0\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\n\n\
[[meter]]\nid = \"s1\"\nkind = \"electricity\"\nunit = \"kWh\"\nparent = \"m0\"\nserves = {{ zone = \"z1\" }}\n\n\
[[meter]]\nid = \"s2\"\nkind = \"electricity\"\nunit = \"kWh\"\nparent = \"m0\"\nserves = {{ zone = \"z2\" }}\n\n"
    );
    for i in 1..=12 {
        let a = if i % 2 == 0 { "A" } else { "C" };
        s.push_str(&format!(
            "[[meter]]\nid = \"d{i}\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ agency = \"{a}\" }}\n\n"
        ));
    }
    for i in 1..=4 {
        let z = if i % 2 == 0 { "z1" } else { "z2" };
        s.push_str(&format!(
            "[[meter]]\nid = \"w{i}\"\nkind = \"water\"\nunit = \"m3\"\nserves = {{ zone = \"{z}\" }}\n\n"
        ));
    }
    s.push_str(&format!(
        "[[mqtt]]\nid = \"local\"\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nclient_id = \"mf-shard\"\n\n\
[[mqtt.topic]]\npattern = \"json/{{meter_id}}\"\nformat = \"json\"\nvalue = \"v\"\ntimestamp = \"ts\"\n\n\
[influx]\nurl = \"http://127.0.0.1:9\"\ndatabase = \"meterflow\"\nflush_ms = 60000\nkpi_interval_s = 3600\n"
    ));
    std::fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join("site.toml");
    std::fs::write(&path, s).expect("site");
    path
}

/// The log of the instance whose site file is `site`.
fn log(site: &Path) -> String {
    std::fs::read_to_string(site.with_file_name("run.log")).unwrap_or_default()
}

fn meters() -> Vec<String> {
    let mut v = vec!["m0".to_string(), "s1".into(), "s2".into()];
    v.extend((1..=12).map(|i| format!("d{i}")));
    v.extend((1..=4).map(|i| format!("w{i}")));
    v
}

/// Start `meterflow run` on a site file; its log goes to `run.log` beside it
/// (read by `log` when an assertion needs to say what the process did).
fn run(site: &Path, args: &[&str]) -> Proc {
    let log = std::fs::File::create(site.with_file_name("run.log")).expect("log");
    let child = bin()
        .args(["run", "--config", site.to_str().expect("path")])
        .args(args)
        .env("MF_SHARD_TOKEN", TOKEN)
        .env("METERFLOW_LOG", "info,meterflow_runtime=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("run");
    Proc(child)
}

fn stored_meters(db: &Path) -> BTreeSet<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("store");
    let mut s = c
        .prepare("SELECT DISTINCT s.meter FROM readings r JOIN series s ON s.id = r.series")
        .expect("prepare");
    s.query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// (level, id, class, grain, start) → value of every scope rollup row.
fn rollups(db: &Path) -> BTreeMap<(String, String, String, String, i64), i64> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("store");
    let mut s = c
        .prepare(
            "SELECT s.level, s.ref, s.class || '/' || s.subitem, a.grain, a.start_ms, a.value
             FROM agg a JOIN agg_scope s ON s.id = a.scope",
        )
        .expect("prepare");
    s.query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
            r.get(5)?,
        ))
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

fn outbox(db: &Path) -> String {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("store");
    let mut s = c
        .prepare("SELECT body FROM influx_outbox")
        .expect("prepare");
    s.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn two_shards_split_the_site_by_metering_group_and_add_up_to_the_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let http_port = free_port();
    let (d0, d1, dw) = (
        dir.path().join("s0"),
        dir.path().join("s1"),
        dir.path().join("whole"),
    );
    let http =
        format!("\n[http]\nlisten = \"127.0.0.1:{http_port}\"\ntoken_env = \"MF_SHARD_TOKEN\"\n");
    let s0 = site(&d0, port, "");
    let mut text = std::fs::read_to_string(&s0).expect("site");
    text.push_str(&http);
    std::fs::write(&s0, text).expect("site");
    // Shard 1 takes its index from the config file, shard 0 from the command
    // line, as a StatefulSet pod name.
    let s1 = site(&d1, port, "shard = \"1/2\"\n");
    let sw = site(&dw, port, "");
    let whole_text = std::fs::read_to_string(&sw)
        .expect("site")
        .replace("client_id = \"mf-shard\"", "client_id = \"mf-whole\"");
    std::fs::write(&sw, whole_text).expect("site");

    // A sharded run cannot use a shared subscription: it would split one
    // meter's readings between the shards.
    let shared = site(&dir.path().join("shared"), port, "");
    let text = std::fs::read_to_string(&shared).expect("site").replace(
        "client_id = \"mf-shard\"",
        "client_id = \"x\"\nshared_group = \"g\"",
    );
    std::fs::write(&shared, text).expect("site");
    let out = bin()
        .args([
            "run",
            "--config",
            shared.to_str().expect("path"),
            "--shard",
            "0/2",
            "--seconds",
            "5",
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("shared_group") && err.contains("site.toml"),
        "{err}"
    );
    // A bad shard is a clear error.
    let out = bin()
        .args([
            "run",
            "--config",
            s0.to_str().expect("path"),
            "--shard",
            "2/2",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("i must be below N"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let p0 = run(&s0, &["--shard", "meterflow-0/2"]);
    let p1 = run(&s1, &[]);
    let pw = run(&sw, &[]);
    wait_port(http_port);
    for s in [&s0, &s1, &sw] {
        wait_subscribed(&s.with_file_name("run.log"));
    }

    // Six readings 15 minutes apart from 2025-03-03 00:00 +08:00. m0 grows
    // 1 000 kWh per interval, s1 300 and s2 200 (m0's remainder: 500),
    // d_i 10 + i, w_i 1 m³.
    let t0 = 1_740_931_200_000i64;
    for m in meters() {
        let step = match m.as_str() {
            "m0" => 1000,
            "s1" => 300,
            "s2" => 200,
            d if d.starts_with('d') => 10 + d[1..].parse::<i64>().expect("n"),
            _ => 1,
        };
        let lines: String = (0..6)
            .map(|k| {
                format!(
                    "{{\"v\": {}, \"ts\": {}}}\n",
                    5000 + k * step,
                    t0 + k * 900_000
                )
            })
            .collect();
        publish_lines(port, &format!("json/{m}"), &lines);
    }
    let total = 6 * meters().len() as i64;
    let t = Instant::now();
    let dbs = [
        d0.join("store.db"),
        d1.join("store.db"),
        dw.join("store.db"),
    ];
    while (count(&dbs[0], "readings") + count(&dbs[1], "readings") < total
        || count(&dbs[2], "readings") < total)
        && t.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }

    // HTTP push to shard 0 of a meter that shard 1 stores: refused by line,
    // naming the shard; a meter of its own is taken (204 or a partial 400).
    let own0 = stored_meters(&dbs[0]);
    let own1 = stored_meters(&dbs[1]);
    let theirs = own1.iter().next().expect("shard 1 has meters").clone();
    let body = format!("energy,meter={theirs} energy_import=99999 1740960000000\n");
    let (status, text) = http_post(
        http_port,
        "/write?precision=ms",
        &[("Authorization", &format!("Token {TOKEN}"))],
        body.as_bytes(),
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("other_shard")
            && text.contains(&format!("`{theirs}`"))
            && text.contains("1/2"),
        "{text}"
    );

    stop(p0);
    stop(p1);
    stop(pw);

    // Disjoint, covering the site, and the metering group together.
    let all: BTreeSet<String> = meters().into_iter().collect();
    assert!(!own0.is_empty() && !own1.is_empty(), "{own0:?} {own1:?}");
    assert!(own0.is_disjoint(&own1), "{own0:?} {own1:?}");
    assert_eq!(own0.union(&own1).cloned().collect::<BTreeSet<_>>(), all);
    let group_in = |s: &BTreeSet<String>| {
        ["m0", "s1", "s2"]
            .iter()
            .filter(|m| s.contains(**m))
            .count()
    };
    assert!(
        group_in(&own0) == 3 || group_in(&own1) == 3,
        "m0, s1 and s2 stay together: {own0:?} {own1:?}"
    );
    assert_eq!(stored_meters(&dbs[2]), all);
    assert_eq!(
        count(&dbs[0], "readings") + count(&dbs[1], "readings"),
        total
    );

    // Every rollup row of the whole equals the sum of the shards' rows.
    let (r0, r1, rw) = (rollups(&dbs[0]), rollups(&dbs[1]), rollups(&dbs[2]));
    assert!(!rw.is_empty());
    let mut sum = r0.clone();
    for (k, v) in &r1 {
        *sum.entry(k.clone()).or_default() += v;
    }
    sum.retain(|_, v| *v != 0);
    assert_eq!(sum, rw, "the shards' rollups add up to the whole");
    // Spot check by hand: building b's electricity over the 5 intervals:
    // m0 5 x 1 000 = 5 000 kWh (its remainder 500 plus s1 and s2) plus the
    // direct meters 5 x (11 + 12 + ... + 22) = 5 x 198 = 990 kWh: 5 990 kWh,
    // stored in 1e-9 kWh.
    let day = rw
        .iter()
        .filter(|(k, _)| k.0 == "building" && k.1 == "b" && k.2 == "electricity/" && k.3 == "day")
        .map(|(_, v)| *v)
        .sum::<i64>();
    assert_eq!(day, 5_990 * 1_000_000_000);

    // InfluxDB points: the shards tag their rollups with their index and write
    // no KPI points (a shard's per-capita figure would be partial); the
    // unsharded instance does neither tag and writes KPIs.
    let (o0, o1, ow) = (outbox(&dbs[0]), outbox(&dbs[1]), outbox(&dbs[2]));
    let rollup_lines = |o: &str| {
        o.lines()
            .filter(|l| l.starts_with("rollup,"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(
        !rollup_lines(&o0).is_empty() && rollup_lines(&o0).iter().all(|l| l.contains(",shard=0")),
        "{o0}"
    );
    assert!(
        !rollup_lines(&o1).is_empty() && rollup_lines(&o1).iter().all(|l| l.contains(",shard=1"))
    );
    assert!(rollup_lines(&ow).iter().all(|l| !l.contains("shard=")));
    assert!(
        !o0.lines().any(|l| l.starts_with("kpi,")) && !o1.lines().any(|l| l.starts_with("kpi,"))
    );
    assert!(
        ow.lines().any(|l| l.starts_with("kpi,")),
        "the whole writes KPIs"
    );
}

/// The last `kpi` row of each (scope, id) for `period` in database `db`:
/// field name → value.
fn kpis(
    influx: &crate::influx::Influx,
    db: &str,
    period: &str,
) -> BTreeMap<(String, String), BTreeMap<String, f64>> {
    let (code, body) = crate::influx::http(
        influx.port,
        "GET",
        &format!(
            "/query?db={db}&epoch=ms&q={}",
            crate::influx::enc(&format!(
                "SELECT last(*) FROM \"kpi\" WHERE \"period\" = '{period}' GROUP BY \"scope\", \"id\""
            ))
        ),
        "",
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let mut out = BTreeMap::new();
    for s in v["results"][0]["series"].as_array().into_iter().flatten() {
        let key = (
            s["tags"]["scope"].as_str().unwrap_or_default().to_string(),
            s["tags"]["id"].as_str().unwrap_or_default().to_string(),
        );
        let cols = s["columns"].as_array().expect("columns");
        let row = s["values"][0].as_array().expect("row");
        let fields = cols
            .iter()
            .zip(row)
            .filter_map(|(c, x)| {
                Some((
                    c.as_str()?.trim_start_matches("last_").to_string(),
                    x.as_f64()?,
                ))
            })
            .collect();
        out.insert(key, fields);
    }
    out
}

#[test]
fn shard_zero_computes_the_site_kpis_from_every_shards_rollups_in_influxdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let influx = crate::influx::Influx::start(dir.path());
    let (code, body) = crate::influx::http(
        influx.port,
        "POST",
        "/query?q=CREATE%20DATABASE%20whole",
        "",
    );
    assert_eq!(code, 200, "{body}");
    let section = |db: &str, flush_ms: u32| {
        format!(
            "[influx]\nurl = \"http://127.0.0.1:{}\"\ndatabase = \"{db}\"\nflush_ms = {flush_ms}\nkpi_interval_s = 1\ntimeout_s = 3\nretry_initial_s = 0.2\nretry_max_s = 1\n",
            influx.port
        )
    };
    let with_influx = |d: &Path, shard: &str, db: &str, client: &str, flush_ms: u32| {
        let p = site(d, port, shard);
        let text = std::fs::read_to_string(&p)
            .expect("site")
            .replace(
                "[influx]\nurl = \"http://127.0.0.1:9\"\ndatabase = \"meterflow\"\nflush_ms = 60000\nkpi_interval_s = 3600\n",
                &section(db, flush_ms),
            )
            .replace("client_id = \"mf-shard\"", &format!("client_id = \"{client}\""));
        std::fs::write(&p, text).expect("site");
        p
    };
    let (d0, d1, dw) = (
        dir.path().join("s0"),
        dir.path().join("s1"),
        dir.path().join("whole"),
    );
    // Shard 0 lets its batches fill for a minute: its own last rollups are
    // still in its outbox when it stops, and must reach InfluxDB before it
    // reads every shard's rollups back for the final KPIs.
    let s0 = with_influx(&d0, "shard = \"0/2\"\n", "meterflow", "mf-k", 60_000);
    let s1 = with_influx(&d1, "shard = \"1/2\"\n", "meterflow", "mf-k", 100);
    let sw = with_influx(&dw, "", "whole", "mf-kw", 100);
    let (p0, p1, pw) = (run(&s0, &[]), run(&s1, &[]), run(&sw, &[]));
    for s in [&s0, &s1, &sw] {
        wait_subscribed(&s.with_file_name("run.log"));
    }
    // The same stream as above (six readings, five intervals per meter),
    // ending at the last quarter-hour before now, so that it falls in the
    // running month and year whose KPIs the instances write.
    let now = chrono::Utc::now().timestamp_millis();
    let t0 = now - now.rem_euclid(900_000) - 5 * 900_000;
    for m in meters() {
        let step = match m.as_str() {
            "m0" => 1000,
            "s1" => 300,
            "s2" => 200,
            d if d.starts_with('d') => 10 + d[1..].parse::<i64>().expect("n"),
            _ => 1,
        };
        let lines: String = (0..6)
            .map(|k| {
                format!(
                    "{{\"v\": {}, \"ts\": {}}}\n",
                    5000 + k * step,
                    t0 + k * 900_000
                )
            })
            .collect();
        publish_lines(port, &format!("json/{m}"), &lines);
    }
    let total = 6 * meters().len() as i64;
    let dbs = [
        d0.join("store.db"),
        d1.join("store.db"),
        dw.join("store.db"),
    ];
    let t = Instant::now();
    while (count(&dbs[0], "readings") + count(&dbs[1], "readings") < total
        || count(&dbs[2], "readings") < total)
        && t.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = || {
        format!(
            "whole's log:\n{}\nshard 0's log:\n{}\nshard 1's log:\n{}",
            log(&sw),
            log(&s0),
            log(&s1)
        )
    };
    assert_eq!(
        (
            count(&dbs[0], "readings") + count(&dbs[1], "readings"),
            count(&dbs[2], "readings")
        ),
        (total, total),
        "every reading stored\n{}",
        logs()
    );
    // Shard 1 first: it delivers its last rollups on the way out; then shard 0
    // computes its final KPIs from both shards' series.
    stop(p1);
    std::thread::sleep(Duration::from_millis(500));
    stop(p0);
    stop(pw);

    // Agency A by hand, when all five intervals are in this local month: its
    // direct meters d2, d4, ..., d12 (12 + 14 + ... + 22 = 102 kWh per
    // interval), z1's sub-meter s1 (300), and 400 / 1 000 m² of m0's
    // remainder (1 000 - 300 - 200 = 500): 102 + 300 + 200 = 602 kWh per
    // interval, 3 010 kWh.
    let month_of = |ms: i64| {
        use chrono::{Datelike as _, TimeZone as _};
        chrono_tz::Asia::Shanghai
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| (t.year(), t.month()))
    };
    let a = kpis(&influx, "meterflow", "month")
        .get(&("agency".to_string(), "A".to_string()))
        .and_then(|f| f.get("electricity_kwh").copied());
    if month_of(t0) == month_of(now) {
        assert_eq!(
            a,
            Some(3_010.0),
            "agency A's month from the merged rollups\n{}",
            logs()
        );
    }
    // Every month and year row of the whole equals shard 0's, field by field.
    let mut compared = 0;
    for period in ["month", "year"] {
        let (whole, sharded) = (
            kpis(&influx, "whole", period),
            kpis(&influx, "meterflow", period),
        );
        assert!(!whole.is_empty(), "the whole writes {period} KPIs");
        assert_eq!(
            whole.keys().collect::<Vec<_>>(),
            sharded.keys().collect::<Vec<_>>(),
            "the same scopes"
        );
        for (k, w) in &whole {
            let s = &sharded[k];
            for f in [
                "electricity_kwh",
                "water_m3",
                "persons",
                "area_m2",
                "per_capita_kgce",
                "per_area_kgce",
                "co2_t",
            ] {
                if let (Some(a), Some(b)) = (w.get(f), s.get(f)) {
                    assert!(
                        (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                        "{k:?} {period} {f}: whole {a}, shards {b}\n{}",
                        logs()
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 0);
}

/// A small version of the soak's site: 4 gateways with 5 Modbus meters each
/// (a gateway's line is one metering group), 10 pushed water meters, and a
/// main meter with two sub-meters (one group), one of them replaced.
fn soak_like_site(dir: &Path, store: &str) -> PathBuf {
    let mut s = format!(
        "[site]\nname = \"soak-like\"\n[store]\npath = \"{store}\"\n\n\
[[building]]\nid = \"b\"\ntotal_area_m2 = 5000\n\n\
[[meter]]\nid = \"m0\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\nmax_rate = 5000\n\n\
[[meter]]\nid = \"s1\"\nkind = \"electricity\"\nunit = \"kWh\"\nparent = \"m0\"\nserves = {{ building = \"b\" }}\nmax_rate = 500\n\n\
[[meter]]\nid = \"s2\"\nkind = \"electricity\"\nunit = \"kWh\"\nparent = \"m0\"\nserves = {{ building = \"b\" }}\nmax_rate = 500\n\n\
[[replacement]]\nmeter = \"s2\"\nat = 2025-03-02T12:00:00\nold_final = 9000.0\nnew_initial = 0.0\n\n"
    );
    for g in 1..=4 {
        s.push_str(&format!(
            "[[bus]]\nid = \"gw{g}\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:9\"\n\n"
        ));
        for u in 1..=5 {
            s.push_str(&format!(
                "[[meter]]\nid = \"g{g}u{u}\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\nmax_rate = 500\nmodbus = {{ bus = \"gw{g}\", unit = {u}, profile = \"sdm630\", poll_s = 60 }}\n\n"
            ));
        }
    }
    for w in 1..=10 {
        s.push_str(&format!(
            "[[meter]]\nid = \"w{w}\"\nkind = \"water\"\nunit = \"m3\"\nserves = {{ building = \"b\" }}\nmax_rate = 50\n\n"
        ));
    }
    std::fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join(format!("{store}.toml"));
    std::fs::write(&path, s).expect("site");
    path
}

/// Per (meter, quantity): readings and the sum of intervals, in micro-units.
fn per_meter(db: &Path) -> BTreeMap<(String, String), (i64, i64)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("store");
    let series: Vec<(i64, String, String)> = c
        .prepare("SELECT id, meter, quantity FROM series")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .expect("series");
    // Through the reader: an import keeps closed months in blocks.
    let reader = meterflow_store::Reader::open(db).expect("reader");
    series
        .into_iter()
        .map(|(id, meter, quantity)| {
            let readings = reader.readings(id, i64::MIN, i64::MAX).expect("readings");
            let n = readings.iter().filter(|r| r.kind == 0).count() as i64;
            let micro: i64 = reader
                .intervals(id, i64::MIN, i64::MAX)
                .expect("intervals")
                .iter()
                .map(|i| i.micro)
                .sum();
            ((meter, quantity), (n, micro))
        })
        .filter(|(_, (n, _))| *n > 0)
        .collect()
}

/// Re-sharding 2 → 3: three days of every meter imported into two shard
/// stores (each with its own groups), moved by `meterflow shard move` into
/// three. Every meter's readings and interval total equal those of one
/// unsharded store of the same data, each meter is in exactly one new store
/// (the one the 3-shard plan gives its group), and nothing is doubled.
#[test]
fn resharding_two_to_three_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let whole = soak_like_site(d, "whole.db");
    let all = d.join("all.csv");
    let o = crate::support::run(&[
        "generate",
        "--config",
        whole.to_str().expect("path"),
        "--from",
        "2025-03-01",
        "--days",
        "3",
        "--faults",
        "--out",
        all.to_str().expect("path"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = crate::support::run(&[
        "import",
        "--config",
        whole.to_str().expect("path"),
        all.to_str().expect("path"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let site = meterflow_model::Site::load(&whole).expect("site");
    // Two old shards, each holding exactly its groups' readings.
    let plan2 = meterflow_model::metering_groups::Plan::new(&site, 2);
    let text = std::fs::read_to_string(&all).expect("csv");
    let mut old = Vec::new();
    for i in 0..2u32 {
        let rows: String = text
            .lines()
            .skip(1)
            .filter(|l| plan2.meter(l.split(',').next().unwrap_or_default()) == Some(i))
            .map(|l| format!("{l}\n"))
            .collect();
        let csv = d.join(format!("old-{i}.csv"));
        std::fs::write(&csv, rows).expect("csv");
        let s = soak_like_site(d, &format!("old-{i}.db"));
        let o = crate::support::run(&[
            "import",
            "--config",
            s.to_str().expect("path"),
            csv.to_str().expect("path"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        old.push(d.join(format!("old-{i}.db")));
    }
    let new = d.join("new");
    let shard_move = |stores: &[&PathBuf]| {
        let mut args = vec![
            "shard",
            "move",
            "--config",
            whole.to_str().expect("path"),
            "--to",
            "3",
            "--out",
            new.to_str().expect("path"),
        ];
        args.extend(stores.iter().map(|p| p.to_str().expect("path")));
        crate::support::run(&args)
    };
    let o = shard_move(&[&old[0], &old[1]]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("readings and interval totals equal before and after"),
        "{out}"
    );

    let reference = per_meter(&d.join("whole.db"));
    let plan3 = meterflow_model::metering_groups::Plan::new(&site, 3);
    let mut merged: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for j in 0..3u32 {
        let store = new.join(format!("whole-shard-{j}-of-3.db"));
        for (key, v) in per_meter(&store) {
            assert_eq!(
                plan3.meter(&key.0),
                Some(j),
                "{} belongs to another shard",
                key.0
            );
            assert!(
                merged.insert(key.clone(), v).is_none(),
                "{key:?} in two new stores"
            );
        }
    }
    assert_eq!(merged.len(), reference.len());
    for (key, want) in &reference {
        assert_eq!(
            merged.get(key),
            Some(want),
            "{key:?}: new stores vs one unsharded store"
        );
    }
    // The groups really moved: with 3 shards some meters change owner.
    let moved = site
        .meters
        .iter()
        .filter(|m| plan2.meter(&m.id) != plan3.meter(&m.id))
        .count();
    assert!(moved > 0, "the test must move something");
    // A second move into the same folder is refused.
    assert!(!shard_move(&[&old[0]]).status.success());
}
