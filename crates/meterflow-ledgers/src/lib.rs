//! The four ledgers (office space, official vehicles, waste sorting, fixed
//! assets) as append-only events in the store (`ledger_events`);
//! corrections are new events. [`kinds`] is the one table of entry kinds
//! (fields, checks, owning agency); [`rules`] the checks they share; the
//! derived figures live in [`space`], [`vehicles`], [`assets`] and
//! [`waste`]. The rules are written down in `docs/ledgers.md`.

pub mod assets;
pub mod kinds;
pub mod rules;
pub mod space;
pub mod table;
pub mod vehicles;
pub mod waste;

pub use kinds::{
    Checked, Field, KINDS, Kind, LEDGERS, Ty, as_event, check, column, csv_header, csv_row, find,
    kind_zh, label_zh, ledger_zh, schema, value_zh, warnings,
};
pub use rules::{Reject, agency, date_field, norm, number, of_kind, text, typed};

#[cfg(test)]
mod tests;
