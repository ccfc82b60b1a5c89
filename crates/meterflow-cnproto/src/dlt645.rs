//! DL/T 645-2007: frames `[FE…] 68 A0..A5 68 C L DATA CS 16`, address 6 bytes
//! BCD least significant first, DATA bytes +0x33 on the wire, CS the byte sum
//! from the first 68 through DATA. Read 0x11 → 0x91 (0xB1 with follow-up
//! frames, read on with 0x12), error 0xD1; read address 0x13 → 0x93.

use std::fmt;

use crate::bcd;
use crate::frame::{Kind, checksum};

/// Control codes (master → meter).
pub const READ: u8 = 0x11;
/// Read the follow-up frame of a multi-frame answer.
pub const READ_FOLLOW: u8 = 0x12;
/// Read the address (broadcast `AA…AA`, one meter on the bus).
pub const READ_ADDRESS: u8 = 0x13;

/// Wake-up bytes sent before a request.
pub const PREAMBLE: [u8; 4] = [0xFE; 4];

/// The broadcast address of the read-address command.
pub const BROADCAST: [u8; 6] = [0xAA; 6];

/// A data identifier, written DI3 DI2 DI1 DI0 (`0x00010000` = forward active total).
pub type Di = u32;

/// Value format of a data item: BCD bytes, decimals, sign bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Bytes.
    pub bytes: u8,
    /// Decimal places.
    pub decimals: u8,
    /// Bit 7 of the most significant byte is the sign.
    pub signed: bool,
}

/// A data item of the shipped table: DI, quantity name, unit, format, counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Item {
    /// Identifier.
    pub di: Di,
    /// meterflow quantity.
    pub quantity: &'static str,
    /// Unit.
    pub unit: &'static str,
    /// Format.
    pub format: Format,
    /// A cumulative register (normalised into consumption).
    pub counter: bool,
}

const fn item(
    di: Di,
    quantity: &'static str,
    unit: &'static str,
    bytes: u8,
    decimals: u8,
    signed: bool,
    counter: bool,
) -> Item {
    Item {
        di,
        quantity,
        unit,
        format: Format {
            bytes,
            decimals,
            signed,
        },
        counter,
    }
}

/// Identifiers meterflow knows (DL/T 645-2007 appendix A).
pub const ITEMS: &[Item] = &[
    item(0x0000_0000, "energy_combined", "kWh", 4, 2, true, true),
    item(0x0001_0000, "energy_import", "kWh", 4, 2, false, true),
    item(0x0001_0100, "energy_import_t1", "kWh", 4, 2, false, true),
    item(0x0001_0200, "energy_import_t2", "kWh", 4, 2, false, true),
    item(0x0001_0300, "energy_import_t3", "kWh", 4, 2, false, true),
    item(0x0001_0400, "energy_import_t4", "kWh", 4, 2, false, true),
    item(0x0002_0000, "energy_export", "kWh", 4, 2, false, true),
    item(0x0002_0100, "energy_export_t1", "kWh", 4, 2, false, true),
    item(0x0002_0200, "energy_export_t2", "kWh", 4, 2, false, true),
    item(0x0002_0300, "energy_export_t3", "kWh", 4, 2, false, true),
    item(0x0002_0400, "energy_export_t4", "kWh", 4, 2, false, true),
    item(0x0201_0100, "voltage_l1", "V", 2, 1, false, false),
    item(0x0201_0200, "voltage_l2", "V", 2, 1, false, false),
    item(0x0201_0300, "voltage_l3", "V", 2, 1, false, false),
    item(0x0202_0100, "current_l1", "A", 3, 3, true, false),
    item(0x0202_0200, "current_l2", "A", 3, 3, true, false),
    item(0x0202_0300, "current_l3", "A", 3, 3, true, false),
    item(0x0203_0000, "power", "kW", 3, 4, true, false),
    item(0x0206_0000, "power_factor", "", 2, 3, true, false),
    item(0x0280_0002, "frequency", "Hz", 2, 2, false, false),
];

/// The shipped item of an identifier.
pub fn item_of(di: Di) -> Option<&'static Item> {
    ITEMS.iter().find(|i| i.di == di)
}

/// Error reply (0xD1) bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub u8);

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 7] = [
            "other error",
            "no requested data",
            "password error / unauthorised",
            "baud rate cannot be changed",
            "annual time zones exceeded",
            "daily time periods exceeded",
            "tariffs exceeded",
        ];
        let names: Vec<&str> = (0..7)
            .filter(|b| self.0 & (1 << b) != 0)
            .map(|b| NAMES[b])
            .collect();
        if names.is_empty() {
            write!(f, "error 0x{:02X}", self.0)
        } else {
            write!(f, "{} (0x{:02X})", names.join(", "), self.0)
        }
    }
}

/// Why a reply was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// Not a DL/T 645 frame (layout, checksum, end byte).
    Malformed(&'static str),
    /// The reply carries another meter's address: never attributed.
    WrongAddress {
        /// Expected.
        expected: String,
        /// Received.
        got: String,
    },
    /// A control code that does not answer the request.
    WrongControl(u8),
    /// The reply is about another identifier.
    WrongDi(Di),
    /// The meter answered with an error.
    Meter(ErrorCode),
    /// The value bytes are not BCD.
    NotBcd,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Malformed(w) => write!(f, "malformed frame: {w}"),
            ReplyError::WrongAddress { expected, got } => {
                write!(f, "reply from {got}, expected {expected}")
            }
            ReplyError::WrongControl(c) => write!(f, "unexpected control code 0x{c:02X}"),
            ReplyError::WrongDi(d) => write!(f, "reply for DI {d:08X}"),
            ReplyError::Meter(e) => write!(f, "meter error: {e}"),
            ReplyError::NotBcd => write!(f, "value is not BCD"),
        }
    }
}

/// A frame to send, with the +0x33 offset applied to `data`.
pub fn encode(address: &[u8; 6], control: u8, data: &[u8], preamble: bool) -> Vec<u8> {
    let mut f = Vec::with_capacity(16 + data.len());
    if preamble {
        f.extend_from_slice(&PREAMBLE);
    }
    let start = f.len();
    f.push(0x68);
    f.extend_from_slice(address);
    f.push(0x68);
    f.push(control);
    f.push(data.len() as u8);
    f.extend(data.iter().map(|b| b.wrapping_add(0x33)));
    let cs = checksum(&f[start..]);
    f.push(cs);
    f.push(0x16);
    f
}

fn di_bytes(di: Di) -> [u8; 4] {
    di.to_le_bytes()
}

/// Read one identifier.
pub fn read_request(address: &[u8; 6], di: Di, preamble: bool) -> Vec<u8> {
    encode(address, READ, &di_bytes(di), preamble)
}

/// Read the follow-up frame `seq` of an identifier.
pub fn read_follow_request(address: &[u8; 6], di: Di, seq: u8, preamble: bool) -> Vec<u8> {
    let mut d = di_bytes(di).to_vec();
    d.push(seq);
    encode(address, READ_FOLLOW, &d, preamble)
}

/// Read the address of the only meter on the bus.
pub fn read_address_request(preamble: bool) -> Vec<u8> {
    encode(&BROADCAST, READ_ADDRESS, &[], preamble)
}

/// A decoded frame (wake-up bytes skipped, DATA with 0x33 removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Address, least significant byte first.
    pub address: [u8; 6],
    /// Control code.
    pub control: u8,
    /// Data.
    pub data: Vec<u8>,
}

/// Parse one whole frame (as found by [`crate::frame::scan`], or with a preamble).
pub fn parse(bytes: &[u8]) -> Result<Frame, ReplyError> {
    let mut bad = 0;
    let (start, end) = match crate::frame::scan(bytes, Kind::Dlt645, &mut bad) {
        crate::frame::Scan::Frame { start, end } => (start, end),
        _ => {
            return Err(ReplyError::Malformed(
                "no complete frame with a valid checksum",
            ));
        }
    };
    let f = &bytes[start..end];
    let mut address = [0u8; 6];
    address.copy_from_slice(&f[1..7]);
    let len = usize::from(f[9]);
    Ok(Frame {
        address,
        control: f[8],
        data: f[10..10 + len]
            .iter()
            .map(|b| b.wrapping_sub(0x33))
            .collect(),
    })
}

/// A data reply: the value bytes of `di`, and whether follow-up frames exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// Identifier answered.
    pub di: Di,
    /// Value bytes (LSB first).
    pub value: Vec<u8>,
    /// More frames follow (read them with 0x12).
    pub more: bool,
}

/// Check a reply frame against the request (address, read, identifier).
pub fn data_reply(frame: &Frame, address: &[u8; 6], di: Di) -> Result<Data, ReplyError> {
    if &frame.address != address {
        return Err(ReplyError::WrongAddress {
            expected: bcd::address_text(address),
            got: bcd::address_text(&frame.address),
        });
    }
    match frame.control {
        0xD1 | 0xD2 => Err(ReplyError::Meter(ErrorCode(
            frame.data.first().copied().unwrap_or(0),
        ))),
        0x91 | 0xB1 | 0x92 | 0xB2 => {
            if frame.data.len() < 4 {
                return Err(ReplyError::Malformed("data shorter than its identifier"));
            }
            let got =
                u32::from_le_bytes([frame.data[0], frame.data[1], frame.data[2], frame.data[3]]);
            if got != di {
                return Err(ReplyError::WrongDi(got));
            }
            Ok(Data {
                di,
                value: frame.data[4..].to_vec(),
                more: frame.control & 0x20 != 0,
            })
        }
        c => Err(ReplyError::WrongControl(c)),
    }
}

/// The value of a data reply in `format`.
pub fn value(data: &Data, format: Format) -> Result<f64, ReplyError> {
    let n = usize::from(format.bytes);
    if data.value.len() < n {
        return Err(ReplyError::Malformed("value shorter than its format"));
    }
    bcd::value(&data.value[..n], format.decimals, format.signed).ok_or(ReplyError::NotBcd)
}

/// The address in a read-address reply (0x93).
pub fn address_reply(frame: &Frame) -> Result<[u8; 6], ReplyError> {
    if frame.control != 0x93 || frame.data.len() != 6 {
        return Err(ReplyError::WrongControl(frame.control));
    }
    let mut a = [0u8; 6];
    a.copy_from_slice(&frame.data);
    Ok(a)
}

/// A meter's data reply (the simulator's side).
pub fn reply_data(address: &[u8; 6], di: Di, value: &[u8], more: bool) -> Vec<u8> {
    let mut d = di_bytes(di).to_vec();
    d.extend_from_slice(value);
    encode(address, if more { 0xB1 } else { 0x91 }, &d, true)
}

/// A meter's error reply.
pub fn reply_error(address: &[u8; 6], code: u8) -> Vec<u8> {
    encode(address, 0xD1, &[code], true)
}

/// A meter's read-address reply.
pub fn reply_address(address: &[u8; 6]) -> Vec<u8> {
    encode(address, 0x93, address, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: [u8; 6] = [0x34, 0x12, 0, 0, 0, 0];

    #[test]
    fn the_domain_test_vectors() {
        // docs/methodology.md §12: read 00010000 from meter 000000001234.
        assert_eq!(
            read_request(&A, 0x0001_0000, false),
            vec![
                0x68, 0x34, 0x12, 0, 0, 0, 0, 0x68, 0x11, 0x04, 0x33, 0x33, 0x34, 0x33, 0xF8, 0x16
            ]
        );
        assert_eq!(
            crate::bcd::address_lsb_first("000000001234", 6),
            Some(A.to_vec())
        );
        // Reply data `89 67 45 33` after the DI decodes to 1234.56 kWh.
        let mut reply = vec![
            0xFE, 0xFE, 0x68, 0x34, 0x12, 0, 0, 0, 0, 0x68, 0x91, 0x08, 0x33, 0x33, 0x34, 0x33,
            0x89, 0x67, 0x45, 0x33,
        ];
        let cs = checksum(&reply[2..]);
        reply.extend([cs, 0x16]);
        let f = parse(&reply).expect("frame");
        let d = data_reply(&f, &A, 0x0001_0000).expect("data");
        assert!(!d.more);
        let fmt = item_of(0x0001_0000).expect("item").format;
        assert_eq!(value(&d, fmt), Ok(1234.56));
        // Our simulator's reply is the same frame (with four wake-up bytes, not two).
        let ours = reply_data(&A, 0x0001_0000, &[0x56, 0x34, 0x12, 0x00], false);
        assert_eq!(&ours[2..], &reply[..]);
    }

    #[test]
    fn errors_addresses_and_follow_ups() {
        let f = parse(&reply_error(&A, 0x02)).expect("frame");
        let e = data_reply(&f, &A, 0x0001_0000).expect_err("error reply");
        assert_eq!(e.to_string(), "meter error: no requested data (0x02)");
        let other = [0x35, 0x12, 0, 0, 0, 0];
        let f = parse(&reply_data(&other, 0x0001_0000, &[0; 4], false)).expect("frame");
        assert!(matches!(
            data_reply(&f, &A, 0x0001_0000),
            Err(ReplyError::WrongAddress { .. })
        ));
        let f = parse(&reply_data(&A, 0x0002_0000, &[0; 4], true)).expect("frame");
        assert_eq!(
            data_reply(&f, &A, 0x0001_0000),
            Err(ReplyError::WrongDi(0x0002_0000))
        );
        let d = data_reply(&f, &A, 0x0002_0000).expect("data");
        assert!(d.more);
        let req = read_follow_request(&A, 0x0002_0000, 1, false);
        assert_eq!(req[8], 0x12);
        assert_eq!(req[9], 5);
        // Read address: broadcast request, the meter answers with its own.
        let req = read_address_request(false);
        assert_eq!(&req[1..7], &BROADCAST);
        assert_eq!(req[8], 0x13);
        assert_eq!(
            address_reply(&parse(&reply_address(&A)).expect("frame")),
            Ok(A)
        );
        // Signed formats: −1.2345 kW total active power.
        let f = parse(&reply_data(&A, 0x0203_0000, &[0x45, 0x23, 0x81], false)).expect("frame");
        let d = data_reply(&f, &A, 0x0203_0000).expect("data");
        assert_eq!(
            value(&d, item_of(0x0203_0000).expect("item").format),
            Ok(-1.2345)
        );
    }

    #[test]
    fn garbage_and_bad_checksums_are_skipped() {
        let good = reply_data(&A, 0x0001_0000, &[0x56, 0x34, 0x12, 0x00], false);
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 2] ^= 0x01; // checksum
        let mut stream = vec![0x00, 0x68, 0x68, 0x16, 0xFF];
        stream.extend(&bad);
        stream.extend([0x12, 0x68]);
        stream.extend(&good);
        let mut buf = stream.clone();
        let mut refused = 0;
        let frame =
            crate::frame::take(&mut buf, Kind::Dlt645, &mut refused).expect("the good frame");
        assert_eq!(parse(&frame).map(|f| f.data.len()), Ok(8));
        assert!(refused >= 1, "the bad-checksum candidate was counted");
        assert!(buf.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Any bytes: no panic; whatever is found is a valid frame.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(f) = parse(&bytes) {
                let again = encode(&f.address, f.control, &f.data, false);
                prop_assert!(bytes.windows(again.len()).any(|w| w == again.as_slice()));
                let _ = data_reply(&f, &A, 0x0001_0000).map(|d| value(&d, Format { bytes: 4, decimals: 2, signed: false }));
            }
            let mut buf = bytes.clone();
            let mut bad = 0;
            while crate::frame::take(&mut buf, Kind::Dlt645, &mut bad).is_some() {}
            prop_assert!(buf.len() <= bytes.len());
        }

        /// A valid reply embedded anywhere in garbage is found and decodes to its value.
        #[test]
        fn replies_are_found_in_garbage(
            pre in proptest::collection::vec(any::<u8>(), 0..60),
            post in proptest::collection::vec(any::<u8>(), 0..20),
            kwh in 0u64..100_000_000,
        ) {
            let v = crate::bcd::encode(kwh, 4, false).expect("fits");
            let reply = reply_data(&A, 0x0001_0000, &v, false);
            let mut stream = pre.clone();
            stream.extend(&reply);
            stream.extend(&post);
            // Garbage before may hold a false frame that also checks out: the
            // master then rejects it by address or DI and reads on, as here.
            let mut buf = stream;
            let mut bad = 0;
            let mut found = None;
            while let Some(frame) = crate::frame::take(&mut buf, Kind::Dlt645, &mut bad) {
                if let Ok(f) = parse(&frame)
                    && let Ok(d) = data_reply(&f, &A, 0x0001_0000)
                {
                    found = Some(value(&d, Format { bytes: 4, decimals: 2, signed: false }));
                    break;
                }
            }
            prop_assert_eq!(found, Some(Ok(kwh as f64 / 100.0)));
        }
    }
}
