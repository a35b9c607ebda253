//! The daemon's integration tests, one module per area, in one test binary:
//! each test binary links the whole daemon and its dependencies, and twenty of
//! them took more disk than a CI machine had. `cargo test --test it hostile::`
//! runs one area.

mod common;

mod callerid;
mod cards;
mod catalog;
mod cli;
mod config;
mod deb;
mod devices;
mod guards;
mod hostile;
mod hotplug;
mod idcard;
mod pcsc;
mod print;
mod reload;
mod serial;
mod stream;
mod systemd;
mod transactions;
mod uplink;
mod wss;
