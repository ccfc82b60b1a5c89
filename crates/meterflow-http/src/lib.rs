//! The read API (`/api/v1`), the overview page (`/`), health and Prometheus
//! metrics, with scoped bearer tokens.
//!
//! Tokens are kept only as SHA-256 hashes (`[api] tokens_file`; or hashed at
//! start from `tokens_env`). Roles: `admin`, `manager` (all agencies),
//! `clerk:LEDGER` (reads like a manager), `agency:ID` (its own agency, its
//! meters and their alerts only: anything else is 404 for lists' members and
//! single resources, 403 for building and site figures). Errors are
//! `{"error": code, "message": …, "field": …}`. Auth failures are rate
//! limited per client address. The OpenAPI document is built from [`ROUTES`],
//! the same table the tests walk against the live router.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Datelike, TimeZone};
use meterflow_core::limiter::FailureLimiter;
use meterflow_kpi::ownership::{meter_agencies, meter_of_agency, occupied};
use meterflow_model::Site;
use meterflow_model::config::Meter;
pub use meterflow_runtime::pipeline::Live;
use meterflow_store::Reader;
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::sync::watch;

use meterflow_kpi::{Scope, ScopeKpis, period_of};

pub mod assets;
mod buses;
pub mod chart;
mod drill;
mod ledger_routes;
mod ledger_views;
pub mod page;
pub mod session;
pub mod ui;
mod web;

/// A role of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// All agencies; acknowledges alerts.
    Manager,
    /// Writes one ledger (ledgers come later); reads like a manager.
    Clerk(String),
    /// One agency's data only.
    Agency(String),
}

impl Role {
    /// Parse `admin`, `manager`, `clerk:LEDGER`, `agency:ID`.
    pub fn parse(s: &str) -> Option<Role> {
        match s.split_once(':') {
            None if s == "admin" => Some(Role::Admin),
            None if s == "manager" => Some(Role::Manager),
            Some(("clerk", l)) if !l.is_empty() => Some(Role::Clerk(l.to_string())),
            Some(("agency", a)) if !a.is_empty() => Some(Role::Agency(a.to_string())),
            _ => None,
        }
    }

    fn agency(&self) -> Option<&str> {
        match self {
            Role::Agency(a) => Some(a),
            _ => None,
        }
    }
}

/// SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The token table: hash → role.
pub fn load_tokens(site: &Site) -> anyhow::Result<Vec<(String, Role)>> {
    let Some(cfg) = &site.api else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    if let Some(f) = &cfg.tokens_file {
        let path = site.relative(f);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("[api] tokens_file {}: {e}", path.display()))?;
        // Hashes, not tokens, but a readable list still tells an attacker
        // which roles exist and lets them be replaced.
        if let Some(w) = meterflow_model::secret_file::loose(&path) {
            tracing::warn!("[api] tokens_file: {w}");
        }
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line.split_once(char::is_whitespace).and_then(|(r, h)| {
                let h = h.trim().strip_prefix("sha256:")?;
                (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
                Some((h.to_ascii_lowercase(), Role::parse(r)?))
            });
            match parsed {
                Some(p) => out.push(p),
                None => anyhow::bail!(
                    "{}:{}: expected `ROLE sha256:HEX` (roles admin, manager, clerk:LEDGER, agency:ID)",
                    path.display(),
                    i + 1
                ),
            }
        }
    }
    if let Some(var) = &cfg.tokens_env {
        let text = std::env::var(var).map_err(|_| {
            anyhow::anyhow!("[api] tokens_env: environment variable {var} is not set")
        })?;
        for pair in text.split_whitespace() {
            let Some((r, t)) = pair.split_once('=') else {
                anyhow::bail!("[api] tokens_env {var}: expected ROLE=TOKEN pairs");
            };
            let role = Role::parse(r)
                .ok_or_else(|| anyhow::anyhow!("[api] tokens_env {var}: unknown role `{r}`"))?;
            if t.len() < 16 {
                anyhow::bail!(
                    "[api] tokens_env {var}: a token of role `{r}` is shorter than 16 characters"
                );
            }
            out.push((hash_token(t), role));
        }
    }
    Ok(out)
}

/// The failure counts of the API's authentication.
struct Failures {
    by_address: FailureLimiter<std::net::IpAddr>,
    by_token: FailureLimiter<String>,
}

struct App {
    site: Arc<Site>,
    tokens: Vec<(String, Role)>,
    live: Live,
    /// Failed authentications per client address and per presented token
    /// (its hash), counted only after a token failed.
    failures: Mutex<Failures>,
    /// Ledger writes are checked and appended one at a time.
    ledger_write: tokio::sync::Mutex<()>,
    /// The KPI service's context: the hierarchy walk and the merged
    /// office-space site, shared by every request.
    kpi: meterflow_kpi::KpiContext,
    /// Idle read connections.
    readers: Mutex<Vec<Reader>>,
    /// Heavy requests (KPIs) computing at once: twice the cores, so that 64
    /// clients queue for a warm connection instead of 64 threads each
    /// opening their own.
    heavy: tokio::sync::Semaphore,
    /// Overview pages rendering at once (each computes every agency's KPIs).
    page_slots: tokio::sync::Semaphore,
    /// Assessment exports running at once.
    #[cfg(feature = "export")]
    export_slots: tokio::sync::Semaphore,
    /// The pages' signed-in browsers.
    sessions: Mutex<session::Sessions<Role>>,
}

/// An API error.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.code, "message": self.message, "field": self.field}));
        if self.code == "busy" {
            return (self.status, [(header::RETRY_AFTER, "5")], body).into_response();
        }
        (self.status, body).into_response()
    }
}

/// A permit for heavy work (KPIs): waits in line, but not for longer than
/// 10 s; beyond that the answer is 503 with `Retry-After` instead of an
/// ever longer queue.
async fn heavy_permit(app: &App) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    permit_within(&app.heavy, Duration::from_secs(10)).await
}

/// A permit of `slots` within `wait`, else 503 `busy` (with Retry-After).
async fn permit_within(
    slots: &tokio::sync::Semaphore,
    wait: Duration,
) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    match tokio::time::timeout(wait, slots.acquire()).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(internal(e)),
        Err(_) => Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "busy",
            message: format!(
                "every KPI worker has been busy for {}; retry in 5 s",
                meterflow_core::time::human_duration(wait.as_millis() as i64)
            ),
            field: None,
        }),
    }
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "bad_request",
        message: message.into(),
        field: Some(field.to_string()),
    }
}

fn not_found(what: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: what.into(),
        field: None,
    }
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        message: message.into(),
        field: None,
    }
}

/// 503 with `Retry-After`: a bounded route is at its limit. The client
/// retries; nothing queues without bound (500 concurrent page requests
/// once took 1.1 GB and 488 threads).
fn busy(what: &str, retry_after_s: u32) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, retry_after_s.to_string())],
        Json(json!({"error": "busy", "message": format!("{what} is being computed for other clients; retry in {retry_after_s} s"), "field": null})),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!("API: {e}");
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "unavailable",
        message: "the store cannot be read right now; retry".into(),
        field: None,
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// One fixed route of the API: method, path (OpenAPI form), summary, query parameters.
pub struct StaticRoute {
    /// `get` or `post`.
    pub method: &'static str,
    /// Path with `{param}`s.
    pub path: &'static str,
    /// What it returns.
    pub summary: &'static str,
    /// Query parameters (name, description).
    pub query: &'static [(&'static str, &'static str)],
}

/// One route of the API as the OpenAPI document lists it.
pub struct Route {
    /// `get` or `post`.
    pub method: &'static str,
    /// Path with `{param}`s.
    pub path: String,
    /// What it does.
    pub summary: String,
    /// Query parameters (name, description).
    pub query: &'static [(&'static str, &'static str)],
    /// The request body's schema and media type (POST).
    pub body: Option<(&'static str, Value)>,
}

const LIST_QUERY: &[(&str, &str)] = &[
    ("from", "entries at or after, RFC 3339 or local date"),
    ("to", "entries before (exclusive)"),
    ("agency", "only this agency's entries"),
    ("limit", "page size, 1-1000 (default 100)"),
    ("offset", "first item (default 0)"),
];

/// Every route: the fixed ones, then four per ledger entry kind.
pub fn routes() -> Vec<Route> {
    let mut out: Vec<Route> = ROUTES
        .iter()
        .map(|r| Route {
            method: r.method,
            path: r.path.to_string(),
            summary: r.summary.to_string(),
            query: r.query,
            body: (r.method == "post").then(|| {
                ("application/json", json!({"type": "object", "properties": {"rule": {"type": "string"}, "target": {"type": "string"}}, "required": ["rule", "target"]}))
            }),
        })
        .collect();
    if cfg!(feature = "export") {
        out.push(Route {
            method: "get",
            path: "/api/v1/exports/assessment".into(),
            summary: "The annual energy assessment: the workbook (xlsx), or one table as CSV (UTF-8 with BOM) or Parquet. An agency token gets its own agency's.".into(),
            query: &[
                ("year", "calendar year"),
                ("agency", "one agency (default: every agency, building and the site)"),
                ("format", "xlsx (default), csv or parquet"),
                ("profile", "national (default) or quota-standard"),
                ("table", "csv/parquet: assessment (default), monthly, sources or cover"),
            ],
            body: None,
        });
    }
    for k in meterflow_ledgers::KINDS {
        let base = format!("/api/v1/ledgers/{}/{}", k.ledger, k.path);
        let fields: Vec<&str> = k.fields.iter().map(|f| f.name).collect();
        let entry = meterflow_ledgers::schema(k);
        out.push(Route {
            method: "post",
            path: base.clone(),
            summary: format!(
                "Record a {} ({}; time = {}) (admin, manager, clerk:{}).",
                k.noun,
                fields.join(", "),
                k.time,
                k.ledger
            ),
            query: &[],
            body: Some(("application/json", entry.clone())),
        });
        out.push(Route {
            method: "get",
            path: base.clone(),
            summary: format!(
                "{} entries in effect, paginated (an agency token: its own).",
                k.noun
            ),
            query: LIST_QUERY,
            body: None,
        });
        out.push(Route {
            method: "post",
            path: format!("{base}/{{id}}/correction"),
            summary: format!(
                "Correct a {} with a new entry (same fields), or void it: {{\"void\": true, \"reason\": …}}. Nothing is changed in place.",
                k.noun
            ),
            query: &[],
            body: Some((
                "application/json",
                json!({"oneOf": [entry, {"type": "object", "properties": {"void": {"type": "boolean", "enum": [true]}, "reason": {"type": "string"}}, "required": ["void"], "additionalProperties": false}]}),
            )),
        });
        out.push(Route {
            method: "post",
            path: format!("{base}/import"),
            summary: format!(
                "Import {} entries from CSV (header: time, {}); a report per row. Any bad row: nothing recorded, unless partial=true.",
                k.noun,
                fields.join(", ")
            ),
            query: &[("partial", "record the good rows even if some are rejected")],
            body: Some(("text/csv", json!({"type": "string"}))),
        });
    }
    out
}

/// Every route, in the OpenAPI document's order.
pub const ROUTES: &[StaticRoute] = &[
    StaticRoute {
        method: "get",
        path: "/api/v1/site",
        summary: "The site: name, time zone, factor and quota sets.",
        query: &[],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/buildings",
        summary: "Buildings (an agency token: those it occupies).",
        query: &[],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/zones",
        summary: "Zones (an agency token: those it occupies).",
        query: &[],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/agencies",
        summary: "Agencies with their current headcount (an agency token: itself).",
        query: &[],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/meters",
        summary: "Meters, paginated (an agency token: the meters serving it).",
        query: &[
            ("agency", "only meters serving this agency"),
            ("building", "only meters of this building"),
            ("limit", "page size, 1-1000 (default 100)"),
            ("offset", "first item (default 0)"),
        ],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/meters/{id}/consumption",
        summary: "15-minute consumption of a meter with quality.",
        query: &[
            ("from", "start, RFC 3339 or local date (required)"),
            ("to", "end, exclusive (required)"),
        ],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/kpis",
        summary: "KPIs of an agency, building or the site for a month or year, with quota tracking, and the energy cost with the site's tariffs (`cost`: by carrier and time-of-use period, the water surcharge, what could not be priced; null without [[tariff]]); for an agency's year, `budget`: its cost against its [[budget]], tracked and projected like the quota.",
        query: &[
            ("scope", "agency, building or site"),
            ("id", "agency or building id"),
            ("year", "calendar year"),
            ("month", "1-12; absent = the year"),
        ],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/alerts",
        summary: "Firing alerts and the history, paginated (an agency token: its own and its meters').",
        query: &[
            ("limit", "history page size (default 100)"),
            ("offset", "first history item"),
        ],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/buses",
        summary: "Buses and their meters' polls; per data identifier of DL/T 645 / CJ/T 188 meters: requests, answers, error replies, bad checksums, timeouts (manager, admin).",
        query: &[],
    },
    StaticRoute {
        method: "post",
        path: "/api/v1/alerts/ack",
        summary: "Acknowledge a firing alert: body {\"rule\", \"target\"} (manager, admin).",
        query: &[],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/ledgers/waste/summary",
        summary: "Per agency and year: kg by category, recovery rate (回收利用率), points, one-vote veto.",
        query: &[("year", "calendar year")],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/ledgers/space/summary",
        summary: "Office space on a date: rooms, per agency m² per person against the 2014 standard, 超标 rooms, idle rooms and 闲置率.",
        query: &[("date", "local date (default today)")],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/ledgers/vehicles/summary",
        summary: "The fleet's year: per vehicle km, litres, L/100 km, running cost by category, maintenance due, odometer anomalies.",
        query: &[("year", "calendar year")],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/ledgers/assets/register",
        summary: "Assets on a date: place, custodian, straight-line net book value, idle; totals per agency.",
        query: &[
            ("date", "local date (default today)"),
            (
                "idle_days",
                "idle after this many days without a scan or event (default 180)",
            ),
            ("limit", "page size, 1-1000 (default 100)"),
            ("offset", "first item (default 0)"),
        ],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/ledgers/assets/reconciliation",
        summary: "Inventory reconciliation of a room or an agency over a scan window: missing, misplaced, unexpected.",
        query: &[
            ("from", "window start, RFC 3339 or local date (required)"),
            ("to", "window end, exclusive (required)"),
            ("room", "a room (or agency)"),
            ("agency", "an agency (or room)"),
        ],
    },
    StaticRoute {
        method: "get",
        path: "/api/v1/openapi.json",
        summary: "This document.",
        query: &[],
    },
    StaticRoute {
        method: "get",
        path: "/healthz",
        summary: "The process is up.",
        query: &[],
    },
    StaticRoute {
        method: "get",
        path: "/readyz",
        summary: "The store can be read.",
        query: &[],
    },
    StaticRoute {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics: readings, buses, outbox, alerts.",
        query: &[],
    },
];

/// The schema of a query parameter, with the ranges the handlers enforce.
fn param_schema(name: &str) -> Value {
    match name {
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        "offset" => json!({"type": "integer", "minimum": 0}),
        "year" => json!({"type": "integer", "minimum": 2000, "maximum": 2100}),
        "month" => json!({"type": "integer", "minimum": 1, "maximum": 12}),
        "scope" => json!({"type": "string", "enum": ["agency", "building", "site"]}),
        "date" => json!({"type": "string", "format": "date"}),
        "idle_days" => json!({"type": "integer", "minimum": 1, "maximum": 3650}),
        "partial" => json!({"type": "boolean"}),
        "format" => json!({"type": "string", "enum": ["xlsx", "csv", "parquet"]}),
        "profile" => json!({"type": "string", "enum": ["national", "quota-standard"]}),
        "table" => json!({"type": "string", "enum": ["assessment", "monthly", "sources", "cover"]}),
        _ => json!({"type": "string"}),
    }
}

/// The OpenAPI 3.0 document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for r in routes() {
        let mut params: Vec<Value> = r
            .query
            .iter()
            .map(|(n, d)| json!({"name": n, "in": "query", "required": matches!(*n, "scope" | "year") || (matches!(*n, "from" | "to") && d.contains("required")), "description": d, "schema": param_schema(n)}))
            .collect();
        for p in ["ledger", "kind"] {
            if r.path.contains(&format!("{{{p}}}")) {
                params.push(json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}));
            }
        }
        if r.path.contains("{id}") {
            params.push(
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}),
            );
        }
        let public = matches!(
            r.path.as_str(),
            "/healthz" | "/readyz" | "/metrics" | "/api/v1/openapi.json"
        );
        let ok = if r.path.as_str() == "/api/v1/exports/assessment" {
            json!({"description": "The file", "content": {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}
            }})
        } else if matches!(r.path.as_str(), "/healthz" | "/readyz" | "/metrics") {
            json!({"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}})
        } else {
            json!({"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}})
        };
        let mut op = json!({
            "summary": r.summary,
            "parameters": params,
            "responses": {
                "200": ok,
                "429": {"description": "Too many failed authentications from this address"},
                "503": {"description": "The store cannot be read right now"},
                "400": {"description": "Bad request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "401": {"description": "No valid token"},
                "403": {"description": "The token's role does not cover this"},
                "404": {"description": "Not found (or not visible to this token)"}
            }
        });
        if !public {
            op["security"] = json!([{"bearer": []}]);
        }
        if let Some((media, schema)) = &r.body {
            op["requestBody"] = json!({"required": true, "content": {*media: {"schema": schema}}});
            if r.path.contains("/ledgers/") {
                let import = r.path.ends_with("/import");
                if import {
                    op["responses"]["200"] = json!({"description": "Imported (with partial=true, rejected rows are listed)", "content": {"application/json": {"schema": {"type": "object"}}}});
                } else {
                    op["responses"]["201"] = json!({"description": "Recorded", "content": {"application/json": {"schema": {"type": "object"}}}});
                    if let Some(o) = op["responses"].as_object_mut() {
                        o.remove("200");
                    }
                }
                op["responses"]["409"] = json!({"description": "The entry was already corrected"});
            }
        }
        paths
            .entry(r.path.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|o| o.insert(r.method.to_string(), op));
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "meterflow API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error", "message"], "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string", "nullable": true}}}}
        }
    })
}

impl App {
    /// The role of the request's token, or 401 (429 after many failures from one address).
    /// The client's address: the peer, or, when the peer is a trusted
    /// proxy, the last address its `X-Forwarded-For` names.
    fn client_ip(&self, headers: &HeaderMap, peer: SocketAddr) -> std::net::IpAddr {
        let trusted = self
            .site
            .api
            .as_ref()
            .is_some_and(|a| a.trusted_proxies.contains(&peer.ip()));
        if !trusted {
            return peer.ip();
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .next_back()
            .unwrap_or(peer.ip())
    }

    fn auth(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<Role, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("Token "))
            });
        let hashed = token.map(hash_token);
        let found = hashed.as_ref().and_then(|h| {
            // Compare with every entry, in time independent of where it matches.
            let mut role = None;
            for (stored, r) in &self.tokens {
                use subtle::ConstantTimeEq as _;
                let same: bool = stored.as_bytes().ct_eq(h.as_bytes()).into();
                if same && role.is_none() {
                    role = Some(r.clone());
                }
            }
            role
        });
        // A valid token is never refused: the failure count is consulted
        // only once the token has failed, so guesses from a shared address
        // (a reverse proxy) cannot lock the valid users behind it out.
        if let Some(r) = found {
            return Ok(r);
        }
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let client = self.client_ip(headers, peer);
        let blocked = failures.by_address.blocked(&client, now)
            || hashed
                .as_ref()
                .is_some_and(|h| failures.by_token.blocked(h, now));
        if blocked {
            return Err(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too_many_failures",
                message: "too many failed authentications from this address; wait a minute".into(),
                field: None,
            });
        }
        failures.by_address.fail(client, now);
        if let Some(h) = hashed {
            failures.by_token.fail(h, now);
        }
        Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "a valid bearer token is needed (Authorization: Bearer …)".into(),
            field: None,
        })
    }

    /// A read connection from the pool (opened if none is idle); it goes
    /// back to the pool when dropped. Opening one costs a file open and the
    /// schema parse, and its statement cache is what makes the next
    /// request's queries cheap.
    fn reader(&self) -> Result<PooledReader<'_>, ApiError> {
        let idle = self.readers.lock().ok().and_then(|mut p| p.pop());
        let r = match idle {
            Some(r) => r,
            None => Reader::open(&self.site.store_path()).map_err(internal)?,
        };
        Ok(PooledReader {
            reader: Some(r),
            pool: &self.readers,
        })
    }
}

/// A pooled read connection.
struct PooledReader<'a> {
    reader: Option<Reader>,
    pool: &'a Mutex<Vec<Reader>>,
}

impl std::ops::Deref for PooledReader<'_> {
    type Target = Reader;
    fn deref(&self) -> &Reader {
        // Always Some until dropped.
        self.reader
            .as_ref()
            .expect("pooled reader present until drop")
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let (Some(r), Ok(mut pool)) = (self.reader.take(), self.pool.lock())
            && pool.len() < 16
        {
            pool.push(r);
        }
    }
}

fn can_see_meter(site: &Site, role: &Role, m: &Meter) -> bool {
    role.agency().is_none_or(|a| meter_of_agency(site, m, a))
}

fn building_of(site: &Site, m: &Meter) -> Option<String> {
    m.serves.building.clone().or_else(|| {
        let z = m.serves.zone.as_ref()?;
        site.zones
            .iter()
            .find(|x| &x.id == z)
            .map(|x| x.building.clone())
    })
}

fn iso(site: &Site, ms: i64) -> String {
    site.tz
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

fn page(q: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad("limit", "limit is 1 to 1000"))?,
    };
    let offset = match q.get("offset") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad("offset", "offset is a non-negative integer"))?,
    };
    Ok((limit, offset))
}

type Q = Query<HashMap<String, String>>;
type Peer = ConnectInfo<SocketAddr>;

async fn site_h(State(app): State<Arc<App>>, ConnectInfo(peer): Peer, h: HeaderMap) -> ApiResult {
    app.auth(&h, peer)?;
    let s = &app.site;
    Ok(Json(
        json!({"name": s.site.name, "timezone": s.tz.name(), "factor_set": s.site.factor_set, "quota_set": s.site.quota_set, "grid_region": s.site.grid_region}),
    ))
}

async fn buildings_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let visible = role.agency().map(|a| occupied(&app.site, a).0);
    let items: Vec<Value> = app
        .site
        .buildings
        .iter()
        .filter(|b| visible.as_ref().is_none_or(|v| v.contains(&b.id)))
        .map(|b| json!({"id": b.id, "name": b.name, "total_area_m2": b.total_area_m2, "office_area_m2": b.office_area_m2}))
        .collect();
    Ok(Json(json!({"items": items})))
}

async fn zones_h(State(app): State<Arc<App>>, ConnectInfo(peer): Peer, h: HeaderMap) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let visible = role.agency().map(|a| occupied(&app.site, a).1);
    let items: Vec<Value> = app
        .site
        .zones
        .iter()
        .filter(|z| visible.as_ref().is_none_or(|v| v.contains(&z.id)))
        .map(|z| json!({"id": z.id, "building": z.building, "area_m2": z.area_m2}))
        .collect();
    Ok(Json(json!({"items": items})))
}

async fn agencies_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let today = chrono::Utc::now().with_timezone(&app.site.tz).date_naive();
    let space = app
        .reader()?
        .ledger_until("space", i64::MAX)
        .map_err(internal)?;
    let site = app.kpi.merged_site(&space);
    let items: Vec<Value> = app
        .site
        .agencies
        .iter()
        .filter(|a| role.agency().is_none_or(|r| r == a.id))
        .map(|a| {
            let persons = meterflow_core::denominators::persons_on(&site, &a.id, today);
            json!({"id": a.id, "name": a.name, "persons_today": persons})
        })
        .collect();
    Ok(Json(json!({"items": items})))
}

async fn meters_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let (limit, offset) = page(&q)?;
    let all: Vec<&Meter> = app
        .site
        .meters
        .iter()
        .filter(|m| can_see_meter(&app.site, &role, m))
        .filter(|m| {
            q.get("agency")
                .is_none_or(|a| meter_of_agency(&app.site, m, a))
        })
        .filter(|m| {
            q.get("building")
                .is_none_or(|b| building_of(&app.site, m).as_ref() == Some(b))
        })
        .collect();
    let items: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|m| {
            let source = if m.modbus.is_some() {
                "modbus"
            } else if m.dlt645.is_some() {
                "dlt645"
            } else if m.cjt188.is_some() {
                "cjt188"
            } else {
                "push"
            };
            json!({"id": m.id, "name": m.name, "kind": m.kind.as_str(), "unit": m.unit, "building": building_of(&app.site, m), "agencies": meter_agencies(m), "parent": m.parent, "subitem": m.subitem, "source": source})
        })
        .collect();
    Ok(Json(
        json!({"items": items, "total": all.len(), "limit": limit, "offset": offset}),
    ))
}

async fn consumption_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let Some(m) = app
        .site
        .meter(&id)
        .filter(|m| can_see_meter(&app.site, &role, m))
    else {
        return Err(not_found(format!("no meter `{id}`")));
    };
    let tz = app.site.tz;
    let (from, to) = time_range(&q, tz)?;
    if to <= from || to - from > 400 * 86_400_000 {
        return Err(bad(
            "to",
            "`to` must be after `from`, at most 400 days later",
        ));
    }
    let reader = app.reader()?;
    let Some(series) = reader
        .series_id(&id, m.counter_quantity())
        .map_err(internal)?
    else {
        return Ok(Json(json!({"meter": id, "unit": m.unit, "items": []})));
    };
    let rows = reader.intervals(series, from, to).map_err(internal)?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let quality = if r.estimated_ms == 0 {
                "measured"
            } else if r.measured_ms == 0 {
                "estimated"
            } else {
                "mixed"
            };
            json!({"start": iso(&app.site, r.bucket_ms), "value": meterflow_core::from_micro(r.micro), "quality": quality})
        })
        .collect();
    let mut body = json!({"meter": id, "unit": m.unit, "items": items});
    if !app.site.tariffs.is_empty() {
        // The meter's cost over the local days the range touches, with its tariff.
        let day = |ms: i64| meterflow_core::time::local_date(ms, tz);
        let period = meterflow_core::denominators::Period {
            from: day(from),
            to: day(to - 1).succ_opt().unwrap_or(day(to - 1)),
        };
        let cost = app.kpi.meter_cost(&reader, &id, period).map_err(internal)?;
        body["cost"] = json!({
            "period": {"from": period.from.to_string(), "to": period.to.to_string()},
            "total_cny": cost.total_cny,
            "carriers": cost.carriers,
            "unpriced": cost.unpriced,
        });
    }
    Ok(Json(body))
}

fn kpis_json(site: &Site, k: &ScopeKpis) -> Value {
    let c = &k.carriers;
    let mut v = kpis_json_main(site, k);
    if let Some(o) = v.as_object_mut() {
        for (key, x) in [
            ("cooling_gj", c.cooling_gj),
            ("lpg_kg", c.lpg_kg),
            ("coal_kg", c.coal_kg),
            ("steam_kg", c.steam_kg),
            ("fuel_oil_kg", c.fuel_oil_kg),
        ] {
            o.insert(key.into(), json!(x));
        }
    }
    v
}

fn kpis_json_main(site: &Site, k: &ScopeKpis) -> Value {
    let c = &k.carriers;
    json!({
        "period": {"from": k.period.from.to_string(), "to": k.period.to.to_string()},
        "electricity_kwh": c.electricity_kwh, "water_m3": c.water_m3, "gas_m3": c.gas_m3, "heat_gj": c.heat_gj,
        "vehicle_gasoline_l": c.gasoline_l, "vehicle_diesel_l": c.diesel_l,
        "energy_kgce": k.energy_kgce, "co2_t": k.co2_t, "persons": k.persons, "area_m2": k.area_m2,
        "per_capita_kgce": k.per_capita_energy, "per_area_kgce": k.per_area_energy,
        "water_m3_per_person": k.water_per_capita, "water_l_per_person_day": k.water_l_per_person_day,
        "water_l_per_person_working_day": k.water_l_per_person_working_day, "water_working_days": k.water_working_days,
        "per_area_co2_kg": k.per_area_co2, "completeness_pct": k.completeness_pct,
        "coverage_pct": k.coverage_pct, "complete": k.complete, "days_with_data": k.days_with_data,
        "yoy_per_capita_pct": k.yoy_per_capita_energy_pct,
        "yoy": k.yoy.iter().map(|y| json!({"indicator": y.indicator, "now": y.now, "before": y.before, "pct": y.pct})).collect::<Vec<_>>(),
        "yoy_window": k.yoy_window.as_ref().map(|w| json!({"from": w.from.to_string(), "to": w.to.to_string(), "days": w.days, "coverage_now_pct": w.coverage_now_pct, "coverage_before_pct": w.coverage_before_pct})),
        "co2": {
            "parts": k.carbon.parts.iter().map(|p| json!({"carrier": p.carrier, "kg": p.kg, "factor": p.factor, "factor_indicator": p.indicator, "factor_year": p.factor_year})).collect::<Vec<_>>(),
            "grid_factor_year": k.carbon.grid_factor_year,
            "warnings": k.carbon.warnings,
            "policy": site.site.carbon_factor_year.map_or_else(|| "nearest published year".to_string(), |y| format!("fixed {y}")),
        },
        "grades": k.grades.iter().map(|g| json!({"indicator": g.indicator, "value": g.value, "grade": g.grade, "unit": g.unit, "electricity_factor": g.electricity_factor, "statistics_value": g.statistics_value})).collect::<Vec<_>>(),
        "reductions": k.reductions.iter().map(|r| json!({"plan": r.plan, "indicator": r.indicator, "base_year": r.base_year, "target_year": r.target_year, "base": r.base, "value": r.value, "reduction_pct": r.reduction_pct, "required_pct": r.required_pct, "path_pct": r.path_pct, "on_path": r.on_path, "status": r.status.as_str()})).collect::<Vec<_>>(),
        "quota_tracking": k.tracking.as_ref().map(|t| json!({"to_date": t.to_date, "quota_to_date": t.quota_to_date, "ratio_to_date": t.ratio_to_date, "projected": t.projected, "projected_ratio": t.projected_ratio, "method": t.method.map(|m| m.as_str()), "days_with_data": t.days_with_data})),
        "withheld": k.withheld.iter().map(|(f, r)| json!({"figure": f, "reason": r})).collect::<Vec<_>>(),
        "completeness_threshold_pct": site.site.completeness_threshold_pct,
        "imbalance_clipped": k.imbalance_clipped.iter().map(|(m, v)| json!({"parent_meter": m, "amount": v})).collect::<Vec<_>>(),
        "factor_set": site.site.factor_set,
        "unverified_factors": k.unverified,
    })
}

async fn kpis_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let site = &app.site;
    let scope = match (q.get("scope").map(String::as_str), q.get("id")) {
        (Some("site"), _) => Scope::Site,
        (Some("agency"), Some(id)) => {
            if role.agency().is_some_and(|a| a != id) || !site.agencies.iter().any(|a| &a.id == id)
            {
                return Err(not_found(format!("no agency `{id}`")));
            }
            Scope::Agency(id.clone())
        }
        (Some("building"), Some(id)) => {
            if !site.buildings.iter().any(|b| &b.id == id) {
                return Err(not_found(format!("no building `{id}`")));
            }
            Scope::Building(id.clone())
        }
        (Some("agency" | "building"), None) => {
            return Err(bad("id", "`id` is required for this scope"));
        }
        _ => return Err(bad("scope", "`scope` is agency, building or site")),
    };
    if role.agency().is_some() && !matches!(scope, Scope::Agency(_)) {
        return Err(forbidden(
            "an agency token reads its own agency's figures only",
        ));
    }
    let year = year_param(&q)?;
    let month: Option<u32> = match q.get("month") {
        None => None,
        Some(m) => Some(
            m.parse()
                .ok()
                .filter(|m| (1..=12).contains(m))
                .ok_or_else(|| bad("month", "`month` is 1-12"))?,
        ),
    };
    let period = period_of(year, month).ok_or_else(|| bad("year", "no such period"))?;
    // SQLite and the arithmetic off the async workers, a few at a time.
    let _permit = heavy_permit(&app).await?;
    let app2 = Arc::clone(&app);
    let scope2 = scope.clone();
    let k = tokio::task::spawn_blocking(move || {
        let reader = app2.reader()?;
        let k = app2
            .kpi
            .scope_kpis(&reader, &scope2, period)
            .map_err(internal)?;
        // The cost with the site's tariffs (none without [[tariff]]), and
        // an agency's budget for the year.
        let cost = if app2.site.tariffs.is_empty() {
            None
        } else {
            Some(app2.kpi.cost(&reader, &scope2, period).map_err(internal)?)
        };
        let budget = match &scope2 {
            Scope::Agency(a) if month.is_none() => {
                app2.kpi.budget(&reader, a, year).map_err(internal)?
            }
            _ => None,
        };
        Ok::<_, ApiError>((k, cost, budget))
    })
    .await
    .map_err(internal)??;
    let (k, cost, budget) = (k.0, k.1, k.2);
    let mut v = kpis_json(site, &k);
    v["cost"] = match cost {
        Some(c) => serde_json::to_value(&c).map_err(internal)?,
        None => Value::Null,
    };
    v["budget"] = match budget {
        Some(b) => serde_json::to_value(&b).map_err(internal)?,
        None => Value::Null,
    };
    v["scope"] = json!(match &scope {
        Scope::Agency(_) => "agency",
        Scope::Building(_) => "building",
        Scope::Site => "site",
    });
    v["id"] = json!(scope.label());
    Ok(Json(v))
}

fn alert_visible(site: &Site, role: &Role, target: &str) -> bool {
    match role.agency() {
        None => true,
        Some(a) => {
            target == a
                || site
                    .meter(target)
                    .is_some_and(|m| meter_of_agency(site, m, a))
        }
    }
}

async fn alerts_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let (limit, offset) = page(&q)?;
    let db = meterflow_store::AlertDb::open(&app.site.store_path()).map_err(internal)?;
    let firing: Vec<Value> = db
        .firing()
        .map_err(internal)?
        .into_iter()
        .filter(|f| alert_visible(&app.site, &role, &f.1))
        .map(|(rule, target, since, ack, value)| json!({"rule": rule, "target": target, "since": iso(&app.site, since), "acknowledged": ack, "value": value}))
        .collect();
    let events: Vec<Value> = db
        .events(offset.saturating_add(limit).saturating_add(10_000))
        .map_err(internal)?
        .into_iter()
        .filter(|e| alert_visible(&app.site, &role, &e.target))
        .skip(offset)
        .take(limit)
        .map(|e| json!({"id": e.id, "rule": e.rule, "target": e.target, "kind": e.kind, "severity": e.severity, "event": e.event, "time": iso(&app.site, e.ts_ms), "value": e.value, "threshold": e.threshold, "message": e.message}))
        .collect();
    Ok(Json(
        json!({"firing": firing, "history": events, "limit": limit, "offset": offset}),
    ))
}

async fn ack_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    if !matches!(role, Role::Admin | Role::Manager) {
        return Err(forbidden(
            "acknowledging alerts needs a manager or admin token",
        ));
    }
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    let rule = v
        .get("rule")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("rule", "`rule` (string) is required"))?;
    let target = v
        .get("target")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("target", "`target` (string) is required"))?;
    let mut ev = meterflow_runtime::alerting::Evaluator::open(&app.site).map_err(internal)?;
    if ev
        .acknowledge(rule, target, meterflow_model::clock::now_ms())
        .map_err(internal)?
    {
        Ok(Json(
            json!({"acknowledged": true, "rule": rule, "target": target}),
        ))
    } else {
        Err(not_found(format!("no firing alert {rule}:{target}")))
    }
}

/// Prometheus text exposition: every family with its HELP and TYPE, label
/// values escaped (`\\`, `"` and newlines), so a bus id from the site file
/// cannot break the format.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        use std::fmt::Write as _;
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        use std::fmt::Write as _;
        let _ = write!(self.0, "{name}");
        if !labels.is_empty() {
            let body: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", body.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value as the exposition format writes it.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics_h(State(app): State<Arc<App>>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let mut e = Exposition::default();
    let n = |v: u64| v as f64;
    e.one(
        "meterflow_readings_stored_total",
        "counter",
        "Readings committed to the store.",
        n(app.live.stored.load(Relaxed)),
    );
    e.one(
        "meterflow_readings_refused_total",
        "counter",
        "Readings the store refused (duplicates, conflicts, implausible times).",
        n(app.live.refused.load(Relaxed)),
    );
    e.one(
        "meterflow_rfid_scans_total",
        "counter",
        "RFID scans recorded.",
        n(app.live.rfid.scans.load(Relaxed)),
    );
    e.one(
        "meterflow_rfid_rejected_total",
        "counter",
        "RFID scan messages rejected.",
        n(app.live.rfid.rejected.load(Relaxed)),
    );
    e.one(
        "meterflow_api_connections_refused_total",
        "counter",
        "Connections closed at once because [api] max_connections were open.",
        n(app.live.listen.refused.load(Relaxed)),
    );
    e.one(
        "meterflow_api_connections_open",
        "gauge",
        "Connections to the API open now.",
        n(app.live.listen.open.load(Relaxed)),
    );
    e.one(
        "meterflow_backup_failures_total",
        "counter",
        "Scheduled backups ([backup]) that failed since start.",
        n(meterflow_runtime::backup::FAILURES.load(Relaxed)),
    );
    if let Some(dir) = app.site.backup_dir() {
        let newest = meterflow_runtime::backup::list(&dir)
            .last()
            .map(|(_, m)| m.created_ms);
        if let Some(ms) = newest {
            e.one(
                "meterflow_backup_last_success_timestamp_seconds",
                "gauge",
                "When the newest good backup in [backup] dir was taken, Unix seconds.",
                ms as f64 / 1000.0,
            );
        }
    }
    e.family(
        "meterflow_component_panics_total",
        "counter",
        "Panics of a background thread (it restarts).",
    );
    for (name, panics, _) in app.live.supervision.snapshot() {
        e.sample(
            "meterflow_component_panics_total",
            &[("component", name)],
            n(panics),
        );
    }
    e.family(
        "meterflow_bus_requests_total",
        "counter",
        "Requests sent on a Modbus or serial bus.",
    );
    for (id, b) in &app.live.buses {
        e.sample(
            "meterflow_bus_requests_total",
            &[("bus", id)],
            n(b.requests.load(Relaxed)),
        );
    }
    e.family(
        "meterflow_bus_errors_total",
        "counter",
        "Requests on a bus that got no data: timeouts, garbled replies and error replies.",
    );
    for (id, b) in &app.live.buses {
        let errors = b.requests.load(Relaxed).saturating_sub(b.ok.load(Relaxed));
        e.sample("meterflow_bus_errors_total", &[("bus", id)], n(errors));
    }
    e.family(
        "meterflow_bus_error_replies_total",
        "counter",
        "Error replies on a bus (Modbus exceptions, DL/T 645 0xD1, CJ/T 188 0xC1).",
    );
    for (id, b) in &app.live.buses {
        e.sample(
            "meterflow_bus_error_replies_total",
            &[("bus", id)],
            n(b.exceptions.load(Relaxed)),
        );
    }
    buses::meter_metrics(&mut e, &app);
    buses::item_metrics(&mut e, &app);
    if let Some(sink) = &app.live.sink {
        e.one(
            "meterflow_sink_delivered_total",
            "counter",
            "Points InfluxDB accepted.",
            n(sink.delivered.load(Relaxed)),
        );
        e.one(
            "meterflow_sink_dead_total",
            "counter",
            "Points InfluxDB refused for good (kept as dead letters).",
            n(sink.dead.load(Relaxed)),
        );
        if let Ok(o) = meterflow_store::Outbox::open(&app.site.store_path()).and_then(|o| o.stats())
        {
            e.one(
                "meterflow_outbox_points",
                "gauge",
                "Points waiting in the outbox for InfluxDB.",
                o.points as f64,
            );
            let age = o.oldest_ms.map_or(0.0, |t| {
                (meterflow_model::clock::now_ms() - t).max(0) as f64 / 1000.0
            });
            e.one(
                "meterflow_outbox_age_seconds",
                "gauge",
                "Age of the oldest point in the outbox.",
                age,
            );
        }
    }
    if let Ok(db) = meterflow_store::AlertDb::open(&app.site.store_path()) {
        let firing = db.firing().map(|f| f.len()).unwrap_or(0);
        e.one(
            "meterflow_alerts_firing",
            "gauge",
            "Alerts firing now.",
            firing as f64,
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], e.0).into_response()
}

async fn readyz_h(State(app): State<Arc<App>>) -> Response {
    let down = app.live.supervision.down();
    if !down.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("down, restarting: {}", down.join(", ")),
        )
            .into_response();
    }
    match Reader::open(&app.site.store_path()) {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!("readyz: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "store not readable").into_response()
        }
    }
}

/// The headers with the `token` of a query or form as a bearer token.
fn with_token(h: &HeaderMap, token: Option<&String>) -> HeaderMap {
    let mut headers = h.clone();
    if let Some(t) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
        headers.insert(header::AUTHORIZATION, t);
    }
    headers
}

async fn overview_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> Response {
    let public = app.site.api.as_ref().is_some_and(|a| a.public_overview);
    let lang = web::lang_of(&h, &q);
    let session = web::signed_in(&app, &h);
    let has_token = h.contains_key(header::AUTHORIZATION);
    // A browser signs in and carries a session; an API client may send its
    // bearer token. A token in the address is not taken: addresses end up
    // in logs, histories and bookmarks.
    let role = match (&session, has_token) {
        (Some(s), _) => Some(s.role.clone()),
        (None, true) => match app.auth(&h, peer) {
            Ok(r) => Some(r),
            Err(e) => return e.into_response(),
        },
        (None, false) if public => None,
        (None, false) => {
            return (StatusCode::SEE_OTHER, [(header::LOCATION, "/login?next=/")]).into_response();
        }
    };
    if let Some(Role::Agency(_)) = role {
        if session.is_some() {
            return (StatusCode::SEE_OTHER, [(header::LOCATION, "/ledgers")]).into_response();
        }
        return forbidden("the overview shows every agency: a manager or admin token is needed")
            .into_response();
    }
    let viewer = page::Viewer {
        csrf: session.as_ref().map(|s| s.csrf.clone()),
        acknowledges: session
            .as_ref()
            .is_some_and(|s| matches!(s.role, Role::Admin | Role::Manager)),
        who: session
            .as_ref()
            .map(|s| web::role_label(lang, &app.site, &s.role))
            .unwrap_or_default(),
    };
    let Ok(_slot) = app.page_slots.try_acquire() else {
        return busy("the overview page", 2);
    };
    let app2 = Arc::clone(&app);
    let chosen = chart::choose(
        chart::Span::parse(q.get("period").map(String::as_str)),
        q.get("date").map(String::as_str),
        chrono::Utc::now().with_timezone(&app.site.tz).date_naive(),
    );
    match tokio::task::spawn_blocking(move || page::overview(&app2.kpi, lang, &viewer, &chosen))
        .await
    {
        Ok(Ok(html)) => Html(html).into_response(),
        Ok(Err(e)) => internal(e).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// `POST /ack` from the overview page's form (`rule`, `target`, `csrf`,
/// `lang`, form-encoded): acknowledge the alert (manager, admin) and go back
/// to the page. A signed-in browser's form must carry its CSRF token; an
/// API client may send a bearer token instead.
async fn page_ack_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = page::form_fields(&body);
    let role = match web::signed_in(&app, &h) {
        Some(s) if session::csrf_ok(&s, form.get("csrf")) => s.role,
        Some(_) => {
            return forbidden("the form did not come from this site's page (CSRF check failed)")
                .into_response();
        }
        None => match app.auth(&h, peer) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        },
    };
    if !matches!(role, Role::Admin | Role::Manager) {
        return forbidden("acknowledging alerts needs a manager or admin").into_response();
    }
    let (Some(rule), Some(target)) = (form.get("rule"), form.get("target")) else {
        return bad("rule", "`rule` and `target` are required").into_response();
    };
    let acked = meterflow_runtime::alerting::Evaluator::open(&app.site)
        .and_then(|mut ev| ev.acknowledge(rule, target, meterflow_model::clock::now_ms()));
    match acked {
        Ok(true) => {
            let back = page::back_to(form.get("lang"));
            (StatusCode::SEE_OTHER, [(header::LOCATION, back)]).into_response()
        }
        Ok(false) => not_found(format!("no firing alert {rule}:{target}")).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// The router of a site's API.
pub fn router(site: Arc<Site>, tokens: Vec<(String, Role)>, live: Live) -> Router {
    let max_failures = site.api.as_ref().map_or(20, |a| a.max_auth_failures);
    let kpi = meterflow_kpi::KpiContext::from_arc(Arc::clone(&site));
    let app = Arc::new(App {
        site,
        tokens,
        live,
        failures: Mutex::new(Failures {
            by_address: FailureLimiter::new(max_failures, Duration::from_secs(60), 10_000),
            by_token: FailureLimiter::new(max_failures, Duration::from_secs(60), 10_000),
        }),
        ledger_write: tokio::sync::Mutex::new(()),
        kpi,
        readers: Mutex::new(Vec::new()),
        page_slots: tokio::sync::Semaphore::new(2),
        #[cfg(feature = "export")]
        export_slots: tokio::sync::Semaphore::new(1),
        sessions: Mutex::new(session::Sessions::default()),
        heavy: tokio::sync::Semaphore::new(
            2 * std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
        ),
    });
    Router::new()
        .route("/", get(overview_h))
        .route("/ack", post(page_ack_h))
        .route("/assets/{name}", get(assets::asset))
        .route("/login", get(web::login_page).post(web::login_post))
        .route("/logout", post(web::logout_post))
        .route("/ledgers", get(web::ledgers_page))
        .route("/agencies/{id}", get(drill::agency_page))
        .route("/buildings/{id}", get(drill::building_page))
        .route("/meters/{id}", get(drill::meter_page))
        .route("/assessment", get(drill::assessment_page))
        .route("/assessment/download", get(drill::assessment_download))
        .route("/ledgers/{ledger}", get(web::ledger_page))
        .route(
            "/ledgers/{ledger}/{kind}",
            get(web::kind_page).post(web::create_post),
        )
        .route(
            "/ledgers/{ledger}/{kind}/upload",
            post(web::upload_post).layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024)),
        )
        .route(
            "/ledgers/{ledger}/{kind}/upload/confirm",
            post(web::confirm_post),
        )
        .route(
            "/ledgers/{ledger}/{kind}/{id}",
            get(web::entry_page).post(web::correct_post),
        )
        .route("/ledgers/{ledger}/{kind}/{id}/void", post(web::void_post))
        .route("/api/v1/site", get(site_h))
        .route("/api/v1/buildings", get(buildings_h))
        .route("/api/v1/zones", get(zones_h))
        .route("/api/v1/agencies", get(agencies_h))
        .route("/api/v1/meters", get(meters_h))
        .route("/api/v1/meters/{id}/consumption", get(consumption_h))
        .route("/api/v1/kpis", get(kpis_h))
        .route("/api/v1/alerts", get(alerts_h))
        .route("/api/v1/alerts/ack", post(ack_h))
        .route("/api/v1/buses", get(buses::buses_h))
        .route("/api/v1/ledgers/waste/summary", get(waste_summary_h))
        .route(
            "/api/v1/ledgers/space/summary",
            get(ledger_routes::space_summary_h),
        )
        .route(
            "/api/v1/ledgers/vehicles/summary",
            get(ledger_routes::vehicles_summary_h),
        )
        .route(
            "/api/v1/ledgers/assets/register",
            get(ledger_routes::assets_register_h),
        )
        .route(
            "/api/v1/ledgers/assets/reconciliation",
            get(ledger_routes::reconciliation_h),
        )
        .route(
            "/api/v1/ledgers/{ledger}/{kind}",
            post(ledger_routes::create_h).get(ledger_routes::list_h),
        )
        .route(
            "/api/v1/ledgers/{ledger}/{kind}/{id}/correction",
            post(ledger_routes::correction_h),
        )
        .route(
            "/api/v1/ledgers/{ledger}/{kind}/import",
            post(ledger_routes::import_h)
                .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024)),
        )
        .route("/api/v1/exports/assessment", get(export_route))
        .route("/api/v1/openapi.json", get(|| async { Json(openapi()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz_h))
        .route("/metrics", get(metrics_h))
        .fallback(|| async { not_found("no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(app)
}

#[cfg(feature = "export")]
async fn export_route(
    s: State<Arc<App>>,
    p: Peer,
    h: HeaderMap,
    q: Q,
) -> Result<Response, ApiError> {
    ledger_routes::export_h(s, p, h, q).await
}

#[cfg(not(feature = "export"))]
async fn export_route() -> ApiError {
    not_found("this build has no export (built without the `export` feature)")
}

/// The server as the pipeline starts it (`RunOptions::api`).
pub fn starter() -> meterflow_runtime::pipeline::ApiStarter {
    meterflow_runtime::pipeline::ApiStarter(Arc::new(|site, live, stop| {
        Box::pin(serve(site, live, stop))
    }))
}

/// Serve the API of `site` until `shutdown`.
pub async fn serve(
    site: Arc<Site>,
    live: Live,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let Some(cfg) = site.api.clone() else {
        anyhow::bail!("the site file has no [api] section");
    };
    let tokens = load_tokens(&site)?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("[api] listen {}: {e}", cfg.listen))?;
    tracing::info!(listen = %cfg.listen, tokens = tokens.len(), "API and overview page listening.");
    let limits = meterflow_listen::Limits {
        max_connections: cfg.max_connections,
        ..meterflow_listen::Limits::default()
    };
    let listen = Arc::clone(&live.listen);
    let app = router(site, tokens, live);
    Ok(tokio::spawn(meterflow_listen::serve(
        listener, app, limits, listen, shutdown,
    )))
}

/// A new random token and its tokens-file line for `role`.
pub fn new_token(role: &str) -> anyhow::Result<(String, String)> {
    let r = Role::parse(role).ok_or_else(|| {
        anyhow::anyhow!("unknown role `{role}` (admin, manager, clerk:LEDGER, agency:ID)")
    })?;
    let mut bytes = [0u8; 24];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no random bytes from the system: {e}"))?;
    use base64::Engine as _;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let _ = r;
    let line = format!("{role} sha256:{}", hash_token(&token));
    Ok((token, line))
}

/// The year and month of now in the site's zone.
pub fn this_month(site: &Site) -> (i32, u32) {
    let d = chrono::Utc::now().with_timezone(&site.tz).date_naive();
    (d.year(), d.month())
}

fn ledger_db(app: &App) -> Result<meterflow_store::LedgerDb, ApiError> {
    meterflow_store::LedgerDb::open(&app.site.store_path()).map_err(internal)
}

fn role_name(role: &Role) -> String {
    match role {
        Role::Admin => "admin".into(),
        Role::Manager => "manager".into(),
        Role::Clerk(l) => format!("clerk:{l}"),
        Role::Agency(a) => format!("agency:{a}"),
    }
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

async fn waste_summary_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let year = year_param(&q)?;
    let weigh_ins = year_weigh_ins(&app.site, &ledger_db(&app)?, year).map_err(internal)?;
    let items: Vec<Value> = meterflow_ledgers::waste::summarize(&app.site, &weigh_ins)
        .into_iter()
        .filter(|s| role.agency().is_none_or(|a| a == s.agency))
        .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
        .collect();
    Ok(Json(
        json!({"year": year, "recovery_target_pct": app.site.waste.recovery_target_pct, "items": items}),
    ))
}

/// A weigh-in as a `waste` point (a tombstone with `voided`).
fn waste_point(
    enc: &mut meterflow_core::lineproto::Encoder,
    ts: i64,
    w: &meterflow_ledgers::waste::WeighIn,
    entry: i64,
    voided: bool,
) {
    use meterflow_core::lineproto::{Value as V, WASTE};
    let recovered = matches!(w.category.as_str(), "recyclable" | "kitchen")
        && meterflow_ledgers::waste::recovered(&w.destination);
    let entry = entry.to_string();
    let _ = enc.point(
        &WASTE,
        &[
            ("agency", &w.agency),
            ("point", &w.point),
            ("category", &w.category),
            ("destination", &w.destination),
            ("recovered", if recovered { "true" } else { "false" }),
            ("entry", &entry),
        ],
        &[
            ("kg", V::F(if voided { 0.0 } else { w.kg })),
            ("voided", V::B(voided)),
        ],
        ts,
    );
}

/// Points for InfluxDB after a waste-ledger change: the weigh-in points given
/// and the `waste_year` figures of every agency for `year`.
fn emit_waste(
    app: &App,
    points: &[(i64, meterflow_ledgers::waste::WeighIn, i64, bool)],
    year: i32,
) {
    if app.site.influx.is_none() {
        return;
    }
    let mut enc = meterflow_core::lineproto::Encoder::new();
    for (ts, w, entry, voided) in points {
        waste_point(&mut enc, *ts, w, *entry, *voided);
    }
    let from =
        period_of(year, None).map_or(0, |p| meterflow_core::time::day_start(p.from, app.site.tz));
    let weigh_ins = meterflow_store::LedgerDb::open(&app.site.store_path())
        .and_then(|db| year_weigh_ins(&app.site, &db, year));
    if let Ok(weigh_ins) = weigh_ins {
        for s in meterflow_ledgers::waste::summarize(&app.site, &weigh_ins) {
            use meterflow_core::lineproto::{Value as V, WASTE_YEAR};
            let _ = enc.point(
                &WASTE_YEAR,
                &[("agency", &s.agency)],
                &[
                    ("total_kg", V::F(s.total_kg)),
                    ("recovered_kg", V::F(s.recovered_kg)),
                    (
                        "recovery_rate_pct",
                        V::F(s.recovery_rate_pct.unwrap_or(f64::NAN)),
                    ),
                    ("points", V::F(s.points.unwrap_or(f64::NAN))),
                    ("records", V::I(s.records as i64)),
                    ("veto", V::B(s.veto)),
                ],
                from,
            );
        }
    }
    match meterflow_store::Outbox::open(&app.site.store_path()) {
        Ok(mut o) => {
            if let Err(e) = o.append(&mut enc, meterflow_model::clock::now_ms()) {
                tracing::warn!("waste points: {e}");
            }
        }
        Err(e) => tracing::warn!("waste points: {e}"),
    }
}

fn year_of(site: &Site, ts: i64) -> i32 {
    site.tz
        .timestamp_millis_opt(ts)
        .single()
        .map_or(1970, |t| t.year())
}

/// `from` and `to` (required; RFC 3339 or a local date) as UTC ms.
fn time_range(q: &HashMap<String, String>, tz: chrono_tz::Tz) -> Result<(i64, i64), ApiError> {
    let time = |k: &'static str| -> Result<i64, ApiError> {
        let v = q
            .get(k)
            .ok_or_else(|| bad(k, format!("`{k}` is required (RFC 3339 or a local date)")))?;
        meterflow_core::timeparse::parse_time_arg(v, tz).map_err(|e| bad(k, e))
    };
    Ok((time("from")?, time("to")?))
}

/// The required `year`, 2000-2100.
fn year_param(q: &HashMap<String, String>) -> Result<i32, ApiError> {
    q.get("year")
        .and_then(|y| y.parse().ok())
        .filter(|y| (2000..=2100).contains(y))
        .ok_or_else(|| bad("year", "`year` is a year, 2000-2100"))
}

/// The weigh-ins in effect in a calendar year (local).
fn year_weigh_ins(
    site: &Site,
    db: &meterflow_store::LedgerDb,
    year: i32,
) -> Result<Vec<meterflow_ledgers::waste::WeighIn>, meterflow_store::StoreError> {
    let Some(period) = period_of(year, None) else {
        return Ok(Vec::new());
    };
    let (from, to) = (
        meterflow_core::time::day_start(period.from, site.tz),
        meterflow_core::time::day_start(period.to, site.tz),
    );
    Ok(db
        .effective("waste", "weigh_in", from, to)?
        .iter()
        .filter_map(|e| serde_json::from_str(&e.body).ok())
        .collect())
}

#[cfg(test)]
mod exposition_tests {
    use super::*;

    /// KPI requests wait in line for a worker, but not for ever: with every
    /// worker busy the wait ends in 503 `busy` with Retry-After (10 s in
    /// the API; 200 ms here), and a freed worker is taken at once.
    #[test]
    fn a_full_kpi_queue_answers_busy_after_its_wait() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let slots = tokio::sync::Semaphore::new(1);
            let held = slots.acquire().await.expect("the only worker");
            let t = std::time::Instant::now();
            let Err(err) = permit_within(&slots, Duration::from_millis(200)).await else {
                panic!("a worker while the only one is held");
            };
            assert!(t.elapsed() >= Duration::from_millis(200));
            assert!(t.elapsed() < Duration::from_secs(2));
            let r = err.into_response();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                r.headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
                Some("5")
            );
            drop(held);
            assert!(
                permit_within(&slots, Duration::from_millis(200))
                    .await
                    .is_ok()
            );
        });
    }

    #[test]
    fn families_have_help_and_labels_are_escaped() {
        let mut e = Exposition::default();
        e.family("m_total", "counter", "Things.");
        e.sample("m_total", &[("bus", "line \"A\"\\2\nx")], 3.0);
        assert_eq!(
            e.0,
            "# HELP m_total Things.\n# TYPE m_total counter\nm_total{bus=\"line \\\"A\\\"\\\\2\\nx\"} 3\n"
        );
    }
}
