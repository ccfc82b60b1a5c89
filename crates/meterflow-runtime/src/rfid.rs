//! RFID scans over MQTT into the asset ledger (`[[mqtt.rfid]]`).
//!
//! A separate MQTT session per broker (client id `<client_id>-rfid`,
//! persistent, QoS 1, manual acks): a message is acknowledged only after its
//! scans are committed to `ledger_events`, or after a bad payload is kept in
//! `dead_letters`, so a restart loses nothing and a bad message never blocks
//! the session. Scans are checked like API entries (`ledgers::check`); tags
//! on no card are kept (they are the "unexpected" of an inventory).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meterflow_model::Site;
use meterflow_model::config::{MqttBroker, RfidTopic};
use meterflow_mqtt::Pattern;
use meterflow_store::LedgerDb;
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use serde_json::{Value, json};
use tokio::sync::watch;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RfidStats {
    /// Scans recorded.
    pub scans: AtomicU64,
    /// Messages refused (kept in dead_letters).
    pub rejected: AtomicU64,
}

/// Scans of one message: (time, epc, room, reader) or why it is refused.
fn parse(
    rule: &RfidTopic,
    pattern: &Pattern,
    topic: &str,
    payload: &[u8],
    recv_ms: i64,
) -> Result<Vec<Value>, String> {
    let segs = pattern.matches(topic).unwrap_or_default();
    let v: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let o = v
        .as_object()
        .ok_or_else(|| "a scan is a JSON object".to_string())?;
    let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let room = text("room")
        .or_else(|| segs.get("room").cloned())
        .or_else(|| rule.room.clone())
        .ok_or_else(|| {
            "no room: in the payload, a `{room}` topic segment or `room =`".to_string()
        })?;
    let reader = text("reader").or_else(|| segs.get("reader").cloned());
    let (ts, _) = meterflow_mqtt::decode::time_of(
        o.get("time"),
        meterflow_model::config::TimestampUnit::Auto,
        recv_ms,
    )
    .map_err(|e| format!("{}: {}", e.reason, e.detail))?;
    let time = chrono::DateTime::from_timestamp_millis(ts)
        .ok_or_else(|| format!("time {ts} out of range"))?
        .to_rfc3339();
    let tags: Vec<String> = match (o.get("epc"), o.get("tags")) {
        (Some(Value::String(e)), None) => vec![e.clone()],
        (None, Some(Value::Array(list))) => list
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("tag {t} is not a string"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("give `epc` (a string) or `tags` (an array of strings)".into()),
    };
    if tags.len() > 10_000 {
        return Err(format!(
            "{} tags in one message (at most 10 000)",
            tags.len()
        ));
    }
    Ok(tags
        .into_iter()
        .map(|epc| {
            let mut s = json!({"time": time, "epc": epc, "room": room});
            if let Some(r) = &reader {
                s["reader"] = json!(r);
            }
            s
        })
        .collect())
}

/// Why a message's scans are not recorded.
enum NotRecorded {
    /// The message is wrong: keep it in dead_letters and acknowledge it.
    Refused(String),
    /// The store failed: do not acknowledge (the broker redelivers).
    Store(String),
}

/// Check and record the scans of one message (all or none).
fn record(site: &Site, db: &mut LedgerDb, scans: &[Value]) -> Result<usize, NotRecorded> {
    let kind = meterflow_ledgers::find("assets", "scans")
        .ok_or_else(|| NotRecorded::Store("no scan kind".into()))?;
    let state = db
        .ledger_until("assets", i64::MAX)
        .map_err(|e| NotRecorded::Store(e.to_string()))?;
    let mut checked = Vec::with_capacity(scans.len());
    for s in scans {
        let c = meterflow_ledgers::check(site, kind, &state, s)
            .map_err(|(f, m)| NotRecorded::Refused(format!("{f}: {m}")))?;
        checked.push((c.ts_ms, c.agency, c.body.to_string()));
    }
    let events: Vec<meterflow_store::NewLedgerEvent<'_>> = checked
        .iter()
        .map(|(ts, agency, body)| meterflow_store::NewLedgerEvent {
            ledger: "assets",
            kind: "scan",
            agency: agency.as_deref(),
            ts_ms: *ts,
            body,
            corrects: None,
            void: false,
            author: "mqtt:rfid",
        })
        .collect();
    db.append_batch(&events, meterflow_model::clock::now_ms())
        .map_err(|e| NotRecorded::Store(e.to_string()))
        .map(|ids| ids.len())
}

/// Subscribe to a broker's `[[mqtt.rfid]]` topics until `shutdown`.
pub async fn run(
    site: Arc<Site>,
    broker: MqttBroker,
    stats: Arc<RfidStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut b = broker.clone();
    b.client_id = format!("{}-rfid", broker.client_id);
    let opts = match meterflow_mqtt::subscriber::options(&b) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(broker = %b.id, error = %e, "Cannot configure the RFID MQTT connection.");
            return;
        }
    };
    let rules: Vec<(RfidTopic, Pattern)> = broker
        .rfid
        .iter()
        .map(|r| (r.clone(), Pattern::new(&r.pattern)))
        .collect();
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let mut db = match LedgerDb::open(&site.store_path()) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "RFID scans: cannot open the store.");
            return;
        }
    };
    let mut backoff =
        meterflow_core::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let ev = tokio::select! {
            ev = eventloop.poll() => ev,
            _ = shutdown.changed() => break,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                for (_, p) in &rules {
                    let f = match &broker.shared_group {
                        Some(g) => format!("$share/{g}/{}", p.filter()),
                        None => p.filter(),
                    };
                    if let Err(e) = client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
                        tracing::warn!(filter = %f, error = %e, "RFID subscribe failed.");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if !handle(&site, &mut db, &rules, &stats, &p) {
                    continue;
                }
                if p.qos != QoS::AtMostOnce
                    && let Err(e) = client.try_ack(&p)
                {
                    tracing::warn!(error = %e, "RFID ack failed (the broker will redeliver).");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(broker = %b.id, error = %e, "RFID MQTT connection lost; reconnecting.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }
    // Let queued acks leave before disconnecting.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

fn handle(
    site: &Site,
    db: &mut LedgerDb,
    rules: &[(RfidTopic, Pattern)],
    stats: &RfidStats,
    p: &Publish,
) -> bool {
    let now = meterflow_model::clock::now_ms();
    let Some((rule, pattern)) = rules
        .iter()
        .find(|(_, pat)| pat.matches(&p.topic).is_some())
    else {
        return true;
    };
    let result = if p.payload.len() > 1024 * 1024 {
        Err(NotRecorded::Refused(format!(
            "payload of {} bytes (at most 1 MiB)",
            p.payload.len()
        )))
    } else {
        parse(rule, pattern, &p.topic, &p.payload, now)
            .map_err(NotRecorded::Refused)
            .and_then(|s| record(site, db, &s))
    };
    match result {
        Ok(n) => {
            stats.scans.fetch_add(n as u64, Ordering::Relaxed);
            true
        }
        Err(NotRecorded::Store(e)) => {
            tracing::warn!(topic = %p.topic, error = %e, "RFID scans not stored; not acknowledged (redelivered after a reconnect).");
            false
        }
        Err(NotRecorded::Refused(reason)) => {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %p.topic, %reason, "RFID scan refused (kept in dead_letters).");
            let payload = String::from_utf8_lossy(&p.payload);
            if let Err(e) = db.dead_letter(now, "mqtt-rfid", &p.topic, &reason, &payload) {
                tracing::warn!(error = %e, "RFID dead letter not stored.");
                return false;
            }
            true
        }
    }
}
