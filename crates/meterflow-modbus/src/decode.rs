//! Register words to engineering values.

use meterflow_model::profile::{DataType, Field, Order, Profile};

/// Why a field has no value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldError {
    /// The raw bits are an "invalid" pattern of the profile (or a non-finite float).
    Sentinel(u64),
    /// The device answered with a Modbus exception.
    Exception(u8),
    /// No (complete) answer: timeout or transport error.
    NoResponse,
    /// The meter answered, but every try had a bad checksum (DL/T 645, CJ/T 188).
    BadChecksum,
}

impl FieldError {
    /// Quality code recorded with the field.
    pub fn code(&self) -> &'static str {
        match self {
            FieldError::Sentinel(_) => "invalid_value",
            FieldError::Exception(_) => "exception",
            FieldError::NoResponse => "no_response",
            FieldError::BadChecksum => "bad_checksum",
        }
    }
}

/// The raw bits of `words` (exactly `dtype.registers()` of them) in big-endian
/// order (A = most significant byte), after undoing the field's word/byte order.
pub fn raw_bits(words: &[u16], order: Order) -> u64 {
    let swap_bytes = matches!(order, Order::BADC | Order::DCBA);
    let reverse_words = matches!(order, Order::CDAB | Order::DCBA);
    let mut bits: u64 = 0;
    let n = words.len();
    for i in 0..n {
        let w = if reverse_words {
            words[n - 1 - i]
        } else {
            words[i]
        };
        let w = if swap_bytes { w.swap_bytes() } else { w };
        bits = (bits << 16) | u64::from(w);
    }
    bits
}

/// Decode one field from its registers: raw × scale + offset, or why not.
pub fn decode(field: &Field, words: &[u16]) -> Result<f64, FieldError> {
    let bits = raw_bits(words, field.order);
    if Profile::invalid_patterns(field).contains(&bits) {
        return Err(FieldError::Sentinel(bits));
    }
    let raw = match field.dtype {
        DataType::U16 | DataType::U32 | DataType::U64 => bits as f64,
        DataType::I16 => f64::from(bits as u16 as i16),
        DataType::I32 => f64::from(bits as u32 as i32),
        DataType::I64 => bits as i64 as f64,
        DataType::F32 => f64::from(f32::from_bits(bits as u32)),
        DataType::F64 => f64::from_bits(bits),
    };
    if !raw.is_finite() {
        return Err(FieldError::Sentinel(bits));
    }
    Ok(raw * field.scale + field.offset)
}

/// Encode an engineering value into registers (the simulator's side of `decode`).
pub fn encode(field: &Field, value: f64) -> Vec<u16> {
    let raw = (value - field.offset) / field.scale;
    let bits: u64 = match field.dtype {
        DataType::U16 => raw.round().clamp(0.0, 65_534.0) as u64,
        DataType::I16 => u64::from((raw.round().clamp(-32_767.0, 32_766.0) as i16) as u16),
        DataType::U32 => raw.round().clamp(0.0, 4_294_967_294.0) as u64,
        DataType::I32 => {
            u64::from((raw.round().clamp(-2_147_483_647.0, 2_147_483_646.0) as i32) as u32)
        }
        DataType::U64 => raw.round().max(0.0) as u64,
        DataType::I64 => raw.round() as i64 as u64,
        DataType::F32 => u64::from((raw as f32).to_bits()),
        DataType::F64 => raw.to_bits(),
    };
    encode_bits(bits, field.dtype.registers() as usize, field.order)
}

/// Raw bits to words in a given order (inverse of [`raw_bits`]).
pub fn encode_bits(bits: u64, n: usize, order: Order) -> Vec<u16> {
    let swap_bytes = matches!(order, Order::BADC | Order::DCBA);
    let reverse_words = matches!(order, Order::CDAB | Order::DCBA);
    let mut words: Vec<u16> = (0..n)
        .map(|i| (bits >> (16 * (n - 1 - i))) as u16)
        .collect();
    if reverse_words {
        words.reverse();
    }
    if swap_bytes {
        for w in &mut words {
            *w = w.swap_bytes();
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterflow_model::profile::Space;

    fn field(dtype: DataType, order: Order) -> Field {
        Field {
            quantity: "x".into(),
            space: Space::Holding,
            address: 0,
            dtype,
            order,
            scale: 1.0,
            offset: 0.0,
            unit: "1".into(),
            counter: false,
            group: "energy".into(),
            invalid: None,
        }
    }

    #[test]
    fn word_and_byte_orders_of_a_float() {
        // 1234.5f32 = 0x449A_5000: A=44 B=9A C=50 D=00.
        let cases = [
            (Order::ABCD, [0x449A, 0x5000]),
            (Order::CDAB, [0x5000, 0x449A]),
            (Order::BADC, [0x9A44, 0x0050]),
            (Order::DCBA, [0x0050, 0x9A44]),
        ];
        for (order, words) in cases {
            assert_eq!(
                decode(&field(DataType::F32, order), &words),
                Ok(1234.5),
                "{order:?}"
            );
            assert_eq!(
                encode(&field(DataType::F32, order), 1234.5),
                words.to_vec(),
                "{order:?}"
            );
        }
    }

    #[test]
    fn integers_signed_and_wide() {
        // i16 0xFFFE = −2; u32 0x0001_0002 = 65 538; i32 0xFFFF_FFFE = −2.
        assert_eq!(
            decode(&field(DataType::I16, Order::ABCD), &[0xFFFE]),
            Ok(-2.0)
        );
        assert_eq!(
            decode(&field(DataType::U32, Order::ABCD), &[0x0001, 0x0002]),
            Ok(65_538.0)
        );
        assert_eq!(
            decode(&field(DataType::U32, Order::CDAB), &[0x0002, 0x0001]),
            Ok(65_538.0)
        );
        assert_eq!(
            decode(&field(DataType::I32, Order::ABCD), &[0xFFFF, 0xFFFE]),
            Ok(-2.0)
        );
        // u64 0x0000_0001_0000_0000 = 4 294 967 296; reversed words for CDAB.
        assert_eq!(
            decode(&field(DataType::U64, Order::ABCD), &[0, 1, 0, 0]),
            Ok(4_294_967_296.0)
        );
        assert_eq!(
            decode(&field(DataType::U64, Order::CDAB), &[0, 0, 1, 0]),
            Ok(4_294_967_296.0)
        );
        // f64 1.5 = 0x3FF8_0000_0000_0000.
        assert_eq!(
            decode(&field(DataType::F64, Order::ABCD), &[0x3FF8, 0, 0, 0]),
            Ok(1.5)
        );
        assert_eq!(
            decode(&field(DataType::F64, Order::DCBA), &[0, 0, 0, 0xF83F]),
            Ok(1.5)
        );
    }

    #[test]
    fn sentinels_are_errors_not_zero() {
        assert_eq!(
            decode(&field(DataType::U16, Order::ABCD), &[0xFFFF]),
            Err(FieldError::Sentinel(0xFFFF))
        );
        assert_eq!(
            decode(&field(DataType::I16, Order::ABCD), &[0x7FFF]),
            Err(FieldError::Sentinel(0x7FFF))
        );
        assert_eq!(
            decode(&field(DataType::I32, Order::ABCD), &[0x8000, 0]),
            Err(FieldError::Sentinel(0x8000_0000))
        );
        assert_eq!(
            decode(&field(DataType::U32, Order::ABCD), &[0xFFFF, 0xFFFF]),
            Err(FieldError::Sentinel(0xFFFF_FFFF))
        );
        // A float NaN (0x7FC0_0000) and +Inf (0x7F80_0000).
        assert!(matches!(
            decode(&field(DataType::F32, Order::ABCD), &[0x7FC0, 0]),
            Err(FieldError::Sentinel(_))
        ));
        assert!(matches!(
            decode(&field(DataType::F32, Order::ABCD), &[0x7F80, 0]),
            Err(FieldError::Sentinel(_))
        ));
    }

    #[test]
    fn scale_and_offset() {
        // Acrel energy: u32 × 0.01 kWh; 123 456 → 1 234.56.
        let mut f = field(DataType::U32, Order::ABCD);
        f.scale = 0.01;
        let v = decode(&f, &[0x0001, 0xE240]).unwrap_or(f64::NAN);
        assert!((v - 1234.56).abs() < 1e-9, "{v}");
        f.offset = -40.0;
        assert!((decode(&f, &[0, 100]).unwrap_or(f64::NAN) - (-39.0)).abs() < 1e-9);
    }
}
