//! Secrets never reach the logs: meterflow runs at `trace` level with an MQTT
//! password, an InfluxDB token and an HTTP push token from the environment,
//! against a real Mosquitto that wants the password, a stub InfluxDB that
//! refuses the token (so the failure is logged), and push requests with a
//! wrong and a right token. None of the secrets appears in its output.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Proc, bin, free_port, wait_port};

const MQTT_PW: &str = "mqtt-Pw-7f3a9c";
const INFLUX_TOKEN: &str = "influx-Tok-51d0e2";
const PUSH_TOKEN: &str = "push-Tok-9b44c1-a7e0f3d2";

#[test]
fn secrets_never_appear_in_logs() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    // Mosquitto with a password file.
    let ok = Command::new("mosquitto_passwd")
        .args([
            "-b",
            "-c",
            d.join("pw").to_str().expect("path"),
            "meterflow",
            MQTT_PW,
        ])
        .status()
        .expect("mosquitto_passwd")
        .success();
    assert!(ok);
    std::fs::set_permissions(d.join("pw"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mqtt_port = free_port();
    let _broker = crate::mqtt::mosquitto_with_conf(
        d,
        mqtt_port,
        &format!(
            "listener {mqtt_port} 127.0.0.1\npassword_file {}\nallow_anonymous false\n",
            d.join("pw").display()
        ),
    );
    // A stub InfluxDB that answers 401 to everything (InfluxDB 1.6 has no tokens).
    let stub = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let influx_port = stub.local_addr().expect("addr").port();
    let seen_auth = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let seen = std::sync::Arc::clone(&seen_auth);
        std::thread::spawn(move || {
            for s in stub.incoming() {
                let Ok(mut s) = s else { break };
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = vec![0u8; 65536];
                let n = s.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if let Some(l) = head
                    .lines()
                    .find(|l| l.to_lowercase().starts_with("authorization:"))
                {
                    *seen.lock().expect("lock") = l.to_string();
                }
                let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\nConnection: close\r\n\r\nunauthorized");
            }
        });
    }
    let http_port = free_port();
    let site = format!(
        "[site]\nname = \"s\"\n[store]\npath = \"store.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n[[meter]]\nid = \"w1\"\nkind = \"water\"\nunit = \"m3\"\nserves = {{ building = \"b\" }}\n\
[[mqtt]]\nid = \"local\"\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nclient_id = \"mf-secrets\"\nusername = \"meterflow\"\npassword_env = \"MF_MQTT_PW\"\n\
[[mqtt.topic]]\npattern = \"num/{{meter_id}}\"\nformat = \"number\"\n\
[http]\nlisten = \"127.0.0.1:{http_port}\"\ntoken_env = \"MF_PUSH_TOKEN\"\n\
[influx]\nurl = \"http://127.0.0.1:{influx_port}\"\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\ntoken_env = \"MF_INFLUX_TOKEN\"\nflush_ms = 100\nretry_initial_s = 0.2\nretry_max_s = 0.5\n"
    );
    let path = d.join("site.toml");
    std::fs::write(&path, site).expect("site");
    let mut mf = bin()
        .args([
            "run",
            "--config",
            path.to_str().expect("path"),
            "--seconds",
            "6",
        ])
        .env("METERFLOW_LOG", "trace")
        .env("MF_MQTT_PW", MQTT_PW)
        .env("MF_INFLUX_TOKEN", INFLUX_TOKEN)
        .env("MF_PUSH_TOKEN", PUSH_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    wait_port(http_port);
    let push = |token: &str| {
        let body = "m,meter=w1 volume=12.5 1764547200\n";
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http_port)).expect("connect");
        write!(
            s,
            "POST /api/v2/write?precision=s HTTP/1.0\r\nAuthorization: Token {token}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(push("wrong-token-of-some-length"), "401");
    assert_eq!(push(PUSH_TOKEN), "204");
    let _ = Command::new("mosquitto_pub")
        .args([
            "-p",
            &mqtt_port.to_string(),
            "-u",
            "meterflow",
            "-P",
            MQTT_PW,
            "-q",
            "1",
            "-t",
            "num/w1",
            "-m",
            "13.0",
        ])
        .status();
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = mf
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout);
    let _ = mf
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    let _ = mf.wait();
    let all = format!("{stdout}\n{stderr}");
    // The run really logged its traffic, and the stub really saw the token.
    assert!(
        all.contains("401"),
        "the InfluxDB refusal is logged:\n{all}"
    );
    assert!(all.lines().count() > 20, "trace logging was on:\n{all}");
    assert!(
        seen_auth.lock().expect("lock").contains(INFLUX_TOKEN),
        "the token was sent"
    );
    for secret in [MQTT_PW, INFLUX_TOKEN, PUSH_TOKEN] {
        assert!(
            !all.contains(secret),
            "secret {secret} leaked into the output:\n{}",
            all.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The HTTP push API under malformed requests: random methods, paths,
/// headers (a gzip header on bytes that are not gzip), bodies and tokens.
/// Nothing answers 5xx, and a good write still succeeds afterwards.
#[test]
fn malformed_push_requests_never_get_5xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let site = format!(
        "[site]\nname = \"s\"\n[store]\npath = \"store.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n[[meter]]\nid = \"w1\"\nkind = \"water\"\nunit = \"m3\"\nserves = {{ building = \"b\" }}\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"MF_PUSH_TOKEN\"\nmax_body_kib = 64\n"
    );
    let path = dir.path().join("site.toml");
    std::fs::write(&path, site).expect("site");
    let _mf = Proc(
        bin()
            .args([
                "run",
                "--config",
                path.to_str().expect("path"),
                "--seconds",
                "60",
            ])
            .env("MF_PUSH_TOKEN", PUSH_TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("run.log")).expect("log"))
            .spawn()
            .expect("run"),
    );
    wait_port(port);
    // `truncated`: the body is shorter than declared; the client then half-closes.
    let send_with = |raw: &[u8], truncated: bool| -> Option<u16> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let _ = s.write_all(raw);
        if truncated {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out)
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let send = |raw: &[u8]| send_with(raw, false);
    // A deterministic pseudo-random stream (xorshift), so a failure is reproducible.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let methods = ["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST"];
    let paths = [
        "/write",
        "/api/v2/write",
        "/api/v2/write?precision=xx",
        "/write?db=&precision=s&u=a&p=b",
        "/%ff%fe",
        "/api/v2/write?org=%00",
        "/healthz",
        "/ping",
        "/../../etc/passwd",
        "/write?precision=ns&precision=s",
    ];
    let mut answered = 0;
    for i in 0..300 {
        let method = methods[(rnd() % methods.len() as u64) as usize];
        let path = paths[(rnd() % paths.len() as u64) as usize];
        let len = (rnd() % 2000) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| (rnd() & 0xFF) as u8).collect();
        if i % 3 == 0 {
            // Almost line protocol.
            body = format!(
                "m,meter=w1 volume={} {}\nm,meter=w1 volume=\"x\" 1\nm,meter= volume=1\n,,,\n",
                rnd() % 1000,
                rnd() % 2_000_000_000
            )
            .into_bytes();
        }
        let auth = match i % 4 {
            0 => format!("Authorization: Token {PUSH_TOKEN}\r\n"),
            1 => "Authorization: Token \u{1F600}\r\n".to_string(),
            2 => "Authorization: Basic !!!\r\n".to_string(),
            _ => String::new(),
        };
        let gzip = if i % 5 == 0 {
            "Content-Encoding: gzip\r\n"
        } else {
            ""
        };
        let declared = if i % 7 == 0 {
            body.len() + 50
        } else {
            body.len()
        };
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{gzip}Content-Length: {declared}\r\nConnection: close\r\n\r\n").into_bytes();
        raw.extend(&body);
        if let Some(code) = send_with(&raw, declared != body.len()) {
            answered += 1;
            assert!(
                code < 500,
                "request {i} ({method} {path}, {} bytes, auth {}) got {code}",
                body.len(),
                i % 4
            );
        }
    }
    // Truncated bodies may be dropped without an answer (the client left).
    assert!(answered > 240, "the server answered {answered} of 300");
    // Still serving: a good write is committed.
    let body = "m,meter=w1 volume=42 1764547200\n";
    let raw = format!(
        "POST /api/v2/write?precision=s HTTP/1.1\r\nHost: x\r\nAuthorization: Token {PUSH_TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let got = send(raw.as_bytes());
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    assert_eq!(got, Some(204), "{log}");
}
