//! `libdelayshim.so`: sleeps around the calls through which storage code
//! races (writes, locks, syncs, and changes to names: open, rename, link,
//! unlink), beneath unmodified programs, and optionally makes them fail.
//!
//! Load it with `LD_PRELOAD=/abs/path/libdelayshim.so PROGRAM`. The data
//! flows one way:
//!
//! ```text
//! exported trampoline (exports, from the list in families)
//!   -> pass-through test: one load, one test, jump to the real function
//!   -> count (stats) -> Call (call: function, descriptor or path, kind)
//!   -> filters (intercept: DELAYSHIM_FUNCS, LOCKS, FDS, PATHS)
//!   -> Decision (replay, or strategy::decide: every | sparse | victims | sites, faults, budget)
//!   -> record and log (record), counts (stats), all through output
//!   -> sleep before, real call or fault, sleep after
//! ```
//!
//! Everything between an exported function and the real call, and in
//! `_exit`, is async-signal-safe: no allocation, no locks, no stdio, fixed
//! buffers of the thread's own, and raw system calls for the shim's own
//! I/O. Allocation, parsing and opening files happen once, at load
//! ([`config`], `init`). The real call's result and `errno` reach the
//! caller untouched unless a fault was asked for.

// Every unsafe block says why it is sound (CI denies warnings).
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!(
    "delayshim supports glibc Linux on x86-64 and aarch64 only: its wrappers \
     pass variadic arguments as one pointer-sized integer and the caller's \
     address in an argument register, which is only known to be correct there"
);

pub mod call;
pub mod config;
pub mod delay;
mod errno;
mod exec;
mod exports;
mod families;
pub mod faults;
mod guard;
mod init;
pub mod intercept;
mod lifecycle;
pub mod locks;
mod output;
mod peek;
mod pool;
mod process;
mod real;
mod record;
mod replay;
mod sandbox;
mod sites;
pub mod stats;
pub mod strategy;
pub mod table;

/// Held by the unit tests that change or count in process-wide state (the
/// seed and lineage, a simulated fork child's reset of the statistics), so
/// they do not see each other's changes.
#[cfg(test)]
pub(crate) static PROCESS_STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
