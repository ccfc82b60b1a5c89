//! The read API and the overview page against the real binary: an example
//! site with three days of imported data, tokens of every role from a hashed
//! tokens file, and headless Chromium (Debian's) for the page.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Proc, bin, example_site, free_port, wait_port};

pub(crate) const ADMIN: &str = "admin-token-0123456789abcdef";
pub(crate) const MANAGER: &str = "manager-token-0123456789abc";
pub(crate) const FIN: &str = "fin-agency-token-0123456789";
pub(crate) const TAX: &str = "tax-agency-token-0123456789";
pub(crate) const CLERK: &str = "waste-clerk-token-0123456789";
pub(crate) const VCLERK: &str = "vehicle-clerk-token-012345678";

pub(crate) struct Server {
    _proc: Proc,
    pub(crate) port: u16,
    site: PathBuf,
}

fn server(dir: &Path, public: bool) -> Server {
    server_with(dir, public, "")
}

pub(crate) fn server_with(dir: &Path, public: bool, extra: &str) -> Server {
    let site = example_site(dir, 50_000);
    let port = free_port();
    let mut tokens = String::from("# role sha256:hash\n");
    for (role, t) in [
        ("admin", ADMIN),
        ("manager", MANAGER),
        ("agency:fin", FIN),
        ("agency:tax", TAX),
        ("clerk:waste", CLERK),
        ("clerk:vehicles", VCLERK),
    ] {
        tokens.push_str(&format!(
            "{role} sha256:{}\n",
            meterflow_http::hash_token(t)
        ));
    }
    std::fs::write(dir.join("tokens"), tokens).expect("tokens");
    let mut text = std::fs::read_to_string(&site).expect("site");
    text.push_str(&format!("\n[api]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = \"tokens\"\npublic_overview = {public}\n{extra}"));
    std::fs::write(&site, text).expect("site");
    let s = site.to_str().expect("path").to_string();
    let from = (chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        - chrono::Duration::days(3))
    .to_string();
    let csv = dir.join("d.csv");
    let o = bin()
        .args([
            "generate",
            "--config",
            &s,
            "--from",
            &from,
            "--days",
            "3",
            "--out",
            csv.to_str().expect("p"),
        ])
        .output()
        .expect("generate");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = bin()
        .args(["import", "--config", &s, csv.to_str().expect("p")])
        .output()
        .expect("import");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let proc = Proc(
        bin()
            .args(["run", "--config", &s, "--seconds", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run"),
    );
    wait_port(port);
    Server {
        _proc: proc,
        port,
        site,
    }
}

pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

pub(crate) fn get(port: u16, path: &str, token: Option<&str>) -> (u16, Value) {
    let (status, body) = request(port, "GET", path, token, "");
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn ids(v: &Value) -> BTreeSet<String> {
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect()
}

/// Every endpoint against every role: an agency sees its own agency, the
/// meters serving it or its zones, and their alerts; anything else is 404
/// (403 for building and site figures); no or a wrong token is 401; errors
/// name the field. KPIs and consumption equal the store's.
#[test]
fn authorization_matrix_and_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = server(dir.path(), false);
    let p = srv.port;
    let year = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y")
        .to_string();

    // 401: no token, a wrong token; and the error shape.
    let (code, v) = get(p, "/api/v1/agencies", None);
    assert_eq!(code, 401);
    assert_eq!(v["error"], "unauthorized");
    assert_eq!(
        get(p, "/api/v1/agencies", Some("not-a-token-at-all-000")).0,
        401
    );

    // Lists are scoped.
    assert_eq!(ids(&get(p, "/api/v1/agencies", Some(ADMIN)).1).len(), 3);
    assert_eq!(
        ids(&get(p, "/api/v1/agencies", Some(FIN)).1),
        BTreeSet::from(["fin".to_string()])
    );
    let tax_meters = ids(&get(p, "/api/v1/meters", Some(TAX)).1);
    // tax occupies main-f3 and shares the data centre with fin; the building mains are not its own.
    assert_eq!(
        tax_meters,
        BTreeSet::from(["datacentre".to_string(), "main-f3-light".to_string()])
    );
    let all = get(p, "/api/v1/meters?limit=5&offset=2", Some(MANAGER)).1;
    assert_eq!(all["total"], 11);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        get(p, "/api/v1/meters?limit=0", Some(MANAGER)).1["field"],
        "limit"
    );
    assert_eq!(
        ids(&get(p, "/api/v1/buildings", Some(FIN)).1),
        BTreeSet::from(["main".to_string()])
    );

    // Single resources of another agency: 404, never the data.
    let window = "from=2020-01-01&to=2020-01-02";
    assert_eq!(
        get(
            p,
            &format!("/api/v1/meters/main-f2-light/consumption?{window}"),
            Some(TAX)
        )
        .0,
        404
    );
    assert_eq!(
        get(
            p,
            &format!("/api/v1/kpis?scope=agency&id=tax&year={year}"),
            Some(FIN)
        )
        .0,
        404
    );
    assert_eq!(
        get(
            p,
            &format!("/api/v1/kpis?scope=site&year={year}"),
            Some(FIN)
        )
        .0,
        403
    );
    assert_eq!(
        get(
            p,
            &format!("/api/v1/kpis?scope=building&id=main&year={year}"),
            Some(TAX)
        )
        .0,
        403
    );

    // Bad parameters name their field.
    let (code, v) = get(p, "/api/v1/kpis?scope=agency&id=fin", Some(FIN));
    assert_eq!((code, v["field"].as_str()), (400, Some("year")));
    let (code, v) = get(
        p,
        "/api/v1/meters/main-f2-light/consumption?from=yesterday&to=2020-01-01",
        Some(FIN),
    );
    assert_eq!((code, v["field"].as_str()), (400, Some("from")));
    assert_eq!(get(p, "/api/v1/nothing-here", Some(ADMIN)).0, 404);

    // Acknowledge: managers only.
    assert_eq!(
        request(
            p,
            "POST",
            "/api/v1/alerts/ack",
            Some(FIN),
            r#"{"rule":"x","target":"y"}"#
        )
        .0,
        403
    );
    assert_eq!(
        request(
            p,
            "POST",
            "/api/v1/alerts/ack",
            Some(MANAGER),
            r#"{"rule":"x","target":"y"}"#
        )
        .0,
        404
    );
    assert_eq!(
        request(p, "POST", "/api/v1/alerts/ack", Some(MANAGER), "{not json").0,
        400
    );
    // Alerts: an agency sees only targets of its own.
    let alerts = get(p, "/api/v1/alerts", Some(FIN)).1;
    let fin_visible =
        |t: &str| t == "fin" || ["main-f2-light", "main-f4-light", "datacentre"].contains(&t);
    for e in alerts["history"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(alerts["firing"].as_array().into_iter().flatten())
    {
        let t = e["target"].as_str().unwrap_or_default();
        assert!(fin_visible(t), "fin sees an alert of {t}");
    }

    // Figures equal the library's on the same store.
    let site = meterflow_model::Site::load(&srv.site).expect("site");
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let period = meterflow_kpi::period_of(year.parse().expect("year"), None).expect("period");
    let k = meterflow_kpi::agency_kpis(&site, &reader, "fin", period).expect("kpis");
    let (code, v) = get(
        p,
        &format!("/api/v1/kpis?scope=agency&id=fin&year={year}"),
        Some(FIN),
    );
    assert_eq!(code, 200, "{v}");
    // Equal up to float summation order (the KPI code sums over hash maps, whose
    // order differs between processes): 1e-12 relative.
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * b.abs().max(1.0),
        _ => false,
    };
    assert!(
        close(v["per_capita_kgce"].as_f64(), k.per_capita_energy),
        "{v}"
    );
    assert!(close(v["energy_kgce"].as_f64(), Some(k.energy_kgce)), "{v}");
    assert!(
        close(
            v["electricity_kwh"].as_f64(),
            Some(k.carriers.electricity_kwh)
        ),
        "{v}"
    );
    let from = (chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        - chrono::Duration::days(3))
    .to_string();
    let to = (chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        + chrono::Duration::days(1))
    .to_string();
    let (code, v) = get(
        p,
        &format!("/api/v1/meters/main-f2-light/consumption?from={from}&to={to}"),
        Some(FIN),
    );
    assert_eq!(code, 200, "{v}");
    let got: f64 = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["value"].as_f64())
        .sum();
    let series = reader
        .series_id("main-f2-light", "energy_import")
        .expect("q")
        .expect("series");
    let want: f64 = reader
        .intervals(series, 0, i64::MAX)
        .expect("rows")
        .iter()
        .map(|r| meterflow_core::from_micro(r.micro))
        .sum();
    assert!(got > 0.0 && (got - want).abs() < 1e-6, "{got} vs {want}");
    assert!(
        v["items"][0]["start"]
            .as_str()
            .is_some_and(|s| s.contains("+08:00")),
        "RFC 3339 in the site zone: {v}"
    );

    // Health and metrics.
    assert_eq!(request(p, "GET", "/healthz", None, "").0, 200);
    assert_eq!(request(p, "GET", "/readyz", None, "").0, 200);
    let (code, m) = request(p, "GET", "/metrics", None, "");
    assert!(
        code == 200
            && m.contains("meterflow_readings_stored_total")
            && m.contains("meterflow_alerts_firing"),
        "{m}"
    );
    // Overview without a session or token: to the sign-in page
    // (public_overview = false); a token in the address is not taken; an
    // agency's bearer token: 403; a manager's: the page.
    let (code, head, _) = raw(p, "GET", "/", &[], "");
    assert_eq!(code, 303);
    assert!(
        head.to_ascii_lowercase()
            .contains("location: /login?next=/"),
        "{head}"
    );
    assert_eq!(raw(p, "GET", &format!("/?token={MANAGER}"), &[], "").0, 303);
    assert_eq!(request(p, "GET", "/", Some(FIN), "").0, 403);
    assert_eq!(request(p, "GET", "/", Some(MANAGER), "").0, 200);

    // The OpenAPI document lists every route, and each answers for an admin.
    let (code, doc) = get(p, "/api/v1/openapi.json", None);
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    let ops: usize = paths
        .values()
        .filter_map(|o| o.as_object())
        .map(|o| o.len())
        .sum();
    assert_eq!(ops, meterflow_http::routes().len());
    let (mut entries, mut imports) = (Vec::new(), Vec::new());
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("ops") {
            let mut url = path.replace("{id}", "main-f2-light");
            let required: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|q| q["in"] == "query" && q["required"] == true)
                .filter_map(|q| q["name"].as_str())
                .collect();
            if !required.is_empty() {
                let q: Vec<String> = required
                    .iter()
                    .map(|n| match *n {
                        "from" => format!("from={from}"),
                        "to" => format!("to={to}"),
                        "scope" => "scope=site".to_string(),
                        "year" => format!("year={year}"),
                        other => format!("{other}=x"),
                    })
                    .collect();
                url = format!("{url}?{}", q.join("&"));
            }
            if url.contains("/reconciliation") {
                // One of room and agency is required (OpenAPI cannot say "one of").
                url.push_str("&agency=fin");
            }
            if method == "post" && path.contains("/ledgers/") && !path.ends_with("/correction") {
                if path.ends_with("/import") {
                    imports.push(url);
                } else {
                    entries.push(url);
                }
                continue;
            }
            let body = if method == "post" {
                r#"{"rule":"none","target":"none"}"#.to_string()
            } else {
                String::new()
            };
            let (code, text) = request(p, &method.to_uppercase(), &url, Some(ADMIN), &body);
            // The ack of a non-firing alert is a 404 about the alert, not about the route.
            // A correction of an entry that does not exist is a 404 about the entry.
            let ok = code == 200
                || (method == "post"
                    && code == 404
                    && (text.contains("no firing alert") || text.contains("\"message\":\"no ")));
            assert!(ok, "{method} {url}: {code} {text}");
        }
    }
    // Every kind of ledger entry records an example (in passes: a trip needs
    // its vehicle first), and every import takes a header-only CSV.
    let mut left = entries;
    while !left.is_empty() {
        let before = left.len();
        let mut failed = Vec::new();
        for url in left {
            let body = crate::ledgers::example_entry(&url, &year)
                .unwrap_or_else(|| panic!("no example entry for {url}"));
            let (code, text) = request(p, "POST", &url, Some(ADMIN), &body);
            if code != 201 {
                failed.push((url, code, text));
            }
        }
        assert!(failed.len() < before, "entries refused: {failed:?}");
        left = failed.into_iter().map(|f| f.0).collect();
    }
    for url in imports {
        let (code, text) = request(p, "POST", &url, Some(ADMIN), "time\n");
        assert!(
            code == 400 && text.contains("is required"),
            "{url}: {code} {text}"
        );
    }
}

/// The overview page in headless Chromium: it loads without a script or CDN,
/// shows the site's agencies and a chart with data; a screenshot is kept.
#[test]
fn overview_page_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = server(dir.path(), true);
    let url = format!("http://127.0.0.1:{}/", srv.port);
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium (apt-get install chromium; see .ci/run)");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let profile = dir.path().join("chromium-profile");
    let run = |extra: &[String]| {
        let o = std::process::Command::new(chromium)
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, dom, err) = run(&["--dump-dom".to_string()]);
    assert!(ok, "{err}");
    // In Chinese by default: every carrier with data, CO₂, coverage so far,
    // the agencies by name, the alerts; refreshed every minute.
    for name in [
        "lang=\"zh-CN\"",
        "市财政局",
        "市税务局",
        "市统计局",
        "id=\"chart-electricity\"",
        "当前告警",
        "电 (kWh)",
        "水 (m³)",
        "本年碳排放",
        "本月至今数据覆盖率",
        "http-equiv=\"refresh\"",
    ] {
        assert!(dom.contains(name), "{name} missing from the page:\n{dom}");
    }
    // One bar per imported day (three days), each with its date and value.
    let bars = dom.matches("class=\"bar\"").count();
    assert!(bars >= 3, "the chart has the imported days: {bars} bars");
    // Each carrier's bars are the store's daily figures for the site, and
    // their heights are in proportion (the plot is 200 units high; the
    // largest bar fills it).
    let store = meterflow_store::Reader::open(&srv.site.with_file_name("store.db")).expect("store");
    let tz = chrono_tz::Asia::Shanghai;
    let mut carriers_checked = 0;
    for class in [
        meterflow_model::EnergyClass::Electricity,
        meterflow_model::EnergyClass::Water,
    ] {
        let Some(svg) = dom
            .split(&format!("id=\"chart-{}\"", class.as_str()))
            .nth(1)
            .and_then(|r| r.split("</svg>").next())
        else {
            panic!("no chart for {class:?}");
        };
        let drawn = chart_bars(svg);
        let rows = store
            .agg(
                meterflow_core::aggregate::Level::Site,
                "site",
                class,
                "",
                meterflow_core::aggregate::Grain::Day,
                0,
                i64::MAX,
            )
            .expect("agg");
        let max = drawn.iter().map(|b| b.1).fold(0.0f64, f64::max);
        for (day, value, height) in &drawn {
            let start = meterflow_core::time::day_start(
                chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").expect("date"),
                tz,
            );
            let row = rows
                .iter()
                .find(|r| r.start_ms == start)
                .expect("a stored day");
            // Live data may land between the page and this read: the
            // imported days are closed, today may have grown a little.
            assert!(
                (row.value - value).abs() <= 1e-9 * row.value.abs().max(1.0)
                    || (*day
                        == chrono::Utc::now()
                            .with_timezone(&tz)
                            .date_naive()
                            .to_string()
                        && row.value >= *value),
                "{class:?} {day}: page {value}, store {}",
                row.value
            );
            assert!(
                (height - 200.0 * value / max).abs() < 0.01,
                "{class:?} {day}: height {height} for {value} of {max}"
            );
        }
        assert!(drawn.len() >= 3, "{class:?}: {drawn:?}");
        carriers_checked += 1;
    }
    assert_eq!(carriers_checked, 2);
    // English on request.
    let (code, en) = request(srv.port, "GET", "/?lang=en", None, "");
    assert_eq!(code, 200);
    assert!(
        en.contains("Active alerts")
            && en.contains("lang=\"en\"")
            && en.contains("Electricity (kWh)"),
        "{en}"
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("overview.png");
    let (ok, _, err) = run(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,1000".to_string(),
    ]);
    assert!(ok, "{err}");
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot at {}",
        shot.display()
    );
    eprintln!("overview screenshot: {}", shot.display());

    // A manager signed in on the page acknowledges an alert from it: a form
    // per firing alert carrying the session's CSRF token, POST /ack, back
    // to the page.
    let firing = || {
        let (_, v) = get(srv.port, "/api/v1/alerts", Some(MANAGER));
        v["firing"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["acknowledged"] == false).cloned())
    };
    let t = std::time::Instant::now();
    let alert = loop {
        if let Some(a) = firing() {
            break a;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "an alert fires on the imported days"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let (rule, target) = (
        alert["rule"].as_str().expect("rule").to_string(),
        alert["target"].as_str().expect("target").to_string(),
    );
    let (_, public) = request(srv.port, "GET", "/", None, "");
    assert!(
        !public.contains("action=\"/ack\""),
        "no button without a session"
    );
    let manager = sign_in(srv.port, MANAGER);
    let cookie = format!("mf_session={manager}");
    let (_, _, page) = raw(srv.port, "GET", "/", &[("Cookie", &cookie)], "");
    assert!(
        page.contains("action=\"/ack\"")
            && page.contains(&format!("name=\"rule\" value=\"{rule}\"")),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let fin = format!("mf_session={}", sign_in(srv.port, FIN));
    let ack = |cookie: &str, extra: &str| {
        let headers: Vec<(&str, &str)> = if cookie.is_empty() {
            vec![]
        } else {
            vec![("Cookie", cookie)]
        };
        raw(
            srv.port,
            "POST",
            "/ack",
            &headers,
            &format!("rule={rule}&target={target}{extra}"),
        )
        .0
    };
    assert_eq!(ack("", ""), 401, "nobody without a session or token");
    assert_eq!(ack(&cookie, ""), 403, "a form without the CSRF token");
    assert_eq!(ack(&cookie, "&csrf=forged"), 403, "a forged CSRF token");
    let fin_csrf = csrf_of(&raw(srv.port, "GET", "/ledgers", &[("Cookie", &fin)], "").2);
    assert_eq!(
        ack(&fin, &format!("&csrf={fin_csrf}")),
        403,
        "an agency cannot"
    );
    assert_eq!(ack(&cookie, &format!("&csrf={csrf}&lang=zh")), 303);
    let (_, v) = get(srv.port, "/api/v1/alerts", Some(MANAGER));
    let acked = v["firing"].as_array().into_iter().flatten().any(|f| {
        f["rule"] == rule.as_str() && f["target"] == target.as_str() && f["acknowledged"] == true
    });
    assert!(acked, "{v}");
    let (_, _, page) = raw(srv.port, "GET", "/", &[("Cookie", &cookie)], "");
    assert!(page.contains("（已确认）"), "{page}");
}

/// The bars of a chart's SVG: (period, value, height).
fn chart_bars(svg: &str) -> Vec<(String, f64, f64)> {
    svg.split("<rect class=\"bar\" ")
        .skip(1)
        .filter_map(|r| {
            let attr = |name: &str| {
                r.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .map(str::to_string)
            };
            Some((
                attr("data-key")?,
                attr("data-value")?.parse().ok()?,
                attr("height")?.parse().ok()?,
            ))
        })
        .collect()
}

/// A request with extra headers (a cookie, a form's content type): status,
/// response head and body.
pub(crate) fn raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    raw_bytes(port, method, path, headers, body.as_bytes())
}

/// [`raw`] with a body of bytes (a multipart upload).
pub(crate) fn raw_bytes(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_string(), body.to_string())
}

/// Sign in on the page with `token`: the session cookie's value.
pub(crate) fn sign_in(port: u16, token: &str) -> String {
    let (code, head, body) = raw(port, "POST", "/login", &[], &format!("token={token}"));
    assert_eq!(code, 303, "{head}{body}");
    let cookie = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: mf_session=")
        })
        .and_then(|l| l.split_once('='))
        .map(|(_, v)| v)
        .expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().expect("value").to_string()
}

/// The CSRF token in a page's forms.
pub(crate) fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a form with the CSRF token")
        .to_string()
}

/// A property-based run of schemathesis (PyPI) against the live server and
/// its OpenAPI document: generated and mutated requests for every operation
/// get no 5xx, only documented status codes and content types, and responses
/// that match the document. (`positive_data_acceptance` is left out: a
/// schema-valid `from`/`to` pair can still be refused for `to` ≤ `from`,
/// which OpenAPI cannot express.)
#[test]
fn schemathesis_finds_no_contract_violation() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A fuzzer fails authentication on purpose: no 429 for its address here.
    let srv = server_with(dir.path(), false, "max_auth_failures = 1000000\n");
    let url = format!("http://127.0.0.1:{}/api/v1/openapi.json", srv.port);
    let o = std::process::Command::new("python3")
        .args([
            "-m",
            "schemathesis.cli",
            "run",
            &url,
            "-H",
            &format!("Authorization: Bearer {ADMIN}"),
            "--max-examples",
            "25",
            "--exclude-checks",
            "positive_data_acceptance",
            "--seed",
            "20261201",
            "--no-color",
        ])
        // schemathesis keeps a crash cache in the working directory: not in the tree.
        .current_dir(dir.path())
        .output()
        .expect("python3 -m schemathesis.cli (pip install schemathesis; see .ci/run)");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("passed"), "{out}");
}

/// The waste ledger (docs/methodology.md §10) through the API: weigh-ins entered by a
/// clerk, one voided, one corrected (nothing changes in place), and the
/// year's summary against numbers computed by hand.
#[test]
fn waste_ledger_summary_matches_the_hand_computation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = server_with(
        dir.path(),
        false,
        "\n[waste]\nprice_per_kg = { recyclable = 1.0, kitchen = 0.2 }\npoint_value_cny = 0.1\n",
    );
    let p = srv.port;
    let year = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y")
        .to_string();
    let post = |path: &str, token: &str, body: &str| -> (u16, Value) {
        let (code, text) = request(p, "POST", path, Some(token), body);
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    };
    let weigh = |agency: &str, category: &str, kg: f64, destination: &str| {
        format!(
            r#"{{"time": "{year}-06-01 10:00", "agency": "{agency}", "point": "F2 east", "category": "{category}", "kg": {kg}, "destination": "{destination}", "receipt": "R-1"}}"#
        )
    };
    let path = "/api/v1/ledgers/waste/weigh-ins";
    let mut ids = Vec::new();
    for (a, c, kg, d) in [
        ("fin", "recyclable", 10.0, "recycling"),
        ("fin", "kitchen", 20.0, "composting"),
        ("fin", "kitchen", 5.0, "incineration"),
        ("fin", "residual", 15.0, "landfill"),
        ("fin", "hazardous", 1.0, "hazardous_treatment"),
        ("fin", "recyclable", 100.0, "recycling"), // a typo, voided below
        ("stat", "recyclable", 2.0, "recycling"),
    ] {
        let (code, v) = post(path, CLERK, &weigh(a, c, kg, d));
        assert_eq!(code, 201, "{v}");
        ids.push(v["id"].as_i64().expect("id"));
    }
    // Only writers write; bad fields are named.
    assert_eq!(
        post(path, FIN, &weigh("fin", "recyclable", 1.0, "recycling")).0,
        403
    );
    assert_eq!(
        post(path, CLERK, &weigh("fin", "paper", 1.0, "recycling")).1["field"],
        "category"
    );
    assert_eq!(
        post(path, CLERK, &weigh("fin", "residual", -3.0, "landfill")).1["field"],
        "kg"
    );
    assert_eq!(
        post(path, CLERK, &weigh("nobody", "residual", 3.0, "landfill")).1["field"],
        "agency"
    );
    // Void the typo; correct the residual 15 kg to 25 kg; a second correction of the same entry conflicts.
    let (code, _) = post(
        &format!("{path}/{}/correction", ids[5]),
        CLERK,
        r#"{"void": true, "reason": "typo: 10 kg"}"#,
    );
    assert_eq!(code, 201);
    let (code, v) = post(
        &format!("{path}/{}/correction", ids[3]),
        MANAGER,
        &weigh("fin", "residual", 25.0, "landfill"),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["corrects"], ids[3]);
    assert_eq!(
        post(
            &format!("{path}/{}/correction", ids[3]),
            MANAGER,
            &weigh("fin", "residual", 26.0, "landfill")
        )
        .0,
        409
    );

    // fin, by hand: recyclable 10, kitchen 20 + 5 = 25, hazardous 1, residual 25 (corrected) = 61 kg;
    // recovered = 10 (recycled) + 20 (composted) = 30 kg, so 30 / 61 x 100 = 49.18 % (>= 35 %);
    // points = (10 x 1.0 + 25 x 0.2) CNY / 0.1 = 150; 5 records in effect.
    let (code, v) = get(
        p,
        &format!("/api/v1/ledgers/waste/summary?year={year}"),
        Some(MANAGER),
    );
    assert_eq!(code, 200, "{v}");
    let of = |a: &str| {
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["agency"] == a)
            .cloned()
            .expect("agency row")
    };
    let fin = of("fin");
    assert_eq!(fin["total_kg"].as_f64(), Some(61.0));
    assert_eq!(fin["kg_by_category"]["kitchen"].as_f64(), Some(25.0));
    assert_eq!(fin["kg_by_category"]["residual"].as_f64(), Some(25.0));
    assert_eq!(fin["recovered_kg"].as_f64(), Some(30.0));
    let rate = fin["recovery_rate_pct"].as_f64().unwrap_or(0.0);
    assert!((rate - 30.0 / 61.0 * 100.0).abs() < 1e-9, "{fin}");
    assert_eq!(fin["meets_target"], true);
    assert_eq!(fin["points"].as_f64(), Some(150.0));
    assert_eq!(fin["records"], 5);
    assert_eq!(fin["veto"], false);
    // stat: 2 kg recycled = 100 %, 2 x 1.0 / 0.1 = 20 points. tax: no record, so the one-vote veto.
    let stat = of("stat");
    assert_eq!(
        (stat["recovery_rate_pct"].as_f64(), stat["points"].as_f64()),
        (Some(100.0), Some(20.0))
    );
    let tax = of("tax");
    assert_eq!(
        (tax["veto"].as_bool(), tax["records"].as_i64()),
        (Some(true), Some(0))
    );
    assert!(tax["recovery_rate_pct"].is_null());
    // Scoping: an agency sees only its own rows and summary.
    let (_, v) = get(
        p,
        &format!("/api/v1/ledgers/waste/summary?year={year}"),
        Some(TAX),
    );
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
    let next = year.parse::<i32>().expect("year") + 1;
    let (_, v) = get(
        p,
        &format!("{path}?from={year}-01-01&to={next}-01-01"),
        Some(FIN),
    );
    assert_eq!(v["total"], 5, "fin's weigh-ins in effect: {v}");
    assert!(
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|i| i["agency"] == "fin")
    );
    let (_, v) = get(
        p,
        &format!("{path}?from={year}-01-01&to={next}-01-01"),
        Some(TAX),
    );
    assert_eq!(v["total"], 0);

    // A CSV as a clerk writes it (last year, so this year's figures stand):
    // Chinese dates, categories and destinations, a weight in quotes.
    let prev = year.parse::<i32>().expect("year") - 1;
    let csv = format!(
        "time,agency,point,category,kg,destination\n{prev}年3月1日,stat,东门,厨余垃圾,\"2.0\",堆肥\n{prev}/3/2 9:30,stat,东门,可回收物,3.5,回收利用\n"
    );
    let (code, v) = post(&format!("{path}/import"), CLERK, &csv);
    assert_eq!((code, v["accepted"].as_i64()), (200, Some(2)), "{v}");
    // stat last year: kitchen 2 + recyclable 3.5 = 5.5 kg, all recovered.
    let (_, v) = get(
        p,
        &format!("/api/v1/ledgers/waste/summary?year={prev}"),
        Some(MANAGER),
    );
    let stat = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["agency"] == "stat")
        .cloned()
        .expect("stat");
    assert_eq!(
        stat["kg_by_category"]["kitchen"].as_f64(),
        Some(2.0),
        "{stat}"
    );
    assert_eq!(stat["total_kg"].as_f64(), Some(5.5));
    assert_eq!(stat["recovery_rate_pct"].as_f64(), Some(100.0));
}
