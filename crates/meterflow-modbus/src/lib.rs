//! Modbus polling: profiles decoded into readings, one scheduler per bus.
//!
//! Architecture invariants:
//! - One owner task per bus; exactly one request is in flight on a serial line
//!   or gateway (`concurrency` only for true Modbus TCP devices).
//! - A timeout, cancellation or transport error poisons the connection: it is
//!   dropped (serial: drained until the line is quiet) and re-opened, so a late
//!   answer can never be taken as the reply to the next request.
//! - A reading's time is the response time of its poll.

pub mod decode;
pub mod plan;

pub use decode::{FieldError, decode, encode};
pub use plan::{Read, plan, split};
pub mod bus;
pub mod cnbus;

pub use bus::{BusHealth, MeterHealth, MeterPoll, run_bus};
pub use cnbus::{CnPoll, cn_polls, run_cn_bus};
