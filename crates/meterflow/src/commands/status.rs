//! `meterflow status`: every meter's last reading, its age and state, the
//! outbox and the alerts, from the store; parked meters and failed polls
//! from the running process's `/metrics` when `[api]` is set.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use meterflow_runtime::status::LiveMeter;

/// Print the status of the site of `config`, as a table or JSON.
pub(crate) fn run(
    config: &std::path::Path,
    json: bool,
    at: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (site, now) = match super::site_at(config, at) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    if !site.store_path().exists() {
        eprintln!(
            "error: no store at {} yet: `meterflow run` (or `import`) creates it",
            site.store_path().display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let live = site.api.as_ref().and_then(|a| live_from_metrics(&a.listen));
    let view = meterflow_runtime::status::view(&site, now, live.as_ref())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", meterflow_runtime::status::table(&site, &view));
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET path` on the API of `listen` (a wildcard address is reached on
/// loopback): status code and body, `None` when nothing answers.
fn http_get(listen: &str, path: &str) -> Option<(u16, String)> {
    let addr: std::net::SocketAddr = listen.parse().ok()?;
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((code, body.to_string()))
}

/// Parked state and failed polls per meter from a running process's
/// `/metrics` (`None`: nothing answers there).
fn live_from_metrics(listen: &str) -> Option<BTreeMap<String, LiveMeter>> {
    match http_get(listen, "/metrics")? {
        (200, body) => Some(parse_metrics(&body)),
        _ => None,
    }
}

/// `meterflow ready`: exit 0 when the running process's `/readyz` says
/// ready (a container health check; the runtime image has no curl).
pub(crate) fn ready(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let Some(api) = &site.api else {
        eprintln!("error: {} has no [api]: nothing to ask", config.display());
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    };
    match http_get(&api.listen, "/readyz") {
        Some((200, body)) => {
            println!("{}", body.trim());
            Ok(ExitCode::SUCCESS)
        }
        Some((code, body)) => {
            println!("not ready ({code}): {}", body.trim());
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!("not running: nothing answers on {}", api.listen);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The per-meter poll families of an exposition text.
fn parse_metrics(text: &str) -> BTreeMap<String, LiveMeter> {
    let mut out: BTreeMap<String, LiveMeter> = BTreeMap::new();
    for line in text.lines() {
        let (name, rest) = match line.split_once('{') {
            Some(x) => x,
            None => continue,
        };
        let field: fn(&mut LiveMeter, u64) = match name {
            "meterflow_meter_consecutive_failures" => |l, v| l.consecutive_failures = v,
            "meterflow_meter_failed_polls_total" => |l, v| l.failed_polls = v,
            _ => continue,
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let meter = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix("meter=\""))
            .and_then(|v| v.strip_suffix('"'));
        let value = value.trim().parse::<f64>().ok();
        if let (Some(m), Some(v)) = (meter, value) {
            field(out.entry(m.to_string()).or_default(), v as u64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_families_are_read_back() {
        let text = "# HELP x\nmeterflow_meter_consecutive_failures{bus=\"b\",meter=\"m1\"} 3\nmeterflow_meter_failed_polls_total{bus=\"b\",meter=\"m1\"} 7\nmeterflow_meter_failed_polls_total{bus=\"b\",meter=\"m2\"} 0\nmeterflow_bus_requests_total{bus=\"b\"} 9\n";
        let m = parse_metrics(text);
        assert_eq!(
            m["m1"],
            LiveMeter {
                consecutive_failures: 3,
                failed_polls: 7
            }
        );
        assert_eq!(m["m2"], LiveMeter::default());
        assert_eq!(m.len(), 2);
    }
}
