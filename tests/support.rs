//! Shared helpers: the binary, temporary sites, store dumps.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The meterflow executable built for this test run.
pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meterflow-e2e"))
}

/// Run meterflow with arguments; returns the output.
pub(crate) fn run(args: &[&str]) -> Output {
    match bin().args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run meterflow: {e}"),
    }
}

/// Text of stdout and stderr.
pub(crate) fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A copy of the example site in `dir`, with its store in `dir` and
/// `batch_rows` readings per transaction.
pub(crate) fn example_site(dir: &Path, batch_rows: usize) -> PathBuf {
    let src = std::fs::read_to_string(repo().join("examples/shared-office/site.toml"))
        .expect("example site");
    let src = src
        .replace(
            "path = \"../../data/example.db\"   # relative to this file",
            "path = \"store.db\"",
        )
        .replace("batch_rows = 50000", &format!("batch_rows = {batch_rows}"));
    assert!(
        src.contains("path = \"store.db\"") && src.contains(&format!("batch_rows = {batch_rows}")),
        "the example's [store] changed; update the test helper"
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, src).expect("write site");
    path
}

/// meter, quantity, time, value, status.
pub(crate) type ReadingKey = (String, String, i64, Option<f64>, Option<i64>);

/// Everything derived in a store, in a stable order, without receive times.
#[derive(Debug, PartialEq)]
pub(crate) struct Dump {
    pub(crate) readings: Vec<ReadingKey>,
    pub(crate) intervals: Vec<(String, i64, i64, i64, i64)>,
    pub(crate) hours: Vec<(String, i64, i64, i64, i64)>,
    pub(crate) days: Vec<(String, String, i64, i64, i64)>,
    pub(crate) anomalies: Vec<(String, i64, String)>,
}

pub(crate) fn dump(db: &Path) -> Dump {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open store");
    // Through the reader: rows and compacted blocks alike.
    let series: Vec<(i64, String, String)> = {
        let mut s = c
            .prepare("SELECT id, meter, quantity FROM series ORDER BY meter, quantity")
            .expect("prepare");
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    let reader = meterflow_store::Reader::open(db).expect("reader");
    let (mut readings, mut intervals, mut hours) = (Vec::new(), Vec::new(), Vec::new());
    for (id, meter, quantity) in &series {
        for r in reader.readings(*id, i64::MIN, i64::MAX).expect("readings") {
            let value = (!r.value.is_nan()).then_some(r.value);
            readings.push((meter.clone(), quantity.clone(), r.ts_ms, value, r.status));
        }
        for i in reader
            .intervals(*id, i64::MIN, i64::MAX)
            .expect("intervals")
        {
            intervals.push((
                meter.clone(),
                i.bucket_ms,
                i.micro,
                i.measured_ms,
                i.estimated_ms,
            ));
        }
        for h in reader.hours(*id, i64::MIN, i64::MAX).expect("hours") {
            hours.push((meter.clone(), h.hour_ms, h.micro, h.measured, h.estimated));
        }
    }
    intervals.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    hours.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let days = {
        let mut s = c.prepare("SELECT s.meter, d.day, d.micro, d.measured, d.estimated FROM rollup_day d JOIN series s ON s.id = d.series ORDER BY 1, 2").expect("prepare");
        s.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
    };
    let anomalies = {
        let mut s = c.prepare("SELECT s.meter, a.ts_ms, a.kind FROM anomalies a JOIN series s ON s.id = a.series ORDER BY 1, 2, 3").expect("prepare");
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    Dump {
        readings,
        intervals,
        hours,
        days,
        anomalies,
    }
}

/// Two dumps equal, or a panic naming the first difference of each part.
pub(crate) fn same_dump(a: &Dump, b: &Dump, what: &str) {
    fn first<T: std::fmt::Debug + PartialEq>(part: &str, a: &[T], b: &[T]) -> Option<String> {
        (0..a.len().max(b.len()))
            .find(|&i| a.get(i) != b.get(i))
            .map(|i| {
                format!(
                    "{part}[{i}] of {}/{}: {:?} against {:?}",
                    a.len(),
                    b.len(),
                    a.get(i),
                    b.get(i)
                )
            })
    }
    let diffs: Vec<String> = [
        first("readings", &a.readings, &b.readings),
        first("intervals", &a.intervals, &b.intervals),
        first("hours", &a.hours, &b.hours),
        first("days", &a.days, &b.days),
        first("anomalies", &a.anomalies, &b.anomalies),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

/// Readings stored, as rows or in compacted blocks (an import writes closed
/// months as blocks); read-only, works while a writer is active.
pub(crate) fn stored_readings(db: &Path) -> i64 {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    c.query_row(
        "SELECT (SELECT count(*) FROM readings) + (SELECT coalesce(sum(rows), 0) FROM cold WHERE tbl = 0)",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// Count rows of a table (read-only; works while a writer is active).
pub(crate) fn count(db: &Path, table: &str) -> i64 {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap_or(0)
}

/// A running child process, killed on drop.
pub(crate) struct Proc(pub(crate) std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on loopback.
/// A loopback port free now and not handed out before in this test run
/// (the kernel may offer a port again as soon as its probe closes; two
/// parallel tests, or two peers of one test, must not get the same one).
pub(crate) fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

/// Wait until something listens on a loopback port.
pub(crate) fn wait_port(port: u16) {
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "nothing listens on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `meterflow run --seconds N`; asserts success, returns stderr.
pub(crate) fn run_for(site: &Path, seconds: u64) -> String {
    let o = bin()
        .args([
            "run",
            "--config",
            site.to_str().expect("path"),
            "--seconds",
            &seconds.to_string(),
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

/// A site file: building B (1 000 m²) shared by agencies A1 (600 m²) and A2
/// (400 m² until `a2_until`), two 15-minute electricity meters M and OLD
/// split between them by area, in Asia/Shanghai; its store `db` in `dir`.
pub(crate) fn shared_building_site(dir: &Path, name: &str, db: &str, a2_until: &str) -> String {
    format!(
        r#"
[site]
name = "{name}"
timezone = "Asia/Shanghai"
[store]
path = "{}/{db}"
[[building]]
id = "B"
total_area_m2 = 1000
[[agency]]
id = "A1"
name = "A1"
[[agency]]
id = "A2"
name = "A2"
[[space]]
agency = "A1"
building = "B"
from = 2020-01-01
area_m2 = 600
[[space]]
agency = "A2"
building = "B"
from = 2020-01-01
to = {a2_until}
area_m2 = 400
[[meter]]
id = "M"
kind = "electricity"
unit = "kWh"
serves = {{ building = "B" }}
allocation = "area_share"
interval_s = 900
[[meter]]
id = "OLD"
kind = "electricity"
unit = "kWh"
serves = {{ building = "B" }}
allocation = "area_share"
interval_s = 900
"#,
        dir.display()
    )
}
