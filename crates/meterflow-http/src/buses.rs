//! The operator's view of the buses: per-meter and per-identifier counters
//! of polled meters, in `/metrics` and in `/api/v1/buses`.

use super::*;

/// Per-meter poll state for `/metrics` (what `meterflow status` reads of a
/// running process).
pub(crate) fn meter_metrics(e: &mut Exposition, app: &App) {
    let live = meterflow_runtime::pipeline::live_meters(&app.live.buses);
    let owner: Vec<(String, String)> = app
        .live
        .buses
        .iter()
        .flat_map(|(bus, b)| {
            let meters = b.meters.lock().unwrap_or_else(|e| e.into_inner());
            meters
                .keys()
                .map(|m| (m.clone(), bus.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let bus_of = |m: &str| {
        owner
            .iter()
            .find(|(id, _)| id == m)
            .map_or("", |(_, b)| b.as_str())
            .to_string()
    };
    type Pick = fn(&meterflow_runtime::status::LiveMeter) -> u64;
    let families: [(&str, &str, &str, Pick); 2] = [
        (
            "meterflow_meter_consecutive_failures",
            "gauge",
            "Polls of a meter that gave nothing in a row (> 0: parked with back-off).",
            |l| l.consecutive_failures,
        ),
        (
            "meterflow_meter_failed_polls_total",
            "counter",
            "Polls of a meter that gave nothing, since start.",
            |l| l.failed_polls,
        ),
    ];
    for (name, kind, help, pick) in families {
        e.family(name, kind, help);
        for (m, l) in &live {
            let bus = bus_of(m);
            e.sample(name, &[("bus", &bus), ("meter", m)], pick(l) as f64);
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
    let snapshot: Vec<(String, String, String, meterflow_modbus::bus::ItemHealth)> = app
        .live
        .buses
        .iter()
        .flat_map(|(bus, b)| {
            let meters = b.meters.lock().unwrap_or_else(|e| e.into_inner());
            meters
                .iter()
                .flat_map(|(m, mh)| {
                    mh.items
                        .iter()
                        .map(|(id, h)| (bus.clone(), m.clone(), id.clone(), h.clone()))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
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
    let buses: Vec<Value> = app
        .live
        .buses
        .iter()
        .map(|(id, b)| {
            let meters = b.meters.lock().unwrap_or_else(|e| e.into_inner());
            let mut list: Vec<(&String, _)> = meters.iter().collect();
            list.sort_by(|a, b| a.0.cmp(b.0));
            let meters: Vec<Value> = list
                .into_iter()
                .map(|(m, mh)| {
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
