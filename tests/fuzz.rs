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
