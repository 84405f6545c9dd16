//! Passing the tree's seed and a place in the tree to every program this
//! process executes or spawns: the exec and posix_spawn families add
//! `DELAYSHIM_TREE=SEED:LINEAGE` to the new program's environment (the
//! process's own environment is never changed, nor is `LD_PRELOAD`).
//!
//! The new environment is built in a fixed per-thread array: these calls
//! are made from vfork children and signal handlers. An environment too
//! large for it passes unchanged, and that program starts a tree of its
//! own (with the inherited seed, if `DELAYSHIM_SEED` is set).
//!
//! glibc's `system()` and `popen()` spawn through internal calls that no
//! preloaded library sees; their children are told apart by their command
//! lines only.

// Unit tests compile the exported functions out.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::{c_char, c_int, c_void};

use crate::output::Line;
use crate::real::Real;

/// Environment entries the new environment may hold: 4 KB of the caller's
/// stack. A larger environment passes unchanged.
const CAPACITY: usize = 512;

extern "C" {
    static environ: *const *const c_char;
}

const PREFIX: &[u8] = b"DELAYSHIM_TREE=";

/// Runs `f` with `envp` plus this process's next child's tree entry,
/// built on the stack: thread-local buffers would take their size from
/// every thread's stack, and a vfork child that executes never returns to
/// give back anything it took.
fn with_tree<R>(envp: *const *const c_char, f: impl FnOnce(*const *const c_char) -> R) -> R {
    if crate::intercept::config().is_none() || envp.is_null() {
        return f(envp);
    }
    let mut tree = [0u8; 64];
    let mut entries = [std::ptr::null::<c_char>(); CAPACITY + 2];
    let mut line = Line::new(&mut tree);
    line.bytes(PREFIX)
        .hex_digits(crate::process::seed())
        .str(":")
        .hex_digits(crate::process::next_child_lineage());
    let len = line.finish().len();
    // finish() ended it with a newline: make it the string's NUL.
    tree[len - 1] = 0;
    let mut count = 0;
    let mut at = envp;
    // SAFETY: envp is a NULL-terminated array of C strings, as exec requires.
    unsafe {
        while !(*at).is_null() {
            if count == CAPACITY {
                return f(envp);
            }
            if !std::ffi::CStr::from_ptr(*at).to_bytes().starts_with(PREFIX) {
                entries[count] = *at;
                count += 1;
            }
            at = at.add(1);
        }
    }
    entries[count] = tree.as_ptr().cast();
    f(entries.as_ptr())
}

fn real<F: Copy>(real: &Real) -> Option<F> {
    let address = real.get()?;
    // SAFETY: F is the function pointer type of this real function.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) })
}

fn missing(real: &Real) -> c_int {
    real.report_missing();
    crate::errno::set(libc::ENOSYS);
    -1
}

type Argv = *const *const c_char;
type ExecveFn = unsafe extern "C" fn(*const c_char, Argv, Argv) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, Argv, Argv) -> c_int;
type ExecveatFn = unsafe extern "C" fn(c_int, *const c_char, Argv, Argv, c_int) -> c_int;
type SpawnFn = unsafe extern "C" fn(
    *mut libc::pid_t,
    *const c_char,
    *const libc::posix_spawn_file_actions_t,
    *const libc::posix_spawnattr_t,
    Argv,
    Argv,
) -> c_int;

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(execve) = real::<ExecveFn>(&crate::real::EXECVE) else {
        return missing(&crate::real::EXECVE);
    };
    // SAFETY: the caller's arguments with a longer environment.
    with_tree(envp, |envp| unsafe { execve(path, argv, envp) })
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    // SAFETY: execv is execve with the process's environment.
    unsafe { execve(path, argv, environ) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(execvpe) = real::<ExecveFn>(&crate::real::EXECVPE) else {
        return missing(&crate::real::EXECVPE);
    };
    // SAFETY: the caller's arguments with a longer environment.
    with_tree(envp, |envp| unsafe { execvpe(file, argv, envp) })
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    // SAFETY: execvp is execvpe with the process's environment.
    unsafe { execvpe(file, argv, environ) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int {
    let Some(fexecve) = real::<FexecveFn>(&crate::real::FEXECVE) else {
        return missing(&crate::real::FEXECVE);
    };
    // SAFETY: the caller's arguments with a longer environment.
    with_tree(envp, |envp| unsafe { fexecve(fd, argv, envp) })
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: Argv,
    envp: Argv,
    flags: c_int,
) -> c_int {
    let Some(execveat) = real::<ExecveatFn>(&crate::real::EXECVEAT) else {
        return missing(&crate::real::EXECVEAT);
    };
    // SAFETY: the caller's arguments with a longer environment.
    with_tree(envp, |envp| unsafe {
        execveat(dirfd, path, argv, envp, flags)
    })
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut libc::pid_t,
    path: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attributes: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    let Some(spawn) = real::<SpawnFn>(&crate::real::POSIX_SPAWN) else {
        return libc::ENOSYS;
    };
    // SAFETY: the caller's arguments with a longer environment.
    with_tree(envp, |envp| unsafe {
        spawn(pid, path, actions, attributes, argv, envp)
    })
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut libc::pid_t,
    file: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attributes: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    let Some(spawn) = real::<SpawnFn>(&crate::real::POSIX_SPAWNP) else {
        return libc::ENOSYS;
    };
    // SAFETY: the caller's arguments with a longer environment.
    with_tree(envp, |envp| unsafe {
        spawn(pid, file, actions, attributes, argv, envp)
    })
}
