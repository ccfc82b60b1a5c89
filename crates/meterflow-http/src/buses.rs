//! The operator's view of the buses: per-meter and per-identifier counters
//! of polled meters, in `/metrics` and in `/api/v1/buses`.

use super::*;

/// Every polled meter's health with its bus, copied out of the locks:
/// `(bus, meter, health)`, in bus and meter order.
fn snapshot(app: &App) -> Vec<(String, String, meterflow_modbus::MeterHealth)> {
    let mut out = Vec::new();
    for (bus, b) in &app.live.buses {
        let meters = b.meters.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = meters
            .iter()
            .map(|(m, h)| (bus.clone(), m.clone(), h.clone()))
            .collect();
        list.sort_by(|x, y| x.1.cmp(&y.1));
        out.extend(list);
    }
    out
}

/// Per-meter poll state for `/metrics` (what `meterflow status` reads of a
/// running process).
pub(crate) fn meter_metrics(e: &mut Exposition, app: &App) {
    type Pick = fn(&meterflow_modbus::MeterHealth) -> u64;
    let families: [(&str, &str, &str, Pick); 6] = [
        (
            "meterflow_meter_consecutive_failures",
            "gauge",
            "Polls of a meter that gave nothing in a row (> 0: parked with back-off).",
            |h| u64::from(h.consecutive_failures),
        ),
        (
            "meterflow_meter_failed_polls_total",
            "counter",
            "Polls of a meter that gave nothing, since start.",
            |h| h.failed_polls,
        ),
        (
            "meterflow_meter_polls_due_total",
            "counter",
            "Polls due by the meter's period(s) since start (taken + skipped late + skipped parked).",
            |h| h.polls_due,
        ),
        (
            "meterflow_meter_polls_taken_total",
            "counter",
            "Polls taken since start.",
            |h| h.polls,
        ),
        (
            "meterflow_meter_polls_skipped_late_total",
            "counter",
            "Due polls skipped because the bus was busy past their time.",
            |h| h.skipped_late,
        ),
        (
            "meterflow_meter_polls_skipped_parked_total",
            "counter",
            "Due polls skipped while the meter was parked after failures.",
            |h| h.skipped_parked,
        ),
    ];
    let meters = snapshot(app);
    for (name, kind, help, pick) in families {
        e.family(name, kind, help);
        for (bus, m, h) in &meters {
            e.sample(name, &[("bus", bus), ("meter", m)], pick(h) as f64);
        }
    }
}

/// Per-meter, per-identifier families (DL/T 645 / CJ/T 188) for `/metrics`.
pub(crate) fn item_metrics(e: &mut Exposition, app: &App) {
    type Pick = fn(&meterflow_modbus::bus::ItemHealth) -> u64;
    let families: [(&str, &str, Pick); 4] = [
        (
            "meterflow_meter_item_requests_total",
            "Requests for one data identifier of one serial meter (retries included).",
            |h| h.requests,
        ),
        (
            "meterflow_meter_item_answers_total",
            "Data replies decoded for one identifier of one serial meter.",
            |h| h.answers,
        ),
        (
            "meterflow_meter_item_bad_checksums_total",
            "Replies refused for a bad checksum (the meter answered, garbled).",
            |h| h.bad_checksums,
        ),
        (
            "meterflow_meter_item_timeouts_total",
            "Requests for one identifier that got no answer at all.",
            |h| h.timeouts,
        ),
    ];
    let snapshot: Vec<(String, String, String, meterflow_modbus::bus::ItemHealth)> = snapshot(app)
        .into_iter()
        .flat_map(|(bus, m, mh)| {
            mh.items
                .into_iter()
                .map(move |(id, h)| (bus.clone(), m.clone(), id, h))
        })
        .collect();
    for (name, help, pick) in families {
        e.family(name, "counter", help);
        for (bus, meter, item, h) in &snapshot {
            e.sample(
                name,
                &[("bus", bus), ("meter", meter), ("item", item)],
                pick(h) as f64,
            );
        }
    }
    let name = "meterflow_meter_item_error_replies_total";
    e.family(
        name,
        "counter",
        "Error replies of one serial meter for one identifier, by the error the meter named.",
    );
    for (bus, meter, item, h) in &snapshot {
        for (error, n) in &h.error_replies {
            e.sample(
                name,
                &[
                    ("bus", bus),
                    ("meter", meter),
                    ("item", item),
                    ("error", error),
                ],
                *n as f64,
            );
        }
    }
}

/// `GET /api/v1/buses`: every bus with its counters, its meters' polls and,
/// for DL/T 645 / CJ/T 188 meters, each identifier's requests, answers,
/// error replies, bad checksums and timeouts (manager, admin).
pub(crate) async fn buses_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
) -> ApiResult {
    use std::sync::atomic::Ordering::Relaxed;
    let role = app.auth(&h, peer)?;
    if !matches!(role, Role::Admin | Role::Manager) {
        return Err(forbidden("bus health needs a manager or admin token"));
    }
    let all = snapshot(&app);
    let buses: Vec<Value> = app
        .live
        .buses
        .iter()
        .map(|(id, b)| {
            let meters: Vec<Value> = all
                .iter()
                .filter(|(bus, _, _)| bus == id)
                .map(|(_, m, mh)| {
                    let items: serde_json::Map<String, Value> = mh
                        .items
                        .iter()
                        .map(|(id, h)| {
                            (
                                id.clone(),
                                json!({
                                    "requests": h.requests,
                                    "answers": h.answers,
                                    "error_replies": h.error_replies,
                                    "bad_checksums": h.bad_checksums,
                                    "timeouts": h.timeouts,
                                    "last_error": h.last_error,
                                }),
                            )
                        })
                        .collect();
                    json!({
                        "meter": m,
                        "polls": mh.polls,
                        "good_polls": mh.good_polls,
                        "failed_polls": mh.failed_polls,
                        "consecutive_failures": mh.consecutive_failures,
                        "timeouts": mh.timeouts,
                        "error_replies": mh.exceptions,
                        "mean_poll_ms": if mh.polls > 0 { mh.poll_us as f64 / mh.polls as f64 / 1000.0 } else { 0.0 },
                        "items": items,
                    })
                })
                .collect();
            json!({
                "bus": id,
                "requests": b.requests.load(Relaxed),
                "ok": b.ok.load(Relaxed),
                "timeouts": b.timeouts.load(Relaxed),
                "error_replies": b.exceptions.load(Relaxed),
                "bad_frames": b.transport_errors.load(Relaxed),
                "reconnects": b.reconnects.load(Relaxed),
                "meters": meters,
            })
        })
        .collect();
    Ok(Json(json!({ "buses": buses })))
}
