//! MQTT ingest: topic mappings and payload decoders, a subscriber that
//! acknowledges a message only after its readings are committed, and an
//! optional embedded broker.

pub mod decode;

pub use decode::{DecodeError, Decoded, Pattern, Rule, decode};
pub mod broker;
pub mod subscriber;

pub use subscriber::{IN_FLIGHT_READINGS, Meters, MqttStats, run};
