//! Bounded fuzzing (proptest, fixed case counts, so CI time is bounded) of
//! every decoder of outside input: the site file, CSV and line-protocol
//! import, MQTT payloads in every format, Modbus register words of every
//! shipped profile field. Each must return a value or an error, never panic;
//! where there is an oracle, the result is checked against it.

use std::path::Path;

use meterflow_model::Site;
use proptest::prelude::*;

/// The example site with one byte changed, inserted or deleted somewhere.
fn mutated_site() -> impl Strategy<Value = String> {
    let src =
        std::fs::read_to_string(crate::support::repo().join("examples/shared-office/site.toml"))
            .expect("example");
    let len = src.len();
    (0..len, any::<u8>(), 0u8..3).prop_map(move |(at, byte, op)| {
        let mut b = src.clone().into_bytes();
        match op {
            0 => b[at] = byte,
            1 => b.insert(at, byte),
            _ => {
                b.remove(at);
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A damaged site file is either valid or refused with located errors.
    #[test]
    fn site_files_never_panic(text in mutated_site()) {
        match Site::parse(&text, Path::new("site.toml")) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(!e.0.is_empty());
                for err in &e.0 {
                    // Every error names the file and a line inside it (0: whole file).
                    prop_assert!(err.line <= text.lines().count() + 1, "{err}");
                }
            }
        }
    }

    #[test]
    fn arbitrary_toml_never_panics(text in "\\PC{0,400}") {
        let _ = Site::parse(&text, Path::new("site.toml"));
    }

    /// CSV rows: each is a reading or a row error with its line.
    #[test]
    fn csv_import_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let rows: Vec<_> = meterflow_import::CsvReader::new(&bytes[..], chrono_tz::Asia::Shanghai).take(1000).collect();
        for r in rows {
            match r {
                Ok(row) => prop_assert!(!row.meter.is_empty(), "{row:?}"),
                Err(e) => prop_assert!(!e.detail.is_empty()),
            }
        }
    }

    /// Line protocol: a reading per numeric field, or an error naming the line.
    #[test]
    fn line_protocol_never_panics(line in "\\PC{0,200}", n in 1u64..1000) {
        for r in meterflow_import::parse_line(&line, n, meterflow_import::Precision::Ns) {
            match r {
                // A reading names its meter and the line it came from.
                Ok(row) => prop_assert!(!row.meter.is_empty() && row.line == n, "{row:?}"),
                Err(e) => prop_assert_eq!(e.line, n),
            }
        }
    }

    /// MQTT payloads of every format on a matching topic.
    #[test]
    fn mqtt_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..300), which in 0usize..5) {
        let rules = mqtt_rules();
        let topic = ["j/m1", "n/m1", "l/x", "s/m1", "i/x"][which];
        match meterflow_mqtt::decode(&rules, topic, &payload, 1_735_689_600_000) {
            Ok(values) => for v in values {
                prop_assert!(!v.meter.is_empty());
            },
            Err(e) => prop_assert!(!e.reason.is_empty()),
        }
    }

    /// Any timestamp through every decoder and precision (line protocol,
    /// MQTT JSON as an integer and as a float, CSV with any year): an
    /// error or a reading, never a panic (issue 24).
    #[test]
    fn decoders_take_any_timestamp(ts in any::<i64>(), f in any::<f64>(), prec in 0usize..4) {
        use meterflow_import::Precision;
        let p = [Precision::S, Precision::Ms, Precision::Us, Precision::Ns][prec];
        for r in meterflow_import::parse_line(&format!("m,meter=m1 value=1 {ts}"), 1, p) {
            if let Err(e) = r {
                prop_assert!(!e.detail.is_empty());
            }
        }
        let rules = mqtt_rules();
        for payload in [
            format!(r#"{{"a": {{"b": 1}}, "ts": {ts}}}"#),
            format!(r#"{{"a": {{"b": 1}}, "ts": {f:e}}}"#),
            format!(r#"{{"a": {{"b": 1}}, "ts": "{ts}"}}"#),
        ] {
            if let Err(e) = meterflow_mqtt::decode(&rules, "j/m1", payload.as_bytes(), 1_735_689_600_000) {
                prop_assert!(!e.reason.is_empty());
            }
        }
        let year = ts % 1_000_000;
        let csv = format!("m1,{year}-01-01 00:00,1\nm1,{year}-12-31T23:59:59+08:00,2\n");
        let rows: Vec<_> = meterflow_import::CsvReader::new(csv.as_bytes(), chrono_tz::Asia::Shanghai).collect();
        prop_assert_eq!(rows.len(), 2);
    }

    /// Modbus register words for every field of every shipped profile.
    #[test]
    fn modbus_words_never_panic(words in proptest::collection::vec(any::<u16>(), 4)) {
        for p in meterflow_model::config::shipped_profiles() {
            for f in &p.field {
                let n = usize::from(f.dtype.registers());
                if let Ok(v) = meterflow_modbus::decode(f, &words[..n]) {
                    prop_assert!(v.is_finite(), "{}.{}: {v}", p.name, f.quantity);
                }
            }
        }
    }
}

fn mqtt_rules() -> Vec<meterflow_mqtt::Rule> {
    let text = r#"
[site]
name = "f"
[[building]]
id = "b"
total_area_m2 = 1
[[meter]]
id = "m1"
kind = "electricity"
unit = "kWh"
serves = { building = "b" }
[[mqtt]]
id = "x"
host = "127.0.0.1"
client_id = "f"
[[mqtt.topic]]
pattern = "j/{meter_id}"
format = "json"
value = "a.b"
timestamp = "ts"
[[mqtt.topic]]
pattern = "n/{meter_id}"
format = "number"
[[mqtt.topic]]
pattern = "l/#"
format = "line_protocol"
[[mqtt.topic]]
pattern = "s/{meter_id}"
format = "sparkplug"
[[mqtt.topic]]
pattern = "i/#"
format = "json"
items = "items"
meter_field = "id"
value = "v"
"#;
    let site = Site::parse(text, Path::new("f.toml")).unwrap_or_else(|e| panic!("{e}"));
    site.mqtt[0]
        .topic
        .iter()
        .cloned()
        .map(meterflow_mqtt::Rule::new)
        .collect()
}

/// 2 000 readings at random times across the whole i64 range, through the
/// store: each is stored (inside the plausible window) or refused as an
/// implausible time; nothing panics, and the buckets made stay within the
/// window (a reading dated 2100 once made 2.6 M rows).
#[test]
fn the_store_bounds_the_cost_of_any_timestamp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = format!(
        "[site]\nname = \"f\"\n[store]\npath = \"{}/f.db\"\nearliest = 2025-01-01\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n[[meter]]\nid = \"m1\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\n",
        dir.path().display()
    );
    let site = meterflow_model::Site::parse(&src, std::path::Path::new("f.toml")).expect("site");
    let mut w = meterflow_store::Writer::open(&site).expect("open");
    // Received at 2025-03-01T00:00Z; the window is 2025-01-01 (local) to a
    // day after that.
    let now = 1_740_787_200_000_i64;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut readings = Vec::new();
    for i in 0..2_000u32 {
        let r = next();
        // Half anywhere in i64, half near the window's edges.
        let ts = if i % 2 == 0 {
            r as i64
        } else {
            now - 70 * 86_400_000 + (r % (72 * 86_400_000)) as i64
        };
        readings.push(meterflow_model::Reading {
            meter: "m1".into(),
            quantity: "energy_import".into(),
            ts_ms: ts,
            value: f64::from(i),
            recv_ms: now,
            time_source: meterflow_model::TimeSource::Device,
        });
    }
    let t = std::time::Instant::now();
    let (verdicts, _) = w.write_batch(&readings, "fuzz").expect("write");
    let took = t.elapsed();
    let mut implausible = 0;
    for (r, v) in readings.iter().zip(&verdicts) {
        match v {
            meterflow_store::Verdict::ImplausibleTime { .. } => implausible += 1,
            meterflow_store::Verdict::Stored(_) | meterflow_store::Verdict::Duplicate => {
                assert!(
                    r.ts_ms >= 1_735_660_800_000 && r.ts_ms <= now + 86_400_000,
                    "{r:?}"
                );
            }
            other => panic!("{other:?} for {r:?}"),
        }
    }
    // Nearly all of the i64 half is outside a two-month window.
    assert!(implausible >= 990, "{implausible}");
    let c = rusqlite::Connection::open(w.path()).expect("open");
    let (lo, hi, n): (i64, i64, i64) = c
        .query_row(
            "SELECT min(bucket_ms), max(bucket_ms), count(*) FROM intervals",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("intervals");
    assert!(
        lo >= 1_735_660_800_000 - 900_000 && hi <= now + 86_400_000,
        "{lo}..{hi}"
    );
    // Two months and a day of 15-minute buckets at most: 60 × 96 + 96.
    assert!(n <= 5_856, "{n} buckets");
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
}
