//! Loading: read the configuration, open the output files, resolve the
//! real functions, hook fork and exit, then turn interception on, all
//! before the host's `main`.

use std::ffi::c_int;

use crate::config::{Config, EXIT_CONFIG_ERROR};
use crate::guard::Guard;

#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

#[cfg_attr(test, allow(dead_code))]
extern "C" fn init() {
    // C promises errno 0 when main starts; loading must leave it as it was.
    let _errno = crate::errno::SavedErrno::save();
    let _guard = Guard::enter();
    crate::real::resolve_all();
    let config = Config::from_env().unwrap_or_else(|error| refuse(&error.to_string()));
    for (output, sink, name) in [
        (&crate::stats::OUTPUT, &config.stats, "DELAYSHIM_STATS"),
        (&crate::record::LOG, &config.log, "DELAYSHIM_LOG"),
    ] {
        if let Some(path) = sink {
            if let Err(why) = output.open(path.as_deref()) {
                refuse(&format!("delayshim: {name}: {why}"));
            }
        }
    }
    if let Some(path) = &config.record {
        if let Err(why) = crate::record::RECORD.open(Some(path)) {
            refuse(&format!("delayshim: DELAYSHIM_RECORD: {why}"));
        }
    }
    if let Some(path) = &config.replay {
        if let Err(why) = crate::replay::load(path) {
            refuse(&format!("delayshim: {why}"));
        }
    }
    let seed = match (config.seed, config.tree) {
        (Some(seed), _) => seed,
        (None, Some(tree)) => tree.seed,
        (None, None) => {
            let seed = random_seed();
            // The root of a tree chooses; its descendants inherit. Said
            // only where a person reads it: the statistics carry it too.
            // SAFETY: isatty only asks.
            if config.enabled && unsafe { libc::isatty(libc::STDERR_FILENO) } == 1 {
                crate::output::stderr_line(&format!(
                    "delayshim: DELAYSHIM_SEED={seed} (chosen at random; set it to draw these delays again)"
                ));
            }
            seed
        }
    };
    let command_line = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    // Access tracking (`--conflicts`): maps the run's region, if named.
    crate::mapping::resolve();
    crate::closing::resolve();
    crate::track::init(config.region.as_deref(), &command_line);
    // A tree entry drawn with another seed than the one set was left by
    // another run (a stale export, a shell started under the shim): this
    // process is a root, as it would be without it.
    let lineage = config
        .tree
        .filter(|tree| tree.seed == seed)
        .map(|t| t.lineage);
    crate::process::init(seed, lineage);
    crate::peek::learn_filter_at_load();
    crate::exec::install_own_entry();
    let _ = crate::record::COMMAND_LINE.set(command_line);
    // SAFETY: handlers with the signatures pthread_atfork and atexit expect.
    unsafe {
        libc::pthread_atfork(Some(before_fork), None, Some(in_fork_child));
        if config.stats.is_some() {
            libc::atexit(write_stats);
        }
        if config.strategy == crate::config::Strategy::Pct {
            libc::atexit(leave_pct);
        }
    }
    if config.stats.is_some() {
        crate::stats::write_start();
    }
    crate::record::process_line(0);
    crate::intercept::activate(config);
}

/// The program is about to install a seccomp filter that does not spare
/// the shim's own calls: its statistics are written while they can be.
pub(crate) fn before_sandbox() {
    write_stats();
}

/// The program installed such a filter: from now on the shim passes every
/// call through and makes no system call of its own in this process.
pub(crate) fn enter_sandbox() {
    crate::intercept::deactivate();
    crate::output::go_quiet();
}

/// At exit: the main thread's `pct` slot goes back.
extern "C" fn leave_pct() {
    crate::pct::leave();
}

/// `pthread_atfork` prepare handler: a ticket for the coming child.
extern "C" fn before_fork() {
    crate::process::take_fork_ticket();
}

/// `pthread_atfork` child handler: a new lineage, fresh thread numbering
/// and streams, statistics and spawn state of its own, and its record
/// line. Only atomics: the child of a multi-threaded parent may not take
/// locks.
extern "C" fn in_fork_child() {
    crate::process::become_fork_child();
    crate::exec::release_in_fork_child();
    crate::exec::renew_own_entry();
    crate::stats::reset_in_child();
    crate::record::process_line(crate::intercept::intercepted_funcs());
}

/// Stops the program before its `main`, with one line saying why.
fn refuse(message: &str) -> ! {
    crate::output::stderr_line(message);
    exit_now(EXIT_CONFIG_ERROR)
}

fn random_seed() -> u64 {
    let mut seed = 0u64;
    // SAFETY: writes at most 8 bytes into `seed`.
    let n = unsafe { libc::getrandom((&mut seed as *mut u64).cast(), 8, 0) };
    if n == 8 {
        seed
    } else {
        delayshim_decide::hash::mix(crate::delay::now_nanos() ^ u64::from(std::process::id()) << 40)
    }
}

/// Writes this process's statistics line, if asked for. Async-signal-safe.
pub(crate) extern "C" fn write_stats() {
    if !crate::process::owns_state() {
        return;
    }
    let _guard = Guard::enter();
    if let Some(config) = crate::intercept::config().filter(|c| c.stats.is_some()) {
        let _ = std::panic::catch_unwind(|| {
            crate::stats::write_exit(crate::process::seed(), config.strategy.name())
        });
    }
}

/// Ends the process through the real `_exit`, skipping the host's
/// atexit handlers.
pub(crate) fn exit_now(status: c_int) -> ! {
    type Exit = unsafe extern "C" fn(c_int) -> !;
    if let Some(real) = crate::real::EXIT.get() {
        // SAFETY: the real _exit.
        unsafe { std::mem::transmute::<*mut std::ffi::c_void, Exit>(real)(status) }
    }
    // SAFETY: exit_group never returns.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    unreachable!("exit_group returned")
}
