//! Passing the tree's seed and a place in the tree to every program this
//! process executes or spawns: the exec and posix_spawn families add
//! `DELAYSHIM_TREE=SEED:LINEAGE` to the new program's environment, with a
//! ticket of its own (`LD_PRELOAD` is never changed).
//!
//! The new environment is built in a fixed array on the caller's stack:
//! these calls are made from vfork children and signal handlers. An
//! environment too large for it passes unchanged, and that program starts
//! a tree of its own (with the inherited seed, if `DELAYSHIM_SEED` is set).
//!
//! Some children start where no preloaded library sees it: glibc's
//! `system()` and `popen()` spawn through internal calls, and `execl()`
//! and its variadic siblings are not wrapped. They inherit the process's
//! own environment, so the shim keeps one entry there, [`OWN_ENTRY`], whose
//! lineage is renewed at load, in every fork child and before every
//! `system()` and `popen()`: two such children of one process no longer
//! inherit one lineage, and draw different delays.

// Unit tests compile the exported functions out.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use crate::output::Line;
use crate::real::Real;

/// Environment entries the new environment may hold: 4 KB of the caller's
/// stack. A larger environment passes unchanged.
const CAPACITY: usize = 512;

extern "C" {
    static environ: *const *const c_char;
}

const PREFIX: &[u8] = b"DELAYSHIM_TREE=";

/// Where the seed and the lineage start in [`OWN_ENTRY`], 16 hex digits each.
const SEED_AT: usize = PREFIX.len();
const LINEAGE_AT: usize = SEED_AT + 17;
const ENTRY_LEN: usize = LINEAGE_AT + 16 + 1;

/// This process's own `DELAYSHIM_TREE=SEED:LINEAGE` entry, put into its
/// environment at load (`putenv` keeps the pointer, not a copy). Fixed
/// width, so the lineage is rewritten in place with single-byte stores,
/// which a fork child's handler may make; the final byte stays NUL.
static OWN_ENTRY: [AtomicU8; ENTRY_LEN] = [const { AtomicU8::new(0) }; ENTRY_LEN];

fn write_hex(at: usize, value: u64) {
    for (i, byte) in OWN_ENTRY[at..at + 16].iter().enumerate() {
        let nibble = (value >> (60 - 4 * i)) & 0xf;
        byte.store(b"0123456789abcdef"[nibble as usize], Relaxed);
    }
}

/// Puts [`OWN_ENTRY`] into the environment. At load only: `putenv` may
/// allocate a longer environment array.
pub(crate) fn install_own_entry() {
    for (byte, &value) in OWN_ENTRY.iter().zip(PREFIX) {
        byte.store(value, Relaxed);
    }
    write_hex(SEED_AT, crate::process::seed());
    OWN_ENTRY[SEED_AT + 16].store(b':', Relaxed);
    renew_own_entry();
    // SAFETY: a NUL-terminated NAME=VALUE string that lives as long as the
    // process; the environment only reads it (AtomicU8 has u8's layout).
    unsafe { libc::putenv(OWN_ENTRY.as_ptr().cast_mut().cast()) };
}

/// Gives the next child started where the shim cannot see it a ticket of
/// its own. Atomic stores only: called in fork children.
pub(crate) fn renew_own_entry() {
    write_hex(LINEAGE_AT, crate::process::next_child_lineage());
}

/// The lineage [`OWN_ENTRY`] now passes on.
#[cfg(test)]
fn own_entry() -> String {
    OWN_ENTRY[..ENTRY_LEN - 1]
        .iter()
        .map(|b| char::from(b.load(Relaxed)))
        .collect()
}

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
    let Some(count) = copy_environment(envp, &mut entries[..CAPACITY]) else {
        return f(envp);
    };
    let mut line = Line::new(&mut tree);
    line.bytes(PREFIX)
        .hex_digits(crate::process::seed())
        .str(":")
        .hex_digits(crate::process::next_child_lineage());
    let len = line.finish().len();
    // finish() ended it with a newline: make it the string's NUL.
    tree[len - 1] = 0;
    entries[count] = tree.as_ptr().cast();
    f(entries.as_ptr())
}

/// Copies `envp`'s entries but any `DELAYSHIM_TREE` into `entries`, and
/// returns how many. Read through the kernel ([`crate::peek`]): `None`
/// when it cannot read them, and the real call then fails with EFAULT as
/// it would without the shim; `None` too when they do not fit.
fn copy_environment(envp: *const *const c_char, entries: &mut [*const c_char]) -> Option<usize> {
    const BATCH: usize = 16;
    const POINTER: usize = std::mem::size_of::<*const c_char>();
    let mut kept = 0;
    let mut keep = |entry: *const c_char| {
        *entries.get_mut(kept)? = entry;
        kept += 1;
        Some(())
    };
    let mut at = envp as usize;
    loop {
        let mut pointers = [std::ptr::null::<c_char>(); BATCH];
        let sources: [(usize, usize); BATCH] = std::array::from_fn(|i| (at + i * POINTER, POINTER));
        // SAFETY: the pointers' own bytes, as a byte buffer to copy into.
        let into = unsafe {
            std::slice::from_raw_parts_mut(pointers.as_mut_ptr().cast::<u8>(), BATCH * POINTER)
        };
        let got = crate::peek::copy(into, &sources);
        if got == 0 {
            return None;
        }
        let end = pointers[..got].iter().position(|p| p.is_null());
        let live = &pointers[..end.unwrap_or(got)];
        let starts: [(usize, usize); BATCH] =
            std::array::from_fn(|i| (live.get(i).map_or(0, |&p| p as usize), PREFIX.len()));
        let mut prefixes = [0u8; BATCH * PREFIX.len()];
        let mut checked = 0;
        while checked < live.len() {
            let read = crate::peek::copy(
                &mut prefixes[checked * PREFIX.len()..],
                &starts[checked..live.len()],
            );
            for (i, &entry) in live.iter().enumerate().skip(checked).take(read) {
                if &prefixes[i * PREFIX.len()..(i + 1) * PREFIX.len()] != PREFIX {
                    keep(entry)?;
                }
            }
            checked += read;
            if let Some(&entry) = live.get(checked) {
                // Fewer readable bytes than the prefix: a short entry at
                // the end of its memory, or a bad pointer.
                if !is_short_string(entry as usize) {
                    return None;
                }
                keep(entry)?;
                checked += 1;
            }
        }
        if end.is_some() {
            return Some(kept);
        }
        at += got * POINTER;
    }
}

/// Whether a NUL ends the string at `address` within the prefix's length,
/// in memory the kernel can read.
fn is_short_string(address: usize) -> bool {
    let sources: [(usize, usize); PREFIX.len()] = std::array::from_fn(|i| (address + i, 1));
    let mut bytes = [0xffu8; PREFIX.len()];
    let read = crate::peek::copy(&mut bytes, &sources);
    bytes[..read].contains(&0)
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
type SystemFn = unsafe extern "C" fn(*const c_char) -> c_int;
type PopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
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

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn system(command: *const c_char) -> c_int {
    let Some(system) = real::<SystemFn>(&crate::real::SYSTEM) else {
        return missing(&crate::real::SYSTEM);
    };
    if crate::intercept::config().is_some() && crate::process::owns_state() {
        renew_own_entry();
    }
    // SAFETY: the caller's argument.
    unsafe { system(command) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn popen(command: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    let Some(popen) = real::<PopenFn>(&crate::real::POPEN) else {
        missing(&crate::real::POPEN);
        return std::ptr::null_mut();
    };
    if crate::intercept::config().is_some() && crate::process::owns_state() {
        renew_own_entry();
    }
    // SAFETY: the caller's arguments.
    unsafe { popen(command, mode) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_entry_is_the_environment_entry_and_renews_in_place() {
        let _state = crate::PROCESS_STATE
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // The lineage comes from process state other tests change: these
        // checks hold whatever it is.
        install_own_entry();
        let first = own_entry();
        assert_eq!(first.len(), ENTRY_LEN - 1);
        let value = |entry: &str| entry["DELAYSHIM_TREE=".len()..].to_owned();
        assert_eq!(std::env::var("DELAYSHIM_TREE").unwrap(), value(&first));
        write_hex(LINEAGE_AT, 0x0123_4567_89ab_cdef);
        write_hex(SEED_AT, 42);
        assert_eq!(
            std::env::var("DELAYSHIM_TREE").unwrap(),
            "000000000000002a:0123456789abcdef",
            "the environment holds the entry itself, not a copy"
        );
        let parsed = crate::config::parse_tree("000000000000002a:0123456789abcdef").unwrap();
        assert_eq!((parsed.seed, parsed.lineage), (42, 0x0123_4567_89ab_cdef));
        renew_own_entry();
        let renewed = std::env::var("DELAYSHIM_TREE").unwrap();
        assert!(renewed.starts_with("000000000000002a:"), "{renewed}");
        assert_ne!(renewed, "000000000000002a:0123456789abcdef", "a new ticket");
    }

    fn copied(envp: &[*const c_char], capacity: usize) -> Option<Vec<String>> {
        let mut entries = vec![std::ptr::null(); capacity];
        let count = copy_environment(envp.as_ptr(), &mut entries)?;
        Some(
            entries[..count]
                .iter()
                // SAFETY: entries the test made, NUL-terminated.
                .map(|&e| {
                    unsafe { std::ffi::CStr::from_ptr(e) }
                        .to_str()
                        .unwrap()
                        .to_owned()
                })
                .collect(),
        )
    }

    #[test]
    fn the_environment_is_copied_without_tree_entries_and_bad_pointers_are_refused() {
        let owned: Vec<std::ffi::CString> = (0..40)
            .map(|i| std::ffi::CString::new(format!("VAR{i}=value {i}")).unwrap())
            .chain([
                c"DELAYSHIM_TREE=1:2".to_owned(),
                c"A=".to_owned(),
                c"".to_owned(),
            ])
            .collect();
        let mut envp: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        envp.push(std::ptr::null());
        let kept = copied(&envp, CAPACITY).unwrap();
        assert_eq!(kept.len(), 42, "all but the tree entry, over three batches");
        assert_eq!(kept[0], "VAR0=value 0");
        assert_eq!(kept[39], "VAR39=value 39");
        assert_eq!(&kept[40..], ["A=", ""]);
        assert_eq!(copied(&envp, 41), None, "too many for the room");
        let mut bad_entry = envp.clone();
        bad_entry[20] = 8 as *const c_char;
        assert_eq!(copied(&bad_entry, CAPACITY), None);
        let mut entries = [std::ptr::null(); 4];
        assert_eq!(
            copy_environment(std::ptr::dangling::<*const c_char>(), &mut entries),
            None
        );
    }

    #[test]
    fn a_short_entry_at_the_end_of_its_memory_is_kept() {
        // SAFETY: two fresh pages, the second unmapped again at once.
        unsafe {
            let page = 4096;
            let memory = libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(memory, libc::MAP_FAILED);
            libc::munmap(memory.cast::<u8>().add(page).cast(), page);
            let short = memory.cast::<u8>().add(page - 4);
            std::ptr::copy_nonoverlapping(c"A=1".as_ptr().cast::<u8>(), short, 4);
            let unterminated = memory.cast::<u8>().add(page - 3);
            let envp = [short.cast::<c_char>().cast_const(), std::ptr::null()];
            assert_eq!(copied(&envp, 4).unwrap(), ["A=1"]);
            std::ptr::copy_nonoverlapping(b"B=2".as_ptr(), unterminated, 3);
            let envp = [unterminated.cast::<c_char>().cast_const(), std::ptr::null()];
            assert_eq!(copied(&envp, 4), None, "runs into unmapped memory");
            libc::munmap(memory, page);
        }
    }
}
