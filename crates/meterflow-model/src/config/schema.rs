//! The shapes of the site file's sections. Every field is documented with its
//! unit; defaults come from named `default_*` functions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::value::Datetime;

use crate::reading::EnergyClass;

/// `[site]`: the site as a whole.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    /// Display name of the site (e.g. the 机关事务管理局's complex).
    pub name: String,
    /// IANA time zone deciding day, month and year boundaries.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Factor set used for kgce and CO₂ conversions (a `factor_set` of the registry).
    #[serde(default = "default_factor_set")]
    pub factor_set: String,
    /// Grid region of the CO₂ grid factor: `national` or `east_china`.
    #[serde(default = "default_grid_region")]
    pub grid_region: String,
    /// Quota set the site is graded against (a `quota_set` of the registry), if any.
    #[serde(default)]
    pub quota_set: Option<String>,
    /// This instance's shard `i/N` of a sharded deployment (ADR 0013);
    /// `meterflow run --shard` overrides it. Absent = the whole site.
    #[serde(default)]
    pub shard: Option<String>,
}

fn default_timezone() -> String {
    "Asia/Shanghai".to_string()
}
fn default_factor_set() -> String {
    "cn-public-institution".to_string()
}
fn default_grid_region() -> String {
    "national".to_string()
}

/// `[store]`: the embedded store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// SQLite database file; relative paths are relative to the config file.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// Days of raw readings to keep (intervals and rollups are kept forever);
    /// absent = keep raw readings forever.
    #[serde(default)]
    pub raw_retention_days: Option<u32>,
    /// Readings per write transaction during import (rows).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// SQLite page cache of the writer (MiB).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: default_store_path(),
            raw_retention_days: None,
            batch_rows: default_batch_rows(),
            cache_mib: default_cache_mib(),
        }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("data/meterflow.db")
}
const fn default_batch_rows() -> usize {
    50_000
}
const fn default_cache_mib() -> u32 {
    256
}

/// `[[building]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Building {
    /// Unique building id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Total building area (建筑面积), m².
    pub total_area_m2: f64,
    /// Office-zone building area (dormitories/residential excluded), m²; defaults to the total.
    #[serde(default)]
    pub office_area_m2: Option<f64>,
    /// Heated area, m².
    #[serde(default)]
    pub heated_area_m2: Option<f64>,
    /// Cooled area, m².
    #[serde(default)]
    pub cooled_area_m2: Option<f64>,
}

/// `[[zone]]`: a floor or wing of a building.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Unique zone id.
    pub id: String,
    /// Building the zone is in.
    pub building: String,
    /// Floor number (basement floors negative).
    #[serde(default)]
    pub floor: Option<i32>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Building area of the zone, m².
    pub area_m2: f64,
}

/// `[[agency]]`: an agency (单位) housed on the site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    /// Unique agency id (used in API scopes, e.g. `agency:<id>`).
    pub id: String,
    /// Display name.
    pub name: String,
}

/// `[[headcount]]`: an agency's persons from a date on (until its next row).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headcount {
    /// Agency id.
    pub agency: String,
    /// First day this row is valid (local date).
    pub from: Datetime,
    /// 用能人数: persons actually working in the office zone, persons.
    pub persons: f64,
    /// 编制: establishment, persons.
    #[serde(default)]
    pub establishment: Option<u32>,
    /// 编外: off-establishment staff, persons.
    #[serde(default)]
    pub off_establishment: Option<u32>,
    /// Where the figure comes from (document, ledger).
    #[serde(default)]
    pub source: Option<String>,
}

/// `[[space]]`: office area an agency occupies in a zone or building over a period.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Space {
    /// Agency id.
    pub agency: String,
    /// Zone occupied (either `zone` or `building`).
    #[serde(default)]
    pub zone: Option<String>,
    /// Building occupied (either `zone` or `building`).
    #[serde(default)]
    pub building: Option<String>,
    /// First day of occupation (local date).
    pub from: Datetime,
    /// Last day of occupation (local date, inclusive); absent = ongoing.
    #[serde(default)]
    pub to: Option<Datetime>,
    /// Office area occupied, m².
    pub area_m2: f64,
}

/// What a meter serves: exactly one of the keys.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Serves {
    /// A whole building.
    #[serde(default)]
    pub building: Option<String>,
    /// A zone (floor, wing).
    #[serde(default)]
    pub zone: Option<String>,
    /// One agency.
    #[serde(default)]
    pub agency: Option<String>,
    /// Several agencies sharing the meter.
    #[serde(default)]
    pub agencies: Option<Vec<String>>,
}

/// How a meter's consumption is split between the agencies it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// All to the one agency served.
    Direct,
    /// By occupied area share at that time (default for shared meters).
    AreaShare,
    /// By the fixed `shares` of the meter.
    Fixed,
}

/// `[[meter]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meter {
    /// Unique meter id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Energy class: electricity, water, gas, heat, cooling.
    pub kind: EnergyClass,
    /// Unit of the counter after scale and multiplier (kWh, MWh, m3, L, GJ, MJ).
    pub unit: String,
    /// Metering level (GB 17167): 1 site, 2 building/department, 3 equipment.
    #[serde(default = "default_level")]
    pub level: u8,
    /// Parent meter id (for balance checks).
    #[serde(default)]
    pub parent: Option<String>,
    /// Electricity sub-item (分项): A, A1–A3, B, B1–B2, C, C1–C3, D.
    #[serde(default)]
    pub subitem: Option<String>,
    /// What the meter serves.
    pub serves: Serves,
    /// Allocation between agencies; default: direct for one agency, area_share otherwise.
    #[serde(default)]
    pub allocation: Option<Allocation>,
    /// Fixed shares by agency id (fractions summing to 1) when `allocation = "fixed"`.
    #[serde(default)]
    pub shares: BTreeMap<String, f64>,
    /// Transformer ratio CT × PT (互感器倍率), dimensionless.
    #[serde(default = "default_one")]
    pub multiplier: f64,
    /// Factor from the source's value to the register value (e.g. 0.01 for a raw integer in 0.01 kWh).
    #[serde(default = "default_one")]
    pub scale: f64,
    /// Register value at which the counter wraps to zero (after scale, before multiplier).
    #[serde(default)]
    pub rollover: Option<f64>,
    /// Maximum plausible rate, counter unit per hour (kW for kWh, m³/h for m³); absent = no spike check.
    #[serde(default)]
    pub max_rate: Option<f64>,
    /// Expected seconds between readings, s; default: the Modbus `poll_s`, else 900.
    #[serde(default)]
    pub interval_s: Option<u32>,
    /// Counter quantity normalised into intervals; default from `kind`.
    #[serde(default)]
    pub quantity: Option<String>,
    /// Source values that mean "invalid" (compared before scale): rejected, never zero.
    #[serde(default = "default_sentinels")]
    pub sentinels: Vec<f64>,
    /// Intervals without a good reading before `meter_silent` is raised, count.
    #[serde(default = "default_silent_after")]
    pub silent_after: u32,
    /// Polled over Modbus: bus, unit, profile and rates.
    #[serde(default)]
    pub modbus: Option<ModbusSource>,
    /// Polled over DL/T 645-2007: bus, address, identifiers.
    #[serde(default)]
    pub dlt645: Option<Dlt645Source>,
    /// Polled over CJ/T 188: bus, address, meter type.
    #[serde(default)]
    pub cjt188: Option<Cjt188Source>,
}

impl Meter {
    /// The counter quantity normalised into intervals.
    pub fn counter_quantity(&self) -> &str {
        self.quantity
            .as_deref()
            .unwrap_or_else(|| self.kind.default_quantity())
    }

    /// Expected seconds between readings.
    pub fn effective_interval_s(&self) -> u32 {
        self.interval_s
            .or(self.modbus.as_ref().map(|m| m.poll_s))
            .unwrap_or(900)
    }

    /// Effective allocation.
    pub fn effective_allocation(&self) -> Allocation {
        self.allocation
            .unwrap_or(if self.serves.agencies.is_some() {
                Allocation::AreaShare
            } else if self.serves.agency.is_some() {
                Allocation::Direct
            } else {
                Allocation::AreaShare
            })
    }
}

const fn default_level() -> u8 {
    2
}
const fn default_one() -> f64 {
    1.0
}
const fn default_silent_after() -> u32 {
    3
}

/// Sentinel patterns of `domain.md` §1: 0xFFFF, 0x7FFF, 0x8000_0000, 0xFFFF_FFFF.
pub fn default_sentinels() -> Vec<f64> {
    vec![65535.0, 32767.0, 2_147_483_648.0, 4_294_967_295.0]
}

/// `[[replacement]]`: an operator-declared meter replacement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replacement {
    /// Meter id (the logical meter continues under the same id).
    pub meter: String,
    /// When the old meter was removed and the new one fitted (local time, or with offset).
    pub at: Datetime,
    /// Old meter's final register value (source units).
    pub old_final: f64,
    /// New meter's initial register value (source units).
    pub new_initial: f64,
    /// Free text (work order, technician).
    #[serde(default)]
    pub note: Option<String>,
}

/// A replacement resolved to UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplacementEvent {
    /// Meter id.
    pub meter: String,
    /// Instant, ms since the Unix epoch.
    pub ts_ms: i64,
    /// Old meter's final register value (source units).
    pub old_final: f64,
    /// New meter's initial register value (source units).
    pub new_initial: f64,
}

/// Transport of a Modbus bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Modbus TCP (MBAP framing).
    Tcp,
    /// Modbus RTU on a local serial port.
    Rtu,
    /// Modbus RTU frames through a serial-to-TCP gateway (transparent mode).
    RtuOverTcp,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    /// None (8N1).
    #[default]
    None,
    /// Even (8E1; DL/T 645 default).
    Even,
    /// Odd.
    Odd,
}

/// `[[bus]]`: one Modbus line or gateway. Exactly one request is in flight per
/// bus, except for true Modbus TCP devices with `concurrency > 1`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bus {
    /// Unique bus id (also the shard key when scaling out).
    pub id: String,
    /// Transport.
    pub transport: Transport,
    /// `host:port` for `tcp` and `rtu_over_tcp`.
    #[serde(default)]
    pub address: Option<String>,
    /// Serial device for `rtu`, e.g. `/dev/ttyUSB0`.
    #[serde(default)]
    pub device: Option<String>,
    /// Baud rate for `rtu` (and for frame-time maths of `rtu_over_tcp`), bit/s.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Parity for `rtu`.
    #[serde(default)]
    pub parity: Parity,
    /// Stop bits for `rtu` (1 or 2).
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Time to wait for one response, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of a failed request within one poll.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Requests in flight at once (`tcp` only; serial lines and gateways are always 1).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Pause between frames, ms; default 3.5 character times (1.75 ms above 19 200 Bd).
    #[serde(default)]
    pub inter_frame_ms: Option<f64>,
    /// Registers a coalesced read may skip between two fields.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// Registers per read (Modbus allows at most 125).
    #[serde(default = "default_max_registers")]
    pub max_registers: u16,
}

const fn default_baud() -> u32 {
    9600
}
const fn default_stop_bits() -> u8 {
    1
}
const fn default_timeout_ms() -> u64 {
    1000
}
const fn default_retries() -> u32 {
    1
}
const fn default_concurrency() -> usize {
    1
}
const fn default_max_gap() -> u16 {
    10
}
const fn default_max_registers() -> u16 {
    125
}

/// `meter.modbus`: where and how a meter is polled.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModbusSource {
    /// Bus id.
    pub bus: String,
    /// Unit (slave) id, 1–247 (255 also for Modbus TCP devices).
    pub unit: u8,
    /// Profile name (shipped or `[[profile]]`).
    pub profile: String,
    /// Poll period of the `energy` group, s (polls are aligned to the clock).
    #[serde(default = "default_poll_s")]
    pub poll_s: u32,
    /// Poll period of the `fast` group, s; absent = not polled.
    #[serde(default)]
    pub fast_poll_s: Option<u32>,
}

const fn default_poll_s() -> u32 {
    60
}

/// `meter.dlt645`: a DL/T 645-2007 electricity meter on a serial bus or gateway.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dlt645Source {
    /// Bus id (`rtu` or `rtu_over_tcp`; 2400 8E1 is the usual line setting).
    pub bus: String,
    /// Meter address, 12 digits as printed (`000000001234`).
    pub address: String,
    /// Data identifiers to read, `DI3DI2DI1DI0` hex (shipped or `[[dlt645_item]]`);
    /// default: forward active total energy.
    #[serde(default = "default_dlt645_items")]
    pub items: Vec<String>,
    /// Poll period, s.
    #[serde(default = "default_poll_s")]
    pub poll_s: u32,
}

fn default_dlt645_items() -> Vec<String> {
    vec!["00010000".to_string()]
}

/// `[[dlt645_item]]`: a DL/T 645 data identifier the site adds (or redefines).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dlt645Item {
    /// Identifier, `DI3DI2DI1DI0` hex, e.g. `00010000`.
    pub di: String,
    /// meterflow quantity.
    pub quantity: String,
    /// BCD bytes of the value.
    pub bytes: u8,
    /// Decimal places.
    pub decimals: u8,
    /// Bit 7 of the most significant byte is the sign.
    #[serde(default)]
    pub signed: bool,
}

/// CJ/T 188 meter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cjt188Type {
    /// 0x10.
    ColdWater,
    /// 0x11.
    HotWater,
    /// 0x20.
    Heat,
    /// 0x21.
    Cooling,
    /// 0x30.
    Gas,
}

impl Cjt188Type {
    /// The type byte T.
    pub fn byte(self) -> u8 {
        match self {
            Cjt188Type::ColdWater => 0x10,
            Cjt188Type::HotWater => 0x11,
            Cjt188Type::Heat => 0x20,
            Cjt188Type::Cooling => 0x21,
            Cjt188Type::Gas => 0x30,
        }
    }
}

/// `meter.cjt188`: a CJ/T 188 water, heat or gas meter.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cjt188Source {
    /// Bus id (`rtu` or `rtu_over_tcp`).
    pub bus: String,
    /// Meter address, 14 hex digits in wire order (A0 first), e.g. `12000000000000`.
    pub address: String,
    /// Meter type.
    #[serde(default = "default_cjt188_type")]
    pub meter_type: Cjt188Type,
    /// Byte order of the DI `90 1F` on the wire: `"901F"` or `"1F90"`.
    #[serde(default = "default_cjt188_di")]
    pub di: String,
    /// Poll period, s.
    #[serde(default = "default_poll_s")]
    pub poll_s: u32,
}

const fn default_cjt188_type() -> Cjt188Type {
    Cjt188Type::ColdWater
}

fn default_cjt188_di() -> String {
    "901F".to_string()
}

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

/// `[http]`: InfluxDB-compatible push ingest (`POST /write`, `POST /api/v2/write`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngest {
    /// Address to listen on, e.g. `127.0.0.1:8086`.
    pub listen: String,
    /// Environment variable holding the write token (required: writes are authenticated).
    pub token_env: String,
    /// Largest request body after decompression, KiB.
    #[serde(default = "default_max_body_kib")]
    pub max_body_kib: usize,
}

const fn default_max_body_kib() -> usize {
    10 * 1024
}

/// `[alerting]`: how often alert rules are evaluated and how notifications are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerting {
    /// Seconds between evaluations while `meterflow run` runs.
    #[serde(default = "default_alert_interval")]
    pub interval_s: u64,
    /// First retry delay of an undelivered notification, s (doubles up to `retry_max_s`).
    #[serde(default = "default_retry_initial")]
    pub retry_initial_s: f64,
    /// Longest retry delay, s.
    #[serde(default = "default_retry_max")]
    pub retry_max_s: f64,
    /// Give up on a notification after this many attempts (it stays in the history).
    #[serde(default = "default_retry_attempts")]
    pub max_attempts: u32,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            interval_s: default_alert_interval(),
            retry_initial_s: default_retry_initial(),
            retry_max_s: default_retry_max(),
            max_attempts: default_retry_attempts(),
        }
    }
}

const fn default_alert_interval() -> u64 {
    300
}
const fn default_retry_initial() -> f64 {
    5.0
}
const fn default_retry_max() -> f64 {
    900.0
}
const fn default_retry_attempts() -> u32 {
    50
}

/// What an alert rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Year to date above the quota's 约束值 pro-rated to the days with data (ratio > threshold, default 1).
    QuotaOverrun,
    /// Projected year end above the quota's 约束值 (ratio > threshold, default 1).
    QuotaProjection,
    /// Mean power in off-hours above a share of the last working day's working-hours mean (default 0.5).
    OffHoursBaseload,
    /// Minimum hourly night flow above `threshold` m³/h (default 0.02) on `nights` nights in a row (default 3).
    NightFlow,
    /// Parent meter − Σ children above `threshold` × parent on the last complete day (default 0.1).
    Imbalance,
    /// No reading for more than `threshold` × the meter's `silent_after` intervals (default 1).
    MeterSilent,
    /// A `counter_reset` anomaly within the last `window_s` (default 1 day).
    CounterReset,
    /// An `implausible_delta` anomaly within the last `window_s` (default 1 day).
    ImplausibleDelta,
    /// Share of failed polls of a bus above `threshold` (default 0.2).
    BusErrorRate,
    /// A CJ/T 188 meter reports a low battery in its last reading.
    BatteryLow,
    /// A CJ/T 188 meter reports its valve abnormal in its last reading.
    ValveFault,
}

impl AlertKind {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::QuotaOverrun => "quota_overrun",
            AlertKind::QuotaProjection => "quota_projection",
            AlertKind::OffHoursBaseload => "off_hours_baseload",
            AlertKind::NightFlow => "night_flow",
            AlertKind::Imbalance => "imbalance",
            AlertKind::MeterSilent => "meter_silent",
            AlertKind::CounterReset => "counter_reset",
            AlertKind::ImplausibleDelta => "implausible_delta",
            AlertKind::BusErrorRate => "bus_error_rate",
            AlertKind::BatteryLow => "battery_low",
            AlertKind::ValveFault => "valve_fault",
        }
    }
}

/// Severity of an alert rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    /// Informational.
    Info,
    /// Needs a look.
    Warning,
    /// Needs action now.
    Critical,
}

impl AlertSeverity {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        }
    }
}

/// `[[alert]]`: one rule. Without any, a default set is used (see `Site::alert_rules`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique rule id.
    pub id: String,
    /// What it watches.
    pub kind: AlertKind,
    /// Severity.
    #[serde(default = "default_severity")]
    pub severity: AlertSeverity,
    /// The condition must hold this long before the alert fires, s.
    #[serde(default)]
    pub for_s: u64,
    /// A firing alert resolves once the value is this fraction back past the threshold.
    #[serde(default = "default_hysteresis")]
    pub hysteresis: f64,
    /// Threshold; its meaning and default depend on `kind`.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// For quota and off-hours rules: `agency`, `building` or `site` (default agency / building).
    #[serde(default)]
    pub level: Option<String>,
    /// Only these agencies, buildings, meters or buses (default: all that apply).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Working hours, local `HH:MM-HH:MM` (off-hours rule; default 08:00-18:00).
    #[serde(default)]
    pub work_hours: Option<String>,
    /// Working days, 1 = Monday … 7 = Sunday (default 1-5).
    #[serde(default)]
    pub workdays: Option<Vec<u8>>,
    /// Holidays (off-hours all day).
    #[serde(default)]
    pub holidays: Vec<Datetime>,
    /// Night window, local `HH:MM-HH:MM` (night-flow rule; default 01:00-05:00).
    #[serde(default)]
    pub night: Option<String>,
    /// Nights in a row (night-flow rule; default 3).
    #[serde(default)]
    pub nights: Option<u32>,
    /// Look-back window of anomaly rules, s (default 86 400).
    #[serde(default)]
    pub window_s: Option<u64>,
}

const fn default_severity() -> AlertSeverity {
    AlertSeverity::Warning
}
const fn default_hysteresis() -> f64 {
    0.05
}

/// How a notifier delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    /// Generic JSON webhook, HMAC-SHA256 signature header when `secret_env` is set.
    Webhook,
    /// WeCom (企业微信) group robot.
    Wecom,
    /// DingTalk (钉钉) robot, signed when `secret_env` is set.
    Dingtalk,
    /// Feishu / Lark (飞书) robot, signed when `secret_env` is set.
    Feishu,
    /// An MQTT topic on a `[[mqtt]]` broker or the embedded one.
    Mqtt,
    /// The process log.
    Log,
}

/// `[[notifier]]`: where alert notifications go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// Unique notifier id.
    pub id: String,
    /// Delivery kind.
    pub kind: NotifierKind,
    /// URL (webhook and robots); robot URLs carry a key, so prefer `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Environment variable holding the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the signing secret (relative to the site file), instead of `secret_env`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// MQTT: topic (default `meterflow/alerts`).
    #[serde(default)]
    pub topic: Option<String>,
    /// MQTT: `[[mqtt]]` broker id, or `embedded` for `[broker]`.
    #[serde(default)]
    pub broker: Option<String>,
    /// Only alerts of at least this severity.
    #[serde(default = "default_min_severity")]
    pub min_severity: AlertSeverity,
    /// Request timeout, s.
    #[serde(default = "default_notify_timeout")]
    pub timeout_s: f64,
}

const fn default_min_severity() -> AlertSeverity {
    AlertSeverity::Info
}
const fn default_notify_timeout() -> f64 {
    10.0
}

/// Which InfluxDB write API the sink uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfluxApi {
    /// `/write?db=&rp=` with basic auth: InfluxDB 1.x and the v1 compatibility
    /// endpoints of 2.x and 3.x.
    V1,
    /// `/api/v2/write?org=&bucket=` with `Authorization: Token`: InfluxDB 2.x and 3.x.
    V2,
}

/// What the writer does when the outbox reaches `outbox_max_mib`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxFull {
    /// Stop committing (sources are not acknowledged and slow down) until the
    /// sink drains: nothing is dropped. The default.
    Block,
    /// Drop the oldest waiting points, counted and logged. The store keeps everything.
    DropOldest,
}

/// `[influx]`: the InfluxDB sink, fed from the store's durable outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxSink {
    /// Base URL, e.g. `http://127.0.0.1:8086` (https for TLS).
    pub url: String,
    /// Write API.
    #[serde(default = "default_influx_api")]
    pub api: InfluxApi,
    /// v1: database.
    #[serde(default)]
    pub database: Option<String>,
    /// v1: retention policy (default: the database's default).
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// v1: user name for basic auth.
    #[serde(default)]
    pub username: Option<String>,
    /// v1: environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// v1: file holding the password (relative to the site file).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// v2: organisation.
    #[serde(default)]
    pub org: Option<String>,
    /// v2: bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2: environment variable holding the API token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// v2: file holding the API token (relative to the site file).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust for https, e.g. a site's own CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Largest batch, points.
    #[serde(default = "default_batch_points")]
    pub batch_points: usize,
    /// Largest batch, KiB (before gzip).
    #[serde(default = "default_batch_kib")]
    pub batch_kib: usize,
    /// Longest wait for a batch to fill, ms.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Compress request bodies.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Request timeout, s.
    #[serde(default = "default_influx_timeout")]
    pub timeout_s: f64,
    /// First retry delay, s (doubles up to `retry_max_s`, with jitter).
    #[serde(default = "default_influx_retry_initial")]
    pub retry_initial_s: f64,
    /// Longest retry delay, s.
    #[serde(default = "default_influx_retry_max")]
    pub retry_max_s: f64,
    /// Outbox bound on disk, MiB.
    #[serde(default = "default_outbox_mib")]
    pub outbox_max_mib: u64,
    /// Policy when the outbox is full.
    #[serde(default = "default_outbox_full")]
    pub when_full: OutboxFull,
    /// Also write every raw reading (`reading`); the 15-minute consumption is always written.
    #[serde(default = "default_true")]
    pub raw_readings: bool,
    /// Seconds between KPI and health points.
    #[serde(default = "default_kpi_interval")]
    pub kpi_interval_s: u64,
    /// `instance` tag of the pipeline's health points (default: the host name).
    #[serde(default)]
    pub instance: Option<String>,
}

const fn default_influx_api() -> InfluxApi {
    InfluxApi::V1
}
const fn default_batch_points() -> usize {
    5000
}
const fn default_batch_kib() -> usize {
    1024
}
const fn default_flush_ms() -> u64 {
    1000
}
const fn default_true() -> bool {
    true
}
const fn default_influx_timeout() -> f64 {
    10.0
}
const fn default_influx_retry_initial() -> f64 {
    0.5
}
const fn default_influx_retry_max() -> f64 {
    60.0
}
const fn default_outbox_mib() -> u64 {
    1024
}
const fn default_outbox_full() -> OutboxFull {
    OutboxFull::Block
}
const fn default_kpi_interval() -> u64 {
    60
}

/// `[api]`: the read API (`/api/v1`), the overview page and Prometheus metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// File of hashed tokens (relative to the site file): one `ROLE sha256:HEX` per
    /// line; roles `admin`, `manager`, `clerk:LEDGER`, `agency:ID`. `meterflow token` makes lines.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// Environment variable holding `ROLE=TOKEN` pairs separated by spaces (hashed at start).
    #[serde(default)]
    pub tokens_env: Option<String>,
    /// Serve the overview page `/` without a token (site-wide figures; for a
    /// wall screen or the demo). Default: a manager or admin token is needed.
    #[serde(default)]
    pub public_overview: bool,
    /// Failed authentications per minute from one address before it gets 429.
    #[serde(default = "default_auth_failures")]
    pub max_auth_failures: u32,
}

const fn default_auth_failures() -> u32 {
    20
}

/// `[waste]`: settings of the waste-sorting ledger (`domain.md` §10).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasteSettings {
    /// Incentive: CNY per kg by category (`recyclable`, `kitchen`, `hazardous`,
    /// `residual`); without it no points are computed.
    #[serde(default)]
    pub price_per_kg: BTreeMap<String, f64>,
    /// CNY per incentive point (default 0.1).
    #[serde(default = "default_point_value")]
    pub point_value_cny: f64,
    /// Target 回收利用率, % (default 35).
    #[serde(default = "default_recovery_target")]
    pub recovery_target_pct: f64,
}

impl Default for WasteSettings {
    fn default() -> Self {
        WasteSettings {
            price_per_kg: BTreeMap::new(),
            point_value_cny: default_point_value(),
            recovery_target_pct: default_recovery_target(),
        }
    }
}

const fn default_point_value() -> f64 {
    0.1
}
const fn default_recovery_target() -> f64 {
    35.0
}

/// `[office]`: settings of the office-space ledger (`domain.md` §9).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeSettings {
    /// Which table of the 2014 standard the occupants' ranks come from:
    /// `central`, `provincial`, `city` or `county`. No default: a wrong table
    /// would grade every room silently, so occupants are refused until it is set.
    #[serde(default)]
    pub level: Option<String>,
}

/// `[fleet]`: settings of the vehicle ledger (`domain.md` §8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSettings {
    /// Routine check every this many km (default 2 500).
    #[serde(default = "default_routine_km")]
    pub routine_km: f64,
    /// Regular service every this many km (default 7 000).
    #[serde(default = "default_service_km")]
    pub service_km: f64,
    /// Tyres every this many km (default 70 000).
    #[serde(default = "default_tyres_km")]
    pub tyres_km: f64,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            routine_km: default_routine_km(),
            service_km: default_service_km(),
            tyres_km: default_tyres_km(),
        }
    }
}

const fn default_routine_km() -> f64 {
    2_500.0
}
const fn default_service_km() -> f64 {
    7_000.0
}
const fn default_tyres_km() -> f64 {
    70_000.0
}
