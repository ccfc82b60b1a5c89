//! The site file read into its sections, element by element, so that one
//! mistake does not hide the next: each element is deserialized on its own
//! and keeps its span; elements that fail still register their `id`.

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::factors::{FactorRow, QuotaRow, TargetRow};

use super::document::{Ctx, Located, element, suggest};
use super::*;

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
    pub(crate) cjt188_layouts: Vec<Located<'s, Cjt188Layout>>,
    pub(crate) tariffs: Vec<Located<'s, super::tariffs::Tariff>>,
    pub(crate) budgets: Vec<Located<'s, super::tariffs::Budget>>,
    pub(crate) api: Option<Located<'s, ApiConfig>>,
    pub(crate) waste: Option<Located<'s, WasteSettings>>,
    pub(crate) office: Option<Located<'s, OfficeSettings>>,
    pub(crate) fleet: Option<Located<'s, FleetSettings>>,
    pub(crate) backup: Option<Located<'s, BackupSection>>,
    pub(crate) profiles: Vec<Located<'s, crate::profile::Profile>>,
    /// `(section, id)` of elements that failed to deserialize: their ids still
    /// count as defined, so one typo does not cascade into dangling references.
    pub(crate) failed_ids: Vec<(String, String)>,
}

pub(crate) const TABLE_SECTIONS: &[&str] = &[
    "site", "store", "broker", "http", "alerting", "influx", "api", "waste", "office", "fleet",
    "backup",
];

pub(crate) const ARRAY_SECTIONS: &[&str] = &[
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
    "cjt188_layout",
    "tariff",
    "budget",
];

pub(crate) fn read_document<'s>(ctx: &mut Ctx<'s>) -> Option<RawDocument<'s>> {
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
        cjt188_layouts: Vec::new(),
        tariffs: Vec::new(),
        budgets: Vec::new(),
        api: None,
        waste: None,
        office: None,
        fleet: None,
        backup: None,
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
            "cjt188_layout" => doc.cjt188_layouts = many(ctx, "cjt188_layout", value),
            "tariff" => doc.tariffs = many(ctx, "tariff", value),
            "budget" => doc.budgets = many(ctx, "budget", value),
            "api" => doc.api = one(ctx, "api", value),
            "waste" => doc.waste = one(ctx, "waste", value),
            "office" => doc.office = one(ctx, "office", value),
            "fleet" => doc.fleet = one(ctx, "fleet", value),
            "backup" => doc.backup = one(ctx, "backup", value),
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
pub(crate) fn remember_ids(
    out: &mut Vec<(String, String)>,
    section: &str,
    value: &Spanned<DeValue<'_>>,
) {
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
pub(crate) fn one<'s, T: DeserializeOwned>(
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
pub(crate) fn many<'s, T: DeserializeOwned>(
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
