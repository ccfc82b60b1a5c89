//! MQTT and HTTP push ingest against real peers: Mosquitto (Debian) started by
//! the test on a free loopback port with persistence on, `mosquitto_pub` as
//! the publisher.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Proc, bin, count, free_port, wait_port};

/// Mosquitto on `port` with persistence in `dir/mosquitto`. Started as root,
/// Mosquitto drops to the `mosquitto` user, so its data directory (and the
/// path to it) must be open to that user or it cannot save its sessions.
pub(crate) fn mosquitto(dir: &Path, port: u16) -> Proc {
    use std::os::unix::fs::PermissionsExt as _;
    let data = dir.join("mosquitto");
    std::fs::create_dir_all(&data).expect("mkdir");
    for d in [dir, data.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    mosquitto_with_conf(
        dir,
        port,
        &format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_inflight_messages 100\nmax_queued_messages 100000\n",
            data.display()
        ),
    )
}

/// Mosquitto started with `conf` (written to `dir/mosquitto.conf`), once it listens on `port`.
pub(crate) fn mosquitto_with_conf(dir: &Path, port: u16, conf: &str) -> Proc {
    let path = dir.join("mosquitto.conf");
    std::fs::write(&path, conf).expect("conf");
    let child = Command::new("mosquitto")
        .args(["-c", path.to_str().expect("path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (see .ci/run)");
    wait_port(port);
    Proc(child)
}

/// Publish one message at QoS 1.
pub(crate) fn publish_qos1(port: u16, topic: &str, payload: &[u8]) {
    publish(port, topic, payload);
}

/// One message with `payload` as its body (mosquitto_pub -s).
fn publish(port: u16, topic: &str, payload: &[u8]) {
    mosquitto_pub(port, topic, "-s", payload);
}

/// Run mosquitto_pub at QoS 1 with `mode` (-s: stdin is one message, -l: one per line).
fn mosquitto_pub(port: u16, topic: &str, mode: &str, input: &[u8]) {
    mosquitto_pub_qos(port, "1", topic, mode, input);
}

/// Run mosquitto_pub at `qos` with `mode`.
fn mosquitto_pub_qos(port: u16, qos: &str, topic: &str, mode: &str, input: &[u8]) {
    let mut child = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            qos,
            "-t",
            topic,
            mode,
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    assert!(child.wait().expect("wait").success());
}

const SITE_HEAD: &str = "[site]\nname = \"mqtt test\"\n\n[store]\npath = \"store.db\"\n\n[[building]]\nid = \"b\"\ntotal_area_m2 = 100\n\n\
[[meter]]\nid = \"w1\"\nkind = \"water\"\nunit = \"m3\"\nserves = { building = \"b\" }\n\n\
[[meter]]\nid = \"e1\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = { building = \"b\" }\n\n";

/// The MQTT test site (for other test modules).
pub(crate) fn test_site(dir: &Path, port: u16, client_id: &str, extra: &str) -> PathBuf {
    site(dir, port, client_id, extra)
}

fn site(dir: &Path, port: u16, client_id: &str, extra: &str) -> PathBuf {
    let s = format!(
        "{SITE_HEAD}[[mqtt]]\nid = \"local\"\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"{client_id}\"\n{extra}\n\
[[mqtt.topic]]\npattern = \"num/{{meter_id}}/volume\"\nformat = \"number\"\nquantity = \"volume\"\n\n\
[[mqtt.topic]]\npattern = \"json/{{meter_id}}\"\nformat = \"json\"\nvalue = \"v\"\ntimestamp = \"ts\"\nfields = [\"power\"]\n\n\
[[mqtt.topic]]\npattern = \"batch\"\nformat = \"json\"\nitems = \"data\"\nmeter_field = \"id\"\nvalue = \"v\"\ntimestamp = \"ts\"\n\n\
[[mqtt.topic]]\npattern = \"spb/{{meter_id}}\"\nformat = \"sparkplug\"\n\n\
[[mqtt.topic]]\npattern = \"lp\"\nformat = \"line_protocol\"\n"
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, s).expect("site");
    path
}

/// `meterflow run` on `site`, its log in `<site>.log`, once its MQTT
/// subscription is in place (a message published before it would be lost
/// for a new session; a fixed sleep was not enough on a loaded machine).
pub(crate) fn start(site: &Path) -> Proc {
    let log = site.with_extension("log");
    let child = bin()
        .args(["run", "--config", site.to_str().expect("path")])
        .env("METERFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("run");
    let p = Proc(child);
    wait_subscribed(&log);
    p
}

/// Wait (up to a minute) until the log of a `meterflow run` (at
/// `METERFLOW_LOG=info`) says its MQTT subscription was granted.
pub(crate) fn wait_subscribed(log: &Path) {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("MQTT subscribed.") {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no MQTT subscription within a minute; {}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn stop(mut p: Proc) {
    let _ = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(_)) = p.0.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("meterflow did not stop on SIGTERM");
}

fn rows(db: &Path, sql: &str) -> Vec<(String, String, i64, f64)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("store");
    let mut s = c.prepare(sql).expect("prepare");
    s.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get::<_, Option<f64>>(3)?.unwrap_or(f64::NAN),
        ))
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

const READINGS: &str = "SELECT s.meter, s.quantity, r.ts_ms, r.value FROM readings r JOIN series s ON s.id = r.series ORDER BY 1, 2, 3";

fn wait_count(db: &Path, table: &str, n: i64, secs: u64) -> i64 {
    let t = Instant::now();
    loop {
        let c = count(db, table);
        if c >= n || t.elapsed() > Duration::from_secs(secs) {
            return c;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_payload_format_arrives_with_its_values_and_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let site = site(dir.path(), port, "mf-formats", "");
    let mf = start(&site);
    // 1735689600000 ms = 2025-01-01T00:00:00Z.
    publish(port, "num/w1/volume", b"12.5");
    publish(
        port,
        "json/e1",
        br#"{"v": 100.5, "ts": 1735689600, "power": 7}"#,
    );
    publish(port, "batch", br#"{"data": [{"id": "w1", "v": 13.0, "ts": 1735689660000}, {"id": "e1", "v": 101.0, "ts": "2025-01-01T08:01:00+08:00"}]}"#);
    publish(
        port,
        "spb/e1",
        br#"{"timestamp": 1735689720000, "metrics": [{"name": "energy_import", "value": 102.25}]}"#,
    );
    publish(port, "lp", b"m,meter=w1 volume=14.5 1735689780000000000\n");
    let db = dir.path().join("store.db");
    assert!(wait_count(&db, "readings", 7, 20) >= 7);
    stop(mf);
    let got = rows(&db, READINGS);
    let t0 = 1_735_689_600_000i64;
    let has = |m: &str, q: &str, ts: Option<i64>, v: f64| {
        got.iter()
            .any(|(gm, gq, gt, gv)| gm == m && gq == q && ts.is_none_or(|t| *gt == t) && *gv == v)
    };
    assert!(has("w1", "volume", None, 12.5), "{got:?}");
    assert!(
        has("e1", "energy_import", Some(t0), 100.5) && has("e1", "power", Some(t0), 7.0),
        "{got:?}"
    );
    assert!(
        has("w1", "volume", Some(t0 + 60_000), 13.0)
            && has("e1", "energy_import", Some(t0 + 60_000), 101.0),
        "{got:?}"
    );
    assert!(
        has("e1", "energy_import", Some(t0 + 120_000), 102.25),
        "{got:?}"
    );
    assert!(has("w1", "volume", Some(t0 + 180_000), 14.5), "{got:?}");
    // The plain number has no time of its own: it carries the receive time (within the test's minute).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    assert!(
        got.iter()
            .any(|(m, _, t, v)| m == "w1" && *v == 12.5 && (now - t).abs() < 60_000),
        "{got:?}"
    );
}

/// Numbered stream at QoS 1: `(ts, value)` of message i are (t0 + i s, i).
fn numbered(from: u32, to: u32) -> String {
    (from..=to)
        .map(|i| {
            format!(
                "{{\"v\": {i}, \"ts\": {}}}\n",
                1_735_689_600_000i64 + i64::from(i) * 1000
            )
        })
        .collect()
}

/// One message per line of `lines` (mosquitto_pub -l).
pub(crate) fn publish_lines(port: u16, topic: &str, lines: &str) {
    mosquitto_pub(port, topic, "-l", lines.as_bytes());
}

fn assert_exactly(db: &Path, n: u32) {
    let got = rows(
        db,
        "SELECT s.meter, s.quantity, r.ts_ms, r.value FROM readings r JOIN series s ON s.id = r.series WHERE s.meter = 'w1' ORDER BY r.ts_ms",
    );
    let values: Vec<u32> = got.iter().map(|r| r.3 as u32).collect();
    let want: Vec<u32> = (1..=n).collect();
    assert_eq!(values, want, "every message exactly once");
    assert!(
        got.iter()
            .all(|r| r.2 == 1_735_689_600_000 + i64::from(r.3 as u32) * 1000)
    );
}

/// The test site with the JSON mapping on `seq/{meter_id}` (the numbered stream).
fn seq_site(dir: &Path, port: u16, client_id: &str) -> PathBuf {
    let path = site(dir, port, client_id, "");
    let text = std::fs::read_to_string(&path).expect("site").replace(
        "pattern = \"json/{meter_id}\"",
        "pattern = \"seq/{meter_id}\"",
    );
    std::fs::write(&path, text).expect("site");
    path
}

/// At QoS 0 nothing but our window bounds what the subscriber reads ahead of
/// the store. With the store taking no batches, it stops reading once
/// `IN_FLIGHT_READINGS` readings wait (the broker keeps the rest), and it
/// resumes as they are committed: every message arrives once.
#[test]
fn a_stalled_store_stops_the_subscriber_at_qos_0_instead_of_growing_memory() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use meterflow_model::Batch;
    use meterflow_mqtt::{IN_FLIGHT_READINGS, MqttStats};

    const N: u32 = 250_000;
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    // Unlimited queues, QoS 0 included: what we do not read waits in the broker.
    let _broker = mosquitto_with_conf(
        dir.path(),
        port,
        &format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_queued_bytes 0\nqueue_qos0_messages true\n"
        ),
    );
    let path = site(dir.path(), port, "window-test", "qos = 0");
    let text = std::fs::read_to_string(&path).expect("site").replace(
        "pattern = \"json/{meter_id}\"",
        "pattern = \"seq/{meter_id}\"",
    );
    std::fs::write(&path, text).expect("site");
    let site = meterflow_model::Site::load(&path).expect("valid site");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // A channel far larger than the window: only the window can stop the reader.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Batch>(1 << 20);
    let stats = Arc::new(MqttStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = rt.spawn(meterflow_mqtt::run(
        site.mqtt[0].clone(),
        Arc::new(meterflow_model::shard::IngestMeters::new(&site)),
        out_tx,
        Arc::clone(&stats),
        stop_rx,
    ));
    let publish_qos0 = |lines: &str| mosquitto_pub_qos(port, "0", "seq/w1", "-l", lines.as_bytes());
    // Message 0 until the subscription is in place (QoS 0 is not queued before it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.received.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the subscriber never received");
        publish_qos0(&numbered(0, 0));
        std::thread::sleep(Duration::from_millis(100));
    }
    publish_qos0(&numbered(1, N));
    // Wait until the subscriber stops reading (unchanged for 1 s).
    let mut last = 0;
    let mut still = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while still.elapsed() < Duration::from_secs(1) {
        assert!(Instant::now() < deadline, "the subscriber never settled");
        std::thread::sleep(Duration::from_millis(100));
        let now = stats.received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            still = Instant::now();
        }
    }
    let mut held = Vec::new();
    while let Ok(b) = out_rx.try_recv() {
        held.push(b);
    }
    let waiting: usize = held.iter().map(|b| b.readings.len()).sum();
    // The window is full: within one coalesced batch (at most 4 096) of 100 000.
    assert!(
        waiting <= IN_FLIGHT_READINGS && waiting + 4096 >= IN_FLIGHT_READINGS,
        "{waiting} readings handed to a stalled store"
    );
    // What was read: the window, the item channel (1 024 network reads of at
    // most 10 messages), the batch waiting for room (4 096) and rumqttc's
    // buffer (10): at most about 114 000 of the 250 001.
    assert!(
        last < 120_000,
        "read {last} messages ahead of a stalled store"
    );
    // Commit what waits, then take everything else as it comes.
    let mut seen = vec![false; N as usize + 1];
    let take = |b: Batch, seen: &mut [bool]| {
        for r in &b.readings {
            let i = r.value as usize;
            assert!(!seen[i], "message {i} twice");
            seen[i] = true;
        }
        if let Some(done) = b.done {
            done(Ok(Vec::new()));
        }
        b.readings.len()
    };
    let mut got = 0;
    for b in held {
        got += take(b, &mut seen);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < seen.len() {
        assert!(Instant::now() < deadline, "the subscriber did not resume");
        match out_rx.try_recv() {
            Ok(b) => got += take(b, &mut seen),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert_eq!(stats.received.load(Ordering::Relaxed), u64::from(N) + 1);
    let _ = stop_tx.send(true);
    rt.block_on(task).expect("subscriber task");
}

#[test]
fn no_loss_when_meterflow_is_killed_and_messages_arrive_while_it_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let site = seq_site(dir.path(), port, "mf-kill");
    let db = dir.path().join("store.db");
    let mut mf = start(&site);
    publish_lines(port, "seq/w1", &numbered(1, 300));
    // Kill mid-stream with SIGKILL, then keep publishing while it is down.
    let _ = wait_count(&db, "readings", 100, 20);
    let _ = mf.0.kill();
    let _ = mf.0.wait();
    publish_lines(port, "seq/w1", &numbered(301, 600));
    let mf = start(&site);
    assert_eq!(wait_count(&db, "readings", 600, 30), 600);
    stop(mf);
    assert_exactly(&db, 600);
}

/// At QoS 1 every committed message is acknowledged (in the batches'
/// order, after their commit): the broker keeps nothing for the session
/// once meterflow stops. A client taking over the same persistent session
/// gets no redelivery. (Acks not sent would come back here, up to all 1 000.)
#[test]
fn committed_messages_are_acknowledged_and_never_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let site = seq_site(dir.path(), port, "mf-acks");
    let db = dir.path().join("store.db");
    let mf = start(&site);
    publish_lines(port, "seq/w1", &numbered(1, 1000));
    assert_eq!(wait_count(&db, "readings", 1000, 30), 1000);
    stop(mf);
    assert_exactly(&db, 1000);
    // The same session, resumed by mosquitto_sub: what the broker still
    // holds for it is delivered at once; wait 3 s for anything.
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            "-i",
            "mf-acks",
            "-q",
            "1",
            "-t",
            "seq/#",
            "-W",
            "3",
        ])
        .output()
        .expect("mosquitto_sub");
    let redelivered = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(
        redelivered, 0,
        "messages the broker still held for the session"
    );
}

#[test]
fn no_loss_when_the_broker_restarts_with_persistence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let broker = mosquitto(dir.path(), port);
    let site = seq_site(dir.path(), port, "mf-broker");
    let db = dir.path().join("store.db");
    let mf = start(&site);
    publish_lines(port, "seq/w1", &numbered(1, 300));
    let _ = wait_count(&db, "readings", 300, 20);
    // Stop the broker (it saves its state), start it again on the same port and store.
    let mut broker = broker;
    let _ = Command::new("kill")
        .args(["-TERM", &broker.0.id().to_string()])
        .status();
    let _ = broker.0.wait();
    drop(broker);
    let _broker = mosquitto(dir.path(), port);
    publish_lines(port, "seq/w1", &numbered(301, 600));
    assert_eq!(wait_count(&db, "readings", 600, 40), 600);
    stop(mf);
    assert_exactly(&db, 600);
}

#[test]
fn bad_payloads_go_to_dead_letters_and_good_ones_between_them_are_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let site = site(dir.path(), port, "mf-bad", "max_packet_kib = 1024\n");
    let mf = start(&site);
    publish(port, "json/e1", br#"{"v": 1, "ts": 1735689600}"#);
    publish(port, "json/e1", b"{\"v\": 2, \"ts\": "); // malformed JSON
    publish(port, "json/e1", br#"{"v": 3, "ts": 1735689720}"#);
    publish(port, "json/nope", br#"{"v": 4, "ts": 1735689780}"#); // unknown meter
    publish(port, "num/w1/volume", b"NaN"); // not a finite number
    publish(port, "num/w1/volume", &vec![b'7'; 10 * 1024 * 1024]); // 10 MB
    publish(port, "json/e1", b"{\"v\": \xff\xfe}"); // invalid UTF-8
    publish(port, "json/e1", br#"{"v": 5, "ts": 1735689840}"#);
    let db = dir.path().join("store.db");
    assert!(wait_count(&db, "dead_letters", 5, 20) >= 5);
    assert!(wait_count(&db, "readings", 3, 10) >= 3);
    stop(mf);
    let good: Vec<f64> = rows(&db, READINGS)
        .iter()
        .filter(|r| r.0 == "e1")
        .map(|r| r.3)
        .collect();
    assert_eq!(good, vec![1.0, 3.0, 5.0]);
    let c = rusqlite::Connection::open(&db).expect("store");
    let mut s = c
        .prepare("SELECT location, reason, length(payload) FROM dead_letters ORDER BY id")
        .expect("prepare");
    let dead: Vec<(String, String, i64)> = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    let reasons: Vec<&str> = dead
        .iter()
        .map(|d| d.1.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        reasons,
        vec![
            "malformed",
            "unknown_meter",
            "invalid_value",
            "too_large",
            "malformed"
        ],
        "{dead:?}"
    );
    // The 10 MB payload is kept truncated, not whole.
    assert!(dead[3].2 <= 4096 + 20, "{dead:?}");
}

#[test]
fn a_shared_subscription_splits_the_stream_between_two_instances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");
    let sa = site(&a, port, "mf-share-a", "shared_group = \"meterflow\"\n");
    let sb = site(&b, port, "mf-share-b", "shared_group = \"meterflow\"\n");
    let (pa, pb) = (start(&sa), start(&sb));
    let lines: String = (1..=200)
        .map(|i| {
            format!(
                "{{\"v\": {i}, \"ts\": {}}}\n",
                1_735_689_600_000i64 + i * 1000
            )
        })
        .collect();
    publish_lines(port, "json/e1", &lines);
    let t = Instant::now();
    while count(&a.join("store.db"), "readings") + count(&b.join("store.db"), "readings") < 200
        && t.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(pa);
    stop(pb);
    let va: Vec<i64> = rows(&a.join("store.db"), READINGS)
        .iter()
        .map(|r| r.3 as i64)
        .collect();
    let vb: Vec<i64> = rows(&b.join("store.db"), READINGS)
        .iter()
        .map(|r| r.3 as i64)
        .collect();
    assert!(
        !va.is_empty() && !vb.is_empty(),
        "both instances take part: {} / {}",
        va.len(),
        vb.len()
    );
    assert!(
        va.iter().all(|x| !vb.contains(x)),
        "the halves are disjoint"
    );
    let mut all: Vec<i64> = va.into_iter().chain(vb).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=200).collect::<Vec<i64>>(),
        "their union is the whole stream"
    );
}

/// A minimal HTTP/1.1 client: (status, body).
pub(crate) fn http_post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";

/// The example site with `[http]` push on `port` (for other test modules).
pub(crate) fn http_test_site(dir: &Path, port: u16) -> PathBuf {
    http_site(dir, port)
}

fn http_site(dir: &Path, port: u16) -> PathBuf {
    let path = crate::support::example_site(dir, 50_000);
    let mut s = std::fs::read_to_string(&path).expect("site");
    s.push_str(&format!(
        "\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"MF_TEST_WRITE_TOKEN\"\n"
    ));
    std::fs::write(&path, s).expect("site");
    path
}

/// `meterflow run` on an `[http]` site, once its push port answers.
pub(crate) fn start_http(site: &Path, port: u16) -> Proc {
    let child = bin()
        .args(["run", "--config", site.to_str().expect("path")])
        .env("MF_TEST_WRITE_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    wait_port(port);
    Proc(child)
}

#[test]
fn http_push_authenticates_reports_bad_lines_and_accepts_gzip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let site = http_site(dir.path(), port);
    let mf = start_http(&site, port);
    let auth = format!("Token {TOKEN}");
    let line = b"m,meter=water-main volume=100.5 1735689600\n";
    // Wrong or missing token: 401, nothing stored.
    assert_eq!(
        http_post(
            port,
            "/api/v2/write?precision=s",
            &[("Authorization", "Token wrong")],
            line
        )
        .0,
        401
    );
    assert_eq!(http_post(port, "/write?precision=s", &[], line).0, 401);
    // v2 with a token: 204 after the commit.
    assert_eq!(
        http_post(
            port,
            "/api/v2/write?org=o&bucket=b&precision=s",
            &[("Authorization", &auth)],
            line
        )
        .0,
        204
    );
    // v1 with the token as password (u/p query), several lines, two bad ones: 400 naming lines 2 and 4.
    let body = b"m,meter=water-main volume=101 1735690500\nm,meter=nope volume=1 1735690500\nm,meter=water-main volume=102 1735691400\nthis is not line protocol\n";
    let (status, text) = http_post(
        port,
        &format!("/write?db=x&precision=s&u=any&p={TOKEN}"),
        &[],
        body,
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("\"line\":2")
            && text.contains("\"line\":4")
            && text.contains("unknown_meter"),
        "{text}"
    );
    // gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"m,meter=water-main volume=103 1735692300\n")
        .expect("gzip");
    let gz = gz.finish().expect("gzip");
    assert_eq!(
        http_post(
            port,
            "/api/v2/write?precision=s",
            &[("Authorization", &auth), ("Content-Encoding", "gzip")],
            &gz
        )
        .0,
        204
    );
    stop(mf);
    let got: Vec<f64> = rows(&dir.path().join("store.db"), READINGS)
        .iter()
        .filter(|r| r.0 == "water-main")
        .map(|r| r.3)
        .collect();
    // Partial write: the good lines of the 400 request were stored, as InfluxDB does.
    assert_eq!(got, vec![100.5, 101.0, 102.0, 103.0]);
    assert_eq!(count(&dir.path().join("store.db"), "dead_letters"), 2);
}

/// The same line-protocol lines pushed over HTTP and imported from a file give identical stores.
#[test]
fn http_push_and_file_import_of_the_same_lines_give_the_same_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");
    let port = free_port();
    let site_a = crate::support::example_site(&a, 50_000);
    let site_b = http_site(&b, port);
    let csv = dir.path().join("readings.csv");
    let o = bin()
        .args([
            "generate",
            "--config",
            site_a.to_str().expect("path"),
            "--from",
            "2025-03-08",
            "--days",
            "2",
            "--faults",
            "--out",
            csv.to_str().expect("path"),
        ])
        .output()
        .expect("generate");
    assert!(o.status.success());
    let mut lp = String::new();
    for line in std::fs::read_to_string(&csv).expect("csv").lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (Ok(t), Ok(v)) = (
            chrono::NaiveDateTime::parse_from_str(f[1], "%Y-%m-%d %H:%M:%S"),
            f[2].parse::<f64>(),
        ) else {
            continue;
        };
        lp.push_str(&format!(
            "meter,meter={} value={v} {}\n",
            f[0],
            t.and_utc().timestamp() - 8 * 3600
        ));
    }
    let lp_path = dir.path().join("readings.lp");
    std::fs::write(&lp_path, &lp).expect("lp");
    let o = bin()
        .args([
            "import",
            "--config",
            site_a.to_str().expect("path"),
            "--precision",
            "s",
            lp_path.to_str().expect("path"),
        ])
        .output()
        .expect("import");
    assert!(o.status.success());
    let mf = start_http(&site_b, port);
    let auth = format!("Token {TOKEN}");
    let lines: Vec<&str> = lp.lines().collect();
    for chunk in lines.chunks(500) {
        let body = chunk.join("\n");
        let (status, text) = http_post(
            port,
            "/api/v2/write?precision=s",
            &[("Authorization", &auth)],
            body.as_bytes(),
        );
        // The injected line for an unknown meter makes its chunk a partial write.
        assert!(
            status == 204 || (status == 400 && text.contains("unknown_meter")),
            "{status} {text}"
        );
    }
    stop(mf);
    let (da, db) = (
        crate::support::dump(&a.join("store.db")),
        crate::support::dump(&b.join("store.db")),
    );
    assert!(!da.intervals.is_empty());
    assert_eq!(da.readings, db.readings);
    assert_eq!(da.intervals, db.intervals);
    assert_eq!(da.days, db.days);
    assert_eq!(da.anomalies, db.anomalies);
}

/// TLS with a CA and username/password (password from the environment).
#[test]
fn tls_with_password_from_the_environment() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let sh = |cmd: &str| {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("sh")
            .success();
        assert!(ok, "{cmd}");
    };
    // A throwaway CA and a server certificate for 127.0.0.1.
    sh(
        "openssl req -x509 -newkey rsa:2048 -days 1 -nodes -keyout ca.key -out ca.crt -subj /CN=meterflow-test-ca",
    );
    sh(
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1",
    );
    sh(
        "printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile san.ext",
    );
    sh(
        "mosquitto_passwd -b -c pw meterflow s3cret-pw && chmod 644 pw server.key server.crt ca.crt",
    );
    let port = free_port();
    let _broker = mosquitto_with_conf(
        d,
        port,
        &format!(
            "listener {port} 127.0.0.1\ncafile {0}/ca.crt\ncertfile {0}/server.crt\nkeyfile {0}/server.key\npassword_file {0}/pw\nallow_anonymous false\n",
            d.display()
        ),
    );
    let extra = format!(
        "tls = true\nca_file = \"{}/ca.crt\"\nusername = \"meterflow\"\npassword_env = \"MF_TEST_MQTT_PASSWORD\"\n",
        d.display()
    );
    let site = site(d, port, "mf-tls", &extra);
    let log = d.join("run.log");
    let mf = Proc(
        bin()
            .args(["run", "--config", site.to_str().expect("path")])
            .env("MF_TEST_MQTT_PASSWORD", "s3cret-pw")
            .env("METERFLOW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("run"),
    );
    wait_subscribed(&log);
    let ok = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--cafile",
            d.join("ca.crt").to_str().expect("path"),
            "-u",
            "meterflow",
            "-P",
            "s3cret-pw",
            "-q",
            "1",
            "-t",
            "num/w1/volume",
            "-m",
            "42.5",
        ])
        .status()
        .expect("mosquitto_pub")
        .success();
    assert!(ok);
    let db = d.join("store.db");
    assert_eq!(wait_count(&db, "readings", 1, 15), 1);
    stop(mf);
    assert_eq!(rows(&db, READINGS).first().map(|r| r.3), Some(42.5));
}

/// RFID readers publish scans over MQTT into the asset ledger: a reader's
/// inventory round (several tags), a single tag with no time (receive time),
/// bad payloads kept in dead_letters without blocking the session, and a
/// scan published while meterflow is down recorded once after its restart
/// (persistent session, acknowledged after the commit).
#[test]
fn rfid_scans_over_mqtt_reach_the_asset_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let site = site(
        dir.path(),
        port,
        "mf-rfid",
        "\n[[mqtt.rfid]]\npattern = \"rfid/{room}/{reader}\"\n",
    );
    let mf = start(&site);
    let before = chrono::Utc::now().timestamp_millis();
    publish(
        port,
        "rfid/R101/r1",
        br#"{"tags": ["E1", "E2"], "time": "2026-11-30T10:00:00+08:00"}"#,
    );
    publish(port, "rfid/R101/r1", b"{\"tags\": [\"E1\""); // malformed
    publish(port, "rfid/R102/r2", br#"{"epc": 5}"#); // not a tag
    publish(port, "rfid/R102/r2", br#"{"epc": "E3"}"#);
    let db = dir.path().join("store.db");
    assert!(wait_count(&db, "dead_letters", 2, 20) >= 2);
    let scans = |n: usize| -> Vec<meterflow_store::LedgerEvent> {
        let t = Instant::now();
        loop {
            let all = meterflow_store::LedgerDb::open(&db)
                .and_then(|d| d.effective("assets", "scan", i64::MIN, i64::MAX))
                .expect("ledger");
            if all.len() >= n || t.elapsed() > Duration::from_secs(20) {
                return all;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let got = scans(3);
    stop(mf);
    let body = |e: &meterflow_store::LedgerEvent| -> serde_json::Value {
        serde_json::from_str(&e.body).expect("body")
    };
    // 2026-11-30 10:00 +08:00 = 02:00 UTC = 1 796 004 000 000 ms.
    let round: Vec<(String, String, String, i64)> = got
        .iter()
        .filter(|e| body(e)["room"] == "R101")
        .map(|e| {
            let b = body(e);
            (
                b["epc"].as_str().unwrap_or("").to_string(),
                b["room"].as_str().unwrap_or("").to_string(),
                b["reader"].as_str().unwrap_or("").to_string(),
                e.ts_ms,
            )
        })
        .collect();
    assert_eq!(
        round,
        vec![
            ("E1".into(), "R101".into(), "r1".into(), 1_796_004_000_000),
            ("E2".into(), "R101".into(), "r1".into(), 1_796_004_000_000),
        ]
    );
    let e3 = got
        .iter()
        .find(|e| body(e)["epc"] == "E3")
        .expect("E3 scanned");
    assert!(e3.ts_ms >= before, "no time: the receive time");
    assert_eq!(body(e3)["reader"], "r2");
    assert_eq!(got.len(), 3, "{got:?}");
    let dead: Vec<(String, String, String)> = meterflow_store::Reader::open(&db)
        .and_then(|r| r.dead_letters())
        .expect("dead letters")
        .into_iter()
        .filter(|d| d.0 == "mqtt-rfid")
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead[0].2.contains("not JSON"), "{dead:?}");
    assert!(dead[1].2.contains("epc"), "{dead:?}");

    // While meterflow is down, a scan is queued by the broker for its session.
    publish(port, "rfid/R103/r3", br#"{"epc": "E4"}"#);
    let mf = start(&site);
    let got = scans(4);
    stop(mf);
    assert_eq!(
        got.iter().filter(|e| body(e)["epc"] == "E4").count(),
        1,
        "{got:?}"
    );
    assert_eq!(got.len(), 4);
}
