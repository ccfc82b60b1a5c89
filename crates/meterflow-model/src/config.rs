//! Site configuration: the user contract.
//!
//! A site file is TOML. Every section element is deserialized on its own, so
//! one mistake does not hide the next: `load` returns *all* errors it finds,
//! each with file, line, column and the dotted key (`meter[3].parent`).
//! Unknown keys are rejected everywhere.

mod alerts;
mod api;
mod checks;
mod cn;
mod defaults;
mod document;
mod http;
mod influx;
mod ledgers;
mod meters;
mod modbus;
mod mqtt;
mod notifiers;
mod raw;
mod registry;
mod resolved;
mod site;
mod tariffs;
mod validate;

pub use alerts::*;
pub use api::*;
pub use checks::instant;
pub use cn::*;
pub use defaults::default_alert_rules;
pub use defaults::shipped_profiles_public as shipped_profiles;
pub use document::{ConfigError, ConfigErrors};
pub use http::*;
pub use influx::*;
pub use ledgers::*;
pub use meters::*;
pub use modbus::*;
pub use mqtt::*;
pub use notifiers::*;
#[cfg(test)]
pub(crate) use registry::parse_registry;
pub use resolved::Site;
pub use site::*;
pub use tariffs::{
    Assigned, Band, BilledAs, Budget, Critical, TOU_PERIODS, Tariff, tariff_for, tariff_on,
};

use std::path::Path;

use crate::factors::FactorRegistry;
use document::Ctx;
use raw::read_document;

impl Site {
    /// Load and validate a site file.
    pub fn load(path: &Path) -> Result<Site, ConfigErrors> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        Site::parse(&src, path)
    }

    /// Parse and validate a site file's text; `path` is used in messages and
    /// to resolve relative paths.
    pub fn parse(src: &str, path: &Path) -> Result<Site, ConfigErrors> {
        let mut ctx = Ctx::new(src, path);
        let raw = read_document(&mut ctx);
        let defaults = FactorRegistry::shipped();
        let site = raw.and_then(|raw| validate::validate(&mut ctx, raw, defaults));
        match site {
            Some(site) if ctx.errors.is_empty() => Ok(site),
            _ => {
                let mut errors = ctx.errors;
                errors.sort_by_key(|e| (e.line, e.column));
                Err(ConfigErrors(errors))
            }
        }
    }
}

/// Parse a profile document, errors as text (tests and tools).
pub fn validate_profile_text(src: &str, name: &str) -> Result<crate::profile::Profile, String> {
    modbus::parse_profile(src, Path::new(name)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<ConfigError> {
        match Site::parse(src, Path::new("site.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0,
        }
    }

    #[test]
    fn alert_and_notifier_mistakes_are_located() {
        let src = "[site]\nname = \"x\"\n\n[[agency]]\nid = \"A\"\nname = \"A\"\n\n\
[[alert]]\nid = \"a1\"\nkind = \"nigth_flow\"\n\n\
[[alert]]\nid = \"a2\"\nkind = \"off_hours_baseload\"\nwork_hours = \"8-18\"\n\n\
[[alert]]\nid = \"a3\"\nkind = \"quota_projection\"\ntargets = [\"B\"]\n\n\
[[notifier]]\nid = \"n\"\nkind = \"webhook\"\n";
        let e = errors(src);
        let at = |line: usize| {
            e.iter()
                .find(|x| x.line == line)
                .map(|x| (x.key.clone(), x.message.clone()))
        };
        // Line 10: the kind typo, with the list of kinds.
        let (key, msg) = at(10).unwrap_or_default();
        assert!(
            key.starts_with("alert[0]") && msg.contains("night_flow"),
            "{e:?}"
        );
        // Line 15: the working hours.
        let (key, msg) = at(15).unwrap_or_default();
        assert_eq!(key, "alert[1].work_hours", "{e:?}");
        assert!(msg.contains("08:00-18:00"));
        // Line 20: an unknown agency among the targets.
        let (key, msg) = at(20).unwrap_or_default();
        assert_eq!(key, "alert[2].targets.0", "{e:?}");
        assert!(msg.contains("no agency `B`"));
        // The webhook without a URL (reported at its kind, line 24).
        let (key, _) = at(24).unwrap_or_default();
        assert_eq!(key, "notifier[0].url", "{e:?}");
        assert_eq!(e.len(), 4, "{e:?}");
    }

    #[test]
    fn serial_meter_buses_default_to_2400_8e1_and_mistakes_are_located() {
        let base = "[site]\nname = \"x\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n[[bus]]\nid = \"s\"\ntransport = \"rtu\"\ndevice = \"/dev/ttyS0\"\n[[bus]]\nid = \"n\"\ntransport = \"rtu\"\ndevice = \"/dev/ttyS1\"\nbaud = 9600\nparity = \"none\"\n";
        let meters = "[[meter]]\nid = \"e\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = { building = \"b\" }\ndlt645 = { bus = \"s\", address = \"000000001234\" }\n[[meter]]\nid = \"w\"\nkind = \"water\"\nunit = \"m3\"\nserves = { building = \"b\" }\ncjt188 = { bus = \"n\", address = \"12000000000000\" }\n";
        let site = Site::parse(&format!("{base}{meters}"), Path::new("s.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let s = site.bus("s").unwrap_or_else(|| panic!("bus s"));
        assert_eq!(
            (s.baud, s.parity),
            (2400, crate::config::Parity::Even),
            "defaults of a serial-meter bus"
        );
        let n = site.bus("n").unwrap_or_else(|| panic!("bus n"));
        assert_eq!(
            (n.baud, n.parity),
            (9600, crate::config::Parity::None),
            "explicit settings win"
        );
        // Four mistakes: a short address, an unknown identifier, a water type on a gas meter, a bad DI order.
        let bad = format!(
            "{base}[[meter]]\nid = \"e\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\ndlt645 = {{ bus = \"s\", address = \"1234\", items = [\"00010000\", \"0F0F0F0F\"] }}\n[[meter]]\nid = \"g\"\nkind = \"gas\"\nunit = \"m3\"\nserves = {{ building = \"b\" }}\ncjt188 = {{ bus = \"s\", address = \"12000000000000\", meter_type = \"cold_water\", di = \"9F1F\" }}\n"
        );
        let e = Site::parse(&bad, Path::new("s.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        for key in [
            "meter[0].dlt645.address",
            "meter[0].dlt645.items.1",
            "meter[1].cjt188.meter_type",
            "meter[1].cjt188.di",
        ] {
            assert!(e.contains(key), "{key} missing in:\n{e}");
        }
        assert!(
            e.contains("`0F0F0F0F`") && e.contains("[[dlt645_item]]"),
            "{e}"
        );
    }

    #[test]
    fn no_alert_rules_means_the_default_set() {
        let site = Site::parse("[site]\nname = \"x\"\n", Path::new("s.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        // One rule per kind: nine, battery-low and valve-fault of CJ/T 188
        // meters, and backup-stale (quiet without [backup]).
        assert_eq!(site.alert_rules.len(), 12);
        assert_eq!(site.alerting.interval_s, 300);
    }

    #[test]
    fn example_site_loads() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shared-office/site.toml");
        let site = Site::load(&path);
        let site = match site {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(site.meters.len(), 11);
        assert_eq!(site.agencies.len(), 3);
        assert_eq!(site.tz, chrono_tz::Asia::Shanghai);
        // 2025-03-10T14:00 Asia/Shanghai = 06:00Z = 1741586400 s.
        assert_eq!(site.replacements[0].ts_ms, 1_741_586_400_000);
        assert_eq!(
            site.meter("datacentre").map(|m| m.effective_allocation()),
            Some(Allocation::Fixed)
        );
    }

    const GOOD: &str = r#"
[site]
name = "x"

[[building]]
id = "b1"
total_area_m2 = 100

[[meter]]
id = "m1"
kind = "electricity"
unit = "kWh"
serves = { building = "b1" }
"#;

    #[test]
    fn broker_files_are_relative_to_the_site_file_not_the_working_directory() {
        let src = "[site]\nname = \"s\"\n\n[[mqtt]]\nid = \"b\"\nhost = \"127.0.0.1\"\nclient_id = \"c\"\nusername = \"u\"\npassword_file = \"secrets/mqtt.pw\"\ntls = true\nca_file = \"/etc/ssl/ca.pem\"\n\n[[mqtt.topic]]\npattern = \"m/{meter_id}\"\nformat = \"number\"\n";
        let site = match Site::parse(src, Path::new("/etc/meterflow/site.toml")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let b = &site.mqtt[0];
        assert_eq!(
            b.password_file.as_deref(),
            Some(Path::new("/etc/meterflow/secrets/mqtt.pw"))
        );
        // An absolute path stays as written.
        assert_eq!(b.ca_file.as_deref(), Some(Path::new("/etc/ssl/ca.pem")));
    }

    #[test]
    fn the_embedded_broker_listens_on_loopback_only() {
        let site =
            |listen: &str| format!("[site]\nname = \"s\"\n\n[broker]\nlisten = \"{listen}\"\n");
        assert!(errors(&site("127.0.0.1:1883")).is_empty());
        assert!(errors(&site("[::1]:1883")).is_empty());
        for open in ["0.0.0.0:1883", "192.168.1.10:1883"] {
            let e = errors(&site(open));
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!((e[0].line, e[0].key.as_str()), (5, "broker.listen"));
            assert!(e[0].message.contains("loopback"), "{}", e[0].message);
        }
    }

    #[test]
    fn minimal_site_is_valid() {
        assert_eq!(errors(GOOD), vec![]);
    }

    #[test]
    fn unknown_key_is_located() {
        let src = GOOD.replace("unit = \"kWh\"", "unit = \"kWh\"\nmultplier = 80");
        let e = errors(&src);
        assert_eq!(e.len(), 1, "{e:?}");
        // The text starts with a newline: line 13 holds `multplier = 80`.
        assert_eq!(
            (e[0].line, e[0].key.as_str()),
            (13, "meter[0].multplier"),
            "{}",
            e[0]
        );
        assert!(e[0].message.contains("unknown field"), "{}", e[0]);
    }

    #[test]
    fn type_error_is_located_at_the_value() {
        let src = GOOD.replace("total_area_m2 = 100", "total_area_m2 = \"big\"");
        let e = errors(&src);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            (e[0].line, e[0].key.as_str()),
            (7, "building[0].total_area_m2"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn bad_timezone_and_dangling_reference_are_both_reported() {
        let src = GOOD
            .replace(
                "name = \"x\"",
                "name = \"x\"\ntimezone = \"Asia/Shang_hai\"",
            )
            .replace("building = \"b1\" }", "building = \"b2\" }");
        let e = errors(&src);
        let keys: Vec<_> = e.iter().map(|e| (e.line, e.key.clone())).collect();
        assert_eq!(
            keys,
            vec![
                (4, "site.timezone".to_string()),
                (14, "meter[0].serves.building".to_string())
            ]
        );
        assert!(e[1].message.contains("did you mean `b1`"), "{}", e[1]);
    }

    #[test]
    fn duplicate_ids_and_zero_rollover() {
        let src = format!(
            "{GOOD}\n[[meter]]\nid = \"m1\"\nkind = \"water\"\nunit = \"m3\"\nrollover = 0\nserves = {{ building = \"b1\" }}\n"
        );
        let e = errors(&src);
        let keys: Vec<_> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["meter[1].id", "meter[1].rollover"], "{e:?}");
    }

    #[test]
    fn negative_area_and_unknown_section() {
        let src = format!(
            "{}\n[[meters]]\nid = 1\n",
            GOOD.replace("total_area_m2 = 100", "total_area_m2 = -5")
        );
        let e = errors(&src);
        let keys: Vec<_> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["building[0].total_area_m2", "meters"], "{e:?}");
        assert!(e[1].message.contains("did you mean `meter`"), "{}", e[1]);
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = errors("[site]\nname = \"x\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, 2);
    }
}
