//! Integration tests: the driver, and the shim beneath the driver, probe
//! programs, python3 and the sqlite3 CLI.

mod util;

mod auto;
mod campaign;
mod cli;
mod config;
mod conflicts;
mod crash;
mod detection;
mod driver;
mod errno;
mod explain;
mod families;
mod faults;
mod fork;
mod hostile;
mod pct;
mod reach;
mod readme;
mod reliability;
mod replay;
mod seccomp;
mod strategies;
mod targets;
