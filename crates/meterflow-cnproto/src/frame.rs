//! Finding `68 … CS 16` frames in a byte stream: wake-up `FE` bytes and
//! garbage are skipped, a candidate with a wrong checksum or end byte is
//! refused and the search goes on after its first byte.

/// Which frame layout to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `68 A0..A5 68 C L DATA CS 16`.
    Dlt645,
    /// `68 T A0..A6 C L DATA CS 16`.
    Cjt188,
}

impl Kind {
    /// Bytes before DATA, and the offset of L.
    fn header(self) -> (usize, usize) {
        match self {
            Kind::Dlt645 => (10, 9),
            Kind::Cjt188 => (11, 10),
        }
    }
}

/// Result of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// A whole, valid frame at `buf[start..end]`.
    Frame {
        /// First byte (`68`).
        start: usize,
        /// One past the end byte (`16`).
        end: usize,
    },
    /// A plausible frame starts at `start` but is not complete yet.
    Incomplete {
        /// First byte of the candidate.
        start: usize,
    },
    /// No frame start in the buffer: all of it is garbage.
    Nothing,
}

/// Byte sum mod 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// Look for the first valid frame of `kind` in `buf`; `bad` counts candidates
/// refused for checksum or end byte.
pub fn scan(buf: &[u8], kind: Kind, bad: &mut u64) -> Scan {
    let (head, l_at) = kind.header();
    let mut incomplete: Option<usize> = None;
    let mut p = 0;
    while p < buf.len() {
        if buf[p] != 0x68 {
            p += 1;
            continue;
        }
        if kind == Kind::Dlt645 && buf.len() > p + 7 && buf[p + 7] != 0x68 {
            p += 1;
            continue;
        }
        if buf.len() <= p + l_at {
            incomplete.get_or_insert(p);
            p += 1;
            continue;
        }
        let len = usize::from(buf[p + l_at]);
        let end = p + head + len + 2;
        if buf.len() < end {
            incomplete.get_or_insert(p);
            p += 1;
            continue;
        }
        let cs_ok = checksum(&buf[p..p + head + len]) == buf[p + head + len];
        if cs_ok && buf[end - 1] == 0x16 {
            return Scan::Frame { start: p, end };
        }
        *bad += 1;
        p += 1;
    }
    match incomplete {
        Some(start) => Scan::Incomplete { start },
        None => Scan::Nothing,
    }
}

/// Take the first valid frame out of `buf` (dropping what precedes it);
/// drops leading garbage when there is no frame yet.
pub fn take(buf: &mut Vec<u8>, kind: Kind, bad: &mut u64) -> Option<Vec<u8>> {
    match scan(buf, kind, bad) {
        Scan::Frame { start, end } => {
            let frame = buf[start..end].to_vec();
            buf.drain(..end);
            Some(frame)
        }
        Scan::Incomplete { start } => {
            buf.drain(..start);
            None
        }
        Scan::Nothing => {
            buf.clear();
            None
        }
    }
}
