//! `meterflow probe`: read every register of a profile once and show decoded
//! values next to plausibility checks, so a wrong word order or an off-by-one
//! address is obvious at commissioning.

use std::sync::Arc;
use std::time::Duration;

use meterflow_modbus::bus::{Answer, Link};
use meterflow_modbus::{BusHealth, decode, plan};
use meterflow_model::config::{Bus, Parity, Transport};
use meterflow_model::profile::{Field, Profile};

/// One probed field.
#[derive(Debug, Clone)]
pub struct Probed {
    /// The field.
    pub field: Field,
    /// Raw words (empty if not read).
    pub words: Vec<u16>,
    /// Decoded value, or why not.
    pub value: Result<f64, String>,
    /// Value of the second read (counters only).
    pub again: Option<f64>,
    /// `None` = plausible; otherwise what looks wrong.
    pub check: Option<String>,
}

/// Parse `tcp://host:port`, `rtu-over-tcp://host:port`, `rtu:///dev/ttyUSB0?baud=9600&parity=even`.
pub fn endpoint_bus(endpoint: &str, timeout_ms: u64) -> Result<Bus, String> {
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(|| {
        format!(
            "`{endpoint}`: expected tcp://host:port, rtu-over-tcp://host:port or rtu:///dev/tty…"
        )
    })?;
    let mut bus = Bus {
        id: "probe".into(),
        transport: Transport::Tcp,
        address: None,
        device: None,
        baud: 9600,
        parity: Parity::None,
        stop_bits: 1,
        timeout_ms,
        retries: 0,
        concurrency: 1,
        inter_frame_ms: None,
        max_gap: 10,
        max_registers: 125,
    };
    match scheme {
        "tcp" | "rtu-over-tcp" => {
            bus.transport = if scheme == "tcp" {
                Transport::Tcp
            } else {
                Transport::RtuOverTcp
            };
            bus.address = Some(rest.to_string());
        }
        "rtu" => {
            bus.transport = Transport::Rtu;
            let (dev, query) = rest.split_once('?').unwrap_or((rest, ""));
            bus.device = Some(dev.to_string());
            for kv in query.split('&').filter(|s| !s.is_empty()) {
                match kv.split_once('=') {
                    Some(("baud", v)) => {
                        bus.baud = v
                            .parse()
                            .map_err(|_| format!("baud `{v}` is not a number"))?
                    }
                    Some(("parity", "none")) => bus.parity = Parity::None,
                    Some(("parity", "even")) => bus.parity = Parity::Even,
                    Some(("parity", "odd")) => bus.parity = Parity::Odd,
                    _ => {
                        return Err(format!(
                            "unknown serial option `{kv}` (baud=, parity=none|even|odd)"
                        ));
                    }
                }
            }
        }
        other => {
            return Err(format!(
                "unknown scheme `{other}`: tcp, rtu-over-tcp or rtu"
            ));
        }
    }
    Ok(bus)
}

/// Plausibility of a value by quantity (220/230 V ± 10 %, 50 Hz ± 1, |PF| ≤ 1, counters ≥ 0 and not going back).
pub fn plausibility(field: &Field, value: f64, again: Option<f64>) -> Option<String> {
    let q = field.quantity.as_str();
    let hint = "wrong word order, scale or address?";
    if q.starts_with("voltage") && !(198.0..=253.0).contains(&value) {
        return Some(format!("{value} V is not near 220/230 V: {hint}"));
    }
    if q == "frequency" && !(49.0..=51.0).contains(&value) {
        return Some(format!("{value} Hz is not near 50 Hz: {hint}"));
    }
    if q == "power_factor" && !(-1.0..=1.0).contains(&value) {
        return Some(format!("power factor {value} is outside -1..1: {hint}"));
    }
    if q.starts_with("current") && !(0.0..=10_000.0).contains(&value) {
        return Some(format!("{value} A is implausible: {hint}"));
    }
    if field.counter {
        if value < 0.0 {
            return Some(format!("a counter cannot be negative ({value}): {hint}"));
        }
        if let Some(b) = again
            && b < value
        {
            return Some(format!(
                "counter went down from {value} to {b} between two reads: {hint}"
            ));
        }
    }
    None
}

/// Read every field of `profile` on `unit` twice (2 s apart for counters).
pub async fn probe(bus: &Bus, unit: u8, profile: &Profile, pause: Duration) -> Vec<Probed> {
    let health = Arc::new(BusHealth::default());
    let mut link = Link::new(bus, health);
    let all: Vec<usize> = (0..profile.field.len()).collect();
    // Field by field would hide coalescing problems; read like the poller does,
    // but with no gap bridging so one bad address only costs itself.
    let reads = plan(&profile.field, &all, bus.max_registers, 0);
    let mut out: Vec<Probed> = profile
        .field
        .iter()
        .map(|f| Probed {
            field: f.clone(),
            words: Vec::new(),
            value: Err("not read".into()),
            again: None,
            check: None,
        })
        .collect();
    for read in &reads {
        match link.read(bus, unit, read).await {
            Answer::Words { words, .. } => {
                for &i in &read.fields {
                    let f = &profile.field[i];
                    let off = usize::from(f.address - read.start);
                    let w = words[off..off + usize::from(f.dtype.registers())].to_vec();
                    out[i].value = decode(f, &w).map_err(|e| format!("{} ({e:?})", e.code()));
                    out[i].words = w;
                }
            }
            Answer::Exception(code) => {
                for &i in &read.fields {
                    out[i].value = Err(format!("exception {}", u8::from(code)));
                }
            }
            Answer::NoResponse => {
                for &i in &read.fields {
                    out[i].value = Err("no response".into());
                }
            }
        }
    }
    tokio::time::sleep(pause).await;
    for read in &reads {
        if !read.fields.iter().any(|&i| profile.field[i].counter) {
            continue;
        }
        if let Answer::Words { words, .. } = link.read(bus, unit, read).await {
            for &i in &read.fields {
                let f = &profile.field[i];
                let off = usize::from(f.address - read.start);
                out[i].again = decode(f, &words[off..off + usize::from(f.dtype.registers())]).ok();
            }
        }
    }
    for p in &mut out {
        p.check = match &p.value {
            Ok(v) => plausibility(&p.field, *v, p.again),
            Err(e) => Some(e.clone()),
        };
    }
    out
}

/// Print the probe table; returns the number of fields that need a look.
pub fn print(unit: u8, profile: &Profile, rows: &[Probed]) -> usize {
    println!(
        "unit {unit}, profile {} v{} ({})",
        profile.name, profile.version, profile.description
    );
    println!(
        "{:<16} {:>7} {:<9} {:<20} {:>18} {:<6} check",
        "quantity", "address", "type", "raw", "value", "unit"
    );
    let mut bad = 0;
    for r in rows {
        let raw: Vec<String> = r.words.iter().map(|w| format!("{w:04X}")).collect();
        let value = match &r.value {
            Ok(v) => format!("{v:.4}"),
            Err(_) => "-".to_string(),
        };
        let check = match &r.check {
            None => "ok".to_string(),
            Some(c) => {
                bad += 1;
                format!("CHECK: {c}")
            }
        };
        println!(
            "{:<16} {:>7} {:<9} {:<20} {:>18} {:<6} {check}",
            r.field.quantity,
            format!("0x{:04X}", r.field.address),
            format!("{:?}/{:?}", r.field.dtype, r.field.order).to_lowercase(),
            raw.join(" "),
            value,
            r.field.unit
        );
    }
    bad
}
