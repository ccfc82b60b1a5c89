//! Packed BCD, least significant byte first, as both protocols carry numbers.

/// Digits of `bytes` (LSB first) as an integer; `None` if a nibble is not 0–9.
/// With `signed`, bit 7 of the most significant byte is the sign.
pub fn decode(bytes: &[u8], signed: bool) -> Option<(u64, bool)> {
    let mut v: u64 = 0;
    let mut negative = false;
    for (i, &b) in bytes.iter().enumerate().rev() {
        let mut b = b;
        if signed && i == bytes.len() - 1 {
            negative = b & 0x80 != 0;
            b &= 0x7F;
        }
        let (hi, lo) = (b >> 4, b & 0x0F);
        if hi > 9 || lo > 9 {
            return None;
        }
        v = v
            .checked_mul(100)?
            .checked_add(u64::from(hi) * 10 + u64::from(lo))?;
    }
    Some((v, negative))
}

/// A BCD field as a number with `decimals` decimal places.
pub fn value(bytes: &[u8], decimals: u8, signed: bool) -> Option<f64> {
    let (v, neg) = decode(bytes, signed)?;
    let x = v as f64 / 10f64.powi(i32::from(decimals));
    Some(if neg { -x } else { x })
}

/// Encode `v` (non-negative digits) into `n` bytes LSB first; `None` if it does not fit.
pub fn encode(mut v: u64, n: usize, negative: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let lo = (v % 10) as u8;
        v /= 10;
        let hi = (v % 10) as u8;
        v /= 10;
        out.push((hi << 4) | lo);
    }
    if v != 0 {
        return None;
    }
    if negative {
        let last = out.last_mut()?;
        if *last & 0x80 != 0 {
            return None;
        }
        *last |= 0x80;
    }
    Some(out)
}

/// A number with `decimals` places into `n` BCD bytes (rounded); `None` if it does not fit.
pub fn encode_value(x: f64, n: usize, decimals: u8, signed: bool) -> Option<Vec<u8>> {
    if !x.is_finite() || (x < 0.0 && !signed) {
        return None;
    }
    let scaled = (x.abs() * 10f64.powi(i32::from(decimals))).round();
    if scaled >= 1e18 {
        return None;
    }
    encode(scaled as u64, n, x < 0.0)
}

/// A 12- or 14-digit address string into bytes, least significant first
/// (`"000000001234"` → `34 12 00 00 00 00`).
pub fn address_lsb_first(text: &str, n: usize) -> Option<Vec<u8>> {
    if text.len() != n * 2
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'a'..=b'f' | b'A'..=b'F'))
    {
        return None;
    }
    let mut out: Vec<u8> = (0..n)
        .map(|i| u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).unwrap_or(0))
        .collect();
    out.reverse();
    Some(out)
}

/// Bytes (least significant first) back into the address string.
pub fn address_text(bytes: &[u8]) -> String {
    bytes.iter().rev().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_signs() {
        assert_eq!(
            decode(&[0x56, 0x34, 0x12, 0x00], false),
            Some((123_456, false))
        );
        assert_eq!(value(&[0x56, 0x34, 0x12, 0x00], 2, false), Some(1234.56));
        // XX.XXXX kW with the sign in bit 7 of the last byte: −1.2345 kW.
        assert_eq!(value(&[0x45, 0x23, 0x81], 4, true), Some(-1.2345));
        assert_eq!(
            encode_value(-1.2345, 3, 4, true),
            Some(vec![0x45, 0x23, 0x81])
        );
        assert_eq!(decode(&[0x1A], false), None, "A is not a digit");
        assert_eq!(
            encode(1_000_000, 3, false),
            None,
            "7 digits do not fit in 3 bytes"
        );
        assert_eq!(
            address_lsb_first("000000001234", 6),
            Some(vec![0x34, 0x12, 0, 0, 0, 0])
        );
        assert_eq!(address_text(&[0x34, 0x12, 0, 0, 0, 0]), "000000001234");
        assert_eq!(address_lsb_first("12345", 6), None);
    }
}
