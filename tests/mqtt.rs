//! MQTT and HTTP push ingest against real peers: Mosquitto (Debian) started by
//! the test on a free loopback port with persistence on, `mosquitto_pub` as
//! the publisher.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{bin, count};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn wait_port(port: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Mosquitto on `port` with persistence in `dir/mosquitto`. Started as root,
/// Mosquitto drops to the `mosquitto` user, so its data directory (and the
/// path to it) must be open to that user or it cannot save its sessions.
fn mosquitto(dir: &Path, port: u16) -> Proc {
    use std::os::unix::fs::PermissionsExt as _;
    let data = dir.join("mosquitto");
    std::fs::create_dir_all(&data).expect("mkdir");
    for d in [dir, data.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_inflight_messages 100\nmax_queued_messages 100000\n",
            data.display()
        ),
    )
    .expect("conf");
    let child = Command::new("mosquitto").args(["-c", conf.to_str().expect("path")]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("mosquitto (see .ci/run)");
    wait_port(port);
    Proc(child)
}

fn publish(port: u16, topic: &str, payload: &[u8]) {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-s"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    child.stdin.take().expect("stdin").write_all(payload).expect("write");
    assert!(child.wait().expect("wait").success());
}

const SITE_HEAD: &str = "[site]\nname = \"mqtt test\"\n\n[store]\npath = \"store.db\"\n\n[[building]]\nid = \"b\"\ntotal_area_m2 = 100\n\n\
[[meter]]\nid = \"w1\"\nkind = \"water\"\nunit = \"m3\"\nserves = { building = \"b\" }\n\n\
[[meter]]\nid = \"e1\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = { building = \"b\" }\n\n";

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

fn start(site: &Path) -> Proc {
    let child = bin().args(["run", "--config", site.to_str().expect("path")]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("run");
    Proc(child)
}

fn stop(mut p: Proc) {
    let _ = Command::new("kill").args(["-TERM", &p.0.id().to_string()]).status();
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
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("store");
    let mut s = c.prepare(sql).expect("prepare");
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, Option<f64>>(3)?.unwrap_or(f64::NAN)))).expect("query").map(|r| r.expect("row")).collect()
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
    std::thread::sleep(Duration::from_millis(1500));
    // 1735689600000 ms = 2025-01-01T00:00:00Z.
    publish(port, "num/w1/volume", b"12.5");
    publish(port, "json/e1", br#"{"v": 100.5, "ts": 1735689600, "power": 7}"#);
    publish(port, "batch", br#"{"data": [{"id": "w1", "v": 13.0, "ts": 1735689660000}, {"id": "e1", "v": 101.0, "ts": "2025-01-01T08:01:00+08:00"}]}"#);
    publish(port, "spb/e1", br#"{"timestamp": 1735689720000, "metrics": [{"name": "energy_import", "value": 102.25}]}"#);
    publish(port, "lp", b"m,meter=w1 volume=14.5 1735689780000000000\n");
    let db = dir.path().join("store.db");
    assert!(wait_count(&db, "readings", 7, 20) >= 7);
    stop(mf);
    let got = rows(&db, READINGS);
    let t0 = 1_735_689_600_000i64;
    let has = |m: &str, q: &str, ts: Option<i64>, v: f64| got.iter().any(|(gm, gq, gt, gv)| gm == m && gq == q && ts.is_none_or(|t| *gt == t) && *gv == v);
    assert!(has("w1", "volume", None, 12.5), "{got:?}");
    assert!(has("e1", "energy_import", Some(t0), 100.5) && has("e1", "power", Some(t0), 7.0), "{got:?}");
    assert!(has("w1", "volume", Some(t0 + 60_000), 13.0) && has("e1", "energy_import", Some(t0 + 60_000), 101.0), "{got:?}");
    assert!(has("e1", "energy_import", Some(t0 + 120_000), 102.25), "{got:?}");
    assert!(has("w1", "volume", Some(t0 + 180_000), 14.5), "{got:?}");
    // The plain number has no time of its own: it carries the receive time (within the test's minute).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    assert!(got.iter().any(|(m, _, t, v)| m == "w1" && *v == 12.5 && (now - t).abs() < 60_000), "{got:?}");
}

/// Numbered stream at QoS 1: `(ts, value)` of message i are (t0 + i s, i).
fn numbered(from: u32, to: u32) -> String {
    (from..=to).map(|i| format!("{{\"v\": {i}, \"ts\": {}}}\n", 1_735_689_600_000i64 + i64::from(i) * 1000)).collect()
}

fn publish_lines(port: u16, topic: &str, lines: &str) {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    child.stdin.take().expect("stdin").write_all(lines.as_bytes()).expect("write");
    assert!(child.wait().expect("wait").success());
}

fn assert_exactly(db: &Path, n: u32) {
    let got = rows(db, "SELECT s.meter, s.quantity, r.ts_ms, r.value FROM readings r JOIN series s ON s.id = r.series WHERE s.meter = 'w1' ORDER BY r.ts_ms");
    let values: Vec<u32> = got.iter().map(|r| r.3 as u32).collect();
    let want: Vec<u32> = (1..=n).collect();
    assert_eq!(values, want, "every message exactly once");
    assert!(got.iter().all(|r| r.2 == 1_735_689_600_000 + i64::from(r.3 as u32) * 1000));
}

#[test]
fn no_loss_when_meterflow_is_killed_and_messages_arrive_while_it_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let site = site(dir.path(), port, "mf-kill", "");
    let topic_map = std::fs::read_to_string(&site).expect("site").replace("pattern = \"json/{meter_id}\"", "pattern = \"seq/{meter_id}\"");
    std::fs::write(&site, topic_map).expect("site");
    let db = dir.path().join("store.db");
    let mut mf = start(&site);
    std::thread::sleep(Duration::from_millis(1500));
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

#[test]
fn no_loss_when_the_broker_restarts_with_persistence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let broker = mosquitto(dir.path(), port);
    let site = site(dir.path(), port, "mf-broker", "");
    let s = std::fs::read_to_string(&site).expect("site").replace("pattern = \"json/{meter_id}\"", "pattern = \"seq/{meter_id}\"");
    std::fs::write(&site, s).expect("site");
    let db = dir.path().join("store.db");
    let mf = start(&site);
    std::thread::sleep(Duration::from_millis(1500));
    publish_lines(port, "seq/w1", &numbered(1, 300));
    let _ = wait_count(&db, "readings", 300, 20);
    // Stop the broker (it saves its state), start it again on the same port and store.
    let mut broker = broker;
    let _ = Command::new("kill").args(["-TERM", &broker.0.id().to_string()]).status();
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
    std::thread::sleep(Duration::from_millis(1500));
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
    let good: Vec<f64> = rows(&db, READINGS).iter().filter(|r| r.0 == "e1").map(|r| r.3).collect();
    assert_eq!(good, vec![1.0, 3.0, 5.0]);
    let c = rusqlite::Connection::open(&db).expect("store");
    let mut s = c.prepare("SELECT location, reason, length(payload) FROM dead_letters ORDER BY id").expect("prepare");
    let dead: Vec<(String, String, i64)> = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).expect("query").map(|r| r.expect("row")).collect();
    let reasons: Vec<&str> = dead.iter().map(|d| d.1.split(':').next().unwrap_or("")).collect();
    assert_eq!(reasons, vec!["malformed", "unknown_meter", "invalid_value", "too_large", "malformed"], "{dead:?}");
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
    std::thread::sleep(Duration::from_millis(2000));
    let lines: String = (1..=200).map(|i| format!("{{\"v\": {i}, \"ts\": {}}}\n", 1_735_689_600_000i64 + i * 1000)).collect();
    publish_lines(port, "json/e1", &lines);
    let t = Instant::now();
    while count(&a.join("store.db"), "readings") + count(&b.join("store.db"), "readings") < 200 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(pa);
    stop(pb);
    let va: Vec<i64> = rows(&a.join("store.db"), READINGS).iter().map(|r| r.3 as i64).collect();
    let vb: Vec<i64> = rows(&b.join("store.db"), READINGS).iter().map(|r| r.3 as i64).collect();
    assert!(!va.is_empty() && !vb.is_empty(), "both instances take part: {} / {}", va.len(), vb.len());
    assert!(va.iter().all(|x| !vb.contains(x)), "the halves are disjoint");
    let mut all: Vec<i64> = va.into_iter().chain(vb).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<i64>>(), "their union is the whole stream");
}
