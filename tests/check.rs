//! `meterflow check`.

use crate::support::{repo, run, text};

#[test]
fn example_site_is_valid() {
    let path = repo().join("examples/shared-office/site.toml");
    let o = run(&["check", "--config", &path.to_string_lossy()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("11 meters (electricity 8, gas 1, heat 1, water 1)"),
        "{out}"
    );
    assert!(out.contains("3 agencies"), "{out}");
}

/// Five deliberate mistakes, each on a line the test finds by its marker.
#[test]
fn five_mistakes_are_all_reported_with_their_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src =
        std::fs::read_to_string(repo().join("examples/shared-office/site.toml")).expect("example");
    let mistakes = [
        // 1. a bad time zone
        (
            "timezone = \"Asia/Shanghai\"",
            "timezone = \"Asia/Shangai\"",
            "site.timezone",
        ),
        // 2. a negative area
        (
            "floor = 3\narea_m2 = 3000",
            "floor = 3\narea_m2 = -3000",
            "zone[1].area_m2",
        ),
        // 3. an unknown key (typo)
        ("multiplier = 80", "multplier = 80", "meter[0].multplier"),
        // 4. a dangling parent reference
        (
            "parent = \"main-incomer\"\nsubitem = \"B1\"",
            "parent = \"main-incommer\"\nsubitem = \"B1\"",
            "meter[4].parent",
        ),
        // 5. a duplicate meter id
        ("id = \"main-lifts\"", "id = \"main-hvac\"", "meter[5].id"),
    ];
    let mut text_ = src.clone();
    for (from, to, _) in &mistakes {
        assert_eq!(
            text_.matches(from).count(),
            1,
            "marker `{from}` must occur once in the example"
        );
        text_ = text_.replacen(from, to, 1);
    }
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, &text_).expect("write");
    let o = run(&["check", "--config", &path.to_string_lossy()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    // Expected line of each mistake: the line holding its replacement text
    // (for multi-line markers, the line holding the changed key).
    let line_of = |needle: &str| {
        text_
            .lines()
            .position(|l| l.trim_start().starts_with(needle))
            .map(|i| i + 1)
            .expect("needle")
    };
    let expected = [
        (line_of("timezone = \"Asia/Shangai\""), "site.timezone"),
        (line_of("area_m2 = -3000"), "zone[1].area_m2"),
        (line_of("multplier = 80"), "meter[0].multplier"),
        (line_of("parent = \"main-incommer\""), "meter[4].parent"),
        // The duplicate is the second `id = "main-hvac"`.
        (
            text_
                .lines()
                .enumerate()
                .filter(|(_, l)| *l == "id = \"main-hvac\"")
                .nth(1)
                .map(|(i, _)| i + 1)
                .expect("duplicate"),
            "meter[5].id",
        ),
    ];
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(&*path.to_string_lossy()))
        .collect();
    assert_eq!(errors.len(), 5, "{err}");
    for (line, key) in expected {
        let want = format!("{}:{line}:", path.display());
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&want) && e.contains(&format!(": {key}: "))),
            "missing {key} at line {line} in:\n{err}"
        );
    }
    assert!(err.contains("5 errors in"), "{err}");
    assert!(err.contains("did you mean `main-incomer`"), "{err}");
}

/// The production site file shipped in deploy/ is valid and configures the sink.
#[test]
fn the_production_site_file_is_valid() {
    let path = repo().join("deploy/site.production.toml");
    // With the secrets it names in the environment, as the deployment sets them.
    let o = crate::support::bin()
        .args(["check", "--config", path.to_str().expect("path")])
        .env("INFLUX_WRITE_PASSWORD", "w")
        .env("MQTT_PASSWORD", "p")
        .env("PUSH_TOKEN", "0123456789abcdef")
        .env("API_TOKENS", "manager=0123456789abcdef")
        .output()
        .expect("check");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let site = meterflow_model::Site::load(&path).expect("valid");
    let influx = site.influx.expect("[influx]");
    // A write-only user, not the admin token.
    assert_eq!(influx.api, meterflow_model::config::InfluxApi::V1);
    assert_eq!(influx.username.as_deref(), Some("meterflow"));
    assert_eq!(
        influx.password_env.as_deref(),
        Some("INFLUX_WRITE_PASSWORD")
    );
    assert_eq!(influx.token_env, None);
    assert_eq!(influx.when_full, meterflow_model::config::OutboxFull::Block);
    let api = site.api.expect("[api]: pages, probes, /metrics");
    assert_eq!(api.tokens_env.as_deref(), Some("API_TOKENS"));
}

/// A secret the site names but the environment lacks fails the check with
/// exit 2, the variable's name and the line that needs it (a systemd
/// pre-start check then stops the start that would fail).
#[test]
fn check_fails_on_every_unset_secret_with_its_line() {
    let path = repo().join("deploy/site.production.toml");
    let text_of = std::fs::read_to_string(&path).expect("site");
    let line_of = |needle: &str| {
        text_of
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .expect(needle)
    };
    let o = crate::support::bin()
        .args(["check", "--config", path.to_str().expect("path")])
        .env_remove("INFLUX_WRITE_PASSWORD")
        .env_remove("MQTT_PASSWORD")
        .env("PUSH_TOKEN", "0123456789abcdef")
        .env("API_TOKENS", "manager=0123456789abcdef")
        .output()
        .expect("check");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    let shown = path.display().to_string();
    for (var, key) in [
        ("INFLUX_WRITE_PASSWORD", "influx.password_env"),
        ("MQTT_PASSWORD", "mqtt[0].password_env"),
    ] {
        let want = format!(
            "{shown}:{}: {key}: environment variable {var} is not set",
            line_of(&format!("\"{var}\""))
        );
        assert!(err.contains(&want), "{want}\n---\n{err}");
    }
    assert!(!err.contains("PUSH_TOKEN"), "{err}");
    assert!(err.contains("2 secrets missing"), "{err}");
}

/// Logs written to a file or a journal (stderr not a terminal) carry no
/// ANSI colour codes.
#[test]
fn logs_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = crate::support::example_site(dir.path(), 5_000);
    let out = crate::support::bin()
        .args([
            "run",
            "--config",
            site.to_str().expect("utf-8"),
            "--seconds",
            "1",
        ])
        .env("METERFLOW_LOG", "info")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INFO") || err.contains("WARN"),
        "no log lines: {err}"
    );
    assert!(!err.contains('\u{1b}'), "colour codes in: {err}");
}

/// `meterflow check … | head -1` with the reader gone before the output:
/// no panic message, the status of a process stopped by a closed pipe.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = crate::support::example_site(dir.path(), 50_000);
    let mut child = crate::support::bin()
        .args(["check", "--config", path.to_str().expect("path")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("check");
    // Close our end of the pipe before the command prints its first line.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}
