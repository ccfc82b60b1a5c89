//! Site configuration: the user contract.
//!
//! A site file is TOML. Every section element is deserialized on its own, so
//! one mistake does not hide the next: `load` returns *all* errors it finds,
//! each with file, line, column and the dotted key (`meter[3].parent`).
//! Unknown keys are rejected everywhere.

mod schema;
mod validate;

pub(crate) use validate::parse_registry;
pub use validate::shipped_profiles_public as shipped_profiles;
pub use validate::{default_alert_rules, instant, parse_hours};

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use schema::*;

use crate::factors::{FactorRegistry, FactorRow, QuotaRow, TargetRow};
use crate::span::line_col;

/// One configuration mistake, located.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// File the mistake is in.
    pub file: PathBuf,
    /// 1-based line (0 when the file could not be read at all).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key, e.g. `meter[3].parent` (empty for whole-file errors).
    pub key: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All mistakes found in a configuration, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A validated site.
#[derive(Debug, Clone)]
pub struct Site {
    /// The file this site was loaded from.
    pub path: PathBuf,
    /// `[site]`.
    pub site: SiteSection,
    /// The parsed IANA time zone of `site.timezone`.
    pub tz: chrono_tz::Tz,
    /// This instance's shard (`[site] shard` or `--shard`); 0/1 = the whole site.
    pub shard: crate::shard::Shard,
    /// `[store]`.
    pub store: StoreSection,
    /// `[[building]]`.
    pub buildings: Vec<Building>,
    /// `[[zone]]`.
    pub zones: Vec<Zone>,
    /// `[[agency]]`.
    pub agencies: Vec<Agency>,
    /// `[[headcount]]`, sorted by agency then date.
    pub headcounts: Vec<Headcount>,
    /// `[[space]]`.
    pub spaces: Vec<Space>,
    /// `[[meter]]`.
    pub meters: Vec<Meter>,
    /// `[[replacement]]`, resolved to UTC, sorted by meter then time.
    pub replacements: Vec<ReplacementEvent>,
    /// Shipped factor registry with the site's overrides applied.
    pub factors: FactorRegistry,
    /// `[[bus]]`.
    pub buses: Vec<Bus>,
    /// `[[mqtt]]` brokers to subscribe to.
    pub mqtt: Vec<MqttBroker>,
    /// `[broker]`: the embedded MQTT broker, if configured.
    pub broker: Option<EmbeddedBroker>,
    /// `[http]`: push ingest, if configured.
    pub http: Option<HttpIngest>,
    /// `[alerting]` settings.
    pub alerting: Alerting,
    /// `[[alert]]` rules; the shipped default set when the file has none.
    pub alert_rules: Vec<AlertRule>,
    /// `[[notifier]]`s.
    pub notifiers: Vec<NotifierConfig>,
    /// `[influx]`: the InfluxDB sink, if configured.
    pub influx: Option<InfluxSink>,
    /// `[[dlt645_item]]`: site DL/T 645 identifiers (added to, or replacing, the shipped ones).
    pub dlt645_items: Vec<Dlt645Item>,
    /// `[api]`: the read API and overview page, if configured.
    pub api: Option<ApiConfig>,
    /// `[waste]`: waste-ledger settings (defaults when absent).
    pub waste: WasteSettings,
    /// `[office]`: office-space ledger settings (defaults when absent).
    pub office: OfficeSettings,
    /// `[fleet]`: vehicle-ledger settings (defaults when absent).
    pub fleet: FleetSettings,
    /// Shipped Modbus profiles and the site's `[[profile]]`s (a site profile replaces a shipped one of the same name).
    pub profiles: Vec<crate::profile::Profile>,
    meter_index: BTreeMap<String, usize>,
}

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

    /// A Modbus profile by name.
    pub fn profile(&self, name: &str) -> Option<&crate::profile::Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// A bus by id.
    pub fn bus(&self, id: &str) -> Option<&Bus> {
        self.buses.iter().find(|b| b.id == id)
    }

    /// A meter by id.
    pub fn meter(&self, id: &str) -> Option<&Meter> {
        self.meter_index.get(id).map(|&i| &self.meters[i])
    }

    /// A path of the site file (secret files, CA files) resolved against its directory.
    pub fn relative(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or_else(|| Path::new(".")).join(p)
        }
    }

    /// Where the embedded store lives (relative paths are relative to the config file).
    pub fn store_path(&self) -> PathBuf {
        if self.store.path.is_absolute() {
            self.store.path.clone()
        } else {
            let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
            dir.join(&self.store.path)
        }
    }

    /// Replacement events of one meter, in time order.
    pub fn replacements_of<'a>(
        &'a self,
        meter: &'a str,
    ) -> impl Iterator<Item = &'a ReplacementEvent> + 'a {
        self.replacements.iter().filter(move |r| r.meter == meter)
    }
}

/// Error collection with access to the source text.
pub(crate) struct Ctx<'s> {
    pub(crate) src: &'s str,
    pub(crate) file: PathBuf,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'s> Ctx<'s> {
    fn new(src: &'s str, file: &Path) -> Self {
        Ctx {
            src,
            file: file.to_path_buf(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = line_col(self.src, span.start);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }
}

/// A deserialized element with the parse tree it came from, to locate keys later.
pub(crate) struct Located<'s, T> {
    pub(crate) value: T,
    pub(crate) node: Spanned<DeValue<'s>>,
    /// `meter[3]` or `site`.
    pub(crate) path: String,
}

impl<T> Located<'_, T> {
    /// Span of the value under `key` (dotted path segments), or of the element.
    pub(crate) fn span_of(&self, key: &[&str]) -> Range<usize> {
        crate::span::locate(&self.node, key)
    }

    /// The element's table has `key` (to tell a default from an explicit value).
    pub(crate) fn has(&self, key: &str) -> bool {
        match self.node.get_ref() {
            DeValue::Table(t) => crate::span::key_span(t, key).is_some(),
            _ => false,
        }
    }

    pub(crate) fn key(&self, key: &str) -> String {
        if key.is_empty() {
            self.path.clone()
        } else {
            format!("{}.{}", self.path, key)
        }
    }
}

/// Everything the file holds, deserialized element by element.
pub(crate) struct RawDocument<'s> {
    pub(crate) site: Option<Located<'s, SiteSection>>,
    pub(crate) store: Option<Located<'s, StoreSection>>,
    pub(crate) buildings: Vec<Located<'s, Building>>,
    pub(crate) zones: Vec<Located<'s, Zone>>,
    pub(crate) agencies: Vec<Located<'s, Agency>>,
    pub(crate) headcounts: Vec<Located<'s, Headcount>>,
    pub(crate) spaces: Vec<Located<'s, Space>>,
    pub(crate) meters: Vec<Located<'s, Meter>>,
    pub(crate) replacements: Vec<Located<'s, Replacement>>,
    pub(crate) factors: Vec<Located<'s, FactorRow>>,
    pub(crate) targets: Vec<Located<'s, TargetRow>>,
    pub(crate) quotas: Vec<Located<'s, QuotaRow>>,
    pub(crate) buses: Vec<Located<'s, Bus>>,
    pub(crate) mqtt: Vec<Located<'s, MqttBroker>>,
    pub(crate) broker: Option<Located<'s, EmbeddedBroker>>,
    pub(crate) http: Option<Located<'s, HttpIngest>>,
    pub(crate) alerting: Option<Located<'s, Alerting>>,
    pub(crate) alerts: Vec<Located<'s, AlertRule>>,
    pub(crate) notifiers: Vec<Located<'s, NotifierConfig>>,
    pub(crate) influx: Option<Located<'s, InfluxSink>>,
    pub(crate) dlt645_items: Vec<Located<'s, Dlt645Item>>,
    pub(crate) api: Option<Located<'s, ApiConfig>>,
    pub(crate) waste: Option<Located<'s, WasteSettings>>,
    pub(crate) office: Option<Located<'s, OfficeSettings>>,
    pub(crate) fleet: Option<Located<'s, FleetSettings>>,
    pub(crate) profiles: Vec<Located<'s, crate::profile::Profile>>,
    /// `(section, id)` of elements that failed to deserialize: their ids still
    /// count as defined, so one typo does not cascade into dangling references.
    pub(crate) failed_ids: Vec<(String, String)>,
}

const TABLE_SECTIONS: &[&str] = &[
    "site", "store", "broker", "http", "alerting", "influx", "api", "waste", "office", "fleet",
];
const ARRAY_SECTIONS: &[&str] = &[
    "building",
    "zone",
    "agency",
    "headcount",
    "space",
    "meter",
    "replacement",
    "factor",
    "target",
    "quota",
    "bus",
    "profile",
    "mqtt",
    "alert",
    "notifier",
    "dlt645_item",
];

fn read_document<'s>(ctx: &mut Ctx<'s>) -> Option<RawDocument<'s>> {
    let (root, syntax) = DeTable::parse_recoverable(ctx.src);
    if !syntax.is_empty() {
        for e in syntax {
            let span = e.span().unwrap_or(0..0);
            ctx.error(span, "", format!("TOML syntax: {}", e.message().trim()));
        }
        return None;
    }
    let mut doc = RawDocument {
        site: None,
        store: None,
        buildings: Vec::new(),
        zones: Vec::new(),
        agencies: Vec::new(),
        headcounts: Vec::new(),
        spaces: Vec::new(),
        meters: Vec::new(),
        replacements: Vec::new(),
        factors: Vec::new(),
        targets: Vec::new(),
        quotas: Vec::new(),
        buses: Vec::new(),
        mqtt: Vec::new(),
        broker: None,
        http: None,
        alerting: None,
        alerts: Vec::new(),
        notifiers: Vec::new(),
        influx: None,
        dlt645_items: Vec::new(),
        api: None,
        waste: None,
        office: None,
        fleet: None,
        profiles: Vec::new(),
        failed_ids: Vec::new(),
    };
    for (key, value) in root.into_inner() {
        let name: &str = key.get_ref().as_ref();
        match name {
            "site" => doc.site = one(ctx, "site", value),
            "store" => doc.store = one(ctx, "store", value),
            "building" | "zone" | "agency" | "meter" => {
                remember_ids(&mut doc.failed_ids, name, &value);
                match name {
                    "building" => doc.buildings = many(ctx, "building", value),
                    "zone" => doc.zones = many(ctx, "zone", value),
                    "agency" => doc.agencies = many(ctx, "agency", value),
                    _ => doc.meters = many(ctx, "meter", value),
                }
            }
            "headcount" => doc.headcounts = many(ctx, "headcount", value),
            "space" => doc.spaces = many(ctx, "space", value),
            "replacement" => doc.replacements = many(ctx, "replacement", value),
            "factor" => doc.factors = many(ctx, "factor", value),
            "target" => doc.targets = many(ctx, "target", value),
            "quota" => doc.quotas = many(ctx, "quota", value),
            "bus" => doc.buses = many(ctx, "bus", value),
            "mqtt" => doc.mqtt = many(ctx, "mqtt", value),
            "broker" => doc.broker = one(ctx, "broker", value),
            "http" => doc.http = one(ctx, "http", value),
            "alerting" => doc.alerting = one(ctx, "alerting", value),
            "influx" => doc.influx = one(ctx, "influx", value),
            "dlt645_item" => doc.dlt645_items = many(ctx, "dlt645_item", value),
            "api" => doc.api = one(ctx, "api", value),
            "waste" => doc.waste = one(ctx, "waste", value),
            "office" => doc.office = one(ctx, "office", value),
            "fleet" => doc.fleet = one(ctx, "fleet", value),
            "alert" => doc.alerts = many(ctx, "alert", value),
            "notifier" => doc.notifiers = many(ctx, "notifier", value),
            "profile" => doc.profiles = many(ctx, "profile", value),
            other => {
                let hint = suggest(other, TABLE_SECTIONS.iter().chain(ARRAY_SECTIONS));
                ctx.error(
                    key.span(),
                    other,
                    format!("unknown section `{other}`{hint}"),
                );
            }
        }
    }
    Some(doc)
}

/// Ids of every element of a section (all of them; the validator only adds
/// those not otherwise defined).
fn remember_ids(out: &mut Vec<(String, String)>, section: &str, value: &Spanned<DeValue<'_>>) {
    if let DeValue::Array(items) = value.get_ref() {
        for item in items.iter() {
            if let DeValue::Table(t) = item.get_ref() {
                for (k, v) in t.iter() {
                    if k.get_ref().as_ref() == "id"
                        && let DeValue::String(id) = v.get_ref()
                    {
                        out.push((section.to_string(), id.to_string()));
                    }
                }
            }
        }
    }
}

/// A `[table]` section.
fn one<'s, T: DeserializeOwned>(
    ctx: &mut Ctx<'s>,
    name: &str,
    value: Spanned<DeValue<'s>>,
) -> Option<Located<'s, T>> {
    if !matches!(value.get_ref(), DeValue::Table(_)) {
        ctx.error(
            value.span(),
            name,
            format!("`{name}` must be a table: write it as [{name}]"),
        );
        return None;
    }
    element(ctx, name.to_string(), value)
}

/// A `[[array]]` section: each element on its own.
fn many<'s, T: DeserializeOwned>(
    ctx: &mut Ctx<'s>,
    name: &str,
    value: Spanned<DeValue<'s>>,
) -> Vec<Located<'s, T>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| element(ctx, format!("{name}[{i}]"), item))
            .collect(),
        _ => {
            ctx.error(
                span,
                name,
                format!("`{name}` must be a list of tables: write each as [[{name}]]"),
            );
            Vec::new()
        }
    }
}

pub(crate) fn element<'s, T: DeserializeOwned>(
    ctx: &mut Ctx<'s>,
    path: String,
    node: Spanned<DeValue<'s>>,
) -> Option<Located<'s, T>> {
    let de = ValueDeserializer::from(node.clone());
    match T::deserialize(de) {
        Ok(value) => Some(Located { value, node, path }),
        Err(e) => {
            let span = e.span().unwrap_or_else(|| node.span());
            let key = key_at(&node, span.start)
                .map(|k| format!("{path}.{k}"))
                .unwrap_or(path);
            ctx.error(span, key, tidy_serde_message(e.message()));
            None
        }
    }
}

/// The dotted key whose key or value span contains `offset`, inside `node`.
fn key_at(node: &Spanned<DeValue<'_>>, offset: usize) -> Option<String> {
    let DeValue::Table(table) = node.get_ref() else {
        return None;
    };
    for (k, v) in table.iter() {
        let (ks, vs) = (k.span(), v.span());
        if ks.contains(&offset) || vs.contains(&offset) || (vs.end == offset && vs.start < vs.end) {
            let name: &str = k.get_ref().as_ref();
            return Some(match key_at(v, offset) {
                Some(inner) if vs.contains(&offset) => format!("{name}.{inner}"),
                _ => name.to_string(),
            });
        }
    }
    None
}

fn tidy_serde_message(msg: &str) -> String {
    msg.trim().replace('\n', " ")
}

/// ", did you mean `x`?" for a close spelling, else a list of what is allowed.
pub(crate) fn suggest<'a>(
    word: &str,
    allowed: impl Iterator<Item = &'a &'a str> + Clone,
) -> String {
    let best = allowed
        .clone()
        .map(|a| (edit_distance(word, a), *a))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, a)) if d <= 2 => format!(", did you mean `{a}`?"),
        _ => {
            let list: Vec<_> = allowed.map(|a| format!("`{a}`")).collect();
            format!(", expected one of {}", list.join(", "))
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parse a profile document, errors as text (tests and tools).
pub fn validate_profile_text(src: &str, name: &str) -> Result<crate::profile::Profile, String> {
    validate::parse_profile(src, Path::new(name)).map_err(|e| e.to_string())
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
        // One rule per kind: nine, plus battery-low and valve-fault of CJ/T 188 meters.
        assert_eq!(site.alert_rules.len(), 11);
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
