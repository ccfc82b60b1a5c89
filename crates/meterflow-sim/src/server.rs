//! A real Modbus TCP server serving simulated meters: each unit id is one meter
//! with its profile's register map, values computed when asked.

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono_tz::Tz;
use meterflow_modbus::decode::encode_bits;
use meterflow_modbus::encode;
use meterflow_model::profile::{DataType, Profile, Space};
use tokio::net::TcpListener;
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use crate::SimMeter;

/// Faults a simulated device can be told to show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Never answer (the client times out).
    Silent,
    /// Answer after this delay (a late answer, for stale-reply tests).
    Late(Duration),
    /// Answer every read with this exception code.
    Exception(u8),
    /// Counter fields read as the type's "invalid" pattern.
    Sentinel,
}

/// One simulated device.
pub struct Device {
    meter: SimMeter,
    profile: Arc<Profile>,
    state: Mutex<DeviceState>,
}

struct DeviceState {
    at_ms: i64,
    /// Counter in the profile's engineering unit (register units × profile scale).
    register: f64,
    fault: Fault,
}

impl Device {
    /// A device simulating `meter` with `profile`, its counter at `start` at `now_ms`.
    pub fn new(meter: SimMeter, profile: Arc<Profile>, now_ms: i64) -> Device {
        let register = meter.start_register;
        Device {
            meter,
            profile,
            state: Mutex::new(DeviceState {
                at_ms: now_ms,
                register,
                fault: Fault::None,
            }),
        }
    }

    /// Counter value at `now_ms` (advances the simulation).
    pub fn counter_at(&self, now_ms: i64, tz: Tz) -> f64 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms > s.at_ms {
            s.register +=
                crate::sum_quarters(&self.meter, tz, s.at_ms, now_ms) / self.meter.multiplier;
            s.at_ms = now_ms;
        }
        s.register
    }

    /// Set the fault.
    pub fn set_fault(&self, fault: Fault) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).fault = fault;
    }

    /// Reset the counter to `value` (a device reset, or a jump near the rollover).
    pub fn set_counter(&self, value: f64) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register = value;
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).fault
    }

    /// Register image of one space from `start`, `count` registers, at `now_ms`.
    pub fn registers(
        &self,
        space: Space,
        start: u16,
        count: u16,
        now_ms: i64,
        tz: Tz,
    ) -> Result<Vec<u16>, ExceptionCode> {
        let fields: Vec<_> = self
            .profile
            .field
            .iter()
            .filter(|f| f.space == space)
            .collect();
        let lo = fields.iter().map(|f| f.address).min();
        let hi = fields
            .iter()
            .map(|f| u32::from(f.address) + u32::from(f.dtype.registers()))
            .max();
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Err(ExceptionCode::IllegalDataAddress);
        };
        let end = u32::from(start) + u32::from(count);
        if count == 0 || count > 125 || start < lo || end > hi {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let counter = self.counter_at(now_ms, tz);
        let sentinel = self.fault() == Fault::Sentinel;
        let per_h = self
            .meter
            .quarter_consumption(now_ms.div_euclid(900_000) * 900_000, tz)
            * 4.0;
        let mut out = vec![0u16; usize::from(count)];
        for f in &fields {
            let value = match f.quantity.as_str() {
                q if f.counter && q.starts_with("energy")
                    || q == "volume"
                    || q == "heat_energy" =>
                {
                    counter
                }
                "power" => per_h * if f.unit == "W" { 1000.0 } else { 1.0 },
                "flow" => per_h,
                q if q.starts_with("voltage") => 230.0 + (now_ms % 7) as f64 * 0.1,
                q if q.starts_with("current") => per_h * 1000.0 / (3.0 * 230.0),
                "power_factor" => 0.95,
                "frequency" => 50.0,
                "pt_ratio" | "ct_ratio" => 1.0,
                _ => 0.0,
            };
            let words = if sentinel && f.counter {
                let bits = match f.dtype {
                    DataType::F32 => 0x7FC0_0000,
                    DataType::F64 => 0x7FF8_0000_0000_0000,
                    _ => Profile::invalid_patterns(f)
                        .first()
                        .copied()
                        .unwrap_or(u64::MAX),
                };
                encode_bits(bits, usize::from(f.dtype.registers()), f.order)
            } else {
                encode(f, value)
            };
            for (k, w) in words.iter().enumerate() {
                let addr = u32::from(f.address) + k as u32;
                if addr >= u32::from(start) && addr < end {
                    out[(addr - u32::from(start)) as usize] = *w;
                }
            }
        }
        Ok(out)
    }
}

/// All devices behind one server, by unit id.
#[derive(Clone)]
pub struct Bank {
    /// Devices by unit id.
    pub devices: Arc<HashMap<u8, Arc<Device>>>,
    /// Site time zone (load shapes follow local time).
    pub tz: Tz,
}

impl Service for Bank {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<Response>, ExceptionCode>> + Send>,
    >;

    fn call(&self, req: Self::Request) -> Self::Future {
        let Some(dev) = self.devices.get(&req.slave).cloned() else {
            // No such unit: a gateway would answer "target device failed to respond".
            return Box::pin(ready_err(ExceptionCode::GatewayTargetDevice));
        };
        let tz = self.tz;
        let fault = dev.fault();
        Box::pin(async move {
            match fault {
                Fault::Silent => return Ok(None),
                Fault::Exception(c) => return Err(ExceptionCode::new(c)),
                Fault::Late(d) => tokio::time::sleep(d).await,
                Fault::None | Fault::Sentinel => {}
            }
            let now = meterflow_model::clock::now_ms();
            match req.request {
                Request::ReadHoldingRegisters(start, count) => dev
                    .registers(Space::Holding, start, count, now, tz)
                    .map(|w| Some(Response::ReadHoldingRegisters(w))),
                Request::ReadInputRegisters(start, count) => dev
                    .registers(Space::Input, start, count, now, tz)
                    .map(|w| Some(Response::ReadInputRegisters(w))),
                _ => Err(ExceptionCode::IllegalFunction),
            }
        })
    }
}

fn ready_err(code: ExceptionCode) -> Ready<Result<Option<Response>, ExceptionCode>> {
    ready(Err(code))
}

/// Serve `bank` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, bank: Bank) -> std::io::Result<()> {
    let server = Server::new(listener);
    let new_service = move |_addr: SocketAddr| Ok(Some(bank.clone()));
    let on_connected = |stream, addr| {
        let svc = new_service.clone();
        async move { accept_tcp_connection(stream, addr, svc) }
    };
    let on_error = |e: std::io::Error| tracing::debug!(error = %e, "Simulator connection ended.");
    server.serve(&on_connected, on_error).await
}
