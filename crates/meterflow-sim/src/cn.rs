//! Simulated DL/T 645-2007 and CJ/T 188 meters on one byte stream (a serial
//! pty or a TCP connection standing in for a serial gateway), with consistent
//! counters and injectable faults, optionally at the line's speed (a byte
//! costs 11 bits of time: 8E1).

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use meterflow_cnproto::frame::{self, Kind, Scan};
use meterflow_cnproto::{bcd, cjt188, dlt645};
use meterflow_model::Site;

use crate::SimMeter;
use meterflow_model::clock::now_ms;

/// A fault of one simulated meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CnFault {
    /// Answers normally.
    None,
    /// Never answers.
    Silent,
    /// Answers with a wrong checksum.
    BadChecksum,
    /// Answers with an error reply (DL/T 645 0xD1 "no requested data"; CJ/T 188 0xC1).
    ErrorReply,
    /// Sends garbage bytes before a good answer.
    Garbage,
    /// CJ/T 188: reports a low battery (ST0 bit 2).
    BatteryLow,
    /// CJ/T 188: reports the valve abnormal (ST0 bits 0-1 = 11).
    ValveFault,
}

impl CnFault {
    /// From the command line: `silent`, `bad_checksum`, `error`, `garbage`, `none`.
    pub fn parse(s: &str) -> Option<CnFault> {
        Some(match s {
            "none" => CnFault::None,
            "silent" => CnFault::Silent,
            "bad_checksum" => CnFault::BadChecksum,
            "error" => CnFault::ErrorReply,
            "garbage" => CnFault::Garbage,
            "battery_low" => CnFault::BatteryLow,
            "valve_fault" => CnFault::ValveFault,
            _ => return None,
        })
    }
}

/// How a simulated meter is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CnAddress {
    /// DL/T 645 address, least significant byte first.
    Dlt645([u8; 6]),
    /// CJ/T 188 type and address.
    Cjt188 {
        /// Type byte.
        meter_type: u8,
        /// Address, wire order.
        address: [u8; 7],
    },
}

/// One simulated meter.
pub struct CnDevice {
    /// The meter simulated.
    pub meter: SimMeter,
    /// Its address.
    pub address: CnAddress,
    state: Mutex<(i64, f64, CnFault)>,
}

impl CnDevice {
    /// Counter (register units) at `now_ms`, advancing the simulation.
    pub fn counter_at(&self, now_ms: i64, tz: Tz) -> f64 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms > s.0 {
            s.1 += crate::sum_quarters(&self.meter, tz, s.0, now_ms) / self.meter.multiplier;
            s.0 = now_ms;
        }
        s.1
    }

    /// Set the fault.
    pub fn set_fault(&self, f: CnFault) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).2 = f;
    }

    fn fault(&self) -> CnFault {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).2
    }
}

/// The simulated meters of one bus.
#[derive(Clone)]
pub struct CnBank {
    /// Devices.
    pub devices: Vec<Arc<CnDevice>>,
    /// Site time zone (load shapes).
    pub tz: Tz,
}

impl CnBank {
    /// The DL/T 645 and CJ/T 188 meters of `bus` in `site`.
    pub fn of(site: &Site, bus: &str) -> CnBank {
        let now = now_ms();
        let mut devices = Vec::new();
        for m in &site.meters {
            let address = if let Some(d) = m.dlt645.as_ref().filter(|d| d.bus == bus) {
                match bcd::address_lsb_first(&d.address, 6)
                    .and_then(|a| <[u8; 6]>::try_from(a).ok())
                {
                    Some(a) => CnAddress::Dlt645(a),
                    None => continue,
                }
            } else if let Some(c) = m.cjt188.as_ref().filter(|c| c.bus == bus) {
                match cjt188::address(&c.address) {
                    Some(a) => CnAddress::Cjt188 {
                        meter_type: c.meter_type.byte(),
                        address: a,
                    },
                    None => continue,
                }
            } else {
                continue;
            };
            let sim = SimMeter::from_meter(m);
            let start = sim.start_register;
            devices.push(Arc::new(CnDevice {
                meter: sim,
                address,
                state: Mutex::new((now, start, CnFault::None)),
            }));
        }
        CnBank {
            devices,
            tz: site.tz,
        }
    }

    /// The device of a meter id.
    pub fn device(&self, meter: &str) -> Option<&Arc<CnDevice>> {
        self.devices.iter().find(|d| d.meter.id == meter)
    }

    /// The answer to one request frame, if a device of ours is addressed.
    pub fn answer(&self, request: &[u8], kind: Kind) -> Option<Vec<u8>> {
        match kind {
            Kind::Dlt645 => {
                let f = dlt645::parse(request).ok()?;
                if f.control == dlt645::READ_ADDRESS && f.address == dlt645::BROADCAST {
                    // Read address: answered only when exactly one meter is on the bus.
                    let only: Vec<_> = self
                        .devices
                        .iter()
                        .filter_map(|d| match &d.address {
                            CnAddress::Dlt645(a) => Some(*a),
                            _ => None,
                        })
                        .collect();
                    return (only.len() == 1).then(|| dlt645::reply_address(&only[0]));
                }
                let dev = self
                    .devices
                    .iter()
                    .find(|d| d.address == CnAddress::Dlt645(f.address))?;
                let CnAddress::Dlt645(a) = dev.address else {
                    return None;
                };
                if f.control != dlt645::READ || f.data.len() != 4 {
                    return Some(dlt645::reply_error(&a, 0x01));
                }
                let di = u32::from_le_bytes([f.data[0], f.data[1], f.data[2], f.data[3]]);
                let fault = dev.fault();
                if fault == CnFault::ErrorReply {
                    return Some(dlt645::reply_error(&a, 0x02));
                }
                let counter = dev.counter_at(now_ms(), self.tz);
                let value = match di {
                    0x0000_0000 | 0x0001_0000 => counter,
                    0x0001_0100 => counter * 0.4,
                    0x0001_0200 => counter * 0.6,
                    0x0001_0300 | 0x0001_0400 | 0x0002_0000..=0x0002_0400 => 0.0,
                    0x0201_0100..=0x0201_0300 => 229.8,
                    0x0202_0100..=0x0202_0300 => 5.125,
                    0x0203_0000 => 3.5,
                    0x0206_0000 => 0.95,
                    0x0280_0002 => 50.0,
                    _ => return Some(dlt645::reply_error(&a, 0x02)),
                };
                let fmt = dlt645::item_of(di)?.format;
                let bytes =
                    bcd::encode_value(value, usize::from(fmt.bytes), fmt.decimals, fmt.signed)?;
                Some(dlt645::reply_data(&a, di, &bytes, false))
            }
            Kind::Cjt188 => {
                let f = cjt188::parse(request).ok()?;
                let dev = self.devices.iter().find(|d| {
                    d.address
                        == CnAddress::Cjt188 {
                            meter_type: f.meter_type,
                            address: f.address,
                        }
                })?;
                if f.control != cjt188::READ || f.data.len() < 3 {
                    return None;
                }
                let di = [f.data[0], f.data[1]];
                if dev.fault() == CnFault::ErrorReply {
                    return Some(cjt188::encode(
                        f.meter_type,
                        &f.address,
                        0xC1,
                        &[di[0], di[1], f.data[2], 0x03, 0x00],
                        true,
                    ));
                }
                let m3 = dev.counter_at(now_ms(), self.tz);
                let st0 = match dev.fault() {
                    CnFault::BatteryLow => 0x04,
                    CnFault::ValveFault => 0x03,
                    _ => 0x00,
                };
                Some(cjt188::reply_water(
                    f.meter_type,
                    &f.address,
                    di,
                    f.data[2],
                    m3,
                    st0,
                ))
            }
        }
    }

    /// Apply the addressed device's fault to its answer: `None` = stay silent.
    fn with_fault(&self, request: &[u8], kind: Kind, answer: Vec<u8>) -> Option<Vec<u8>> {
        let fault = self
            .devices
            .iter()
            .find(|d| match (&d.address, kind) {
                (CnAddress::Dlt645(a), Kind::Dlt645) => {
                    dlt645::parse(request).is_ok_and(|f| &f.address == a)
                }
                (CnAddress::Cjt188 { address, .. }, Kind::Cjt188) => {
                    cjt188::parse(request).is_ok_and(|f| &f.address == address)
                }
                _ => false,
            })
            .map_or(CnFault::None, |d| d.fault());
        match fault {
            CnFault::Silent => None,
            CnFault::BadChecksum => {
                let mut a = answer;
                let n = a.len();
                if n >= 2 {
                    a[n - 2] = a[n - 2].wrapping_add(1);
                }
                Some(a)
            }
            CnFault::Garbage => {
                let mut g = vec![0x00, 0x68, 0x16, 0xFF, 0x68, 0x99, 0x42];
                g.extend(answer);
                Some(g)
            }
            CnFault::None | CnFault::ErrorReply | CnFault::BatteryLow | CnFault::ValveFault => {
                Some(answer)
            }
        }
    }
}

/// Serve requests of both protocols on `io` until it fails or closes.
/// With `emulate_line`, every byte costs 11 bits at `baud` (request received,
/// then the answer sent).
pub fn serve_cn<S: Read + Write>(
    mut io: S,
    baud: u32,
    emulate_line: bool,
    bank: &CnBank,
) -> std::io::Result<()> {
    let char_s = 11.0 / f64::from(baud.max(1));
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        let n = io.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        let arrived = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let mut bad = 0;
            // The frame that starts first, of either protocol.
            let found = [Kind::Dlt645, Kind::Cjt188]
                .into_iter()
                .filter_map(|k| match frame::scan(&buf, k, &mut bad) {
                    Scan::Frame { start, end } => Some((start, end, k)),
                    _ => None,
                })
                .min_by_key(|(s, _, _)| *s);
            let Some((start, end, kind)) = found else {
                if buf.len() > 4096 {
                    buf.clear();
                }
                break;
            };
            let request = buf[start..end].to_vec();
            let consumed = end;
            buf.drain(..end);
            let Some(answer) = bank
                .answer(&request, kind)
                .and_then(|a| bank.with_fault(&request, kind, a))
            else {
                continue;
            };
            if emulate_line {
                // The request took its frame time to arrive; the answer takes its own.
                // Every byte up to the frame's end was on the line: wake-up bytes too.
                let req_time = Duration::from_secs_f64(consumed as f64 * char_s);
                let since = arrived.elapsed();
                let turnaround = Duration::from_millis(5);
                let wait = (req_time + turnaround).saturating_sub(since)
                    + Duration::from_secs_f64(answer.len() as f64 * char_s);
                std::thread::sleep(wait);
            }
            io.write_all(&answer)?;
            io.flush()?;
        }
    }
}
