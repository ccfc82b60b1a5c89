//! The InfluxDB sink: delivers the store's outbox, in order, to the v1
//! (`/write`) or v2 (`/api/v2/write`) write API, built on reqwest and
//! InfluxData's line-protocol crate (ADR 0008; not the `influxdb2` crate).
//!
//! One request in flight, so points arrive in outbox order. Outcomes:
//! - 2xx: the rows are removed from the outbox;
//! - 400/422 (InfluxDB refused some lines, e.g. a field type conflict): the
//!   batch is bisected down to the lines refused, which go to `dead_letters`
//!   with InfluxDB's message; the rest is delivered (InfluxDB overwrites a
//!   point written twice with the same value, so re-posting is harmless);
//! - 413: the batch is split in halves and retried;
//! - 429 and 503: retried after `Retry-After` (seconds) or the back-off;
//! - 401, 403, 404 (credentials, database or bucket missing), other 5xx,
//!   connection errors and timeouts: retried with exponential back-off and
//!   jitter, forever, logged, and the outbox grows: a misconfiguration must
//!   not turn good data into dead letters.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use meterflow_model::Site;
use meterflow_model::config::{InfluxApi, InfluxSink};
use meterflow_store::Outbox;
use tokio::sync::watch;

/// Counters of a sink, since start.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Points InfluxDB accepted.
    pub delivered: AtomicU64,
    /// Requests that succeeded.
    pub requests: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Lines refused for good (moved to dead letters).
    pub dead: AtomicU64,
}

pub(crate) enum Auth {
    None,
    Basic(String, String),
    Token(String),
}

impl Auth {
    /// Add the credentials to a request.
    pub(crate) fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::Token(t) => req.header("Authorization", format!("Token {t}")),
        }
    }
}

/// The credentials of `[influx]`, from the environment or files.
pub(crate) fn auth(site: &Site, cfg: &InfluxSink) -> anyhow::Result<Auth> {
    Ok(match cfg.api {
        InfluxApi::V1 => match (
            &cfg.username,
            secret(site, &cfg.password_env, &cfg.password_file, "password")?,
        ) {
            (Some(u), p) => Auth::Basic(u.clone(), p.unwrap_or_default()),
            (None, _) => Auth::None,
        },
        InfluxApi::V2 => match secret(site, &cfg.token_env, &cfg.token_file, "token")? {
            Some(t) => Auth::Token(t),
            None => Auth::None,
        },
    })
}

/// Outcome of posting one body.
#[derive(Debug, PartialEq)]
enum Post {
    Ok,
    /// Bad lines: bisect; the message is InfluxDB's.
    Refused(String),
    TooLarge,
    /// Retry after this long (from Retry-After), or the back-off.
    Retry(Option<Duration>, String),
}

/// The HTTP side of a sink (shared across awaits; no SQLite in it).
struct Http {
    gzip: bool,
    client: reqwest::Client,
    url: reqwest::Url,
    auth: Auth,
    stats: Arc<SinkStats>,
}

/// The sink of one site.
pub struct Sink {
    cfg: InfluxSink,
    http: Arc<Http>,
    outbox: Outbox,
    stats: Arc<SinkStats>,
}

fn secret(
    site: &Site,
    env: &Option<String>,
    file: &Option<std::path::PathBuf>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(var) = env {
        return std::env::var(var)
            .map(Some)
            .with_context(|| format!("[influx] {what}: environment variable {var} is not set"));
    }
    if let Some(f) = file {
        let path = site.relative(f);
        let (text, warning) = meterflow_model::secret_file::read(&path)
            .with_context(|| format!("[influx] {what}: cannot read {}", path.display()))?;
        if let Some(w) = warning {
            tracing::warn!("[influx] {what}_file: {w}");
        }
        return Ok(Some(text));
    }
    Ok(None)
}

/// The write URL of a sink configuration (precision ms).
pub fn write_url(cfg: &InfluxSink) -> anyhow::Result<reqwest::Url> {
    let base = cfg.url.trim_end_matches('/');
    let mut params: Vec<(&str, &str)> = Vec::new();
    let path = match cfg.api {
        InfluxApi::V1 => {
            params.push(("db", cfg.database.as_deref().unwrap_or_default()));
            if let Some(rp) = cfg.retention_policy.as_deref().filter(|r| !r.is_empty()) {
                params.push(("rp", rp));
            }
            "/write"
        }
        InfluxApi::V2 => {
            params.push(("org", cfg.org.as_deref().unwrap_or_default()));
            params.push(("bucket", cfg.bucket.as_deref().unwrap_or_default()));
            "/api/v2/write"
        }
    };
    params.push(("precision", "ms"));
    reqwest::Url::parse_with_params(&format!("{base}{path}"), &params)
        .with_context(|| format!("[influx] url `{}`", cfg.url))
}

impl Sink {
    /// Build the sink of a site with `[influx]`.
    pub fn new(site: &Site, stats: Arc<SinkStats>) -> anyhow::Result<Sink> {
        let cfg = site
            .influx
            .clone()
            .context("the site file has no [influx] section")?;
        let auth = auth(site, &cfg)?;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_s))
            .connect_timeout(Duration::from_secs_f64(cfg.timeout_s.min(10.0)));
        if let Some(ca) = &cfg.ca_file {
            let path = site.relative(ca);
            let pem = std::fs::read(&path)
                .with_context(|| format!("[influx] ca_file: cannot read {}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).with_context(|| {
                format!(
                    "[influx] ca_file: {} is not a PEM certificate",
                    path.display()
                )
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().context("building the HTTP client")?;
        let url = write_url(&cfg)?;
        let outbox = Outbox::open(&site.store_path())
            .with_context(|| format!("opening the outbox of {}", site.store_path().display()))?;
        Ok(Sink {
            http: Arc::new(Http {
                gzip: cfg.gzip,
                client,
                url,
                auth,
                stats: Arc::clone(&stats),
            }),
            cfg,
            outbox,
            stats,
        })
    }

    /// Where points go (credentials are not part of it).
    pub fn url(&self) -> &reqwest::Url {
        &self.http.url
    }
}

impl Http {
    async fn post(&self, body: &str) -> Post {
        let mut req = self
            .client
            .post(self.url.clone())
            .header("Content-Type", "text/plain; charset=utf-8");
        req = self.auth.apply(req);
        req = if self.gzip {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            if enc.write_all(body.as_bytes()).is_err() {
                return Post::Retry(None, "gzip failed".into());
            }
            match enc.finish() {
                Ok(gz) => req.header("Content-Encoding", "gzip").body(gz),
                Err(e) => return Post::Retry(None, format!("gzip failed: {e}")),
            }
        } else {
            req.body(body.to_string())
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Post::Retry(None, format!("{}: {e}", self.url.host_str().unwrap_or("?")));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Post::Ok;
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let text = resp.text().await.unwrap_or_default();
        let msg = format!("HTTP {}: {}", status.as_u16(), text.trim());
        match status.as_u16() {
            400 | 422 => Post::Refused(msg),
            413 => Post::TooLarge,
            429 | 503 => Post::Retry(retry_after, msg),
            _ => Post::Retry(None, msg),
        }
    }

    /// Deliver `body` (whole lines), splitting on 413 and isolating refused
    /// lines; returns the lines refused for good, or a retryable error.
    async fn deliver(
        &self,
        body: &str,
    ) -> Result<Vec<(String, String)>, (Option<Duration>, String)> {
        let mut dead = Vec::new();
        let mut stack: Vec<&str> = vec![body];
        while let Some(part) = stack.pop() {
            match self.post(part).await {
                Post::Ok => {
                    self.stats.requests.fetch_add(1, Ordering::Relaxed);
                }
                Post::Retry(after, msg) => return Err((after, msg)),
                outcome @ (Post::Refused(_) | Post::TooLarge) => {
                    let lines = part.matches('\n').count();
                    if lines <= 1 {
                        let reason = match outcome {
                            Post::Refused(m) => format!("InfluxDB refused the point: {m}"),
                            _ => "InfluxDB refused the point as too large (413)".into(),
                        };
                        dead.push((reason, part.to_string()));
                        continue;
                    }
                    // Split at the line boundary nearest the middle; the first half goes first.
                    let (a, b) = part.split_at(split_point(part));
                    if !b.is_empty() {
                        stack.push(b);
                    }
                    if !a.is_empty() {
                        stack.push(a);
                    }
                }
            }
        }
        Ok(dead)
    }
}

/// What the sink's owner asks of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Deliver, letting a batch fill for up to `flush_ms`.
    Run,
    /// Deliver what waits now without letting batches fill (shard 0 before
    /// its final KPIs, which read its own rollups back from InfluxDB).
    Flush,
    /// Deliver what is left, with a few retries, and return.
    Stop,
}

impl Sink {
    /// Deliver until `control` says [`Control::Stop`], then deliver what is
    /// left (a few retries on failure) and return.
    pub async fn run(mut self, mut stop: watch::Receiver<Control>) -> anyhow::Result<()> {
        let mut backoff = meterflow_core::backoff::Backoff::new(
            Duration::from_secs_f64(self.cfg.retry_initial_s.max(0.0)),
            Duration::from_secs_f64(self.cfg.retry_max_s.max(0.0)),
        );
        let mut first_waiting: Option<Instant> = None;
        let mut logged_at: Option<Instant> = None;
        let mut prefetched: Option<Vec<meterflow_store::OutboxRow>> = None;
        let mut failed_stopping = 0;
        loop {
            let control = *stop.borrow();
            let stopping = control == Control::Stop;
            let rows = match prefetched.take() {
                Some(rows) => rows,
                None => self
                    .outbox
                    .peek(self.cfg.batch_points, self.cfg.batch_kib * 1024)?,
            };
            let points: i64 = rows.iter().map(|r| r.points).sum();
            if rows.is_empty() {
                if stopping {
                    return Ok(());
                }
                first_waiting = None;
                wait(
                    &mut stop,
                    Duration::from_millis(self.cfg.flush_ms.clamp(10, 200)),
                )
                .await;
                continue;
            }
            // A batch waits to fill, at most flush_ms.
            let since = *first_waiting.get_or_insert_with(Instant::now);
            if control == Control::Run
                && (points as usize) < self.cfg.batch_points
                && since.elapsed() < Duration::from_millis(self.cfg.flush_ms)
            {
                wait(&mut stop, Duration::from_millis(self.cfg.flush_ms.min(50))).await;
                continue;
            }
            let last = rows.last().map_or(0, |r| r.id);
            let body: String = rows.iter().map(|r| r.body.as_str()).collect();
            // While this batch is in flight, read the next one from the outbox.
            let http = Arc::clone(&self.http);
            let request = tokio::spawn(async move { http.deliver(&body).await });
            let next =
                self.outbox
                    .peek_after(last, self.cfg.batch_points, self.cfg.batch_kib * 1024)?;
            let outcome = request
                .await
                .unwrap_or_else(|e| Err((None, format!("request task failed: {e}"))));
            match outcome {
                Ok(dead) => {
                    prefetched = Some(next).filter(|n| !n.is_empty());
                    if dead.is_empty() {
                        self.outbox.ack(last)?;
                    } else {
                        tracing::warn!(
                            lines = dead.len(),
                            "InfluxDB refused lines for good; moved to dead_letters: {}",
                            dead[0].0
                        );
                        self.outbox
                            .ack_with_dead(last, &dead, meterflow_model::clock::now_ms())?;
                    }
                    self.stats
                        .delivered
                        .fetch_add(points as u64 - dead.len() as u64, Ordering::Relaxed);
                    self.stats
                        .dead
                        .fetch_add(dead.len() as u64, Ordering::Relaxed);
                    backoff.reset();
                    first_waiting = None;
                    if logged_at.take().is_some() {
                        tracing::info!("InfluxDB reachable again; delivering the outbox.");
                    }
                }
                Err((after, msg)) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    if logged_at.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!(
                            "InfluxDB write failed ({msg}); retrying, the outbox keeps the points."
                        );
                        logged_at = Some(Instant::now());
                    }
                    let step = backoff.next_delay();
                    let delay = after.unwrap_or_else(|| {
                        // Full jitter between half and the whole back-off.
                        let jitter =
                            0.5 + 0.5 * (meterflow_model::clock::now_ms() % 1000) as f64 / 1000.0;
                        step.mul_f64(jitter)
                    });
                    if stopping {
                        // Shutting down: one slow or refused request is not
                        // InfluxDB away (the final KPI points may be in this
                        // batch), so a few short retries; after those the
                        // outbox keeps the rest for the next start.
                        failed_stopping += 1;
                        if failed_stopping >= STOP_ATTEMPTS {
                            return Ok(());
                        }
                        tokio::time::sleep(delay.min(Duration::from_millis(200))).await;
                        continue;
                    }
                    wait(&mut stop, delay).await;
                }
            }
        }
    }
}

/// Requests that may fail once shutting down before the sink gives up and
/// leaves the rest in the outbox.
const STOP_ATTEMPTS: u32 = 3;

/// Sleep `d`, or less if the owner asks for something else meanwhile.
async fn wait(stop: &mut watch::Receiver<Control>, d: Duration) {
    if *stop.borrow() == Control::Stop {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
}

/// Where to split a batch of lines in two: after the newline nearest before
/// the middle (else the first after it; else the end). Searched as bytes:
/// the middle may fall inside a multi-byte character (an alert message in
/// Chinese), a newline never does, so the cut is always a char boundary.
fn split_point(part: &str) -> usize {
    let bytes = part.as_bytes();
    let mid = bytes.len() / 2;
    match bytes[..mid].iter().rposition(|&c| c == b'\n') {
        Some(i) => i + 1,
        None => bytes[mid..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(bytes.len(), |i| mid + i + 1),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_split_at_a_newline_even_when_the_middle_is_inside_a_character() {
        // 18 bytes: "a\n", 级 (3 bytes) five times, "x"; the middle (byte 9)
        // is inside the third 级. The only newline is at byte 1: cut after it.
        let text = "a\n级级级级级x";
        assert_eq!(text.len(), 18);
        assert!(!text.is_char_boundary(9));
        assert_eq!(split_point(text), 2);
        // No newline before the middle: the first after it.
        let text = "级级级级\nb\nc";
        assert_eq!(split_point(text), 13);
        // None at all: the whole part.
        assert_eq!(split_point("级级级"), 9);
    }
    use super::*;

    fn cfg(src: &str) -> InfluxSink {
        let text = format!("[site]\nname = \"t\"\n\n[influx]\n{src}");
        let site =
            Site::parse(&text, std::path::Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        site.influx.unwrap_or_else(|| panic!("no [influx]"))
    }

    #[test]
    fn urls_of_both_apis() {
        let v1 = cfg(
            "url = \"http://127.0.0.1:8086/\"\ndatabase = \"energy db\"\nretention_policy = \"autogen\"\n",
        );
        assert_eq!(
            write_url(&v1).map(|u| u.to_string()).unwrap_or_default(),
            "http://127.0.0.1:8086/write?db=energy+db&rp=autogen&precision=ms"
        );
        let v2 = cfg(
            "url = \"https://influx.example:8086\"\napi = \"v2\"\norg = \"机关\"\nbucket = \"meters\"\ntoken_env = \"T\"\n",
        );
        assert_eq!(
            write_url(&v2).map(|u| u.to_string()).unwrap_or_default(),
            "https://influx.example:8086/api/v2/write?org=%E6%9C%BA%E5%85%B3&bucket=meters&precision=ms"
        );
    }

    #[test]
    fn config_mistakes_are_located() {
        let text = "[site]\nname = \"t\"\n\n[influx]\nurl = \"127.0.0.1:8086\"\napi = \"v2\"\norg = \"o\"\n";
        let err = Site::parse(text, std::path::Path::new("t.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("t.toml:5") && err.contains("influx.url"),
            "{err}"
        );
        assert!(
            err.contains("influx.bucket") && err.contains("needs `bucket`"),
            "{err}"
        );
        assert!(err.contains("influx.token_env"), "{err}");
    }
}
