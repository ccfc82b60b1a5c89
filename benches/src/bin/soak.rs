//! Soak test with faults (issue 10): a simulated site of 5 000 meters
//! (4 000 Modbus TCP meters behind 40 gateways, 1 000 water meters pushing
//! over MQTT) ingested by three shards of meterflow, each a separate
//! process with its own store, all writing to one InfluxDB 1.x.
//!
//! Faults on a schedule (seconds after the start; `MINUTES` stretches it):
//! - 60–180: gateway `gw3` drops (its TCP proxy refuses and cuts connections);
//! - 90: meter `g1u7` resets its counter to 0 (the simulator's `reset` fault);
//! - 240: the broker restarts (Mosquitto with persistence);
//! - 300–600: InfluxDB is stopped;
//! - 420: shard 1 is killed with SIGKILL, and restarted 10 s later.
//!
//! At the end, after the publishers stop and every outbox is empty, the
//! report checks:
//! - every meter is stored by exactly one shard;
//! - per meter, the stored intervals add up to the last reading minus the
//!   first (nothing lost in a gap, nothing doubled);
//! - every MQTT message the broker acknowledged is stored exactly once, with
//!   its value;
//! - InfluxDB's consumption per meter equals the store's;
//! - alerts fired for exactly the injected faults (meter-silent for the 100
//!   meters of gw3, counter-reset for g1u7);
//! - resident memory of the shards did not grow between the second quarter
//!   of the run and the last.
//!
//! Needs `meterflow` built in the same profile, and `mosquitto`,
//! `mosquitto_pub` and `influxd` on the PATH:
//! `cargo build --release -p meterflow && cargo run --release -p meterflow-benches --bin soak -- [MINUTES]`
//! (default 12; the fault times scale with MINUTES / 12). A second argument,
//! `TAIL_MINUTES`, runs that long without faults after the schedule and
//! checks that memory is flat there (first half of the tail against the
//! second, at most 5 % + 4 MiB more).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

const GATEWAYS: usize = 40;
const UNITS: usize = 100;
const WATER: usize = 1_000;
const SHARDS: u32 = 3;
const POLL_S: u32 = 10;
const PUSH_EVERY_S: u64 = 30;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free now and not handed out before by this process: the
/// kernel may offer a port again as soon as its probe closes, and two of
/// the 80-odd ports of a soak sharing a number sent one gateway's polls to
/// another's simulator (a run saw g1u7's injected reset on g39u7).
fn free_port() -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.insert(port) {
            return Ok(port);
        }
    }
}

fn wait_port(port: u16) -> anyhow::Result<()> {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn term(p: &mut Proc) {
    let _ = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(_)) = p.0.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = p.0.kill();
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of a process so far, seconds (USER_HZ = 100).
fn cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

fn site_text(proxy_ports: &[u16], mqtt: u16, influx: u16) -> String {
    let mut s = format!(
        "[site]\nname = \"soak\"\n\n[store]\npath = \"store.db\"\n\n[alerting]\ninterval_s = 15\n\n\
[[building]]\nid = \"b\"\ntotal_area_m2 = 10000\n\n\
[influx]\nurl = \"http://127.0.0.1:{influx}\"\ndatabase = \"meterflow\"\nflush_ms = 500\nkpi_interval_s = 60\ntimeout_s = 5\nretry_initial_s = 0.5\nretry_max_s = 5\n\n\
[[mqtt]]\nid = \"broker\"\nhost = \"127.0.0.1\"\nport = {mqtt}\nclient_id = \"soak\"\n\n\
[[mqtt.topic]]\npattern = \"water/batch\"\nformat = \"json\"\nitems = \"data\"\nmeter_field = \"id\"\nvalue = \"v\"\ntimestamp = \"ts\"\n\n"
    );
    for (g, port) in proxy_ports.iter().enumerate() {
        let _ = writeln!(
            s,
            "[[bus]]\nid = \"gw{g}\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\ntimeout_ms = 1000\nretries = 0\n"
        );
    }
    for g in 0..proxy_ports.len() {
        for u in 1..=UNITS {
            let _ = writeln!(
                s,
                "[[meter]]\nid = \"g{g}u{u}\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\nmax_rate = 500\nmodbus = {{ bus = \"gw{g}\", unit = {u}, profile = \"sdm630\", poll_s = {POLL_S} }}\n"
            );
        }
    }
    for w in 0..WATER {
        let _ = writeln!(
            s,
            "[[meter]]\nid = \"w{w}\"\nkind = \"water\"\nunit = \"m3\"\nserves = {{ building = \"b\" }}\ninterval_s = {PUSH_EVERY_S}\n"
        );
    }
    s
}

/// A TCP proxy in front of a simulated gateway that can drop it: while
/// `down`, new connections are refused (accepted and closed) and open ones
/// are cut.
async fn proxy(listen: u16, upstream: u16, down: Arc<AtomicBool>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", listen)).await?;
    loop {
        let (mut c, _) = listener.accept().await?;
        if down.load(Ordering::Relaxed) {
            drop(c);
            continue;
        }
        let down = Arc::clone(&down);
        tokio::spawn(async move {
            let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                return;
            };
            let cut = async {
                while !down.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut c, &mut up) => {}
                () = cut => {}
            }
        });
    }
}

fn mosquitto(dir: &Path, port: u16) -> anyhow::Result<Proc> {
    use std::os::unix::fs::PermissionsExt as _;
    let data = dir.join("mosquitto");
    std::fs::create_dir_all(&data)?;
    for d in [dir, data.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777))?;
    }
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 1000000\n",
            data.display()
        ),
    )?;
    let child = Command::new("mosquitto")
        .args(["-c", &conf.to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("mosquitto (apt-get install mosquitto)")?;
    wait_port(port)?;
    Ok(Proc(child))
}

fn influxd(dir: &Path, port: u16, rpc: u16) -> anyhow::Result<Proc> {
    let d = dir.join("influxdb");
    std::fs::create_dir_all(&d)?;
    let conf = d.join("influxdb.conf");
    std::fs::write(
        &conf,
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n[logging]\n  level = \"warn\"\n",
            d = d.display()
        ),
    )?;
    let child = Command::new("influxd")
        .args(["-config", &conf.to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("influxd (apt-get install influxdb)")?;
    wait_port(port)?;
    Ok(Proc(child))
}

fn influx_query(port: u16, q: &str) -> anyhow::Result<serde_json::Value> {
    let url = reqwest::Url::parse_with_params(
        &format!("http://127.0.0.1:{port}/query"),
        &[("db", "meterflow"), ("epoch", "ms"), ("q", q)],
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let r = reqwest::Client::new().post(url).send().await?;
        Ok(serde_json::from_str(&r.text().await?)?)
    })
}

/// The water meters' counters, m³ with three decimals, in thousandths.
fn water_step(w: usize) -> i64 {
    5 + (w as i64 % 40)
}

fn publish(port: u16, body: &str) -> bool {
    let Ok(mut child) = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            "water/batch",
            "-s",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(body.as_bytes());
    }
    child.wait().map(|s| s.success()).unwrap_or(false)
}

#[derive(Default)]
struct Stored {
    /// meter → shard stores holding it.
    shards: BTreeMap<String, BTreeSet<usize>>,
    /// meter → Σ intervals, micro-units.
    sum_micro: BTreeMap<String, i64>,
    /// meter → (first, last) good reading value.
    span: BTreeMap<String, (f64, f64)>,
    /// meter → ts → value of every stored reading.
    readings: BTreeMap<String, BTreeMap<i64, f64>>,
    /// (rule, target) of every alert that fired.
    fired: BTreeSet<(String, String)>,
    /// meters with a counter_reset anomaly.
    resets: BTreeSet<String>,
    /// shard → stored rows of the Modbus meters' energy quantities (one
    /// row per quantity and poll; `readings` keys by time, and a poll's two
    /// requests answered within one millisecond share it).
    modbus_rows: BTreeMap<usize, i64>,
}

fn read_store(db: &Path, shard: usize, out: &mut Stored) -> anyhow::Result<()> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut s = c.prepare(
        "SELECT s.meter, sum(i.micro) FROM intervals i JOIN series s ON s.id = i.series GROUP BY s.meter",
    )?;
    for r in s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (m, v) = r?;
        *out.sum_micro.entry(m.clone()).or_default() += v;
        out.shards.entry(m).or_default().insert(shard);
    }
    let mut s = c.prepare(
        "SELECT s.meter, r.ts_ms, r.value, r.status FROM readings r JOIN series s ON s.id = r.series WHERE r.kind = 0 ORDER BY s.meter, r.ts_ms",
    )?;
    for r in s.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<f64>>(2)?,
            r.get::<_, Option<i64>>(3)?,
        ))
    })? {
        let (m, ts, v, status) = r?;
        let Some(v) = v else { continue };
        out.readings.entry(m.clone()).or_default().insert(ts, v);
        // Good (1) and start (0) readings bound the counted span.
        if matches!(status, Some(0 | 1)) {
            let e = out.span.entry(m).or_insert((v, v));
            e.1 = v;
        }
    }
    let rows: i64 = c.query_row(
        "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series WHERE r.kind = 0 AND s.meter LIKE 'g%' AND s.quantity LIKE 'energy_%'",
        [],
        |r| r.get(0),
    )?;
    out.modbus_rows.insert(shard, rows);
    let mut s = c.prepare("SELECT rule, target FROM alert_events WHERE event = 'fired'")?;
    for r in s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        out.fired.insert(r?);
    }
    let mut s = c.prepare(
        "SELECT DISTINCT s.meter FROM anomalies a JOIN series s ON s.id = a.series WHERE a.kind = 'counter_reset'",
    )?;
    for r in s.query_map([], |r| r.get::<_, String>(0))? {
        out.resets.insert(r?);
    }
    Ok(())
}

/// Σ over a shard's meters of polls due, taken, skipped late and skipped
/// while parked, from its `/metrics`.
fn polls_of(port: u16) -> Option<[f64; 5]> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let mut out = [0.0; 5];
    for line in text.lines() {
        let Some((name, value)) = line.split_once(' ') else {
            continue;
        };
        let k = [
            "meterflow_meter_polls_due_total{",
            "meterflow_meter_polls_taken_total{",
            "meterflow_meter_polls_skipped_late_total{",
            "meterflow_meter_polls_skipped_parked_total{",
            "meterflow_meter_failed_polls_total{",
        ]
        .iter()
        .position(|p| name.starts_with(p));
        if let (Some(k), Ok(v)) = (k, value.trim().parse::<f64>()) {
            out[k] += v;
        }
    }
    Some(out)
}

fn outbox_rows(db: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM influx_outbox", [], |r| r.get(0)))
        .unwrap_or(-1)
}

#[allow(clippy::too_many_lines)]
fn main() -> anyhow::Result<()> {
    let minutes: f64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(12.0);
    // Fault-free minutes after the schedule, to see whether memory settles.
    let tail_minutes: f64 = std::env::args()
        .nth(2)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(0.0);
    let scale = minutes / 12.0;
    let at = |s: f64| Duration::from_secs_f64(s * scale);
    let exe = std::env::current_exe()?;
    let meterflow = exe.parent().context("exe dir")?.join("meterflow");
    anyhow::ensure!(
        meterflow.exists(),
        "{} missing: cargo build --release -p meterflow first",
        meterflow.display()
    );
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let (mqtt, influx, rpc) = (free_port()?, free_port()?, free_port()?);
    let sim_ports: Vec<u16> = (0..GATEWAYS)
        .map(|_| free_port())
        .collect::<Result<_, _>>()?;
    let proxy_ports: Vec<u16> = (0..GATEWAYS)
        .map(|_| free_port())
        .collect::<Result<_, _>>()?;
    let text = site_text(&proxy_ports, mqtt, influx);
    let sim_site = root.join("site.toml");
    std::fs::write(&sim_site, &text)?;

    let mut broker = mosquitto(root, mqtt)?;
    let mut influxdb = Some(influxd(root, influx, rpc)?);
    influx_query(influx, "CREATE DATABASE meterflow")?;

    // Simulators, one process per gateway; g1u7 resets at 90 s.
    let mut sims = Vec::new();
    for (g, port) in sim_ports.iter().enumerate() {
        let mut cmd = Command::new(&meterflow);
        cmd.args([
            "simulate",
            "--config",
            &sim_site.to_string_lossy(),
            "--bus",
            &format!("gw{g}"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]);
        if g == 1 {
            cmd.args(["--fault", &format!("7=reset@{}", at(90.0).as_secs())]);
        }
        sims.push(Proc(
            cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?,
        ));
    }
    for p in &sim_ports {
        wait_port(*p)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let downs: Vec<Arc<AtomicBool>> = (0..GATEWAYS)
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    for g in 0..GATEWAYS {
        rt.spawn(proxy(proxy_ports[g], sim_ports[g], Arc::clone(&downs[g])));
    }

    // Three shards, each with its own directory and store.
    let shard_dirs: Vec<PathBuf> = (0..SHARDS)
        .map(|i| root.join(format!("shard{i}")))
        .collect();
    // Each shard's API, for its /metrics (polls due and taken per meter).
    let api_ports: Vec<u16> = (0..SHARDS).map(|_| free_port()).collect::<Result<_, _>>()?;
    let start_shard = |i: usize| -> anyhow::Result<Proc> {
        let d = &shard_dirs[i];
        std::fs::create_dir_all(d)?;
        // A token nobody holds: /metrics needs none.
        std::fs::write(
            d.join("tokens"),
            format!("admin sha256:{}\n", "0".repeat(64)),
        )?;
        std::fs::write(
            d.join("site.toml"),
            format!(
                "{text}\n[api]\nlisten = \"127.0.0.1:{}\"\ntokens_file = \"tokens\"\n",
                api_ports[i]
            ),
        )?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("run.log"))?;
        Ok(Proc(
            Command::new(&meterflow)
                .args([
                    "run",
                    "--config",
                    &d.join("site.toml").to_string_lossy(),
                    "--shard",
                    &format!("{i}/{SHARDS}"),
                ])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        ))
    };
    let mut shards: Vec<Proc> = (0..SHARDS as usize)
        .map(start_shard)
        .collect::<Result<_, _>>()?;
    std::thread::sleep(Duration::from_secs(3));

    // The water meters' publisher: one batch of all 1 000 every 30 s at QoS 1,
    // retried until the broker acknowledges it; `published` keeps what was.
    let stop_pub = Arc::new(AtomicBool::new(false));
    let publisher = {
        let stop = Arc::clone(&stop_pub);
        std::thread::spawn(move || {
            let mut published: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
            let mut k = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let ts = chrono::Utc::now().timestamp_millis();
                let mut body = String::from("{\"data\":[");
                for w in 0..WATER {
                    let milli = 1_000_000 + k * water_step(w);
                    let _ = write!(
                        body,
                        "{}{{\"id\":\"w{w}\",\"v\":{}.{:03},\"ts\":{ts}}}",
                        if w == 0 { "" } else { "," },
                        milli / 1000,
                        milli % 1000
                    );
                }
                body.push_str("]}");
                let t = Instant::now();
                while !publish(mqtt, &body) {
                    std::thread::sleep(Duration::from_millis(500));
                    if t.elapsed() > Duration::from_secs(120) {
                        break;
                    }
                }
                if t.elapsed() <= Duration::from_secs(120) {
                    for w in 0..WATER {
                        published
                            .entry(format!("w{w}"))
                            .or_default()
                            .insert(ts, 1_000_000 + k * water_step(w));
                    }
                }
                k += 1;
                let next = Instant::now() + Duration::from_secs(PUSH_EVERY_S);
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            published
        })
    };

    // The schedule.
    let t0 = Instant::now();
    let mut rss: Vec<(f64, Vec<Option<u64>>)> = Vec::new();
    let mut log = Vec::new();
    let mut events: Vec<(Duration, &str)> = vec![
        (at(60.0), "gateway gw3 drops"),
        (at(180.0), "gateway gw3 returns"),
        (at(240.0), "broker restarts"),
        (at(300.0), "InfluxDB stops"),
        (at(420.0), "shard 1 is killed (SIGKILL)"),
        (at(430.0), "shard 1 restarts"),
        (at(600.0), "InfluxDB starts"),
    ];
    events.reverse();
    let faults_end = at(720.0);
    let end = faults_end + Duration::from_secs_f64(tail_minutes * 60.0);
    let mut last_sample = Duration::ZERO;
    while t0.elapsed() < end {
        let now = t0.elapsed();
        if now >= last_sample + Duration::from_secs(10) {
            last_sample = now;
            rss.push((
                now.as_secs_f64(),
                shards.iter().map(|p| rss_kib(p.0.id())).collect(),
            ));
        }
        if let Some((when, what)) = events.last().copied()
            && now >= when
        {
            {
                events.pop();
                log.push(format!("{:>6.0} s  {what}", now.as_secs_f64()));
                println!("{:>6.0} s  {what}", now.as_secs_f64());
                match what {
                    "gateway gw3 drops" => downs[3].store(true, Ordering::Relaxed),
                    "gateway gw3 returns" => downs[3].store(false, Ordering::Relaxed),
                    "broker restarts" => {
                        term(&mut broker);
                        std::thread::sleep(Duration::from_secs(3));
                        broker = mosquitto(root, mqtt)?;
                    }
                    "InfluxDB stops" => {
                        if let Some(mut p) = influxdb.take() {
                            term(&mut p);
                        }
                    }
                    "InfluxDB starts" => influxdb = Some(influxd(root, influx, rpc)?),
                    "shard 1 is killed (SIGKILL)" => {
                        let _ = shards[1].0.kill();
                        let _ = shards[1].0.wait();
                    }
                    "shard 1 restarts" => shards[1] = start_shard(1)?,
                    _ => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Wind down: stop publishing, let the last messages and polls land, wait
    // for every outbox to empty, then stop the shards (SIGTERM drains).
    stop_pub.store(true, Ordering::Relaxed);
    let published = publisher
        .join()
        .map_err(|_| anyhow::anyhow!("publisher panicked"))?;
    std::thread::sleep(Duration::from_secs(15));
    let t = Instant::now();
    while shard_dirs
        .iter()
        .any(|d| outbox_rows(&d.join("store.db")) != 0)
        && t.elapsed() < Duration::from_secs(300)
    {
        std::thread::sleep(Duration::from_secs(1));
    }
    // Polls due and taken per shard, from each shard's own counters (shard
    // 1's since its restart).
    let polls: Vec<Option<[f64; 5]>> = api_ports.iter().map(|p| polls_of(*p)).collect();
    // CPU of the shards that ran throughout (0 and 2), over the whole run.
    let run_s = t0.elapsed().as_secs_f64();
    let cpu: Vec<Option<f64>> = [0usize, 2]
        .iter()
        .map(|i| cpu_s(shards[*i].0.id()))
        .collect();
    for s in &mut shards {
        term(s);
    }
    let drained: Vec<i64> = shard_dirs
        .iter()
        .map(|d| outbox_rows(&d.join("store.db")))
        .collect();
    println!("outbox rows left after SIGTERM: {drained:?}");

    // The report.
    let mut st = Stored::default();
    for (i, d) in shard_dirs.iter().enumerate() {
        read_store(&d.join("store.db"), i, &mut st)?;
    }
    let all: Vec<String> = (0..GATEWAYS)
        .flat_map(|g| (1..=UNITS).map(move |u| format!("g{g}u{u}")))
        .chain((0..WATER).map(|w| format!("w{w}")))
        .collect();
    let mut failures = Vec::new();
    let doubled_shard: Vec<&String> = st
        .shards
        .iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(m, _)| m)
        .collect();
    let missing: Vec<&String> = all.iter().filter(|m| !st.shards.contains_key(*m)).collect();
    if !doubled_shard.is_empty() {
        failures.push(format!(
            "{} meters stored by two shards",
            doubled_shard.len()
        ));
    }
    if !missing.is_empty() {
        failures.push(format!(
            "{} meters with no interval at all: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    // Σ intervals = last − first, per meter (the reset meter loses its reset interval by design).
    let mut span_bad = Vec::new();
    for m in &all {
        if m == "g1u7" {
            continue;
        }
        let (Some(sum), Some((first, last))) = (st.sum_micro.get(m), st.span.get(m)) else {
            continue;
        };
        let expect = ((last - first) * 1e6).round() as i64;
        if (sum - expect).abs() > 2 {
            span_bad.push(format!("{m}: intervals {sum} µ, readings {expect} µ"));
        }
    }
    if !span_bad.is_empty() {
        failures.push(format!(
            "{} meters whose intervals do not add up: {:?}",
            span_bad.len(),
            &span_bad[..span_bad.len().min(5)]
        ));
    }
    // MQTT: every acknowledged message stored exactly once, with its value.
    let (mut lost, mut wrong, mut sent) = (0usize, 0usize, 0usize);
    for (m, msgs) in &published {
        let stored = st.readings.get(m);
        for (ts, milli) in msgs {
            sent += 1;
            match stored.and_then(|s| s.get(ts)) {
                None => lost += 1,
                Some(v) if ((v * 1000.0).round() as i64) != *milli => wrong += 1,
                Some(_) => {}
            }
        }
        let extra = stored.map_or(0, |s| s.len()) as i64 - msgs.len() as i64;
        if extra > 0 {
            wrong += extra as usize;
        }
    }
    if lost + wrong > 0 {
        failures.push(format!(
            "MQTT: {lost} acknowledged messages lost, {wrong} wrong or extra of {sent}"
        ));
    }
    // InfluxDB's consumption per meter against the store's.
    let v = influx_query(
        influx,
        "SELECT sum(\"value\") FROM \"consumption\" GROUP BY \"meter\"",
    )?;
    let mut influx_sum: BTreeMap<String, f64> = BTreeMap::new();
    for s in v["results"][0]["series"].as_array().into_iter().flatten() {
        if let (Some(m), Some(x)) = (s["tags"]["meter"].as_str(), s["values"][0][1].as_f64()) {
            influx_sum.insert(m.to_string(), x);
        }
    }
    let mut influx_bad = Vec::new();
    for m in &all {
        let store = st.sum_micro.get(m).copied().unwrap_or(0) as f64 / 1e6;
        let inf = influx_sum.get(m).copied().unwrap_or(0.0);
        if (store - inf).abs() > 1e-6 * store.abs().max(1.0) {
            influx_bad.push(format!("{m}: store {store}, InfluxDB {inf}"));
        }
    }
    if !influx_bad.is_empty() {
        failures.push(format!(
            "{} meters differ in InfluxDB: {:?}",
            influx_bad.len(),
            &influx_bad[..influx_bad.len().min(5)]
        ));
    }
    // Alerts: exactly the injected faults.
    let mut expected: BTreeSet<(String, String)> = (1..=UNITS)
        .map(|u| ("meter-silent".to_string(), format!("g3u{u}")))
        .collect();
    expected.insert(("counter-reset".to_string(), "g1u7".to_string()));
    let unexpected: Vec<_> = st.fired.difference(&expected).collect();
    let not_fired: Vec<_> = expected.difference(&st.fired).collect();
    if !unexpected.is_empty() || !not_fired.is_empty() {
        failures.push(format!(
            "alerts: {} unexpected {:?}, {} expected but not fired {:?}",
            unexpected.len(),
            &unexpected[..unexpected.len().min(5)],
            not_fired.len(),
            &not_fired[..not_fired.len().min(5)]
        ));
    }
    if !st.resets.contains("g1u7") {
        failures.push("no counter_reset anomaly for g1u7".into());
    }
    // Memory: mean RSS of shards 0 and 2 (never restarted) in the second
    // quarter against the last quarter.
    let q = |from: f64, to: f64, i: usize| {
        let v: Vec<f64> = rss
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .filter_map(|(_, r)| r.get(i).copied().flatten())
            .map(|k| k as f64 / 1024.0)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let total = faults_end.as_secs_f64();
    let mut mem = Vec::new();
    for i in [0usize, 2] {
        let (a, b) = (q(total * 0.25, total * 0.5, i), q(total * 0.75, total, i));
        mem.push(format!("shard {i}: {a:.1} → {b:.1} MiB"));
        if b > a * 1.25 + 8.0 {
            failures.push(format!("shard {i} memory grew: {a:.1} → {b:.1} MiB"));
        }
    }
    // In the fault-free tail the load is steady, so memory must be flat:
    // first half of the tail against the second.
    let mut tail_mem = Vec::new();
    if tail_minutes > 0.0 {
        let (from, to) = (total, end.as_secs_f64());
        let mid = (from + to) / 2.0;
        for i in [0usize, 2] {
            let (a, b) = (q(from, mid, i), q(mid, to, i));
            tail_mem.push(format!("shard {i}: {a:.1} → {b:.1} MiB"));
            if b > a * 1.05 + 4.0 {
                failures.push(format!(
                    "shard {i} memory grew in the fault-free tail: {a:.1} → {b:.1} MiB"
                ));
            }
        }
    }

    let readings: usize = st.readings.values().map(BTreeMap::len).sum();
    let count_of = |m: &str| -> f64 {
        influx_query(influx, &format!("SELECT count(\"value\") FROM \"{m}\""))
            .ok()
            .and_then(|v| v["results"][0]["series"][0]["values"][0][1].as_f64())
            .unwrap_or(0.0)
    };
    let (consumption_points, rollup_points) = (count_of("consumption"), count_of("rollup"));
    // Points each shard delivered (its own health counter), for the write load.
    let delivered: BTreeMap<String, f64> = influx_query(
        influx,
        "SELECT last(\"sink_delivered\") FROM \"pipeline\" GROUP BY \"instance\"",
    )
    .ok()
    .and_then(|v| {
        v["results"][0]["series"].as_array().map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s["tags"]["instance"].as_str()?.to_string(),
                        s["values"][0][1].as_f64()?,
                    ))
                })
                .collect()
        })
    })
    .unwrap_or_default();
    let per_shard: Vec<usize> = (0..SHARDS as usize)
        .map(|i| st.shards.values().filter(|s| s.contains(&i)).count())
        .collect();
    let mut sizing = Vec::new();
    for (k, i) in [0usize, 2].iter().enumerate() {
        let meters = per_shard[*i].max(1) as f64;
        let mib = rss
            .last()
            .and_then(|(_, r)| r.get(*i).copied().flatten())
            .unwrap_or(0) as f64
            / 1024.0;
        if let Some(c) = cpu[k] {
            sizing.push(format!(
                "shard {i}: {meters} meters, CPU {:.2} % of a core ({:.3} % per 1 000 meters), RSS {mib:.1} MiB ({:.1} KiB per meter)",
                c / run_s * 100.0,
                c / run_s * 100.0 / meters * 1000.0,
                mib * 1024.0 / meters
            ));
        }
    }
    println!(
        "\n== soak report ({minutes} min, {} meters, {SHARDS} shards)",
        all.len()
    );
    for l in &log {
        println!("  {l}");
    }
    println!(
        "  readings stored (distinct meter and time: a poll's requests answered within the same millisecond count once): {readings}; MQTT messages acknowledged by the broker: {sent}"
    );
    println!("  meters per shard: {per_shard:?}");
    for (i, p) in polls.iter().enumerate() {
        match p {
            Some([due, taken, late, parked, _]) => println!(
                "  polls, shard {i}{}: due {due:.0}, taken {taken:.0} ({:.2} %; {:.2} % of those not skipped while the gateway was down and its meters parked), skipped late {late:.0}, skipped while parked {parked:.0}",
                if i == 1 { " (since its restart)" } else { "" },
                if *due > 0.0 { taken / due * 100.0 } else { 0.0 },
                if *due > *parked {
                    taken / (due - parked) * 100.0
                } else {
                    0.0
                }
            ),
            None => println!("  polls, shard {i}: /metrics did not answer"),
        }
        // Shards 0 and 2 ran throughout: every answered poll stores its
        // three energy quantities (import, export, total).
        if let (Some([_, taken, _, _, failed]), Some(rows), true) =
            (p, st.modbus_rows.get(&i), i != 1)
        {
            let good = taken - failed;
            println!(
                "    shard {i}: {failed:.0} polls failed (no answer), {good:.0} answered; energy rows stored {rows} = {:.4} per answered poll (3 quantities)",
                *rows as f64 / good.max(1.0)
            );
        }
    }
    println!(
        "  lost: {lost} MQTT messages, {} meters with intervals ≠ readings, {} meters missing",
        span_bad.len(),
        missing.len()
    );
    println!(
        "  doubled: {} meters in two shards, {wrong} MQTT readings wrong or extra",
        doubled_shard.len()
    );
    println!("  InfluxDB ≠ store: {} meters", influx_bad.len());
    println!(
        "  alerts fired: {} ({} expected)",
        st.fired.len(),
        expected.len()
    );
    println!(
        "  memory (mean RSS, 2nd quarter → last quarter): {}",
        mem.join("; ")
    );
    if !tail_mem.is_empty() {
        println!(
            "  memory in the {tail_minutes} fault-free minutes after (mean RSS, first half → second half): {}",
            tail_mem.join("; ")
        );
    }
    for l in &sizing {
        println!("  sizing: {l}");
    }
    for (instance, n) in &delivered {
        println!(
            "  InfluxDB write load: {instance} delivered {n} points since its last start ({:.1} points/s if that was the whole run)",
            n / run_s
        );
    }
    println!(
        "  InfluxDB points kept: {consumption_points} consumption, {rollup_points} rollup over {run_s:.0} s ({:.1} points/s for {} meters)",
        (consumption_points + rollup_points) / run_s,
        all.len()
    );
    if failures.is_empty() {
        println!("  RESULT: zero lost, zero doubled, alerts exactly for the injected faults");
        Ok(())
    } else {
        for f in &failures {
            println!("  FAIL: {f}");
        }
        anyhow::bail!("{} check(s) failed", failures.len())
    }
}
