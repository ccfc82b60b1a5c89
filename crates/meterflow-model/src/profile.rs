//! Modbus device profiles: versioned register maps that any number of meters
//! share (a meter names its profile and unit id). Shipped profiles live in
//! `profiles/*.toml`; a site adds its own with `[[profile]]`.

use serde::Deserialize;

/// Register space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    /// Holding registers (function code 03).
    Holding,
    /// Input registers (function code 04).
    Input,
}

/// Register value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit.
    I16,
    /// Unsigned 32-bit.
    U32,
    /// Signed 32-bit.
    I32,
    /// Unsigned 64-bit.
    U64,
    /// Signed 64-bit.
    I64,
    /// IEEE-754 single.
    F32,
    /// IEEE-754 double.
    F64,
}

impl DataType {
    /// Registers the type occupies.
    pub fn registers(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }
}

/// Word and byte order of multi-byte values, named by where bytes A (most
/// significant) to D land: ABCD big-endian, CDAB word-swapped, BADC
/// byte-swapped, DCBA little-endian. For 64-bit values "word-swapped" reverses
/// all four words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Order {
    /// Big-endian words, big-endian bytes (Modbus default).
    #[default]
    ABCD,
    /// Little-endian words, big-endian bytes.
    CDAB,
    /// Big-endian words, bytes swapped within each word.
    BADC,
    /// Little-endian words, bytes swapped.
    DCBA,
}

/// One register field of a profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Quantity name (snake_case), e.g. `energy_import`, `power`, `voltage_l1`.
    pub quantity: String,
    /// Register space.
    pub space: Space,
    /// 0-based register address (protocol address, not the 3xxxx/4xxxx number).
    pub address: u16,
    /// Value type.
    #[serde(rename = "type")]
    pub dtype: DataType,
    /// Word/byte order (default ABCD).
    #[serde(default)]
    pub order: Order,
    /// Engineering value = raw × scale + offset.
    #[serde(default = "one")]
    pub scale: f64,
    /// Engineering value = raw × scale + offset.
    #[serde(default)]
    pub offset: f64,
    /// Unit of the engineering value.
    pub unit: String,
    /// A cumulative counter (normalised into intervals) rather than a gauge.
    #[serde(default)]
    pub counter: bool,
    /// Rate group: `energy` (polled every `poll_s`) or `fast` (every `fast_poll_s`).
    #[serde(default = "default_group")]
    pub group: String,
    /// Raw register patterns that mean "invalid" (unsigned integer of the raw bits);
    /// default per type: all-ones, and the maximum/minimum of signed types. Floats: NaN/±Inf always.
    #[serde(default)]
    pub invalid: Option<Vec<u64>>,
}

fn one() -> f64 {
    1.0
}
fn default_group() -> String {
    "energy".to_string()
}

/// A register map.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Name meters refer to, e.g. `sdm630`.
    pub name: String,
    /// Version of the map (bump when addresses change).
    pub version: u32,
    /// Device and source of the map.
    pub description: String,
    /// Fields.
    pub field: Vec<Field>,
}

impl Profile {
    /// Raw patterns that mean "invalid" for a field.
    pub fn invalid_patterns(field: &Field) -> Vec<u64> {
        if let Some(p) = &field.invalid {
            return p.clone();
        }
        match field.dtype {
            DataType::U16 => vec![0xFFFF],
            DataType::I16 => vec![0x7FFF, 0x8000],
            DataType::U32 => vec![0xFFFF_FFFF],
            DataType::I32 => vec![0x7FFF_FFFF, 0x8000_0000],
            DataType::U64 => vec![u64::MAX],
            DataType::I64 => vec![0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000],
            DataType::F32 | DataType::F64 => Vec::new(),
        }
    }
}

/// Shipped profiles (TOML text, name).
pub const SHIPPED: &[(&str, &str)] = &[
    ("sdm630", include_str!("../profiles/sdm630.toml")),
    ("dtsu666", include_str!("../profiles/dtsu666.toml")),
    (
        "acrel-adl400",
        include_str!("../profiles/acrel-adl400.toml"),
    ),
    (
        "generic-water",
        include_str!("../profiles/generic-water.toml"),
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn shipped_profiles_are_valid() {
        for (name, src) in super::SHIPPED {
            let p = crate::config::validate_profile_text(src, name);
            assert!(p.is_ok(), "{name}: {}", p.err().unwrap_or_default());
        }
    }

    #[test]
    fn sdm630_energy_import_is_at_0x48() {
        let all = crate::config::shipped_profiles();
        let p = all.iter().find(|p| p.name == "sdm630").expect("shipped");
        let f = p
            .field
            .iter()
            .find(|f| f.quantity == "energy_import")
            .expect("field");
        assert_eq!(
            (f.address, f.counter, f.space),
            (0x48, true, super::Space::Input)
        );
    }
}
