//! Chinese meter protocols as pure codecs (no I/O): DL/T 645-2007 for
//! electricity meters and CJ/T 188 for water, heat and gas meters, both
//! `68 … CS 16` frames on RS-485 (2400 8E1 by default) or behind serial-to-TCP
//! gateways. `docs/methodology.md` §12 is the reference; its test vectors are unit tests.
//!
//! Architecture invariants:
//! - Decoders take arbitrary bytes: they never panic, skip garbage and wake-up
//!   `FE` bytes before a frame, and refuse a frame whose checksum, end byte,
//!   address or control code is wrong (fuzzed with proptest).
//! - A reply is only ever attributed to the address it carries.

pub mod bcd;
pub mod cjt188;
pub mod dlt645;
pub mod frame;
