//! The ledgers over HTTP: one set of handlers for every kind of entry in
//! [`meterflow_ledgers::KINDS`] (record, list, correct or void, CSV import) and
//! the derived views of each ledger.

use super::*;
use meterflow_ledgers::{self as ledgers, Checked, Kind};

fn can_write(role: &Role, ledger: &str) -> bool {
    matches!(role, Role::Admin | Role::Manager) || matches!(role, Role::Clerk(l) if l == ledger)
}

/// The role of a request that writes `ledger/path`, and the kind; 403 for a
/// role that does not write that ledger.
fn writer(
    app: &App,
    h: &HeaderMap,
    peer: SocketAddr,
    ledger: &str,
    path: &str,
    verb: &str,
) -> Result<(Role, &'static Kind), ApiError> {
    let role = app.auth(h, peer)?;
    let kind = kind_of(ledger, path)?;
    if !can_write(&role, kind.ledger) {
        return Err(forbidden(format!(
            "{verb} {} entries needs an admin, manager or clerk:{} token",
            kind.ledger, kind.ledger
        )));
    }
    Ok((role, kind))
}

fn kind_of(ledger: &str, path: &str) -> Result<&'static Kind, ApiError> {
    ledgers::find(ledger, path)
        .ok_or_else(|| not_found(format!("no ledger entries at `{ledger}/{path}`")))
}

fn rejected((field, message): ledgers::Reject) -> ApiError {
    bad(&field, message)
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))
}

/// A change to publish: time, fields, entry id, voided.
type Change = (i64, Value, i64, bool);

/// After a write: the ledger's points for InfluxDB (if configured).
fn after_write(app: &App, kind: &Kind, changes: &[Change]) {
    if app.site.influx.is_none() || changes.is_empty() {
        return;
    }
    let mut years: Vec<i32> = changes.iter().map(|c| year_of(&app.site, c.0)).collect();
    years.sort_unstable();
    years.dedup();
    if kind.ledger == "waste" {
        let points: Vec<(i64, meterflow_ledgers::waste::WeighIn, i64, bool)> = changes
            .iter()
            .filter_map(|(ts, v, id, void)| {
                serde_json::from_value(v.clone())
                    .ok()
                    .map(|w| (*ts, w, *id, *void))
            })
            .collect();
        for (i, y) in years.iter().enumerate() {
            emit_waste(app, if i == 0 { &points } else { &[] }, *y);
        }
    } else {
        meterflow_runtime::points::emit_ledger(&app.site, kind.ledger, &years);
    }
}

/// Record one entry.
pub(super) async fn create_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    UrlPath((ledger, path)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (role, kind) = writer(&app, &h, peer, &ledger, &path, "recording")?;
    let v = json_body(&body)?;
    let author = role_name(&role);
    let (id, c) = {
        // An async lock: a request waiting behind a running import waits
        // without holding a worker.
        let _one = app.ledger_write.lock().await;
        let mut db = ledger_db(&app)?;
        let state = db.ledger_until(kind.ledger, i64::MAX).map_err(internal)?;
        let c = ledgers::check(&app.site, kind, &state, &v).map_err(rejected)?;
        let id = append(&mut db, kind, &c, None, &author)?;
        (id, c)
    };
    after_write(&app, kind, &[(c.ts_ms, c.body, id, false)]);
    Ok(created(json!({"id": id})))
}

fn append(
    db: &mut meterflow_store::LedgerDb,
    kind: &Kind,
    c: &Checked,
    corrects: Option<i64>,
    author: &str,
) -> Result<i64, ApiError> {
    let text = c.body.to_string();
    let e = meterflow_store::NewLedgerEvent {
        ledger: kind.ledger,
        kind: kind.kind,
        agency: c.agency.as_deref(),
        ts_ms: c.ts_ms,
        body: &text,
        corrects,
        void: false,
        author,
    };
    db.append(&e, meterflow_model::clock::now_ms())
        .map_err(internal)?
        .ok_or_else(|| superseded(kind, corrects.unwrap_or(0)))
}

fn superseded(kind: &Kind, id: i64) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        code: "superseded",
        message: format!(
            "{} {id} was already corrected; correct its latest version",
            kind.noun
        ),
        field: None,
    }
}

/// Correct an entry with a new one, or void it.
pub(super) async fn correction_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    UrlPath((ledger, path, id)): UrlPath<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (role, kind) = writer(&app, &h, peer, &ledger, &path, "correcting")?;
    let v = json_body(&body)?;
    let new = correct(&app, &role, kind, &id, &v).await?;
    Ok(created(
        json!({"id": new, "corrects": id.parse::<i64>().unwrap_or_default()}),
    ))
}

/// Record a correction of entry `id` (`v` a whole new entry, or
/// `{"void": true, "reason": …}`) by `role`: the new entry's id.
pub(super) async fn correct(
    app: &Arc<App>,
    role: &Role,
    kind: &'static Kind,
    id: &str,
    v: &Value,
) -> Result<i64, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| not_found(format!("no {} `{id}`", kind.noun)))?;
    let author = role_name(role);
    let now = meterflow_model::clock::now_ms();
    let mut changes: Vec<Change> = Vec::new();
    let new = {
        let _one = app.ledger_write.lock().await;
        let mut db = ledger_db(app)?;
        let Some(old) = db
            .get(id)
            .map_err(internal)?
            .filter(|e| e.ledger == kind.ledger && e.kind == kind.kind && !e.void)
        else {
            return Err(not_found(format!("no {} {id}", kind.noun)));
        };
        if let Ok(body) = serde_json::from_str::<Value>(&old.body) {
            // The replaced point becomes a tombstone.
            changes.push((old.ts_ms, body, id, true));
        }
        if v.get("void").and_then(Value::as_bool) == Some(true) {
            let reason = v.get("reason").and_then(Value::as_str).unwrap_or_default();
            let text = json!({ "reason": reason }).to_string();
            let e = meterflow_store::NewLedgerEvent {
                ledger: kind.ledger,
                kind: kind.kind,
                agency: old.agency.as_deref(),
                ts_ms: old.ts_ms,
                body: &text,
                corrects: Some(id),
                void: true,
                author: &author,
            };
            db.append(&e, now)
                .map_err(internal)?
                .ok_or_else(|| superseded(kind, id))?
        } else {
            // Checked against the ledger without the entry it replaces.
            let state: Vec<_> = db
                .ledger_until(kind.ledger, i64::MAX)
                .map_err(internal)?
                .into_iter()
                .filter(|e| e.id != id)
                .collect();
            let c = ledgers::check(&app.site, kind, &state, v).map_err(rejected)?;
            let new = append(&mut db, kind, &c, Some(id), &author)?;
            changes.push((c.ts_ms, c.body, new, false));
            new
        }
    };
    after_write(app, kind, &changes);
    Ok(new)
}

/// Append a checked entry (for the pages).
pub(super) fn append_entry(
    db: &mut meterflow_store::LedgerDb,
    kind: &Kind,
    c: &Checked,
    corrects: Option<i64>,
    author: &str,
) -> Result<i64, ApiError> {
    append(db, kind, c, corrects, author)
}

/// Publish what was written (for the pages).
pub(super) fn published(app: &App, kind: &Kind, changes: &[Change]) {
    after_write(app, kind, changes);
}

/// Entries in effect, paginated; an agency token sees its own.
pub(super) async fn list_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    UrlPath((ledger, path)): UrlPath<(String, String)>,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let kind = kind_of(&ledger, &path)?;
    let (limit, offset) = page(&q)?;
    let tz = app.site.tz;
    let bound = |k: &str, default: i64| -> Result<i64, ApiError> {
        match q.get(k) {
            None => Ok(default),
            Some(v) => meterflow_core::timeparse::parse_time_arg(v, tz).map_err(|e| bad(k, e)),
        }
    };
    let (from, to) = (bound("from", i64::MIN)?, bound("to", i64::MAX)?);
    if to <= from {
        return Err(bad("to", "`to` must be after `from`"));
    }
    let rows = ledger_db(&app)?
        .effective(kind.ledger, kind.kind, from, to)
        .map_err(internal)?;
    let want = q.get("agency");
    let visible: Vec<_> = rows
        .into_iter()
        .filter(|e| role.agency().is_none_or(|a| e.agency.as_deref() == Some(a)))
        .filter(|e| want.is_none_or(|a| e.agency.as_deref() == Some(a.as_str())))
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
            if v.get("agency").is_none() {
                v["agency"] = json!(e.agency);
            }
            v
        })
        .collect();
    Ok(Json(
        json!({"items": items, "total": visible.len(), "limit": limit, "offset": offset}),
    ))
}

/// Bulk import of a CSV file (UTF-8, a BOM is allowed; header row = field
/// names). Every row is checked as if entered alone, in order; with any
/// rejected row nothing is recorded (400 with every row's error), unless
/// `partial=true`, which records the good rows and reports the others.
pub(super) async fn import_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    UrlPath((ledger, path)): UrlPath<(String, String)>,
    Query(q): Q,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (role, kind) = writer(&app, &h, peer, &ledger, &path, "importing")?;
    let partial = match q.get("partial").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(bad("partial", "`partial` is true or false")),
    };
    let author = role_name(&role);
    // The rows are checked one by one against the ledger so far: blocking
    // work, done on the blocking pool under the heavy-request bound, so an
    // import never holds an async worker (nor the ledger's lock on one).
    let _permit = app.heavy.acquire().await.map_err(internal)?;
    let app2 = Arc::clone(&app);
    tokio::task::spawn_blocking(move || -> Result<Response, ApiError> {
        let app = app2;
        let table = ledgers::table::read(&body).map_err(|e| bad("body", e))?;
        let _one = app.ledger_write.blocking_lock();
        let mut db = ledger_db(&app)?;
        let state = db.ledger_until(kind.ledger, i64::MAX).map_err(internal)?;
        let (good, errors) = check_table(&app.site, kind, &table, state, &author)?;
        let rows = table.rows.len();
        if !errors.is_empty() && !partial {
            return Ok((
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": "rejected_rows",
                    "message": format!("{} of {rows} rows rejected; nothing was recorded (fix them, or send partial=true to record the others)", errors.len()),
                    "field": null,
                    "rows": rows, "accepted": 0, "errors": errors,
                })),
            )
                .into_response());
        }
        let mut ids = Vec::new();
        let mut changes: Vec<Change> = Vec::new();
        for (_, c) in &good {
            let id = append(&mut db, kind, c, None, &author)?;
            ids.push(id);
            changes.push((c.ts_ms, c.body.clone(), id, false));
        }
        drop(db);
        drop(_one);
        after_write(&app, kind, &changes);
        Ok((
            StatusCode::OK,
            Json(json!({"rows": rows, "accepted": ids.len(), "ids": ids, "errors": errors})),
        )
            .into_response())
    })
    .await
    .map_err(internal)?
}

/// The good rows of a table with their row numbers, and the errors.
pub(super) type RowsChecked = (Vec<(usize, Checked)>, Vec<Value>);

/// The rows of a table (a CSV file or a workbook), each checked as if
/// entered alone, in order, against the ledger so far and the rows before
/// it; nothing is written. The good rows with their row numbers, and one
/// error per bad row (`row`, `field`, `message`).
pub(super) fn check_table(
    site: &meterflow_model::Site,
    kind: &'static Kind,
    table: &ledgers::table::Table,
    mut state: Vec<meterflow_store::LedgerEvent>,
    author: &str,
) -> Result<RowsChecked, ApiError> {
    ledgers::csv_header(kind, &table.headers).map_err(rejected)?;
    let mut good: Vec<(usize, Checked)> = Vec::new();
    let mut errors: Vec<Value> = Vec::new();
    for (line, cells) in &table.rows {
        let line = *line;
        let cells = match cells {
            Ok(c) if c.len() != table.headers.len() => {
                errors.push(json!({"row": line, "field": null, "message": format!("{} cells, the header has {}", c.len(), table.headers.len())}));
                continue;
            }
            Ok(c) => c,
            Err(e) => {
                errors.push(json!({"row": line, "field": null, "message": e}));
                continue;
            }
        };
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let checked = ledgers::csv_row(kind, &table.headers, cells)
            .and_then(|v| ledgers::check(site, kind, &state, &v));
        match checked {
            Ok(c) => {
                // Later rows are checked against the earlier ones, in time order.
                let e = ledgers::as_event(kind, &c, -(line as i64), author);
                let at = state.partition_point(|x| x.ts_ms <= e.ts_ms);
                state.insert(at, e);
                good.push((line, c));
            }
            Err((field, message)) => {
                errors.push(json!({"row": line, "field": field, "message": message}));
            }
        }
    }
    Ok((good, errors))
}

fn date_param(app: &App, q: &HashMap<String, String>) -> Result<chrono::NaiveDate, ApiError> {
    match q.get("date") {
        None => Ok(chrono::Utc::now().with_timezone(&app.site.tz).date_naive()),
        Some(d) => ledgers::date_field("date", d).map_err(rejected),
    }
}

/// Office space on a date: rooms, per-agency area per person, 超标, idle rooms.
pub(super) async fn space_summary_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let date = date_param(&app, &q)?;
    let events = ledger_db(&app)?
        .ledger_until("space", i64::MAX)
        .map_err(internal)?;
    let mut s = meterflow_ledgers::space::summarize(&app.site, &events, date);
    if let Some(a) = role.agency() {
        s.rooms.retain(|r| r.agency.as_deref() == Some(a));
        s.agencies.retain(|x| x.agency == a);
    }
    let mut v = serde_json::to_value(&s).map_err(internal)?;
    if role.agency().is_some() {
        // Site totals are not an agency's to see.
        for k in ["total_usable_m2", "idle_m2", "idle_rate_pct"] {
            v[k] = Value::Null;
        }
    }
    v["level"] = json!(app.site.office.level);
    Ok(Json(v))
}

/// The fleet's year: per vehicle km, L/100 km, costs, maintenance due, anomalies.
pub(super) async fn vehicles_summary_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let year = year_param(&q)?;
    let (from, to) = year_ms(&app.site, year);
    let events = ledger_db(&app)?
        .ledger_until("vehicles", i64::MAX)
        .map_err(internal)?;
    let mut f = meterflow_ledgers::vehicles::summarize(&app.site, &events, from, to);
    if let Some(a) = role.agency() {
        f.vehicles.retain(|v| v.agency == a);
        f.litres_by_agency.retain(|k, _| k == a);
        f.cost_by_purpose.clear();
        for v in &f.vehicles {
            *f.cost_by_purpose.entry(v.purpose.clone()).or_default() += v.total_cny;
        }
    }
    let mut v = serde_json::to_value(&f).map_err(internal)?;
    v["year"] = json!(year);
    Ok(Json(v))
}

/// Calendar year `year` in the site zone, UTC ms.
pub(super) fn year_ms(site: &Site, year: i32) -> (i64, i64) {
    period_of(year, None).map_or((0, 0), |p| {
        (
            meterflow_core::time::day_start(p.from, site.tz),
            meterflow_core::time::day_start(p.to, site.tz),
        )
    })
}

fn idle_days(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    match q.get("idle_days") {
        None => Ok(180),
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| bad("idle_days", "`idle_days` is 1-3650")),
    }
}

/// The asset register on a date: per agency count, value, net book value,
/// idle; and every asset with its place and value.
pub(super) async fn assets_register_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let date = date_param(&app, &q)?;
    let days = idle_days(&q)?;
    let (limit, offset) = page(&q)?;
    let events = ledger_db(&app)?
        .ledger_until("assets", i64::MAX)
        .map_err(internal)?;
    let end = meterflow_core::time::day_start(date + chrono::Duration::days(1), app.site.tz) - 1;
    let idle: std::collections::BTreeSet<String> =
        meterflow_ledgers::assets::idle(&app.site, &events, end, days)
            .into_iter()
            .map(|a| a.epc)
            .collect();
    let mut agencies = meterflow_ledgers::assets::by_agency(&app.site, &events, date, days);
    agencies.retain(|a| role.agency().is_none_or(|r| a.agency == r));
    let all: Vec<Value> = meterflow_ledgers::assets::locate(&events, end, app.site.tz)
        .into_values()
        .filter(|a| role.agency().is_none_or(|r| a.agency == r))
        .map(|a| {
            json!({
                "epc": a.epc, "category": a.category, "agency": a.agency, "room": a.room,
                "custodian": a.custodian, "acquired": a.acquired, "value_cny": a.value_cny,
                "net_book_value_cny": meterflow_ledgers::assets::net_book_value(a.value_cny, a.life_years, a.acquired, date),
                "disposed": a.disposed, "idle": idle.contains(&a.epc),
                "last_seen_room": a.last_seen.as_ref().map(|s| s.0.clone()),
                "last_seen": a.last_seen.as_ref().map(|s| iso(&app.site, s.1)),
            })
        })
        .collect();
    Ok(Json(json!({
        "date": date, "idle_days": days, "agencies": agencies, "total": all.len(),
        "limit": limit, "offset": offset,
        "items": all.into_iter().skip(offset).take(limit).collect::<Vec<_>>(),
    })))
}

/// Inventory reconciliation of a room or an agency over a scan window.
pub(super) async fn reconciliation_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> ApiResult {
    let role = app.auth(&h, peer)?;
    let (from, to) = time_range(&q, app.site.tz)?;
    if to <= from {
        return Err(bad("to", "`to` must be after `from`"));
    }
    let scope = match (q.get("room"), q.get("agency")) {
        (Some(r), None) => meterflow_ledgers::assets::Scope::Room(r.clone()),
        (None, Some(a)) => meterflow_ledgers::assets::Scope::Agency(a.clone()),
        _ => return Err(bad("room", "give exactly one of `room` and `agency`")),
    };
    if let Some(mine) = role.agency() {
        match &scope {
            meterflow_ledgers::assets::Scope::Agency(a) if a == mine => {}
            meterflow_ledgers::assets::Scope::Agency(_) => {
                return Err(not_found("no such agency"));
            }
            meterflow_ledgers::assets::Scope::Room(_) => {
                return Err(forbidden(
                    "an agency token reconciles its own agency (agency=…), not rooms",
                ));
            }
        }
    }
    if let meterflow_ledgers::assets::Scope::Agency(a) = &scope
        && !app.site.agencies.iter().any(|x| &x.id == a)
    {
        return Err(not_found(format!("no agency `{a}`")));
    }
    let events = ledger_db(&app)?
        .ledger_until("assets", i64::MAX)
        .map_err(internal)?;
    let r = meterflow_ledgers::assets::reconcile(&app.site, &events, &scope, from, to);
    Ok(Json(serde_json::to_value(&r).map_err(internal)?))
}

/// The annual assessment as a file: the workbook, or one table as CSV or
/// Parquet (`table`); an agency token gets its own agency's only.
#[cfg(feature = "export")]
pub(super) async fn export_h(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let role = app.auth(&h, peer)?;
    export_for(app, role, q).await
}

/// The assessment export for `role` (an agency gets its own), as the API
/// and the assessment page serve it.
#[cfg(feature = "export")]
pub(super) async fn export_for(
    app: Arc<App>,
    role: Role,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    use meterflow_export::{Format, Profile};
    let year = year_param(&q)?;
    let agency = match (role.agency(), q.get("agency")) {
        (Some(mine), Some(a)) if a != mine => return Err(not_found(format!("no agency `{a}`"))),
        (Some(mine), _) => Some(mine.to_string()),
        (None, Some(a)) => {
            if !app.site.agencies.iter().any(|x| &x.id == a) {
                return Err(not_found(format!("no agency `{a}`")));
            }
            Some(a.clone())
        }
        (None, None) => None,
    };
    let (format, ext, mime) = match q.get("format").map(String::as_str) {
        None | Some("xlsx") => (
            Format::Xlsx,
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        Some("csv") => (Format::Csv, "csv", "text/csv; charset=utf-8"),
        Some("parquet") => (Format::Parquet, "parquet", "application/vnd.apache.parquet"),
        Some(_) => return Err(bad("format", "`format` is xlsx, csv or parquet")),
    };
    let profile = match q.get("profile").map(String::as_str) {
        None | Some("national") => Profile::National,
        Some("quota-standard") => Profile::QuotaStandard,
        Some(_) => return Err(bad("profile", "`profile` is national or quota-standard")),
    };
    let table = match q.get("table").map(String::as_str) {
        None | Some("assessment") => "assessment",
        Some(t @ ("monthly" | "sources" | "cover")) => t,
        Some(_) => {
            return Err(bad(
                "table",
                "`table` is assessment, monthly, sources or cover",
            ));
        }
    };
    let Ok(_slot) = app.export_slots.try_acquire() else {
        return Ok(busy("an assessment export", 10));
    };
    let _permit = app.heavy.acquire().await.map_err(internal)?;
    let app2 = Arc::clone(&app);
    let req = meterflow_export::gather::Request {
        year,
        agency: agency.clone(),
        profile,
    };
    let dir = tempfile::tempdir().map_err(internal)?;
    let out = if format == Format::Xlsx {
        dir.path().join("assessment.xlsx")
    } else {
        dir.path().join("tables")
    };
    let out2 = out.clone();
    tokio::task::spawn_blocking(move || {
        meterflow_export::gather::export(&app2.site, &req, format, &out2, &|_| {})
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let file = if format == Format::Xlsx {
        out
    } else {
        out.join(format!("{table}.{ext}"))
    };
    let f = tokio::fs::File::open(&file).await.map_err(internal)?;
    // The temporary directory lives until the body is sent.
    let stream = tokio_util::io::ReaderStream::new(f);
    let body = axum::body::Body::from_stream(futures_keep(stream, dir));
    let name = format!(
        "assessment-{year}{}{}.{ext}",
        agency.map(|a| format!("-{a}")).unwrap_or_default(),
        if format == Format::Xlsx {
            String::new()
        } else {
            format!("-{table}")
        }
    );
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// A stream that keeps `keep` alive until it ends.
#[cfg(feature = "export")]
fn futures_keep<S: tokio_stream_like::Stream + Unpin>(
    s: S,
    keep: tempfile::TempDir,
) -> tokio_stream_like::Keep<S> {
    tokio_stream_like::Keep { s, _keep: keep }
}

#[cfg(feature = "export")]
mod tokio_stream_like {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub(super) use futures_core::Stream;

    /// A stream holding something until it is dropped.
    pub(super) struct Keep<S> {
        pub(super) s: S,
        pub(super) _keep: tempfile::TempDir,
    }

    impl<S: Stream + Unpin> Stream for Keep<S> {
        type Item = S::Item;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
            Pin::new(&mut self.s).poll_next(cx)
        }
    }
}
