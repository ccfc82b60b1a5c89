//! HTTP push ingest compatible with InfluxDB writers (Telegraf, gateways):
//! `POST /write` (v1) and `POST /api/v2/write` (v2) take line protocol, gzip
//! allowed; 204 only after the commit; 400 with the line numbers and reasons
//! of rejected lines (the others are stored, as InfluxDB does).

use meterflow_model::clock::now_ms;
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use meterflow_core::limiter::FailureLimiter;
use meterflow_import::{Precision, parse_line};
use meterflow_model::config::HttpIngest;
use meterflow_model::{Batch, DeadLetter, Reading, TimeSource};
use tokio::sync::{mpsc, oneshot, watch};

/// Counters of the push endpoint.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests accepted (authenticated).
    pub requests: AtomicU64,
    /// Readings committed.
    pub readings: AtomicU64,
    /// Lines rejected.
    pub rejected_lines: AtomicU64,
    /// Authentication failures.
    pub auth_failures: AtomicU64,
    /// Connections: accepted, refused at the limit, open.
    pub listen: Arc<meterflow_listen::ListenStats>,
}

/// Failed authentications one client address may make in a minute before
/// it gets 429 until the minute ends (a valid token is still accepted).
const MAX_AUTH_FAILURES: u32 = 20;

struct App {
    token: String,
    /// Failed authentications per client address (ADR 0010's rule, as on
    /// the API: a valid token is never refused).
    failures: std::sync::Mutex<FailureLimiter<std::net::IpAddr>>,
    meters: Arc<meterflow_model::shard::IngestMeters>,
    out: mpsc::Sender<Batch>,
    max_body: usize,
    stats: Arc<HttpStats>,
}

/// Bind and serve until `shutdown`; fails at once if the token variable is unset.
pub async fn serve(
    cfg: HttpIngest,
    meters: Arc<meterflow_model::shard::IngestMeters>,
    out: mpsc::Sender<Batch>,
    stats: Arc<HttpStats>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let token = std::env::var(&cfg.token_env).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "[http] token_env: environment variable {} is not set",
                cfg.token_env
            ),
        )
    })?;
    if token.len() < 16 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the write token in {} is shorter than 16 characters",
                cfg.token_env
            ),
        ));
    }
    let max_body = cfg.max_body_kib * 1024;
    let app_listen = Arc::clone(&stats.listen);
    let app = Arc::new(App {
        token,
        failures: std::sync::Mutex::new(FailureLimiter::new(
            MAX_AUTH_FAILURES,
            Duration::from_secs(60),
            10_000,
        )),
        meters,
        out,
        max_body,
        stats,
    });
    let router = Router::new()
        .route("/write", post(write_v1))
        .route("/api/v2/write", post(write_v2))
        .route("/ping", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
    tracing::info!(listen = %cfg.listen, "HTTP push ingest listening.");
    let limits = meterflow_listen::Limits {
        max_connections: cfg.max_connections,
        ..meterflow_listen::Limits::default()
    };
    let listen_stats = Arc::clone(&app_listen);
    Ok(tokio::spawn(meterflow_listen::serve(
        listener,
        router,
        limits,
        listen_stats,
        shutdown,
    )))
}

async fn write_v1(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query_token = q.get("p").cloned();
    write(
        app,
        peer,
        q.get("precision").map(String::as_str),
        headers,
        query_token,
        body,
    )
    .await
}

async fn write_v2(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(
        app,
        peer,
        q.get("precision").map(String::as_str),
        headers,
        None,
        body,
    )
    .await
}

fn error(
    status: StatusCode,
    code: &str,
    message: String,
    lines: Vec<serde_json::Value>,
) -> Response {
    let mut body = serde_json::json!({ "error": code, "message": message });
    if !lines.is_empty() {
        body["lines"] = serde_json::Value::Array(lines);
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Compare without leaking the position of the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

fn authorized(app: &App, headers: &HeaderMap, query_token: Option<String>) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            match scheme {
                "Token" | "Bearer" => Some(rest.trim().to_string()),
                // Basic user:token (InfluxDB 1.x clients send the password there).
                "Basic" => base64_decode(rest.trim())
                    .and_then(|d| String::from_utf8(d).ok())
                    .and_then(|s| s.split_once(':').map(|(_, p)| p.to_string())),
                _ => None,
            }
        });
    given
        .or(query_token)
        .is_some_and(|t| same(t.as_bytes(), app.token.as_bytes()))
}

async fn write(
    app: Arc<App>,
    peer: std::net::SocketAddr,
    precision: Option<&str>,
    headers: HeaderMap,
    query_token: Option<String>,
    body: Bytes,
) -> Response {
    if !authorized(&app, &headers, query_token) {
        app.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut failures = app.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.blocked(&peer.ip(), now) {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                "too many failed authentications from this address; wait a minute".into(),
                Vec::new(),
            );
        }
        failures.fail(peer.ip(), now);
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong token (Authorization: Token …)".into(),
            Vec::new(),
        );
    }
    app.stats.requests.fetch_add(1, Ordering::Relaxed);
    let Some(precision) = Precision::parse(precision.unwrap_or("ns")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "precision must be s, ms, us or ns".into(),
            Vec::new(),
        );
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let raw = if gzip {
        let mut out = Vec::new();
        let mut dec = flate2::read::GzDecoder::new(&body[..]).take(app.max_body as u64 + 1);
        if let Err(e) = dec.read_to_end(&mut out) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("gzip body could not be decompressed: {e}"),
                Vec::new(),
            );
        }
        if out.len() > app.max_body {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("decompressed body exceeds {} KiB", app.max_body / 1024),
                Vec::new(),
            );
        }
        out
    } else {
        body.to_vec()
    };
    let now = now_ms();
    let mut readings = Vec::new();
    let mut line_of = Vec::new();
    let mut rejected: Vec<(u64, String)> = Vec::new();
    let mut dead = Vec::new();
    // Each rejected line becomes a dead letter with its own text, taken
    // while the line is at hand (looking lines up again by number made
    // 40 000 bad lines take 35 s).
    let mut reject = |n: u64, reason: String, line: &[u8]| {
        dead.push(DeadLetter {
            received_ms: now,
            source: "http".into(),
            location: format!("line {n}"),
            reason: reason.clone(),
            payload: String::from_utf8_lossy(line).into_owned(),
        });
        rejected.push((n, reason));
    };
    for (i, line) in raw.split(|b| *b == b'\n').enumerate() {
        let n = i as u64 + 1;
        let Ok(text) = std::str::from_utf8(line) else {
            reject(n, "malformed: not UTF-8".into(), line);
            continue;
        };
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            continue;
        }
        for r in parse_line(text, n, precision) {
            match r {
                Err(e) => reject(n, format!("{}: {}", e.reason.as_str(), e.detail), line),
                Ok(row) => match app.meters.own.get(&row.meter) {
                    None => reject(
                        n,
                        match app.meters.elsewhere.get(&row.meter) {
                            Some(s) => format!(
                                "other_shard: meter `{}` is stored by shard {s}/{}; send it to that instance",
                                row.meter, app.meters.shard.count
                            ),
                            None => format!("unknown_meter: no meter `{}`", row.meter),
                        },
                        line,
                    ),
                    Some(counter) => {
                        line_of.push(n);
                        readings.push(Reading {
                            meter: row.meter,
                            quantity: row.quantity.unwrap_or_else(|| counter.clone()),
                            ts_ms: row.ts_ms,
                            value: row.value,
                            recv_ms: now,
                            time_source: TimeSource::Device,
                        });
                    }
                },
            }
        }
    }
    let (done_tx, done_rx) = oneshot::channel();
    let count = readings.len() as u64;
    let batch = Batch {
        readings,
        dead,
        source: "http".into(),
        done: Some(Box::new(move |r| {
            let _ = done_tx.send(r);
        })),
    };
    if app.out.send(batch).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "meterflow is shutting down".into(),
            Vec::new(),
        );
    }
    match done_rx.await {
        Ok(Ok(refused)) => {
            for (i, why) in refused {
                rejected.push((line_of.get(i).copied().unwrap_or(0), why));
            }
            app.stats.readings.fetch_add(count, Ordering::Relaxed);
            if rejected.is_empty() {
                StatusCode::NO_CONTENT.into_response()
            } else {
                app.stats
                    .rejected_lines
                    .fetch_add(rejected.len() as u64, Ordering::Relaxed);
                rejected.sort();
                let lines = rejected
                    .iter()
                    .map(|(n, r)| serde_json::json!({ "line": n, "reason": r }))
                    .collect();
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!(
                        "partial write: {} line(s) rejected, the rest stored",
                        rejected.len()
                    ),
                    lines,
                )
            }
        }
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            format!("not stored: {e}"),
            Vec::new(),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            "the writer stopped".into(),
            Vec::new(),
        ),
    }
}

/// Standard base64 (the `Basic` scheme), or `None`.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_and_constant_time_compare() {
        assert_eq!(
            super::base64_decode("dXNlcjpzZWNyZXQ=").as_deref(),
            Some(&b"user:secret"[..])
        );
        assert!(
            super::same(b"abc", b"abc")
                && !super::same(b"abc", b"abd")
                && !super::same(b"abc", b"ab")
        );
    }
}
