//! The pages' server time and weight (issue 21): a year of 15-minute data
//! for 1 000 meters ending yesterday (so "this year" and the last 30 days
//! have data), the server in this process, one client asking in turn: the
//! overview, an agency's page (its figures for the 30 days, four charts,
//! its meters) and a meter's month. p50/p95 of the time to the last byte,
//! and the bytes of each page, against `/healthz` on the same connection;
//! then the KPI API with the energy cost and budget (the site has tariffs).
//!
//! `cargo run --release -p meterflow-benches --bin page-latency -- [METERS] [DAYS] [REQUESTS] [KEEP_DIR]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use meterflow_benches::api_fixture::{AGENCIES, build, site_file};
use meterflow_model::Site;

const TOKEN: &str = "bench-manager-token-0123456789";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let meters: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let days: u32 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(365);
    let n: usize = args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(40);
    let tmp = tempfile::tempdir()?;
    let dir = match args.get(4) {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            std::path::PathBuf::from(d)
        }
        None => tmp.path().to_path_buf(),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = site_file(&dir, meters, port, TOKEN)?;
    let site = Site::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let today = chrono::Utc::now().with_timezone(&site.tz).date_naive();
    let stamp = format!("{meters} {days} {today}\n");
    if std::fs::read_to_string(dir.join("fixture-done"))
        .ok()
        .as_deref()
        == Some(stamp.as_str())
    {
        println!("fixture: reused from {}", dir.display());
    } else {
        let _ = std::fs::remove_file(site.store_path());
        let from = today - chrono::Duration::days(i64::from(days));
        build(&dir, &site, days, from)?;
        std::fs::write(dir.join("fixture-done"), stamp)?;
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let site = Arc::new(site);
    let server = rt.block_on(meterflow_http::serve(
        Arc::clone(&site),
        meterflow_http::Live::default(),
        stop_rx,
    ))?;
    std::thread::sleep(Duration::from_millis(300));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let month = today.format("%Y-%m-15");
    let year = chrono::Datelike::year(&today);
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("/healthz (reference)", vec!["/healthz".into()]),
        (
            "overview `/` (30 days, every carrier, 20 agencies' KPIs)",
            vec!["/".into()],
        ),
        (
            "agency page (30 days: figures, 4 charts, meters)",
            (0..AGENCIES).map(|a| format!("/agencies/a{a}")).collect(),
        ),
        (
            "agency page, the year by month",
            (0..AGENCIES)
                .map(|a| format!("/agencies/a{a}?period=year"))
                .collect(),
        ),
        (
            "API: an agency's KPIs for the year with cost (time of use, water surcharge) and budget",
            (0..AGENCIES)
                .map(|a| format!("/api/v1/kpis?scope=agency&id=a{a}&year={year}"))
                .collect(),
        ),
        (
            "API: the site's KPIs for the year with cost (every agency's water surcharge, 12 months)",
            vec![format!("/api/v1/kpis?scope=site&year={year}")],
        ),
        (
            "meter page, a month by day with quality",
            (0..meters.min(100))
                .map(|i| format!("/meters/m{i:04}?period=month&date={month}"))
                .collect(),
        ),
    ];
    println!("{n} requests each, one at a time (server in this process, 2 cores):");
    println!("| page | p50 ms | p95 ms | max ms | bytes |");
    println!("|---|---|---|---|---|");
    for (name, paths) in cases {
        let mut lat = Vec::new();
        let mut bytes = 0usize;
        // One warm-up (the reader pool, the KPI context).
        let _ = rt.block_on(fetch(&client, port, &paths[0]));
        for i in 0..n {
            let t = Instant::now();
            let got = rt
                .block_on(fetch(&client, port, &paths[i % paths.len()]))
                .with_context(|| paths[i % paths.len()].clone())?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            bytes = bytes.max(got);
        }
        lat.sort_by(f64::total_cmp);
        let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {bytes} |",
            q(0.5),
            q(0.95),
            lat[lat.len() - 1]
        );
    }
    let _ = stop_tx.send(true);
    let _ = rt.block_on(server);
    Ok(())
}

async fn fetch(client: &reqwest::Client, port: u16, path: &str) -> anyhow::Result<usize> {
    let r = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
    Ok(r.bytes().await?.len())
}
