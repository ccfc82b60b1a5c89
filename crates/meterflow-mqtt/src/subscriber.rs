//! The MQTT subscriber: persistent session, QoS 1, acknowledged after commit.

use meterflow_core::backoff::Backoff;
use meterflow_model::clock::now_ms;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meterflow_model::config::MqttBroker;
use meterflow_model::{Batch, DeadLetter, Reading};
use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::decode::{Rule, decode};

/// Counters of one subscription (every source reports the same kinds).
#[derive(Debug, Default)]
pub struct MqttStats {
    /// Messages received.
    pub received: AtomicU64,
    /// Readings handed to the store.
    pub readings: AtomicU64,
    /// Messages acknowledged to the broker (after their commit).
    pub acked: AtomicU64,
    /// Connection losses.
    pub reconnects: AtomicU64,
    /// Dead letters by reason.
    pub dead: Mutex<HashMap<String, u64>>,
    /// Readings of meters that another shard stores (acknowledged, not stored).
    pub other_shard: AtomicU64,
}

/// What the subscriber needs to know about the site's meters: this shard's
/// (id → counter quantity) and the other shards' (ADR 0013).
pub type Meters = Arc<meterflow_model::shard::IngestMeters>;

/// Largest packet rumqttc accepts; payloads above the configured limit are refused by us, so
/// an oversized message is dead-lettered and acknowledged instead of breaking the session.
const TRANSPORT_MAX: usize = 64 * 1024 * 1024;

/// Readings of one subscription handed to the writer and not committed yet.
/// At QoS 0 nothing else bounds them (the broker sends as fast as we read), so
/// without it a slow store grows memory instead of slowing the broker. Two
/// default commits' worth (`[store] batch_rows`), so the writer never waits.
pub const IN_FLIGHT_READINGS: usize = 100_000;

/// What acknowledging a message after the commit needs: its packet id and
/// QoS (4 bytes). Holding the received Publish instead kept its topic and,
/// through its payload, the network read buffer it points into alive; and
/// rumqttc's event loop serves incoming packets before queued requests, so
/// in a long QoS 1 drain acks wait behind the stream: a 3 M-message drain
/// peaked at ~600 MiB that way.
type Ack = (u16, QoS);

/// The packet rumqttc builds the ack from (no allocation: empty topic and payload).
fn ack_packet((pkid, qos): Ack) -> Publish {
    let mut a = Publish::new(String::new(), qos, Vec::new());
    a.pkid = pkid;
    a
}

/// Password from the environment or a file (never from the config).
fn password(b: &MqttBroker) -> std::io::Result<Option<String>> {
    if let Some(var) = &b.password_env {
        return std::env::var(var).map(Some).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("environment variable {var} is not set"),
            )
        });
    }
    if let Some(f) = &b.password_file {
        let (text, warning) = meterflow_model::secret_file::read(f)?;
        if let Some(w) = warning {
            tracing::warn!(broker = %b.id, "password_file: {w}");
        }
        return Ok(Some(text));
    }
    Ok(None)
}

fn tls(b: &MqttBroker) -> std::io::Result<Transport> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = match &b.ca_file {
        Some(f) => std::fs::read(f)?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "tls = true needs ca_file (the broker's CA certificate)",
            ));
        }
    };
    let client_auth = match (&b.client_cert_file, &b.client_key_file) {
        (Some(c), Some(k)) => Some((std::fs::read(c)?, std::fs::read(k)?)),
        _ => None,
    };
    Ok(Transport::Tls(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    }))
}

/// The filters a SUBACK refused (its codes answer the filters of one
/// SUBSCRIBE in order). Mosquitto's own ACL file grants every subscription
/// and filters on delivery; ACL plugins and other brokers refuse here.
fn refused_filters<'a>(filters: &'a [String], codes: &[SubscribeReasonCode]) -> Vec<&'a str> {
    filters
        .iter()
        .zip(codes)
        .filter(|(_, c)| matches!(c, SubscribeReasonCode::Failure))
        .map(|(f, _)| f.as_str())
        .collect()
}

/// Options for a broker (persistent session, manual acks).
pub fn options(b: &MqttBroker) -> std::io::Result<MqttOptions> {
    let mut o = MqttOptions::new(b.client_id.clone(), b.host.clone(), b.port);
    o.set_clean_session(false);
    o.set_manual_acks(true);
    o.set_keep_alive(Duration::from_secs(b.keep_alive_s));
    o.set_max_packet_size(TRANSPORT_MAX, 64 * 1024);
    if let Some(u) = &b.username {
        o.set_credentials(u.clone(), password(b)?.unwrap_or_default());
    }
    if b.tls {
        o.set_transport(tls(b)?);
    }
    Ok(o)
}

/// Subscribe to `broker` until `shutdown`; batches go to `out` and each message
/// is acknowledged once its batch is committed.
pub async fn run(
    broker: MqttBroker,
    meters: Meters,
    out: mpsc::Sender<Batch>,
    stats: Arc<MqttStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let rules: Vec<Rule> = broker.topic.iter().cloned().map(Rule::new).collect();
    let opts = match options(&broker) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(broker = %broker.id, error = %e, "Cannot configure the MQTT connection; not subscribing.");
            return;
        }
    };
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    let qos = if broker.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let filters: Vec<String> = rules
        .iter()
        .map(|r| match &broker.shared_group {
            Some(g) => format!("$share/{g}/{}", r.pattern.filter()),
            None => r.pattern.filter(),
        })
        .collect();
    // Acks leave from their own task, in receive order, after the commit; the
    // event loop is never blocked on them.
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Vec<Ack>>();
    let acker = {
        let client = client.clone();
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Some(acks) = ack_rx.recv().await {
                for a in acks {
                    if client.ack(&ack_packet(a)).await.is_ok() {
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let source = format!("mqtt:{}", broker.id);
    // The event loop hands over what one network read brought (rumqttc reads
    // up to 10 packets at a time); the batcher coalesces what is waiting into
    // one batch for the writer. The batch's completion acknowledges all its
    // messages, in receive order. Both bound fewer sends and allocations per message.
    let (item_tx, mut item_rx) = mpsc::channel::<(Batch, Vec<Ack>)>(1024);
    const BATCH_READINGS: usize = 4096;
    let window = Arc::new(Semaphore::new(IN_FLIGHT_READINGS));
    let batcher = {
        let ack_tx = ack_tx.clone();
        let source = source.clone();
        tokio::spawn(async move {
            while let Some((first, mut acks)) = item_rx.recv().await {
                // Sized once for what is waiting (up to a full batch):
                // growing it from one network read's ~10 readings copied each
                // reading ~9 times in a drain, and a full batch's room for
                // every trickle message would fault in fresh pages each time.
                let per_read = first.readings.len().max(1);
                let room = (per_read * (item_rx.len() + 1)).min(BATCH_READINGS + 1024);
                let mut readings = Vec::with_capacity(room);
                readings.extend(first.readings);
                let mut b = Batch {
                    readings,
                    dead: first.dead,
                    source: source.clone(),
                    done: None,
                };
                while b.readings.len() < BATCH_READINGS {
                    match item_rx.try_recv() {
                        Ok((it, ack)) => {
                            b.readings.extend(it.readings);
                            b.dead.extend(it.dead);
                            acks.extend(ack);
                        }
                        Err(_) => break,
                    }
                }
                for d in b.dead.iter_mut().filter(|d| d.source.is_empty()) {
                    d.source = source.clone();
                }
                // Wait for room in the window; the permit is returned when the
                // writer is done with the batch (or drops it).
                let want = b.readings.len().clamp(1, IN_FLIGHT_READINGS) as u32;
                let Ok(permit) = Arc::clone(&window).acquire_many_owned(want).await else {
                    break;
                };
                let tx = ack_tx.clone();
                // Acknowledge only committed messages; on a store error the broker redelivers them.
                b.done = Some(Box::new(move |result| {
                    drop(permit);
                    if result.is_ok() && !acks.is_empty() {
                        let _ = tx.send(acks);
                    }
                }));
                if out.send(b).await.is_err() {
                    break;
                }
            }
        })
    };
    let max_payload = broker.max_packet_kib * 1024;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut last_log: HashMap<&'static str, Instant> = HashMap::new();
    // One shutdown future for the whole loop, not one per message.
    let mut stop = std::pin::pin!(shutdown.changed());
    // What the current network read brought, not handed over yet.
    let mut batch = Batch::of(Vec::new(), "");
    let mut acks: Vec<Ack> = Vec::new();
    // Receive time: one clock read per network read, shared by its messages.
    let mut now = now_ms();
    loop {
        let read = eventloop.state.events.is_empty();
        let ev = tokio::select! {
            ev = eventloop.poll() => ev,
            _ = &mut stop => break,
        };
        if read {
            now = now_ms();
        }
        let mut lost = false;
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                tracing::info!(broker = %broker.id, "MQTT connected.");
                // One SUBSCRIBE for all filters: its SUBACK answers them in
                // the same order, so a refused one can be named.
                let many = filters.iter().map(|f| SubscribeFilter::new(f.clone(), qos));
                if let Err(e) = client.try_subscribe_many(many) {
                    tracing::warn!(broker = %broker.id, error = %e, "Subscribe failed.");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = refused_filters(&filters, &ack.return_codes);
                for f in &refused {
                    tracing::warn!(
                        broker = %broker.id,
                        filter = %f,
                        "The broker refused the subscription to `{f}`: nothing on it will arrive (check the broker's ACL for this user)."
                    );
                }
                if refused.len() < filters.len() {
                    tracing::info!(broker = %broker.id, filters = %filters.join(" "), refused = refused.len(), "MQTT subscribed.");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                let before = batch.readings.len();
                if p.payload.len() > max_payload {
                    dead(
                        &mut batch,
                        &stats,
                        &mut last_log,
                        now,
                        &p,
                        "too_large",
                        format!(
                            "payload of {} bytes exceeds max_packet_kib = {}",
                            p.payload.len(),
                            broker.max_packet_kib
                        ),
                    );
                } else {
                    match decode(&rules, &p.topic, &p.payload, now) {
                        Ok(values) => {
                            for v in values {
                                if !v.value.is_finite() {
                                    dead(
                                        &mut batch,
                                        &stats,
                                        &mut last_log,
                                        now,
                                        &p,
                                        "invalid_value",
                                        format!(
                                            "value {} of `{}` is not a finite number",
                                            v.value, v.meter
                                        ),
                                    );
                                    continue;
                                }
                                if meters.elsewhere.contains_key(&v.meter) {
                                    stats.other_shard.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                let Some(counter) = meters.own.get(&v.meter) else {
                                    dead(
                                        &mut batch,
                                        &stats,
                                        &mut last_log,
                                        now,
                                        &p,
                                        "unknown_meter",
                                        format!("no meter `{}` in the site", v.meter),
                                    );
                                    continue;
                                };
                                let quantity = v.quantity.unwrap_or_else(|| counter.clone());
                                batch.readings.push(Reading {
                                    meter: v.meter,
                                    quantity,
                                    ts_ms: v.ts_ms,
                                    value: v.value,
                                    recv_ms: now,
                                    time_source: v.time_source,
                                });
                            }
                        }
                        Err(e) => dead(
                            &mut batch,
                            &stats,
                            &mut last_log,
                            now,
                            &p,
                            e.reason,
                            e.detail,
                        ),
                    }
                }
                stats
                    .readings
                    .fetch_add((batch.readings.len() - before) as u64, Ordering::Relaxed);
                if p.qos != QoS::AtMostOnce {
                    acks.push((p.pkid, p.qos));
                }
            }
            Ok(_) => {}
            Err(e) => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(broker = %broker.id, error = %e, retry_ms = backoff.peek().as_millis() as u64, "MQTT connection lost; reconnecting.");
                lost = true;
            }
        }
        // Hand over at the end of each network read (the next poll may wait),
        // every 1 024 readings, and before waiting to reconnect.
        if waiting(&batch, &acks)
            && (lost || eventloop.state.events.is_empty() || batch.readings.len() >= 1024)
        {
            let b = std::mem::replace(&mut batch, Batch::of(Vec::new(), ""));
            if item_tx.send((b, std::mem::take(&mut acks))).await.is_err() {
                break;
            }
        }
        if lost {
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = &mut stop => break,
            }
        }
    }
    // What was read before a shutdown: stored (and acknowledged) like the rest.
    if waiting(&batch, &acks) {
        let _ = item_tx.send((batch, acks)).await;
    }
    // Flush: the acker can only hand acks to the event loop while it is polled,
    // so keep polling (at most 2 s) until the acker is done, then disconnect
    // without awaiting a request slot. Acks that miss the window are
    // redelivered by the broker and skipped by the store as duplicates.
    drop(item_tx);
    let _ = batcher.await;
    drop(ack_tx);
    let mut acker = acker;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            tokio::select! {
                _ = &mut acker => break,
                r = eventloop.poll() => if r.is_err() { break },
            }
        }
    })
    .await;
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

fn dead(
    batch: &mut Batch,
    stats: &MqttStats,
    last_log: &mut HashMap<&'static str, Instant>,
    now: i64,
    p: &Publish,
    reason: &'static str,
    detail: String,
) {
    *stats
        .dead
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(reason.to_string())
        .or_default() += 1;
    // One log line per reason every 10 s at most.
    if last_log
        .get(reason)
        .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
    {
        tracing::warn!(topic = %p.topic, reason, %detail, "MQTT message rejected (kept in dead_letters).");
        last_log.insert(reason, Instant::now());
    }
    let shown = &p.payload[..p.payload.len().min(4096)];
    batch.dead.push(DeadLetter {
        received_ms: now,
        source: batch.source.clone(),
        location: p.topic.clone(),
        reason: format!("{reason}: {detail}"),
        payload: String::from_utf8_lossy(shown).into_owned(),
    });
}

/// Anything read and not handed over yet (an ack alone counts: its message
/// produced nothing to store but is acknowledged after the commit all the same).
fn waiting(batch: &Batch, acks: &[Ack]) -> bool {
    !batch.readings.is_empty() || !batch.dead.is_empty() || !acks.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_filter_is_named_by_its_place_in_the_suback() {
        let filters: Vec<String> = ["num/+/volume", "json/+", "lp"]
            .iter()
            .map(|f| f.to_string())
            .collect();
        let codes = [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtMostOnce),
        ];
        assert_eq!(refused_filters(&filters, &codes), vec!["json/+"]);
        assert!(refused_filters(&filters, &codes[..1]).is_empty());
    }
}
