//! Loading: read the configuration, resolve the real functions, hook fork
//! and exit, then turn interception on, all before the host's `main`.

use std::ffi::c_int;

use crate::config::{Config, EXIT_CONFIG_ERROR};
use crate::guard::Guard;

#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

#[cfg_attr(test, allow(dead_code))]
extern "C" fn init() {
    let _guard = Guard::enter();
    crate::real::resolve_all();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            crate::log::stderr_line(&error.to_string());
            exit_now(EXIT_CONFIG_ERROR);
        }
    };
    if let Some(sink) = &config.log {
        if let Err(message) = crate::log::open_log(sink) {
            crate::log::stderr_line(&message);
            exit_now(EXIT_CONFIG_ERROR);
        }
    }
    let seed = config.seed.unwrap_or_else(|| {
        let seed = random_seed();
        // The statistics line carries the seed; without it, say it here.
        if config.enabled && config.stats.is_none() {
            crate::log::stderr_line(&format!(
                "delayshim: DELAYSHIM_SEED={seed} (chosen at random; set it to draw these delays again)"
            ));
        }
        seed
    });
    let command_line = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    crate::process::init(seed, &command_line);
    // SAFETY: handlers with the signatures pthread_atfork and atexit expect.
    unsafe {
        libc::pthread_atfork(
            Some(crate::process::before_fork),
            None,
            Some(crate::process::in_fork_child),
        );
        if config.stats.is_some() {
            libc::atexit(write_stats);
        }
    }
    crate::intercept::activate(config);
}

fn random_seed() -> u64 {
    let mut seed = 0u64;
    // SAFETY: writes at most 8 bytes into `seed`.
    let n = unsafe { libc::getrandom((&mut seed as *mut u64).cast(), 8, 0) };
    if n == 8 {
        seed
    } else {
        // SAFETY: clock_gettime fills the timespec.
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        crate::process::mix(
            now.tv_sec as u64 ^ (now.tv_nsec as u64) << 32 ^ std::process::id() as u64,
        )
    }
}

/// Writes this process's statistics line, if asked for.
extern "C" fn write_stats() {
    if !crate::process::owns_state() {
        return;
    }
    let _guard = Guard::enter();
    if let Some(sink) = crate::intercept::config().and_then(|c| c.stats.as_ref()) {
        let _ = std::panic::catch_unwind(|| crate::stats::write(sink, crate::process::seed()));
    }
}

/// Ends the process through the real `_exit`, skipping the host's
/// atexit handlers.
fn exit_now(status: c_int) -> ! {
    type Exit = unsafe extern "C" fn(c_int) -> !;
    if let Some(real) = crate::real::exit_address() {
        // SAFETY: the real _exit.
        unsafe { std::mem::transmute::<*mut std::ffi::c_void, Exit>(real)(status) }
    }
    // SAFETY: exit_group never returns.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    unreachable!("exit_group returned")
}

/// `_exit` and `_Exit` skip atexit handlers: programs such as Python's
/// multiprocessing end their fork children with them, so the statistics
/// are written here first (but not by a vfork child, which ends with
/// `_exit` when its exec fails and shares its parent's counters).
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn _exit(status: c_int) -> ! {
    write_stats();
    exit_now(status)
}

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn _Exit(status: c_int) -> ! {
    write_stats();
    exit_now(status)
}
