//! DL/T 645 and CJ/T 188 meters (`meter.dlt645`, `meter.cjt188`,
//! `[[dlt645_item]]`) on serial buses, with their checks.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::checks::*;
use super::document::{Ctx, Located};
use super::*;
use crate::reading::EnergyClass;

/// `meter.dlt645`: a DL/T 645-2007 electricity meter on a serial bus or gateway.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dlt645Source {
    /// Bus id (`rtu` or `rtu_over_tcp`; 2400 8E1 is the usual line setting).
    pub bus: String,
    /// Meter address, 12 digits as printed (`000000001234`).
    pub address: String,
    /// Data identifiers to read, `DI3DI2DI1DI0` hex (shipped or `[[dlt645_item]]`);
    /// default: forward active total energy.
    #[serde(default = "default_dlt645_items")]
    pub items: Vec<String>,
    /// Poll period, s.
    #[serde(default = "super::modbus::default_poll_s")]
    pub poll_s: u32,
}

fn default_dlt645_items() -> Vec<String> {
    vec!["00010000".to_string()]
}

/// `[[dlt645_item]]`: a DL/T 645 data identifier the site adds (or redefines).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dlt645Item {
    /// Identifier, `DI3DI2DI1DI0` hex, e.g. `00010000`.
    pub di: String,
    /// meterflow quantity.
    pub quantity: String,
    /// BCD bytes of the value.
    pub bytes: u8,
    /// Decimal places.
    pub decimals: u8,
    /// Bit 7 of the most significant byte is the sign.
    #[serde(default)]
    pub signed: bool,
}

/// CJ/T 188 meter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cjt188Type {
    /// 0x10.
    ColdWater,
    /// 0x11.
    HotWater,
    /// 0x20.
    Heat,
    /// 0x21.
    Cooling,
    /// 0x30.
    Gas,
}

impl Cjt188Type {
    /// The type byte T.
    pub fn byte(self) -> u8 {
        match self {
            Cjt188Type::ColdWater => 0x10,
            Cjt188Type::HotWater => 0x11,
            Cjt188Type::Heat => 0x20,
            Cjt188Type::Cooling => 0x21,
            Cjt188Type::Gas => 0x30,
        }
    }
}

/// `meter.cjt188`: a CJ/T 188 water, heat or gas meter.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cjt188Source {
    /// Bus id (`rtu` or `rtu_over_tcp`).
    pub bus: String,
    /// Meter address, 14 hex digits in wire order (A0 first), e.g. `12000000000000`;
    /// a nameplate's number reversed byte by byte (nameplate `00000012345678`
    /// is `78563412000000`).
    pub address: String,
    /// Meter type.
    #[serde(default = "default_cjt188_type")]
    pub meter_type: Cjt188Type,
    /// The model's layout: `standard` (default), `collector`, or a `[[cjt188_layout]]`.
    #[serde(default = "default_cjt188_layout")]
    pub layout: String,
    /// Byte order of the DI `90 1F` on the wire, `"901F"` or `"1F90"`:
    /// overrides the layout's.
    #[serde(default)]
    pub di: Option<String>,
    /// Poll period, s.
    #[serde(default = "super::modbus::default_poll_s")]
    pub poll_s: u32,
}

const fn default_cjt188_type() -> Cjt188Type {
    Cjt188Type::ColdWater
}

fn default_cjt188_layout() -> String {
    "standard".to_string()
}

/// ST0 bit layouts of `[[cjt188_layout]] status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cjt188StatusBits {
    /// Valve bits 0–1, battery bit 2 (the standard's table).
    Valve01Battery2,
    /// Battery bit 5, valve bits 6–7.
    Battery5Valve67,
}

/// Error reply layouts of `[[cjt188_layout]] error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cjt188ErrorLayout {
    /// `DI0 DI1 SER ST0 ST1`.
    DiSerStatus,
    /// `SER ST0 ST1`.
    SerStatus,
}

/// `[[cjt188_layout]]`: how one CJ/T 188 meter model lays out its frames.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cjt188Layout {
    /// Name the meters' `cjt188.layout` refers to.
    pub name: String,
    /// DI byte order on the wire: `"901F"` (default) or `"1F90"`.
    #[serde(default = "default_di_text")]
    pub di: String,
    /// Where ST0 keeps the valve and battery bits.
    #[serde(default = "default_status_bits")]
    pub status: Cjt188StatusBits,
    /// Where an error reply keeps the status bytes.
    #[serde(default = "default_error_layout")]
    pub error: Cjt188ErrorLayout,
}

fn default_di_text() -> String {
    "901F".to_string()
}
const fn default_status_bits() -> Cjt188StatusBits {
    Cjt188StatusBits::Valve01Battery2
}
const fn default_error_layout() -> Cjt188ErrorLayout {
    Cjt188ErrorLayout::DiSerStatus
}

/// The layouts meterflow ships: `standard` (the standard's tables) and
/// `collector` (battery bit 5, valve bits 6–7, error reply `SER ST0 ST1`, as
/// some collectors' code reads meters).
pub fn shipped_cjt188_layouts() -> Vec<Cjt188Layout> {
    vec![
        Cjt188Layout {
            name: "standard".into(),
            di: default_di_text(),
            status: Cjt188StatusBits::Valve01Battery2,
            error: Cjt188ErrorLayout::DiSerStatus,
        },
        Cjt188Layout {
            name: "collector".into(),
            di: default_di_text(),
            status: Cjt188StatusBits::Battery5Valve67,
            error: Cjt188ErrorLayout::SerStatus,
        },
    ]
}

/// `"901F"` / `"1F90"` into wire bytes.
pub fn di_bytes(text: &str) -> Option<[u8; 2]> {
    match text.to_ascii_uppercase().as_str() {
        "901F" => Some([0x90, 0x1F]),
        "1F90" => Some([0x1F, 0x90]),
        _ => None,
    }
}

impl Cjt188Layout {
    /// The codec's layout.
    pub fn to_layout(&self) -> meterflow_cnproto::cjt188::Layout {
        use meterflow_cnproto::cjt188::{ErrorLayout, Layout, StatusBits};
        Layout {
            di: di_bytes(&self.di).unwrap_or(meterflow_cnproto::cjt188::DI_CURRENT),
            status: match self.status {
                Cjt188StatusBits::Valve01Battery2 => StatusBits::Valve01Battery2,
                Cjt188StatusBits::Battery5Valve67 => StatusBits::Battery5Valve67,
            },
            error: match self.error {
                Cjt188ErrorLayout::DiSerStatus => ErrorLayout::DiSerStatus,
                Cjt188ErrorLayout::SerStatus => ErrorLayout::SerStatus,
            },
        }
    }
}

/// DL/T 645 and CJ/T 188 sources and `[[dlt645_item]]`s.
pub(crate) fn validate_cn(
    ctx: &mut Ctx<'_>,
    buses_rows: &[Located<'_, Bus>],
    dlt645_items: &[Located<'_, Dlt645Item>],
    layouts: &[Located<'_, Cjt188Layout>],
    meters: &[Located<'_, Meter>],
    buses: &mut [Bus],
) {
    for l in layouts {
        if di_bytes(&l.value.di).is_none() {
            ctx.error(
                l.span_of(&["di"]),
                l.key("di"),
                format!("`{}`: `901F` or `1F90`", l.value.di),
            );
        }
    }
    let layout_names: Vec<String> = shipped_cjt188_layouts()
        .into_iter()
        .map(|l| l.name)
        .chain(layouts.iter().map(|l| l.value.name.clone()))
        .collect();
    // A bus of DL/T 645 / CJ/T 188 meters defaults to their usual 2400 8E1.
    for (b, raw) in buses.iter_mut().zip(buses_rows) {
        let serial_meters = meters.iter().any(|m| {
            m.value.dlt645.as_ref().is_some_and(|d| d.bus == b.id)
                || m.value.cjt188.as_ref().is_some_and(|c| c.bus == b.id)
        });
        if serial_meters {
            if !raw.has("baud") {
                b.baud = 2400;
            }
            if !raw.has("parity") {
                b.parity = Parity::Even;
            }
        }
    }
    let buses: &[Bus] = buses;
    for it in dlt645_items {
        let v = &it.value;
        if !is_hex(&v.di, 8) {
            ctx.error(
                it.span_of(&["di"]),
                it.key("di"),
                format!("`{}` is not 8 hex digits (DI3 DI2 DI1 DI0)", v.di),
            );
        }
        if !(1..=8).contains(&v.bytes) || v.decimals > 8 {
            ctx.error(
                it.span_of(&["bytes"]),
                it.key("bytes"),
                "1 to 8 BCD bytes and at most 8 decimals",
            );
        }
    }
    let known_di = |di: &str| -> Option<String> {
        if let Some(i) = dlt645_items
            .iter()
            .find(|i| i.value.di.eq_ignore_ascii_case(di))
        {
            return Some(i.value.quantity.clone());
        }
        let n = u32::from_str_radix(di, 16).ok()?;
        meterflow_cnproto::dlt645::item_of(n).map(|i| i.quantity.to_string())
    };
    let modbus_buses: BTreeSet<&str> = meters
        .iter()
        .filter_map(|m| m.value.modbus.as_ref().map(|s| s.bus.as_str()))
        .collect();
    for m in meters {
        let v = &m.value;
        let sources = [v.modbus.is_some(), v.dlt645.is_some(), v.cjt188.is_some()];
        if sources.iter().filter(|x| **x).count() > 1 {
            ctx.error(
                m.span_of(&["id"]),
                m.key("dlt645"),
                "a meter has one source: `modbus`, `dlt645` or `cjt188`",
            );
        }
        let (key, bus, poll_s) = match (&v.dlt645, &v.cjt188) {
            (Some(d), _) => ("dlt645", d.bus.as_str(), d.poll_s),
            (None, Some(c)) => ("cjt188", c.bus.as_str(), c.poll_s),
            (None, None) => continue,
        };
        match buses.iter().find(|b| b.id == bus) {
            None => ctx.error(m.span_of(&[key, "bus"]), m.key(&format!("{key}.bus")), format!("no bus `{bus}`")),
            Some(b) if b.transport == Transport::Tcp => ctx.error(
                m.span_of(&[key, "bus"]),
                m.key(&format!("{key}.bus")),
                format!("bus `{bus}` is Modbus TCP; DL/T 645 and CJ/T 188 need `rtu` (a serial line) or `rtu_over_tcp` (a serial gateway)"),
            ),
            Some(_) if modbus_buses.contains(bus) => ctx.error(
                m.span_of(&[key, "bus"]),
                m.key(&format!("{key}.bus")),
                format!("bus `{bus}` also carries Modbus meters; put DL/T 645 and CJ/T 188 meters on a bus of their own"),
            ),
            Some(_) => {}
        }
        if poll_s == 0 {
            ctx.error(
                m.span_of(&[key, "poll_s"]),
                m.key(&format!("{key}.poll_s")),
                "poll periods are at least 1 s",
            );
        }
        if let Some(d) = &v.dlt645 {
            if !(d.address.len() == 12 && d.address.bytes().all(|b| b.is_ascii_digit())) {
                ctx.error(
                    m.span_of(&["dlt645", "address"]),
                    m.key("dlt645.address"),
                    format!("`{}` is not a 12-digit meter address", d.address),
                );
            }
            let mut quantities = Vec::new();
            for (i, di) in d.items.iter().enumerate() {
                match known_di(di) {
                    Some(q) => quantities.push(q),
                    None => ctx.error(
                        m.span_of(&["dlt645", "items"]),
                        m.key(&format!("dlt645.items.{i}")),
                        format!("unknown data identifier `{di}`: add a [[dlt645_item]] for it"),
                    ),
                }
            }
            let q = v.counter_quantity();
            if v.kind != EnergyClass::Electricity {
                ctx.error(
                    m.span_of(&["kind"]),
                    m.key("kind"),
                    "a DL/T 645 meter is an electricity meter",
                );
            } else if !quantities.iter().any(|x| x == q) && quantities.len() == d.items.len() {
                ctx.error(
                    m.span_of(&["dlt645", "items"]),
                    m.key("dlt645.items"),
                    format!("no identifier gives the counter `{q}` (00010000 is forward active total energy)"),
                );
            }
        }
        if let Some(c) = &v.cjt188 {
            if !is_hex(&c.address, 14) {
                ctx.error(
                    m.span_of(&["cjt188", "address"]),
                    m.key("cjt188.address"),
                    format!("`{}` is not 14 hex digits", c.address),
                );
            }
            if let Some(di) = &c.di
                && di_bytes(di).is_none()
            {
                ctx.error(
                    m.span_of(&["cjt188", "di"]),
                    m.key("cjt188.di"),
                    format!("`{di}`: `901F` or `1F90`"),
                );
            }
            if !layout_names.contains(&c.layout) {
                ctx.error(
                    m.span_of(&["cjt188", "layout"]),
                    m.key("cjt188.layout"),
                    format!(
                        "no CJ/T 188 layout `{}`; known: {} (add a [[cjt188_layout]])",
                        c.layout,
                        layout_names.join(", ")
                    ),
                );
            }
            let fits = matches!(
                (c.meter_type, v.kind),
                (
                    Cjt188Type::ColdWater | Cjt188Type::HotWater,
                    EnergyClass::Water
                ) | (Cjt188Type::Gas, EnergyClass::Gas)
                    | (Cjt188Type::Heat, EnergyClass::Heat)
                    | (Cjt188Type::Cooling, EnergyClass::Cooling)
            );
            if !fits {
                ctx.error(
                    m.span_of(&["cjt188", "meter_type"]),
                    m.key("cjt188.meter_type"),
                    format!(
                        "a {:?} CJ/T 188 meter cannot be a {} meter",
                        c.meter_type,
                        v.kind.as_str()
                    ),
                );
            }
        }
    }
}
