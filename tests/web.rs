//! The pages in a real browser: headless Chromium (Debian) driven by
//! Selenium (PyPI) through Debian's chromedriver, against `meterflow run`
//! on loopback (`tests/browser/clerk.py` clicks and types; this test checks
//! what it saw against the store through the API), and the pages' access
//! rules over plain HTTP.

use std::path::PathBuf;

use serde_json::Value;

use crate::api::{
    ADMIN, CLERK, FIN, TAX, VCLERK, csrf_of, get, raw, raw_bytes, request, server_with, sign_in,
};
use crate::support::repo;

/// Where the screenshots are kept: `METERFLOW_ARTIFACTS` (CI sets it), else
/// the test target's scratch folder.
fn shots_dir() -> PathBuf {
    let base = std::env::var_os("METERFLOW_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let d = base.join("screens");
    std::fs::create_dir_all(&d).expect("screens dir");
    d
}

/// A weigh-in of the tax bureau, entered over the API by the waste clerk: its id.
fn tax_weigh_in(port: u16) -> i64 {
    let (code, body) = request(
        port,
        "POST",
        "/api/v1/ledgers/waste/weigh-ins",
        Some(CLERK),
        r#"{"time":"2026-11-02 10:00","agency":"tax","point":"南门","category":"recyclable","kg":7,"destination":"recycling"}"#,
    );
    assert_eq!(code, 201, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["id"].as_i64().expect("id")
}

#[test]
fn clerks_record_in_the_browser_and_agencies_see_only_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = server_with(dir.path(), false, "");
    let p = srv.port;
    // Another agency's weigh-in, entered over the API.
    let tax_entry = format!("/ledgers/waste/weigh-ins/{}", tax_weigh_in(p));

    let shots = shots_dir();
    let o = std::process::Command::new("python3")
        .arg(repo().join("tests/browser/clerk.py"))
        .args([
            &format!("http://127.0.0.1:{p}"),
            shots.to_str().expect("path"),
            VCLERK,
            CLERK,
            FIN,
            &tax_entry,
            crate::api::MANAGER,
        ])
        .output()
        .expect("python3 tests/browser/clerk.py (pip install selenium; apt chromium-driver)");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let seen: Value = serde_json::from_str(out.trim().lines().last().unwrap_or("")).expect("json");
    eprintln!("screenshots in {}", shots.display());

    // No English label left on a Chinese page.
    assert_eq!(seen["untranslated"], serde_json::json!([]), "{seen}");
    // Every page at both sizes, real pictures.
    let files = seen["shots"].as_array().expect("shots");
    assert!(files.len() >= 34, "{seen}");
    assert!(seen["assessment_rows"].as_u64().unwrap_or(0) >= 4, "{seen}");
    for f in files {
        let png = std::fs::read(f.as_str().expect("path")).expect("screenshot");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{f}");
    }

    // What the browser recorded is in the store and in the agency's figures.
    // The trips: 1 042 − 1 000 = 42 km, and the confirmed one from 1 030 to
    // 1 050 = 20 km (its start below the 1 042 read before stays an anomaly):
    // 62 km for the finance bureau's car.
    let (_, fleet) = get(p, "/api/v1/ledgers/vehicles/summary?year=2026", Some(FIN));
    let car = fleet["vehicles"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["plate"] == "京A·12345"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(car["km"], 62.0, "{fleet}");
    assert_eq!(car["trips"], 2, "the refused trip is not there: {fleet}");
    assert_eq!(car["anomalies"][0]["kind"], "went_back", "{fleet}");
    // Waste: the form's 2.0 kg kitchen waste and the upload's three good rows
    // (3.5 recyclable + 4.25 residual + 6 kitchen): 2.0 + 3.5 + 4.25 + 6 = 15.75 kg.
    let (_, waste) = get(p, "/api/v1/ledgers/waste/summary?year=2026", Some(FIN));
    let fin = waste["items"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["agency"] == "fin"))
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        (fin["total_kg"].as_f64().unwrap_or(0.0) - 15.75).abs() < 1e-9,
        "{waste}"
    );
    assert!(
        (fin["kg_by_category"]["kitchen"].as_f64().unwrap_or(0.0) - 8.0).abs() < 1e-9,
        "{waste}"
    );
    assert_eq!(seen["report"].as_object().map(|o| o.len()), Some(2));
}

#[test]
fn pages_refuse_what_a_role_may_not_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = server_with(dir.path(), false, "");
    let p = srv.port;
    let tax_id = tax_weigh_in(p);
    let cookie = |t: &str| format!("mf_session={}", sign_in(p, t));
    let fin = cookie(FIN);
    let tax = cookie(TAX);
    let waste = cookie(CLERK);
    // Without a session: to the sign-in page, with the way back.
    let (code, head, _) = raw(p, "GET", "/ledgers/waste/weigh-ins", &[], "");
    assert_eq!(code, 303);
    assert!(
        head.to_ascii_lowercase()
            .contains("location: /login?next=%2fledgers%2fwaste%2fweigh-ins")
            || head.contains("/login?next=%2Fledgers%2Fwaste%2Fweigh-ins"),
        "{head}"
    );
    // A bad token: 401 and the sign-in page again; no cookie.
    let (code, head, body) = raw(p, "POST", "/login", &[], "token=not-a-token-at-all-000");
    assert_eq!(code, 401);
    assert!(
        body.contains("令牌无效") && !head.contains("mf_session="),
        "{body}"
    );
    // The address of the sign-in's way back is only ever a path here.
    let (code, head, _) = raw(
        p,
        "POST",
        "/login",
        &[],
        &format!("token={FIN}&next=%2F%2Fevil.example%2F"),
    );
    assert_eq!(code, 303);
    assert!(
        head.contains("location: /ledgers") || head.contains("Location: /ledgers"),
        "{head}"
    );

    // An agency: its own entry yes, another agency's no (by URL), no writes.
    let path = format!("/ledgers/waste/weigh-ins/{tax_id}");
    assert_eq!(raw(p, "GET", &path, &[("Cookie", &tax)], "").0, 200);
    assert_eq!(raw(p, "GET", &path, &[("Cookie", &fin)], "").0, 403);
    let (_, _, list) = raw(
        p,
        "GET",
        "/ledgers/waste/weigh-ins",
        &[("Cookie", &fin)],
        "",
    );
    assert!(!list.contains(&format!("data-id=\"{tax_id}\"")), "{list}");
    let fin_csrf = csrf_of(&list);
    let form = format!(
        "csrf={fin_csrf}&time=2026-11-03&agency=fin&point=P&category=kitchen&kg=1&destination=composting"
    );
    assert_eq!(
        raw(
            p,
            "POST",
            "/ledgers/waste/weigh-ins",
            &[("Cookie", &fin)],
            &form
        )
        .0,
        403,
        "an agency records nothing"
    );
    assert_eq!(
        raw(
            p,
            "POST",
            &format!("{path}/void"),
            &[("Cookie", &fin)],
            &format!("csrf={fin_csrf}&reason=wrong")
        )
        .0,
        403
    );
    // Drill-down: its own agency page yes, another's no; no building page
    // (it shows other agencies); another agency's meter no.
    assert_eq!(
        raw(p, "GET", "/agencies/fin", &[("Cookie", &fin)], "").0,
        200
    );
    assert_eq!(
        raw(p, "GET", "/agencies/tax", &[("Cookie", &fin)], "").0,
        403
    );
    let (_, meters) = get(p, "/api/v1/meters", Some(TAX));
    let (_, mine) = get(p, "/api/v1/meters", Some(FIN));
    let tax_only = meters["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .find(|id| {
            !mine["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["id"] == *id)
        })
        .expect("a meter of the tax bureau only")
        .to_string();
    assert_eq!(
        raw(
            p,
            "GET",
            &format!("/meters/{tax_only}"),
            &[("Cookie", &fin)],
            ""
        )
        .0,
        403
    );
    assert_eq!(
        raw(
            p,
            "GET",
            &format!("/meters/{tax_only}"),
            &[("Cookie", &tax)],
            ""
        )
        .0,
        200
    );
    let (_, site) = get(p, "/api/v1/buildings", Some(ADMIN));
    let building = site["items"][0]["id"]
        .as_str()
        .expect("a building")
        .to_string();
    assert_eq!(
        raw(
            p,
            "GET",
            &format!("/buildings/{building}"),
            &[("Cookie", &fin)],
            ""
        )
        .0,
        403
    );
    // The assessment download for an agency is its own agency's workbook.
    let (code, head, _) = raw(
        p,
        "GET",
        "/assessment/download?year=2026&format=csv",
        &[("Cookie", &fin)],
        "",
    );
    assert_eq!(code, 200, "{head}");
    // The waste clerk: the vehicles ledger is not theirs.
    assert_eq!(
        raw(
            p,
            "GET",
            "/ledgers/vehicles/trips",
            &[("Cookie", &waste)],
            ""
        )
        .0,
        403
    );
    // A void needs its reason and the CSRF token; then the entry is gone
    // from the list and its history shows the void with the reason.
    let (_, _, page) = raw(p, "GET", &path, &[("Cookie", &waste)], "");
    let csrf = csrf_of(&page);
    assert_eq!(
        raw(
            p,
            "POST",
            &format!("{path}/void"),
            &[("Cookie", &waste)],
            "reason=dup"
        )
        .0,
        403,
        "no CSRF token"
    );
    assert_eq!(
        raw(
            p,
            "POST",
            &format!("{path}/void"),
            &[("Cookie", &waste)],
            &format!("csrf={csrf}&reason=")
        )
        .0,
        400,
        "no reason"
    );
    let (code, head, _) = raw(
        p,
        "POST",
        &format!("{path}/void"),
        &[("Cookie", &waste)],
        &format!("csrf={csrf}&reason=%E9%87%8D%E5%A4%8D%E5%BD%95%E5%85%A5"),
    );
    assert_eq!(code, 303, "{head}");
    let (_, v) = get(p, "/api/v1/ledgers/waste/weigh-ins", Some(ADMIN));
    assert_eq!(v["total"], 0, "voided: {v}");
    let (_, _, hist) = raw(p, "GET", &path, &[("Cookie", &waste)], "");
    assert!(hist.contains("作废") && hist.contains("重复录入"), "{hist}");

    // Signed out: the cookie no longer opens anything.
    let (_, _, page) = raw(p, "GET", "/ledgers", &[("Cookie", &waste)], "");
    let csrf = csrf_of(&page);
    assert_eq!(
        raw(
            p,
            "POST",
            "/logout",
            &[("Cookie", &waste)],
            &format!("csrf={csrf}")
        )
        .0,
        303
    );
    assert_eq!(raw(p, "GET", "/ledgers", &[("Cookie", &waste)], "").0, 303);

    // An upload of a file that is no table: a clear refusal, not a 500.
    let manager = cookie(crate::api::MANAGER);
    let (_, _, page) = raw(
        p,
        "GET",
        "/ledgers/waste/weigh-ins",
        &[("Cookie", &manager)],
        "",
    );
    let csrf = csrf_of(&page);
    let boundary = "XyZ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.xlsx\"\r\nContent-Type: application/octet-stream\r\n\r\nPK\x03\x04broken\r\n--{boundary}--\r\n"
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (code, _, text) = raw_bytes(
        p,
        "POST",
        "/ledgers/waste/weigh-ins/upload",
        &[("Cookie", &manager), ("Content-Type", &ct)],
        body.as_bytes(),
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("xlsx"), "{text}");
}
