//! The pages people use besides the overview: sign-in and sign-out, and the
//! clerks' ledger pages (lists with filters and paging, an entry form per
//! kind generated from [`meterflow_ledgers::KINDS`], correction and void
//! with a reason, an entry's history, upload of CSV or xlsx with a per-row
//! report before anything is recorded). Server-rendered with `maud`
//! (escaping by construction), no script, Chinese by default.
//!
//! What a role may do is decided here, on the server, whatever the menus
//! show: a clerk writes only their ledger, an agency reads only its own
//! entries and writes none, a manager or admin writes every ledger.

use super::*;
use crate::session::{self, Pending};
use crate::ui::{FONTS, Lang};

/// A signed-in browser of this server.
pub(crate) type Session = session::Session<Role>;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use meterflow_ledgers::{self as ledgers, Kind, Ty};

/// Entries per list page.
const PAGE_ROWS: usize = 50;

const CSS: &str = "body{margin:0;color:#222;background:#f6f7f9}\
header{background:#1f3a5f;color:#fff;padding:.4em 1em;display:flex;flex-wrap:wrap;gap:.2em 1em;align-items:center}\
header a,header button{color:#fff;text-decoration:none;background:none;border:0;font:inherit;cursor:pointer;padding:0}\
header .me{margin-left:auto;opacity:.8}main{padding:1em;max-width:1200px}\
table{border-collapse:collapse;background:#fff;margin:.5em 0}th,td{border:1px solid #ccd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#eef1f5}.scroll{overflow-x:auto}\
form.entry{display:grid;grid-template-columns:repeat(auto-fill,minmax(14em,1fr));gap:.6em 1em;background:#fff;padding:1em;border:1px solid #ccd}\
form.entry label{display:flex;flex-direction:column;font-size:.9em}form.entry .req::after{content:' *';color:#a00}\
input,select,button{font:inherit;padding:.25em}.err{color:#a00;font-weight:bold}.ok{color:#060;font-weight:bold}\
.bad td{background:#fde8e8}.warn{color:#a60;font-weight:bold}.over{color:#a00;font-weight:bold}.idle{color:#a60}.muted{color:#667}\
section{margin:1.2em 0}h1{font-size:1.4em}h2{font-size:1.15em}\
figure.chart{margin:1em 0;max-width:760px}figure.chart svg{background:#fff}.legend{font-size:.85em;color:#555}\
form.picker{margin:.5em 0}form.picker label{margin-right:.4em}details.interactive{margin:.3em 0}";

/// A page's language: `?lang=` if given, else the `mf_lang` cookie, else Chinese.
pub(crate) fn lang_of(h: &HeaderMap, q: &HashMap<String, String>) -> Lang {
    if let Some(l) = q.get("lang") {
        return Lang::from_query(Some(l));
    }
    let cookie = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "mf_lang")
        .map(|(_, v)| v);
    Lang::from_query(cookie)
}

fn tr(l: Lang, zh: &'static str, en: &'static str) -> &'static str {
    match l {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

/// The signed-in session of a request, if any (its idle clock restarted).
pub(crate) fn signed_in(app: &App, h: &HeaderMap) -> Option<Session> {
    let sid = session::cookie(h)?;
    let mut s = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
    s.touch(sid, Instant::now()).cloned()
}

/// A page for a signed-in user, or the way to sign in.
fn need_session(app: &App, h: &HeaderMap, back: &str) -> Result<Session, Box<Response>> {
    signed_in(app, h).ok_or_else(|| {
        let next = meterflow_runtime::notify::url_encode(back);
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/login?next={next}"))],
        )
            .into_response()
            .into()
    })
}

pub(crate) fn role_label(l: Lang, site: &Site, role: &Role) -> String {
    match role {
        Role::Admin => tr(l, "管理员", "administrator").to_string(),
        Role::Manager => tr(l, "能源管理员", "energy manager").to_string(),
        Role::Clerk(x) => match l {
            Lang::Zh => format!("{}台账员", ledgers::ledger_zh(x)),
            Lang::En => format!("{x} clerk"),
        },
        Role::Agency(a) => agency_name(site, a),
    }
}

/// Who entered an entry (`clerk:waste`), as the page names them.
fn author_label(l: Lang, site: &Site, author: &str) -> String {
    Role::parse(author).map_or_else(|| author.to_string(), |r| role_label(l, site, &r))
}

fn agency_name(site: &Site, id: &str) -> String {
    site.agencies
        .iter()
        .find(|a| a.id == id)
        .map_or_else(|| id.to_string(), |a| a.name.clone())
}

fn ledger_label(l: Lang, ledger: &str) -> String {
    match l {
        Lang::Zh => ledgers::ledger_zh(ledger).to_string(),
        Lang::En => ledger.to_string(),
    }
}

fn kind_label(l: Lang, k: &Kind) -> String {
    match l {
        Lang::Zh => ledgers::kind_zh(k).0.to_string(),
        Lang::En => k.noun.to_string(),
    }
}

fn field_label(l: Lang, k: &Kind, field: &str) -> String {
    match (l, field) {
        (Lang::Zh, "time") => ledgers::kind_zh(k).1.to_string(),
        (Lang::Zh, f) => ledgers::label_zh(f).to_string(),
        (Lang::En, "time") => "time".to_string(),
        (Lang::En, f) => f.replace('_', " "),
    }
}

/// A coded value as the page shows it (`kitchen` → 厨余垃圾).
fn value_label(l: Lang, site: &Site, field: &str, v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        // 1000 rather than 1000.0; 2.25 as it is.
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    };
    if field == "agency" {
        return agency_name(site, &text);
    }
    match (l, ledgers::value_zh(field, &text)) {
        (Lang::Zh, Some(w)) => w.to_string(),
        _ => text,
    }
}

/// Whether `role` records entries in `ledger`.
pub(crate) fn writes(role: &Role, ledger: &str) -> bool {
    matches!(role, Role::Admin | Role::Manager) || matches!(role, Role::Clerk(l) if l == ledger)
}

/// The page shell: the menu of what this role may open, the language
/// switch and sign-out.
fn shell(l: Lang, app: &App, s: Option<&Session>, title: &str, body: Markup) -> String {
    let site = &app.site;
    let other = match l {
        Lang::Zh => ("en", "English"),
        Lang::En => ("zh", "中文"),
    };
    let markup = html! {
        (DOCTYPE)
        html lang=(tr(l, "zh-CN", "en")) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (site.site.name) }
                style { (PreEscaped(format!("body{{font-family:{FONTS}}}{CSS}"))) }
                (PreEscaped(crate::assets::HEAD))
            }
            body {
                header {
                    strong { (site.site.name) }
                    @if let Some(s) = s {
                        @if let Role::Agency(a) = &s.role {
                            a href={ "/agencies/" (a) } { (tr(l, "本单位能耗", "Our energy")) }
                        } @else {
                            a href="/" { (tr(l, "能耗概览", "Overview")) }
                        }
                        @if matches!(s.role, Role::Admin | Role::Manager | Role::Agency(_)) {
                            a href="/assessment" { (tr(l, "年度考核", "Assessment")) }
                        }
                        @for ledger in ledgers::LEDGERS {
                            @if visible_ledger(&s.role, ledger) {
                                a href={ "/ledgers/" (ledger) } { (ledger_label(l, ledger)) }
                            }
                        }
                        span.me { (role_label(l, site, &s.role)) }
                        form method="post" action="/logout" style="display:inline" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { (tr(l, "退出", "Sign out")) }
                        }
                    }
                    a href={ "?lang=" (other.0) } lang=(other.0) { (other.1) }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    markup.into_string()
}

/// A clerk sees their ledger (and reads the others like a manager); an
/// agency reads its own entries of every ledger.
fn visible_ledger(role: &Role, ledger: &str) -> bool {
    match role {
        Role::Clerk(l) => l == ledger,
        _ => true,
    }
}

/// A page in the shell, for the drill-down pages.
pub(crate) fn page_for(
    status: StatusCode,
    l: Lang,
    app: &App,
    s: Option<&Session>,
    title: &str,
    body: Markup,
    q: &HashMap<String, String>,
) -> Response {
    page(status, l, shell(l, app, s, title, body), q)
}

/// A refusal page, for the drill-down pages.
pub(crate) fn refusal(
    l: Lang,
    app: &App,
    s: Option<&Session>,
    status: StatusCode,
    why: &str,
) -> Response {
    refuse(l, app, s, status, why)
}

fn page(status: StatusCode, l: Lang, html: String, q: &HashMap<String, String>) -> Response {
    let mut r = (status, Html(html)).into_response();
    if q.contains_key("lang") {
        let v = format!(
            "mf_lang={}; Path=/; SameSite=Strict; Max-Age=31536000",
            tr(l, "zh", "en")
        );
        if let Ok(v) = header::HeaderValue::from_str(&v) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

fn refuse(l: Lang, app: &App, s: Option<&Session>, status: StatusCode, why: &str) -> Response {
    let title = match status {
        StatusCode::FORBIDDEN => tr(l, "无权访问", "Not allowed"),
        StatusCode::NOT_FOUND => tr(l, "未找到", "Not found"),
        _ => tr(l, "请求有误", "Bad request"),
    };
    let body = html! { p.err { (why) } p { a href="/ledgers" { (tr(l, "返回台账", "Back to the ledgers")) } } };
    (status, Html(shell(l, app, s, title, body))).into_response()
}

// ---------------------------------------------------------------- sign-in

/// `GET /login`.
pub(super) async fn login_page(State(app): State<Arc<App>>, h: HeaderMap, Query(q): Q) -> Response {
    let l = lang_of(&h, &q);
    if let Some(s) = signed_in(&app, &h) {
        return see_other(&home(&s.role));
    }
    let next = q.get("next").cloned().unwrap_or_default();
    page(StatusCode::OK, l, login_html(l, &app, &next, None), &q)
}

fn login_html(l: Lang, app: &App, next: &str, err: Option<&str>) -> String {
    let body = html! {
        form.entry method="post" action="/login" style="max-width:28em" {
            @if let Some(e) = err { p.err { (e) } }
            label {
                (tr(l, "访问令牌", "Access token"))
                input type="password" name="token" autocomplete="current-password" required autofocus;
            }
            input type="hidden" name="next" value=(next);
            button type="submit" { (tr(l, "登录", "Sign in")) }
            p.muted { (tr(l, "令牌由系统管理员发放；登录后 30 分钟无操作或 8 小时后需重新登录。",
                "Tokens are issued by the administrator; a session ends after 30 idle minutes or 8 hours.")) }
        }
    };
    shell(l, app, None, tr(l, "登录", "Sign in"), body)
}

/// Where a role lands after sign-in.
fn home(role: &Role) -> String {
    match role {
        Role::Clerk(l) => format!("/ledgers/{l}"),
        Role::Agency(_) => "/ledgers".into(),
        _ => "/".into(),
    }
}

/// `POST /login` (`token`, `next`): the token is checked like an API
/// request's (the same failure limits), and exchanged for a session.
pub(super) async fn login_post(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = page::form_fields(&body);
    let l = lang_of(&h, &HashMap::new());
    let next = form.get("next").cloned().unwrap_or_default();
    let headers = with_token(&h, form.get("token"));
    let role = match app.auth(&headers, peer) {
        Ok(r) => r,
        Err(e) => {
            let msg = if e.status == StatusCode::TOO_MANY_REQUESTS {
                tr(
                    l,
                    "失败次数过多，请一分钟后再试。",
                    "Too many failures; wait a minute.",
                )
            } else {
                tr(l, "令牌无效。", "That token is not valid.")
            };
            return (e.status, Html(login_html(l, &app, &next, Some(msg)))).into_response();
        }
    };
    let sid = {
        let mut s = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.start(role.clone(), Instant::now())
    };
    let Some(sid) = sid else {
        return internal("no randomness for a session id").into_response();
    };
    // Only a path on this server: never an address elsewhere.
    let to = if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        home(&role)
    };
    let mut r = see_other(&to);
    if let Ok(v) = header::HeaderValue::from_str(&session::set_cookie(&sid, &h)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /logout` (`csrf`).
pub(super) async fn logout_post(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = page::form_fields(&body);
    let l = lang_of(&h, &HashMap::new());
    if let Some(s) = signed_in(&app, &h) {
        if !session::csrf_ok(&s, form.get("csrf")) {
            return csrf_refused(l, &app, &s);
        }
        if let Some(sid) = session::cookie(&h) {
            app.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .end(sid);
        }
    }
    let mut r = see_other("/login");
    if let Ok(v) = header::HeaderValue::from_str(&session::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn csrf_refused(l: Lang, app: &App, s: &Session) -> Response {
    refuse(
        l,
        app,
        Some(s),
        StatusCode::FORBIDDEN,
        tr(
            l,
            "表单已过期或来源不明（CSRF 校验失败）：请刷新页面后重新提交。",
            "The form is stale or did not come from this site (CSRF check failed): reload the page and submit again.",
        ),
    )
}

// ---------------------------------------------------------------- ledgers

/// `GET /ledgers`: the ledgers this role may open.
pub(super) async fn ledgers_page(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Q,
) -> Response {
    let l = lang_of(&h, &q);
    let s = match need_session(&app, &h, "/ledgers") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let body = html! {
        @for ledger in ledgers::LEDGERS {
            @if visible_ledger(&s.role, ledger) {
                section {
                    h2 { a href={ "/ledgers/" (ledger) } { (ledger_label(l, ledger)) } }
                    ul {
                        @for k in ledgers::KINDS.iter().filter(|k| k.ledger == ledger) {
                            li { a href={ "/ledgers/" (ledger) "/" (k.path) } { (kind_label(l, k)) } }
                        }
                    }
                }
            }
        }
    };
    page(
        StatusCode::OK,
        l,
        shell(l, &app, Some(&s), tr(l, "台账", "Ledgers"), body),
        &q,
    )
}

/// `GET /ledgers/{ledger}`: its kinds and its own view (office space by
/// floor, maintenance due, the last inventory, the waste year).
pub(super) async fn ledger_page(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    UrlPath(ledger): UrlPath<String>,
    Query(q): Q,
) -> Response {
    let l = lang_of(&h, &q);
    let s = match need_session(&app, &h, &format!("/ledgers/{ledger}")) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if !ledgers::LEDGERS.contains(&ledger.as_str()) {
        return refuse(l, &app, Some(&s), StatusCode::NOT_FOUND, &ledger);
    }
    if !visible_ledger(&s.role, &ledger) {
        return refuse(
            l,
            &app,
            Some(&s),
            StatusCode::FORBIDDEN,
            tr(
                l,
                "此台账不属于您的岗位。",
                "This ledger is not yours to keep.",
            ),
        );
    }
    let app2 = Arc::clone(&app);
    let role = s.role.clone();
    let ledger2 = ledger.clone();
    let view =
        tokio::task::spawn_blocking(move || crate::ledger_views::view(&app2, l, &role, &ledger2))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
    let view = match view {
        Ok(v) => v,
        Err(e) => html! { p.err { (e) } },
    };
    let body = html! {
        nav {
            @for k in ledgers::KINDS.iter().filter(|k| k.ledger == ledger) {
                a href={ "/ledgers/" (ledger) "/" (k.path) } { (kind_label(l, k)) } " · "
            }
        }
        (view)
    };
    page(
        StatusCode::OK,
        l,
        shell(l, &app, Some(&s), &ledger_label(l, &ledger), body),
        &q,
    )
}

/// The kind at `ledger/path`, visible to the session's role.
fn kind_for(
    l: Lang,
    app: &App,
    s: &Session,
    ledger: &str,
    path: &str,
) -> Result<&'static Kind, Box<Response>> {
    let Some(kind) = ledgers::find(ledger, path) else {
        return Err(Box::new(refuse(
            l,
            app,
            Some(s),
            StatusCode::NOT_FOUND,
            &format!("{ledger}/{path}"),
        )));
    };
    if !visible_ledger(&s.role, ledger) {
        return Err(Box::new(refuse(
            l,
            app,
            Some(s),
            StatusCode::FORBIDDEN,
            tr(
                l,
                "此台账不属于您的岗位。",
                "This ledger is not yours to keep.",
            ),
        )));
    }
    Ok(kind)
}

/// Whether the time of `kind` is a moment (a trip leaves at 08:30) rather
/// than a day (a room is registered on a date).
fn timed(kind: &Kind) -> bool {
    matches!(
        kind.kind,
        "trip" | "fuel" | "toll" | "weigh_in" | "scan" | "event"
    )
}

/// The entry form of `kind`, filled with `values`, `err` at its field.
#[allow(clippy::too_many_arguments)]
fn entry_form(
    l: Lang,
    site: &Site,
    kind: &Kind,
    action: &str,
    csrf: &str,
    values: &HashMap<String, String>,
    notes: &Notes,
    submit: &str,
) -> Markup {
    let err = notes.err.as_ref();
    let v = |f: &str| values.get(f).cloned().unwrap_or_default();
    let err_at = |f: &str| err.filter(|(ef, _)| ef == f).map(|(_, m)| m.clone());
    let warn_at = |f: &str| {
        notes
            .warn
            .iter()
            .find(|(wf, _)| wf == f)
            .map(|(_, m)| m.clone())
    };
    let stray = err.filter(|(ef, _)| ef != "time" && !kind.fields.iter().any(|f| f.name == ef));
    html! {
        form.entry method="post" action=(action) {
            @if let Some((f, m)) = stray { p.err style="grid-column:1/-1" { (f) "：" (m) } }
            input type="hidden" name="csrf" value=(csrf);
            label.req {
                span { (field_label(l, kind, "time")) }
                @if timed(kind) {
                    input type="datetime-local" name="time" value=(v("time").replace(' ', "T")) required;
                } @else {
                    input type="date" name="time" value=(v("time")) required;
                }
                @if let Some(m) = err_at("time") { span.err { (m) } }
            }
            @for f in kind.fields {
                label class=(if f.required { "req" } else { "" }) {
                    span { (field_label(l, kind, f.name)) }
                    @match f.ty {
                        _ if f.name == "agency" => {
                            select name="agency" required[f.required] {
                                @if !f.required { option value="" { "—" } }
                                @for a in &site.agencies {
                                    option value=(a.id) selected[v("agency") == a.id] { (a.name) }
                                }
                            }
                        }
                        Ty::Enum(codes) => {
                            select name=(f.name) required[f.required] {
                                @if !f.required { option value="" { "—" } }
                                @for c in codes.iter() {
                                    option value=(c) selected[v(f.name) == *c] {
                                        (value_label(l, site, f.name, &json!(c)))
                                    }
                                }
                            }
                        }
                        Ty::Num => input type="text" inputmode="decimal" name=(f.name) value=(v(f.name)) required[f.required];
                        Ty::Date => input type="date" name=(f.name) value=(v(f.name)) required[f.required];
                        Ty::Str => input type="text" name=(f.name) value=(v(f.name)) required[f.required];
                    }
                    @if let Some(m) = err_at(f.name) { span.err { (m) } }
                    @if let Some(m) = warn_at(f.name) { span.warn { (m) } }
                }
            }
            @if !notes.warn.is_empty() {
                label.confirm style="grid-column:1/-1" {
                    span { input type="checkbox" name="confirm" value="1" required; " " (notes.confirm_label) }
                }
            }
            div style="grid-column:1/-1" { button type="submit" { (submit) } }
        }
    }
}

/// What a form shows beside its fields: the refusal, and the warnings the
/// clerk must confirm before the entry is recorded.
#[derive(Debug, Default)]
struct Notes {
    err: Option<(String, String)>,
    warn: Vec<(String, String)>,
    confirm_label: &'static str,
}

/// A rule's refusal as the page shows it: in Chinese for the messages a
/// clerk meets most, with the field's label.
fn message(l: Lang, kind: &Kind, field: &str, msg: &str) -> String {
    if l == Lang::En {
        return msg.to_string();
    }
    let label = field_label(l, kind, field);
    if field == "end_km" && msg.contains("is below start_km") {
        let nums: Vec<&str> = msg
            .split_whitespace()
            .filter(|w| w.trim_end_matches(':').parse::<f64>().is_ok())
            .collect();
        if let [end, start] = nums[..] {
            return format!(
                "收车里程 {end} 低于出车里程 {}：有一个里程表读数有误",
                start.trim_end_matches(':')
            );
        }
    }
    if let Some(Ty::Enum(codes)) = kind.fields.iter().find(|f| f.name == field).map(|f| f.ty)
        && msg.contains(": one of ")
    {
        let given = msg.split('`').nth(1).unwrap_or_default();
        let names: Vec<String> = codes
            .iter()
            .map(|c| ledgers::value_zh(field, c).unwrap_or(c).to_string())
            .collect();
        return format!("{label}“{given}”不是可选值，应为：{}", names.join("、"));
    }
    if msg.contains("the odometer went back") {
        let nums: Vec<&str> = msg
            .split_whitespace()
            .filter(|w| w.parse::<f64>().is_ok())
            .collect();
        if let [now, before] = nums[..] {
            return format!("{label} {now} 低于此前读数 {before} km：里程表倒退了，请核实");
        }
    }
    if msg.contains("is required") {
        return format!("请填写{label}");
    }
    if msg.contains("is not a number") {
        return format!("{label}应为数字");
    }
    if msg.contains("is not a date") {
        return format!("{label}应为日期（如 2026-12-02、2026/12/2 或 2026年12月2日）");
    }
    format!("{label}：{msg}")
}

/// The fields of a list row, in the kind's order.
fn cells(l: Lang, site: &Site, kind: &Kind, body: &Value) -> Vec<String> {
    kind.fields
        .iter()
        .map(|f| {
            body.get(f.name)
                .map(|v| value_label(l, site, f.name, v))
                .unwrap_or_default()
        })
        .collect()
}

fn local_time(site: &Site, ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&site.tz)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

/// `GET /ledgers/{ledger}/{kind}`: the entries in effect (filters: agency,
/// from, to; 50 a page), the form for a new one, and the upload.
pub(super) async fn kind_page(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    UrlPath((ledger, path)): UrlPath<(String, String)>,
    Query(q): Q,
) -> Response {
    let l = lang_of(&h, &q);
    let s = match need_session(&app, &h, &format!("/ledgers/{ledger}/{path}")) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let kind = match kind_for(l, &app, &s, &ledger, &path) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let values: HashMap<String, String> = HashMap::new();
    render_kind(
        &app,
        l,
        &s,
        kind,
        &q,
        &values,
        Notes::default(),
        StatusCode::OK,
    )
}

#[allow(clippy::too_many_arguments)]
fn render_kind(
    app: &App,
    l: Lang,
    s: &Session,
    kind: &'static Kind,
    q: &HashMap<String, String>,
    values: &HashMap<String, String>,
    notes: Notes,
    status: StatusCode,
) -> Response {
    let site = &app.site;
    let tz = site.tz;
    let bound = |k: &str, default: i64| -> Result<i64, String> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => meterflow_core::timeparse::parse_time_arg(v, tz),
        }
    };
    let (from, to) = match (bound("from", i64::MIN), bound("to", i64::MAX)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            return refuse(l, app, Some(s), StatusCode::BAD_REQUEST, &e);
        }
    };
    let page_no: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1 && *p <= 1_000_000)
        .unwrap_or(1);
    let rows = match ledger_db(app).and_then(|db| {
        db.effective(kind.ledger, kind.kind, from, to)
            .map_err(internal)
    }) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let want = q.get("agency").filter(|a| !a.is_empty());
    let mine = s.role.agency();
    let mut visible: Vec<_> = rows
        .into_iter()
        .filter(|e| mine.is_none_or(|a| e.agency.as_deref() == Some(a)))
        .filter(|e| want.is_none_or(|a| e.agency.as_deref() == Some(a.as_str())))
        .collect();
    // Newest first: what a clerk just entered is at the top.
    visible.reverse();
    let total = visible.len();
    let pages = total.div_ceil(PAGE_ROWS).max(1);
    let shown: Vec<_> = visible
        .iter()
        .skip((page_no - 1) * PAGE_ROWS)
        .take(PAGE_ROWS)
        .collect();
    let base = format!("/ledgers/{}/{}", kind.ledger, kind.path);
    let keep = |p: usize| {
        let mut parts = vec![format!("page={p}")];
        for k in ["agency", "from", "to"] {
            if let Some(v) = q.get(k).filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", meterflow_runtime::notify::url_encode(v)));
            }
        }
        format!("{base}?{}", parts.join("&"))
    };
    let can_write = writes(&s.role, kind.ledger);
    let shown_notes = Notes {
        err: notes
            .err
            .as_ref()
            .map(|(f, m)| (f.clone(), message(l, kind, f, m))),
        warn: notes
            .warn
            .iter()
            .map(|(f, m)| (f.clone(), message(l, kind, f, m)))
            .collect(),
        confirm_label: tr(
            l,
            "以上提示已核实，确认记录",
            "I have checked the warnings above; record it",
        ),
    };
    let body = html! {
        p { a href={ "/ledgers/" (kind.ledger) } { "← " (ledger_label(l, kind.ledger)) } }
        @if let Some(id) = q.get("ok") {
            p.ok role="status" { (tr(l, "已记录，编号 ", "Recorded as no. ")) (id) }
        }
        @if let Some(n) = q.get("imported") {
            p.ok role="status" { (tr(l, "已导入条数：", "Rows recorded: ")) (n) }
        }
        @if can_write {
            section {
                h2 { (tr(l, "新增", "New entry")) }
                (entry_form(l, site, kind, &base, &s.csrf, values, &shown_notes, tr(l, "保存", "Save")))
            }
            section {
                h2 { (tr(l, "批量导入（CSV 或 Excel）", "Upload (CSV or Excel)")) }
                form method="post" action={ (base) "/upload" } enctype="multipart/form-data" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="file" name="file" accept=".csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" required;
                    " "
                    button type="submit" { (tr(l, "检查文件", "Check the file")) }
                    p.muted {
                        (tr(l, "首行为列名（字段名或中文名均可）：", "The first row names the columns (field names or their Chinese labels): "))
                        (field_label(l, kind, "time"))
                        @for f in kind.fields { "、" (field_label(l, kind, f.name)) }
                        (tr(l, "。检查通过前不会记录任何内容。", ". Nothing is recorded before you confirm."))
                    }
                }
            }
        }
        section {
            h2 { (tr(l, "记录", "Entries")) " (" (total) ")" }
            form method="get" action=(base) {
                @if mine.is_none() {
                    select name="agency" aria-label=(tr(l, "单位", "agency")) {
                        option value="" { (tr(l, "全部单位", "all agencies")) }
                        @for a in &site.agencies {
                            option value=(a.id) selected[want == Some(&a.id)] { (a.name) }
                        }
                    }
                    " "
                }
                label { (tr(l, "自 ", "from ")) input type="date" name="from" value=(q.get("from").cloned().unwrap_or_default()); }
                " "
                label { (tr(l, "至 ", "to ")) input type="date" name="to" value=(q.get("to").cloned().unwrap_or_default()); }
                " "
                button type="submit" { (tr(l, "筛选", "Filter")) }
            }
            div.scroll {
                table id="entries" {
                    tr {
                        th { (tr(l, "编号", "No.")) }
                        th { (field_label(l, kind, "time")) }
                        @for f in kind.fields { th { (field_label(l, kind, f.name)) } }
                        th { (tr(l, "录入人", "Entered by")) }
                    }
                    @for e in &shown {
                        @let body: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
                        tr data-id=(e.id) {
                            td { a href={ (base) "/" (e.id) } { (e.id) } @if e.corrects.is_some() { span.muted { (tr(l, "（更正）", " (corrected)")) } } }
                            td { (local_time(site, e.ts_ms)) }
                            @for c in cells(l, site, kind, &body) { td { (c) } }
                            td { (author_label(l, site, &e.author)) }
                        }
                    }
                }
            }
            @if pages > 1 {
                p {
                    @if page_no > 1 { a href=(keep(page_no - 1)) { (tr(l, "上一页", "previous")) } " " }
                    (page_no) " / " (pages)
                    @if page_no < pages { " " a href=(keep(page_no + 1)) { (tr(l, "下一页", "next")) } }
                }
            }
        }
    };
    let title = format!("{} · {}", ledger_label(l, kind.ledger), kind_label(l, kind));
    page(status, l, shell(l, app, Some(s), &title, body), q)
}

/// The form's fields as an entry (JSON with strings; the rules read
/// numbers, dates and Chinese names from them).
fn form_entry(kind: &Kind, form: &HashMap<String, String>) -> Value {
    let mut o = serde_json::Map::new();
    if let Some(t) = form.get("time").map(|t| t.trim()).filter(|t| !t.is_empty()) {
        o.insert("time".into(), json!(t.replace('T', " ")));
    }
    for f in kind.fields {
        if let Some(v) = form.get(f.name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            o.insert(f.name.into(), json!(v));
        }
    }
    Value::Object(o)
}

/// The session of a form post with its CSRF token checked, and the kind
/// it writes; a refusal page otherwise.
fn form_writer(
    app: &App,
    h: &HeaderMap,
    form: &HashMap<String, String>,
    ledger: &str,
    path: &str,
) -> Result<(Lang, Session, &'static Kind), Box<Response>> {
    let l = lang_of(h, &HashMap::new());
    let Some(s) = signed_in(app, h) else {
        return Err(Box::new(refuse(
            l,
            app,
            None,
            StatusCode::UNAUTHORIZED,
            tr(l, "请先登录。", "Sign in first."),
        )));
    };
    if !session::csrf_ok(&s, form.get("csrf")) {
        return Err(Box::new(csrf_refused(l, app, &s)));
    }
    let kind = kind_for(l, app, &s, ledger, path)?;
    if !writes(&s.role, kind.ledger) {
        return Err(Box::new(refuse(
            l,
            app,
            Some(&s),
            StatusCode::FORBIDDEN,
            tr(
                l,
                "您的岗位不能在此台账录入。",
                "Your role does not record entries in this ledger.",
            ),
        )));
    }
    Ok((l, s, kind))
}

/// `POST /ledgers/{ledger}/{kind}`: record the form's entry, or show the
/// form again with the refusal at its field.
pub(super) async fn create_post(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    UrlPath((ledger, path)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let form = page::form_fields(&body);
    let (l, s, kind) = match form_writer(&app, &h, &form, &ledger, &path) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let entry = form_entry(kind, &form);
    let author = role_name(&s.role);
    let confirmed = form.get("confirm").map(String::as_str) == Some("1");
    let result = {
        let _one = app.ledger_write.lock().await;
        let app2 = Arc::clone(&app);
        let author = author.clone();
        tokio::task::spawn_blocking(
            move || -> Result<Result<(i64, ledgers::Checked), Notes>, ApiError> {
                let mut db = ledger_db(&app2)?;
                let state = db.ledger_until(kind.ledger, i64::MAX).map_err(internal)?;
                match ledgers::check(&app2.site, kind, &state, &entry) {
                    Ok(c) => {
                        // What would become an anomaly is recorded only once
                        // the clerk has confirmed it.
                        let warn = ledgers::warnings(kind, &state, &c);
                        if !warn.is_empty() && !confirmed {
                            return Ok(Err(Notes {
                                warn,
                                ..Notes::default()
                            }));
                        }
                        let id = ledger_routes::append_entry(&mut db, kind, &c, None, &author)?;
                        Ok(Ok((id, c)))
                    }
                    Err(r) => Ok(Err(Notes {
                        err: Some(r),
                        ..Notes::default()
                    })),
                }
            },
        )
        .await
    };
    match result {
        Ok(Ok(Ok((id, c)))) => {
            ledger_routes::published(&app, kind, &[(c.ts_ms, c.body, id, false)]);
            see_other(&format!("/ledgers/{}/{}?ok={id}", kind.ledger, kind.path))
        }
        Ok(Ok(Err(notes))) => {
            let status = if notes.err.is_some() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            render_kind(&app, l, &s, kind, &HashMap::new(), &form, notes, status)
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// The entry `id` of `kind` if this session may see it.
fn visible_entry(
    app: &App,
    kind: &Kind,
    id: &str,
) -> Result<Option<meterflow_store::LedgerEvent>, ApiError> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    let e = ledger_db(app)?
        .get(id)
        .map_err(internal)?
        .filter(|e| e.ledger == kind.ledger && e.kind == kind.kind);
    Ok(e)
}

/// `GET /ledgers/{ledger}/{kind}/{id}`: an entry, its history (what it
/// corrected and what corrected it), and the forms to correct or void it.
pub(super) async fn entry_page(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    UrlPath((ledger, path, id)): UrlPath<(String, String, String)>,
    Query(q): Q,
) -> Response {
    let l = lang_of(&h, &q);
    let s = match need_session(&app, &h, &format!("/ledgers/{ledger}/{path}/{id}")) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let kind = match kind_for(l, &app, &s, &ledger, &path) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    render_entry(&app, l, &s, kind, &id, &q, None, StatusCode::OK)
}

#[allow(clippy::too_many_arguments)]
fn render_entry(
    app: &App,
    l: Lang,
    s: &Session,
    kind: &'static Kind,
    id: &str,
    q: &HashMap<String, String>,
    err: Option<(String, String)>,
    status: StatusCode,
) -> Response {
    let site = &app.site;
    let e = match visible_entry(app, kind, id) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return refuse(
                l,
                app,
                Some(s),
                StatusCode::NOT_FOUND,
                &format!("{} {id}", kind_label(l, kind)),
            );
        }
        Err(e) => return e.into_response(),
    };
    if s.role
        .agency()
        .is_some_and(|a| e.agency.as_deref() != Some(a))
    {
        return refuse(
            l,
            app,
            Some(s),
            StatusCode::FORBIDDEN,
            tr(
                l,
                "这条记录属于其他单位。",
                "This entry belongs to another agency.",
            ),
        );
    }
    // The whole chain: back through what it corrected, forward through
    // what corrected it.
    let chain = match ledger_db(app).and_then(|db| {
        let all = db.all(Some(kind.ledger)).map_err(internal)?;
        Ok(history(&all, e.id))
    }) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let current = chain.last().map_or(e.id, |x| x.id);
    let is_current = current == e.id && !e.void;
    let body: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
    let mut values: HashMap<String, String> = HashMap::new();
    let date_only = !timed(kind);
    let t = local_time(site, e.ts_ms);
    values.insert(
        "time".into(),
        if date_only {
            t.chars().take(10).collect()
        } else {
            t
        },
    );
    for f in kind.fields {
        if let Some(v) = body.get(f.name) {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            values.insert(f.name.to_string(), text);
        }
    }
    let base = format!("/ledgers/{}/{}", kind.ledger, kind.path);
    let err_text = err
        .as_ref()
        .map(|(f, m)| (f.clone(), message(l, kind, f, m)));
    let notes = Notes {
        err: err_text.clone(),
        ..Notes::default()
    };
    let html_body = html! {
        p { a href=(base) { "← " (kind_label(l, kind)) } }
        table {
            tr { th { (tr(l, "编号", "No.")) } td { (e.id) } }
            tr { th { (field_label(l, kind, "time")) } td { (local_time(site, e.ts_ms)) } }
            @for (f, c) in kind.fields.iter().zip(cells(l, site, kind, &body)) {
                tr { th { (field_label(l, kind, f.name)) } td { (c) } }
            }
            tr { th { (tr(l, "录入人", "Entered by")) } td { (author_label(l, site, &e.author)) " · " (local_time(site, e.created_ms)) } }
        }
        section {
            h2 { (tr(l, "修改记录", "History")) }
            table id="history" {
                tr { th { (tr(l, "编号", "No.")) } th { (tr(l, "操作", "Change")) } th { (tr(l, "录入人", "By")) } th { (tr(l, "录入时间", "When")) } th { (tr(l, "说明", "Note")) } }
                @for x in &chain {
                    @let note: Value = serde_json::from_str(&x.body).unwrap_or(Value::Null);
                    tr {
                        td { a href={ (base) "/" (x.id) } { (x.id) } }
                        td { @if x.void { (tr(l, "作废", "voided")) } @else if x.corrects.is_some() { (tr(l, "更正", "corrected")) } @else { (tr(l, "录入", "entered")) } }
                        td { (author_label(l, site, &x.author)) }
                        td { (local_time(site, x.created_ms)) }
                        td { @if x.void { (note.get("reason").and_then(Value::as_str).unwrap_or("")) } }
                    }
                }
            }
            @if !is_current {
                p.muted { (tr(l, "这是旧版本；当前版本为 ", "This is an earlier version; the current one is no. ")) a href={ (base) "/" (current) } { (current) } }
            }
        }
        @if is_current && writes(&s.role, kind.ledger) {
            section {
                h2 { (tr(l, "更正", "Correct")) }
                (entry_form(l, site, kind, &format!("{base}/{}", e.id), &s.csrf, &values, &notes, tr(l, "保存更正", "Save the correction")))
            }
            section {
                h2 { (tr(l, "作废", "Void")) }
                form method="post" action={ (base) "/" (e.id) "/void" } {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label { (tr(l, "原因 ", "Reason ")) input type="text" name="reason" required minlength="2"; }
                    " "
                    button type="submit" { (tr(l, "作废此记录", "Void this entry")) }
                    @if let Some((f, m)) = err_text.as_ref().filter(|(f, _)| f == "reason") { " " span.err { (f) "：" (m) } }
                }
            }
        }
    };
    let title = format!("{} {}", kind_label(l, kind), e.id);
    page(status, l, shell(l, app, Some(s), &title, html_body), q)
}

/// The versions of an entry, oldest first: what it corrected, itself, and
/// what corrected it since.
fn history(all: &[meterflow_store::LedgerEvent], id: i64) -> Vec<meterflow_store::LedgerEvent> {
    let by_id: HashMap<i64, &meterflow_store::LedgerEvent> =
        all.iter().map(|e| (e.id, e)).collect();
    let mut corrected_by: HashMap<i64, &meterflow_store::LedgerEvent> = HashMap::new();
    for e in all {
        if let Some(c) = e.corrects {
            corrected_by.insert(c, e);
        }
    }
    let mut first = id;
    let mut guard = 0;
    while let Some(c) = by_id.get(&first).and_then(|e| e.corrects) {
        first = c;
        guard += 1;
        if guard > 10_000 {
            break;
        }
    }
    let mut out = Vec::new();
    let mut at = by_id.get(&first).copied();
    while let Some(e) = at {
        out.push(e.clone());
        if out.len() > 10_000 {
            break;
        }
        at = corrected_by.get(&e.id).copied();
    }
    out
}

/// `POST /ledgers/{ledger}/{kind}/{id}`: record a correction.
pub(super) async fn correct_post(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    UrlPath((ledger, path, id)): UrlPath<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    change(app, h, ledger, path, id, body, false).await
}

/// `POST /ledgers/{ledger}/{kind}/{id}/void` (`reason`): void an entry.
pub(super) async fn void_post(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    UrlPath((ledger, path, id)): UrlPath<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    change(app, h, ledger, path, id, body, true).await
}

async fn change(
    app: Arc<App>,
    h: HeaderMap,
    ledger: String,
    path: String,
    id: String,
    body: axum::body::Bytes,
    void: bool,
) -> Response {
    let form = page::form_fields(&body);
    let (l, s, kind) = match form_writer(&app, &h, &form, &ledger, &path) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let mut v = if void {
        let reason = form.get("reason").map(|r| r.trim()).unwrap_or_default();
        if reason.chars().count() < 2 {
            return render_entry(
                &app,
                l,
                &s,
                kind,
                &id,
                &HashMap::new(),
                Some((
                    "reason".into(),
                    tr(l, "作废须写明原因", "a void needs its reason").into(),
                )),
                StatusCode::BAD_REQUEST,
            );
        }
        json!({"void": true, "reason": reason})
    } else {
        form_entry(kind, &form)
    };
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| k != "csrf");
    }
    let out = ledger_routes::correct(&app, &s.role, kind, &id, &v).await;
    match out {
        Ok(new) => see_other(&format!("/ledgers/{}/{}/{new}", kind.ledger, kind.path)),
        Err(e) if e.status == StatusCode::BAD_REQUEST => render_entry(
            &app,
            l,
            &s,
            kind,
            &id,
            &HashMap::new(),
            Some((e.field.unwrap_or_default(), e.message)),
            StatusCode::BAD_REQUEST,
        ),
        Err(e) => refuse(l, &app, Some(&s), e.status, &e.message),
    }
}

// ---------------------------------------------------------------- upload

/// `POST /ledgers/{ledger}/{kind}/upload` (multipart: `csrf`, `file`):
/// every row checked, the report shown, nothing recorded; the file waits
/// in the session for the clerk's confirmation.
pub(super) async fn upload_post(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    UrlPath((ledger, path)): UrlPath<(String, String)>,
    mut mp: axum::extract::Multipart,
) -> Response {
    let mut form: HashMap<String, String> = HashMap::new();
    let mut file: Option<(String, Vec<u8>)> = None;
    loop {
        match mp.next_field().await {
            Ok(Some(f)) => {
                let name = f.name().unwrap_or_default().to_string();
                if name == "file" {
                    let fname = f.file_name().unwrap_or("upload").to_string();
                    match f.bytes().await {
                        Ok(b) => file = Some((fname, b.to_vec())),
                        Err(e) => return bad("file", e.body_text()).into_response(),
                    }
                } else if let Ok(t) = f.text().await {
                    form.insert(name, t);
                }
            }
            Ok(None) => break,
            Err(e) => return bad("body", e.body_text()).into_response(),
        }
    }
    let (l, s, kind) = match form_writer(&app, &h, &form, &ledger, &path) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some((fname, bytes)) = file.filter(|(_, b)| !b.is_empty()) else {
        return render_kind(
            &app,
            l,
            &s,
            kind,
            &HashMap::new(),
            &HashMap::new(),
            Notes {
                err: Some(("file".into(), tr(l, "请选择文件", "choose a file").into())),
                ..Notes::default()
            },
            StatusCode::BAD_REQUEST,
        );
    };
    let Some(pid) = session::random_token() else {
        return internal("no randomness").into_response();
    };
    let report = check_file(&app, &s, kind, bytes.clone()).await;
    let (good, errors, format) = match report {
        Ok(r) => r,
        Err(e) => {
            return refuse(l, &app, Some(&s), e.status, &e.message);
        }
    };
    if !good.is_empty()
        && let Some(sid) = session::cookie(&h)
        && let Some(sess) = app
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .touch(sid, Instant::now())
    {
        sess.pending = Some(Pending {
            id: pid.clone(),
            kind: (kind.ledger, kind.path),
            file: fname.clone(),
            bytes,
        });
    }
    let base = format!("/ledgers/{}/{}", kind.ledger, kind.path);
    let body = html! {
        p { a href=(base) { "← " (kind_label(l, kind)) } }
        p { (tr(l, "文件：", "File: ")) (fname) " (" (format) ")" }
        p id="summary" {
            (tr(l, "可记录行数：", "Rows that can be recorded: ")) strong { (good.len()) }
            (tr(l, "；有错误的行数：", "; rows with errors: ")) strong.err { (errors.len()) }
        }
        @if !errors.is_empty() {
            div.scroll {
                table id="report" {
                    tr { th { (tr(l, "行号", "Row")) } th { (tr(l, "字段", "Field")) } th { (tr(l, "问题", "Problem")) } }
                    @for e in &errors {
                        @let field = e["field"].as_str().unwrap_or("");
                        tr.bad data-row=(e["row"]) {
                            td { (e["row"]) }
                            td { (if field.is_empty() { String::new() } else { field_label(l, kind, field) }) }
                            td { (message(l, kind, field, e["message"].as_str().unwrap_or(""))) }
                        }
                    }
                }
            }
        }
        @if good.is_empty() {
            p.err { (tr(l, "没有可记录的行：请修改文件后重新上传。", "No row can be recorded: fix the file and upload it again.")) }
        } @else {
            p { (tr(l, "尚未记录任何内容。", "Nothing has been recorded yet.")) }
            form method="post" action={ (base) "/upload/confirm" } {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="pending" value=(pid);
                button type="submit" id="confirm" {
                    @if errors.is_empty() { (tr(l, "确认记录全部行", "Record every row")) }
                    @else { (tr(l, "仅记录无误的行", "Record only the rows without errors")) }
                }
                " "
                a href=(base) { (tr(l, "放弃", "Discard")) }
            }
        }
    };
    let title = format!(
        "{} · {}",
        kind_label(l, kind),
        tr(l, "导入检查", "upload check")
    );
    page(
        StatusCode::OK,
        l,
        shell(l, &app, Some(&s), &title, body),
        &HashMap::new(),
    )
}

type FileReport = (Vec<(usize, ledgers::Checked)>, Vec<Value>, &'static str);

/// Read and check a file on the blocking pool under the heavy-work bound.
async fn check_file(
    app: &Arc<App>,
    s: &Session,
    kind: &'static Kind,
    bytes: Vec<u8>,
) -> Result<FileReport, ApiError> {
    let _permit = heavy_permit(app).await?;
    let app2 = Arc::clone(app);
    let author = role_name(&s.role);
    tokio::task::spawn_blocking(move || -> Result<FileReport, ApiError> {
        let table = ledgers::table::read(&bytes).map_err(|e| bad("file", e))?;
        let db = ledger_db(&app2)?;
        let state = db.ledger_until(kind.ledger, i64::MAX).map_err(internal)?;
        let (good, errors) = ledger_routes::check_table(&app2.site, kind, &table, state, &author)?;
        Ok((good, errors, table.format))
    })
    .await
    .map_err(internal)?
}

/// `POST /ledgers/{ledger}/{kind}/upload/confirm` (`csrf`, `pending`): the
/// waiting file is checked again against the ledger as it is now and its
/// good rows recorded.
pub(super) async fn confirm_post(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    UrlPath((ledger, path)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let form = page::form_fields(&body);
    let (l, s, kind) = match form_writer(&app, &h, &form, &ledger, &path) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let pending = s
        .pending
        .clone()
        .filter(|p| Some(&p.id) == form.get("pending") && p.kind == (kind.ledger, kind.path));
    let Some(p) = pending else {
        return refuse(
            l,
            &app,
            Some(&s),
            StatusCode::CONFLICT,
            tr(
                l,
                "没有待确认的文件（已确认、已过期或来自其他页面）。",
                "No file is waiting (already recorded, expired, or from another page).",
            ),
        );
    };
    if let Some(sid) = session::cookie(&h)
        && let Some(sess) = app
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .touch(sid, Instant::now())
    {
        sess.pending = None;
    }
    let author = role_name(&s.role);
    let _permit = match heavy_permit(&app).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let _one = app.ledger_write.lock().await;
    let app2 = Arc::clone(&app);
    let done =
        tokio::task::spawn_blocking(move || -> Result<Vec<(i64, Value, i64, bool)>, ApiError> {
            let table = ledgers::table::read(&p.bytes).map_err(|e| bad("file", e))?;
            let mut db = ledger_db(&app2)?;
            let state = db.ledger_until(kind.ledger, i64::MAX).map_err(internal)?;
            let (good, _) = ledger_routes::check_table(&app2.site, kind, &table, state, &author)?;
            let mut changes = Vec::new();
            for (_, c) in &good {
                let id = ledger_routes::append_entry(&mut db, kind, c, None, &author)?;
                changes.push((c.ts_ms, c.body.clone(), id, false));
            }
            Ok(changes)
        })
        .await;
    drop(_one);
    match done {
        Ok(Ok(changes)) => {
            let n = changes.len();
            ledger_routes::published(&app, kind, &changes);
            see_other(&format!(
                "/ledgers/{}/{}?imported={n}",
                kind.ledger, kind.path
            ))
        }
        Ok(Err(e)) => refuse(l, &app, Some(&s), e.status, &e.message),
        Err(e) => internal(e).into_response(),
    }
}
