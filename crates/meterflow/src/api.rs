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
use meterflow_model::Site;
use meterflow_model::config::Meter;
use meterflow_store::Reader;
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::sync::watch;

use crate::kpis::{AgencyKpis, Scope, period_of, scope_kpis};

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

/// Live counters the API exports on `/metrics`.
#[derive(Clone, Default)]
pub struct Live {
    /// Readings committed.
    pub stored: Arc<std::sync::atomic::AtomicU64>,
    /// Readings refused.
    pub refused: Arc<std::sync::atomic::AtomicU64>,
    /// Modbus / serial buses.
    pub buses: std::collections::BTreeMap<String, Arc<meterflow_modbus::BusHealth>>,
    /// InfluxDB sink.
    pub sink: Option<Arc<crate::sink::SinkStats>>,
}

struct App {
    site: Arc<Site>,
    tokens: Vec<(String, Role)>,
    live: Live,
    failures: Mutex<HashMap<std::net::IpAddr, (u32, Instant)>>,
    max_failures: u32,
}

/// An API error.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message, "field": self.field})),
        )
            .into_response()
    }
}

fn bad(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "bad_request",
        message: message.into(),
        field: Some(field),
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

/// One route of the API: method, path (OpenAPI form), summary, query parameters.
pub struct Route {
    /// `get` or `post`.
    pub method: &'static str,
    /// Path with `{param}`s.
    pub path: &'static str,
    /// What it returns.
    pub summary: &'static str,
    /// Query parameters (name, description).
    pub query: &'static [(&'static str, &'static str)],
}

/// Every route, in the OpenAPI document's order.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/api/v1/site",
        summary: "The site: name, time zone, factor and quota sets.",
        query: &[],
    },
    Route {
        method: "get",
        path: "/api/v1/buildings",
        summary: "Buildings (an agency token: those it occupies).",
        query: &[],
    },
    Route {
        method: "get",
        path: "/api/v1/zones",
        summary: "Zones (an agency token: those it occupies).",
        query: &[],
    },
    Route {
        method: "get",
        path: "/api/v1/agencies",
        summary: "Agencies with their current headcount (an agency token: itself).",
        query: &[],
    },
    Route {
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
    Route {
        method: "get",
        path: "/api/v1/meters/{id}/consumption",
        summary: "15-minute consumption of a meter with quality.",
        query: &[
            ("from", "start, RFC 3339 or local date (required)"),
            ("to", "end, exclusive (required)"),
        ],
    },
    Route {
        method: "get",
        path: "/api/v1/kpis",
        summary: "KPIs of an agency, building or the site for a month or year, with quota tracking.",
        query: &[
            ("scope", "agency, building or site"),
            ("id", "agency or building id"),
            ("year", "calendar year"),
            ("month", "1-12; absent = the year"),
        ],
    },
    Route {
        method: "get",
        path: "/api/v1/alerts",
        summary: "Firing alerts and the history, paginated (an agency token: its own and its meters').",
        query: &[
            ("limit", "history page size (default 100)"),
            ("offset", "first history item"),
        ],
    },
    Route {
        method: "post",
        path: "/api/v1/alerts/ack",
        summary: "Acknowledge a firing alert: body {\"rule\", \"target\"} (manager, admin).",
        query: &[],
    },
    Route {
        method: "post",
        path: "/api/v1/ledgers/waste/weigh-ins",
        summary: "Record a weigh-in: {time, agency, point, category, kg, destination, company?, receipt?} (admin, manager, clerk:waste).",
        query: &[],
    },
    Route {
        method: "post",
        path: "/api/v1/ledgers/waste/weigh-ins/{id}/correction",
        summary: "Correct a weigh-in with a new one (same fields), or void it: {\"void\": true, \"reason\": …}. Nothing is changed in place.",
        query: &[],
    },
    Route {
        method: "get",
        path: "/api/v1/ledgers/waste/weigh-ins",
        summary: "Weigh-ins in effect, paginated (an agency token: its own).",
        query: &[
            ("from", "start, RFC 3339 or local date (required)"),
            ("to", "end, exclusive (required)"),
            ("limit", "page size, 1-1000 (default 100)"),
            ("offset", "first item (default 0)"),
        ],
    },
    Route {
        method: "get",
        path: "/api/v1/ledgers/waste/summary",
        summary: "Per agency and year: kg by category, recovery rate (回收利用率), points, one-vote veto.",
        query: &[("year", "calendar year")],
    },
    Route {
        method: "get",
        path: "/api/v1/openapi.json",
        summary: "This document.",
        query: &[],
    },
    Route {
        method: "get",
        path: "/healthz",
        summary: "The process is up.",
        query: &[],
    },
    Route {
        method: "get",
        path: "/readyz",
        summary: "The store can be read.",
        query: &[],
    },
    Route {
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
        _ => json!({"type": "string"}),
    }
}

/// The OpenAPI 3.0 document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let mut params: Vec<Value> = r
            .query
            .iter()
            .map(|(n, d)| json!({"name": n, "in": "query", "required": matches!(*n, "from" | "to" | "scope" | "year"), "description": d, "schema": param_schema(n)}))
            .collect();
        if r.path.contains("{id}") {
            params.push(
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}),
            );
        }
        let public = matches!(
            r.path,
            "/healthz" | "/readyz" | "/metrics" | "/api/v1/openapi.json"
        );
        let ok = if matches!(r.path, "/healthz" | "/readyz" | "/metrics") {
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
        if r.method == "post" {
            let schema = if r.path.contains("/alerts/") {
                json!({"type": "object", "properties": {"rule": {"type": "string"}, "target": {"type": "string"}}, "required": ["rule", "target"]})
            } else {
                json!({"$ref": "#/components/schemas/WeighIn"})
            };
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
            if r.path.contains("/ledgers/") {
                op["responses"]["201"] = json!({"description": "Recorded", "content": {"application/json": {"schema": {"type": "object"}}}});
                op["responses"]["409"] =
                    json!({"description": "The weigh-in was already corrected"});
                if let Some(o) = op["responses"].as_object_mut() {
                    o.remove("200");
                }
            }
        }
        paths
            .entry(r.path.to_string())
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
            "schemas": {"WeighIn": {"type": "object", "properties": {"time": {"type": "string"}, "agency": {"type": "string"}, "point": {"type": "string"}, "category": {"type": "string", "enum": crate::waste::CATEGORIES}, "kg": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 999_999}, "destination": {"type": "string", "enum": crate::waste::DESTINATIONS}, "company": {"type": "string"}, "receipt": {"type": "string"}, "void": {"type": "boolean"}, "reason": {"type": "string"}}}, "Error": {"type": "object", "required": ["error", "message"], "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string", "nullable": true}}}}
        }
    })
}

impl App {
    /// The role of the request's token, or 401 (429 after many failures from one address).
    fn auth(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<Role, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("Token "))
            });
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failures.entry(peer.ip()).or_insert((0, Instant::now()));
        if entry.1.elapsed() > Duration::from_secs(60) {
            *entry = (0, Instant::now());
        }
        if entry.0 >= self.max_failures {
            return Err(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too_many_failures",
                message: "too many failed authentications from this address; wait a minute".into(),
                field: None,
            });
        }
        let found = token.and_then(|t| {
            let h = hash_token(t);
            // Compare with every entry, in time independent of where it matches.
            let mut role = None;
            for (stored, r) in &self.tokens {
                let same = stored.len() == h.len()
                    && stored
                        .bytes()
                        .zip(h.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0;
                if same && role.is_none() {
                    role = Some(r.clone());
                }
            }
            role
        });
        match found {
            Some(r) => Ok(r),
            None => {
                entry.0 += 1;
                Err(ApiError {
                    status: StatusCode::UNAUTHORIZED,
                    code: "unauthorized",
                    message: "a valid bearer token is needed (Authorization: Bearer …)".into(),
                    field: None,
                })
            }
        }
    }

    fn reader(&self) -> Result<Reader, ApiError> {
        Reader::open(&self.site.store_path()).map_err(internal)
    }
}

/// Agencies a meter serves (directly, by area share or by fixed shares).
pub fn meter_agencies(m: &Meter) -> Vec<String> {
    let mut a: Vec<String> = m
        .serves
        .agency
        .iter()
        .chain(m.serves.agencies.iter().flatten())
        .cloned()
        .chain(m.shares.keys().cloned())
        .collect();
    a.sort();
    a.dedup();
    a
}

/// A meter is an agency's when it serves the agency (directly, by shares) or
/// a zone the agency occupies; building-wide meters, which also measure the
/// other agencies, are not.
fn meter_of_agency(site: &Site, m: &Meter, agency: &str) -> bool {
    meter_agencies(m).iter().any(|x| x == agency)
        || m.serves
            .zone
            .as_ref()
            .is_some_and(|z| occupied(site, agency).1.contains(z))
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

/// Buildings and zones an agency occupies (ever).
fn occupied(site: &Site, agency: &str) -> (Vec<String>, Vec<String>) {
    let mut b = Vec::new();
    let mut z = Vec::new();
    for s in site.spaces.iter().filter(|s| s.agency == agency) {
        if let Some(zone) = &s.zone {
            z.push(zone.clone());
            if let Some(x) = site.zones.iter().find(|x| &x.id == zone) {
                b.push(x.building.clone());
            }
        }
        if let Some(x) = &s.building {
            b.push(x.clone());
        }
    }
    b.sort();
    b.dedup();
    z.sort();
    z.dedup();
    (b, z)
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
    let items: Vec<Value> = app
        .site
        .agencies
        .iter()
        .filter(|a| role.agency().is_none_or(|r| r == a.id))
        .map(|a| {
            let persons = meterflow_core::denominators::persons_on(&app.site, &a.id, today);
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
    Ok(Json(json!({"meter": id, "unit": m.unit, "items": items})))
}

fn kpis_json(site: &Site, k: &AgencyKpis) -> Value {
    let c = &k.carriers;
    json!({
        "period": {"from": k.period.from.to_string(), "to": k.period.to.to_string()},
        "electricity_kwh": c.electricity_kwh, "water_m3": c.water_m3, "gas_m3": c.gas_m3, "heat_gj": c.heat_gj,
        "energy_kgce": k.energy_kgce, "co2_t": k.co2_t, "persons": k.persons, "area_m2": k.area_m2,
        "per_capita_kgce": k.per_capita_energy, "per_area_kgce": k.per_area_energy,
        "water_m3_per_person": k.water_per_capita, "water_l_per_person_day": k.water_l_per_person_day,
        "per_area_co2_kg": k.per_area_co2, "completeness_pct": k.completeness_pct,
        "yoy_per_capita_pct": k.yoy_per_capita_energy_pct,
        "grades": k.grades.iter().map(|(i, v, g)| json!({"indicator": i, "value": v, "grade": g})).collect::<Vec<_>>(),
        "quota_tracking": k.tracking.as_ref().map(|t| json!({"to_date": t.to_date, "quota_to_date": t.quota_to_date, "ratio_to_date": t.ratio_to_date, "projected": t.projected, "projected_ratio": t.projected_ratio, "method": t.method.as_str()})),
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
    let reader = app.reader()?;
    let k = scope_kpis(site, &reader, &scope, period).map_err(internal)?;
    let mut v = kpis_json(site, &k);
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
        .events(offset + limit + 10_000)
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
    let mut ev = crate::alerting::Evaluator::open(&app.site).map_err(internal)?;
    if ev
        .acknowledge(rule, target, crate::import::now_ms())
        .map_err(internal)?
    {
        Ok(Json(
            json!({"acknowledged": true, "rule": rule, "target": target}),
        ))
    } else {
        Err(not_found(format!("no firing alert {rule}:{target}")))
    }
}

async fn metrics_h(State(app): State<Arc<App>>) -> Response {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# TYPE meterflow_readings_stored_total counter\nmeterflow_readings_stored_total {}",
        app.live.stored.load(Relaxed)
    );
    let _ = writeln!(
        s,
        "# TYPE meterflow_readings_refused_total counter\nmeterflow_readings_refused_total {}",
        app.live.refused.load(Relaxed)
    );
    let _ = writeln!(s, "# TYPE meterflow_bus_requests_total counter");
    for (id, b) in &app.live.buses {
        let _ = writeln!(
            s,
            "meterflow_bus_requests_total{{bus=\"{id}\"}} {}",
            b.requests.load(Relaxed)
        );
    }
    let _ = writeln!(s, "# TYPE meterflow_bus_errors_total counter");
    for (id, b) in &app.live.buses {
        let errors = b.requests.load(Relaxed).saturating_sub(b.ok.load(Relaxed));
        let _ = writeln!(s, "meterflow_bus_errors_total{{bus=\"{id}\"}} {errors}");
    }
    if let Some(sink) = &app.live.sink {
        let _ = writeln!(
            s,
            "# TYPE meterflow_sink_delivered_total counter\nmeterflow_sink_delivered_total {}",
            sink.delivered.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# TYPE meterflow_sink_dead_total counter\nmeterflow_sink_dead_total {}",
            sink.dead.load(Relaxed)
        );
        if let Ok(o) = meterflow_store::Outbox::open(&app.site.store_path()).and_then(|o| o.stats())
        {
            let _ = writeln!(
                s,
                "# TYPE meterflow_outbox_points gauge\nmeterflow_outbox_points {}",
                o.points
            );
            let age = o.oldest_ms.map_or(0.0, |t| {
                (crate::import::now_ms() - t).max(0) as f64 / 1000.0
            });
            let _ = writeln!(
                s,
                "# TYPE meterflow_outbox_age_seconds gauge\nmeterflow_outbox_age_seconds {age}"
            );
        }
    }
    if let Ok(db) = meterflow_store::AlertDb::open(&app.site.store_path()) {
        let n = db.firing().map(|f| f.len()).unwrap_or(0);
        let _ = writeln!(
            s,
            "# TYPE meterflow_alerts_firing gauge\nmeterflow_alerts_firing {n}"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}

async fn readyz_h(State(app): State<Arc<App>>) -> Response {
    match Reader::open(&app.site.store_path()) {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!("readyz: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "store not readable").into_response()
        }
    }
}

async fn overview_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> Response {
    let public = app.site.api.as_ref().is_some_and(|a| a.public_overview);
    if !public {
        let mut headers = h.clone();
        if let Some(t) = q
            .get("token")
            .and_then(|t| format!("Bearer {t}").parse().ok())
        {
            headers.insert(header::AUTHORIZATION, t);
        }
        match app.auth(&headers, peer) {
            Ok(Role::Admin | Role::Manager | Role::Clerk(_)) => {}
            Ok(Role::Agency(_)) => {
                return forbidden(
                    "the overview shows every agency: a manager or admin token is needed",
                )
                .into_response();
            }
            Err(e) => return e.into_response(),
        }
    }
    let site = Arc::clone(&app.site);
    match tokio::task::spawn_blocking(move || crate::page::overview(&site)).await {
        Ok(Ok(html)) => Html(html).into_response(),
        Ok(Err(e)) => internal(e).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// The router of a site's API.
pub fn router(site: Arc<Site>, tokens: Vec<(String, Role)>, live: Live) -> Router {
    let max_failures = site.api.as_ref().map_or(20, |a| a.max_auth_failures);
    let app = Arc::new(App {
        site,
        tokens,
        live,
        failures: Mutex::new(HashMap::new()),
        max_failures,
    });
    Router::new()
        .route("/", get(overview_h))
        .route("/api/v1/site", get(site_h))
        .route("/api/v1/buildings", get(buildings_h))
        .route("/api/v1/zones", get(zones_h))
        .route("/api/v1/agencies", get(agencies_h))
        .route("/api/v1/meters", get(meters_h))
        .route("/api/v1/meters/{id}/consumption", get(consumption_h))
        .route("/api/v1/kpis", get(kpis_h))
        .route("/api/v1/alerts", get(alerts_h))
        .route("/api/v1/alerts/ack", post(ack_h))
        .route(
            "/api/v1/ledgers/waste/weigh-ins",
            post(weigh_in_h).get(weigh_ins_h),
        )
        .route(
            "/api/v1/ledgers/waste/weigh-ins/{id}/correction",
            post(correction_h),
        )
        .route("/api/v1/ledgers/waste/summary", get(waste_summary_h))
        .route("/api/v1/openapi.json", get(|| async { Json(openapi()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz_h))
        .route("/metrics", get(metrics_h))
        .fallback(|| async { not_found("no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(app)
}

/// Serve the API of `site` until `shutdown`.
pub async fn serve(
    site: Arc<Site>,
    live: Live,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let Some(cfg) = site.api.clone() else {
        anyhow::bail!("the site file has no [api] section");
    };
    let tokens = load_tokens(&site)?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("[api] listen {}: {e}", cfg.listen))?;
    tracing::info!(listen = %cfg.listen, tokens = tokens.len(), "API and overview page listening.");
    let app = router(site, tokens, live);
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop)
        .await
        {
            tracing::error!(error = %e, "API server stopped.");
        }
    }))
}

/// A new random token and its tokens-file line for `role`.
pub fn new_token(role: &str) -> anyhow::Result<(String, String)> {
    let r = Role::parse(role).ok_or_else(|| {
        anyhow::anyhow!("unknown role `{role}` (admin, manager, clerk:LEDGER, agency:ID)")
    })?;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom: {e}"))?;
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

fn can_write_waste(role: &Role) -> bool {
    matches!(role, Role::Admin | Role::Manager) || matches!(role, Role::Clerk(l) if l == "waste")
}

fn ledger_db(app: &App) -> Result<meterflow_store::LedgerDb, ApiError> {
    meterflow_store::LedgerDb::open(&app.site.store_path()).map_err(internal)
}

/// A weigh-in from a request body: its time and fields.
fn weigh_in_of(app: &App, v: &Value) -> Result<(i64, crate::waste::WeighIn), ApiError> {
    let time = v
        .get("time")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("time", "`time` (RFC 3339 or local date/time) is required"))?;
    let ts = crate::timearg::parse(time, app.site.tz).map_err(|e| bad("time", e))?;
    let mut fields = v.clone();
    if let Some(o) = fields.as_object_mut() {
        o.remove("time");
    }
    let w: crate::waste::WeighIn =
        serde_json::from_value(fields).map_err(|e| bad("body", e.to_string()))?;
    w.check(&app.site).map_err(|(f, m)| bad(f, m))?;
    Ok((ts, w))
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

async fn weigh_in_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let role = app.auth(&h, peer)?;
    if !can_write_waste(&role) {
        return Err(forbidden(
            "recording weigh-ins needs an admin, manager or clerk:waste token",
        ));
    }
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    let (ts, w) = weigh_in_of(&app, &v)?;
    let text = serde_json::to_string(&w).map_err(internal)?;
    let author = role_name(&role);
    let e = meterflow_store::NewLedgerEvent {
        ledger: "waste",
        kind: "weigh_in",
        agency: Some(&w.agency),
        ts_ms: ts,
        body: &text,
        corrects: None,
        void: false,
        author: &author,
    };
    let id = ledger_db(&app)?
        .append(&e, crate::import::now_ms())
        .map_err(internal)?
        .ok_or_else(|| internal("append refused"))?;
    emit_waste(&app, &[(ts, w.clone(), id, false)], year_of(&app.site, ts));
    Ok(created(json!({"id": id})))
}

async fn correction_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let role = app.auth(&h, peer)?;
    if !can_write_waste(&role) {
        return Err(forbidden(
            "correcting weigh-ins needs an admin, manager or clerk:waste token",
        ));
    }
    let id: i64 = id
        .parse()
        .map_err(|_| not_found(format!("no weigh-in `{id}`")))?;
    let mut db = ledger_db(&app)?;
    let Some(old) = db
        .get(id)
        .map_err(internal)?
        .filter(|e| e.ledger == "waste" && e.kind == "weigh_in" && !e.void)
    else {
        return Err(not_found(format!("no weigh-in {id}")));
    };
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    let author = role_name(&role);
    let now = crate::import::now_ms();
    let old_w: Option<crate::waste::WeighIn> = serde_json::from_str(&old.body).ok();
    let mut points: Vec<(i64, crate::waste::WeighIn, i64, bool)> = Vec::new();
    if let Some(w) = &old_w {
        // The replaced point becomes a tombstone (a correction at the same
        // tags and time then overwrites it with the new value).
        points.push((old.ts_ms, w.clone(), id, true));
    }
    let result = if v.get("void").and_then(Value::as_bool) == Some(true) {
        let reason = v.get("reason").and_then(Value::as_str).unwrap_or_default();
        let text = json!({ "reason": reason }).to_string();
        let e = meterflow_store::NewLedgerEvent {
            ledger: "waste",
            kind: "weigh_in",
            agency: old.agency.as_deref(),
            ts_ms: old.ts_ms,
            body: &text,
            corrects: Some(id),
            void: true,
            author: &author,
        };
        db.append(&e, now).map_err(internal)?
    } else {
        let (ts, w) = weigh_in_of(&app, &v)?;
        let text = serde_json::to_string(&w).map_err(internal)?;
        let e = meterflow_store::NewLedgerEvent {
            ledger: "waste",
            kind: "weigh_in",
            agency: Some(&w.agency),
            ts_ms: ts,
            body: &text,
            corrects: Some(id),
            void: false,
            author: &author,
        };
        let r = db.append(&e, now).map_err(internal)?;
        if let Some(new) = r {
            points.push((ts, w, new, false));
        }
        r
    };
    drop(db);
    if result.is_some() {
        let mut years: Vec<i32> = points.iter().map(|p| year_of(&app.site, p.0)).collect();
        years.sort_unstable();
        years.dedup();
        for (i, y) in years.iter().enumerate() {
            emit_waste(&app, if i == 0 { &points } else { &[] }, *y);
        }
    }
    match result {
        Some(new) => Ok(created(json!({"id": new, "corrects": id}))),
        None => Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "superseded",
            message: format!("weigh-in {id} was already corrected; correct its latest version"),
            field: None,
        }),
    }
}

async fn weigh_ins_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let (limit, offset) = page(&q)?;
    let tz = app.site.tz;
    let (from, to) = time_range(&q, tz)?;
    let rows = ledger_db(&app)?
        .effective("waste", "weigh_in", from, to)
        .map_err(internal)?;
    let visible: Vec<_> = rows
        .into_iter()
        .filter(|e| role.agency().is_none_or(|a| e.agency.as_deref() == Some(a)))
        .collect();
    let items: Vec<Value> = visible
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| {
            let mut v: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
            v["id"] = json!(e.id);
            v["time"] = json!(iso(&app.site, e.ts_ms));
            v["corrects"] = json!(e.corrects);
            v["author"] = json!(e.author);
            v
        })
        .collect();
    Ok(Json(
        json!({"items": items, "total": visible.len(), "limit": limit, "offset": offset}),
    ))
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
    let items: Vec<Value> = crate::waste::summarize(&app.site, &weigh_ins)
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
    w: &crate::waste::WeighIn,
    entry: i64,
    voided: bool,
) {
    use meterflow_core::lineproto::{Value as V, WASTE};
    let recovered = matches!(w.category.as_str(), "recyclable" | "kitchen")
        && crate::waste::recovered(&w.destination);
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
fn emit_waste(app: &App, points: &[(i64, crate::waste::WeighIn, i64, bool)], year: i32) {
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
        for s in crate::waste::summarize(&app.site, &weigh_ins) {
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
            if let Err(e) = o.append(&mut enc, crate::import::now_ms()) {
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
        crate::timearg::parse(v, tz).map_err(|e| bad(k, e))
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
) -> Result<Vec<crate::waste::WeighIn>, meterflow_store::StoreError> {
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
