//! Line-protocol encoding for the portable subset that InfluxDB 1.x, 2.x and
//! 3.x all accept, on InfluxData's `influxdb-line-protocol` builder with our
//! checks on top:
//!
//! - measurement, tag and field names are ASCII snake_case (`[a-z][a-z0-9_]*`);
//! - every point belongs to a declared [`Measurement`]: its tags and fields are
//!   listed there and each field has one type for good, so a field can never
//!   change type between points (InfluxDB refuses such a write) and no tag
//!   shares a name with a field;
//! - tag values are never empty (an empty value drops the tag) and never hold a
//!   backslash (replaced by `/`) or a line break (replaced by a space);
//! - string fields hold no line break (replaced by a space);
//! - floats are finite (a non-finite float field is left out); integers carry
//!   `i`, never `u`;
//! - tags are written sorted by key (InfluxDB's preferred order) and lines end
//!   in `\n`; timestamps are milliseconds (`precision=ms` on the request).

use std::fmt;

use influxdb_line_protocol::builder::LineProtocolBuilder;

/// Type of a field, fixed per measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// 64-bit float.
    Float,
    /// Signed 64-bit integer (`i` suffix).
    Int,
    /// String.
    Str,
    /// Boolean.
    Bool,
}

impl FieldType {
    /// Name in the schema document.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Int => "integer",
            FieldType::Str => "string",
            FieldType::Bool => "boolean",
        }
    }
}

/// A field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Float (skipped when not finite).
    F(f64),
    /// Integer.
    I(i64),
    /// String.
    S(&'a str),
    /// Boolean.
    B(bool),
}

impl Value<'_> {
    fn kind(&self) -> FieldType {
        match self {
            Value::F(_) => FieldType::Float,
            Value::I(_) => FieldType::Int,
            Value::S(_) => FieldType::Str,
            Value::B(_) => FieldType::Bool,
        }
    }
}

/// A declared measurement: its name, tag keys and typed fields.
#[derive(Debug)]
pub struct Measurement {
    /// Name.
    pub name: &'static str,
    /// What one point is.
    pub doc: &'static str,
    /// Tag keys, with what they hold.
    pub tags: &'static [(&'static str, &'static str)],
    /// Fields: key, type, unit or meaning.
    pub fields: &'static [(&'static str, FieldType, &'static str)],
}

/// Why a point was not encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LpError {
    /// A name is not ASCII snake_case.
    BadName(String),
    /// A tag not declared for the measurement.
    UnknownTag(&'static str, String),
    /// A field not declared for the measurement.
    UnknownField(&'static str, String),
    /// A field given with another type than declared.
    WrongType {
        /// Measurement.
        measurement: &'static str,
        /// Field.
        field: String,
        /// Declared type.
        declared: FieldType,
    },
    /// No field left (all were non-finite floats): InfluxDB needs at least one.
    NoFields(&'static str),
}

impl fmt::Display for LpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LpError::BadName(n) => write!(f, "{n:?} is not an ASCII snake_case name"),
            LpError::UnknownTag(m, t) => write!(f, "measurement {m} has no tag {t:?}"),
            LpError::UnknownField(m, x) => write!(f, "measurement {m} has no field {x:?}"),
            LpError::WrongType {
                measurement,
                field,
                declared,
            } => write!(
                f,
                "field {field:?} of {measurement} is declared {}",
                declared.as_str()
            ),
            LpError::NoFields(m) => write!(f, "a point of {m} has no finite field"),
        }
    }
}

impl std::error::Error for LpError {}

/// `[a-z][a-z0-9_]*`, at most 64 bytes.
pub fn is_snake_case(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// A tag value as it is written: backslashes become `/`, line breaks spaces.
pub fn clean_tag_value(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '\n', '\r']) {
        std::borrow::Cow::Owned(
            v.chars()
                .map(|c| match c {
                    '\\' => '/',
                    '\n' | '\r' => ' ',
                    c => c,
                })
                .collect(),
        )
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

/// A string field as it is written: line breaks become spaces.
pub fn clean_string_field(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\n', '\r']) {
        std::borrow::Cow::Owned(v.replace(['\n', '\r'], " "))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

/// Lines of line protocol, with a point count.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
    points: usize,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Points encoded since the last take.
    pub fn points(&self) -> usize {
        self.points
    }

    /// Bytes encoded since the last take.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Nothing encoded.
    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// Take the lines (valid UTF-8, each ending in `\n`) and reset.
    pub fn take(&mut self) -> (String, usize) {
        let buf = std::mem::take(&mut self.buf);
        let n = std::mem::take(&mut self.points);
        // Only &str pieces and ASCII are ever written, so this cannot fail.
        (String::from_utf8(buf).unwrap_or_default(), n)
    }

    /// Encode one point of a declared measurement at `ts_ms`.
    pub fn point(
        &mut self,
        m: &'static Measurement,
        tags: &[(&str, &str)],
        fields: &[(&str, Value<'_>)],
        ts_ms: i64,
    ) -> Result<(), LpError> {
        for (k, _) in tags {
            if !m.tags.iter().any(|(t, _)| t == k) {
                return Err(LpError::UnknownTag(m.name, (*k).to_string()));
            }
        }
        for (k, v) in fields {
            let Some((_, declared, _)) = m.fields.iter().find(|(f, _, _)| f == k) else {
                return Err(LpError::UnknownField(m.name, (*k).to_string()));
            };
            if *declared != v.kind() {
                return Err(LpError::WrongType {
                    measurement: m.name,
                    field: (*k).to_string(),
                    declared: *declared,
                });
            }
        }
        self.raw_point(m.name, tags, fields, ts_ms)
            .map_err(|e| match e {
                LpError::NoFields(_) => LpError::NoFields(m.name),
                e => e,
            })
    }

    /// Encode a point of any snake_case measurement (the checks of the module
    /// header apply, except the declared schema).
    pub fn raw_point(
        &mut self,
        measurement: &str,
        tags: &[(&str, &str)],
        fields: &[(&str, Value<'_>)],
        ts_ms: i64,
    ) -> Result<(), LpError> {
        if !is_snake_case(measurement) {
            return Err(LpError::BadName(measurement.to_string()));
        }
        for (k, _) in tags {
            if !is_snake_case(k) {
                return Err(LpError::BadName((*k).to_string()));
            }
        }
        for (k, _) in fields {
            if !is_snake_case(k) || tags.iter().any(|(t, _)| t == k) {
                return Err(LpError::BadName((*k).to_string()));
            }
        }
        let kept: Vec<&(&str, Value<'_>)> = fields
            .iter()
            .filter(|(_, v)| !matches!(v, Value::F(x) if !x.is_finite()))
            .collect();
        let Some((first, rest)) = kept.split_first() else {
            return Err(LpError::NoFields(""));
        };
        let mut sorted: Vec<(&str, std::borrow::Cow<'_, str>)> = tags
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, clean_tag_value(v)))
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        sorted.dedup_by(|a, b| a.0 == b.0);
        let mut b = LineProtocolBuilder::new_with(&mut self.buf).measurement(measurement);
        for (k, v) in &sorted {
            b = b.tag(k, v);
        }
        let mut b = match first.1 {
            Value::F(x) => b.field(first.0, x),
            Value::I(x) => b.field(first.0, x),
            Value::S(s) => b.field(first.0, clean_string_field(s).as_ref()),
            Value::B(x) => b.field(first.0, x),
        };
        for (k, v) in rest {
            b = match *v {
                Value::F(x) => b.field(k, x),
                Value::I(x) => b.field(k, x),
                Value::S(s) => b.field(k, clean_string_field(s).as_ref()),
                Value::B(x) => b.field(k, x),
            };
        }
        b.timestamp(ts_ms).close_line();
        self.points += 1;
        Ok(())
    }
}

/// Raw readings as received (counters and gauges).
pub static READING: Measurement = Measurement {
    name: "reading",
    doc: "One stored reading of a meter quantity, at the meter's (or receive) time.",
    tags: &[
        ("meter", "meter id"),
        (
            "quantity",
            "quantity, e.g. energy_import_kwh, water_m3, power_kw",
        ),
        (
            "class",
            "energy class of the meter: electricity, water, gas, heat, cooling",
        ),
        (
            "building",
            "building of the meter (absent when the meter has none)",
        ),
        (
            "agency",
            "agency the meter serves directly (absent for shared meters)",
        ),
    ],
    fields: &[
        (
            "value",
            FieldType::Float,
            "the reading in the quantity's unit; absent when the source sent a non-finite number",
        ),
        (
            "status",
            FieldType::Str,
            "normaliser decision for counters (ok, first, reset, rollover, …), `gauge` otherwise",
        ),
        ("time_source", FieldType::Str, "device, receive or operator"),
    ],
};

/// 15-minute consumption per meter with its quality.
pub static CONSUMPTION: Measurement = Measurement {
    name: "consumption",
    doc: "Consumption of one meter in one 15-minute bucket (timestamp = bucket start). Rewritten with the same timestamp when late data restates the bucket.",
    tags: &[
        ("meter", "meter id"),
        ("class", "energy class"),
        (
            "subitem",
            "electricity sub-item (lighting, hvac, power, special) or `total`",
        ),
        ("building", "building of the meter"),
        (
            "agency",
            "agency the meter serves directly (absent for shared meters)",
        ),
        (
            "root",
            "`true` for meters without a parent (sum these for a site total)",
        ),
    ],
    fields: &[
        (
            "value",
            FieldType::Float,
            "consumption in the meter's unit (kWh, m³, GJ)",
        ),
        (
            "quality",
            FieldType::Str,
            "measured, estimated, mixed or missing (the bucket was emptied by a restatement)",
        ),
        (
            "measured_s",
            FieldType::Int,
            "seconds of the bucket covered by measured readings",
        ),
        (
            "estimated_s",
            FieldType::Int,
            "seconds of the bucket covered by interpolation",
        ),
    ],
};

/// Scope rollups of the streaming aggregator.
pub static ROLLUP: Measurement = Measurement {
    name: "rollup",
    doc: "Consumption of a zone, building, agency or the site for one class (and electricity sub-item) over one local period (timestamp = period start in the site's zone). Shared meters are allocated per docs/methodology.md §2.",
    tags: &[
        ("level", "zone, building, agency or site"),
        (
            "id",
            "id of the zone, building or agency; `site` for the site",
        ),
        ("class", "energy class"),
        (
            "subitem",
            "electricity sub-item, or `total` for the whole class",
        ),
        ("grain", "15m, hour, day, month or year"),
        (
            "shard",
            "shard index of a sharded deployment (absent when unsharded): each shard's rollup holds its own meters; sum over shards",
        ),
    ],
    fields: &[
        ("value", FieldType::Float, "kWh, m³ or GJ"),
        (
            "measured",
            FieldType::Int,
            "meter-buckets of measured quality in the period",
        ),
        (
            "estimated",
            FieldType::Int,
            "meter-buckets of estimated quality in the period",
        ),
    ],
};

/// KPIs of a scope for the running month and year.
pub static KPI: Measurement = Measurement {
    name: "kpi",
    doc: "KPIs of an agency, building or the site for a calendar month or year (timestamp = period start); rewritten as the period runs.",
    tags: &[
        ("scope", "agency, building or site"),
        ("id", "agency or building id; `site` for the site"),
        ("period", "month or year"),
    ],
    fields: &[
        (
            "name",
            FieldType::Str,
            "the agency's or building's name (the site's for the site), for tables",
        ),
        ("electricity_kwh", FieldType::Float, "kWh"),
        ("water_m3", FieldType::Float, "m³"),
        ("gas_m3", FieldType::Float, "m³"),
        ("heat_gj", FieldType::Float, "GJ"),
        ("cooling_gj", FieldType::Float, "district cooling, GJ"),
        ("lpg_kg", FieldType::Float, "LPG, kg"),
        ("coal_kg", FieldType::Float, "raw coal, kg"),
        ("steam_kg", FieldType::Float, "purchased steam, kg"),
        ("fuel_oil_kg", FieldType::Float, "fuel oil, kg"),
        (
            "energy_kgce",
            FieldType::Float,
            "comprehensive energy, kgce",
        ),
        (
            "co2_t",
            FieldType::Float,
            "t CO₂ of every carrier; absent when a factor is missing",
        ),
        ("persons", FieldType::Float, "time-weighted 用能人数"),
        ("area_m2", FieldType::Float, "time-weighted area, m²"),
        ("per_capita_kgce", FieldType::Float, "kgce per person"),
        ("per_area_kgce", FieldType::Float, "kgce per m²"),
        ("per_capita_water_m3", FieldType::Float, "m³ per person"),
        (
            "water_l_per_person_day",
            FieldType::Float,
            "L per person per day with water data",
        ),
        ("per_area_co2_kg", FieldType::Float, "kg CO₂ per m²"),
        (
            "completeness_pct",
            FieldType::Float,
            "measured share of expected buckets, %",
        ),
        (
            "coverage_pct",
            FieldType::Float,
            "measured or estimated share of expected buckets, %",
        ),
        (
            "yoy_per_capita_pct",
            FieldType::Float,
            "year-on-year change of per-capita energy on the same days with data, %; absent below the completeness threshold",
        ),
        (
            "yoy_per_area_pct",
            FieldType::Float,
            "year-on-year change of per-area energy on the same days, %",
        ),
        (
            "yoy_per_capita_water_pct",
            FieldType::Float,
            "year-on-year change of per-capita water on the same days, %",
        ),
        (
            "grid_factor_year",
            FieldType::Float,
            "data year of the grid CO₂ factor used",
        ),
        (
            "quota_ratio_to_date",
            FieldType::Float,
            "period-to-date against the pro-rated quota (1 = on quota)",
        ),
        (
            "projected_ratio",
            FieldType::Float,
            "projected period end against the quota",
        ),
        (
            "projection",
            FieldType::Str,
            "projection method: run_rate or last_year",
        ),
    ],
};

/// Alert transitions.
pub static ALERT: Measurement = Measurement {
    name: "alert",
    doc: "One alert event (fired, resolved, acknowledged) at its time.",
    tags: &[
        ("rule", "rule id"),
        ("kind", "rule kind, e.g. quota_overrun, night_flow"),
        ("severity", "info, warning or critical"),
        (
            "target",
            "what the alert is about (meter, agency, building, bus)",
        ),
    ],
    fields: &[
        ("event", FieldType::Str, "fired, resolved or acknowledged"),
        ("firing", FieldType::Int, "1 after fired, 0 after resolved"),
        ("value", FieldType::Float, "observed value"),
        ("threshold", FieldType::Float, "threshold of the rule"),
        ("message", FieldType::Str, "human-readable message"),
    ],
};

/// Data-quality anomalies.
pub static ANOMALY: Measurement = Measurement {
    name: "anomaly",
    doc: "A data-quality anomaly found by the normaliser (reset, rollover, implausible delta, clock skew, …) at the reading's time.",
    tags: &[("meter", "meter id"), ("kind", "anomaly kind")],
    fields: &[
        ("count", FieldType::Int, "always 1 (sum it)"),
        ("detail", FieldType::Str, "what was seen"),
    ],
};

/// Bus health.
pub static BUS_HEALTH: Measurement = Measurement {
    name: "bus_health",
    doc: "Counters of one Modbus bus since the process started, every minute.",
    tags: &[("bus", "bus id")],
    fields: &[
        ("requests", FieldType::Int, "requests sent"),
        ("ok", FieldType::Int, "answered"),
        ("errors", FieldType::Int, "requests - ok"),
        (
            "error_rate",
            FieldType::Float,
            "errors / requests over the last minute",
        ),
    ],
};

/// Pipeline health.
pub static PIPELINE: Measurement = Measurement {
    name: "pipeline",
    doc: "Health of the meterflow process, every minute.",
    tags: &[("instance", "host name or configured instance id")],
    fields: &[
        ("stored", FieldType::Int, "readings committed since start"),
        ("refused", FieldType::Int, "readings refused since start"),
        (
            "outbox_points",
            FieldType::Int,
            "points waiting for InfluxDB",
        ),
        ("outbox_bytes", FieldType::Int, "bytes waiting for InfluxDB"),
        (
            "outbox_age_s",
            FieldType::Float,
            "age of the oldest waiting point, s",
        ),
        (
            "sink_delivered",
            FieldType::Int,
            "points delivered since start",
        ),
        (
            "sink_dead",
            FieldType::Int,
            "points refused by InfluxDB since start (in dead_letters)",
        ),
    ],
};

/// Waste weigh-ins (the waste-sorting ledger).
pub static WASTE: Measurement = Measurement {
    name: "waste",
    doc: "One weigh-in of the waste ledger at its time. A correction writes the corrected point and, if it moved, a zero-kg tombstone (voided = true) at the replaced point; a void writes the tombstone.",
    tags: &[
        ("agency", "agency id"),
        ("point", "office or collection point"),
        ("category", "recyclable, kitchen, hazardous or residual"),
        (
            "destination",
            "recycling, composting, anaerobic_digestion, hazardous_treatment, incineration or landfill",
        ),
        (
            "recovered",
            "`true` when recyclable or kitchen waste went to recycling, composting or anaerobic digestion",
        ),
        ("entry", "ledger event id of the weigh-in"),
    ],
    fields: &[
        ("kg", FieldType::Float, "kg weighed (0 for a tombstone)"),
        (
            "voided",
            FieldType::Bool,
            "the weigh-in was corrected away or voided",
        ),
    ],
};

/// The waste ledger's year per agency.
pub static WASTE_YEAR: Measurement = Measurement {
    name: "waste_year",
    doc: "An agency's waste figures for a calendar year (timestamp = 1 January, local), rewritten at every weigh-in.",
    tags: &[("agency", "agency id")],
    fields: &[
        ("total_kg", FieldType::Float, "kg of all categories"),
        (
            "recovered_kg",
            FieldType::Float,
            "recyclables and kitchen waste recovered, kg",
        ),
        ("recovery_rate_pct", FieldType::Float, "回收利用率, %"),
        ("points", FieldType::Float, "incentive points"),
        ("records", FieldType::Int, "weigh-ins in effect"),
        (
            "veto",
            FieldType::Bool,
            "no record in the year: one-vote veto",
        ),
    ],
};

/// A vehicle's year (the vehicle ledger).
pub static VEHICLE_YEAR: Measurement = Measurement {
    name: "vehicle_year",
    doc: "One vehicle's figures for a calendar year (timestamp = 1 January, local), rewritten at every entry of the vehicle ledger.",
    tags: &[
        ("agency", "agency id"),
        ("plate", "licence plate"),
        (
            "purpose",
            "enforcement, leadership, reception or general (执法执勤, 领导保障, 调研接待, 一般公务)",
        ),
        ("fuel", "gasoline, diesel or electric"),
    ],
    fields: &[
        (
            "km",
            FieldType::Float,
            "km driven (trip odometer differences)",
        ),
        ("trips", FieldType::Int, "trips"),
        ("litres", FieldType::Float, "fuel filled, L"),
        (
            "l_per_100km",
            FieldType::Float,
            "L/100 km (absent without km)",
        ),
        ("fuel_cny", FieldType::Float, "fuel cost, CNY"),
        ("maintenance_cny", FieldType::Float, "maintenance cost, CNY"),
        ("insurance_cny", FieldType::Float, "insurance cost, CNY"),
        ("toll_cny", FieldType::Float, "tolls, CNY"),
        ("total_cny", FieldType::Float, "running cost, CNY"),
        (
            "odometer_km",
            FieldType::Float,
            "odometer at the end of the year (or now), km",
        ),
        (
            "maintenance_due",
            FieldType::Int,
            "kinds of maintenance due (routine, service, tyres)",
        ),
        (
            "anomalies",
            FieldType::Int,
            "odometer anomalies in the year",
        ),
        ("disposed", FieldType::Bool, "disposed of"),
    ],
};

/// An agency's office space (the office-space ledger).
pub static OFFICE_SPACE: Measurement = Measurement {
    name: "office_space",
    doc: "An agency's office space on a day (timestamp = that local midnight), written at every entry of the office-space ledger and daily by the points thread.",
    tags: &[("agency", "agency id")],
    fields: &[
        ("persons", FieldType::Float, "用能人数 on the day"),
        ("rooms", FieldType::Int, "rooms allocated"),
        (
            "usable_m2",
            FieldType::Float,
            "usable area of its rooms, m²",
        ),
        (
            "office_m2",
            FieldType::Float,
            "usable area of its office rooms, m²",
        ),
        ("occupants", FieldType::Int, "persons placed in its rooms"),
        (
            "m2_per_person",
            FieldType::Float,
            "office m² per occupant (absent without occupants)",
        ),
        (
            "standard_m2",
            FieldType::Float,
            "sum of the occupants' standard areas (2014 standard), m²",
        ),
        (
            "over_standard",
            FieldType::Bool,
            "office area above the standard (超标)",
        ),
        (
            "over_standard_rooms",
            FieldType::Int,
            "rooms above their occupants' standard",
        ),
        (
            "idle_rooms",
            FieldType::Int,
            "allocated office rooms with nobody in them (闲置)",
        ),
        ("idle_m2", FieldType::Float, "idle usable area, m²"),
        (
            "idle_rate_pct",
            FieldType::Float,
            "闲置率, % (absent without rooms)",
        ),
    ],
};

/// An agency's fixed assets (the asset ledger).
pub static ASSET_REGISTER: Measurement = Measurement {
    name: "asset_register",
    doc: "An agency's fixed assets on a day (timestamp = that local midnight), written at every entry of the asset ledger and daily by the points thread.",
    tags: &[("agency", "agency id")],
    fields: &[
        ("assets", FieldType::Int, "assets in use (not disposed)"),
        ("value_cny", FieldType::Float, "original value, CNY"),
        (
            "net_book_value_cny",
            FieldType::Float,
            "straight-line net book value, CNY",
        ),
        (
            "idle",
            FieldType::Int,
            "assets with no scan or event for 180 days",
        ),
    ],
};

/// `cost`: the energy cost of a scope for a month or year (issue 22).
pub static COST: Measurement = Measurement {
    name: "cost",
    doc: "Energy cost of an agency, building or the site for a calendar month or year with the site's tariffs (timestamp = period start); rewritten as the period runs. Written only with [[tariff]].",
    tags: &[
        ("scope", "agency, building or site"),
        ("id", "agency or building id; `site` for the site"),
        ("period", "month or year"),
    ],
    fields: &[
        ("name", FieldType::Str, "the scope's name, for tables"),
        (
            "total_cny",
            FieldType::Float,
            "all carriers with a tariff, CNY",
        ),
        ("electricity_cny", FieldType::Float, "electricity, CNY"),
        (
            "water_cny",
            FieldType::Float,
            "water at its price, CNY (without the surcharge)",
        ),
        (
            "water_surcharge_cny",
            FieldType::Float,
            "water above the agencies' monthly quotas, CNY",
        ),
        ("gas_cny", FieldType::Float, "natural gas, CNY"),
        ("heat_cny", FieldType::Float, "heat, CNY"),
        ("critical_kwh", FieldType::Float, "electricity in 尖峰, kWh"),
        ("peak_kwh", FieldType::Float, "electricity in 峰, kWh"),
        ("flat_kwh", FieldType::Float, "electricity in 平, kWh"),
        ("valley_kwh", FieldType::Float, "electricity in 谷, kWh"),
        (
            "peak_share_pct",
            FieldType::Float,
            "峰 + 尖峰 share of priced electricity, %",
        ),
        (
            "unpriced",
            FieldType::Int,
            "carriers with consumption that had no tariff in force",
        ),
        (
            "budget_cny",
            FieldType::Float,
            "an agency's [[budget]] for the year (year points only)",
        ),
        (
            "budget_ratio_to_date",
            FieldType::Float,
            "cost so far against the budget pro-rated to the days with data",
        ),
        (
            "budget_projected_ratio",
            FieldType::Float,
            "projected year-end cost against the budget",
        ),
    ],
};

/// Every measurement meterflow writes now.
pub static MEASUREMENTS: &[&Measurement] = &[
    &READING,
    &CONSUMPTION,
    &ROLLUP,
    &KPI,
    &COST,
    &ALERT,
    &ANOMALY,
    &BUS_HEALTH,
    &PIPELINE,
    &WASTE,
    &WASTE_YEAR,
    &VEHICLE_YEAR,
    &OFFICE_SPACE,
    &ASSET_REGISTER,
];

#[cfg(test)]
mod tests {
    use super::*;
    use influxdb_line_protocol::{FieldValue as PV, parse_lines};
    use proptest::prelude::*;

    #[test]
    fn escapes_and_types() {
        let mut e = Encoder::new();
        e.raw_point(
            "reading",
            &[
                ("meter", "B1 main,floor=2"),
                ("agency", ""),
                ("building", "a\\b"),
            ],
            &[
                ("value", Value::F(1.5)),
                ("n", Value::I(-3)),
                ("note", Value::S("say \"hi\"\nnow")),
                ("nan", Value::F(f64::NAN)),
            ],
            1_700_000_000_000,
        )
        .expect("valid point");
        let (text, n) = e.take();
        assert_eq!(n, 1);
        // Tags sorted, empty agency dropped, backslash replaced, comma/space/= escaped;
        // integer with i; quote escaped; newline made a space; NaN left out.
        assert_eq!(
            text,
            "reading,building=a/b,meter=B1\\ main\\,floor\\=2 value=1.5,n=-3i,note=\"say \\\"hi\\\" now\" 1700000000000\n"
        );
    }

    #[test]
    fn schema_is_enforced() {
        let mut e = Encoder::new();
        let err = e
            .point(&READING, &[("meter", "m")], &[("value", Value::I(1))], 0)
            .expect_err("value is a float");
        assert!(matches!(err, LpError::WrongType { .. }), "{err}");
        let err = e
            .point(&READING, &[("floor", "2")], &[("value", Value::F(1.0))], 0)
            .expect_err("undeclared tag");
        assert_eq!(err, LpError::UnknownTag("reading", "floor".into()));
        let err = e
            .point(
                &READING,
                &[("meter", "m")],
                &[("value", Value::F(f64::INFINITY))],
                0,
            )
            .expect_err("no finite field");
        assert_eq!(err, LpError::NoFields("reading"));
        assert!(e.is_empty());
    }

    #[test]
    fn declared_schema_is_portable() {
        let mut seen = std::collections::HashSet::new();
        for m in MEASUREMENTS {
            assert!(is_snake_case(m.name), "{}", m.name);
            assert!(seen.insert(m.name), "{} declared twice", m.name);
            for (t, _) in m.tags {
                assert!(is_snake_case(t), "{}.{t}", m.name);
                assert!(
                    !m.fields.iter().any(|(f, _, _)| f == t),
                    "{}: tag and field {t}",
                    m.name
                );
            }
            for (f, _, _) in m.fields {
                assert!(is_snake_case(f), "{}.{f}", m.name);
                assert_eq!(
                    m.fields.iter().filter(|(g, _, _)| g == f).count(),
                    1,
                    "{}.{f}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn the_schema_document_lists_every_declared_name() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/influxdb-schema.md");
        let doc = std::fs::read_to_string(path).expect("docs/influxdb-schema.md");
        for m in MEASUREMENTS {
            let head = format!("### `{}`", m.name);
            let start = doc
                .find(&head)
                .unwrap_or_else(|| panic!("no section {head}"));
            let section = &doc[start + head.len()..];
            let section = &section[..section.find("\n### ").unwrap_or(section.len())];
            for (t, _) in m.tags {
                assert!(
                    section.contains(&format!("| `{t}` |")),
                    "{}: tag {t} undocumented",
                    m.name
                );
            }
            for (f, ty, _) in m.fields {
                assert!(
                    section.contains(&format!("| `{f}` | {} |", ty.as_str())),
                    "{}: field {f} ({}) undocumented",
                    m.name,
                    ty.as_str()
                );
            }
        }
    }

    fn snake() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_]{0,12}"
    }

    #[derive(Debug, Clone)]
    enum Gen {
        F(f64),
        I(i64),
        S(String),
        B(bool),
    }

    fn gen_value() -> impl Strategy<Value = Gen> {
        prop_oneof![
            any::<f64>().prop_map(Gen::F),
            any::<i64>().prop_map(Gen::I),
            any::<String>().prop_map(Gen::S),
            any::<bool>().prop_map(Gen::B),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever the encoder emits, InfluxData's parser reads back the same
        /// point (after the documented replacements).
        #[test]
        fn parser_reads_back_what_we_write(
            m in snake(),
            tags in proptest::collection::btree_map(snake(), any::<String>(), 0..5),
            fields in proptest::collection::btree_map(snake(), gen_value(), 1..5),
            ts in any::<i64>(),
        ) {
            let fields: Vec<(String, Gen)> = fields.into_iter().filter(|(k, _)| !tags.contains_key(k)).collect();
            let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let field_refs: Vec<(&str, Value<'_>)> = fields.iter().map(|(k, v)| (k.as_str(), match v {
                Gen::F(x) => Value::F(*x), Gen::I(x) => Value::I(*x), Gen::S(s) => Value::S(s), Gen::B(b) => Value::B(*b),
            })).collect();
            let mut e = Encoder::new();
            let finite = fields.iter().any(|(_, v)| !matches!(v, Gen::F(x) if !x.is_finite()));
            let r = e.raw_point(&m, &tag_refs, &field_refs, ts);
            if !finite {
                prop_assert!(matches!(r, Err(LpError::NoFields(_))));
                return Ok(());
            }
            prop_assert!(r.is_ok(), "{:?}", r);
            let (text, n) = e.take();
            prop_assert_eq!(n, 1);
            prop_assert!(text.ends_with('\n'));
            prop_assert_eq!(text.matches('\n').count(), 1, "one line: {:?}", text);
            let parsed: Vec<_> = parse_lines(&text).collect();
            prop_assert_eq!(parsed.len(), 1);
            let line = match &parsed[0] { Ok(l) => l, Err(e) => { prop_assert!(false, "{e}: {text:?}"); unreachable!() } };
            prop_assert_eq!(line.series.measurement.as_str(), m.as_str());
            let got_tags: Vec<(String, String)> = line.series.tag_set.iter().flatten()
                .map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let want_tags: Vec<(String, String)> = tags.iter().filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), clean_tag_value(v).into_owned())).collect();
            prop_assert_eq!(got_tags, want_tags);
            let want_fields: Vec<&(String, Gen)> = fields.iter().filter(|(_, v)| !matches!(v, Gen::F(x) if !x.is_finite())).collect();
            prop_assert_eq!(line.field_set.len(), want_fields.len());
            for ((gk, gv), (wk, wv)) in line.field_set.iter().zip(want_fields) {
                prop_assert_eq!(gk.as_str(), wk.as_str());
                match (gv, wv) {
                    (PV::F64(a), Gen::F(b)) => prop_assert_eq!(a.to_bits(), b.to_bits(), "{} vs {}", a, b),
                    (PV::I64(a), Gen::I(b)) => prop_assert_eq!(a, b),
                    (PV::String(a), Gen::S(b)) => { let want = clean_string_field(b).into_owned(); prop_assert_eq!(a.as_str(), want.as_str()) }
                    (PV::Boolean(a), Gen::B(b)) => prop_assert_eq!(a, b),
                    (g, w) => prop_assert!(false, "type changed: {:?} vs {:?}", g, w),
                }
            }
            prop_assert_eq!(line.timestamp, Some(ts));
        }
    }
}
