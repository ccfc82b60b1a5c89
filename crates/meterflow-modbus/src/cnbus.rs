//! DL/T 645-2007 and CJ/T 188 meters on a serial line (`rtu`) or a
//! serial-to-TCP gateway (`rtu_over_tcp`), under the same rules as Modbus:
//! one owner task per bus, one request in flight, clock-aligned polls, dead
//! meters parked with back-off, and the connection dropped (serial: drained)
//! after a timeout so a late answer never meets the next request. Replies are
//! taken only from the address (and type and identifier) asked; frames with
//! bad checksums, garbage and other meters' replies are counted and skipped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use meterflow_cnproto::frame::{self, Kind};
use meterflow_cnproto::{bcd, cjt188, dlt645};
use meterflow_model::config::{Bus, Transport};
use meterflow_model::{Batch, Reading, Site, TimeSource};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};

use crate::bus::{BusHealth, aligned_next, inter_frame};
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
        /// DI in wire order.
        di: [u8; 2],
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
            let di = if c.di.eq_ignore_ascii_case("1F90") {
                [0x1F, 0x90]
            } else {
                cjt188::DI_CURRENT
            };
            out.push(CnPoll {
                meter: m.id.clone(),
                kind: CnMeter::Cjt188 {
                    meter_type: c.meter_type.byte(),
                    address,
                    di,
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

    /// Send `request` and return the first frame of `kind` that `accept`s,
    /// within the bus timeout; `None` on timeout or transport error.
    pub async fn exchange(
        &mut self,
        bus: &Bus,
        request: &[u8],
        kind: Kind,
        accept: &(dyn Fn(&[u8]) -> bool + Sync),
    ) -> Option<Vec<u8>> {
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
        let io = self.io.as_mut()?;
        self.health.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(bus.timeout_ms);
        let result = async {
            io.write_all(request).await?;
            io.flush().await?;
            let mut buf: Vec<u8> = Vec::with_capacity(64);
            let mut chunk = [0u8; 256];
            let mut refused = 0u64;
            loop {
                while let Some(f) = frame::take(&mut buf, kind, &mut refused) {
                    if accept(&f) {
                        return Ok::<_, std::io::Error>((Some(f), refused));
                    }
                    refused += 1;
                }
                let n = tokio::time::timeout_at(deadline, io.read(&mut chunk)).await;
                match n {
                    Ok(Ok(0)) => return Err(std::io::Error::other("connection closed")),
                    Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Ok((None, refused)),
                }
            }
        }
        .await;
        self.last_frame = Some(Instant::now());
        self.health
            .latency_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match result {
            Ok((Some(f), refused)) => {
                self.health
                    .transport_errors
                    .fetch_add(refused, Ordering::Relaxed);
                self.health.ok.fetch_add(1, Ordering::Relaxed);
                Some(f)
            }
            Ok((None, refused)) => {
                self.health
                    .transport_errors
                    .fetch_add(refused, Ordering::Relaxed);
                self.health.timeouts.fetch_add(1, Ordering::Relaxed);
                self.poison();
                None
            }
            Err(e) => {
                tracing::debug!(bus = %bus.id, error = %e, "Transport error.");
                self.health.transport_errors.fetch_add(1, Ordering::Relaxed);
                self.poison();
                None
            }
        }
    }

    fn poison(&mut self) {
        if self.io.take().is_some() {
            self.health.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.poisoned = true;
    }
}

/// Poll one meter: its readings and the errors of its items.
pub async fn poll(
    link: &mut RawLink,
    bus: &Bus,
    p: &CnPoll,
) -> (Vec<Reading>, Vec<(String, FieldError)>) {
    let mut readings = Vec::new();
    let mut errors = Vec::new();
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
                let Some(f) = link.exchange(bus, &req, Kind::Dlt645, &accept).await else {
                    // A silent meter: its other items would time out too.
                    for (_, q, _) in &items[k..] {
                        errors.push((q.clone(), FieldError::NoResponse));
                    }
                    break;
                };
                match dlt645::parse(&f)
                    .and_then(|fr| dlt645::data_reply(&fr, address, *di))
                    .and_then(|d| dlt645::value(&d, *format))
                {
                    Ok(v) => readings.push(reading(quantity, v)),
                    Err(dlt645::ReplyError::Meter(code)) => {
                        tracing::debug!(bus = %bus.id, meter = %p.meter, "DL/T 645 {di:08X}: {code}");
                        link.health.exceptions.fetch_add(1, Ordering::Relaxed);
                        errors.push((quantity.clone(), FieldError::Exception(code.0)));
                    }
                    Err(e) => {
                        tracing::debug!(bus = %bus.id, meter = %p.meter, "DL/T 645 {di:08X}: {e}");
                        errors.push((quantity.clone(), FieldError::Sentinel(0)));
                        readings.push(reading(quantity, f64::NAN));
                    }
                }
            }
        }
        CnMeter::Cjt188 {
            meter_type,
            address,
            di,
            quantity,
            unit,
        } => {
            let req = cjt188::read_request(*meter_type, address, *di, 0, true);
            let accept = |f: &[u8]| {
                cjt188::parse(f)
                    .is_ok_and(|fr| &fr.address == address && fr.meter_type == *meter_type)
            };
            match link.exchange(bus, &req, Kind::Cjt188, &accept).await {
                None => errors.push((quantity.clone(), FieldError::NoResponse)),
                Some(f) => match cjt188::parse(&f)
                    .and_then(|fr| cjt188::data_reply(&fr, *meter_type, address, *di))
                {
                    Ok(r) => {
                        match convert(r.cumulative, r.unit, unit) {
                            Some(v) => readings.push(reading(quantity, v)),
                            None => {
                                tracing::warn!(bus = %bus.id, meter = %p.meter, "CJ/T 188 reply in {}, the meter is configured in {unit}", r.unit);
                                errors.push((quantity.clone(), FieldError::Sentinel(0)));
                                readings.push(reading(quantity, f64::NAN));
                            }
                        }
                        readings.push(reading(
                            "battery_low",
                            f64::from(u8::from(r.status.battery_low)),
                        ));
                        let valve = match r.status.valve {
                            cjt188::Valve::Open => 0.0,
                            cjt188::Valve::Closed => 1.0,
                            cjt188::Valve::Fault => 2.0,
                        };
                        readings.push(reading("valve", valve));
                    }
                    Err(cjt188::ReplyError::Meter(st)) => {
                        link.health.exceptions.fetch_add(1, Ordering::Relaxed);
                        errors.push((quantity.clone(), FieldError::Exception((st & 0xFF) as u8)));
                    }
                    Err(e) => {
                        tracing::debug!(bus = %bus.id, meter = %p.meter, "CJ/T 188: {e}");
                        errors.push((quantity.clone(), FieldError::Sentinel(0)));
                        readings.push(reading(quantity, f64::NAN));
                    }
                },
            }
        }
    }
    (readings, errors)
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
    let now = now_ms();
    let mut due: Vec<i64> = polls.iter().map(|p| aligned_next(now, p.poll_ms)).collect();
    let mut parked_until = vec![i64::MIN; polls.len()];
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
            due[i] = aligned_next(now_ms(), p.poll_ms);
            if parked_until[i] > now {
                continue;
            }
            let started = Instant::now();
            let (readings, errors) = poll(&mut link, &bus, p).await;
            health.polls.fetch_add(1, Ordering::Relaxed);
            let mut meters = health.meters.lock().unwrap_or_else(|e| e.into_inner());
            let mh = meters.entry(p.meter.clone()).or_default();
            mh.polls += 1;
            mh.poll_us += started.elapsed().as_micros() as u64;
            let silent = errors.iter().any(|(_, e)| *e == FieldError::NoResponse);
            mh.timeouts += u64::from(silent);
            mh.exceptions += errors
                .iter()
                .filter(|(_, e)| matches!(e, FieldError::Exception(_)))
                .count() as u64;
            for (q, e) in &errors {
                *mh.field_errors
                    .entry(format!("{q}: {}", e.code()))
                    .or_default() += 1;
            }
            if readings.is_empty() && silent {
                mh.failed_polls += 1;
                mh.consecutive_failures += 1;
                let backoff = p
                    .poll_ms
                    .saturating_mul(1i64 << mh.consecutive_failures.min(6))
                    .min(3_600_000);
                parked_until[i] = now_ms() + backoff;
                tracing::warn!(bus = %bus.id, meter = %p.meter, backoff_ms = backoff, "Meter not answering; parked.");
            } else {
                mh.good_polls += 1;
                mh.consecutive_failures = 0;
                parked_until[i] = i64::MIN;
            }
            drop(meters);
            batch.extend(readings);
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
