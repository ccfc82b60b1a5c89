//! InfluxDB sink throughput to a local InfluxDB 1.x (Debian's `influxd`), next
//! to the rate at which the same InfluxDB accepts the same pre-encoded batches
//! posted directly, one request at a time (the sink's limit).
//!
//! N points (1 000 meters × N/1 000 15-minute consumption points, as the writer
//! encodes them) are put in a store's outbox. Reference: the outbox's batches
//! are read into memory first (and gzipped first, for the gzip run), then
//! POSTed back to back to database `reference`. Sink: `meterflow`'s sink
//! delivers the same outbox to database `sink` (reading SQLite, gzipping,
//! posting, deleting delivered rows). Each database starts empty.
//!
//! `cargo run --release -p meterflow-benches --bin sink-throughput -- [N] [gzip|plain]`

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use meterflow_core::lineproto::{self, Encoder, Value};
use meterflow_model::Site;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(500_000);
    let gzip = args.get(2).is_none_or(|a| a != "plain");
    let dir = tempfile::tempdir()?;
    let (port, rpc) = (free_port()?, free_port()?);
    let d = dir.path().display();
    let conf = dir.path().join("influxdb.conf");
    std::fs::write(
        &conf,
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n[logging]\n  level = \"warn\"\n"
        ),
    )?;
    let mut influxd = Command::new("influxd")
        .args(["-config", conf.to_str().unwrap_or_default()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(bench(dir.path(), port, n, gzip));
    let _ = influxd.kill();
    let _ = influxd.wait();
    result
}

async fn bench(dir: &std::path::Path, port: u16, n: usize, gzip: bool) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    while client.get(format!("{base}/ping")).send().await.is_err() {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "influxd did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for db in ["reference", "sink", "reference2"] {
        client
            .post(format!("{base}/query"))
            .form(&[("q", format!("CREATE DATABASE {db}"))])
            .send()
            .await?
            .error_for_status()?;
    }
    let site_path = dir.join("site.toml");
    std::fs::write(
        &site_path,
        format!(
            "[site]\nname = \"bench\"\n\n[store]\npath = \"store.db\"\n\n[influx]\nurl = \"{base}\"\ndatabase = \"sink\"\ngzip = {gzip}\nflush_ms = 10\nbatch_points = 5000\nbatch_kib = 4096\n"
        ),
    )?;
    let site = Site::load(&site_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The outbox, filled as the writer fills it (rows of 1 000 lines).
    let mut outbox = meterflow_store::Outbox::open(&site.store_path())?;
    let start_ms = 1_767_196_800_000i64; // 2026-01-01 local midnight, Asia/Shanghai
    let mut enc = Encoder::new();
    for i in 0..n {
        let meter = format!("m{:04}", i % 1000);
        let bucket = start_ms + (i / 1000) as i64 * 900_000;
        enc.point(
            &lineproto::CONSUMPTION,
            &[
                ("meter", &meter),
                ("class", "electricity"),
                ("subitem", "total"),
                ("building", "b1"),
                ("root", "true"),
            ],
            &[
                ("value", Value::F(1.0 + (i % 97) as f64 * 0.013)),
                ("quality", Value::S("measured")),
                ("measured_s", Value::I(900)),
                ("estimated_s", Value::I(0)),
            ],
            bucket,
        )?;
        if enc.points() == 50_000 {
            outbox.append(&mut enc, 0)?;
        }
    }
    outbox.append(&mut enc, 0)?;
    let stats = outbox.stats()?;
    println!(
        "{} points, {:.1} MiB of line protocol in the outbox; gzip {gzip}",
        stats.points,
        stats.bytes as f64 / 1048576.0
    );

    // Reference: the same batches, prepared in memory, posted directly.
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut last = 0;
    loop {
        let rows = outbox.peek_after(last, 5000, 4096 * 1024)?;
        if rows.is_empty() {
            break;
        }
        last = rows.last().map_or(last, |r| r.id);
        let body: String = rows.iter().map(|r| r.body.as_str()).collect();
        bodies.push(if gzip {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body.as_bytes())?;
            e.finish()?
        } else {
            body.into_bytes()
        });
    }
    let direct = |db: &'static str| {
        let (client, bodies) = (client.clone(), bodies.clone());
        let url = format!("{base}/write?db={db}&precision=ms");
        async move {
            let t = Instant::now();
            for b in bodies {
                let mut req = client.post(&url).body(b);
                if gzip {
                    req = req.header("Content-Encoding", "gzip");
                }
                req.send().await?.error_for_status()?;
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "direct posts to {db}: {n} points in {secs:.2} s: {:.0} points/s",
                n as f64 / secs
            );
            anyhow::Ok(n as f64 / secs)
        }
    };
    // The reference runs before and after the sink (the first database written
    // warms InfluxDB up); the ratio is taken against the faster of the two.
    let before = direct("reference").await?;

    // The sink, from the outbox.
    let sink_stats = Arc::new(meterflow_runtime::sink::SinkStats::default());
    let sink = meterflow_runtime::sink::Sink::new(&site, Arc::clone(&sink_stats))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(meterflow_runtime::sink::Control::Run);
    let t = Instant::now();
    let task = tokio::spawn(sink.run(stop_rx));
    while sink_stats.delivered.load(Ordering::Relaxed) < n as u64 {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(600), "sink too slow");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = stop_tx.send(meterflow_runtime::sink::Control::Stop);
    task.await??;
    let rate = n as f64 / secs;
    println!("sink: {n} points delivered in {secs:.2} s: {rate:.0} points/s");
    let after = direct("reference2").await?;
    let reference = before.max(after);
    println!(
        "ratio sink / faster direct run: {:.3} (target >= 0.9)",
        rate / reference
    );
    anyhow::ensure!(outbox.stats()?.points == 0, "outbox not empty");
    Ok(())
}
