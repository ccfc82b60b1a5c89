//! `meterflow run`: sources (Modbus pollers, MQTT subscribers, HTTP push) →
//! bounded channel → one writer thread (group commit) → store; each source
//! is told once its batch is committed.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meterflow_modbus::{BusHealth, MeterPoll, run_bus};
use meterflow_model::{Batch, Reading, Site};
use meterflow_mqtt::MqttStats;
use meterflow_store::{Reader, Verdict, Writer};
use tokio::sync::{mpsc, watch};

/// The longest wait before a panicked background thread restarts.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(60);

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print each committed counter reading.
    pub live: bool,
    /// Stop after this long (tests, CI); `None` = until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
    /// Stop when this turns true (embedding, benchmarks).
    pub stop: Option<watch::Receiver<bool>>,
    /// Readings committed so far, updated after every commit (benchmarks, tests).
    pub committed: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Starts the read API of `[api]` on the run's live state (the binary
    /// passes the HTTP crate's server). Without it a site's `[api]` is not
    /// served, and the run says so.
    pub api: Option<ApiStarter>,
    /// Print a status line to stderr every this often (`run` on a terminal).
    pub status_every: Option<Duration>,
}

/// What the read API sees of a running pipeline.
#[derive(Clone, Default)]
pub struct Live {
    /// Readings committed.
    pub stored: Arc<std::sync::atomic::AtomicU64>,
    /// Readings refused.
    pub refused: Arc<std::sync::atomic::AtomicU64>,
    /// Modbus / serial buses.
    pub buses: BTreeMap<String, Arc<BusHealth>>,
    /// InfluxDB sink.
    pub sink: Option<Arc<crate::sink::SinkStats>>,
    /// RFID scans over MQTT.
    pub rfid: Arc<crate::rfid::RfidStats>,
    /// The supervised background threads (alerting, notifications,
    /// points): their panics, and which are down now.
    pub supervision: Arc<crate::supervise::Supervision>,
    /// The API listener's connections (filled by the server).
    pub listen: Arc<meterflow_listen::ListenStats>,
}

/// The future of a started server: its task, once it listens.
pub type Started =
    Pin<Box<dyn Future<Output = anyhow::Result<tokio::task::JoinHandle<()>>> + Send>>;

/// How a server is started: on the site, the run's live state and its stop
/// signal.
pub type StartFn = dyn Fn(Arc<Site>, Live, watch::Receiver<bool>) -> Started + Send + Sync;

/// A server the run starts (the read API).
#[derive(Clone)]
pub struct ApiStarter(pub Arc<StartFn>);

impl std::fmt::Debug for ApiStarter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiStarter")
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Readings committed.
    pub stored: u64,
    /// Readings refused by the store (duplicates, conflicts).
    pub refused: u64,
    /// Health per Modbus bus.
    pub buses: BTreeMap<String, Arc<BusHealth>>,
    /// Counters per MQTT broker.
    pub mqtt: BTreeMap<String, Arc<MqttStats>>,
    /// Points the InfluxDB sink delivered.
    pub sink_delivered: u64,
}

/// What the buses know of their meters, for the status view.
fn live_meters(
    buses: &BTreeMap<String, Arc<BusHealth>>,
) -> BTreeMap<String, crate::status::LiveMeter> {
    let mut out = BTreeMap::new();
    for b in buses.values() {
        let meters = b.meters.lock().unwrap_or_else(|e| e.into_inner());
        for (id, h) in meters.iter() {
            out.insert(
                id.clone(),
                crate::status::LiveMeter {
                    consecutive_failures: u64::from(h.consecutive_failures),
                    failed_polls: h.failed_polls,
                    polls_due: h.polls_due,
                    polls_taken: h.polls,
                },
            );
        }
    }
    out
}

/// A status line on stderr every `every` until the stop.
async fn status_lines(
    site: Arc<Site>,
    buses: BTreeMap<String, Arc<BusHealth>>,
    committed: Arc<std::sync::atomic::AtomicU64>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut last = (committed.load(Relaxed), std::time::Instant::now());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let now = (committed.load(Relaxed), std::time::Instant::now());
        let rate = now.0.saturating_sub(last.0) as f64
            / now.1.duration_since(last.1).as_secs_f64().max(1e-3);
        last = now;
        let live = live_meters(&buses);
        let site = Arc::clone(&site);
        let at = meterflow_model::clock::now_ms();
        let shown = tokio::task::spawn_blocking(move || {
            crate::status::view(&site, at, Some(&live))
                .map(|v| crate::status::line(&site, &v, rate))
        })
        .await;
        match shown {
            Ok(Ok(l)) => eprintln!("{l}"),
            Ok(Err(e)) => tracing::debug!(error = %e, "Status line not computed."),
            Err(_) => {}
        }
    }
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

/// Meter id → counter quantity, for push sources.
pub fn meter_map(site: &Site) -> Arc<meterflow_model::shard::IngestMeters> {
    Arc::new(meterflow_model::shard::IngestMeters::new(site))
}

/// Run the pipeline until a signal (or `opts.duration`), then drain and stop.
pub async fn run(site: Site, opts: RunOptions) -> anyhow::Result<RunSummary> {
    let mut writer = Writer::open(&site)
        .with_context(|| format!("opening the store {}", site.store_path().display()))?;
    writer
        .sync_replacements(&site, meterflow_model::clock::now_ms())
        .context("storing configured meter replacements")?;
    if let Some(b) = &site.broker {
        let addr: std::net::SocketAddr = b.listen.parse().context("broker.listen")?;
        meterflow_mqtt::broker::start(addr).context("starting the embedded MQTT broker")?;
        // The broker binds on its own thread: wait for it (≤ 3 s) so the
        // subscribers' first connection is not refused.
        let since = std::time::Instant::now();
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
            && since.elapsed() < Duration::from_secs(3)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(%addr, "Embedded MQTT broker listening.");
    }
    // Bounded: when the store falls behind, sources wait (nothing is dropped).
    // Counted in batches (a push source sends one per message): 16 Ki lets a group
    // commit grow to thousands of readings, so the fsync per commit is amortised.
    let (tx, rx) = mpsc::channel::<Batch>(16 * 1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    let batch_rows = site.store.batch_rows;
    let compact_after_days = site.store.compact_after_days;
    let live = opts.live;
    let tz = site.tz;
    let counters: HashSet<(String, String)> = site
        .meters
        .iter()
        .map(|m| (m.id.clone(), m.counter_quantity().to_string()))
        .collect();
    let committed = opts.committed.clone().unwrap_or_default();
    let refused_count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer_thread = std::thread::Builder::new()
        .name("meterflow-writer".into())
        .spawn({
            let (committed, refused_count, stop) = (
                Arc::clone(&committed),
                Arc::clone(&refused_count),
                stop_rx.clone(),
            );
            move || {
                write_loop(
                    writer,
                    rx,
                    WriteOpts {
                        batch_rows,
                        live,
                        tz,
                        counters,
                        committed,
                        refused: refused_count,
                        stop,
                        compact_after_days,
                    },
                )
            }
        })
        .context("starting the writer thread")?;

    let mut summary = RunSummary::default();
    let mut tasks = Vec::new();
    // A sharded instance polls the buses of its own metering groups (ADR 0013).
    let plan = site
        .shard
        .is_sharded()
        .then(|| meterflow_model::shard::Plan::new(&site, site.shard.count));
    if let Some(p) = &plan {
        tracing::info!(
            shard = %site.shard,
            meters = p.meters_per_shard().get(site.shard.index as usize).copied().unwrap_or(0),
            "Sharded: this instance stores its shard's meters only."
        );
    }
    for bus in &site.buses {
        if plan
            .as_ref()
            .is_some_and(|p| p.bus(&bus.id) != Some(site.shard.index))
        {
            continue;
        }
        let polls = polls_of(&site, &bus.id);
        // DL/T 645 and CJ/T 188 meters have buses of their own (the config checks it).
        let cn = meterflow_modbus::cn_polls(&site, &bus.id);
        if polls.is_empty() && cn.is_empty() {
            continue;
        }
        let health = Arc::new(BusHealth::default());
        summary.buses.insert(bus.id.clone(), Arc::clone(&health));
        tracing::info!(bus = %bus.id, meters = polls.len() + cn.len(), "Polling.");
        if polls.is_empty() {
            tasks.push(tokio::spawn(meterflow_modbus::run_cn_bus(
                bus.clone(),
                cn,
                tx.clone(),
                health,
                stop_rx.clone(),
            )));
        } else {
            tasks.push(tokio::spawn(run_bus(
                bus.clone(),
                polls,
                tx.clone(),
                health,
                stop_rx.clone(),
            )));
        }
    }
    let meters = meter_map(&site);
    for b in &site.mqtt {
        let mut b = b.clone();
        if site.shard.is_sharded() {
            // A shared subscription hands a meter's messages to any member, and
            // a counter's readings must all reach the one instance that stores
            // the meter (ADR 0013): every shard takes the whole stream instead,
            // in a session of its own, and keeps its own meters.
            anyhow::ensure!(
                b.shared_group.is_none(),
                "{}: [[mqtt]] `{}` has shared_group, which a sharded run (--shard {}) cannot use: \
                 a shared subscription splits one meter's readings between shards; remove it \
                 (every shard then subscribes to the whole stream and keeps its own meters)",
                site.path.display(),
                b.id,
                site.shard
            );
            b.client_id = format!("{}-shard{}", b.client_id, site.shard.index);
        }
        let stats = Arc::new(MqttStats::default());
        summary.mqtt.insert(b.id.clone(), Arc::clone(&stats));
        tasks.push(tokio::spawn(meterflow_mqtt::run(
            b,
            Arc::clone(&meters),
            tx.clone(),
            stats,
            stop_rx.clone(),
        )));
    }
    let rfid_stats = Arc::new(crate::rfid::RfidStats::default());
    let site_arc = Arc::new(site.clone());
    // Ledgers live with shard 0 (ADR 0013), and so do RFID scans.
    for b in site
        .mqtt
        .iter()
        .filter(|b| !b.rfid.is_empty() && site.shard.index == 0)
    {
        tasks.push(tokio::spawn(crate::rfid::run(
            Arc::clone(&site_arc),
            b.clone(),
            Arc::clone(&rfid_stats),
            stop_rx.clone(),
        )));
    }
    if let Some(h) = &site.http {
        let stats = Arc::new(meterflow_push::HttpStats::default());
        let server = meterflow_push::serve(
            h.clone(),
            Arc::clone(&meters),
            tx.clone(),
            stats,
            stop_rx.clone(),
        )
        .await
        .context("starting HTTP push ingest")?;
        tasks.push(server);
    }
    drop(tx);
    let sink_stats = Arc::new(crate::sink::SinkStats::default());
    let supervision = Arc::new(crate::supervise::Supervision::default());
    let (sink_stop_tx, sink_stop_rx) = watch::channel(crate::sink::Control::Run);
    let sink_task = match &site.influx {
        Some(cfg) => {
            let sink = crate::sink::Sink::new(&site, Arc::clone(&sink_stats))?;
            tracing::info!(url = %sink.url(), "InfluxDB sink delivering the outbox.");
            let timeout = Duration::from_secs_f64(cfg.timeout_s * 3.0 + 5.0);
            Some((tokio::spawn(sink.run(sink_stop_rx)), timeout))
        }
        None => None,
    };
    if site.api.is_some() && opts.api.is_none() {
        tracing::warn!(
            "{}: [api] is configured but this run serves no API (embedded without a server).",
            site.path.display()
        );
    }
    if let (Some(_), Some(start)) = (&site.api, &opts.api) {
        let live = Live {
            stored: Arc::clone(&committed),
            refused: Arc::clone(&refused_count),
            buses: summary.buses.clone(),
            sink: site.influx.as_ref().map(|_| Arc::clone(&sink_stats)),
            rfid: Arc::clone(&rfid_stats),
            supervision: Arc::clone(&supervision),
            listen: Arc::default(),
        };
        tasks.push(
            (start.0)(Arc::new(site.clone()), live, stop_rx.clone())
                .await
                .context("starting the API")?,
        );
    }
    let mut alert_threads = start_alerting(&site, &summary, &stop_rx, &supervision)?;
    if site.influx.is_some() {
        alert_threads.push(start_points(
            &site,
            &summary,
            &stop_rx,
            Arc::clone(&committed),
            Arc::clone(&refused_count),
            Arc::clone(&sink_stats),
            Arc::clone(&supervision),
        )?);
    }
    if tasks.is_empty() {
        tracing::warn!(
            "No source configured (no Modbus meter, no [[mqtt]], no [http]): nothing to ingest."
        );
    }
    if let Some(every) = opts.status_every {
        tasks.push(tokio::spawn(status_lines(
            Arc::new(site.clone()),
            summary.buses.clone(),
            Arc::clone(&committed),
            every,
            stop_rx.clone(),
        )));
    }
    wait_for_stop(opts.duration, opts.stop.clone()).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    for t in alert_threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    let (stored, refused) = tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .context("joining the writer")?
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    summary.stored = stored;
    summary.refused = refused;
    // Final KPI points over everything committed, then the sink stops after
    // delivering what it can.
    if site.influx.is_some() {
        let s = site.clone();
        let flush = sink_stop_tx.clone();
        let final_points = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut outbox = meterflow_store::Outbox::open(&s.store_path())?;
            if crate::shardkpi::merges(&s) {
                // Shard 0 merges every shard's rollups from InfluxDB: its own
                // last ones must be there first, not still in its outbox.
                let _ = flush.send(crate::sink::Control::Flush);
                await_delivery(&outbox, &s);
            }
            let now = meterflow_model::clock::now_ms();
            let reader = crate::shardkpi::kpi_reader(&s, now)?;
            let mut enc = meterflow_core::lineproto::Encoder::new();
            crate::points::kpi_points(&s, &reader, now, &mut enc)?;
            outbox.append(&mut enc, now)?;
            Ok(())
        })
        .await;
        if let Ok(Err(e)) = final_points {
            tracing::warn!("final KPI points: {e:#}");
        }
    }
    let _ = sink_stop_tx.send(crate::sink::Control::Stop);
    if let Some((task, timeout)) = sink_task {
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("InfluxDB sink: {e:#}"),
            Ok(Err(e)) => tracing::warn!("InfluxDB sink task: {e}"),
            Err(_) => {
                tracing::warn!("InfluxDB sink still busy at shutdown; the outbox keeps the rest.")
            }
        }
    }
    summary.sink_delivered = sink_stats
        .delivered
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok(summary)
}

/// Wait until the sink (asked to flush) has delivered what the outbox holds
/// now, at most `[influx] timeout_s` and 5 s: a healthy InfluxDB takes it in
/// milliseconds, and an absent one fails the merge anyway, so the wait must
/// not eat the service manager's stop timeout.
fn await_delivery(outbox: &meterflow_store::Outbox, site: &Site) {
    let Some(cfg) = site.influx.as_ref() else {
        return;
    };
    let Ok(Some((_, last))) = outbox.id_range() else {
        return;
    };
    let limit = Duration::from_secs_f64(cfg.timeout_s.clamp(0.0, 5.0));
    let t = std::time::Instant::now();
    loop {
        match outbox.id_range() {
            Ok(Some((first, _))) if first <= last => {}
            _ => return,
        }
        if t.elapsed() >= limit {
            tracing::warn!(
                "The outbox was not delivered within {limit:?}; the final site KPIs may miss this shard's last rollups."
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The instance tag of health points.
fn instance_name(site: &Site) -> String {
    let name = site
        .influx
        .as_ref()
        .and_then(|c| c.instance.clone())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "meterflow".into());
    // Shards on one host would otherwise share their health series.
    if site.shard.is_sharded() {
        format!("{name}-shard{}", site.shard.index)
    } else {
        name
    }
}

/// Every `[influx] kpi_interval_s`: KPIs of the running month and year, bus
/// and pipeline health, into the outbox.
fn start_points(
    site: &Site,
    summary: &RunSummary,
    stop: &watch::Receiver<bool>,
    stored: Arc<std::sync::atomic::AtomicU64>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    sink: Arc<crate::sink::SinkStats>,
    sup: Arc<crate::supervise::Supervision>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let site = site.clone();
    let buses = summary.buses.clone();
    let mut st = stop.clone();
    let every = Duration::from_secs(site.influx.as_ref().map_or(60, |c| c.kpi_interval_s.max(1)));
    let instance = instance_name(&site);
    let stop_sup = stop.clone();
    std::thread::Builder::new()
        .name("meterflow-points".into())
        .spawn(move || {
            crate::supervise::supervise("points", &sup, &stop_sup, MAX_RESTART_BACKOFF, || {
                let mut outbox = match meterflow_store::Outbox::open(&site.store_path()) {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::error!("KPI and health points disabled: {e}");
                        return;
                    }
                };
                let mut last = BTreeMap::new();
                loop {
                    let now = meterflow_model::clock::now_ms();
                    let mut enc = meterflow_core::lineproto::Encoder::new();
                    match crate::shardkpi::kpi_reader(&site, now) {
                        Ok(reader) => {
                            if let Err(e) = crate::points::kpi_points(&site, &reader, now, &mut enc)
                            {
                                tracing::warn!("KPI points: {e:#}");
                            }
                        }
                        Err(e) => tracing::warn!("KPI points: {e}"),
                    }
                    let stats = outbox.stats().unwrap_or_default();
                    let h = crate::points::Health {
                        instance: &instance,
                        stored: stored.load(std::sync::atomic::Ordering::Relaxed),
                        refused: refused.load(std::sync::atomic::Ordering::Relaxed),
                        buses: &buses,
                        outbox: stats,
                        sink: &sink,
                    };
                    crate::points::health_points(&h, now, &mut last, &mut enc);
                    if let Err(e) = outbox.append(&mut enc, now) {
                        tracing::warn!("KPI and health points: {e}");
                    }
                    let until = std::time::Instant::now() + every;
                    while std::time::Instant::now() < until {
                        if *st.borrow_and_update() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            });
        })
        .context("starting the KPI points thread")
}

async fn wait_for_stop(duration: Option<Duration>, stop: Option<watch::Receiver<bool>>) {
    let timer = async {
        let external = async {
            match stop {
                Some(mut rx) => {
                    while !*rx.borrow() {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        match duration {
            Some(d) => tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = external => {}
            },
            None => external.await,
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

struct WriteOpts {
    batch_rows: usize,
    live: bool,
    tz: chrono_tz::Tz,
    counters: HashSet<(String, String)>,
    committed: Arc<std::sync::atomic::AtomicU64>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    stop: watch::Receiver<bool>,
    /// `[store] compact_after_days` (0: never).
    compact_after_days: u32,
}

/// The first compaction pass this long after start (not while a restart
/// catches up), then one a day.
const COMPACT_FIRST: Duration = Duration::from_secs(600);
const COMPACT_EVERY: Duration = Duration::from_secs(86_400);
/// A compaction slice between two batches: ingest waits at most this long.
const COMPACT_SLICE: Duration = Duration::from_millis(250);

/// The writer thread: take everything that is waiting (up to `batch_rows`
/// readings), commit it in one transaction, then tell each source.
fn write_loop(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Batch>,
    o: WriteOpts,
) -> anyhow::Result<(u64, u64)> {
    let WriteOpts {
        batch_rows,
        live,
        tz,
        counters,
        committed,
        refused: refused_count,
        stop,
        compact_after_days,
    } = o;
    let mut next_compact = std::time::Instant::now() + COMPACT_FIRST;
    let mut compacted = meterflow_store::CompactReport::default();
    let (mut stored, mut refused) = (0u64, 0u64);
    let mut full_logged = false;
    while let Some(first) = rx.blocking_recv() {
        let mut batches = vec![first];
        let mut rows = batches[0].readings.len();
        while rows < batch_rows {
            match rx.try_recv() {
                Ok(b) => {
                    rows += b.readings.len();
                    batches.push(b);
                }
                Err(_) => break,
            }
        }
        for b in &batches {
            for d in &b.dead {
                writer.dead_letter(d.received_ms, &d.source, &d.location, &d.reason, &d.payload);
            }
        }
        let parts: Vec<(&[Reading], &str)> = batches
            .iter()
            .map(|b| (b.readings.as_slice(), b.source.as_str()))
            .collect();
        let mut result = writer.write_batches(&parts);
        // Outbox full under the `block` policy: hold the batch (its sources are
        // not acknowledged, so they slow down) until the sink drains or we stop.
        while let Err(meterflow_store::StoreError::OutboxFull { .. }) = &result {
            if !full_logged {
                if let Err(e) = &result {
                    tracing::warn!("{e}");
                }
                full_logged = true;
            }
            if *stop.borrow() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            result = writer.write_batches(&parts);
        }
        if result.is_ok() && full_logged {
            tracing::info!("InfluxDB outbox below its bound again; committing.");
            full_logged = false;
        }
        if let Err(e @ meterflow_store::StoreError::OutboxFull { .. }) = &result {
            // Stopping with a full outbox: these readings are not committed;
            // their sources are told so (MQTT redelivers them after restart).
            let msg = e.to_string();
            for b in batches {
                if let Some(done) = b.done {
                    done(Err(msg.clone()));
                }
            }
            continue;
        }
        let verdicts = match result {
            Ok((v, _)) => v,
            Err(e) => {
                let msg = e.to_string();
                for b in batches {
                    if let Some(done) = b.done {
                        done(Err(msg.clone()));
                    }
                }
                return Err(e).context("committing to the store");
            }
        };
        for (b, vs) in batches.into_iter().zip(verdicts) {
            let mut refusals = Vec::new();
            for (i, (r, v)) in b.readings.iter().zip(&vs).enumerate() {
                match v {
                    Verdict::Stored(status) => {
                        stored += 1;
                        if live && counters.contains(&(r.meter.clone(), r.quantity.clone())) {
                            print_live(r, status.map(|s| s.as_str()).unwrap_or("gauge"), tz);
                        }
                    }
                    Verdict::Duplicate => refused += 1,
                    other => {
                        refused += 1;
                        refusals.push((i, verdict_reason(other)));
                    }
                }
            }
            if let Some(done) = b.done {
                done(Ok(refusals));
            }
        }
        committed.store(stored, std::sync::atomic::Ordering::Relaxed);
        refused_count.store(refused, std::sync::atomic::Ordering::Relaxed);
        if compact_after_days > 0 && std::time::Instant::now() >= next_compact {
            // Closed months into compacted blocks, a slice between batches.
            match writer.compact_within(compact_after_days, Some(COMPACT_SLICE)) {
                Ok(r) => {
                    compacted.series_months += r.series_months;
                    compacted.scope_months += r.scope_months;
                    compacted.rows += r.rows;
                    if r.done {
                        tracing::info!(
                            "compaction: {} series-months and {} scope-months ({} rows) into compacted blocks",
                            compacted.series_months,
                            compacted.scope_months,
                            compacted.rows
                        );
                        compacted = meterflow_store::CompactReport::default();
                        next_compact = std::time::Instant::now() + COMPACT_EVERY;
                    }
                }
                Err(e) => {
                    tracing::warn!("compaction failed (retried in an hour): {e}");
                    next_compact = std::time::Instant::now() + Duration::from_secs(3_600);
                }
            }
        }
    }
    Ok((stored, refused))
}

fn verdict_reason(v: &Verdict) -> String {
    match v {
        Verdict::Conflict { existing } => format!(
            "a different value ({}) is already stored for this meter and time",
            existing.map_or("non-finite".into(), |x| x.to_string())
        ),
        Verdict::UnknownMeter => "unknown meter".into(),
        Verdict::TooOld => "older than the raw-retention horizon".into(),
        Verdict::ImplausibleTime { reason } => format!("implausible time: {reason}"),
        Verdict::Stored(_) | Verdict::Duplicate => String::new(),
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

/// The alert evaluator (every `[alerting] interval_s`) and the notification
/// worker, each on its own thread so neither can hold up ingest.
fn start_alerting(
    site: &Site,
    summary: &RunSummary,
    stop: &watch::Receiver<bool>,
    sup: &Arc<crate::supervise::Supervision>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let site = Arc::new(site.clone());
    let mut threads = Vec::new();
    let buses = summary.buses.clone();
    let (s, mut st) = (Arc::clone(&site), stop.clone());
    let (sup1, stop1) = (Arc::clone(sup), stop.clone());
    threads.push(
        std::thread::Builder::new()
            .name("meterflow-alerts".into())
            .spawn(move || {
                crate::supervise::supervise("alerting", &sup1, &stop1, MAX_RESTART_BACKOFF, || {
                let mut evaluator = match crate::alerting::Evaluator::open(&s) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!("alerting disabled: {e:#}");
                        return;
                    }
                };
                let every = Duration::from_secs(s.alerting.interval_s.max(1));
                let mut last: BTreeMap<String, (u64, u64)> = BTreeMap::new();
                let started = meterflow_model::clock::now_ms();
                let mut outbox = s.influx.as_ref().and_then(|_| {
                    meterflow_store::Outbox::open(&s.store_path())
                        .map_err(|e| tracing::warn!("alert points disabled: {e}"))
                        .ok()
                });
                loop {
                    let mut live = crate::alerting::LiveMetrics {
                        started_ms: Some(started),
                        ..Default::default()
                    };
                    for (id, h) in &buses {
                        let req = h.requests.load(std::sync::atomic::Ordering::Relaxed);
                        let ok = h.ok.load(std::sync::atomic::Ordering::Relaxed);
                        let (r0, o0) = last.insert(id.clone(), (req, ok)).unwrap_or((0, 0));
                        if req > r0 {
                            live.bus_error_rate.insert(id.clone(), 1.0 - (ok - o0.min(ok)) as f64 / (req - r0) as f64);
                        }
                    }
                    let now = meterflow_model::clock::now_ms();
                    match Reader::open(&s.store_path()) {
                        Ok(reader) => match evaluator.evaluate(&s, &reader, now, &live) {
                            Ok(events) => {
                                for e in &events {
                                    tracing::info!(rule = %e.rule, target = %e.target, "alert {}: {}", e.event, e.message);
                                }
                                if let Some(o) = outbox.as_mut() {
                                    let mut enc = meterflow_core::lineproto::Encoder::new();
                                    crate::points::alert_points(&events, &mut enc);
                                    if let Err(e) = o.append(&mut enc, now) {
                                        tracing::warn!("alert points: {e}");
                                    }
                                }
                            }
                            Err(e) => tracing::warn!("alert evaluation failed: {e:#}"),
                        },
                        Err(e) => tracing::warn!("alert evaluation: {e:#}"),
                    }
                    // Sleep in small steps so a stop is seen promptly.
                    let until = std::time::Instant::now() + every;
                    while std::time::Instant::now() < until {
                        if *st.borrow_and_update() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                });
            })
            .context("starting the alert thread")?,
    );
    if site.backup.is_some() {
        let (st, sup3, site3) = (stop.clone(), Arc::clone(sup), Arc::clone(&site));
        threads.push(
            std::thread::Builder::new()
                .name("meterflow-backup".into())
                .spawn(move || {
                    crate::supervise::supervise("backup", &sup3, &st, MAX_RESTART_BACKOFF, || {
                        crate::backup::run_schedule(&site3, &st);
                    });
                })
                .context("starting the backup thread")?,
        );
    }
    if !site.notifiers.is_empty() {
        // Fails at start (a bad client setup) rather than in the thread.
        drop(crate::notify::Worker::new(Arc::clone(&site))?);
        let st = stop.clone();
        let (sup2, site2) = (Arc::clone(sup), Arc::clone(&site));
        threads.push(
            std::thread::Builder::new()
                .name("meterflow-notify".into())
                .spawn(move || {
                    crate::supervise::supervise(
                        "notifications",
                        &sup2,
                        &st,
                        MAX_RESTART_BACKOFF,
                        || {
                            let worker = match crate::notify::Worker::new(Arc::clone(&site2)) {
                                Ok(w) => w,
                                Err(e) => {
                                    tracing::error!("notifications disabled: {e:#}");
                                    return;
                                }
                            };
                            let rt = match tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build()
                            {
                                Ok(rt) => rt,
                                Err(e) => {
                                    tracing::error!("notifications disabled: {e}");
                                    return;
                                }
                            };
                            if let Err(e) = rt.block_on(worker.run(st.clone())) {
                                tracing::error!("notification worker stopped: {e:#}");
                            }
                        },
                    );
                })
                .context("starting the notification thread")?,
        );
    }
    Ok(threads)
}
