//! Passing the tree's seed and a place in the tree to every program this
//! process executes or spawns: the exec and posix_spawn families give the
//! new program a `DELAYSHIM_TREE=SEED:LINEAGE` entry with a ticket of its
//! own (`LD_PRELOAD` is never changed).
//!
//! Two forms of one entry:
//! - The shim keeps its own entry, [`OWN_ENTRY`], in the process's
//!   environment, and writes a new ticket into it in place in every fork
//!   child, before every `system()`, `popen()` and `wordexp()`, and before
//!   an exec that passes an environment holding it. Children started where
//!   no wrapper sees them (glibc's `system()`, `popen()` and `wordexp()`
//!   spawn through internal calls; `execl()` and its variadic siblings are
//!   not wrapped) inherit it.
//! - Any other environment that preloads something is copied without its
//!   tree entries, plus a new one, as libc copies an argument list: on the
//!   caller's stack up to [`ON_STACK`] entries (these calls are made from
//!   signal handlers on small alternate stacks), else into a mapping sized
//!   to it. A vfork child's mapping would stay behind in its parent: it
//!   uses its thread's own, kept for that thread's next vfork child.
//!   `posix_spawn`, which returns to a process whose other threads go on,
//!   always copies.
//!
//! The environment is read through the kernel ([`crate::peek`]), so a bad
//! pointer fails the real call with EFAULT as natively, and under a
//! seccomp filter with plain loads, as libc reads it. An environment that
//! cannot be read or copied passes unchanged.

// Unit tests compile the exported functions out.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

use crate::real::Real;

/// Entries a copy may hold on the caller's stack (272 bytes): an exec from
/// a signal handler on a 4 KB alternate stack must still fit.
const ON_STACK: usize = 32;

extern "C" {
    static environ: *const *const c_char;
}

type Envp = *const *const c_char;

const PREFIX: &[u8] = b"DELAYSHIM_TREE=";
const PRELOAD: &[u8] = b"LD_PRELOAD=";

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

/// What an environment entry is, for the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tree,
    Preload,
    Other,
}

/// The kind of an entry that starts with `first`, or `None` when those
/// bytes are too few to tell (a NUL-free beginning of a name looked for).
fn kind_of(first: &[u8]) -> Option<Kind> {
    for (name, kind) in [(PREFIX, Kind::Tree), (PRELOAD, Kind::Preload)] {
        let common = first.len().min(name.len());
        if first[..common] == name[..common] {
            return (common == name.len()).then_some(kind);
        }
    }
    Some(Kind::Other)
}

/// Calls `visit` with each entry of `envp` and its kind, in order; `None`
/// when a pointer or an entry's first bytes cannot be read, where the
/// real call fails with EFAULT. Plain loads, as libc reads an
/// environment, each from a 4 KB block the kernel has read first.
fn scan(envp: Envp, mut visit: impl FnMut(*const c_char, Kind)) -> Option<()> {
    const POINTER: usize = std::mem::size_of::<*const c_char>();
    let mut blocks = Blocks::new();
    let mut at = envp;
    loop {
        if !blocks.readable(at as usize) || !blocks.readable(at as usize + POINTER - 1) {
            return None;
        }
        // SAFETY: the blocks holding the pointer are readable.
        let entry = unsafe { at.read_unaligned() };
        if entry.is_null() {
            return Some(());
        }
        let mut first = [0u8; PREFIX.len()];
        let mut kind = None;
        for i in 0..first.len() {
            let address = entry as usize + i;
            if (i == 0 || address.is_multiple_of(BLOCK)) && !blocks.readable(address) {
                return None;
            }
            // SAFETY: a readable block; the bytes before this one held
            // no NUL (a NUL decides the kind), so it is the entry's own.
            first[i] = unsafe { *entry.add(i) } as u8;
            kind = kind_of(&first[..=i]);
            if kind.is_some() {
                break;
            }
        }
        visit(entry, kind.unwrap_or(Kind::Other));
        // SAFETY: the array goes on to its null.
        at = unsafe { at.add(1) };
    }
}

/// Memory is readable or not by pages, of 4 KB or a multiple.
const BLOCK: usize = 4096;

/// The 4 KB blocks the kernel has read for one [`scan`]. An environment's
/// array and strings usually lie in a few blocks, so a scan takes a few
/// kernel reads, not one per entry.
struct Blocks {
    known: [usize; 4],
    next: usize,
}

impl Blocks {
    fn new() -> Blocks {
        Blocks {
            known: [usize::MAX; 4],
            next: 0,
        }
    }

    /// Whether a plain load from `address` cannot fault: asked of the
    /// kernel once per block, or under a seccomp filter (which may kill
    /// the process for asking) taken on trust, as libc does.
    fn readable(&mut self, address: usize) -> bool {
        let block = address / BLOCK;
        if !crate::peek::available() || self.known.contains(&block) {
            return true;
        }
        let mut byte = [0u8];
        if crate::peek::copy(&mut byte, 1, |_| (block * BLOCK, 1)) != 1 {
            return false;
        }
        self.known[self.next % self.known.len()] = block;
        self.next += 1;
        true
    }
}

/// What one pass over an environment found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Survey {
    /// Entries other than tree entries.
    kept: usize,
    /// The first tree entry: its place in the array, and its address.
    first_tree: Option<(usize, usize)>,
    trees: usize,
    holds_own_entry: bool,
    preloads: bool,
}

fn survey(envp: Envp) -> Option<Survey> {
    let mut survey = Survey::default();
    let mut slot = 0;
    scan(envp, |entry, kind| {
        match kind {
            Kind::Tree => {
                survey.first_tree.get_or_insert((slot, entry as usize));
                survey.trees += 1;
                survey.holds_own_entry |= entry == own_entry_pointer();
            }
            Kind::Preload => {
                survey.preloads = true;
                survey.kept += 1;
            }
            Kind::Other => survey.kept += 1,
        }
        slot += 1;
    })?;
    Some(survey)
}

/// Fills `entries` with `envp`'s entries but its tree entries, a new one
/// (written into `tree`) and the closing null; false when they do not
/// fill it exactly (the environment changed since it was surveyed) or it
/// cannot be read.
fn copy_into(envp: Envp, entries: &mut [*const c_char], tree: &mut [u8; ENTRY_LEN]) -> bool {
    let room = entries.len().saturating_sub(2);
    let mut count = 0;
    let read = scan(envp, |entry, kind| {
        if kind != Kind::Tree {
            if let Some(slot) = entries[..room].get_mut(count) {
                *slot = entry;
            }
            count += 1;
        }
    });
    if read.is_none() || count != room {
        return false;
    }
    entries[count] = new_tree_entry(tree);
    entries[count + 1] = std::ptr::null();
    true
}

/// Runs `f` with `envp`, or with a copy that carries a new tree entry.
/// `exec`: the call replaces this process, so a ticket may be written into
/// [`OWN_ENTRY`] when `envp` holds it.
fn with_tree<R>(envp: Envp, exec: bool, f: impl FnOnce(Envp) -> R) -> R {
    if crate::intercept::config().is_none() || envp.is_null() {
        return f(envp);
    }
    // Unreadable: the real call fails with EFAULT.
    let Some(survey) = survey(envp) else {
        return f(envp);
    };
    let owns_state = crate::process::owns_state();
    // Held until the exec returns, so another thread's system() does not
    // renew the entry meanwhile. A busy entry, a signal handler's exec or
    // a vfork child's (which could not give it back) copies instead.
    if exec && owns_state && survey.holds_own_entry && survey.trees == 1 {
        if let Some(_held) = Held::take() {
            renew_own_entry();
            return f(envp);
        }
    }
    // One without `LD_PRELOAD` (`env -i`, Python's `env={}`) was built on
    // purpose and starts no shim: it passes unchanged, without an entry.
    if !survey.preloads {
        return f(envp);
    }
    with_copy(envp, survey.kept, owns_state, f)
}

/// [`with_tree`]'s copy, in a frame of its own: the array must not take
/// stack from the calls that need none. Without one (the environment
/// changed meanwhile, or no memory to map), `envp` passes unchanged, and
/// [`OWN_ENTRY`], which it may hold, with a new ticket.
#[inline(never)]
fn with_copy<R>(envp: Envp, kept: usize, owns_state: bool, f: impl FnOnce(Envp) -> R) -> R {
    let mut tree = [0u8; ENTRY_LEN];
    let unchanged = || {
        renew_own_entry();
        envp
    };
    if kept <= ON_STACK {
        let mut entries = [std::ptr::null::<c_char>(); ON_STACK + 2];
        let entries = &mut entries[..kept + 2];
        let copied = copy_into(envp, entries, &mut tree);
        return f(if copied {
            entries.as_ptr()
        } else {
            unchanged()
        });
    }
    if owns_state {
        let Some(mut mapped) = Mapped::new(kept + 2) else {
            return f(unchanged());
        };
        let copied = copy_into(envp, mapped.slice(kept + 2), &mut tree);
        let result = f(if copied {
            mapped.pointer()
        } else {
            unchanged()
        });
        mapped.unmap();
        return result;
    }
    // A vfork child: its thread's mapping, made or grown when too small.
    let copy = VFORK_COPY.try_with(|kept_copy| {
        let mut mapped = match kept_copy.get() {
            Some(mapped) if mapped.room >= kept + 2 => mapped,
            old => {
                old.inspect(|old| old.unmap());
                kept_copy.set(None);
                let mapped = Mapped::new((kept + 2).next_multiple_of(512))?;
                kept_copy.set(Some(mapped));
                mapped
            }
        };
        copy_into(envp, mapped.slice(kept + 2), &mut tree).then(|| mapped.pointer())
    });
    f(copy.ok().flatten().unwrap_or_else(unchanged))
}

thread_local! {
    /// The mapping a vfork child of this thread copies a large environment
    /// into. The child shares its thread's memory and thread pointer, and
    /// that thread waits until the child has executed, so the mapping is
    /// the thread's alone; it stays for its next vfork child. A thread that
    /// exits leaves it behind. (No destructor: a vfork child may not
    /// register one.)
    static VFORK_COPY: Cell<Option<Mapped>> = const { Cell::new(None) };
}

/// An anonymous mapping of `room` pointers.
#[derive(Clone, Copy)]
struct Mapped {
    memory: *mut c_void,
    room: usize,
}

impl Mapped {
    fn new(room: usize) -> Option<Mapped> {
        // SAFETY: a fresh private mapping.
        let memory = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                room * std::mem::size_of::<*const c_char>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (memory != libc::MAP_FAILED).then_some(Mapped { memory, room })
    }

    /// The first `len` (at most `room`) of its pointers.
    fn slice(&mut self, len: usize) -> &mut [*const c_char] {
        // SAFETY: the mapping holds `room` pointers, null when made; one
        // thread uses it at a time (see `with_copy`).
        unsafe { std::slice::from_raw_parts_mut(self.memory.cast(), len.min(self.room)) }
    }

    fn pointer(&self) -> Envp {
        self.memory.cast()
    }

    fn unmap(self) {
        let _errno = crate::errno::SavedErrno::save();
        // SAFETY: a mapping no longer used.
        unsafe {
            libc::munmap(
                self.memory,
                self.room * std::mem::size_of::<*const c_char>(),
            )
        };
    }
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
    if !array.is_null() && crate::peek::available() {
        if let Some(Survey {
            holds_own_entry: false,
            first_tree: Some((slot, copy)),
            ..
        }) = survey(array)
        {
            let place = array as usize + slot * std::mem::size_of::<usize>();
            if crate::peek::write_pointer(place, copy) {
                put_own_entry();
            }
        }
    }
    // Held across the call when free, so a thread's exec with the
    // environment copies rather than renew the entry under this child;
    // two of these calls at once still race (system() holds it until its
    // command ends, so none can wait for it).
    let held = Held::take();
    renew_own_entry();
    held
}

/// Held while a call passes an environment with a ticket written into
/// [`OWN_ENTRY`].
static SPAWNING: AtomicBool = AtomicBool::new(false);

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

/// In a fork child, whose other threads are gone: nothing holds the
/// entry.
pub(crate) fn release_in_fork_child() {
    SPAWNING.store(false, Relaxed);
}

fn real<F: Copy>(real: &Real) -> Option<F> {
    let address = real.get()?;
    // SAFETY: F is the function pointer type of this real function.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) })
}

type Argv = *const *const c_char;
type Actions = *const libc::posix_spawn_file_actions_t;
type Attributes = *const libc::posix_spawnattr_t;

/// Exported functions that pass their environment argument (`$envp`)
/// through [`with_tree`] to the real ones: `exec` replaces the process
/// (and fails with ENOSYS set in errno when the real one is missing),
/// `spawn` returns (and returns ENOSYS).
macro_rules! passing_the_tree {
    ($($how:ident fn $name:ident($($arg:ident: $ty:ty),*) => $real:ident, $envp:ident;)+) => {$(
        /// # Safety
        /// As for the C function.
        #[cfg(not(test))]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            type RealFn = unsafe extern "C" fn($($ty),*) -> c_int;
            let Some(real) = real::<RealFn>(&crate::real::$real) else {
                return passing_the_tree!(@missing $how $real);
            };
            let exec = stringify!($how) == "exec";
            // SAFETY: the caller's arguments, with an environment that
            // carries the tree entry.
            with_tree($envp, exec, |$envp| unsafe { real($($arg),*) })
        }
    )+};
    (@missing exec $real:ident) => { crate::real::$real.fail_missing() };
    (@missing spawn $real:ident) => { libc::ENOSYS };
}

passing_the_tree! {
    exec fn execve(path: *const c_char, argv: Argv, envp: Argv) => EXECVE, envp;
    exec fn execvpe(file: *const c_char, argv: Argv, envp: Argv) => EXECVPE, envp;
    exec fn fexecve(fd: c_int, argv: Argv, envp: Argv) => FEXECVE, envp;
    exec fn execveat(dirfd: c_int, path: *const c_char, argv: Argv, envp: Argv, flags: c_int)
        => EXECVEAT, envp;
    spawn fn posix_spawn(pid: *mut libc::pid_t, path: *const c_char, actions: Actions,
        attributes: Attributes, argv: Argv, envp: Argv) => POSIX_SPAWN, envp;
    spawn fn posix_spawnp(pid: *mut libc::pid_t, file: *const c_char, actions: Actions,
        attributes: Attributes, argv: Argv, envp: Argv) => POSIX_SPAWNP, envp;
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
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    // SAFETY: execvp is execvpe with the process's environment.
    unsafe { execvpe(file, argv, environ) }
}

type SystemFn = unsafe extern "C" fn(*const c_char) -> c_int;
type PopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
type WordexpFn = unsafe extern "C" fn(*const c_char, *mut c_void, c_int) -> c_int;

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
    use std::ffi::CString;

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
    fn kinds_are_told_from_the_first_bytes() {
        assert_eq!(kind_of(b"DELAYSHIM_TREE=1:2"), Some(Kind::Tree));
        assert_eq!(kind_of(b"LD_PRELOAD=/x.so"), Some(Kind::Preload));
        assert_eq!(kind_of(b"DELAYSHIM_TREE\0"), Some(Kind::Other));
        assert_eq!(kind_of(b"A=1\0"), Some(Kind::Other));
        assert_eq!(kind_of(b"\0"), Some(Kind::Other));
        assert_eq!(kind_of(b"DELAYSH"), None, "too few to tell");
        assert_eq!(kind_of(b"LD_"), None);
        assert_eq!(kind_of(b""), None);
    }

    /// What [`scan`] makes of `envp`.
    fn scanned(envp: &[*const c_char]) -> Option<Vec<(String, Kind)>> {
        let mut kinds = Vec::new();
        scan(envp.as_ptr(), |entry, kind| {
            // SAFETY: entries the test made, NUL-terminated.
            let entry = unsafe { std::ffi::CStr::from_ptr(entry) };
            kinds.push((entry.to_string_lossy().into_owned(), kind));
        })?;
        Some(kinds)
    }

    fn environment(strings: &[CString]) -> Vec<*const c_char> {
        let mut envp: Vec<*const c_char> = strings.iter().map(|c| c.as_ptr()).collect();
        envp.push(std::ptr::null());
        envp
    }

    #[test]
    fn an_environment_is_surveyed_and_copied_without_its_tree_entries() {
        let owned: Vec<CString> = (0..40)
            .map(|i| CString::new(format!("VAR{i}=value {i}")).unwrap())
            .chain([
                c"DELAYSHIM_TREE=1:2".to_owned(),
                c"LD_PRELOAD=/x.so".to_owned(),
                c"DELAYSHIM_TREE=3:4".to_owned(),
                c"".to_owned(),
            ])
            .collect();
        let envp = environment(&owned);
        let kinds = scanned(&envp).unwrap();
        assert_eq!(kinds.len(), 44, "to the null");
        assert_eq!(kinds[40], ("DELAYSHIM_TREE=1:2".into(), Kind::Tree));
        assert_eq!(kinds[41].1, Kind::Preload);
        let found = survey(envp.as_ptr()).unwrap();
        assert_eq!(
            found,
            Survey {
                kept: 42,
                first_tree: Some((40, owned[40].as_ptr() as usize)),
                trees: 2,
                holds_own_entry: false,
                preloads: true,
            }
        );
        let mut tree = [0u8; ENTRY_LEN];
        let mut entries = vec![std::ptr::null(); 44];
        assert!(copy_into(envp.as_ptr(), &mut entries, &mut tree));
        assert_eq!(entries[..40], envp[..40]);
        assert_eq!(entries[40..42], [envp[41], envp[43]]);
        assert_eq!(entries[42], tree.as_ptr().cast());
        assert!(tree.starts_with(PREFIX));
        assert!(entries[43].is_null());
        let mut short = vec![std::ptr::null(); 43];
        assert!(!copy_into(envp.as_ptr(), &mut short, &mut tree), "no room");
        // An array that starts unaligned is read as the kernel reads it.
        let mut bytes = vec![0u8; envp.len() * 8 + 1];
        // SAFETY: the array's bytes into a buffer one byte longer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                envp.as_ptr().cast::<u8>(),
                bytes.as_mut_ptr().add(1),
                envp.len() * 8,
            )
        };
        let unaligned = bytes[1..].as_ptr().cast::<*const c_char>();
        assert_eq!(survey(unaligned), survey(envp.as_ptr()));
    }

    #[test]
    fn bad_pointers_are_refused_by_the_kernel_reader() {
        let owned = [c"A=1".to_owned(), c"B=2".to_owned()];
        let mut envp = environment(&owned);
        envp[1] = 8 as *const c_char;
        assert_eq!(scan(envp.as_ptr(), |_, _| {}), None);
        assert_eq!(survey(std::ptr::dangling::<*const c_char>()), None);
    }

    #[test]
    fn an_entry_at_the_end_of_its_memory_is_read_as_far_as_it_goes() {
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
            )
            .cast::<u8>();
            assert_ne!(memory, libc::MAP_FAILED.cast());
            let at = |offset: usize, bytes: &[u8]| {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), memory.add(offset), bytes.len());
                memory.add(offset).cast::<c_char>().cast_const()
            };
            // Across the two pages while both are mapped: read on.
            let across = at(page - 7, b"DELAYSHIM_TREE=1:2\0");
            assert_eq!(
                scanned(&[across, std::ptr::null()]).unwrap()[0].1,
                Kind::Tree
            );
            libc::munmap(memory.add(page).cast(), page);
            let short = at(page - 4, b"A=1\0");
            assert_eq!(scanned(&[short, std::ptr::null()]).unwrap().len(), 1);
            let undecided = at(page - 7, b"DELAYSH");
            let envp = [undecided, std::ptr::null()];
            assert_eq!(scan(envp.as_ptr(), |_, _| {}), None, "runs off");
            let other = at(page - 3, b"B=2");
            let envp = [other, std::ptr::null()];
            // No NUL before unmapped memory: the kernel would refuse it at
            // exec; told apart at its first byte, it is not read further.
            assert_eq!(scan(envp.as_ptr(), |_, _| {}), Some(()));
            libc::munmap(memory.cast(), page);
        }
    }

    #[test]
    fn a_mapping_holds_the_pointers_asked_for() {
        let mut mapped = Mapped::new(1000).unwrap();
        let slice = mapped.slice(1000);
        assert_eq!(slice.len(), 1000);
        assert!(slice.iter().all(|p| p.is_null()));
        slice[999] = c"x".as_ptr();
        assert_eq!(mapped.slice(2000).len(), 1000);
        mapped.unmap();
    }
}
