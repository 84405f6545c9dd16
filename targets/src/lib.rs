//! Race targets: small programs with a real concurrency bug whose window
//! is narrow, so that plain reruns rarely show it. Each exits 1 when its
//! bug shows, 0 when it does not, and 3 when something else went wrong.
//! `scripts/bench.sh` measures how fast each way of fuzzing finds them.

pub mod fileio;
mod workers;

pub use crate::workers::{exit_status, run_workers, EXIT_BUG_FOUND, EXIT_ERROR, EXIT_NO_BUG};
