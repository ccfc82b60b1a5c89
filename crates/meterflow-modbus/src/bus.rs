//! One scheduler per bus: owns the connection, runs clock-aligned polls,
//! parks dead meters, and turns answers into readings.

use meterflow_model::clock::now_ms;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meterflow_model::config::{Bus, Parity, Transport};
use meterflow_model::profile::{Profile, Space};
use meterflow_model::{Batch, Reading, TimeSource};
use tokio::sync::{mpsc, watch};
use tokio_modbus::client::{Context, Reader as _};
use tokio_modbus::slave::SlaveContext as _;
use tokio_modbus::{ExceptionCode, Slave};

use crate::decode::{FieldError, decode};
use crate::plan::{Read, plan, split};

/// What to poll on one meter.
#[derive(Debug, Clone)]
pub struct MeterPoll {
    /// Meter id.
    pub meter: String,
    /// Unit id.
    pub unit: u8,
    /// Register map.
    pub profile: Arc<Profile>,
    /// Period of the energy group, ms.
    pub poll_ms: i64,
    /// Period of the fast group, ms.
    pub fast_poll_ms: Option<i64>,
}

/// Counters of one bus (and per meter), for export and tests.
#[derive(Debug, Default)]
pub struct BusHealth {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Requests answered with registers.
    pub ok: AtomicU64,
    /// Requests that timed out.
    pub timeouts: AtomicU64,
    /// Modbus exception answers.
    pub exceptions: AtomicU64,
    /// Transport or protocol errors.
    pub transport_errors: AtomicU64,
    /// Connections dropped because they could carry a stale answer.
    pub reconnects: AtomicU64,
    /// Sum of request latencies, µs.
    pub latency_us: AtomicU64,
    /// Polls completed (one meter, one group).
    pub polls: AtomicU64,
    /// Per meter: last error text and consecutive failures.
    pub meters: Mutex<HashMap<String, MeterHealth>>,
}

/// Health of one meter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeterHealth {
    /// Polls attempted (not counting polls skipped while parked).
    pub polls: u64,
    /// Polls due by the meter's period(s) since start: taken, or skipped
    /// (`skipped_late` + `skipped_parked`); `polls / polls_due` is the share
    /// of due polls taken.
    pub polls_due: u64,
    /// Due polls whose time passed while the bus was busy with others (the
    /// scheduler runs late): not taken, the next aligned time is.
    pub skipped_late: u64,
    /// Due polls not taken because the meter was parked after failures.
    pub skipped_parked: u64,
    /// Polls that ended without an answer (timeout or transport error).
    pub timeouts: u64,
    /// Fields answered with a Modbus exception.
    pub exceptions: u64,
    /// Total time spent polling this meter, µs (latency = poll_us / polls).
    pub poll_us: u64,
    /// Polls that produced at least one value.
    pub good_polls: u64,
    /// Polls that produced nothing.
    pub failed_polls: u64,
    /// Consecutive failed polls (drives the back-off).
    pub consecutive_failures: u32,
    /// Field failures by `quantity: code` (exception, no_response, invalid_value).
    pub field_errors: HashMap<String, u64>,
    /// DL/T 645 / CJ/T 188: per data identifier (`00010000`, `901F`).
    pub items: BTreeMap<String, ItemHealth>,
}

/// What one data identifier of one meter got (DL/T 645, CJ/T 188).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemHealth {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Data replies decoded.
    pub answers: u64,
    /// Error replies, by the meter's error named (`no requested data (0x02)`).
    pub error_replies: BTreeMap<String, u64>,
    /// Replies refused for a bad checksum.
    pub bad_checksums: u64,
    /// Requests with no answer at all.
    pub timeouts: u64,
    /// The last failure, as text.
    pub last_error: Option<String>,
}

/// Frame gap of a serial line: 3.5 characters of 11 bits; 1.75 ms above 19 200 Bd.
pub fn inter_frame(bus: &Bus) -> Duration {
    if let Some(ms) = bus.inter_frame_ms {
        return Duration::from_secs_f64(ms.max(0.0) / 1000.0);
    }
    match bus.transport {
        Transport::Tcp => Duration::ZERO,
        _ if bus.baud > 19_200 => Duration::from_micros(1750),
        _ => Duration::from_secs_f64(3.5 * 11.0 / f64::from(bus.baud.max(1))),
    }
}

struct Job {
    meter: usize,
    fast: bool,
    due_ms: i64,
}

struct State {
    polls: Vec<MeterPoll>,
    energy_reads: Vec<Vec<Read>>,
    fast_reads: Vec<Vec<Read>>,
    parked_until: Vec<i64>,
}

/// Run a bus until `shutdown` turns true; readings go to `out` (bounded: a slow
/// store slows polling, nothing is dropped).
pub async fn run_bus(
    bus: Bus,
    polls: Vec<MeterPoll>,
    out: mpsc::Sender<Batch>,
    health: Arc<BusHealth>,
    shutdown: watch::Receiver<bool>,
) {
    // True Modbus TCP devices may take several requests at once: N schedulers,
    // each with its own connection and every N-th meter. Serial lines and
    // gateways always get exactly one.
    let n = if bus.transport == Transport::Tcp {
        bus.concurrency.clamp(1, polls.len().max(1))
    } else {
        1
    };
    if n > 1 {
        let mut parts: Vec<Vec<MeterPoll>> = vec![Vec::new(); n];
        for (i, p) in polls.into_iter().enumerate() {
            parts[i % n].push(p);
        }
        let mut set = tokio::task::JoinSet::new();
        for part in parts {
            set.spawn(run_scheduler(
                bus.clone(),
                part,
                out.clone(),
                Arc::clone(&health),
                shutdown.clone(),
            ));
        }
        while set.join_next().await.is_some() {}
        return;
    }
    run_scheduler(bus, polls, out, health, shutdown).await;
}

/// One scheduler: one connection, one request at a time.
async fn run_scheduler(
    bus: Bus,
    polls: Vec<MeterPoll>,
    out: mpsc::Sender<Batch>,
    health: Arc<BusHealth>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state = State {
        energy_reads: polls.iter().map(|p| reads_for(&bus, p, false)).collect(),
        fast_reads: polls.iter().map(|p| reads_for(&bus, p, true)).collect(),
        parked_until: vec![i64::MIN; polls.len()],
        polls,
    };
    let mut link = Link::new(&bus, Arc::clone(&health));
    let mut late_warned: HashMap<String, i64> = HashMap::new();
    let mut jobs: Vec<Job> = Vec::new();
    let now = now_ms();
    for (i, p) in state.polls.iter().enumerate() {
        jobs.push(Job {
            meter: i,
            fast: false,
            due_ms: aligned_next(now, p.poll_ms),
        });
        if let Some(f) = p.fast_poll_ms {
            jobs.push(Job {
                meter: i,
                fast: true,
                due_ms: aligned_next(now, f),
            });
        }
    }
    if jobs.is_empty() {
        return;
    }
    loop {
        let next = jobs.iter().map(|j| j.due_ms).min().unwrap_or(i64::MAX);
        let wait = Duration::from_millis((next - now_ms()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        let now = now_ms();
        let mut batch = Vec::new();
        // Due jobs in due order; a job's next time is aligned to its period.
        let mut due: Vec<usize> = (0..jobs.len()).filter(|&k| jobs[k].due_ms <= now).collect();
        due.sort_by_key(|&k| (jobs[k].due_ms, jobs[k].meter));
        for k in due {
            if *shutdown.borrow() {
                break;
            }
            let (m, fast) = (jobs[k].meter, jobs[k].fast);
            let period = if fast {
                state.polls[m]
                    .fast_poll_ms
                    .unwrap_or(state.polls[m].poll_ms)
            } else {
                state.polls[m].poll_ms
            };
            let served = jobs[k].due_ms;
            let next = aligned_next(now_ms(), period);
            jobs[k].due_ms = next;
            let parked = state.parked_until[m] > now;
            let due = Due {
                served,
                next,
                period,
                parked,
                now,
            };
            account_due(
                &health,
                &bus.id,
                &state.polls[m].meter,
                &due,
                &mut late_warned,
            );
            if parked {
                continue;
            }
            let reads = if fast {
                state.fast_reads[m].clone()
            } else {
                state.energy_reads[m].clone()
            };
            let started = Instant::now();
            let got = poll_meter(&mut link, &bus, &state.polls[m], &reads, &health).await;
            health.polls.fetch_add(1, Ordering::Relaxed);
            let mut meters = health.meters.lock().unwrap_or_else(|p| p.into_inner());
            let mh = meters.entry(state.polls[m].meter.clone()).or_default();
            mh.polls += 1;
            mh.poll_us += started.elapsed().as_micros() as u64;
            mh.timeouts += u64::from(got.errors.iter().any(|(_, e)| *e == FieldError::NoResponse));
            mh.exceptions += got
                .errors
                .iter()
                .filter(|(_, e)| matches!(e, FieldError::Exception(_)))
                .count() as u64;
            for (q, e) in &got.errors {
                *mh.field_errors
                    .entry(format!("{q}: {}", e.code()))
                    .or_default() += 1;
            }
            if got.readings.is_empty()
                && got.errors.iter().any(|(_, e)| *e == FieldError::NoResponse)
            {
                mh.failed_polls += 1;
                mh.consecutive_failures += 1;
                // Park: the next try waits 2^n poll periods (at most one hour).
                let backoff = period
                    .saturating_mul(1i64 << mh.consecutive_failures.min(6))
                    .min(3_600_000);
                state.parked_until[m] = now_ms() + backoff;
                tracing::warn!(bus = %bus.id, meter = %state.polls[m].meter, backoff_ms = backoff, "Meter not answering; parked.");
            } else {
                mh.good_polls += 1;
                mh.consecutive_failures = 0;
                state.parked_until[m] = i64::MIN;
            }
            drop(meters);
            batch.extend(got.readings);
        }
        if !batch.is_empty() && out.send(Batch::of(batch, "modbus")).await.is_err() {
            break;
        }
    }
}

fn reads_for(bus: &Bus, p: &MeterPoll, fast: bool) -> Vec<Read> {
    let group = if fast { "fast" } else { "energy" };
    let wanted: Vec<usize> = p
        .profile
        .field
        .iter()
        .enumerate()
        .filter(|(_, f)| f.group == group)
        .map(|(i, _)| i)
        .collect();
    plan(
        &p.profile.field,
        &wanted,
        bus.max_registers.clamp(1, 125),
        bus.max_gap,
    )
}

/// One due poll as the scheduler handles it.
pub(crate) struct Due {
    /// The aligned time being served now.
    pub(crate) served: i64,
    /// The next aligned time after now.
    pub(crate) next: i64,
    /// The poll period, ms.
    pub(crate) period: i64,
    /// The meter is parked: the poll is not taken.
    pub(crate) parked: bool,
    /// Now, ms.
    pub(crate) now: i64,
}

/// Count a due poll of `meter`, and the aligned times between the one
/// served and the next that passed while the bus was busy with others:
/// skipped late (said once an hour per meter), never silently; a parked
/// meter's poll is skipped as parked.
pub(crate) fn account_due(
    health: &BusHealth,
    bus: &str,
    meter: &str,
    d: &Due,
    warned: &mut HashMap<String, i64>,
) {
    let late = u64::try_from(((d.next - d.served) / d.period.max(1) - 1).max(0)).unwrap_or(0);
    {
        let mut meters = health.meters.lock().unwrap_or_else(|p| p.into_inner());
        let mh = meters.entry(meter.to_string()).or_default();
        mh.polls_due += 1 + late;
        mh.skipped_late += late;
        if d.parked {
            mh.skipped_parked += 1;
        }
    }
    if late > 0 && warned.get(meter).is_none_or(|t| d.now - *t >= 3_600_000) {
        warned.insert(meter.to_string(), d.now);
        tracing::warn!(
            bus = %bus,
            meter = %meter,
            skipped = late,
            behind_ms = d.now - d.served,
            "Poll(s) skipped: the bus was busy past their time (more meters or slower answers than the period allows); counted in meterflow_meter_polls_skipped_late_total."
        );
    }
}

/// Next multiple of `period_ms` strictly after `now_ms`.
pub fn aligned_next(now_ms: i64, period_ms: i64) -> i64 {
    let p = period_ms.max(1);
    (now_ms.div_euclid(p) + 1) * p
}

/// Result of polling one meter.
pub struct Polled {
    /// Readings of good (and sentinel → NaN) fields.
    pub readings: Vec<Reading>,
    /// Fields without a value.
    pub errors: Vec<(String, FieldError)>,
}

/// Poll the given reads of one meter; splits reads the device rejects.
pub async fn poll_meter(
    link: &mut Link,
    bus: &Bus,
    p: &MeterPoll,
    reads: &[Read],
    health: &BusHealth,
) -> Polled {
    let mut out = Polled {
        readings: Vec::new(),
        errors: Vec::new(),
    };
    let mut queue: Vec<Read> = reads.iter().rev().cloned().collect();
    let fields = &p.profile.field;
    while let Some(read) = queue.pop() {
        match link.read(bus, p.unit, &read).await {
            Answer::Words { words, at_ms } => {
                for &i in &read.fields {
                    let f = &fields[i];
                    let off = usize::from(f.address - read.start);
                    let Some(w) = words.get(off..off + usize::from(f.dtype.registers())) else {
                        out.errors
                            .push((f.quantity.clone(), FieldError::NoResponse));
                        continue;
                    };
                    let value = match decode(f, w) {
                        Ok(v) => v,
                        Err(e) => {
                            out.errors.push((f.quantity.clone(), e));
                            // Rejected, never zero: the normaliser records invalid_value.
                            f64::NAN
                        }
                    };
                    out.readings.push(Reading {
                        meter: p.meter.clone(),
                        quantity: f.quantity.clone(),
                        ts_ms: at_ms,
                        value,
                        recv_ms: now_ms(),
                        time_source: TimeSource::Poll,
                    });
                }
            }
            Answer::Exception(code) => {
                let c = u8::from(code);
                if matches!(c, 2 | 3)
                    && let Some((a, b)) = split(fields, &read)
                {
                    queue.push(b);
                    queue.push(a);
                    continue;
                }
                for &i in &read.fields {
                    out.errors
                        .push((fields[i].quantity.clone(), FieldError::Exception(c)));
                }
                let _ = health;
            }
            Answer::NoResponse => {
                // A silent device: the rest of its reads would time out too.
                for r in std::iter::once(&read).chain(queue.iter()) {
                    for &i in &r.fields {
                        out.errors
                            .push((fields[i].quantity.clone(), FieldError::NoResponse));
                    }
                }
                break;
            }
        }
    }
    out
}

/// An answer to one read.
pub enum Answer {
    /// Registers, with the response time.
    Words {
        /// Register values.
        words: Vec<u16>,
        /// Response time, ms.
        at_ms: i64,
    },
    /// A Modbus exception.
    Exception(ExceptionCode),
    /// Timeout or transport error (the connection was dropped).
    NoResponse,
}

/// The connection of a bus, re-opened after anything that could leave a late
/// answer in flight.
pub struct Link {
    ctx: Option<Context>,
    health: Arc<BusHealth>,
    gap: Duration,
    last_frame: Option<Instant>,
    poisoned: bool,
}

impl Link {
    /// A link for `bus` (connects lazily).
    pub fn new(bus: &Bus, health: Arc<BusHealth>) -> Link {
        Link {
            ctx: None,
            health,
            gap: inter_frame(bus),
            last_frame: None,
            poisoned: false,
        }
    }

    /// One read with the bus timeout and retries (retries only after transport
    /// errors, never after a timeout: a silent device costs one timeout).
    pub async fn read(&mut self, bus: &Bus, unit: u8, read: &Read) -> Answer {
        let mut attempt = 0;
        loop {
            match self.read_once(bus, unit, read).await {
                Ok(a) => return a,
                Err(timeout) => {
                    self.poison(bus).await;
                    attempt += 1;
                    if timeout || attempt > bus.retries {
                        return Answer::NoResponse;
                    }
                    // Back off before retrying a transport error: 100 ms, 200 ms, …
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt).min(10)))
                        .await;
                }
            }
        }
    }

    async fn read_once(&mut self, bus: &Bus, unit: u8, read: &Read) -> Result<Answer, bool> {
        if self.ctx.is_none() {
            // Opening includes the drain, which may last a whole timeout of silence.
            let limit = if bus.transport == Transport::Rtu {
                Duration::from_millis(bus.timeout_ms.saturating_mul(2).saturating_add(10_000))
            } else {
                Duration::from_millis(bus.timeout_ms)
            };
            match tokio::time::timeout(limit, open(bus, self.poisoned)).await {
                Ok(Ok(ctx)) => {
                    self.ctx = Some(ctx);
                    self.poisoned = false;
                }
                Ok(Err(e)) => {
                    tracing::warn!(bus = %bus.id, error = %e, "Cannot open the bus.");
                    self.health.transport_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(bus.timeout_ms.min(1000))).await;
                    return Err(true);
                }
                Err(_) => {
                    self.health.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(true);
                }
            }
        }
        if let Some(last) = self.last_frame {
            let since = last.elapsed();
            if since < self.gap {
                tokio::time::sleep(self.gap - since).await;
            }
        }
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(false);
        };
        ctx.set_slave(Slave(unit));
        self.health.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let call = async {
            match read.space {
                Space::Holding => ctx.read_holding_registers(read.start, read.count).await,
                Space::Input => ctx.read_input_registers(read.start, read.count).await,
            }
        };
        let result = tokio::time::timeout(Duration::from_millis(bus.timeout_ms), call).await;
        self.last_frame = Some(Instant::now());
        self.health
            .latency_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match result {
            Ok(Ok(Ok(words))) if words.len() == usize::from(read.count) => {
                self.health.ok.fetch_add(1, Ordering::Relaxed);
                Ok(Answer::Words {
                    words,
                    at_ms: now_ms(),
                })
            }
            Ok(Ok(Ok(words))) => {
                tracing::warn!(bus = %bus.id, unit, expected = read.count, got = words.len(), "Short answer; dropping the connection.");
                self.health.transport_errors.fetch_add(1, Ordering::Relaxed);
                Err(false)
            }
            Ok(Ok(Err(code))) => {
                self.health.exceptions.fetch_add(1, Ordering::Relaxed);
                Ok(Answer::Exception(code))
            }
            Ok(Err(e)) => {
                tracing::debug!(bus = %bus.id, unit, error = %e, "Modbus transport error.");
                self.health.transport_errors.fetch_add(1, Ordering::Relaxed);
                Err(false)
            }
            Err(_) => {
                self.health.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(true)
            }
        }
    }

    /// Drop the connection: a late answer must never meet the next request.
    /// A serial line is re-opened and drained for a whole timeout of silence
    /// first (see `open`), so an answer up to twice the timeout late is discarded.
    async fn poison(&mut self, _bus: &Bus) {
        if self.ctx.take().is_some() {
            self.health.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.poisoned = true;
    }
}

async fn open(bus: &Bus, poisoned: bool) -> std::io::Result<Context> {
    use tokio_modbus::client::{rtu, tcp};
    match bus.transport {
        Transport::Tcp => {
            let addr = resolve(bus).await?;
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(tcp::attach(stream))
        }
        Transport::RtuOverTcp => {
            let addr = resolve(bus).await?;
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(rtu::attach(stream))
        }
        Transport::Rtu => {
            let mut port = open_serial(bus)?;
            // Discard whatever is on the line: 50 ms of silence normally, a
            // whole timeout after a poisoned request (a late answer may follow).
            let quiet = if poisoned {
                Duration::from_millis(bus.timeout_ms.max(50))
            } else {
                Duration::from_millis(50)
            };
            drain(&mut port, quiet).await;
            Ok(rtu::attach(port))
        }
    }
}

async fn resolve(bus: &Bus) -> std::io::Result<std::net::SocketAddr> {
    let a = bus.address.as_deref().unwrap_or_default();
    tokio::net::lookup_host(a).await?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("cannot resolve {a}"))
    })
}

pub(crate) fn open_serial(bus: &Bus) -> std::io::Result<tokio_serial::SerialStream> {
    use tokio_serial::SerialPortBuilderExt as _;
    let path = bus.device.as_deref().unwrap_or_default();
    let parity = match bus.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stop = if bus.stop_bits == 2 {
        tokio_serial::StopBits::Two
    } else {
        tokio_serial::StopBits::One
    };
    tokio_serial::new(path, bus.baud)
        .parity(parity)
        .stop_bits(stop)
        .data_bits(tokio_serial::DataBits::Eight)
        .open_native_async()
        .map_err(std::io::Error::other)
}

/// Read and discard until the line has been quiet for `quiet` (at most 10 s).
async fn drain(port: &mut tokio_serial::SerialStream, quiet: Duration) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(quiet, port.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::debug!(
                    bytes = n,
                    "Discarded bytes on a serial line before the next request."
                );
                continue;
            }
            _ => break,
        }
    }
}
