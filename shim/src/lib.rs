//! `libdelayshim.so`: sleeps a random time around the I/O, locking and sync
//! calls that storage code makes, beneath unmodified programs.
//!
//! Load it with `LD_PRELOAD=/abs/path/libdelayshim.so PROGRAM`. It exports
//! every libc alias of the interposed families (see [`families`]), reads its
//! `DELAYSHIM_*` settings once when it is loaded ([`config`]), and for each
//! selected call draws a delay from a per-thread random stream ([`delay`])
//! and sleeps before and/or after the real call ([`intercept`]). At exit each
//! process appends one JSON line of statistics ([`stats`]).
//!
//! Its own work never re-enters it ([`guard`]), never takes a lock, and
//! leaves the real call's return value and `errno` untouched.

#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!(
    "delayshim supports glibc Linux on x86-64 and aarch64 only: its fcntl wrapper \
     passes the variadic third argument as one pointer-sized integer, which is \
     only known to be correct there"
);

pub mod config;
pub mod delay;
mod errno;
pub mod families;
mod fcntl;
mod guard;
mod init;
pub mod intercept;
mod log;
mod process;
mod real;
pub mod stats;
