//! `[influx]`: the InfluxDB sink, with its checks.

use std::path::PathBuf;

use super::document::{Ctx, Located};
use serde::Deserialize;

/// Which InfluxDB write API the sink uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfluxApi {
    /// `/write?db=&rp=` with basic auth: InfluxDB 1.x and the v1 compatibility
    /// endpoints of 2.x and 3.x.
    V1,
    /// `/api/v2/write?org=&bucket=` with `Authorization: Token`: InfluxDB 2.x and 3.x.
    V2,
}

/// What the writer does when the outbox reaches `outbox_max_mib`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxFull {
    /// Stop committing (sources are not acknowledged and slow down) until the
    /// sink drains: nothing is dropped. The default.
    Block,
    /// Drop the oldest waiting points, counted and logged. The store keeps everything.
    DropOldest,
}

/// `[influx]`: the InfluxDB sink, fed from the store's durable outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxSink {
    /// Base URL, e.g. `http://127.0.0.1:8086` (https for TLS).
    pub url: String,
    /// Write API.
    #[serde(default = "default_influx_api")]
    pub api: InfluxApi,
    /// v1: database.
    #[serde(default)]
    pub database: Option<String>,
    /// v1: retention policy (default: the database's default).
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// v1: user name for basic auth.
    #[serde(default)]
    pub username: Option<String>,
    /// v1: environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// v1: file holding the password (relative to the site file).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// v2: organisation.
    #[serde(default)]
    pub org: Option<String>,
    /// v2: bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2: environment variable holding the API token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// v2: file holding the API token (relative to the site file).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust for https, e.g. a site's own CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Largest batch, points.
    #[serde(default = "default_batch_points")]
    pub batch_points: usize,
    /// Largest batch, KiB (before gzip).
    #[serde(default = "default_batch_kib")]
    pub batch_kib: usize,
    /// Longest wait for a batch to fill, ms.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Compress request bodies.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Request timeout, s.
    #[serde(default = "default_influx_timeout")]
    pub timeout_s: f64,
    /// First retry delay, s (doubles up to `retry_max_s`, with jitter).
    #[serde(default = "default_influx_retry_initial")]
    pub retry_initial_s: f64,
    /// Longest retry delay, s.
    #[serde(default = "default_influx_retry_max")]
    pub retry_max_s: f64,
    /// Outbox bound on disk, MiB.
    #[serde(default = "default_outbox_mib")]
    pub outbox_max_mib: u64,
    /// Policy when the outbox is full.
    #[serde(default = "default_outbox_full")]
    pub when_full: OutboxFull,
    /// Also write every raw reading (`reading`); the 15-minute consumption is always written.
    #[serde(default = "default_true")]
    pub raw_readings: bool,
    /// Seconds between KPI and health points.
    #[serde(default = "default_kpi_interval")]
    pub kpi_interval_s: u64,
    /// `instance` tag of the pipeline's health points (default: the host name).
    #[serde(default)]
    pub instance: Option<String>,
}

const fn default_influx_api() -> InfluxApi {
    InfluxApi::V1
}
const fn default_batch_points() -> usize {
    5000
}
const fn default_batch_kib() -> usize {
    1024
}
const fn default_flush_ms() -> u64 {
    1000
}
const fn default_true() -> bool {
    true
}
const fn default_influx_timeout() -> f64 {
    10.0
}
const fn default_influx_retry_initial() -> f64 {
    0.5
}
const fn default_influx_retry_max() -> f64 {
    60.0
}
const fn default_outbox_mib() -> u64 {
    1024
}
const fn default_outbox_full() -> OutboxFull {
    OutboxFull::Block
}
const fn default_kpi_interval() -> u64 {
    60
}

pub(crate) fn validate_influx(ctx: &mut Ctx<'_>, influx: Option<&Located<'_, InfluxSink>>) {
    let Some(l) = influx else {
        return;
    };
    let v = &l.value;
    if !(v.url.starts_with("http://") || v.url.starts_with("https://")) {
        ctx.error(
            l.span_of(&["url"]),
            l.key("url"),
            format!("`{}` is not an http(s) URL", v.url),
        );
    }
    match v.api {
        InfluxApi::V1 => {
            if v.database.as_deref().is_none_or(str::is_empty) {
                ctx.error(
                    l.span_of(&["api"]),
                    l.key("database"),
                    "the v1 write API needs `database`",
                );
            }
            if v.password_env.is_some() && v.password_file.is_some() {
                ctx.error(
                    l.span_of(&["password_file"]),
                    l.key("password_file"),
                    "give `password_env` or `password_file`, not both",
                );
            }
        }
        InfluxApi::V2 => {
            for key in ["org", "bucket"] {
                let val = if key == "org" { &v.org } else { &v.bucket };
                if val.as_deref().is_none_or(str::is_empty) {
                    ctx.error(
                        l.span_of(&["api"]),
                        l.key(key),
                        format!("the v2 write API needs `{key}`"),
                    );
                }
            }
            if v.token_env.is_none() == v.token_file.is_none() {
                ctx.error(
                    l.span_of(&["api"]),
                    l.key("token_env"),
                    "the v2 write API needs exactly one of `token_env` (an environment variable) or `token_file`",
                );
            }
        }
    }
    for (key, x) in [
        ("timeout_s", v.timeout_s),
        ("retry_initial_s", v.retry_initial_s),
        ("retry_max_s", v.retry_max_s),
    ] {
        if !(x.is_finite() && x > 0.0) {
            ctx.error(
                l.span_of(&[key]),
                l.key(key),
                format!("must be a number > 0, got {x}"),
            );
        }
    }
    for (key, x) in [
        ("batch_points", v.batch_points as u64),
        ("batch_kib", v.batch_kib as u64),
        ("outbox_max_mib", v.outbox_max_mib),
        ("kpi_interval_s", v.kpi_interval_s),
    ] {
        if x == 0 {
            ctx.error(l.span_of(&[key]), l.key(key), "must be at least 1");
        }
    }
}
