//! End-to-end tests of meterflow: every integration test is a module of this
//! one binary (one link instead of many). They run the real `meterflow`
//! executable (`CARGO_BIN_EXE_meterflow`) against real files and SQLite.

mod support;

mod alerts;
mod api;
mod backup;
mod check;
mod cnfield;
mod cnmeters;
mod compact;
mod cost;
mod dashboards;
mod deb;
mod deploy;
mod export;
mod figures;
mod fuzz;
mod hostile;
mod import;
mod influx;
mod kpis;
mod layout;
mod ledgers;
mod modbus;
mod mqtt;
mod secrets;
mod shards;
mod spans;
mod standalone;
mod status;
mod web;
