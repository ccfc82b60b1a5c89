//! `[[mqtt]]` brokers, their topic mappings and RFID topics, with their
//! checks.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

use super::checks::*;
use super::document::{Ctx, Located, suggest};
use super::*;

/// `[[mqtt]]`: a broker to subscribe to, with its topic mappings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttBroker {
    /// Unique id.
    pub id: String,
    /// Broker host.
    pub host: String,
    /// Broker port (1883, 8883 for TLS).
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// Stable client id: the broker keeps the session (and queued QoS 1 messages) under it.
    pub client_id: String,
    /// Username, if the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the password (secrets never live in the file).
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (e.g. a mounted secret).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connect with TLS.
    #[serde(default)]
    pub tls: bool,
    /// CA certificate (PEM) for TLS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Subscription QoS: 0 or 1 (1: acknowledged only after the commit).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Keep-alive, s.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// Largest accepted payload, KiB (larger packets are refused by size).
    #[serde(default = "default_max_packet_kib")]
    pub max_packet_kib: usize,
    /// Join a shared subscription `$share/<group>/<filter>` so several instances split the stream.
    #[serde(default)]
    pub shared_group: Option<String>,
    /// Topic mappings.
    #[serde(default)]
    pub topic: Vec<MqttTopic>,
    /// RFID reader topics: scans into the asset ledger (`[[mqtt.rfid]]`).
    #[serde(default)]
    pub rfid: Vec<RfidTopic>,
}

/// `[[mqtt.rfid]]`: a topic where RFID readers publish scans. The payload is
/// JSON: `{"epc": …}` or `{"tags": [epc, …]}` (one inventory round), with
/// optional `room`, `reader` and `time` (RFC 3339, s or ms; absent: receive
/// time). Room and reader may come from `{room}` / `{reader}` topic segments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RfidTopic {
    /// Topic pattern, e.g. `rfid/{room}/{reader}`.
    pub pattern: String,
    /// The room, when neither the topic nor the payload names it.
    #[serde(default)]
    pub room: Option<String>,
}

const fn default_mqtt_port() -> u16 {
    1883
}
const fn default_qos() -> u8 {
    1
}
const fn default_keep_alive_s() -> u64 {
    30
}
const fn default_max_packet_kib() -> usize {
    256
}

/// Payload formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// JSON, with field paths.
    Json,
    /// A plain number.
    Number,
    /// InfluxDB line protocol (meter tag).
    LineProtocol,
    /// Sparkplug-style JSON: `{"timestamp": ms, "metrics": [{"name", "value", "timestamp"}]}`.
    Sparkplug,
}

/// Unit of numeric timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampUnit {
    /// By magnitude: seconds, milliseconds, microseconds or nanoseconds.
    #[default]
    Auto,
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Nanoseconds.
    Ns,
}

/// `[[mqtt.topic]]`: which topics carry which readings, and how to decode them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTopic {
    /// Topic pattern with named segments, e.g. `meters/{building}/{meter_id}/energy`;
    /// `+` and a trailing `#` are allowed too. `{meter_id}` names the meter.
    pub pattern: String,
    /// Payload format.
    pub format: PayloadFormat,
    /// The meter, when the topic has no `{meter_id}` and the payload no meter field.
    #[serde(default)]
    pub meter: Option<String>,
    /// The quantity of a single value; default: the meter's counter quantity.
    #[serde(default)]
    pub quantity: Option<String>,
    /// JSON path (dotted) of the value, e.g. `reading.value`.
    #[serde(default)]
    pub value: Option<String>,
    /// JSON keys read as quantities of the same message, e.g. `["energy_import", "power"]`.
    #[serde(default)]
    pub fields: Vec<String>,
    /// JSON path of the timestamp (seconds, ms, µs, ns or RFC 3339); absent: receive time.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Unit of numeric timestamps.
    #[serde(default)]
    pub timestamp_unit: TimestampUnit,
    /// JSON path of an array of readings (one message, several meters or quantities).
    #[serde(default)]
    pub items: Option<String>,
    /// JSON key of the meter id inside each item (or the message).
    #[serde(default)]
    pub meter_field: Option<String>,
    /// JSON key of the quantity inside each item.
    #[serde(default)]
    pub quantity_field: Option<String>,
}

/// `[broker]`: run an MQTT broker inside meterflow (zero setup; no TLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBroker {
    /// Address to listen on, e.g. `127.0.0.1:1883`.
    pub listen: String,
}

/// `[[mqtt]]`, `[broker]` and `[http]`.
pub(crate) fn validate_mqtt(
    ctx: &mut Ctx<'_>,
    meters: &[Located<'_, Meter>],
    failed_ids: &[(String, String)],
    mqtt: &[Located<'_, MqttBroker>],
) -> Vec<MqttBroker> {
    unique_ids(ctx, mqtt, |b| &b.id, "mqtt broker");
    let meter_ids: BTreeSet<&str> = meters
        .iter()
        .map(|m| m.value.id.as_str())
        .chain(
            failed_ids
                .iter()
                .filter(|(s, _)| s == "meter")
                .map(|(_, id)| id.as_str()),
        )
        .collect();
    for b in mqtt {
        let v = &b.value;
        if v.qos > 1 {
            ctx.error(
                b.span_of(&["qos"]),
                b.key("qos"),
                "QoS 0 or 1 (1 acknowledges only after the reading is committed)",
            );
        }
        if v.client_id.is_empty() || v.client_id.len() > 64 {
            ctx.error(
                b.span_of(&["client_id"]),
                b.key("client_id"),
                "a stable, non-empty client id of at most 64 characters",
            );
        }
        for (i, r) in v.rfid.iter().enumerate() {
            if r.pattern.trim().is_empty() || r.pattern.contains('#') && !r.pattern.ends_with('#') {
                ctx.error(
                    b.span_of(&["rfid"]),
                    b.key(&format!("rfid[{i}].pattern")),
                    "a topic pattern (segments, `{room}`, `{reader}`, `+`, a trailing `#`)",
                );
            }
        }
        if v.password_env.is_some() && v.password_file.is_some() {
            ctx.error(
                b.span_of(&["password_file"]),
                b.key("password_file"),
                "give the password by `password_env` or `password_file`, not both",
            );
        }
        if !v.tls && (v.ca_file.is_some() || v.client_cert_file.is_some()) {
            ctx.error(
                b.span_of(&["tls"]),
                b.key("tls"),
                "certificates are given but `tls` is not true",
            );
        }
        if v.client_cert_file.is_some() != v.client_key_file.is_some() {
            ctx.error(
                b.span_of(&["client_cert_file"]),
                b.key("client_cert_file"),
                "mutual TLS needs both `client_cert_file` and `client_key_file`",
            );
        }
        if v.max_packet_kib == 0 || v.keep_alive_s < 5 {
            ctx.error(
                b.span_of(&[]),
                b.key(""),
                "max_packet_kib must be positive and keep_alive_s at least 5",
            );
        }
        if let Some(g) = &v.shared_group
            && (g.is_empty() || g.contains(['/', '+', '#']))
        {
            ctx.error(
                b.span_of(&["shared_group"]),
                b.key("shared_group"),
                "a share group name without `/`, `+` or `#`",
            );
        }
        for (i, t) in v.topic.iter().enumerate() {
            let idx = i.to_string();
            let at = |k: &str| b.span_of(&["topic", &idx, k]);
            let key = |k: &str| b.key(&format!("topic[{i}].{k}"));
            if let Err(e) = check_pattern(&t.pattern) {
                ctx.error(at("pattern"), key("pattern"), e);
            }
            let names_meter = t.pattern.contains("{meter_id}")
                || t.meter.is_some()
                || t.meter_field.is_some()
                || t.format == PayloadFormat::LineProtocol;
            if !names_meter {
                ctx.error(at("pattern"), key("pattern"), "nothing names the meter: use {meter_id} in the pattern, `meter`, or `meter_field`");
            }
            if let Some(m) = &t.meter
                && !meter_ids.contains(m.as_str())
            {
                let names: Vec<&str> = meter_ids.iter().copied().collect();
                let hint = suggest(m, names.iter());
                ctx.error(at("meter"), key("meter"), format!("no meter `{m}`{hint}"));
            }
            if t.format == PayloadFormat::Json
                && t.value.is_none()
                && t.fields.is_empty()
                && t.items.is_none()
            {
                ctx.error(
                    at("format"),
                    key("format"),
                    "a JSON mapping needs `value`, `fields` or `items`",
                );
            }
            for q in t.quantity.iter().chain(t.fields.iter()) {
                if !is_snake_case(q) {
                    ctx.error(
                        at("quantity"),
                        key("quantity"),
                        format!("quantity names are ASCII snake_case, got `{q}`"),
                    );
                }
            }
        }
    }
    mqtt.iter().map(|b| b.value.clone()).collect()
}

/// A topic pattern: `/`-separated literals, `+`, `{name}`, and `#` last.
pub(crate) fn check_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty topic pattern".into());
    }
    let segs: Vec<&str> = p.split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        if *s == "#" && i != segs.len() - 1 {
            return Err("`#` may only be the last segment".into());
        }
        if s.starts_with('{') != s.ends_with('}') {
            return Err(format!(
                "segment `{s}`: a named segment is written {{name}}"
            ));
        }
        if s.starts_with('{') && !is_snake_case(&s[1..s.len() - 1]) {
            return Err(format!("segment `{s}`: the name must be snake_case"));
        }
        if s.len() > 1 && (s.contains('+') || s.contains('#')) {
            return Err(format!("segment `{s}`: `+` and `#` stand alone"));
        }
    }
    Ok(())
}
