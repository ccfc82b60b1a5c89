//! The operator's view: `meterflow status` from the store (a snapshot of its
//! table), with a running process's poll state, and the status line `run`
//! prints on a terminal only.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{bin, free_port, run, wait_port};

const SITE: &str = "[site]\nname = \"status demo\"\n[store]\npath = \"store.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 100\n\
[[meter]]\nid = \"hall\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = { building = \"b\" }\ninterval_s = 900\n\
[[meter]]\nid = \"pump\"\nkind = \"water\"\nunit = \"m3\"\nserves = { building = \"b\" }\ninterval_s = 900\n\
[[meter]]\nid = \"spare\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = { building = \"b\" }\ninterval_s = 900\n";

/// hall read every 15 min to 02:00, pump to 00:30, spare never; seen at
/// 02:10 (local): hall 10 min old (ok), pump 1 h 40 min (silent: more than
/// 3 × 15 min), spare without data. The table, the JSON and the alert's
/// duration, as an operator reads them.
#[test]
fn status_and_alerts_read_like_this() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site.toml");
    std::fs::write(&site, SITE).expect("site");
    let mut csv = String::new();
    for q in 0..9 {
        csv.push_str(&format!(
            "hall,2025-03-03 {:02}:{:02}:00,{}\n",
            q / 4,
            q % 4 * 15,
            100 + q
        ));
    }
    for q in 0..3 {
        csv.push_str(&format!(
            "pump,2025-03-03 00:{:02}:00,{}\n",
            q * 15,
            20.0 + f64::from(q) * 0.5
        ));
    }
    let data = dir.path().join("r.csv");
    std::fs::write(&data, csv).expect("csv");
    let s = site.to_str().expect("path");
    let o = run(&["import", "--config", s, data.to_str().expect("path")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["status", "--config", s, "--at", "2025-03-03 02:10"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}");
    // The store line: its size in use is at most the file's. March 2025
    // ended long before today, so the import wrote the readings of hall
    // and pump straight into blocks: one series-month each.
    let store = out
        .lines()
        .find(|l| l.starts_with("store "))
        .expect("a store line");
    let mib: f64 = store
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .expect("MiB");
    let file = std::fs::metadata(dir.path().join("store.db"))
        .expect("store")
        .len() as f64;
    assert!(mib > 0.0 && mib <= file / 1_048_576.0 + 0.05, "{store}");
    assert!(
        store
            .ends_with("MiB in use, 2 series-months compacted (`[store] compact_after_days` = 35)"),
        "{store}"
    );
    let out = out.replace(&format!("{store}\n"), "");
    let want = "\
status demo at 2025-03-03 02:10:00 +08:00
process   not reachable: no [api], or not running (poll state unknown)
outbox    0 point(s) waiting
alerts    0 firing
meter              state    last reading                      age            value anomalies polls taken failed polls
hall               ok       2025-03-03 02:00:00 +08:00     10 min          108.000         0           -            -
pump               silent   2025-03-03 00:30:00 +08:00 1 h 40 min           21.000         0           -            -
spare              no data  -                                   -                -         0           -            -
";
    assert_eq!(out, want);
    let o = run(&[
        "status",
        "--config",
        s,
        "--at",
        "2025-03-03 02:10",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["meters"][0]["age_s"], 600);
    assert_eq!(v["meters"][1]["state"], "silent");
    assert_eq!(v["meters"][1]["age_s"], 6000);
    assert_eq!(v["meters"][2]["state"], "no data");
    assert_eq!(v["process"], false);
    let o = run(&["alerts", "--config", s, "--at", "2025-03-03 02:10"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("meter-silent on pump: no reading for 1 h 40 min (expected every 15 min)"),
        "{out}"
    );
    assert!(
        out.contains("  meter-silent on pump since 2025-03-03T02:10:00+08:00"),
        "{out}"
    );
}

/// A meter whose bus refuses connections is parked by the running process;
/// `status` shows it from the process's /metrics. `run` on a terminal prints
/// its status line; into a pipe it does not.
#[test]
fn status_shows_what_the_running_process_knows_and_run_has_a_status_line_on_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (api, dead) = (free_port(), free_port());
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[site]\nname = \"live\"\n[store]\npath = \"store.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 100\n\
             [[bus]]\nid = \"gone\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{dead}\"\ntimeout_ms = 200\n\
             [[meter]]\nid = \"m\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\n\
             modbus = {{ bus = \"gone\", unit = 1, profile = \"sdm630\", poll_s = 1 }}\n\
             [api]\nlisten = \"127.0.0.1:{api}\"\ntokens_file = \"tokens\"\n"
        ),
    )
    .expect("site");
    std::fs::write(
        dir.path().join("tokens"),
        "# none: /metrics needs no token\n",
    )
    .expect("tokens");
    let s = site.to_str().expect("path");
    // Ends by itself after 8 s.
    let child = bin()
        .args(["run", "--config", s, "--seconds", "8"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    wait_port(api);
    std::thread::sleep(Duration::from_secs(3));
    let o = run(&["status", "--config", s]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("process   running"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("m "))
        .unwrap_or_default();
    assert!(line.contains("parked"), "{out}");
    let failed: u64 = line
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(failed >= 1, "{out}");
    // Every due poll is taken or counted as skipped, with its reason: a
    // parked meter's due polls are skipped as parked, none silently.
    let (_, metrics) = crate::api::request(api, "GET", "/metrics", None, "");
    let metric = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{bus=\"gone\",meter=\"m\"}}")))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing: {metrics}")) as u64
    };
    let (due, taken, late, parked) = (
        metric("meterflow_meter_polls_due_total"),
        metric("meterflow_meter_polls_taken_total"),
        metric("meterflow_meter_polls_skipped_late_total"),
        metric("meterflow_meter_polls_skipped_parked_total"),
    );
    // (One poll may be in flight: counted due, not yet taken.)
    let accounted = taken + late + parked;
    assert!(due == accounted || due == accounted + 1, "{metrics}");
    assert!(parked >= 1 && taken >= 1, "{metrics}");
    assert!(out.contains("polls taken"), "{out}");
    let o = child.wait_with_output().expect("run ends");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !err.contains("readings/s"),
        "no status line into a pipe: {err}"
    );
    // The same run under a pseudo-terminal (script(1)).
    let cmd = format!(
        "{} run --config {s} --seconds 12",
        env!("CARGO_BIN_EXE_meterflow-e2e")
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let tty = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        tty.contains(
            "readings/s · meters 0 ok, 1 parked, 0 silent, 0 without data · outbox 0 · alerts"
        ),
        "{tty}"
    );
}
