//! CJ/T 188 (water, heat and gas meters): frames
//! `[FE…] 68 T A0..A6 C L DATA CS 16`, no +0x33 offset. Read 0x01 → 0x81,
//! error 0xC1; DI `90 1F` followed by the sequence number SER.
//!
//! Meters in the field differ in three places, described by a [`Layout`]:
//! the DI byte order (`90 1F` or `1F 90`), where the valve and battery bits
//! sit in ST0, and where the status bytes sit in an error reply.
//!
//! Addresses are written as the 7 bytes appear on the wire (A0 first), as in
//! `docs/methodology.md` §12: meter `12000000000000` is `12 00 00 00 00 00 00`;
//! [`address_from_nameplate`] turns the number printed on a meter into it.

use std::fmt;

use crate::bcd;
use crate::frame::{Kind, checksum};

/// Meter types (T).
pub const COLD_WATER: u8 = 0x10;
/// Hot water.
pub const HOT_WATER: u8 = 0x11;
/// Heat meter (heating); 0x20–0x29 are heat and cooling meters.
pub const HEAT: u8 = 0x20;
/// Cooling meter.
pub const COOLING: u8 = 0x21;
/// Gas meter.
pub const GAS: u8 = 0x30;

/// Read data.
pub const READ: u8 = 0x01;

/// The usual current-data identifier, wire order.
pub const DI_CURRENT: [u8; 2] = [0x90, 0x1F];

/// An address as written (wire order, 14 hex digits) into bytes.
pub fn address(text: &str) -> Option<[u8; 7]> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut a = [0u8; 7];
    for (i, slot) in a.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(a)
}

/// The number printed on a meter's nameplate (14 digits, most significant
/// first: A6 … A0) into the wire order: `00000012345678` → `78 56 34 12 00 00 00`.
pub fn address_from_nameplate(text: &str) -> Option<[u8; 7]> {
    let mut a = address(text)?;
    a.reverse();
    Some(a)
}

/// The nameplate form of a wire-order address (the reverse of [`address_from_nameplate`]).
pub fn nameplate_text(a: &[u8; 7]) -> String {
    a.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// Where a meter model keeps the valve and battery bits of ST0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusBits {
    /// Valve in bits 0–1 (00 open, 01 closed, 1x fault), battery low in bit 2 (the standard's table).
    #[default]
    Valve01Battery2,
    /// Battery low in bit 5, valve in bits 6–7 (as some collectors read it).
    Battery5Valve67,
}

/// Where the status bytes sit in a 0xC1 error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorLayout {
    /// `DI0 DI1 SER ST0 ST1`: status at data bytes 3–4.
    #[default]
    DiSerStatus,
    /// `SER ST0 ST1`: status at data bytes 1–2.
    SerStatus,
}

/// One meter model's way of speaking CJ/T 188.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// DI of the current data, in wire order.
    pub di: [u8; 2],
    /// ST0 bits.
    pub status: StatusBits,
    /// Error reply.
    pub error: ErrorLayout,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            di: DI_CURRENT,
            status: StatusBits::default(),
            error: ErrorLayout::default(),
        }
    }
}

impl Layout {
    /// The same layout with the other DI byte order.
    pub fn other_di_order(self) -> Layout {
        Layout {
            di: [self.di[1], self.di[0]],
            ..self
        }
    }
}

/// Bytes back into the written address.
pub fn address_text(a: &[u8; 7]) -> String {
    a.iter().map(|b| format!("{b:02X}")).collect()
}

/// A frame to send.
pub fn encode(
    meter_type: u8,
    address: &[u8; 7],
    control: u8,
    data: &[u8],
    preamble: bool,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(16 + data.len());
    if preamble {
        f.extend_from_slice(&[0xFE; 4]);
    }
    let start = f.len();
    f.push(0x68);
    f.push(meter_type);
    f.extend_from_slice(address);
    f.push(control);
    f.push(data.len() as u8);
    f.extend_from_slice(data);
    let cs = checksum(&f[start..]);
    f.push(cs);
    f.push(0x16);
    f
}

/// Read the current data (`di` in wire order, sequence `ser`).
pub fn read_request(
    meter_type: u8,
    address: &[u8; 7],
    di: [u8; 2],
    ser: u8,
    preamble: bool,
) -> Vec<u8> {
    encode(meter_type, address, READ, &[di[0], di[1], ser], preamble)
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Meter type.
    pub meter_type: u8,
    /// Address, wire order.
    pub address: [u8; 7],
    /// Control code.
    pub control: u8,
    /// Data.
    pub data: Vec<u8>,
}

/// Why a reply was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// Layout, checksum or end byte.
    Malformed(&'static str),
    /// Another meter's address: never attributed.
    WrongAddress {
        /// Expected.
        expected: String,
        /// Received.
        got: String,
    },
    /// Another meter type.
    WrongType(u8),
    /// Not an answer to a read.
    WrongControl(u8),
    /// Another identifier.
    WrongDi([u8; 2]),
    /// The meter answered with an error (status bytes).
    Meter(u16),
    /// A value is not BCD.
    NotBcd,
    /// A unit byte meterflow does not know.
    UnknownUnit(u8),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Malformed(w) => write!(f, "malformed frame: {w}"),
            ReplyError::WrongAddress { expected, got } => {
                write!(f, "reply from {got}, expected {expected}")
            }
            ReplyError::WrongType(t) => write!(f, "reply from a meter of type 0x{t:02X}"),
            ReplyError::WrongControl(c) => write!(f, "unexpected control code 0x{c:02X}"),
            ReplyError::WrongDi(d) => write!(f, "reply for DI {:02X} {:02X}", d[0], d[1]),
            ReplyError::Meter(st) => write!(f, "meter error, status 0x{st:04X}"),
            ReplyError::NotBcd => write!(f, "value is not BCD"),
            ReplyError::UnknownUnit(u) => write!(f, "unknown unit byte 0x{u:02X}"),
        }
    }
}

/// Parse one whole frame (preamble and garbage before it skipped).
pub fn parse(bytes: &[u8]) -> Result<Frame, ReplyError> {
    let mut bad = 0;
    let (start, end) = match crate::frame::scan(bytes, Kind::Cjt188, &mut bad) {
        crate::frame::Scan::Frame { start, end } => (start, end),
        _ => {
            return Err(ReplyError::Malformed(
                "no complete frame with a valid checksum",
            ));
        }
    };
    let f = &bytes[start..end];
    let mut address = [0u8; 7];
    address.copy_from_slice(&f[2..9]);
    let len = usize::from(f[10]);
    Ok(Frame {
        meter_type: f[1],
        address,
        control: f[9],
        data: f[11..11 + len].to_vec(),
    })
}

/// A unit byte: name and factor to meterflow's carrier unit (m³, GJ, kWh, kW, m³/h).
pub fn unit(byte: u8) -> Option<(&'static str, f64)> {
    Some(match byte {
        0x29 => ("m3", 0.001),  // L
        0x2C => ("m3", 1.0),    // m³
        0x2D => ("m3", 10.0),   // m³ × 10 (some meters)
        0x02 => ("kWh", 0.001), // Wh
        0x05 => ("kWh", 1.0),
        0x08 => ("kWh", 1000.0),    // MWh
        0x0A => ("kWh", 100_000.0), // MWh × 100
        0x01 => ("GJ", 1e-9),       // J
        0x0B => ("GJ", 1e-6),       // kJ
        0x0E => ("GJ", 1e-3),       // MJ
        0x11 => ("GJ", 1.0),
        0x13 => ("GJ", 100.0), // GJ × 100
        0x14 => ("kW", 0.001), // W
        0x17 => ("kW", 1.0),
        0x1A => ("kW", 1000.0),  // MW
        0x32 => ("m3/h", 0.001), // L/h
        0x35 => ("m3/h", 1.0),
        _ => return None,
    })
}

/// Valve and battery state (ST0 of the status bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Valve open (00), closed (01) or abnormal (11, 10).
    pub valve: Valve,
    /// Battery voltage low.
    pub battery_low: bool,
    /// Both status bytes, ST0 first.
    pub raw: u16,
}

/// Valve state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Valve {
    /// Open.
    Open,
    /// Closed.
    Closed,
    /// Fault.
    Fault,
}

/// Current data of a water or gas meter, or a heat meter.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Current cumulative quantity in its carrier unit (m³ for water and gas; GJ or kWh of heat).
    pub cumulative: f64,
    /// Its unit.
    pub unit: &'static str,
    /// Cumulative flow (m³) of a heat meter.
    pub flow_m3: Option<f64>,
    /// Status.
    pub status: Status,
}

fn quantity_at(d: &[u8], at: usize) -> Result<(f64, &'static str), ReplyError> {
    let v = d
        .get(at..at + 4)
        .ok_or(ReplyError::Malformed("data too short"))?;
    let u = *d
        .get(at + 4)
        .ok_or(ReplyError::Malformed("data too short"))?;
    let (name, factor) = unit(u).ok_or(ReplyError::UnknownUnit(u))?;
    let x = bcd::value(v, 2, false).ok_or(ReplyError::NotBcd)?;
    Ok((x * factor, name))
}

fn status_at(d: &[u8], at: usize, bits: StatusBits) -> Result<Status, ReplyError> {
    let st = d
        .get(at..at + 2)
        .ok_or(ReplyError::Malformed("no status bytes"))?;
    Ok(status_of(u16::from(st[0]) | (u16::from(st[1]) << 8), bits))
}

/// The status bytes (ST0 in the low byte) read with a model's bit layout.
pub fn status_of(raw: u16, bits: StatusBits) -> Status {
    let st0 = (raw & 0xFF) as u8;
    let (valve, battery) = match bits {
        StatusBits::Valve01Battery2 => (st0 & 0x03, st0 & 0x04 != 0),
        StatusBits::Battery5Valve67 => ((st0 >> 6) & 0x03, st0 & 0x20 != 0),
    };
    Status {
        valve: match valve {
            0 => Valve::Open,
            1 => Valve::Closed,
            _ => Valve::Fault,
        },
        battery_low: battery,
        raw,
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valve = match self.valve {
            Valve::Open => "valve open",
            Valve::Closed => "valve closed",
            Valve::Fault => "valve fault",
        };
        let battery = if self.battery_low {
            "battery low"
        } else {
            "battery ok"
        };
        write!(f, "0x{:04X} ({valve}, {battery})", self.raw)
    }
}

/// Check a reply against the request and decode the current data.
pub fn data_reply(
    frame: &Frame,
    meter_type: u8,
    address: &[u8; 7],
    layout: Layout,
) -> Result<Reading, ReplyError> {
    let di = layout.di;
    if &frame.address != address {
        return Err(ReplyError::WrongAddress {
            expected: address_text(address),
            got: address_text(&frame.address),
        });
    }
    if frame.meter_type != meter_type {
        return Err(ReplyError::WrongType(frame.meter_type));
    }
    let d = &frame.data;
    match frame.control {
        0xC1 => {
            let at = match layout.error {
                ErrorLayout::DiSerStatus => 3,
                ErrorLayout::SerStatus => 1,
            };
            let st = d
                .get(at..at + 2)
                .map_or(0, |s| u16::from(s[0]) | (u16::from(s[1]) << 8));
            Err(ReplyError::Meter(st))
        }
        0x81 => {
            if d.len() < 3 {
                return Err(ReplyError::Malformed("data shorter than its identifier"));
            }
            if d[..2] != di {
                return Err(ReplyError::WrongDi([d[0], d[1]]));
            }
            if (0x20..=0x29).contains(&meter_type) {
                // Heat: settlement heat, current heat, power, flow rate, cumulative flow,
                // supply and return temperature, working hours, time, status.
                let (heat, unit) = quantity_at(d, 8)?;
                let (flow, _) = quantity_at(d, 23)?;
                Ok(Reading {
                    cumulative: heat,
                    unit,
                    flow_m3: Some(flow),
                    status: status_at(d, 44, layout.status)?,
                })
            } else {
                // Water and gas: current cumulative flow, settlement-day flow, time, status.
                let (flow, unit) = quantity_at(d, 3)?;
                Ok(Reading {
                    cumulative: flow,
                    unit,
                    flow_m3: None,
                    status: status_at(d, 20, layout.status)?,
                })
            }
        }
        c => Err(ReplyError::WrongControl(c)),
    }
}

/// A water or gas meter's reply (the simulator's side): `m3` with 2 decimals.
pub fn reply_water(
    meter_type: u8,
    address: &[u8; 7],
    di: [u8; 2],
    ser: u8,
    m3: f64,
    st0: u8,
) -> Vec<u8> {
    let v = bcd::encode_value(m3, 4, 2, false).unwrap_or_else(|| vec![0x99; 4]);
    let mut d = vec![di[0], di[1], ser];
    d.extend(&v);
    d.push(0x2C);
    d.extend(&v); // settlement-day flow
    d.push(0x2C);
    d.extend([0x00, 0x00, 0x12, 0x01, 0x12, 0x26, 0x20]); // real time 2026-12-01 12:00:00
    d.extend([st0, 0x00]);
    encode(meter_type, address, 0x81, &d, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_domain_test_vector() {
        let a = address("12000000000000").expect("address");
        assert_eq!(
            read_request(COLD_WATER, &a, DI_CURRENT, 0, false),
            vec![
                0x68, 0x10, 0x12, 0, 0, 0, 0, 0, 0, 0x01, 0x03, 0x90, 0x1F, 0x00, 0x3D, 0x16
            ]
        );
        // Reply: offsets 3–7 the cumulative flow, LSB first, 2 decimals, unit 0x2C.
        let reply = reply_water(COLD_WATER, &a, DI_CURRENT, 0, 1234.56, 0x04);
        let f = parse(&reply).expect("frame");
        assert_eq!(&f.data[3..8], &[0x56, 0x34, 0x12, 0x00, 0x2C]);
        let r = data_reply(&f, COLD_WATER, &a, Layout::default()).expect("reading");
        assert_eq!(r.cumulative, 1234.56);
        assert_eq!(r.unit, "m3");
        assert_eq!(r.status.valve, Valve::Open);
        assert!(r.status.battery_low);
    }

    #[test]
    fn wrong_meters_types_and_byte_orders_are_refused() {
        let a = address("12000000000000").expect("address");
        let b = address("13000000000000").expect("address");
        let f = parse(&reply_water(COLD_WATER, &b, DI_CURRENT, 0, 1.0, 0)).expect("frame");
        assert!(matches!(
            data_reply(&f, COLD_WATER, &a, Layout::default()),
            Err(ReplyError::WrongAddress { .. })
        ));
        let f = parse(&reply_water(HOT_WATER, &a, DI_CURRENT, 0, 1.0, 0)).expect("frame");
        assert_eq!(
            data_reply(&f, COLD_WATER, &a, Layout::default()),
            Err(ReplyError::WrongType(HOT_WATER))
        );
        let f = parse(&reply_water(COLD_WATER, &a, [0x1F, 0x90], 0, 1.0, 0)).expect("frame");
        assert_eq!(
            data_reply(&f, COLD_WATER, &a, Layout::default()),
            Err(ReplyError::WrongDi([0x1F, 0x90]))
        );
        assert!(
            data_reply(&f, COLD_WATER, &a, Layout::default().other_di_order()).is_ok(),
            "byte order as configured"
        );
        let f = parse(&encode(
            COLD_WATER,
            &a,
            0xC1,
            &[0x90, 0x1F, 0, 0x03, 0x00],
            true,
        ))
        .expect("frame");
        assert_eq!(
            data_reply(&f, COLD_WATER, &a, Layout::default()),
            Err(ReplyError::Meter(0x0003))
        );
    }

    /// The two ST0 layouts and the two error layouts, read off bytes built by hand.
    #[test]
    fn model_variants_read_their_own_bits() {
        let a = address("12000000000000").expect("address");
        // ST0 = 0b0110_0000: battery bit 5 set, bits 6-7 = 01 (closed) in the
        // collector layout; in the standard layout bits 0-2 are clear.
        let reply = reply_water(COLD_WATER, &a, DI_CURRENT, 0, 5.0, 0x60);
        let f = parse(&reply).expect("frame");
        let std = data_reply(&f, COLD_WATER, &a, Layout::default()).expect("standard");
        assert_eq!(
            (std.status.valve, std.status.battery_low),
            (Valve::Open, false)
        );
        let alt = Layout {
            status: StatusBits::Battery5Valve67,
            ..Layout::default()
        };
        let r = data_reply(&f, COLD_WATER, &a, alt).expect("variant");
        assert_eq!(
            (r.status.valve, r.status.battery_low),
            (Valve::Closed, true)
        );
        assert_eq!(r.status.to_string(), "0x0060 (valve closed, battery low)");
        // Error reply `SER ST0 ST1` = 00 41 00: ST0 0x41.
        let f = parse(&encode(COLD_WATER, &a, 0xC1, &[0x00, 0x41, 0x00], true)).expect("frame");
        let ser_first = Layout {
            error: ErrorLayout::SerStatus,
            ..Layout::default()
        };
        assert_eq!(
            data_reply(&f, COLD_WATER, &a, ser_first),
            Err(ReplyError::Meter(0x0041))
        );
        // Read with the standard layout, the status would be past the data: 0.
        assert_eq!(
            data_reply(&f, COLD_WATER, &a, Layout::default()),
            Err(ReplyError::Meter(0))
        );
    }

    #[test]
    fn nameplate_numbers_are_reversed_onto_the_wire() {
        let a = address_from_nameplate("00000012345678").expect("nameplate");
        assert_eq!(a, [0x78, 0x56, 0x34, 0x12, 0, 0, 0]);
        assert_eq!(nameplate_text(&a), "00000012345678");
        assert_eq!(address_text(&a), "78563412000000");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(f) = parse(&bytes) {
                let _ = data_reply(&f, f.meter_type, &f.address, Layout::default());
                let _ = data_reply(&f, HEAT, &f.address, Layout::default());
                let alt = Layout { status: StatusBits::Battery5Valve67, error: ErrorLayout::SerStatus, di: [0x1F, 0x90] };
                let _ = data_reply(&f, HEAT, &f.address, alt);
            }
            let mut buf = bytes;
            let mut bad = 0;
            while crate::frame::take(&mut buf, Kind::Cjt188, &mut bad).is_some() {}
        }
    }
}
