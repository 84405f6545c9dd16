//! Passing the tree's seed and a place in the tree to every program this
//! process executes or spawns: the exec and posix_spawn families give the
//! new program a `DELAYSHIM_TREE=SEED:LINEAGE` entry with a ticket of its
//! own (`LD_PRELOAD` is never changed).
//!
//! The shim keeps its own entry, [`OWN_ENTRY`], in the process's
//! environment. An exec that passes that environment (`execv`, `execvp`)
//! gets a new ticket written into the entry in place, and nothing is
//! copied; `posix_spawn`, which returns to a process whose other threads
//! go on, always copies. Some children start where no wrapper
//! sees them: glibc's `system()`, `popen()` and `wordexp()` spawn through
//! internal calls, and `execl()` and its variadic siblings are not
//! wrapped. They inherit the same entry, renewed at load, in every fork
//! child and before every `system()`, `popen()` and `wordexp()`, so two
//! such children of one process do not inherit one lineage.
//!
//! Any other environment is copied without its tree entries, plus a new
//! one, into an array on the caller's stack (these calls are made from
//! vfork children and from signal handlers on small alternate stacks), or
//! for more than [`ON_STACK`] entries into a mapping, or in a vfork child
//! into one of four static arrays. The copy reads the
//! caller's memory through the kernel ([`crate::peek`]), so a bad pointer
//! fails the real call with EFAULT as it would without the shim; under a
//! seccomp filter it reads as libc would. An environment that cannot be
//! copied passes unchanged, after the own entry's renewal.

// Unit tests compile the exported functions out.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU8, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

use crate::real::Real;

/// Environment entries a copy may hold on the caller's stack (256 bytes):
/// an exec from a signal handler on a small alternate stack must not need
/// much more stack than natively. Larger environments are copied into a
/// mapping, or in a vfork child into a static area.
const ON_STACK: usize = 32;
/// Entries a vfork child's copy may hold (32 KB, in [`VFORK_AREAS`]).
const IN_VFORK_CHILD: usize = 4096;
/// Entries a mapped copy may hold (512 KB of address space, touched only
/// as far as used).
const MAPPED: usize = 1 << 16;

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

/// The `i`th of `value`'s 16 hex digits, most significant first.
fn hex_digit(value: u64, i: usize) -> u8 {
    b"0123456789abcdef"[((value >> (60 - 4 * i)) & 0xf) as usize]
}

fn write_hex(at: usize, value: u64) {
    for (i, byte) in OWN_ENTRY[at..at + 16].iter().enumerate() {
        byte.store(hex_digit(value, i), Relaxed);
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
    // Every inherited entry goes: the configuration read the last one, and
    // getenv would find the first.
    // SAFETY: a valid name.
    unsafe { libc::unsetenv(c"DELAYSHIM_TREE".as_ptr()) };
    put_own_entry();
}

fn own_entry_pointer() -> *const c_char {
    OWN_ENTRY.as_ptr().cast()
}

fn put_own_entry() {
    // SAFETY: a NUL-terminated NAME=VALUE string that lives as long as the
    // process (the library is never unloaded: it is linked -z nodelete);
    // the environment only reads it (AtomicU8 has u8's layout).
    unsafe { libc::putenv(own_entry_pointer().cast_mut()) };
}

/// Calls `visit` with each entry of `envp` until it returns true: then
/// `Some(true)`; `Some(false)` at the array's end; `None` when the kernel
/// cannot read the array (a program may point `environ` anywhere). Reads
/// through the kernel, eight pointers at a time, unless a seccomp filter
/// forbids it.
fn visit_entries(
    envp: *const *const c_char,
    mut visit: impl FnMut(*const c_char) -> bool,
) -> Option<bool> {
    const BATCH: usize = 8;
    const POINTER: usize = std::mem::size_of::<*const c_char>();
    if !crate::peek::available() {
        let mut at = envp;
        // SAFETY: as libc reads an environment: a NULL-terminated array.
        unsafe {
            while !(*at).is_null() {
                if visit(*at) {
                    return Some(true);
                }
                at = at.add(1);
            }
        }
        return Some(false);
    }
    let mut at = envp as usize;
    loop {
        let mut pointers = [std::ptr::null::<c_char>(); BATCH];
        // SAFETY: the pointers' own bytes, as a buffer to copy into.
        let into = unsafe {
            std::slice::from_raw_parts_mut(pointers.as_mut_ptr().cast::<u8>(), BATCH * POINTER)
        };
        let got = crate::peek::copy(into, BATCH, |i| (at + i * POINTER, POINTER));
        if got == 0 {
            return None;
        }
        for &entry in &pointers[..got] {
            if entry.is_null() {
                return Some(false);
            }
            if visit(entry) {
                return Some(true);
            }
        }
        at += got * POINTER;
    }
}

/// Whether `envp`, the process's own environment, holds [`OWN_ENTRY`].
/// Always a walk: a program may free the array `putenv` made (`clearenv`)
/// and get the same address back for another.
fn holds_own_entry(envp: *const *const c_char) -> bool {
    visit_entries(envp, |entry| entry == own_entry_pointer()) == Some(true)
}

/// Whether `entry` starts with the tree variable's name.
fn is_tree_entry(entry: *const c_char) -> bool {
    starts_with(entry, PREFIX)
}

/// Whether the C string `entry` starts with `prefix` (at most 16 bytes).
fn starts_with(entry: *const c_char, prefix: &[u8]) -> bool {
    if !crate::peek::available() {
        // SAFETY: an environment entry, a C string; the test stops at the
        // first byte that differs, so never past a shorter string's NUL.
        return prefix
            .iter()
            .enumerate()
            .all(|(i, &b)| unsafe { *entry.add(i) } as u8 == b);
    }
    let mut bytes = [0u8; 16];
    let Some(bytes) = bytes.get_mut(..prefix.len()) else {
        return false;
    };
    let len = prefix.len();
    crate::peek::copy(bytes, 1, |_| (entry as usize, len)) == 1 && bytes == prefix
}

/// Whether the environment `envp` preloads anything: one without
/// `LD_PRELOAD` (`env -i`, Python's `env={}`) was built on purpose and
/// starts no shim, so it passes unchanged, without a tree entry.
fn preloads(envp: *const *const c_char) -> bool {
    visit_entries(envp, |entry| starts_with(entry, b"LD_PRELOAD=")) == Some(true)
}

/// Before `system()`, `popen()` and `wordexp()`: a new ticket in the
/// entry their child inherits. A program that rebuilt its environment
/// from copies of its strings (as `setproctitle` implementations do)
/// holds a copy of the shim's entry, which no renewal reaches: the entry
/// is put again, through the program's own `putenv` if it has one (bash
/// does, and frees the strings it owns, so the shim never writes a slot
/// itself). Not when the slot cannot be written (a read-only array, which
/// `putenv` would fault on), tested through the kernel by writing back
/// what it holds; so not under a seccomp filter either.
fn renew_for_unseen_child() -> Option<Held> {
    if crate::intercept::config().is_none() || !crate::process::owns_state() {
        return None;
    }
    // SAFETY: reading the process's own environment pointer.
    let array = unsafe { environ };
    if !array.is_null() && crate::peek::available() && !holds_own_entry(array) {
        let mut slot = 0;
        let mut copy = std::ptr::null::<c_char>();
        let found = visit_entries(array, |entry| {
            if is_tree_entry(entry) {
                copy = entry;
                return true;
            }
            slot += 1;
            false
        });
        // SAFETY: the process's environment array, at a slot read above.
        let place = unsafe { array.add(slot) } as usize;
        if found == Some(true) && crate::peek::write_pointer(place, copy as usize) {
            put_own_entry();
        }
    }
    // Held across the call when free, so a thread's posix_spawn with the
    // environment copies rather than renew the entry under this child;
    // two of these calls at once still race (system() holds it until its
    // command ends, so none can wait for it).
    let held = Held::take();
    renew_own_entry();
    held
}

/// [`SPAWNING`], taken; given back when dropped.
struct Held;

impl Held {
    fn take() -> Option<Held> {
        SPAWNING
            .compare_exchange(false, true, Relaxed, Relaxed)
            .is_ok()
            .then_some(Held)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        SPAWNING.store(false, Relaxed);
    }
}

/// In a fork child, whose other threads are gone: nothing holds the spawn
/// lock or an area.
pub(crate) fn release_in_fork_child() {
    SPAWNING.store(false, Relaxed);
    release_vfork_areas();
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

/// Runs `f` with `envp` and a new tree entry for the program it starts.
fn with_tree<R>(envp: *const *const c_char, f: impl FnOnce(*const *const c_char) -> R) -> R {
    if crate::intercept::config().is_none() || envp.is_null() {
        return f(envp);
    }
    let owns_state = crate::process::owns_state();
    // The process's own environment: a new ticket in the shim's entry, in
    // place, held until the exec returns (so another thread's system()
    // does not renew it meanwhile). A busy entry, a signal handler's exec
    // or a vfork child's (which could not give it back) copies instead.
    // SAFETY: reading the process's own environment pointer.
    if owns_state && envp == unsafe { environ } && holds_own_entry(envp) {
        if let Some(_held) = Held::take() {
            renew_own_entry();
            return f(envp);
        }
    }
    if !preloads(envp) {
        return f(envp);
    }
    with_copy(envp, owns_state, f)
}

/// [`with_tree`] for `posix_spawn`, which returns while other threads may
/// be renewing [`OWN_ENTRY`] for a `system()` of theirs: always a copy.
fn with_spawn_tree<R>(envp: *const *const c_char, f: impl FnOnce(*const *const c_char) -> R) -> R {
    if crate::intercept::config().is_none() || envp.is_null() {
        return f(envp);
    }
    if !preloads(envp) {
        return f(envp);
    }
    with_copy(envp, crate::process::owns_state(), f)
}

/// Held while a call passes the process's environment with a ticket
/// written into [`OWN_ENTRY`].
static SPAWNING: AtomicBool = AtomicBool::new(false);

/// [`with_tree`] for any other environment, in a frame of its own: the
/// array must not take stack from the calls that need none.
#[inline(never)]
fn with_copy<R>(
    envp: *const *const c_char,
    owns_state: bool,
    f: impl FnOnce(*const *const c_char) -> R,
) -> R {
    let mut entries = [std::ptr::null::<c_char>(); ON_STACK + 2];
    match copy_environment(envp, &mut entries[..ON_STACK]) {
        Copied::Done(count) => with_entries(&mut entries, count, f),
        Copied::TooMany if owns_state => with_mapped_copy(envp, f),
        Copied::TooMany => with_vfork_copy(envp, f),
        Copied::Unreadable => {
            renew_own_entry();
            f(envp)
        }
    }
}

/// Calls `f` with `count` copied entries plus a new tree entry.
fn with_entries<R>(
    entries: &mut [*const c_char],
    count: usize,
    f: impl FnOnce(*const *const c_char) -> R,
) -> R {
    let mut tree = [0u8; ENTRY_LEN];
    entries[count] = new_tree_entry(&mut tree);
    entries[count + 1] = std::ptr::null();
    f(entries.as_ptr())
}

/// Arrays for vfork children's copies of environments too large for the
/// first: not their stack, which may be a small thread's or a clone's,
/// nor a mapping, which would stay behind in the parent. Each is owned by
/// the thread pointer of the thread whose child uses it, which a vfork
/// child shares with its parent thread: that thread is suspended until
/// the child executes, so when it next claims its own area, that child
/// is done. A child that executes cannot give its area back: another
/// thread takes it over once `kcmp` says that child (its pid is kept) no
/// longer shares this process's memory. Left alone: raw `clone(CLONE_VM)`
/// children without CLONE_VFORK share their thread's pointer while it
/// runs on, and children in another pid namespace record a pid that
/// names another process here.
struct VforkArea(std::cell::UnsafeCell<[*const c_char; IN_VFORK_CHILD + 2]>);

// SAFETY: each area is used only by the thread that owns it (see above).
unsafe impl Sync for VforkArea {}

static VFORK_AREAS: [VforkArea; 4] = [const {
    VforkArea(std::cell::UnsafeCell::new(
        [std::ptr::null(); IN_VFORK_CHILD + 2],
    ))
}; 4];
static VFORK_OWNERS: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
static VFORK_CHILDREN: [AtomicI32; 4] = [const { AtomicI32::new(0) }; 4];

/// What `kcmp` says of the child `pid` that last used an area.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Child {
    /// Executed (no longer shares this process's memory) or gone.
    Done,
    /// Still shares it: using the area, or about to.
    Alive,
    /// Not known: `kcmp` refused (EPERM for a non-dumpable process, a
    /// filter) or is missing, or a seccomp filter forbids asking.
    Unknown,
}

fn vfork_child(pid: i32) -> Child {
    if pid <= 0 {
        return Child::Done;
    }
    if !crate::peek::available() {
        return Child::Unknown;
    }
    let _errno = crate::errno::SavedErrno::save();
    // SAFETY: kcmp compares two processes' resources; it changes nothing.
    let order = unsafe { libc::syscall(libc::SYS_kcmp, libc::getpid(), pid, KCMP_VM, 0, 0) };
    match order {
        0 => Child::Alive,
        1.. => Child::Done,
        _ if crate::errno::get() == libc::ESRCH => Child::Done,
        _ => Child::Unknown,
    }
}

/// An owner word's value while a thread claims the area: never a thread
/// pointer.
const CLAIMING: usize = 1;

/// kcmp's type for comparing address spaces (linux/kcmp.h).
const KCMP_VM: libc::c_long = 1;

/// In a fork child: no vfork child of its is using an area.
fn release_vfork_areas() {
    for owner in &VFORK_OWNERS {
        owner.store(0, Release);
    }
}

/// [`with_copy`] in a vfork child, for an environment too large for the
/// first array.
#[inline(never)]
fn with_vfork_copy<R>(envp: *const *const c_char, f: impl FnOnce(*const *const c_char) -> R) -> R {
    let me = crate::stats::thread_pointer();
    for ((area, owner), child) in VFORK_AREAS.iter().zip(&VFORK_OWNERS).zip(&VFORK_CHILDREN) {
        let current = owner.load(Acquire);
        if current == CLAIMING {
            continue;
        }
        let last = child.load(Acquire);
        // Free: never used or given back, its child done, or (when kcmp
        // cannot tell) last used by this thread's earlier vfork child,
        // which is done since this thread runs again.
        let free = current == 0
            || match vfork_child(last) {
                Child::Done => true,
                Child::Alive => false,
                Child::Unknown => current == me,
            };
        // Claimed in two steps, so no one takes it on a child it has not
        // seen: the owner word to CLAIMING, then, if the child is still
        // the one judged above, this child's pid and this thread.
        if !free
            || owner
                .compare_exchange(current, CLAIMING, AcqRel, Acquire)
                .is_err()
        {
            continue;
        }
        if child.load(Acquire) != last {
            owner.store(current, Release);
            continue;
        }
        // SAFETY: getpid cannot fail.
        child.store(unsafe { libc::getpid() }, Release);
        owner.store(me, Release);
        // SAFETY: this thread owns the area (see VforkArea).
        let entries = unsafe { &mut *area.0.get() };
        let result = match copy_environment(envp, &mut entries[..IN_VFORK_CHILD]) {
            Copied::Done(count) => with_entries(entries, count, f),
            Copied::TooMany | Copied::Unreadable => {
                renew_own_entry();
                f(envp)
            }
        };
        // Reached only when the call failed and returned.
        owner.store(0, Release);
        return result;
    }
    renew_own_entry();
    f(envp)
}

/// [`with_copy`] for an environment too large for the stack. Not in a
/// vfork child, whose mapping would stay behind in its parent.
#[inline(never)]
fn with_mapped_copy<R>(envp: *const *const c_char, f: impl FnOnce(*const *const c_char) -> R) -> R {
    const BYTES: usize = (MAPPED + 2) * std::mem::size_of::<*const c_char>();
    // SAFETY: a fresh private mapping, unmapped below.
    let memory = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if memory == libc::MAP_FAILED {
        renew_own_entry();
        return f(envp);
    }
    // SAFETY: the mapping holds MAPPED + 2 zeroed (null) pointers.
    let entries =
        unsafe { std::slice::from_raw_parts_mut(memory.cast::<*const c_char>(), MAPPED + 2) };
    let result = match copy_environment(envp, &mut entries[..MAPPED]) {
        Copied::Done(count) => with_entries(entries, count, f),
        Copied::TooMany | Copied::Unreadable => {
            renew_own_entry();
            f(envp)
        }
    };
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(memory, BYTES) };
    result
}

/// A `DELAYSHIM_TREE` entry for the next child, in `buffer`: the same
/// fixed-width form as [`OWN_ENTRY`].
fn new_tree_entry(buffer: &mut [u8; ENTRY_LEN]) -> *const c_char {
    let (seed, lineage) = (crate::process::seed(), crate::process::next_child_lineage());
    buffer[..SEED_AT].copy_from_slice(PREFIX);
    for i in 0..16 {
        buffer[SEED_AT + i] = hex_digit(seed, i);
        buffer[LINEAGE_AT + i] = hex_digit(lineage, i);
    }
    buffer[SEED_AT + 16] = b':';
    buffer[ENTRY_LEN - 1] = 0;
    buffer.as_ptr().cast()
}

/// What [`copy_environment`] made of an environment.
#[derive(Debug, PartialEq, Eq)]
enum Copied {
    /// This many entries copied, none of them a tree entry.
    Done(usize),
    TooMany,
    /// The kernel cannot read it: the real call fails with EFAULT.
    Unreadable,
}

/// Copies `envp`'s entries but any `DELAYSHIM_TREE` into `entries`.
fn copy_environment(envp: *const *const c_char, entries: &mut [*const c_char]) -> Copied {
    if crate::peek::available() {
        copy_checked(envp, entries)
    } else {
        copy_trusting(envp, entries)
    }
}

/// [`copy_environment`] through the kernel: pointers straight into
/// `entries`, eight at a time, then their first bytes; the kept ones
/// move down over the dropped ones.
fn copy_checked(envp: *const *const c_char, entries: &mut [*const c_char]) -> Copied {
    const BATCH: usize = 8;
    const POINTER: usize = std::mem::size_of::<*const c_char>();
    let mut kept = 0;
    let mut read = 0;
    loop {
        let room = BATCH.min(entries.len() - kept);
        if room == 0 {
            // Full: fine only if the array ends here.
            let mut end = [0u8; POINTER];
            let at = envp as usize + read * POINTER;
            if crate::peek::copy(&mut end, 1, |_| (at, POINTER)) == 0 {
                return Copied::Unreadable;
            }
            return if end == [0; POINTER] {
                Copied::Done(kept)
            } else {
                Copied::TooMany
            };
        }
        let batch = &mut entries[kept..kept + room];
        // SAFETY: the pointers' own bytes, as a buffer to copy into.
        let into = unsafe {
            std::slice::from_raw_parts_mut(batch.as_mut_ptr().cast::<u8>(), room * POINTER)
        };
        let base = envp as usize + read * POINTER;
        let got = crate::peek::copy(into, room, |i| (base + i * POINTER, POINTER));
        if got == 0 {
            return Copied::Unreadable;
        }
        read += got;
        let end = batch[..got].iter().position(|p| p.is_null());
        let live = end.unwrap_or(got);
        let mut prefixes = [0u8; BATCH * PREFIX.len()];
        let mut checked = 0;
        let mut write = kept;
        while checked < live {
            let starts = &entries[kept + checked..kept + live];
            let arrived = crate::peek::copy(&mut prefixes, starts.len(), |i| {
                (starts[i] as usize, PREFIX.len())
            });
            for i in 0..arrived {
                let entry = entries[kept + checked + i];
                if &prefixes[i * PREFIX.len()..(i + 1) * PREFIX.len()] != PREFIX {
                    entries[write] = entry;
                    write += 1;
                }
            }
            checked += arrived;
            if checked < live {
                // Fewer readable bytes than the prefix: a short entry at
                // the end of its memory, or a bad pointer.
                let entry = entries[kept + checked];
                if !is_short_string(entry as usize) {
                    return Copied::Unreadable;
                }
                entries[write] = entry;
                write += 1;
                checked += 1;
            }
        }
        if end.is_some() {
            // What was read past the array's end, and the moved-down
            // entries' old places: none of it is the copy.
            entries[write..kept + got].fill(std::ptr::null());
            return Copied::Done(write);
        }
        kept = write;
    }
}

/// [`copy_environment`] with plain loads, as libc reads an environment:
/// under a seccomp filter, where the kernel's reader may kill the process.
fn copy_trusting(envp: *const *const c_char, entries: &mut [*const c_char]) -> Copied {
    let mut kept = 0;
    let mut at = envp;
    // SAFETY: envp is a NULL-terminated array of C strings, as exec
    // requires; the prefix test stops at the first byte that differs, so
    // it never reads past a shorter string's NUL.
    unsafe {
        while !(*at).is_null() {
            let entry = *at;
            let is_tree = PREFIX
                .iter()
                .enumerate()
                .all(|(i, &b)| *entry.add(i) as u8 == b);
            if !is_tree {
                let Some(slot) = entries.get_mut(kept) else {
                    return Copied::TooMany;
                };
                *slot = entry;
                kept += 1;
            }
            at = at.add(1);
        }
    }
    Copied::Done(kept)
}

/// Whether a NUL ends the string at `address` within the prefix's length,
/// in memory the kernel can read.
fn is_short_string(address: usize) -> bool {
    let mut bytes = [0xffu8; PREFIX.len()];
    let read = crate::peek::copy(&mut bytes, PREFIX.len(), |i| (address + i, 1));
    bytes[..read].contains(&0)
}

fn real<F: Copy>(real: &Real) -> Option<F> {
    let address = real.get()?;
    // SAFETY: F is the function pointer type of this real function.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) })
}

type Argv = *const *const c_char;
type ExecveFn = unsafe extern "C" fn(*const c_char, Argv, Argv) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, Argv, Argv) -> c_int;
type ExecveatFn = unsafe extern "C" fn(c_int, *const c_char, Argv, Argv, c_int) -> c_int;
type SystemFn = unsafe extern "C" fn(*const c_char) -> c_int;
type PopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
type WordexpFn = unsafe extern "C" fn(*const c_char, *mut c_void, c_int) -> c_int;
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
        return crate::real::EXECVE.fail_missing();
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
        return crate::real::EXECVPE.fail_missing();
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
        return crate::real::FEXECVE.fail_missing();
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
        return crate::real::EXECVEAT.fail_missing();
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
    with_spawn_tree(envp, |envp| unsafe {
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
    with_spawn_tree(envp, |envp| unsafe {
        spawn(pid, file, actions, attributes, argv, envp)
    })
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn system(command: *const c_char) -> c_int {
    let Some(system) = real::<SystemFn>(&crate::real::SYSTEM) else {
        return crate::real::SYSTEM.fail_missing();
    };
    let _held = renew_for_unseen_child();
    // SAFETY: the caller's argument.
    unsafe { system(command) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn popen(command: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    let Some(popen) = real::<PopenFn>(&crate::real::POPEN) else {
        crate::real::POPEN.fail_missing();
        return std::ptr::null_mut();
    };
    let _held = renew_for_unseen_child();
    // SAFETY: the caller's arguments.
    unsafe { popen(command, mode) }
}

/// # Safety
/// As for the C function (`result` is a `wordexp_t *`).
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wordexp(words: *const c_char, result: *mut c_void, flags: c_int) -> c_int {
    let Some(wordexp) = real::<WordexpFn>(&crate::real::WORDEXP) else {
        crate::real::WORDEXP.report_missing();
        // glibc's WRDE_NOSPACE, which the libc crate does not define.
        return 1;
    };
    // Command substitutions run in a shell spawned where no wrapper sees.
    let _held = renew_for_unseen_child();
    // SAFETY: the caller's arguments.
    unsafe { wordexp(words, result, flags) }
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

    #[test]
    fn a_new_tree_entry_is_one_the_shim_reads_back() {
        let mut buffer = [0xffu8; ENTRY_LEN];
        let entry = new_tree_entry(&mut buffer);
        // SAFETY: new_tree_entry NUL-terminates the buffer.
        let entry = unsafe { std::ffi::CStr::from_ptr(entry) }.to_str().unwrap();
        assert_eq!(entry.len(), ENTRY_LEN - 1);
        let value = entry.strip_prefix("DELAYSHIM_TREE=").unwrap();
        let tree = crate::config::parse_tree(value).unwrap();
        assert_eq!(format!("{:016x}:{:016x}", tree.seed, tree.lineage), value);
    }

    #[test]
    fn entries_are_visited_through_the_kernel_and_a_bad_array_is_refused() {
        let owned = [c"A=1", c"DELAYSHIM_TREE=1:2", c"B=2"];
        let mut envp: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        envp.push(std::ptr::null());
        let mut seen = Vec::new();
        let found = visit_entries(envp.as_ptr(), |entry| {
            seen.push(entry);
            false
        });
        assert_eq!(found, Some(false));
        assert_eq!(seen, envp[..3]);
        assert_eq!(visit_entries(envp.as_ptr(), is_tree_entry), Some(true));
        assert!(!is_tree_entry(c"DELAYSHIM_TRE".as_ptr()));
        assert!(!holds_own_entry(envp.as_ptr()));
        assert_eq!(
            visit_entries(std::ptr::dangling::<*const c_char>(), |_| false),
            None
        );
    }

    /// The entries each way of copying keeps, which must agree.
    fn copied(envp: &[*const c_char], capacity: usize) -> Result<Vec<String>, Copied> {
        let mut entries = vec![std::ptr::null(); capacity];
        let checked = copy_checked(envp.as_ptr(), &mut entries);
        let strings = |count: usize, entries: &[*const c_char]| -> Vec<String> {
            entries[..count]
                .iter()
                // SAFETY: entries the test made, NUL-terminated.
                .map(|&e| {
                    // SAFETY: as above.
                    unsafe { std::ffi::CStr::from_ptr(e) }
                        .to_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        let Copied::Done(count) = checked else {
            return Err(checked);
        };
        assert!(
            entries[count..].iter().take(8).all(|p| p.is_null()),
            "nothing read past the end stays behind the copy"
        );
        let kept = strings(count, &entries);
        let mut trusted = vec![std::ptr::null(); capacity];
        assert_eq!(
            copy_trusting(envp.as_ptr(), &mut trusted),
            Copied::Done(count)
        );
        assert_eq!(strings(count, &trusted), kept);
        Ok(kept)
    }

    #[test]
    fn the_environment_is_copied_without_tree_entries_and_bad_pointers_are_refused() {
        let owned: Vec<std::ffi::CString> = (0..40)
            .map(|i| std::ffi::CString::new(format!("VAR{i}=value {i}")).unwrap())
            .chain([
                c"DELAYSHIM_TREE=1:2".to_owned(),
                c"A=".to_owned(),
                c"DELAYSHIM_TREE=3:4".to_owned(),
                c"".to_owned(),
            ])
            .collect();
        let mut envp: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        envp.push(std::ptr::null());
        // What follows the array's end is read in the last batch, not copied.
        envp.extend([owned[0].as_ptr(); 7]);
        let kept = copied(&envp, 64).unwrap();
        assert_eq!(kept.len(), 42, "all but the tree entries, over six batches");
        assert_eq!(kept[0], "VAR0=value 0");
        assert_eq!(kept[39], "VAR39=value 39");
        assert_eq!(&kept[40..], ["A=", ""]);
        assert_eq!(copied(&envp, 42).unwrap().len(), 42, "exactly the room");
        assert_eq!(copied(&envp, 41), Err(Copied::TooMany));
        assert_eq!(copied(&envp, 40), Err(Copied::TooMany));
        let mut bad_entry = envp.clone();
        bad_entry[20] = 8 as *const c_char;
        assert_eq!(copied(&bad_entry, 64), Err(Copied::Unreadable));
        let mut entries = [std::ptr::null(); 4];
        assert_eq!(
            copy_checked(std::ptr::dangling::<*const c_char>(), &mut entries),
            Copied::Unreadable
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
            let mut entries = [std::ptr::null(); 4];
            assert_eq!(
                copy_checked(envp.as_ptr(), &mut entries),
                Copied::Unreadable,
                "runs into unmapped memory"
            );
            libc::munmap(memory, page);
        }
    }
}
