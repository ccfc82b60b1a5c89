//! `[[bus]]` and `meter.modbus`, and register maps (`[[profile]]` and the
//! shipped ones), with their checks.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use super::checks::*;
use super::document::{Ctx, Located, suggest};
use super::*;

/// Transport of a Modbus bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Modbus TCP (MBAP framing).
    Tcp,
    /// Modbus RTU on a local serial port.
    Rtu,
    /// Modbus RTU frames through a serial-to-TCP gateway (transparent mode).
    RtuOverTcp,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    /// None (8N1).
    #[default]
    None,
    /// Even (8E1; DL/T 645 default).
    Even,
    /// Odd.
    Odd,
}

/// `[[bus]]`: one Modbus line or gateway. Exactly one request is in flight per
/// bus, except for true Modbus TCP devices with `concurrency > 1`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bus {
    /// Unique bus id (also the shard key when scaling out).
    pub id: String,
    /// Transport.
    pub transport: Transport,
    /// `host:port` for `tcp` and `rtu_over_tcp`.
    #[serde(default)]
    pub address: Option<String>,
    /// Serial device for `rtu`, e.g. `/dev/ttyUSB0`.
    #[serde(default)]
    pub device: Option<String>,
    /// Baud rate for `rtu` (and for frame-time maths of `rtu_over_tcp`), bit/s.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Parity for `rtu`.
    #[serde(default)]
    pub parity: Parity,
    /// Stop bits for `rtu` (1 or 2).
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Time to wait for one response, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of a failed request within one poll.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Requests in flight at once (`tcp` only; serial lines and gateways are always 1).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Pause between frames, ms; default 3.5 character times (1.75 ms above 19 200 Bd).
    #[serde(default)]
    pub inter_frame_ms: Option<f64>,
    /// Registers a coalesced read may skip between two fields.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// Registers per read (Modbus allows at most 125).
    #[serde(default = "default_max_registers")]
    pub max_registers: u16,
}

const fn default_baud() -> u32 {
    9600
}
const fn default_stop_bits() -> u8 {
    1
}
const fn default_timeout_ms() -> u64 {
    1000
}
const fn default_retries() -> u32 {
    1
}
const fn default_concurrency() -> usize {
    1
}
const fn default_max_gap() -> u16 {
    10
}
const fn default_max_registers() -> u16 {
    125
}

/// `meter.modbus`: where and how a meter is polled.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModbusSource {
    /// Bus id.
    pub bus: String,
    /// Unit (slave) id, 1–247 (255 also for Modbus TCP devices).
    pub unit: u8,
    /// Profile name (shipped or `[[profile]]`).
    pub profile: String,
    /// Poll period of the `energy` group, s (polls are aligned to the clock).
    #[serde(default = "default_poll_s")]
    pub poll_s: u32,
    /// Poll period of the `fast` group, s; absent = not polled.
    #[serde(default)]
    pub fast_poll_s: Option<u32>,
}

pub(crate) const fn default_poll_s() -> u32 {
    60
}

pub(crate) const GROUPS: &[&str] = &["energy", "fast"];

/// Parse one profile document (the shipped `profiles/*.toml`).
pub(crate) fn parse_profile(
    src: &str,
    path: &Path,
) -> Result<crate::profile::Profile, ConfigErrors> {
    let mut ctx = Ctx::new(src, path);
    let (root, syntax) = toml::de::DeTable::parse_recoverable(src);
    for e in &syntax {
        ctx.error(
            e.span().unwrap_or(0..0),
            "",
            format!("TOML syntax: {}", e.message().trim()),
        );
    }
    if !syntax.is_empty() {
        return Err(ConfigErrors(ctx.errors));
    }
    let span = root.span();
    let node = toml::Spanned::new(span, toml::de::DeValue::Table(root.into_inner()));
    match super::document::element::<crate::profile::Profile>(&mut ctx, "profile".to_string(), node)
    {
        Some(p) => {
            check_profile(&mut ctx, &p);
            if ctx.errors.is_empty() {
                Ok(p.value)
            } else {
                Err(ConfigErrors(ctx.errors))
            }
        }
        None => Err(ConfigErrors(ctx.errors)),
    }
}

pub(crate) fn check_profile(ctx: &mut Ctx<'_>, p: &Located<'_, crate::profile::Profile>) {
    let mut seen = BTreeSet::new();
    for (i, f) in p.value.field.iter().enumerate() {
        let idx = i.to_string();
        let at = |k: &str| p.span_of(&["field", &idx, k]);
        let key = |k: &str| p.key(&format!("field[{i}].{k}"));
        if !is_snake_case(&f.quantity) {
            ctx.error(
                at("quantity"),
                key("quantity"),
                format!("quantity names are ASCII snake_case, got `{}`", f.quantity),
            );
        }
        if !seen.insert(f.quantity.clone()) {
            ctx.error(
                at("quantity"),
                key("quantity"),
                format!("quantity `{}` appears twice in the profile", f.quantity),
            );
        }
        if u32::from(f.address) + u32::from(f.dtype.registers()) > 65_536 {
            ctx.error(
                at("address"),
                key("address"),
                "the value runs past register 65535",
            );
        }
        if !f.scale.is_finite() || f.scale == 0.0 || !f.offset.is_finite() {
            ctx.error(
                at("scale"),
                key("scale"),
                "scale must be finite and non-zero, offset finite",
            );
        }
        if !GROUPS.contains(&f.group.as_str()) {
            ctx.error(
                at("group"),
                key("group"),
                format!("unknown rate group `{}`; expected energy or fast", f.group),
            );
        }
    }
}

/// Buses, site profiles and each meter's `modbus` source.
pub(crate) fn validate_modbus(
    ctx: &mut Ctx<'_>,
    buses_rows: &[Located<'_, Bus>],
    meters: &[Located<'_, Meter>],
    profiles_rows: &[Located<'_, crate::profile::Profile>],
) -> (Vec<Bus>, Vec<crate::profile::Profile>) {
    let bus_ids = unique_ids(ctx, buses_rows, |b| &b.id, "bus");
    for b in buses_rows {
        let v = &b.value;
        match v.transport {
            Transport::Tcp | Transport::RtuOverTcp => match v.address.as_deref() {
                None => ctx.error(
                    b.span_of(&["transport"]),
                    b.key("address"),
                    "a TCP bus needs `address = \"host:port\"`",
                ),
                Some(a)
                    if !a
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
                {
                    ctx.error(
                        b.span_of(&["address"]),
                        b.key("address"),
                        format!("`{a}` is not host:port"),
                    );
                }
                Some(_) => {}
            },
            Transport::Rtu => {
                if v.device.is_none() {
                    ctx.error(
                        b.span_of(&["transport"]),
                        b.key("device"),
                        "an RTU bus needs `device = \"/dev/ttyUSB0\"`",
                    );
                }
            }
        }
        if v.concurrency == 0 || (v.concurrency > 1 && v.transport != Transport::Tcp) {
            ctx.error(b.span_of(&["concurrency"]), b.key("concurrency"), "concurrency is at least 1, and only a `tcp` bus may have more than one request in flight");
        }
        if !(1..=125).contains(&v.max_registers) {
            ctx.error(
                b.span_of(&["max_registers"]),
                b.key("max_registers"),
                "Modbus reads 1 to 125 registers at a time",
            );
        }
        if v.timeout_ms == 0 || v.baud == 0 || !(1..=2).contains(&v.stop_bits) {
            ctx.error(
                b.span_of(&[]),
                b.key(""),
                "timeout_ms and baud must be positive, stop_bits 1 or 2",
            );
        }
    }
    let mut profiles = shipped_profiles();
    let mut site_names = BTreeSet::new();
    for p in profiles_rows {
        check_profile(ctx, p);
        if !site_names.insert(p.value.name.clone()) {
            ctx.error(
                p.span_of(&["name"]),
                p.key("name"),
                format!("duplicate profile `{}`", p.value.name),
            );
        }
        profiles.retain(|q| q.name != p.value.name);
        profiles.push(p.value.clone());
    }
    let buses: Vec<Bus> = buses_rows.iter().map(|b| b.value.clone()).collect();
    for m in meters {
        let Some(src) = m.value.modbus.as_ref() else {
            continue;
        };
        if !bus_ids.contains(&src.bus) {
            let names: Vec<&str> = bus_ids.iter().map(String::as_str).collect();
            let hint = if names.is_empty() {
                " (no [[bus]] is defined)".to_string()
            } else {
                suggest(&src.bus, names.iter())
            };
            ctx.error(
                m.span_of(&["modbus", "bus"]),
                m.key("modbus.bus"),
                format!("no bus `{}`{hint}", src.bus),
            );
        }
        let tcp = buses
            .iter()
            .find(|b| b.id == src.bus)
            .is_some_and(|b| b.transport == Transport::Tcp);
        let valid_unit = (1..=247).contains(&src.unit) || (tcp && src.unit == 255);
        if !valid_unit {
            ctx.error(
                m.span_of(&["modbus", "unit"]),
                m.key("modbus.unit"),
                format!("unit id {} is outside 1-247", src.unit),
            );
        }
        if src.poll_s == 0 || src.fast_poll_s == Some(0) {
            ctx.error(
                m.span_of(&["modbus", "poll_s"]),
                m.key("modbus.poll_s"),
                "poll periods are at least 1 s",
            );
        }
        match profiles.iter().find(|p| p.name == src.profile) {
            None => {
                let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
                let hint = suggest(&src.profile, names.iter());
                ctx.error(
                    m.span_of(&["modbus", "profile"]),
                    m.key("modbus.profile"),
                    format!("no profile `{}`{hint}", src.profile),
                );
            }
            Some(p) => {
                let q = m.value.counter_quantity();
                if !p.field.iter().any(|f| f.counter && f.quantity == q) {
                    let counters: Vec<&str> = p
                        .field
                        .iter()
                        .filter(|f| f.counter)
                        .map(|f| f.quantity.as_str())
                        .collect();
                    ctx.error(
                        m.span_of(&["modbus", "profile"]),
                        m.key("modbus.profile"),
                        format!("profile `{}` has no counter field `{q}` (its counters: {}); set the meter's `quantity`", p.name, counters.join(", ")),
                    );
                }
            }
        }
    }
    (buses, profiles)
}
