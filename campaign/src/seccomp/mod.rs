//! The seccomp backend: the same delays and faults as the shim, at the
//! system-call boundary, for programs `LD_PRELOAD` cannot reach (static
//! binaries, Go programs, libc's internal calls such as stdio's writes).
//!
//! The supervisor forks the program beneath a seccomp filter that returns
//! `SECCOMP_RET_USER_NOTIF` for the watched system calls only (every other
//! call stays in the kernel), receives each held call, decides as the shim
//! does and answers with `SECCOMP_USER_NOTIF_FLAG_CONTINUE` when its delay
//! is up, or with the fault's errno.
//!
//! Leaves first: [`syscalls`] (the calls as data), [`kernel`] (the
//! kernel's structures, ioctls and the filter program), [`target`]
//! (reading a held call's descriptor, paths and locks from outside),
//! [`config`], [`decide`], [`output`], [`replay`]; then [`launch`] (fork,
//! filter, exec), [`sleeper`] and [`supervisor`].

pub mod config;
pub mod decide;
pub mod kernel;
pub mod launch;
pub mod output;
pub mod replay;
pub mod sleeper;
pub mod supervisor;
pub mod syscalls;
pub mod target;

pub use config::Config;
pub use supervisor::{program_env, supervise, Ended};
