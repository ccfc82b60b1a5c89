//! End-to-end MQTT ingest rate through Mosquitto (Debian), next to the rate at
//! which `mosquitto_sub` alone receives the same stream from the same broker.
//!
//! N JSON messages for 100 meters are queued in the broker for two persistent
//! sessions (mosquitto_sub's and meterflow's), then each client drains its
//! queue: mosquitto_sub to /dev/null, meterflow (in this process) into its store,
//! committed and, at QoS 1, acknowledged only after the commit.
//!
//! `cargo run --release -p meterflow-benches --bin mqtt-ingest -- [N] [QOS]`
//!
//! `MF_STORE_EXTRA` is appended to the site's `[store]` table, to compare
//! store settings (e.g. `MF_STORE_EXTRA='cache_mib = 64'`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meterflow_model::Site;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let qos: u8 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(0);
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let conf = dir.path().join("mosquitto.conf");
    // In-memory queues; QoS 0 messages are queued for offline persistent sessions too.
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_queued_bytes 0\nqueue_qos0_messages true\nmax_inflight_messages 1000\n"
        ),
    )?;
    let mut broker = Command::new("mosquitto")
        .args(["-c", conf.to_str().unwrap_or_default()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut site_text = format!(
        "[site]\nname = \"mqtt bench\"\n[store]\npath = \"store.db\"\n{}\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n",
        std::env::var("MF_STORE_EXTRA").unwrap_or_default()
    );
    for m in 0..100 {
        let _ = write!(
            site_text,
            "[[meter]]\nid = \"m{m}\"\nkind = \"water\"\nunit = \"m3\"\nserves = {{ building = \"b\" }}\n"
        );
    }
    let _ = write!(
        site_text,
        "[[mqtt]]\nid = \"bench\"\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"mf-bench\"\nqos = {qos}\n[[mqtt.topic]]\npattern = \"bench/{{meter_id}}\"\nformat = \"json\"\nvalue = \"v\"\ntimestamp = \"ts\"\n"
    );
    let config = dir.path().join("site.toml");
    std::fs::write(&config, site_text)?;
    let site = Site::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // Register both persistent sessions (subscribe once), then queue the stream.
    let sub = |extra: &[&str]| {
        let mut c = Command::new("mosquitto_sub");
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            "-i",
            "bench-sub",
            "-q",
            &qos.to_string(),
            "-t",
            "bench/#",
        ])
        .args(extra);
        c
    };
    let _ = sub(&["-W", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    run_meterflow(&rt, &site, Duration::from_secs(2), None)?;
    let t = Instant::now();
    let mut pubr = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            &qos.to_string(),
            "-t",
            "placeholder",
            "-l",
        ])
        .stdin(Stdio::piped())
        .spawn()?;
    drop(pubr.stdin.take());
    let _ = pubr.wait();
    // mosquitto_pub -l publishes every line to one topic; publish per meter in 100 streams.
    let t0: i64 = 1_735_689_600_000;
    let per = n / 100;
    let mut children = Vec::new();
    for m in 0..100u64 {
        let mut c = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-q",
                &qos.to_string(),
                "-t",
                &format!("bench/m{m}"),
                "-l",
            ])
            .stdin(Stdio::piped())
            .spawn()?;
        let mut stdin = c.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?;
        let mut buf = String::with_capacity(per as usize * 40);
        for i in 0..per {
            let _ = writeln!(buf, "{{\"v\": {}, \"ts\": {}}}", i, t0 + i as i64 * 60_000);
        }
        stdin.write_all(buf.as_bytes())?;
        drop(stdin);
        children.push(c);
        if children.len() >= 8 {
            let _ = children.remove(0).wait();
        }
    }
    for mut c in children {
        let _ = c.wait();
    }
    let total = per * 100;
    println!(
        "queued {total} messages at QoS {qos} for 2 sessions in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Baseline: mosquitto_sub drains its queue to /dev/null.
    let t = Instant::now();
    let sub_cpu0 = meterflow_benches::children_cpu_seconds();
    let status = sub(&["-C", &total.to_string()])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "mosquitto_sub failed");
    let sub_rate = total as f64 / t.elapsed().as_secs_f64();
    // CPU per message: less machine-bound than the rates, which depend on
    // how the two cores are shared with the broker.
    let sub_cpu = meterflow_benches::children_cpu_seconds()
        .zip(sub_cpu0)
        .map(|(b, a)| b - a);

    // meterflow drains its queue into the store.
    let rss0 = meterflow_benches::peak_rss_kib().unwrap_or(0);
    let db = dir.path().join("store.db");
    let mf_cpu0 = meterflow_benches::cpu_seconds();
    let secs = run_meterflow(
        &rt,
        &site,
        Duration::from_secs(600),
        Some((db.clone(), total as i64)),
    )?;
    let mf_cpu = meterflow_benches::cpu_seconds()
        .zip(mf_cpu0)
        .map(|(b, a)| b - a);
    let mf_rate = total as f64 / secs;
    let rss = meterflow_benches::peak_rss_kib().unwrap_or(0);
    let _ = broker.kill();
    println!("mosquitto_sub alone: {sub_rate:.0} msg/s");
    println!(
        "meterflow (decoded, committed{}): {mf_rate:.0} msg/s in {secs:.1} s",
        if qos == 1 {
            ", acknowledged after commit"
        } else {
            ""
        }
    );
    println!("ratio meterflow / mosquitto_sub: {:.3}", mf_rate / sub_rate);
    if let (Some(m), Some(s)) = (mf_cpu, sub_cpu) {
        let per = |c: f64| c / total as f64 * 1e6;
        println!(
            "CPU per message: meterflow {:.2} µs (decode, normalise, commit), mosquitto_sub {:.2} µs (receive only); the broker's not counted",
            per(m),
            per(s)
        );
    }
    println!(
        "peak RSS of the meterflow process: {:.0} MiB (before the drain: {:.0} MiB)",
        rss as f64 / 1024.0,
        rss0 as f64 / 1024.0
    );
    Ok(())
}

/// Run the pipeline until `until` readings are committed or `limit` passes; seconds taken.
fn run_meterflow(
    rt: &tokio::runtime::Runtime,
    site: &Site,
    limit: Duration,
    until: Option<(std::path::PathBuf, i64)>,
) -> anyhow::Result<f64> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let committed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = Instant::now();
    let (site, duration) = (
        site.clone(),
        if until.is_some() {
            limit
        } else {
            limit.min(Duration::from_secs(2))
        },
    );
    let opts = meterflow_runtime::pipeline::RunOptions {
        live: false,
        duration: Some(duration),
        stop: Some(stop_rx),
        committed: Some(std::sync::Arc::clone(&committed)),
        api: None,
        status_every: None,
    };
    let handle = rt.spawn(meterflow_runtime::pipeline::run(site, opts));
    let mut done_at = None;
    if let Some((_, want)) = until {
        while t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(5));
            if committed.load(std::sync::atomic::Ordering::Relaxed) as i64 >= want {
                done_at = Some(t.elapsed().as_secs_f64());
                break;
            }
        }
        let _ = stop_tx.send(true);
    }
    rt.block_on(handle)??;
    Ok(done_at.unwrap_or_else(|| t.elapsed().as_secs_f64()))
}
