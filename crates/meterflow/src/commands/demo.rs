//! `meterflow demo`: the simulator and the pipeline together on loopback,
//! with the bundled demo site.

use std::time::Duration;

use anyhow::Context;
use meterflow_model::Site;
use meterflow_sim::SimMeter;
use meterflow_sim::server::serve;
use meterflow_sim::site::bank_resuming;

/// `meterflow demo`: simulator + pipeline on loopback, store in `data/demo/`.
pub(crate) async fn demo(seconds: Option<u64>) -> anyhow::Result<std::process::ExitCode> {
    let dir = std::path::Path::new("data/demo");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("site.toml");
    std::fs::write(&config, meterflow_sim::site::DEMO_SITE)
        .with_context(|| format!("writing {}", config.display()))?;
    let mut site = match super::load_site(&config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the simulator")?;
    let addr = listener.local_addr()?;
    for bus in &mut site.buses {
        bus.address = Some(addr.to_string());
    }
    // The embedded broker on a free port, and the subscription pointed at it.
    let mqtt_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port();
    if let Some(b) = site.broker.as_mut() {
        b.listen = format!("127.0.0.1:{mqtt_port}");
    }
    for m in &mut site.mqtt {
        m.port = mqtt_port;
    }
    // The overview page on 127.0.0.1:8080 when free, else on any free port.
    let api_port = std::net::TcpListener::bind("127.0.0.1:8080")
        .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .and_then(|l| l.local_addr())
        .context("finding a port for the overview page")?
        .port();
    if let Some(a) = site.api.as_mut() {
        a.listen = format!("127.0.0.1:{api_port}");
        if let Some(f) = &a.tokens_file {
            let path = site.path.parent().map_or_else(|| f.clone(), |d| d.join(f));
            if !path.exists() {
                std::fs::write(
                    &path,
                    "# ROLE sha256:HEX, one per line (meterflow token --role ROLE)\n",
                )
                .with_context(|| format!("writing {}", path.display()))?;
            }
            // A demo without tokens gets one per role, so that every page can
            // be tried: hashes in the tokens file, the tokens themselves in
            // `demo-tokens.txt` beside it (both owner-only).
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if !text
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            {
                demo_tokens(&site, &path)?;
            }
            // The demo's own file (also one an older demo left readable).
            meterflow_model::secret_file::restrict(&path)
                .with_context(|| format!("restricting {}", path.display()))?;
        }
    }
    // Started again against the kept store, every meter carries on from its
    // last stored value (no counter resets, no jump in consumption).
    let last = last_values(&site);
    let bank = bank_resuming(&site, "sim", &last);
    let mut pushed = pushed_meters(&site);
    let now = meterflow_model::clock::now_ms();
    for p in &mut pushed {
        let id = p.meter.id.clone();
        meterflow_sim::site::resume(&mut p.meter, last.get(&id), site.tz, now);
    }
    if !last.is_empty() {
        println!(
            "carrying on from the kept store: {} meters resume from their last reading",
            last.len()
        );
    }
    println!(
        "meterflow demo: {} simulated meters on Modbus TCP {addr}, {} on MQTT (embedded broker 127.0.0.1:{mqtt_port}); store {}",
        bank.devices.len(),
        pushed.len(),
        site.store_path().display()
    );
    let publisher = tokio::spawn(meterflow_sim::mqtt::publish_loop(
        "127.0.0.1",
        mqtt_port,
        "meterflow-demo-sim",
        pushed,
        Duration::from_secs(5),
        site.tz,
    ));
    if let Some(a) = &site.api {
        println!("overview page: http://127.0.0.1:{api_port}/");
        let tokens = a
            .tokens_file
            .as_ref()
            .and_then(|f| site.path.parent().map(|d| d.join(f)))
            .map(|p| p.with_file_name(DEMO_TOKENS));
        if let Some(t) = tokens.filter(|t| t.exists()) {
            println!(
                "sign in (clerks' ledgers, drill-down, assessment): http://127.0.0.1:{api_port}/login with a token from {}",
                t.display()
            );
        }
    }
    println!(
        "polling every few seconds; Ctrl-C to stop{}",
        seconds
            .map(|s| format!(" (stopping after {s} s)"))
            .unwrap_or_default()
    );
    let sim = tokio::spawn(serve(listener, bank));
    let summary = meterflow_runtime::pipeline::run(
        site.clone(),
        meterflow_runtime::pipeline::RunOptions {
            live: true,
            duration: seconds.map(Duration::from_secs),
            stop: None,
            committed: None,
            api: Some(meterflow_http::starter()),
            status_every: None,
        },
    )
    .await?;
    sim.abort();
    publisher.abort();
    for (id, m) in &summary.mqtt {
        use std::sync::atomic::Ordering::Relaxed;
        println!(
            "mqtt {id}: {} messages received, {} acknowledged after commit",
            m.received.load(Relaxed),
            m.acked.load(Relaxed)
        );
    }
    println!(
        "stored {} readings ({} refused)",
        summary.stored, summary.refused
    );
    for (bus, h) in &summary.buses {
        use std::sync::atomic::Ordering::Relaxed;
        println!(
            "bus {bus}: {} requests, {} ok, {} timeouts, {} exceptions, {} transport errors",
            h.requests.load(Relaxed),
            h.ok.load(Relaxed),
            h.timeouts.load(Relaxed),
            h.exceptions.load(Relaxed),
            h.transport_errors.load(Relaxed)
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Each meter's last stored counter reading, when the store exists.
fn last_values(site: &Site) -> std::collections::HashMap<String, (i64, f64)> {
    let mut out = std::collections::HashMap::new();
    if !site.store_path().exists() {
        return out;
    }
    let Ok(reader) = meterflow_store::Reader::open(&site.store_path()) else {
        return out;
    };
    for m in &site.meters {
        if let Ok(Some(series)) = reader.series_id(&m.id, m.counter_quantity())
            && let Ok(Some(last)) = reader.last_value(series)
        {
            out.insert(m.id.clone(), last);
        }
    }
    out
}

/// Meters of the demo that push over MQTT: those without a Modbus source.
fn pushed_meters(site: &Site) -> Vec<meterflow_sim::mqtt::Pushed> {
    site.meters
        .iter()
        .filter(|m| m.modbus.is_none())
        .map(|m| {
            let building = m
                .serves
                .building
                .clone()
                .or_else(|| {
                    m.serves
                        .zone
                        .as_ref()
                        .and_then(|z| site.zones.iter().find(|x| &x.id == z))
                        .map(|z| z.building.clone())
                })
                .unwrap_or_else(|| "site".to_string());
            meterflow_sim::mqtt::Pushed {
                topic: format!("meters/{building}/{}/reading", m.id),
                meter: SimMeter::from_meter(m),
            }
        })
        .collect()
}

/// The demo's tokens in plain text, beside its tokens file.
const DEMO_TOKENS: &str = "demo-tokens.txt";

/// One token per role for the demo: hashes appended to `tokens_file`, the
/// tokens written owner-only to `demo-tokens.txt` beside it.
fn demo_tokens(site: &meterflow_model::Site, tokens_file: &std::path::Path) -> anyhow::Result<()> {
    let mut roles = vec![
        "manager".to_string(),
        "clerk:space".into(),
        "clerk:vehicles".into(),
        "clerk:waste".into(),
        "clerk:assets".into(),
    ];
    if let Some(a) = site.agencies.first() {
        roles.push(format!("agency:{}", a.id));
    }
    let mut hashes =
        String::from("# ROLE sha256:HEX, one per line (meterflow token --role ROLE)\n");
    let mut plain =
        String::from("# The demo's sign-in tokens (http://127.0.0.1:8080/login): ROLE TOKEN\n");
    for role in roles {
        let token = meterflow_http::session::random_token()
            .ok_or_else(|| anyhow::anyhow!("no randomness for the demo's tokens"))?;
        hashes.push_str(&format!(
            "{role} sha256:{}\n",
            meterflow_http::hash_token(&token)
        ));
        plain.push_str(&format!("{role} {token}\n"));
    }
    let plain_path = tokens_file.with_file_name(DEMO_TOKENS);
    std::fs::write(&plain_path, plain)
        .with_context(|| format!("writing {}", plain_path.display()))?;
    meterflow_model::secret_file::restrict(&plain_path)
        .with_context(|| format!("restricting {}", plain_path.display()))?;
    std::fs::write(tokens_file, hashes)
        .with_context(|| format!("writing {}", tokens_file.display()))?;
    Ok(())
}
