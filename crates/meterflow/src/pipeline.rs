//! `meterflow run`: pollers → bounded channel → one writer thread → store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use meterflow_modbus::{BusHealth, MeterPoll, run_bus};
use meterflow_model::{Reading, Site};
use meterflow_store::{Verdict, Writer};
use tokio::sync::{mpsc, watch};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print each committed counter reading.
    pub live: bool,
    /// Stop after this long (tests, CI); `None` = until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Readings committed.
    pub stored: u64,
    /// Readings refused by the store (duplicates, conflicts).
    pub refused: u64,
    /// Health per bus.
    pub buses: BTreeMap<String, Arc<BusHealth>>,
}

/// Polls of the meters on one bus.
pub fn polls_of(site: &Site, bus: &str) -> Vec<MeterPoll> {
    site.meters
        .iter()
        .filter_map(|m| {
            let src = m.modbus.as_ref().filter(|s| s.bus == bus)?;
            let profile = Arc::new(site.profile(&src.profile)?.clone());
            Some(MeterPoll {
                meter: m.id.clone(),
                unit: src.unit,
                profile,
                poll_ms: i64::from(src.poll_s) * 1000,
                fast_poll_ms: src.fast_poll_s.map(|s| i64::from(s) * 1000),
            })
        })
        .collect()
}

/// Run the pipeline until a signal (or `opts.duration`), then drain and stop.
pub async fn run(site: Site, opts: RunOptions) -> anyhow::Result<RunSummary> {
    let mut writer = Writer::open(&site)
        .with_context(|| format!("opening the store {}", site.store_path().display()))?;
    writer
        .sync_replacements(&site, crate::import::now_ms())
        .context("storing configured meter replacements")?;
    // Bounded: when the store falls behind, pollers wait (nothing is dropped).
    let (tx, rx) = mpsc::channel::<Vec<Reading>>(256);
    let (stop_tx, stop_rx) = watch::channel(false);
    let batch_rows = site.store.batch_rows;
    let live = opts.live;
    let tz = site.tz;
    let counters: std::collections::HashSet<(String, String)> = site
        .meters
        .iter()
        .map(|m| (m.id.clone(), m.counter_quantity().to_string()))
        .collect();
    let writer_thread = std::thread::Builder::new()
        .name("meterflow-writer".into())
        .spawn(move || write_loop(writer, rx, batch_rows, live, tz, counters))
        .context("starting the writer thread")?;

    let mut summary = RunSummary::default();
    let mut tasks = Vec::new();
    for bus in &site.buses {
        let polls = polls_of(&site, &bus.id);
        if polls.is_empty() {
            continue;
        }
        let health = Arc::new(BusHealth::default());
        summary.buses.insert(bus.id.clone(), Arc::clone(&health));
        tracing::info!(bus = %bus.id, meters = polls.len(), "Polling.");
        tasks.push(tokio::spawn(run_bus(
            bus.clone(),
            polls,
            tx.clone(),
            health,
            stop_rx.clone(),
        )));
    }
    drop(tx);
    if tasks.is_empty() {
        tracing::warn!("No meter has a Modbus source: nothing to poll.");
    }
    wait_for_stop(opts.duration).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let (stored, refused) = tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .context("joining the writer")?
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    summary.stored = stored;
    summary.refused = refused;
    Ok(summary)
}

async fn wait_for_stop(duration: Option<Duration>) {
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = timer => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = timer => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The writer thread: commit at least once a second, or every `batch_rows`.
fn write_loop(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Vec<Reading>>,
    batch_rows: usize,
    live: bool,
    tz: chrono_tz::Tz,
    counters: std::collections::HashSet<(String, String)>,
) -> anyhow::Result<(u64, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("writer runtime")?;
    let (mut stored, mut refused) = (0u64, 0u64);
    let mut pending: Vec<Reading> = Vec::new();
    let mut first_at: Option<Instant> = None;
    loop {
        let wait = first_at.map_or(Duration::from_secs(3600), |t| {
            Duration::from_secs(1).saturating_sub(t.elapsed())
        });
        let msg = rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await });
        let closed = matches!(msg, Ok(None));
        if let Ok(Some(batch)) = msg {
            first_at.get_or_insert_with(Instant::now);
            pending.extend(batch);
        }
        let due = first_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(1))
            || pending.len() >= batch_rows;
        if (due || closed) && !pending.is_empty() {
            let (verdicts, _) = writer.write_batch(&pending, "modbus")?;
            for (r, v) in pending.iter().zip(&verdicts) {
                match v {
                    Verdict::Stored(status) => {
                        stored += 1;
                        if live && counters.contains(&(r.meter.clone(), r.quantity.clone())) {
                            print_live(r, status.map(|s| s.as_str()).unwrap_or("gauge"), tz);
                        }
                    }
                    _ => refused += 1,
                }
            }
            pending.clear();
            first_at = None;
        }
        if closed {
            return Ok((stored, refused));
        }
    }
}

fn print_live(r: &Reading, status: &str, tz: chrono_tz::Tz) {
    use chrono::TimeZone as _;
    let t = tz
        .timestamp_millis_opt(r.ts_ms)
        .single()
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default();
    println!(
        "{t}  {:<16} {:<14} {:>14.3}  {status}",
        r.meter, r.quantity, r.value
    );
}
