//! The deployment of deploy/ started as its files describe it, with the real
//! servers on loopback (no Docker engine runs here): Mosquitto through
//! `deploy/mosquitto/init.sh` with `deploy/mosquitto/mosquitto.conf`,
//! InfluxDB 1.x with authentication and the least-privilege users of the
//! production site file, and `meterflow run` on `deploy/site.production.toml`
//! with `deploy/.env.example` as its environment. Only host names, ports and
//! paths are pointed at this machine; every substitution is checked to have
//! happened, so a change of the deploy files breaks this test rather than
//! passing it by accident.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::influx::{Influx, enc, http};
use crate::support::{Proc, bin, free_port, repo, wait_port};

/// `deploy/.env.example` as `KEY → value`.
fn env_example() -> BTreeMap<String, String> {
    std::fs::read_to_string(repo().join("deploy/.env.example"))
        .expect(".env.example")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// `text` with every `(from, to)` replaced; each `from` must occur.
fn substitute(text: &str, pairs: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in pairs {
        assert!(
            out.contains(from),
            "`{from}` is not in the deploy file any more"
        );
        out = out.replace(from, to);
    }
    out
}

/// A throwaway server certificate for 127.0.0.1 (openssl).
fn certificate(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let o = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout",
        ])
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(dir.join("server.crt"))
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn store_readings(db: &Path, meter: &str) -> i64 {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    c.query_row(
        "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series WHERE s.meter = ?1",
        [meter],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_deployment_starts_and_carries_a_gateway_reading_to_the_store_and_influxdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let env = env_example();
    let var = |k: &str| {
        env.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} in .env.example"))
    };
    let path = format!(
        "{}:/usr/sbin:/usr/bin:/sbin:/bin",
        std::env::var("PATH").unwrap_or_default()
    );

    // Mosquitto, through the compose entry point, on the deploy config. Run
    // as root it drops to its own user, which must reach its folder.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    certificate(&d.join("certs"));
    std::fs::create_dir_all(d.join("mosquitto")).expect("mkdir");
    let (mqtt, mqtts) = (free_port(), free_port());
    let conf = substitute(
        &std::fs::read_to_string(repo().join("deploy/mosquitto/mosquitto.conf")).expect("conf"),
        &[
            (
                "/mosquitto/data/",
                format!("{}/", d.join("mosquitto").display()),
            ),
            ("listener 1883", format!("listener {mqtt} 127.0.0.1")),
            ("listener 8883", format!("listener {mqtts} 127.0.0.1")),
        ],
    );
    std::fs::write(d.join("mosquitto.conf"), conf).expect("conf");
    let log = std::fs::File::create(d.join("mosquitto.log")).expect("log");
    let _mosquitto = Proc(
        Command::new("sh")
            .arg(repo().join("deploy/mosquitto/init.sh"))
            .env("PATH", &path)
            .env("MOSQUITTO_PASSWD", d.join("mosquitto/passwd"))
            .env("MOSQUITTO_CONF", d.join("mosquitto.conf"))
            .env("MOSQUITTO_CERTS", d.join("certs"))
            .env("MOSQUITTO_TLS", d.join("mosquitto/tls"))
            .env("MQTT_PASSWORD", var("MQTT_PASSWORD"))
            .env("MQTT_GATEWAY_PASSWORD", var("MQTT_GATEWAY_PASSWORD"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("sh init.sh"),
    );
    wait_port(mqtts);
    let passwd = std::fs::metadata(d.join("mosquitto/passwd")).expect("passwd created");
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(passwd.permissions().mode() & 0o077, 0, "passwd is private");
    }

    // InfluxDB with authentication: the write-only and read-only users.
    let influx = Influx::start_secured(
        d,
        &var("INFLUX_ADMIN_PASSWORD"),
        &[
            ("meterflow", &var("INFLUX_WRITE_PASSWORD"), "WRITE"),
            ("grafana", &var("INFLUX_READ_PASSWORD"), "READ"),
        ],
    );

    // The production site file, pointed at loopback.
    let (push, api) = (free_port(), free_port());
    let data = d.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let site = substitute(
        &std::fs::read_to_string(repo().join("deploy/site.production.toml")).expect("site"),
        &[
            (
                "host = \"mosquitto\"\nport = 1883",
                format!("host = \"127.0.0.1\"\nport = {mqtt}"),
            ),
            (
                "http://influxdb:8086",
                format!("http://127.0.0.1:{}", influx.port),
            ),
            ("0.0.0.0:8087", format!("127.0.0.1:{push}")),
            ("0.0.0.0:8080", format!("127.0.0.1:{api}")),
            ("/var/lib/meterflow/", format!("{}/", data.display())),
        ],
    );
    let site_path = d.join("site.toml");
    std::fs::write(&site_path, site).expect("site");
    let s = site_path.to_str().expect("path");
    let with_env = |c: &mut Command| {
        for (k, v) in &env {
            c.env(k, v);
        }
    };
    let mut check = bin();
    check.args(["check", "--config", s]);
    with_env(&mut check);
    let o = check.output().expect("check");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    let mut run = bin();
    run.args(["run", "--config", s, "--seconds", "60"])
        .env("METERFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("meterflow.log")).expect("log"));
    with_env(&mut run);
    let _run = Proc(run.spawn().expect("run"));
    wait_port(api);
    // The container health check.
    wait_until("`meterflow ready`", Duration::from_secs(20), || {
        bin()
            .args(["ready", "--config", s])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
    });

    // A gateway publishes over TLS with its own account.
    let now = meterflow_model::clock::now_ms();
    for (ts, value) in [(now - 120_000, 1000.5), (now - 60_000, 1001.25)] {
        let o = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &mqtts.to_string(), "--cafile"])
            .arg(d.join("certs/server.crt"))
            .args([
                "-u",
                "gateway",
                "-P",
                &var("MQTT_GATEWAY_PASSWORD"),
                "-q",
                "1",
            ])
            .args(["-t", "meters/main/main-incomer/reading"])
            .args(["-m", &format!("{{\"value\": {value}, \"ts\": {ts}}}")])
            .output()
            .expect("mosquitto_pub");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Without credentials the broker refuses.
    let o = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &mqtt.to_string(),
            "-t",
            "meters/main/x/reading",
            "-m",
            "1",
        ])
        .output()
        .expect("mosquitto_pub");
    assert!(!o.status.success(), "anonymous publish refused");

    let db = data.join("meterflow.db");
    wait_until(
        "both readings in the store",
        Duration::from_secs(20),
        || store_readings(&db, "main-incomer") == 2,
    );
    // In InfluxDB, read as Grafana's read-only user.
    let read = format!("&u=grafana&p={}", enc(&var("INFLUX_READ_PASSWORD")));
    let count_q = format!(
        "/query?db=meterflow&q={}{read}",
        enc("SELECT count(value) FROM reading WHERE meter = 'main-incomer'")
    );
    wait_until("both readings in InfluxDB", Duration::from_secs(30), || {
        let (code, body) = http(influx.port, "GET", &count_q, "");
        code == 200 && body.contains(",2]")
    });
    // Least privilege: Grafana's user cannot write, meterflow's cannot read.
    let (code, body) = http(
        influx.port,
        "POST",
        &format!("/write?db=meterflow{read}"),
        "reading,meter=x value=1",
    );
    assert_eq!(code, 403, "{body}");
    let (_, body) = http(
        influx.port,
        "GET",
        &format!(
            "/query?db=meterflow&q={}&u=meterflow&p={}",
            enc("SELECT count(value) FROM reading"),
            enc(&var("INFLUX_WRITE_PASSWORD"))
        ),
        "",
    );
    assert!(body.contains("not authorized"), "{body}");
    // The probes and /metrics answer without a token; the API wants one.
    let (code, _) = crate::api::request(api, "GET", "/healthz", None, "");
    assert_eq!(code, 200);
    let (code, _) = crate::api::request(api, "GET", "/api/v1/site", None, "");
    assert_eq!(code, 401);
    let manager = var("API_TOKENS");
    let token = manager.strip_prefix("manager=").expect("manager=TOKEN");
    let (code, body) = crate::api::request(api, "GET", "/api/v1/site", Some(token), "");
    assert_eq!(code, 200, "{body}");
}
