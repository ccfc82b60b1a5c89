//! `meterflow probe`: read every register of a profile once and show decoded
//! values next to plausibility checks, so a wrong word order or an off-by-one
//! address is obvious at commissioning.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use meterflow_modbus::bus::{Answer, Link};
use meterflow_modbus::{BusHealth, Read, decode, plan, split};
use meterflow_model::config::{Bus, Parity, Transport};
use meterflow_model::profile::{Field, Profile};

/// One probed field.
#[derive(Debug, Clone)]
pub(crate) struct Probed {
    /// The field.
    pub(crate) field: Field,
    /// Raw words (empty if not read).
    pub(crate) words: Vec<u16>,
    /// Decoded value, or why not.
    pub(crate) value: Result<f64, String>,
    /// Value of the second read (counters only).
    pub(crate) again: Option<f64>,
    /// `None` = plausible; otherwise what looks wrong.
    pub(crate) check: Option<String>,
    /// The value on the primary side when the meter reports its PT and CT
    /// ratios (energy and power × PT × CT, voltage × PT, current × CT).
    pub(crate) primary: Option<f64>,
}

/// The factor from a secondary-side value of `quantity` to the primary side.
fn primary_factor(quantity: &str, pt: f64, ct: f64) -> Option<f64> {
    if quantity.starts_with("energy")
        || (quantity.starts_with("power") && quantity != "power_factor")
    {
        Some(pt * ct)
    } else if quantity.starts_with("voltage") {
        Some(pt)
    } else if quantity.starts_with("current") {
        Some(ct)
    } else {
        None
    }
}

/// Parse `tcp://host:port`, `rtu-over-tcp://host:port`, `rtu:///dev/ttyUSB0?baud=9600&parity=even`.
pub(crate) fn endpoint_bus(endpoint: &str, timeout_ms: u64) -> Result<Bus, String> {
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
pub(crate) fn plausibility(field: &Field, value: f64, again: Option<f64>) -> Option<String> {
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

/// Read every field of `profile` on `unit` twice (2 s apart for counters),
/// coalesced like the poller and split the same way when the device refuses
/// a block (exception 2 or 3). `Err` when no device answers at the unit.
pub(crate) async fn probe(
    bus: &Bus,
    unit: u8,
    profile: &Profile,
    pause: Duration,
) -> Result<Vec<Probed>, String> {
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
            primary: None,
        })
        .collect();
    let mut queue: Vec<Read> = reads.iter().rev().cloned().collect();
    let mut done: Vec<Read> = Vec::new();
    let mut answered = false;
    while let Some(read) = queue.pop() {
        match link.read(bus, unit, &read).await {
            Answer::Words { words, .. } => {
                answered = true;
                for &i in &read.fields {
                    let f = &profile.field[i];
                    let off = usize::from(f.address - read.start);
                    let Some(w) = words.get(off..off + usize::from(f.dtype.registers())) else {
                        continue;
                    };
                    out[i].value = decode(f, w).map_err(|e| format!("{} ({e:?})", e.code()));
                    out[i].words = w.to_vec();
                }
                done.push(read);
            }
            // 10/11: the gateway has no path to, or no answer from, the unit.
            Answer::Exception(code) if !answered && matches!(u8::from(code), 10 | 11) => {
                return Err(format!(
                    "no device answers at unit {unit} (the gateway says exception {})",
                    u8::from(code)
                ));
            }
            Answer::NoResponse if !answered => {
                return Err(format!("no device answers at unit {unit}"));
            }
            Answer::Exception(code) => {
                let c = u8::from(code);
                if matches!(c, 2 | 3)
                    && let Some((a, b)) = split(&profile.field, &read)
                {
                    queue.push(b);
                    queue.push(a);
                    continue;
                }
                for &i in &read.fields {
                    out[i].value = Err(format!("exception {c}"));
                }
            }
            Answer::NoResponse => {
                for &i in &read.fields {
                    out[i].value = Err("no response".into());
                }
            }
        }
    }
    // Every read refused with a device failure (4) or a gateway error: some
    // gateways (and simulators) answer so for a unit with nothing behind it.
    if !answered {
        let codes: std::collections::BTreeSet<&str> = out
            .iter()
            .filter_map(|p| p.value.as_ref().err())
            .map(String::as_str)
            .collect();
        if let [only] = codes.into_iter().collect::<Vec<_>>()[..]
            && matches!(only, "exception 4" | "exception 10" | "exception 11")
        {
            return Err(format!(
                "no device answers at unit {unit}: every read got {only}"
            ));
        }
    }
    tokio::time::sleep(pause).await;
    for read in &done {
        if !read.fields.iter().any(|&i| profile.field[i].counter) {
            continue;
        }
        if let Answer::Words { words, .. } = link.read(bus, unit, read).await {
            for &i in &read.fields {
                let f = &profile.field[i];
                let off = usize::from(f.address - read.start);
                if let Some(w) = words.get(off..off + usize::from(f.dtype.registers())) {
                    out[i].again = decode(f, w).ok();
                }
            }
        }
    }
    let ratio = |q: &str| {
        out.iter()
            .find(|p| p.field.quantity == q)
            .and_then(|p| p.value.as_ref().ok().copied())
            .filter(|v| *v > 0.0)
    };
    if let (Some(pt), Some(ct)) = (ratio("pt_ratio"), ratio("ct_ratio")) {
        for p in &mut out {
            if let (Ok(v), Some(k)) = (&p.value, primary_factor(&p.field.quantity, pt, ct)) {
                p.primary = Some(v * k);
            }
        }
    }
    for p in &mut out {
        p.check = match &p.value {
            Ok(v) => plausibility(&p.field, *v, p.again),
            Err(e) => Some(e.clone()),
        };
    }
    Ok(out)
}

/// Print the probe table; returns the number of fields that need a look.
pub(crate) fn print(unit: u8, profile: &Profile, rows: &[Probed]) -> usize {
    println!(
        "unit {unit}, profile {} v{} ({})",
        profile.name, profile.version, profile.description
    );
    let primary = rows.iter().any(|r| r.primary.is_some());
    println!(
        "{:<16} {:>7} {:<9} {:<20} {:>18} {:<6} {}check",
        "quantity",
        "address",
        "type",
        "raw",
        "value",
        "unit",
        if primary {
            format!("{:>18} ", "primary side")
        } else {
            String::new()
        }
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
        let side = match (primary, r.primary) {
            (false, _) => String::new(),
            (true, Some(v)) => format!("{v:>18.4} "),
            (true, None) => format!("{:>18} ", ""),
        };
        println!(
            "{:<16} {:>7} {:<9} {:<20} {:>18} {:<6} {side}{check}",
            r.field.quantity,
            format!("0x{:04X}", r.field.address),
            format!("{:?}/{:?}", r.field.dtype, r.field.order).to_lowercase(),
            raw.join(" "),
            value,
            r.field.unit
        );
    }
    if let (Some(pt), Some(ct)) = (
        rows.iter().find(|r| r.field.quantity == "pt_ratio"),
        rows.iter().find(|r| r.field.quantity == "ct_ratio"),
    ) && let (Ok(pt), Ok(ct)) = (&pt.value, &ct.value)
        && primary
    {
        println!(
            "PT {pt} × CT {ct}: the meter counts on the secondary side; give it `multiplier = {}` in the site file",
            pt * ct
        );
    }
    bad
}

/// What to probe on a DL/T 645 / CJ/T 188 line.
#[derive(Debug, Clone)]
pub(crate) enum SerialTarget {
    /// Find the address of the only DL/T 645 meter on the line (broadcast 0x13).
    Discover,
    /// Read every shipped identifier of a DL/T 645 meter.
    Dlt645([u8; 6]),
    /// Read the current data of a CJ/T 188 meter.
    Cjt188 {
        /// Type byte.
        meter_type: u8,
        /// Address, wire order.
        address: [u8; 7],
        /// The layout to try first (the other DI order is tried after an error).
        layout: meterflow_cnproto::cjt188::Layout,
    },
}

/// Plausibility of a DL/T 645 quantity.
fn plausible(quantity: &str, v: f64) -> Option<String> {
    let (lo, hi) = match quantity {
        q if q.starts_with("voltage") => (80.0, 300.0),
        q if q.starts_with("current") => (-2000.0, 2000.0),
        "frequency" => (45.0, 65.0),
        "power_factor" => (-1.0, 1.0),
        q if q.starts_with("energy") => (0.0, 99_999_999.0),
        _ => (f64::MIN, f64::MAX),
    };
    (!(lo..=hi).contains(&v)).then(|| format!("outside {lo}..{hi}"))
}

/// Why a DL/T 645 / CJ/T 188 exchange gave no frame, for an installer.
fn unheard(h: &meterflow_modbus::cnbus::Heard) -> &'static str {
    use meterflow_modbus::cnbus::Heard;
    match h {
        Heard::BadChecksum => {
            "bad checksum: the meter answers, garbled; check baud rate and parity (2400 8E1 is usual), wiring and termination"
        }
        Heard::Garbled => "bytes on the line, but no reply from this address",
        Heard::Failed => "the line cannot be opened, or the connection failed",
        Heard::Silent | Heard::Frame(_) => "no answer",
    }
}

/// Probe a DL/T 645 or CJ/T 188 meter: one line per item, and the number of
/// items that need a look.
pub(crate) async fn probe_serial(bus: &Bus, target: &SerialTarget) -> (Vec<String>, usize) {
    use meterflow_cnproto::frame::Kind;
    use meterflow_cnproto::{bcd, cjt188, dlt645};
    use meterflow_modbus::cnbus::Heard;
    let mut link = meterflow_modbus::cnbus::RawLink::new(bus, Arc::new(BusHealth::default()));
    let mut lines = Vec::new();
    let mut bad = 0;
    match target {
        SerialTarget::Discover => {
            let req = dlt645::read_address_request(true);
            let g = link.gather(bus, &req, Kind::Dlt645).await;
            let mut found: Vec<String> = g
                .frames
                .iter()
                .filter_map(|f| dlt645::parse(f).ok())
                .filter(|fr| fr.control == 0x93)
                .filter_map(|fr| dlt645::address_reply(&fr).ok())
                .map(|a| bcd::address_text(&a))
                .collect();
            found.dedup();
            let overlapped = g.bad > 0 || (g.bytes > 0 && g.frames.is_empty());
            if g.failed {
                bad += 1;
                lines.push("the line cannot be opened, or the connection failed".into());
            } else if overlapped || found.len() > 1 {
                bad += 1;
                let heard = if found.is_empty() {
                    String::new()
                } else {
                    format!(" (readable among them: {})", found.join(", "))
                };
                lines.push(format!(
                    "several meters answered at once (collision){heard}: broadcast discovery works with one meter on the line. \
                     Disconnect the others, or read each meter by the address on its nameplate with --dlt645 ADDRESS."
                ));
            } else if let Some(a) = found.first() {
                lines.push(format!("DL/T 645 meter at address {a}"));
            } else if g.bytes == 0 {
                bad += 1;
                lines.push("no answer to the broadcast read-address (0x13): no DL/T 645 meter on the line, or wrong baud rate / parity".into());
            } else {
                bad += 1;
                lines.push("a reply that is not a read-address answer".into());
            }
        }
        SerialTarget::Dlt645(a) => {
            for item in dlt645::ITEMS {
                let req = dlt645::read_request(a, item.di, true);
                let accept = |f: &[u8]| dlt645::parse(f).is_ok_and(|fr| &fr.address == a);
                let line = match link.exchange(bus, &req, Kind::Dlt645, &accept).await {
                    Heard::Silent => {
                        // A silent meter: the other items would time out too.
                        bad += 1;
                        lines.push(format!(
                            "{:08X}  {:<18} no answer (stopping)",
                            item.di, item.quantity
                        ));
                        break;
                    }
                    Heard::Frame(f) => match dlt645::parse(&f)
                        .and_then(|fr| dlt645::data_reply(&fr, a, item.di))
                        .and_then(|d| dlt645::value(&d, item.format))
                    {
                        Ok(v) => match plausible(item.quantity, v) {
                            None => format!("{v} {}", item.unit),
                            Some(why) => {
                                bad += 1;
                                format!("{v} {}  ← {why}", item.unit)
                            }
                        },
                        // A meter without the item says so; not a fault.
                        Err(dlt645::ReplyError::Meter(code)) => format!("meter answers: {code}"),
                        Err(e) => {
                            bad += 1;
                            e.to_string()
                        }
                    },
                    other => {
                        bad += 1;
                        unheard(&other).to_string()
                    }
                };
                lines.push(format!("{:08X}  {:<18} {line}", item.di, item.quantity));
            }
        }
        SerialTarget::Cjt188 {
            meter_type,
            address,
            layout,
        } => {
            lines.push(format!(
                "address     {} on the wire (nameplate {})",
                cjt188::address_text(address),
                cjt188::nameplate_text(address)
            ));
            let accept = |f: &[u8]| cjt188::parse(f).is_ok_and(|fr| &fr.address == address);
            let ask = |l: cjt188::Layout| cjt188::read_request(*meter_type, address, l.di, 0, true);
            let di_text = |l: &cjt188::Layout| format!("{:02X}{:02X}", l.di[0], l.di[1]);
            let mut tried = Vec::new();
            let mut answer = None;
            for l in [*layout, layout.other_di_order()] {
                let heard = link.exchange(bus, &ask(l), Kind::Cjt188, &accept).await;
                let result = match &heard {
                    Heard::Frame(f) => cjt188::parse(f)
                        .and_then(|fr| cjt188::data_reply(&fr, *meter_type, address, l))
                        .map_err(|e| match e {
                            cjt188::ReplyError::Meter(st) => {
                                format!("meter error, status {}", cjt188::status_of(st, l.status))
                            }
                            e => e.to_string(),
                        }),
                    other => Err(unheard(other).to_string()),
                };
                match result {
                    Ok(r) => {
                        answer = Some((l, r));
                        break;
                    }
                    Err(why) => {
                        let checksum = heard == Heard::BadChecksum;
                        tried.push(format!("DI {}: {why}", di_text(&l)));
                        if checksum {
                            // Garbled replies say nothing about the DI order.
                            break;
                        }
                    }
                }
            }
            lines.extend(tried.iter().cloned());
            match answer {
                None => bad += 1,
                Some((l, r)) => {
                    if l.di != layout.di {
                        lines.push(format!(
                            "DI {}: answers. This meter wants the other byte order: set `di = \"{}\"` on it",
                            di_text(&l),
                            di_text(&l)
                        ));
                    }
                    lines.push(format!("cumulative  {} {}", r.cumulative, r.unit));
                    if let Some(flow) = r.flow_m3 {
                        lines.push(format!("flow        {flow} m3"));
                    }
                    lines.push(format!("valve       {:?}", r.status.valve));
                    lines.push(format!(
                        "battery     {}",
                        if r.status.battery_low { "LOW" } else { "ok" }
                    ));
                    // The same bits read the other way, for a model that differs.
                    let other = match l.status {
                        cjt188::StatusBits::Valve01Battery2 => {
                            ("collector", cjt188::StatusBits::Battery5Valve67)
                        }
                        cjt188::StatusBits::Battery5Valve67 => {
                            ("standard", cjt188::StatusBits::Valve01Battery2)
                        }
                    };
                    lines.push(format!(
                        "status      {}; read with the `{}` layout: {}",
                        r.status,
                        other.0,
                        cjt188::status_of(r.status.raw, other.1)
                    ));
                    if r.status.battery_low || r.status.valve == cjt188::Valve::Fault {
                        bad += 1;
                    }
                }
            }
        }
    }
    (lines, bad)
}

/// The CJ/T 188 options of `probe`.
pub(crate) struct CjtOptions {
    /// `--meter-type`.
    pub(crate) meter_type: String,
    /// `--layout`.
    pub(crate) layout: String,
    /// `--di-order`.
    pub(crate) di_order: Option<String>,
    /// `--config` (for `[[cjt188_layout]]`s).
    pub(crate) config: Option<std::path::PathBuf>,
}

pub(crate) async fn probe_serial_cmd(
    endpoint: &str,
    dlt645: Option<&str>,
    cjt188: Option<&str>,
    cjt: &CjtOptions,
    timeout_ms: u64,
) -> anyhow::Result<ExitCode> {
    use super::probe::SerialTarget;
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        Ok(ExitCode::from(crate::EXIT_CONFIG))
    };
    let mut bus = match super::probe::endpoint_bus(endpoint, timeout_ms) {
        Ok(b) => b,
        Err(e) => return usage(format!("--endpoint {e}")),
    };
    if bus.transport == meterflow_model::config::Transport::Tcp {
        bus.transport = meterflow_model::config::Transport::RtuOverTcp;
    }
    let target = match (dlt645, cjt188) {
        (Some("discover"), None) => SerialTarget::Discover,
        (Some(a), None) => match meterflow_cnproto::bcd::address_lsb_first(a, 6)
            .and_then(|v| <[u8; 6]>::try_from(v).ok())
        {
            Some(a) if a.len() == 6 => SerialTarget::Dlt645(a),
            _ => return usage(format!("--dlt645 `{a}` is not a 12-digit address")),
        },
        (None, Some(a)) => {
            let Some(address) = meterflow_cnproto::cjt188::address(a) else {
                return usage(format!("--cjt188 `{a}` is not 14 hex digits"));
            };
            let t = match cjt.meter_type.as_str() {
                "cold_water" => 0x10,
                "hot_water" => 0x11,
                "heat" => 0x20,
                "cooling" => 0x21,
                "gas" => 0x30,
                other => {
                    return usage(format!(
                        "--meter-type `{other}`: cold_water, hot_water, heat, cooling or gas"
                    ));
                }
            };
            let layouts = match &cjt.config {
                Some(c) => match super::load_site(c) {
                    Ok(site) => site.cjt188_layouts,
                    Err(code) => return Ok(code),
                },
                None => Vec::new(),
            };
            let Some(named) = layouts
                .into_iter()
                .chain(meterflow_model::config::shipped_cjt188_layouts())
                .find(|l| l.name == cjt.layout)
            else {
                return usage(format!(
                    "--layout `{}`: standard, collector, or a [[cjt188_layout]] of --config",
                    cjt.layout
                ));
            };
            let mut layout = named.to_layout();
            if let Some(d) = &cjt.di_order {
                match meterflow_model::config::di_bytes(d) {
                    Some(di) => layout.di = di,
                    None => return usage(format!("--di-order `{d}`: 901F or 1F90")),
                }
            }
            SerialTarget::Cjt188 {
                meter_type: t,
                address,
                layout,
            }
        }
        _ => return usage("give one of --dlt645 or --cjt188".into()),
    };
    let (lines, bad) = super::probe::probe_serial(&bus, &target).await;
    for l in &lines {
        println!("{l}");
    }
    if bad > 0 {
        println!("{bad} item(s) need a look");
        return Ok(ExitCode::FAILURE);
    }
    println!("all items plausible");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn probe_cmd(
    endpoint: &str,
    unit: u8,
    profile: &str,
    config: Option<&std::path::Path>,
    timeout_ms: u64,
) -> anyhow::Result<ExitCode> {
    let profiles = match config {
        Some(c) => match super::load_site(c) {
            Ok(site) => site.profiles,
            Err(code) => return Ok(code),
        },
        None => meterflow_model::config::shipped_profiles(),
    };
    let Some(p) = profiles.iter().find(|p| p.name == profile) else {
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        let hint = if config.is_none() {
            " (a site's own [[profile]]s need --config SITE_FILE)"
        } else {
            ""
        };
        eprintln!(
            "error: no profile `{profile}`; known: {}{hint}",
            names.join(", ")
        );
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    };
    let bus = match super::probe::endpoint_bus(endpoint, timeout_ms) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: --endpoint {e}");
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        }
    };
    let rows = match super::probe::probe(&bus, unit, p, std::time::Duration::from_secs(2)).await {
        Ok(rows) => rows,
        Err(why) => {
            println!("{why}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let bad = super::probe::print(unit, p, &rows);
    if bad > 0 {
        println!("{bad} field(s) need a look");
        return Ok(ExitCode::FAILURE);
    }
    println!("all fields plausible");
    Ok(ExitCode::SUCCESS)
}
