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
    let metrics = site
        .api
        .as_ref()
        .and_then(|a| match http_get(&a.listen, "/metrics")? {
            (200, body) => Some(body),
            _ => None,
        });
    let live = metrics.as_deref().map(parse_metrics);
    let failing = metrics.as_deref().map(parse_items).unwrap_or_default();
    let view = meterflow_runtime::status::view(&site, now, live.as_ref())?;
    if json {
        let mut v = serde_json::to_value(&view)?;
        if let Some(o) = v.as_object_mut() {
            let items: Vec<serde_json::Value> = failing
                .iter()
                .map(|((meter, item), p)| {
                    serde_json::json!({
                        "meter": meter, "item": item, "bad_checksums": p.bad_checksums,
                        "timeouts": p.timeouts, "error_replies": p.error_replies,
                    })
                })
                .collect();
            o.insert(
                "failing_identifiers".into(),
                serde_json::Value::Array(items),
            );
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", meterflow_runtime::status::table(&site, &view));
        if !failing.is_empty() {
            println!("identifiers with failures since the process started (DL/T 645, CJ/T 188):");
            for ((meter, item), p) in &failing {
                let mut what = Vec::new();
                if p.bad_checksums > 0 {
                    what.push(format!("{} bad checksum(s)", p.bad_checksums));
                }
                if p.timeouts > 0 {
                    what.push(format!("{} without answer", p.timeouts));
                }
                for (e, n) in &p.error_replies {
                    what.push(format!(
                        "{n} error repl{} \"{e}\"",
                        if *n == 1 { "y" } else { "ies" }
                    ));
                }
                println!("  {meter:<18} {item:<10} {}", what.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What went wrong with one identifier of one serial meter.
#[derive(Debug, Default, PartialEq)]
struct Problems {
    bad_checksums: u64,
    timeouts: u64,
    error_replies: BTreeMap<String, u64>,
}

/// The label `key` of an exposition line's labels.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

/// The per-identifier failure families of an exposition text, by (meter, item).
fn parse_items(text: &str) -> BTreeMap<(String, String), Problems> {
    let mut out: BTreeMap<(String, String), Problems> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(n) = value.trim().parse::<f64>() else {
            continue;
        };
        let n = n as u64;
        if n == 0 {
            continue;
        }
        let (Some(meter), Some(item)) = (label(labels, "meter"), label(labels, "item")) else {
            continue;
        };
        let key = (meter.to_string(), item.to_string());
        match name {
            "meterflow_meter_item_bad_checksums_total" => {
                out.entry(key).or_default().bad_checksums = n
            }
            "meterflow_meter_item_timeouts_total" => out.entry(key).or_default().timeouts = n,
            "meterflow_meter_item_error_replies_total" => {
                if let Some(e) = label(labels, "error") {
                    out.entry(key)
                        .or_default()
                        .error_replies
                        .insert(e.to_string(), n);
                }
            }
            _ => {}
        }
    }
    out
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
            "meterflow_meter_polls_due_total" => |l, v| l.polls_due = v,
            "meterflow_meter_polls_taken_total" => |l, v| l.polls_taken = v,
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
        let text = "# HELP x\nmeterflow_meter_consecutive_failures{bus=\"b\",meter=\"m1\"} 3\nmeterflow_meter_failed_polls_total{bus=\"b\",meter=\"m1\"} 7\nmeterflow_meter_polls_due_total{bus=\"b\",meter=\"m1\"} 12\nmeterflow_meter_polls_taken_total{bus=\"b\",meter=\"m1\"} 9\nmeterflow_meter_failed_polls_total{bus=\"b\",meter=\"m2\"} 0\nmeterflow_bus_requests_total{bus=\"b\"} 9\n";
        let m = parse_metrics(text);
        assert_eq!(
            m["m1"],
            LiveMeter {
                consecutive_failures: 3,
                failed_polls: 7,
                polls_due: 12,
                polls_taken: 9,
            }
        );
        assert_eq!(m["m2"], LiveMeter::default());
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn failing_identifiers_are_read_back() {
        let text = "meterflow_meter_item_bad_checksums_total{bus=\"b\",meter=\"e1\",item=\"00010000\"} 2\n\
                    meterflow_meter_item_timeouts_total{bus=\"b\",meter=\"e1\",item=\"00010000\"} 0\n\
                    meterflow_meter_item_error_replies_total{bus=\"b\",meter=\"e2\",item=\"02030000\",error=\"no requested data (0x02)\"} 7\n\
                    meterflow_meter_item_answers_total{bus=\"b\",meter=\"e3\",item=\"00010000\"} 9\n";
        let p = parse_items(text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[&("e1".into(), "00010000".into())].bad_checksums, 2);
        assert_eq!(
            p[&("e2".into(), "02030000".into())].error_replies["no requested data (0x02)"],
            7
        );
    }
}
