//! Notification delivery from the durable outbox: generic webhook (JSON,
//! HMAC-SHA256 signature), WeCom / DingTalk / Feishu robots, an MQTT topic,
//! and the log. Delivery runs on its own task: a notifier that is down never
//! blocks ingest or evaluation; its notifications wait in the outbox and are
//! retried with exponential back-off, across restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use meterflow_model::Site;
use meterflow_model::config::{NotifierConfig, NotifierKind};
use meterflow_store::{AlertDb, AlertEvent};
use sha2::Sha256;

/// Delivery counters.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Notifications delivered.
    pub delivered: AtomicU64,
    /// Failed attempts (each is retried until `max_attempts`).
    pub failed_attempts: AtomicU64,
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(), // HMAC accepts keys of any length
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The JSON document of an event (the generic webhook body and the MQTT payload).
pub fn event_json(site: &Site, e: &AlertEvent) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "site": site.site.name,
        "rule": e.rule,
        "target": e.target,
        "kind": e.kind,
        "severity": e.severity,
        "event": e.event,
        "time": rfc3339(e.ts_ms),
        "value": e.value,
        "threshold": e.threshold,
        "message": e.message,
    })
}

fn env(name: &Option<String>) -> Result<Option<String>, String> {
    match name {
        None => Ok(None),
        Some(n) => std::env::var(n)
            .map(Some)
            .map_err(|_| format!("environment variable `{n}` is not set")),
    }
}

/// One HTTP request a notifier makes: URL, body, extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Target URL (with any signature query parameters).
    pub url: String,
    /// JSON body.
    pub body: Vec<u8>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

/// Build the request of an HTTP notifier for an event at `now_ms`.
pub fn build_request(
    site: &Site,
    n: &NotifierConfig,
    e: &AlertEvent,
    now_ms: i64,
) -> Result<Request, String> {
    let url = match (&n.url, env(&n.url_env)?) {
        (_, Some(u)) => u,
        (Some(u), None) => u.clone(),
        (None, None) => return Err("no URL".into()),
    };
    let secret = match (env(&n.secret_env)?, &n.secret_file) {
        (Some(s), _) => Some(s),
        (None, Some(f)) => {
            let path = site.path.parent().map_or_else(|| f.clone(), |d| d.join(f));
            let (text, warning) = meterflow_model::secret_file::read(&path)
                .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
            if let Some(w) = warning {
                tracing::warn!(notifier = %n.id, "secret_file: {w}");
            }
            Some(text)
        }
        (None, None) => None,
    };
    let text = e.message.clone();
    let title = format!("meterflow {} {}", e.severity, e.event);
    let mut headers = Vec::new();
    let (url, body) = match n.kind {
        NotifierKind::Webhook => {
            let body = serde_json::to_vec(&event_json(site, e)).map_err(|x| x.to_string())?;
            headers.push(("X-Meterflow-Event".into(), e.id.to_string()));
            if let Some(s) = &secret {
                headers.push((
                    "X-Meterflow-Signature".into(),
                    format!("sha256={}", hex(&hmac_sha256(s.as_bytes(), &body))),
                ));
            }
            (url, body)
        }
        NotifierKind::Wecom => (
            url,
            serde_json::to_vec(&serde_json::json!({
                "msgtype": "markdown",
                "markdown": { "content": format!("**{title}**\n{text}") }
            }))
            .map_err(|x| x.to_string())?,
        ),
        NotifierKind::Dingtalk => {
            // Signed robots: sign = base64(HMAC-SHA256(secret, "{ms}\n{secret}")), URL-encoded.
            let url = match &secret {
                Some(s) => {
                    let sign = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
                        s.as_bytes(),
                        format!("{now_ms}\n{s}").as_bytes(),
                    ));
                    let sep = if url.contains('?') { '&' } else { '?' };
                    format!("{url}{sep}timestamp={now_ms}&sign={}", url_encode(&sign))
                }
                None => url,
            };
            (
                url,
                serde_json::to_vec(&serde_json::json!({
                    "msgtype": "markdown",
                    "markdown": { "title": title, "text": format!("### {title}\n{text}") }
                }))
                .map_err(|x| x.to_string())?,
            )
        }
        NotifierKind::Feishu => {
            let mut doc = serde_json::json!({
                "msg_type": "text",
                "content": { "text": format!("{title}\n{text}") }
            });
            if let Some(s) = &secret {
                // Feishu: key = "{seconds}\n{secret}", message empty.
                let ts = now_ms / 1000;
                let sign = base64::engine::general_purpose::STANDARD
                    .encode(hmac_sha256(format!("{ts}\n{s}").as_bytes(), b""));
                doc["timestamp"] = serde_json::Value::String(ts.to_string());
                doc["sign"] = serde_json::Value::String(sign);
            }
            (url, serde_json::to_vec(&doc).map_err(|x| x.to_string())?)
        }
        NotifierKind::Mqtt | NotifierKind::Log => return Err("not an HTTP notifier".into()),
    };
    Ok(Request { url, body, headers })
}

/// `text` with every secret part of `url` replaced by `***`: each query
/// value, and path segments of 16 characters or more (Feishu's hook
/// token). Short values (`v=2`) are left, so messages stay readable.
pub fn redact(url: &str, text: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut secrets: Vec<&str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(_, v)| v))
        .filter(|v| v.len() >= 4)
        .collect();
    secrets.extend(
        path.split('/')
            .skip(3) // scheme, empty, host
            .filter(|seg| seg.len() >= 16),
    );
    // Longest first, so a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s, "***");
    }
    out
}

/// Percent-encoding of a URL query value (unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Robots answer 200 with an error code in the body; treat a non-zero code as a failure.
fn robot_error(kind: NotifierKind, body: &[u8]) -> Option<String> {
    if !matches!(
        kind,
        NotifierKind::Wecom | NotifierKind::Dingtalk | NotifierKind::Feishu
    ) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = v
        .get("errcode")
        .or_else(|| v.get("code"))
        .or_else(|| v.get("StatusCode"))
        .and_then(serde_json::Value::as_i64)?;
    (code != 0).then(|| format!("robot answered error {code}: {v}"))
}

/// Delivers due notifications until `stop`.
pub struct Worker {
    site: Arc<Site>,
    client: reqwest::Client,
    mqtt: HashMap<String, rumqttc::AsyncClient>,
    /// Counters.
    pub stats: Arc<NotifyStats>,
}

impl Worker {
    /// A worker for a site's notifiers.
    pub fn new(site: Arc<Site>) -> anyhow::Result<Worker> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Worker {
            site,
            client,
            mqtt: HashMap::new(),
            stats: Arc::new(NotifyStats::default()),
        })
    }

    fn mqtt_client(&mut self, n: &NotifierConfig) -> Result<rumqttc::AsyncClient, String> {
        if let Some(c) = self.mqtt.get(&n.id) {
            return Ok(c.clone());
        }
        let (host, port) = match n.broker.as_deref() {
            Some("embedded") => {
                let b = self.site.broker.as_ref().ok_or("no [broker]")?;
                let addr: std::net::SocketAddr =
                    b.listen.parse().map_err(|_| "bad [broker] listen")?;
                (addr.ip().to_string(), addr.port())
            }
            Some(id) => {
                let b = self
                    .site
                    .mqtt
                    .iter()
                    .find(|b| b.id == id)
                    .ok_or_else(|| format!("no [[mqtt]] `{id}`"))?;
                (b.host.clone(), b.port)
            }
            None => return Err("no broker".into()),
        };
        let mut opts = rumqttc::MqttOptions::new(format!("meterflow-notify-{}", n.id), host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = rumqttc::AsyncClient::new(opts, 64);
        tokio::spawn(async move {
            loop {
                if events.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        self.mqtt.insert(n.id.clone(), client.clone());
        Ok(client)
    }

    async fn send(
        &mut self,
        n: &NotifierConfig,
        e: &AlertEvent,
        now_ms: i64,
    ) -> Result<(), String> {
        match n.kind {
            NotifierKind::Log => {
                tracing::warn!(target: "meterflow::alert", "{}", e.message);
                Ok(())
            }
            NotifierKind::Mqtt => {
                let client = self.mqtt_client(n)?;
                let topic = n.topic.clone().unwrap_or_else(|| "meterflow/alerts".into());
                let body =
                    serde_json::to_vec(&event_json(&self.site, e)).map_err(|x| x.to_string())?;
                client
                    .publish(topic, rumqttc::QoS::AtLeastOnce, false, body)
                    .await
                    .map_err(|x| x.to_string())
            }
            _ => {
                let req = build_request(&self.site, n, e, now_ms)?;
                // Robot URLs carry their key (WeCom `key=`, DingTalk
                // `access_token=` and `sign=`, Feishu the last path
                // segment): no error text that is logged or stored may
                // repeat it.
                let url = req.url.clone();
                let mut r = self
                    .client
                    .post(&req.url)
                    .timeout(Duration::from_secs_f64(n.timeout_s))
                    .header("Content-Type", "application/json")
                    .body(req.body);
                for (k, v) in &req.headers {
                    r = r.header(k, v);
                }
                let resp = r
                    .send()
                    .await
                    .map_err(|x| redact(&url, &format!("request failed: {}", x.without_url())))?;
                let status = resp.status();
                let body = resp.bytes().await.unwrap_or_default();
                if !status.is_success() {
                    return Err(format!("HTTP {status}"));
                }
                match robot_error(n.kind, &body) {
                    Some(err) => Err(redact(&url, &err)),
                    None => Ok(()),
                }
            }
        }
    }

    /// Deliver what is due now; returns (delivered, failed).
    pub async fn deliver_due(
        &mut self,
        db: &AlertDb,
        now_ms: i64,
    ) -> anyhow::Result<(usize, usize)> {
        let cfg = self.site.alerting.clone();
        let due = db.due(now_ms, cfg.max_attempts, 100)?;
        let (mut ok, mut bad) = (0, 0);
        for p in due {
            let Some(n) = self
                .site
                .notifiers
                .iter()
                .find(|n| n.id == p.notifier)
                .cloned()
            else {
                db.failed(
                    p.event.id,
                    &p.notifier,
                    i64::MAX,
                    "notifier no longer configured",
                )?;
                continue;
            };
            match self.send(&n, &p.event, now_ms).await {
                Ok(()) => {
                    db.delivered(p.event.id, &p.notifier, now_ms)?;
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    ok += 1;
                }
                Err(err) => {
                    let delay = meterflow_core::backoff::Backoff::nth(
                        Duration::from_secs_f64(cfg.retry_initial_s.max(0.0)),
                        Duration::from_secs_f64(cfg.retry_max_s.max(0.0)),
                        p.attempts,
                    )
                    .as_secs_f64();
                    let next = now_ms + (delay * 1000.0) as i64;
                    tracing::warn!(notifier = %n.id, event = p.event.id, attempt = p.attempts + 1, "notification not delivered: {err}; retry in {}", meterflow_core::time::human_duration((delay * 1000.0) as i64));
                    db.failed(p.event.id, &p.notifier, next, &err)?;
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    bad += 1;
                }
            }
        }
        Ok((ok, bad))
    }

    /// Run until `stop` turns true: deliver, then sleep until the next is due (at most 1 s).
    pub async fn run(mut self, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        let db = AlertDb::open(&self.site.store_path())?;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let now = chrono::Utc::now().timestamp_millis();
            if let Err(e) = self.deliver_due(&db, now).await {
                tracing::warn!("notification outbox: {e:#}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(notifier: &str) -> Site {
        let src = format!("[site]\nname = \"n\"\n\n[[notifier]]\n{notifier}\n");
        match Site::parse(&src, std::path::Path::new("n.toml")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn event() -> AlertEvent {
        AlertEvent {
            id: 7,
            rule: "leak".into(),
            target: "W".into(),
            kind: "night_flow".into(),
            severity: "critical".into(),
            event: "fired".into(),
            ts_ms: 1_741_752_000_000,
            value: Some(2.0),
            threshold: Some(1.5),
            message: "leak on W".into(),
        }
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn robot_bodies_have_their_platform_shapes() {
        let s = site(
            "id = \"w\"\nkind = \"wecom\"\nurl = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K\"",
        );
        let r = build_request(&s, &s.notifiers[0], &event(), 0).expect("request");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(v["msgtype"], "markdown");
        assert!(
            v["markdown"]["content"]
                .as_str()
                .unwrap_or("")
                .contains("leak on W")
        );

        let s = site(
            "id = \"f\"\nkind = \"feishu\"\nurl = \"https://open.feishu.cn/open-apis/bot/v2/hook/X\"",
        );
        let r = build_request(&s, &s.notifiers[0], &event(), 0).expect("request");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(v["msg_type"], "text");
        assert!(v.get("sign").is_none(), "unsigned without a secret");
    }

    #[test]
    fn dingtalk_is_signed_in_the_url_when_a_secret_is_set() {
        let dir = tempfile_dir();
        std::fs::write(dir.join("ding.secret"), "SEC\n").expect("secret");
        let src = "[site]\nname = \"n\"\n\n[[notifier]]\nid = \"d\"\nkind = \"dingtalk\"\nurl = \"https://oapi.dingtalk.com/robot/send?access_token=T\"\nsecret_file = \"ding.secret\"\n";
        let s = Site::parse(src, &dir.join("site.toml")).unwrap_or_else(|e| panic!("{e}"));
        let r = build_request(&s, &s.notifiers[0], &event(), 1_700_000_000_000).expect("request");
        // sign = base64(HMAC-SHA256(key "SEC", "1700000000000\nSEC")), URL-encoded.
        let sign = base64::engine::general_purpose::STANDARD
            .encode(hmac_sha256(b"SEC", b"1700000000000\nSEC"));
        assert_eq!(
            r.url,
            format!(
                "https://oapi.dingtalk.com/robot/send?access_token=T&timestamp=1700000000000&sign={}",
                url_encode(&sign)
            )
        );
        assert!(!r.url.contains('+') && !r.url.contains("=="), "{}", r.url);
    }

    #[test]
    fn robot_error_codes_are_failures() {
        assert!(robot_error(NotifierKind::Wecom, br#"{"errcode":0,"errmsg":"ok"}"#).is_none());
        assert!(
            robot_error(
                NotifierKind::Dingtalk,
                br#"{"errcode":310000,"errmsg":"sign not match"}"#
            )
            .is_some()
        );
        assert!(
            robot_error(
                NotifierKind::Feishu,
                br#"{"code":19021,"msg":"sign match fail"}"#
            )
            .is_some()
        );
        assert!(robot_error(NotifierKind::Webhook, br#"{"errcode":1}"#).is_none());
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("meterflow-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    }

    #[test]
    fn robot_keys_are_redacted_from_error_text() {
        // WeCom key, DingTalk token and signature, Feishu hook token.
        let u = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";
        let t = format!("request failed: error sending request for url ({u})");
        let r = redact(u, &t);
        assert!(!r.contains("693a91f6"), "{r}");
        assert!(
            r.contains("qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"),
            "{r}"
        );
        let d = "https://oapi.dingtalk.com/robot/send?access_token=abcdef0123456789&timestamp=1741752000000&sign=Zm9vYmFy%2B";
        let r = redact(d, &format!("{d} answered 310000"));
        assert!(
            !r.contains("abcdef0123456789") && !r.contains("Zm9vYmFy"),
            "{r}"
        );
        let f = "https://open.feishu.cn/open-apis/bot/v2/hook/8d1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8";
        let r = redact(f, &format!("POST {f}: 19021"));
        assert_eq!(
            r,
            "POST https://open.feishu.cn/open-apis/bot/v2/hook/***: 19021"
        );
        // Short values and text without the URL are left alone.
        assert_eq!(redact("http://h/x?v=2", "v=2 failed"), "v=2 failed");
    }

    #[test]
    fn a_failed_delivery_never_repeats_the_robot_key() {
        // A WeCom robot on a closed local port: the connection is refused,
        // and the error (logged at WARN, stored as last_error) is reqwest's.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let key = "SECRET-robot-key-0123456789abcdef";
        let site = Arc::new(site(&format!(
            "id = \"w\"\nkind = \"wecom\"\nurl = \"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={key}\"\ntimeout_s = 2"
        )));
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("{e}"),
        };
        let err = rt.block_on(async {
            let mut w = match Worker::new(Arc::clone(&site)) {
                Ok(w) => w,
                Err(e) => panic!("{e}"),
            };
            let n = site.notifiers[0].clone();
            w.send(&n, &event(), 1_741_752_000_000).await
        });
        let err = match err {
            Err(e) => e,
            Ok(()) => panic!("delivered to a closed port"),
        };
        assert!(err.starts_with("request failed"), "{err}");
        assert!(!err.contains(key), "{err}");
    }
}
