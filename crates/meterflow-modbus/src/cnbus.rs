//! DL/T 645-2007 and CJ/T 188 meters on a serial line (`rtu`) or a
//! serial-to-TCP gateway (`rtu_over_tcp`), under the same rules as Modbus:
//! one owner task per bus, one request in flight, clock-aligned polls, dead
//! meters parked with back-off, and the connection dropped (serial: drained)
//! after a timeout so a late answer never meets the next request. Replies are
//! taken only from the address (and type and identifier) asked; frames with
//! bad checksums, garbage and other meters' replies are counted and skipped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use meterflow_cnproto::frame::{self, Kind};
use meterflow_cnproto::{bcd, cjt188, dlt645};
use meterflow_model::config::{Bus, Transport};
use meterflow_model::{Batch, Reading, Site, TimeSource};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};

use crate::bus::{BusHealth, Due, account_due, aligned_next, inter_frame};
use crate::decode::FieldError;
use meterflow_model::clock::now_ms;

/// What to read from one meter.
#[derive(Debug, Clone)]
pub enum CnMeter {
    /// DL/T 645-2007: address (LSB first) and (identifier, quantity, format) items.
    Dlt645 {
        /// Address, least significant byte first.
        address: [u8; 6],
        /// Items.
        items: Vec<(dlt645::Di, String, dlt645::Format)>,
    },
    /// CJ/T 188: type, address (wire order), DI (wire order), the counter
    /// quantity and the meter's unit.
    Cjt188 {
        /// Meter type byte.
        meter_type: u8,
        /// Address.
        address: [u8; 7],
        /// The model's frame layout (DI order, status bits, error reply).
        layout: cjt188::Layout,
        /// Counter quantity (volume, heat_energy).
        quantity: String,
        /// The meter's configured unit.
        unit: String,
    },
}

/// One meter of a DL/T 645 / CJ/T 188 bus.
#[derive(Debug, Clone)]
pub struct CnPoll {
    /// Meter id.
    pub meter: String,
    /// Protocol and what to read.
    pub kind: CnMeter,
    /// Poll period, ms.
    pub poll_ms: i64,
}

/// The DL/T 645 and CJ/T 188 meters of a bus.
pub fn cn_polls(site: &Site, bus: &str) -> Vec<CnPoll> {
    let mut out = Vec::new();
    for m in &site.meters {
        if let Some(d) = m.dlt645.as_ref().filter(|d| d.bus == bus) {
            let Some(address) =
                bcd::address_lsb_first(&d.address, 6).and_then(|a| <[u8; 6]>::try_from(a).ok())
            else {
                continue;
            };
            let items = d
                .items
                .iter()
                .filter_map(|di| {
                    let n = u32::from_str_radix(di, 16).ok()?;
                    if let Some(it) = site
                        .dlt645_items
                        .iter()
                        .find(|i| i.di.eq_ignore_ascii_case(di))
                    {
                        let f = dlt645::Format {
                            bytes: it.bytes,
                            decimals: it.decimals,
                            signed: it.signed,
                        };
                        return Some((n, it.quantity.clone(), f));
                    }
                    dlt645::item_of(n).map(|i| (n, i.quantity.to_string(), i.format))
                })
                .collect();
            out.push(CnPoll {
                meter: m.id.clone(),
                kind: CnMeter::Dlt645 { address, items },
                poll_ms: i64::from(d.poll_s) * 1000,
            });
        } else if let Some(c) = m.cjt188.as_ref().filter(|c| c.bus == bus) {
            let Some(address) = cjt188::address(&c.address) else {
                continue;
            };
            let layout = site.cjt188_layout(c);
            out.push(CnPoll {
                meter: m.id.clone(),
                kind: CnMeter::Cjt188 {
                    meter_type: c.meter_type.byte(),
                    address,
                    layout,
                    quantity: m.counter_quantity().to_string(),
                    unit: m.unit.clone(),
                },
                poll_ms: i64::from(c.poll_s) * 1000,
            });
        }
    }
    out
}

/// `value` in unit `from` (as a CJ/T 188 reply states it) in unit `to` (the meter's).
pub fn convert(value: f64, from: &str, to: &str) -> Option<f64> {
    let base = |u: &str| -> Option<(u8, f64)> {
        Some(match u {
            "m3" => (0, 1.0),
            "L" => (0, 0.001),
            "GJ" => (1, 1.0),
            "MJ" => (1, 0.001),
            "kWh" => (1, 0.0036),
            "MWh" => (1, 3.6),
            _ => return None,
        })
    };
    let ((a, fa), (b, fb)) = (base(from)?, base(to)?);
    (a == b).then(|| value * fa / fb)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What came back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// An accepted frame.
    Frame(Vec<u8>),
    /// Only frames with a bad checksum (or end byte): the meter answered, garbled.
    BadChecksum,
    /// Bytes, but no frame (and none with a bad checksum): noise, or other meters.
    Garbled,
    /// Nothing within the timeout.
    Silent,
    /// The bus could not be opened, or the connection failed.
    Failed,
}

/// Everything heard after a broadcast.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    /// Valid frames, in order.
    pub frames: Vec<Vec<u8>>,
    /// Frame candidates refused for their checksum or end byte.
    pub bad: u64,
    /// Bytes received.
    pub bytes: usize,
    /// The bus could not be opened or failed.
    pub failed: bool,
}

/// The byte stream of a bus, re-opened after a timeout.
pub struct RawLink {
    io: Option<Box<dyn Io>>,
    poisoned: bool,
    gap: Duration,
    last_frame: Option<Instant>,
    health: Arc<BusHealth>,
}

impl RawLink {
    /// A link for `bus` (opens lazily).
    pub fn new(bus: &Bus, health: Arc<BusHealth>) -> RawLink {
        RawLink {
            io: None,
            poisoned: false,
            gap: inter_frame(bus),
            last_frame: None,
            health,
        }
    }

    async fn open(&mut self, bus: &Bus) -> std::io::Result<()> {
        let mut io: Box<dyn Io> = match bus.transport {
            Transport::Rtu => Box::new(crate::bus::open_serial(bus)?),
            _ => {
                let a = bus.address.as_deref().unwrap_or_default();
                let s = tokio::net::TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        };
        // Discard whatever is on the line: a late answer may follow a timeout.
        let quiet = Duration::from_millis(if self.poisoned {
            bus.timeout_ms.max(50)
        } else {
            50
        });
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match tokio::time::timeout(quiet, io.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => continue,
                _ => break,
            }
        }
        self.io = Some(io);
        self.poisoned = false;
        Ok(())
    }

    /// Send `request` and wait, within the bus timeout, for the first frame
    /// of `kind` that `accept`s. A frame refused for its checksum ends the
    /// wait once the line is quiet: the meter answered, garbled.
    pub async fn exchange(
        &mut self,
        bus: &Bus,
        request: &[u8],
        kind: Kind,
        accept: &(dyn Fn(&[u8]) -> bool + Sync),
    ) -> Heard {
        let quiet = self.gap.max(Duration::from_millis(100));
        let health = Arc::clone(&self.health);
        let Some(io) = self.ready(bus).await else {
            return Heard::Failed;
        };
        health.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(bus.timeout_ms);
        let mut bad = 0u64;
        let mut foreign = 0u64;
        let mut heard_bytes = false;
        let result = async {
            io.write_all(request).await?;
            io.flush().await?;
            let mut buf: Vec<u8> = Vec::with_capacity(64);
            let mut chunk = [0u8; 256];
            loop {
                while let Some(f) = frame::take(&mut buf, kind, &mut bad) {
                    if accept(&f) {
                        return Ok::<_, std::io::Error>(Some(f));
                    }
                    foreign += 1;
                }
                // After a refused frame, a short quiet spell is the end of the answer.
                let until = if bad > 0 {
                    deadline.min(tokio::time::Instant::now() + quiet)
                } else {
                    deadline
                };
                match tokio::time::timeout_at(until, io.read(&mut chunk)).await {
                    Ok(Ok(0)) => return Err(std::io::Error::other("connection closed")),
                    Ok(Ok(n)) => {
                        heard_bytes = true;
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Ok(None),
                }
            }
        }
        .await;
        self.last_frame = Some(Instant::now());
        self.health
            .latency_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.health
            .transport_errors
            .fetch_add(bad + foreign, Ordering::Relaxed);
        match result {
            Ok(Some(f)) => Heard::Frame(f),
            Ok(None) if bad > 0 => Heard::BadChecksum,
            Ok(None) => {
                self.health.timeouts.fetch_add(1, Ordering::Relaxed);
                self.poison();
                if heard_bytes {
                    Heard::Garbled
                } else {
                    Heard::Silent
                }
            }
            Err(e) => {
                tracing::debug!(bus = %bus.id, error = %e, "Transport error.");
                self.health.transport_errors.fetch_add(1, Ordering::Relaxed);
                self.poison();
                Heard::Failed
            }
        }
    }

    /// Send `request` and collect every frame of `kind` heard within the bus
    /// timeout (a broadcast, which several meters may answer at once).
    pub async fn gather(&mut self, bus: &Bus, request: &[u8], kind: Kind) -> Gathered {
        let mut g = Gathered::default();
        let health = Arc::clone(&self.health);
        let Some(io) = self.ready(bus).await else {
            g.failed = true;
            return g;
        };
        health.requests.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(bus.timeout_ms);
        let r = async {
            io.write_all(request).await?;
            io.flush().await?;
            let mut buf: Vec<u8> = Vec::new();
            let mut chunk = [0u8; 256];
            loop {
                match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
                    Ok(Ok(0)) => return Err(std::io::Error::other("connection closed")),
                    Ok(Ok(n)) => {
                        g.bytes += n;
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(f) = frame::take(&mut buf, kind, &mut g.bad) {
                            g.frames.push(f);
                        }
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Ok(()),
                }
            }
        }
        .await;
        self.last_frame = Some(Instant::now());
        if r.is_err() {
            g.failed = true;
        }
        // Whatever is still in flight must not meet the next request.
        self.poison();
        g
    }

    /// The open link, opening it if needed (`None`: the bus cannot be opened).
    async fn ready(&mut self, bus: &Bus) -> Option<&mut Box<dyn Io>> {
        if self.io.is_none()
            && let Err(e) = self.open(bus).await
        {
            tracing::warn!(bus = %bus.id, error = %e, "Cannot open the bus.");
            self.health.transport_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(bus.timeout_ms.min(1000))).await;
            return None;
        }
        if let Some(last) = self.last_frame {
            let since = last.elapsed();
            if since < self.gap {
                tokio::time::sleep(self.gap - since).await;
            }
        }
        self.io.as_mut()
    }

    fn poison(&mut self) {
        if self.io.take().is_some() {
            self.health.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.poisoned = true;
    }
}

/// How one identifier of one poll ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A value (or a value that is not one: NaN is stored and flagged).
    Answered,
    /// The meter answered with an error reply, named.
    ErrorReply {
        /// The error as the protocol names it.
        named: String,
        /// The meter does not have the identifier (DL/T 645 "no requested data").
        unsupported: bool,
    },
    /// Every try came back with a bad checksum.
    BadChecksum,
    /// No answer.
    Timeout,
    /// Bytes but no frame from this meter, or a frame that makes no sense.
    Garbled(String),
}

/// One identifier's result within a poll: the identifier as written
/// (`00010000`, `901F`), the tries, the bad checksums among them, the end.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    /// Identifier.
    pub id: String,
    /// Requests sent.
    pub tries: u64,
    /// Of which came back with a bad checksum.
    pub bad_checksums: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// What one poll of one meter gave.
#[derive(Debug, Default)]
pub struct Polled {
    /// Readings.
    pub readings: Vec<Reading>,
    /// Per quantity, why it has no value.
    pub errors: Vec<(String, FieldError)>,
    /// Per identifier.
    pub items: Vec<ItemResult>,
}

/// One request with the bus's retries: a garbled or bad-checksum answer (the
/// meter is there) and a transport failure are retried, silence is not (a
/// silent meter costs one timeout, as on Modbus).
async fn ask(
    link: &mut RawLink,
    bus: &Bus,
    request: &[u8],
    kind: Kind,
    accept: &(dyn Fn(&[u8]) -> bool + Sync),
    id: String,
) -> (Option<Vec<u8>>, ItemResult) {
    let mut r = ItemResult {
        id,
        tries: 0,
        bad_checksums: 0,
        outcome: Outcome::Timeout,
    };
    loop {
        r.tries += 1;
        let heard = link.exchange(bus, request, kind, accept).await;
        let again = r.tries <= u64::from(bus.retries);
        match heard {
            Heard::Frame(f) => {
                r.outcome = Outcome::Answered;
                return (Some(f), r);
            }
            Heard::BadChecksum => {
                r.bad_checksums += 1;
                r.outcome = Outcome::BadChecksum;
            }
            Heard::Garbled => {
                r.outcome =
                    Outcome::Garbled("bytes on the line, but no reply from this meter".into());
            }
            Heard::Failed => r.outcome = Outcome::Timeout,
            Heard::Silent => {
                r.outcome = Outcome::Timeout;
                return (None, r);
            }
        }
        if !again {
            return (None, r);
        }
    }
}

/// Poll one meter: its readings, the errors of its quantities, and how
/// each identifier fared. A meter that does not answer at all is not asked
/// for its other identifiers; one that answers garbled is.
pub async fn poll(link: &mut RawLink, bus: &Bus, p: &CnPoll) -> Polled {
    let mut out = Polled::default();
    let reading = |quantity: &str, value: f64| Reading {
        meter: p.meter.clone(),
        quantity: quantity.to_string(),
        ts_ms: now_ms(),
        value,
        recv_ms: now_ms(),
        time_source: TimeSource::Poll,
    };
    match &p.kind {
        CnMeter::Dlt645 { address, items } => {
            for (k, (di, quantity, format)) in items.iter().enumerate() {
                let req = dlt645::read_request(address, *di, true);
                let accept = |f: &[u8]| dlt645::parse(f).is_ok_and(|fr| &fr.address == address);
                let (frame, mut item) =
                    ask(link, bus, &req, Kind::Dlt645, &accept, format!("{di:08X}")).await;
                let Some(f) = frame else {
                    let silent = item.outcome == Outcome::Timeout;
                    let e = match item.outcome {
                        Outcome::BadChecksum => FieldError::BadChecksum,
                        _ => FieldError::NoResponse,
                    };
                    out.items.push(item);
                    if silent {
                        // A silent meter: its other items would time out too.
                        for (_, q, _) in &items[k..] {
                            out.errors.push((q.clone(), FieldError::NoResponse));
                        }
                        break;
                    }
                    out.errors.push((quantity.clone(), e));
                    continue;
                };
                match dlt645::parse(&f)
                    .and_then(|fr| dlt645::data_reply(&fr, address, *di))
                    .and_then(|d| dlt645::value(&d, *format))
                {
                    Ok(v) => {
                        link.health.ok.fetch_add(1, Ordering::Relaxed);
                        out.readings.push(reading(quantity, v));
                    }
                    Err(dlt645::ReplyError::Meter(code)) => {
                        link.health.exceptions.fetch_add(1, Ordering::Relaxed);
                        item.outcome = Outcome::ErrorReply {
                            named: code.to_string(),
                            unsupported: code.0 & 0x02 != 0,
                        };
                        out.errors
                            .push((quantity.clone(), FieldError::Exception(code.0)));
                    }
                    Err(e) => {
                        item.outcome = Outcome::Garbled(e.to_string());
                        out.errors.push((quantity.clone(), FieldError::Sentinel(0)));
                        out.readings.push(reading(quantity, f64::NAN));
                    }
                }
                out.items.push(item);
            }
        }
        CnMeter::Cjt188 {
            meter_type,
            address,
            layout,
            quantity,
            unit,
        } => {
            let req = cjt188::read_request(*meter_type, address, layout.di, 0, true);
            let accept = |f: &[u8]| {
                cjt188::parse(f)
                    .is_ok_and(|fr| &fr.address == address && fr.meter_type == *meter_type)
            };
            let id = format!("{:02X}{:02X}", layout.di[0], layout.di[1]);
            let (frame, mut item) = ask(link, bus, &req, Kind::Cjt188, &accept, id).await;
            match frame {
                None => {
                    let e = match item.outcome {
                        Outcome::BadChecksum => FieldError::BadChecksum,
                        _ => FieldError::NoResponse,
                    };
                    out.errors.push((quantity.clone(), e));
                }
                Some(f) => match cjt188::parse(&f)
                    .and_then(|fr| cjt188::data_reply(&fr, *meter_type, address, *layout))
                {
                    Ok(r) => {
                        link.health.ok.fetch_add(1, Ordering::Relaxed);
                        match convert(r.cumulative, r.unit, unit) {
                            Some(v) => out.readings.push(reading(quantity, v)),
                            None => {
                                item.outcome = Outcome::Garbled(format!(
                                    "reply in {}, the meter is configured in {unit}",
                                    r.unit
                                ));
                                out.errors.push((quantity.clone(), FieldError::Sentinel(0)));
                                out.readings.push(reading(quantity, f64::NAN));
                            }
                        }
                        out.readings.push(reading(
                            "battery_low",
                            f64::from(u8::from(r.status.battery_low)),
                        ));
                        let valve = match r.status.valve {
                            cjt188::Valve::Open => 0.0,
                            cjt188::Valve::Closed => 1.0,
                            cjt188::Valve::Fault => 2.0,
                        };
                        out.readings.push(reading("valve", valve));
                    }
                    Err(cjt188::ReplyError::Meter(st)) => {
                        link.health.exceptions.fetch_add(1, Ordering::Relaxed);
                        item.outcome = Outcome::ErrorReply {
                            named: format!(
                                "error reply, status {}",
                                cjt188::status_of(st, layout.status)
                            ),
                            unsupported: false,
                        };
                        out.errors
                            .push((quantity.clone(), FieldError::Exception((st & 0xFF) as u8)));
                    }
                    Err(e) => {
                        item.outcome = Outcome::Garbled(e.to_string());
                        out.errors.push((quantity.clone(), FieldError::Sentinel(0)));
                        out.readings.push(reading(quantity, f64::NAN));
                    }
                },
            }
            out.items.push(item);
        }
    }
    out
}

/// At most one WARN per meter and reason per hour; an identifier a meter
/// refuses is reported once.
#[derive(Default)]
struct Warnings {
    last: HashMap<(String, String), Instant>,
    refused: HashSet<(String, String)>,
}

impl Warnings {
    fn due(&mut self, meter: &str, reason: &str) -> bool {
        let key = (meter.to_string(), reason.to_string());
        match self.last.get(&key) {
            Some(t) if t.elapsed() < Duration::from_secs(3600) => false,
            _ => {
                self.last.insert(key, Instant::now());
                true
            }
        }
    }

    fn report(&mut self, bus: &Bus, p: &CnPoll, item: &ItemResult) {
        let m = p.meter.as_str();
        if item.bad_checksums > 0 && self.due(m, "bad checksum") {
            let after = if item.outcome == Outcome::Answered {
                "; a retry got through"
            } else {
                ""
            };
            tracing::warn!(bus = %bus.id, meter = m, item = %item.id,
                "Meter {m} answers, but with a bad checksum ({} of {} tries{after}): check the line's baud rate and parity, wiring, termination and interference. (Counted in /metrics, logged at most hourly.)",
                item.bad_checksums, item.tries);
        }
        match &item.outcome {
            Outcome::Answered | Outcome::BadChecksum => {}
            Outcome::ErrorReply { named, unsupported } => {
                if *unsupported {
                    if self.refused.insert((m.to_string(), item.id.clone())) {
                        tracing::warn!(bus = %bus.id, meter = m, item = %item.id,
                            "Meter {m} does not supply identifier {}: it answers \"{named}\". \
                             Remove it from the meter's dlt645.items, or check the identifiers the meter's model supports (`meterflow probe --dlt645` lists them).",
                            item.id);
                    }
                } else if self.due(m, &format!("error {}", item.id)) {
                    let hint = match &p.kind {
                        CnMeter::Cjt188 { .. } => {
                            " If every read gets this, the meter may want the other DI order or another layout: `meterflow probe --cjt188 ADDRESS` tries both."
                        }
                        CnMeter::Dlt645 { .. } => "",
                    };
                    tracing::warn!(bus = %bus.id, meter = m, item = %item.id,
                        "Meter {m} answers {} with an error: {named}.{hint} (Repeats are counted in /metrics, logged at most hourly.)",
                        item.id);
                }
            }
            Outcome::Timeout => {
                if self.due(m, "timeout") {
                    tracing::warn!(bus = %bus.id, meter = m, item = %item.id,
                        "Meter {m} is not answering: check its address, power and wiring. (Counted in /metrics, logged at most hourly.)");
                }
            }
            Outcome::Garbled(why) => {
                if self.due(m, "garbled") {
                    tracing::warn!(bus = %bus.id, meter = m, item = %item.id,
                        "Meter {m}, identifier {}: {why}. (Counted in /metrics, logged at most hourly.)",
                        item.id);
                }
            }
        }
    }
}

/// Add one poll's identifiers to the meter's counters.
fn count_items(mh: &mut crate::bus::MeterHealth, items: &[ItemResult]) {
    for it in items {
        let h = mh.items.entry(it.id.clone()).or_default();
        h.requests += it.tries;
        h.bad_checksums += it.bad_checksums;
        match &it.outcome {
            Outcome::Answered => h.answers += 1,
            Outcome::ErrorReply { named, .. } => {
                *h.error_replies.entry(named.clone()).or_default() += 1;
                h.last_error = Some(named.clone());
            }
            Outcome::BadChecksum => h.last_error = Some("bad checksum".into()),
            Outcome::Timeout => {
                h.timeouts += 1;
                h.last_error = Some("no answer".into());
            }
            Outcome::Garbled(why) => h.last_error = Some(why.clone()),
        }
    }
}

/// Run a DL/T 645 / CJ/T 188 bus until `shutdown` turns true.
pub async fn run_cn_bus(
    bus: Bus,
    polls: Vec<CnPoll>,
    out: mpsc::Sender<Batch>,
    health: Arc<BusHealth>,
    mut shutdown: watch::Receiver<bool>,
) {
    if polls.is_empty() {
        return;
    }
    let mut link = RawLink::new(&bus, Arc::clone(&health));
    let mut warnings = Warnings::default();
    let now = now_ms();
    let mut due: Vec<i64> = polls.iter().map(|p| aligned_next(now, p.poll_ms)).collect();
    let mut parked_until = vec![i64::MIN; polls.len()];
    let mut late_warned: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    loop {
        let next = due.iter().copied().min().unwrap_or(i64::MAX);
        let wait = Duration::from_millis((next - now_ms()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        let now = now_ms();
        let mut order: Vec<usize> = (0..polls.len()).filter(|&i| due[i] <= now).collect();
        order.sort_by_key(|&i| (due[i], i));
        let mut batch = Vec::new();
        for i in order {
            if *shutdown.borrow() {
                break;
            }
            let p = &polls[i];
            let served = due[i];
            due[i] = aligned_next(now_ms(), p.poll_ms);
            let parked = parked_until[i] > now;
            let d = Due {
                served,
                next: due[i],
                period: p.poll_ms,
                parked,
                now,
            };
            account_due(&health, &bus.id, &p.meter, &d, &mut late_warned);
            if parked {
                continue;
            }
            let started = Instant::now();
            let got = poll(&mut link, &bus, p).await;
            for it in &got.items {
                warnings.report(&bus, p, it);
            }
            health.polls.fetch_add(1, Ordering::Relaxed);
            let mut meters = health.meters.lock().unwrap_or_else(|e| e.into_inner());
            let mh = meters.entry(p.meter.clone()).or_default();
            mh.polls += 1;
            mh.poll_us += started.elapsed().as_micros() as u64;
            count_items(mh, &got.items);
            let silent = got.errors.iter().any(|(_, e)| *e == FieldError::NoResponse);
            let garbled = got
                .errors
                .iter()
                .any(|(_, e)| *e == FieldError::BadChecksum);
            mh.timeouts += u64::from(silent);
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
            // Parked only when nothing came through after the retries.
            if got.readings.is_empty() && (silent || garbled) {
                mh.failed_polls += 1;
                mh.consecutive_failures += 1;
                let backoff = p
                    .poll_ms
                    .saturating_mul(1i64 << mh.consecutive_failures.min(6))
                    .min(3_600_000);
                parked_until[i] = now_ms() + backoff;
                tracing::debug!(bus = %bus.id, meter = %p.meter, backoff_ms = backoff, "Meter parked.");
            } else {
                mh.good_polls += 1;
                mh.consecutive_failures = 0;
                parked_until[i] = i64::MIN;
            }
            drop(meters);
            batch.extend(got.readings);
        }
        if !batch.is_empty() && out.send(Batch::of(batch, "serial-meter")).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_within_their_dimension_only() {
        assert_eq!(convert(1.5, "m3", "L"), Some(1500.0));
        assert_eq!(convert(1.0, "kWh", "GJ"), Some(0.0036));
        assert_eq!(convert(1.0, "m3", "GJ"), None);
    }
}
