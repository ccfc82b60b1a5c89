//! `[api]`: the read API, the page and the metrics, with their checks.

use std::path::PathBuf;

use super::document::{Ctx, Located};
use serde::Deserialize;

/// `[api]`: the read API (`/api/v1`), the overview page and Prometheus metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// File of hashed tokens (relative to the site file): one `ROLE sha256:HEX` per
    /// line; roles `admin`, `manager`, `clerk:LEDGER`, `agency:ID`. `meterflow token` makes lines.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// Environment variable holding `ROLE=TOKEN` pairs separated by spaces (hashed at start).
    #[serde(default)]
    pub tokens_env: Option<String>,
    /// Serve the overview page `/` without a token (site-wide figures; for a
    /// wall screen or the demo). Default: a manager or admin token is needed.
    #[serde(default)]
    pub public_overview: bool,
    /// Failed authentications per minute from one address before it gets 429.
    #[serde(default = "default_auth_failures")]
    pub max_auth_failures: u32,
    /// Connections open at once; more are closed at once. Each keeps a file
    /// descriptor, so keep it well under the process's limit.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Reverse proxies in front of the API (IP addresses): for a request
    /// from one of them, the client is the last address of its
    /// `X-Forwarded-For` header (for the auth-failure limit); from anyone
    /// else that header is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

pub(crate) const fn default_max_connections() -> usize {
    1024
}

const fn default_auth_failures() -> u32 {
    20
}

/// `[api]`: the listen address and where the tokens come from.
pub(crate) fn check_api(ctx: &mut Ctx<'_>, api: Option<&Located<'_, ApiConfig>>) {
    if let Some(a) = api {
        if !a
            .value
            .listen
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            ctx.error(
                a.span_of(&["listen"]),
                a.key("listen"),
                format!("`{}` is not host:port", a.value.listen),
            );
        }
        if a.value.tokens_file.is_none() && a.value.tokens_env.is_none() {
            ctx.error(
                a.span_of(&[]),
                a.key("tokens_file"),
                "the API needs `tokens_file` (hashed tokens) or `tokens_env`",
            );
        }
    }
}
