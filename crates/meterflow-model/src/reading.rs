//! Values that travel the data path.

use serde::{Deserialize, Serialize};

/// Where a reading's timestamp came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The device or payload stated the time.
    Device,
    /// The poll's response time (Modbus and other polled protocols).
    Poll,
    /// No source time: the time meterflow received the value.
    Receive,
    /// A historical import file stated the time.
    Import,
}

impl TimeSource {
    /// Stable text form used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeSource::Device => "device",
            TimeSource::Poll => "poll",
            TimeSource::Receive => "receive",
            TimeSource::Import => "import",
        }
    }

    /// Parse the stable text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "device" => TimeSource::Device,
            "poll" => TimeSource::Poll,
            "receive" => TimeSource::Receive,
            "import" => TimeSource::Import,
            _ => return None,
        })
    }
}

/// One value of one quantity of one meter at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Meter id from the site configuration.
    pub meter: String,
    /// Quantity name (snake_case), e.g. `energy_import`, `volume`, `power`.
    pub quantity: String,
    /// Source time, milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// Value as delivered by the source, before scale and multiplier.
    pub value: f64,
    /// Time meterflow received it, milliseconds since the Unix epoch (UTC).
    pub recv_ms: i64,
    /// Where `ts_ms` came from.
    pub time_source: TimeSource,
}

/// Quality of a 15-minute bucket (`docs/methodology.md` §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Derived from readings no more than two intervals apart.
    Measured,
    /// Covered only by spreading across a gap longer than two intervals.
    Estimated,
    /// No reading on either side: consumption unknown.
    Missing,
}

impl Quality {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Measured => "measured",
            Quality::Estimated => "estimated",
            Quality::Missing => "missing",
        }
    }
}

/// Anomalies the normaliser and ingest report (`docs/methodology.md` §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// The counter wrapped at its rollover value; the delta was counted.
    Rollover,
    /// An operator-declared meter replacement closed one series and began another.
    Replacement,
    /// The counter went down without a rollover or replacement: no delta, resumed from the new value.
    CounterReset,
    /// The delta exceeded the maximum plausible rate: quarantined, not counted.
    ImplausibleDelta,
    /// Two consecutive implausible readings agreed with each other: re-based on the new level, the jump not counted.
    CounterJump,
    /// The raw value was a sentinel pattern or not finite: rejected.
    InvalidValue,
    /// No good reading for longer than the configured number of intervals.
    MeterSilent,
    /// The source timestamp was more than 5 minutes in the future.
    ClockSkew,
}

impl AnomalyKind {
    /// Stable text form used in the store and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::Rollover => "rollover",
            AnomalyKind::Replacement => "replacement",
            AnomalyKind::CounterReset => "counter_reset",
            AnomalyKind::ImplausibleDelta => "implausible_delta",
            AnomalyKind::CounterJump => "counter_jump",
            AnomalyKind::InvalidValue => "invalid_value",
            AnomalyKind::MeterSilent => "meter_silent",
            AnomalyKind::ClockSkew => "clock_skew",
        }
    }

    /// Parse the stable text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "rollover" => AnomalyKind::Rollover,
            "replacement" => AnomalyKind::Replacement,
            "counter_reset" => AnomalyKind::CounterReset,
            "implausible_delta" => AnomalyKind::ImplausibleDelta,
            "counter_jump" => AnomalyKind::CounterJump,
            "invalid_value" => AnomalyKind::InvalidValue,
            "meter_silent" => AnomalyKind::MeterSilent,
            "clock_skew" => AnomalyKind::ClockSkew,
            _ => return None,
        })
    }
}

/// Energy class of a meter (`docs/methodology.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyClass {
    /// Electricity, kWh.
    Electricity,
    /// Water, m³ (not energy: reported on its own).
    Water,
    /// Natural gas, m³.
    Gas,
    /// District heat, GJ/MJ/kWh.
    Heat,
    /// District cooling, GJ/MJ/kWh.
    Cooling,
    /// Liquefied petroleum gas, kg.
    Lpg,
    /// Raw coal, kg.
    Coal,
    /// Purchased low-pressure steam, kg.
    Steam,
    /// Fuel oil, kg.
    FuelOil,
}

impl EnergyClass {
    /// Every class, in table order.
    pub const ALL: [EnergyClass; 9] = [
        EnergyClass::Electricity,
        EnergyClass::Water,
        EnergyClass::Gas,
        EnergyClass::Heat,
        EnergyClass::Cooling,
        EnergyClass::Lpg,
        EnergyClass::Coal,
        EnergyClass::Steam,
        EnergyClass::FuelOil,
    ];

    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            EnergyClass::Electricity => "electricity",
            EnergyClass::Water => "water",
            EnergyClass::Gas => "gas",
            EnergyClass::Heat => "heat",
            EnergyClass::Cooling => "cooling",
            EnergyClass::Lpg => "lpg",
            EnergyClass::Coal => "coal",
            EnergyClass::Steam => "steam",
            EnergyClass::FuelOil => "fuel_oil",
        }
    }

    /// The counter quantity a meter of this class reports by default.
    pub fn default_quantity(self) -> &'static str {
        match self {
            EnergyClass::Electricity => "energy_import",
            EnergyClass::Water | EnergyClass::Gas => "volume",
            EnergyClass::Heat | EnergyClass::Cooling => "heat_energy",
            EnergyClass::Lpg | EnergyClass::Coal | EnergyClass::Steam | EnergyClass::FuelOil => {
                "mass"
            }
        }
    }

    /// Units a meter of this class may declare.
    pub fn allowed_units(self) -> &'static [&'static str] {
        match self {
            EnergyClass::Electricity => &["kWh", "MWh", "Wh"],
            EnergyClass::Water | EnergyClass::Gas => &["m3", "L"],
            EnergyClass::Heat | EnergyClass::Cooling => &["GJ", "MJ", "kWh", "MWh"],
            EnergyClass::Lpg | EnergyClass::Coal | EnergyClass::Steam | EnergyClass::FuelOil => {
                &["kg", "t"]
            }
        }
    }
}

/// Input that could not become a reading, kept with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// When it was received, ms.
    pub received_ms: i64,
    /// Where it came from (`mqtt:broker`, `http`, `import:file`).
    pub source: String,
    /// Topic, line number or request.
    pub location: String,
    /// Stable reason code and detail.
    pub reason: String,
    /// The payload (truncated by the store).
    pub payload: String,
}

/// Called once a batch is committed (or failed): the indices of readings the
/// store refused with their reasons, or the store error.
pub type Done = Box<dyn FnOnce(Result<Vec<(usize, String)>, String>) + Send>;

/// What a source hands to the writer: readings, dead letters, and what to do after the commit.
pub struct Batch {
    /// Readings to store.
    pub readings: Vec<Reading>,
    /// Input that could not be decoded.
    pub dead: Vec<DeadLetter>,
    /// Source label stored with the readings.
    pub source: String,
    /// Called after the commit (acknowledge to the source only then).
    pub done: Option<Done>,
}

impl Batch {
    /// Readings without a completion callback.
    pub fn of(readings: Vec<Reading>, source: &str) -> Batch {
        Batch {
            readings,
            dead: Vec::new(),
            source: source.to_string(),
            done: None,
        }
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("readings", &self.readings.len())
            .field("dead", &self.dead.len())
            .field("source", &self.source)
            .finish()
    }
}
