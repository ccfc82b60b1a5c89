//! `[http]` push ingest and the embedded `[broker]`, with their checks.

use super::document::{Ctx, Located};
use super::*;
use serde::Deserialize;

/// `[http]`: InfluxDB-compatible push ingest (`POST /write`, `POST /api/v2/write`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngest {
    /// Address to listen on, e.g. `127.0.0.1:8086`.
    pub listen: String,
    /// Environment variable holding the write token (required: writes are authenticated).
    pub token_env: String,
    /// Largest request body after decompression, KiB.
    #[serde(default = "default_max_body_kib")]
    pub max_body_kib: usize,
    /// Connections open at once; more are closed at once.
    #[serde(default = "super::api::default_max_connections")]
    pub max_connections: usize,
}

const fn default_max_body_kib() -> usize {
    10 * 1024
}

/// `[broker]` and `[http]`: listen addresses and the push token's variable.
pub(crate) fn validate_http(
    ctx: &mut Ctx<'_>,
    broker: Option<&Located<'_, EmbeddedBroker>>,
    http: Option<&Located<'_, HttpIngest>>,
) {
    if let Some(br) = broker
        && br.value.listen.parse::<std::net::SocketAddr>().is_err()
    {
        ctx.error(
            br.span_of(&["listen"]),
            br.key("listen"),
            format!("`{}` is not ip:port", br.value.listen),
        );
    }
    if let Some(h) = http {
        if h.value.listen.parse::<std::net::SocketAddr>().is_err() {
            ctx.error(
                h.span_of(&["listen"]),
                h.key("listen"),
                format!("`{}` is not ip:port", h.value.listen),
            );
        }
        if h.value.token_env.is_empty() {
            ctx.error(
                h.span_of(&["token_env"]),
                h.key("token_env"),
                "name the environment variable holding the write token",
            );
        }
    }
}
