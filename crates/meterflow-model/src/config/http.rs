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
    if let Some(br) = broker {
        match br.value.listen.parse::<std::net::SocketAddr>() {
            Err(_) => ctx.error(
                br.span_of(&["listen"]),
                br.key("listen"),
                format!("`{}` is not ip:port", br.value.listen),
            ),
            // The embedded broker has no authentication and no TLS: anyone
            // who reaches it could publish readings for any meter.
            Ok(a) if !a.ip().is_loopback() => ctx.error(
                br.span_of(&["listen"]),
                br.key("listen"),
                format!(
                    "`{}`: the embedded broker has no passwords and no TLS, so it only listens on loopback (127.0.0.1); for meters on the network run Mosquitto with a password file and point [[mqtt]] at it",
                    br.value.listen
                ),
            ),
            Ok(_) => {}
        }
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
