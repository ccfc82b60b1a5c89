//! API latency under load: a year of 15-minute data for 1 000 meters (100
//! buildings, 20 agencies sharing them by area, headcounts partly from the
//! office-space ledger), the API served in this process, and 64 concurrent
//! keep-alive clients for a fixed time per endpoint: agency KPIs of a year,
//! of a month, and a meter's consumption for a day (96 intervals). The
//! reference is `/healthz` under the same load (the HTTP stack's floor).
//! Then the overview page's load time in headless Chromium (Debian's),
//! against an `about:blank` run of the same browser.
//!
//! `cargo run --release -p meterflow-benches --bin api-latency -- [METERS] [DAYS] [SECONDS] [KEEP_DIR]`
//!
//! With KEEP_DIR the fixture is built there once and reused by later runs
//! (building a year for 1 000 meters takes minutes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use meterflow_model::Site;

const TOKEN: &str = "bench-manager-token-0123456789";
use meterflow_benches::api_fixture::AGENCIES;

struct Stats {
    n: usize,
    errors: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(port: u16, paths: Arc<Vec<String>>, clients: usize, secs: f64) -> Stats {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let paths = Arc::clone(&paths);
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut i = c;
            while Instant::now() < deadline {
                let url = format!("http://127.0.0.1:{port}{}", paths[i % paths.len()]);
                i += clients;
                let t = Instant::now();
                let ok = match client.get(&url).bearer_auth(TOKEN).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let q = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Stats {
        n: all.len(),
        errors,
        secs: elapsed,
        p50_ms: q(0.50),
        p99_ms: q(0.99),
    }
}

fn chromium_ms(url: &str) -> Option<f64> {
    let bin = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })?;
    let profile = tempfile::tempdir().ok()?;
    let t = Instant::now();
    let o = std::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .output()
        .ok()?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    (o.status.success() && !o.stdout.is_empty()).then_some(ms)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let meters: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let days: u32 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(365);
    let secs: f64 = args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(20.0);
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
    let config = meterflow_benches::api_fixture::site_file(&dir, meters, port, TOKEN)?;
    let site = Site::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if dir.join("fixture-done").exists() {
        println!("fixture: reused from {}", dir.display());
    } else {
        let from = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).context("date")?;
        meterflow_benches::api_fixture::build(&dir, &site, days, from)?;
        std::fs::write(dir.join("fixture-done"), format!("{meters} {days}\n"))?;
    }
    serve_and_load(site, meters, secs, port)
}

fn serve_and_load(site: Site, meters: usize, secs: f64, port: u16) -> anyhow::Result<()> {
    // Service time of one KPI computation, sequential, without HTTP.
    {
        let reader = meterflow_store::Reader::open(&site.store_path())?;
        let kpi = meterflow_kpi::KpiContext::new(&site);
        let _ = kpi.aggregator(); // built once, as the API's state does
        let period = meterflow_kpi::period_of(2025, None).context("period")?;
        let t = Instant::now();
        let n = 100;
        for i in 0..n {
            let scope = meterflow_kpi::Scope::Agency(format!("a{}", i % AGENCIES));
            kpi.scope_kpis(&reader, &scope, period)?;
        }
        println!(
            "one agency's year KPIs, computed in-process one at a time: {:.2} ms each",
            t.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
        if std::env::var_os("KPI_ONLY").is_some() {
            return Ok(());
        }
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

    let kpi_year: Vec<String> = (0..AGENCIES)
        .map(|a| format!("/api/v1/kpis?scope=agency&id=a{a}&year=2025"))
        .collect();
    let kpi_month: Vec<String> = (0..AGENCIES * 12)
        .map(|i| {
            format!(
                "/api/v1/kpis?scope=agency&id=a{}&year=2025&month={}",
                i % AGENCIES,
                i % 12 + 1
            )
        })
        .collect();
    let consumption: Vec<String> = (0..meters)
        .map(|i| {
            let day = 1 + (i * 7) % 28;
            format!(
                "/api/v1/meters/m{i:04}/consumption?from=2025-06-{day:02}&to=2025-06-{:02}",
                day + 1
            )
        })
        .collect();
    let healthz = vec!["/healthz".to_string()];
    let clients = 64;
    println!("{clients} clients, {secs} s per endpoint:");
    println!("| endpoint | requests | errors | req/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    let mut floor = f64::NAN;
    for (name, paths) in [
        ("/healthz (reference)", healthz),
        ("KPIs of an agency, year", kpi_year),
        ("KPIs of an agency, month", kpi_month),
        ("consumption of a meter, one day (96 rows)", consumption),
    ] {
        let s = rt.block_on(load(port, Arc::new(paths), clients, secs));
        if floor.is_nan() {
            floor = s.p50_ms;
        }
        println!(
            "| {name} | {} | {} | {:.0} | {:.1} | {:.1} |",
            s.n,
            s.errors,
            s.n as f64 / s.secs,
            s.p50_ms,
            s.p99_ms
        );
    }

    let page = format!("http://127.0.0.1:{port}/");
    let (mut blank, mut loaded) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        if let (Some(b), Some(p)) = (chromium_ms("about:blank"), chromium_ms(&page)) {
            blank.push(b);
            loaded.push(p);
        }
    }
    if loaded.is_empty() {
        println!("overview page: chromium not found or failed (apt-get install chromium)");
    } else {
        let n = loaded.len();
        let (b, p) = (median(blank), median(loaded));
        println!(
            "overview page in headless Chromium (median of {n}): {p:.0} ms; about:blank {b:.0} ms; the page's own share {:.0} ms",
            p - b
        );
    }
    let _ = stop_tx.send(true);
    let _ = rt.block_on(server);
    if let Some(kib) = meterflow_benches::peak_rss_kib() {
        println!("peak RSS: {:.0} MiB", kib as f64 / 1024.0);
    }
    Ok(())
}
