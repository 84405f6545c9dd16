//! Access tracking for `delayshim run --conflicts` and campaigns: with a
//! region mapped ([`crate::region`]), each call on a regular file, each
//! lock, each change of a name, and each fork, start and exit of a process
//! becomes one fixed-size event in the region, which the command orders
//! and analyses after the run.
//!
//! [`before`] notes what the real call will change (the inode a name
//! points at before unlink or rename, the inode a descriptor closes);
//! [`after`] writes the event from the real call's result. Both are
//! async-signal-safe (raw or plain glibc system calls, fixed buffers, one
//! atomic add), leave errno as they found it, and do nothing when no
//! region is mapped. Byte ranges are exact: pread/pwrite at their offset,
//! read/write/readv/writev at the descriptor's offset after the call minus
//! what was transferred (which also places O_APPEND writes; an `lseek`,
//! since another process may share and move that offset). The file a
//! descriptor names comes from [`crate::descriptors`], without a system
//! call once known.

use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use delayshim_settings::region::{
    path_hash, tail_into, Event, EventKind, DETAIL_ARGV, DETAIL_EXECUTABLE, DETAIL_MAX_OBJECTS,
    DETAIL_MAX_TEXT, DETAIL_OBJECT, LOCK_EXCLUSIVE, LOCK_FLOCK, LOCK_OFD, LOCK_POSIX, LOCK_SHARED,
    NAME_BYTES,
};

use crate::call::{Call, Place};
use crate::descriptors::Known;
use crate::table::{Family, Func};

/// This process's pid: set at load and in fork children (getpid is a
/// system call, and a tracked call should cost as little as possible).
static PID: AtomicU32 = AtomicU32::new(0);
/// Bumped in every fork child: a thread's cached tid is then stale.
static GENERATION: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// The thread's id and the generation it was read in.
    static TID: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, u32::MAX)) };
    /// Whether the shim delayed (or failed) the call being tracked.
    static DELAYED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the thread's current call as delayed, for its event's flags.
pub(crate) fn note_delayed() {
    if active() {
        let _ = DELAYED.try_with(|cell| cell.set(true));
    }
}

/// The length meaning "to the end of the file".
const TO_END: u64 = u64::MAX;

/// Whether calls are tracked: one load.
#[inline(always)]
pub(crate) fn active() -> bool {
    crate::region::mapped()
}

/// What [`before`] learned, for [`after`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    func: Func,
    args: [u64; 6],
    /// The inode involved before the call: (dev, ino), or zero.
    before: (u64, u64),
    /// The slot claimed before the call, for a call that releases
    /// something (an unlock, close, unlink, rename), and when it was taken.
    slot: Option<(u64, u64)>,
}

fn stat_fd(fd: c_int) -> Option<libc::stat> {
    // SAFETY: stat is plain old data; fstat is not interposed.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one struct stat into `stat`.
    let found = unsafe { libc::fstat(fd, &mut stat) };
    (found == 0).then_some(stat)
}

fn stat_place(place: Place) -> Option<libc::stat> {
    if place.path.is_null() {
        return None;
    }
    // SAFETY: as above; the kernel checks the path pointer.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat writes one struct stat; the kernel checks the path.
    let found = unsafe {
        libc::fstatat(
            place.dirfd,
            place.path,
            &mut stat,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    (found == 0).then_some(stat)
}

fn is_regular(stat: &libc::stat) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn identity(stat: libc::stat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}

/// The (dev, ino) of the regular file open at `fd`, from the descriptor
/// cache when it knows (no system call), else from an `fstat` that the
/// cache learns when `learn`.
fn regular_file(fd: c_int, learn: bool) -> Option<(u64, u64)> {
    crate::descriptors::identify(fd, learn).and_then(Known::regular)
}

fn position(fd: c_int) -> Option<u64> {
    // SAFETY: lseek is not interposed and only asks.
    let at = unsafe { libc::lseek64(fd, 0, libc::SEEK_CUR) };
    u64::try_from(at).ok()
}

fn place(args: &[u64; 6], at: bool, index: usize) -> Place {
    if at {
        Place {
            dirfd: args[index] as c_int,
            path: args[index + 1] as *const c_char,
        }
    } else {
        Place {
            dirfd: libc::AT_FDCWD,
            path: args[index] as *const c_char,
        }
    }
}

/// Notes what the call is about to change. `None` without a region.
#[inline(always)]
pub(crate) fn before(func: Func, args: &[u64]) -> Option<Pending> {
    if !active() {
        return None;
    }
    let _errno = crate::errno::SavedErrno::save();
    let _ = DELAYED.try_with(|cell| cell.set(false));
    let mut all = [0u64; 6];
    let n = args.len().min(6);
    all[..n].copy_from_slice(&args[..n]);
    let inode = match func.family() {
        Family::Close => {
            let fd = all[0] as c_int;
            let inode = regular_file(fd, false);
            // Forgotten now as well as after: a handler may jump out of a
            // delay after the real close, and `after` then never runs.
            crate::descriptors::forget(fd);
            inode
        }
        Family::Unlink => stat_place(place(&all, func == Func::unlinkat, 0)).map(identity),
        Family::Mkdir if func == Func::rmdir => stat_place(place(&all, false, 0)).map(identity),
        _ => None,
    };
    // A close of anything but a regular file leaves no event: no slot.
    let wanted = releases(func, &all) && (func.family() != Family::Close || inode.is_some());
    let slot = wanted
        .then(crate::region::claim)
        .flatten()
        .map(|index| (index, crate::delay::now_nanos()));
    Some(Pending {
        func,
        args: all,
        before: inode.unwrap_or((0, 0)),
        slot,
    })
}

/// Whether the call may let another task go on (release a lock, remove
/// or replace a name): its event is then claimed before the real call.
fn releases(func: Func, args: &[u64; 6]) -> bool {
    match func.family() {
        Family::Close | Family::Unlink | Family::Rename => true,
        Family::Mkdir => func == Func::rmdir,
        Family::Flock if func == Func::flock => args[1] as c_int & !libc::LOCK_NB == libc::LOCK_UN,
        Family::Flock => args[1] as c_int == libc::F_ULOCK,
        Family::Fcntl => {
            let (cmd, arg) = (args[1] as c_int, args[2]);
            let sets = matches!(
                cmd,
                libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_SETLK | libc::F_OFD_SETLKW
            );
            // Read without trusting the pointer, as locks.rs does.
            sets && crate::locks::read_lock_type(arg as std::ffi::c_ulong)
                .is_some_and(|t| c_int::from(t) == libc::F_UNLCK)
        }
        _ => false,
    }
}

/// Writes the call's event, from its result. Leaves errno as it was.
pub(crate) fn after(pending: Pending, caller: usize, result: i64) {
    let _errno = crate::errno::SavedErrno::save();
    forget_closed(&pending, result);
    let _ = std::panic::catch_unwind(|| describe(&pending, caller, result));
}

/// Tells the descriptor cache of a number the call freed or reused. Linux
/// frees a descriptor whatever `close` returns (EINTR included).
fn forget_closed(p: &Pending, result: i64) {
    let fd = p.args[0] as c_int;
    match p.func.family() {
        Family::Close => crate::descriptors::forget(fd),
        Family::Fcntl if result >= 0 => {
            if matches!(p.args[1] as c_int, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) {
                crate::descriptors::forget(result as c_int);
            }
        }
        _ => {}
    }
}

/// Writes `event` into the slot claimed before the call, if one was (with
/// the time it was claimed), else into a new one.
fn emit(p: &Pending, mut event: Event) {
    match p.slot {
        Some((index, time)) => {
            event.time = time;
            crate::region::write(index, &event);
        }
        None => crate::region::append(&event),
    }
}

fn base(kind: EventKind, func: Func, caller: usize) -> Event {
    let mut event = Event::new(kind);
    event.pid = PID.load(Relaxed);
    event.tid = tid();
    event.time = crate::delay::now_nanos();
    event.func = func as u16;
    if DELAYED.try_with(std::cell::Cell::get).unwrap_or(false) {
        event.flags |= delayshim_settings::region::FLAG_DELAYED;
    }
    if caller != 0 {
        let _ = crate::pool::with_workspace(|space| {
            if let Some(site) = crate::sites::site(&mut space.sites, caller) {
                event.site = site.offset;
                let object = site.object;
                let name = object.rsplit(|&b| b == b'/').next().unwrap_or(object);
                tail_into(&mut event.object, name);
            }
        });
    }
    event
}

fn tid() -> u32 {
    let generation = GENERATION.load(Relaxed);
    TID.try_with(|cell| {
        let (tid, seen) = cell.get();
        if seen == generation {
            return tid;
        }
        // SAFETY: gettid cannot fail.
        let tid = unsafe { libc::gettid() } as u32;
        cell.set((tid, generation));
        tid
    })
    // SAFETY: gettid cannot fail.
    .unwrap_or_else(|_| unsafe { libc::gettid() } as u32)
}

fn on_inode(event: &mut Event, (dev, ino): (u64, u64)) {
    event.dev = dev;
    event.ino = ino;
}

/// An access of `len` bytes at `start` of the file behind `fd`.
fn data(kind: EventKind, p: &Pending, caller: usize, fd: c_int, start: Option<u64>, len: u64) {
    let Some(inode) = regular_file(fd, true) else {
        return;
    };
    // Without an offset: the descriptor's, after the call, minus what it moved.
    let Some(start) = start.or_else(|| position(fd).map(|at| at.saturating_sub(len))) else {
        return;
    };
    let mut event = base(kind, p.func, caller);
    on_inode(&mut event, inode);
    event.start = start;
    event.len = len;
    crate::region::append(&event);
}

/// A name event for the path at `place`, its inode given or found.
fn name(kind: EventKind, p: &Pending, caller: usize, place: Place, inode: Option<(u64, u64)>) {
    name_into(kind, p, caller, place, inode, true)
}

/// As [`name`]; `claimed` says whether to use the slot claimed before the call.
fn name_into(
    kind: EventKind,
    p: &Pending,
    caller: usize,
    place: Place,
    inode: Option<(u64, u64)>,
    claimed: bool,
) {
    let inode = inode.or_else(|| stat_place(place).map(|s| (s.st_dev, s.st_ino)));
    let mut event = base(kind, p.func, caller);
    if let Some((dev, ino)) = inode {
        event.dev = dev;
        event.ino = ino;
    }
    let named = crate::pool::with_workspace(|space| {
        let call = Call::at(place.dirfd, place.path);
        let n = crate::call::resolve_path(&call, &mut space.path)?;
        let path = &space.path[..n];
        event.aux = path_hash(path);
        event.start = path_hash(directory(path));
        tail_into(&mut event.name, path);
        Some(())
    });
    if named.flatten().is_some() {
        if claimed {
            emit(p, event);
        } else {
            crate::region::append(&event);
        }
    }
}

fn lock(p: &Pending, caller: usize, fd: c_int, kind: EventKind, mode: u64, start: u64, len: u64) {
    let Some(inode) = regular_file(fd, true) else {
        return;
    };
    let mut event = base(kind, p.func, caller);
    on_inode(&mut event, inode);
    event.aux = mode;
    event.start = start;
    event.len = len;
    emit(p, event);
}

/// A lock's range from where it starts and its signed length (0: to the end).
fn range(start: i64, len: i64) -> (u64, u64) {
    match len {
        0 => (start.max(0) as u64, TO_END),
        len if len > 0 => (start.max(0) as u64, len as u64),
        len => ((start + len).max(0) as u64, len.unsigned_abs()),
    }
}

fn fcntl_lock(p: &Pending, caller: usize) {
    let (fd, cmd, arg) = (p.args[0] as c_int, p.args[1] as c_int, p.args[2]);
    let family = match cmd {
        libc::F_SETLK | libc::F_SETLKW => LOCK_POSIX,
        libc::F_OFD_SETLK | libc::F_OFD_SETLKW => LOCK_OFD,
        _ => return,
    };
    if arg == 0 {
        return;
    }
    // SAFETY: the real fcntl just read this struct flock and succeeded.
    let wanted = unsafe { std::ptr::read_volatile(arg as *const libc::flock) };
    let base_at = match c_int::from(wanted.l_whence) {
        libc::SEEK_SET => 0,
        libc::SEEK_CUR => position(fd).unwrap_or(0) as i64,
        libc::SEEK_END => stat_fd(fd).map_or(0, |s| s.st_size),
        _ => return,
    };
    let (start, len) = range(base_at.saturating_add(wanted.l_start), wanted.l_len);
    let (kind, mode) = match c_int::from(wanted.l_type) {
        libc::F_RDLCK => (EventKind::Acquire, LOCK_SHARED),
        libc::F_WRLCK => (EventKind::Acquire, LOCK_EXCLUSIVE),
        libc::F_UNLCK => (EventKind::Release, 0),
        _ => return,
    };
    lock(p, caller, fd, kind, mode | family, start, len);
}

fn describe(p: &Pending, caller: usize, result: i64) {
    let args = &p.args;
    let fd = args[0] as c_int;
    let offset = |index: usize| (args[index] as i64 >= 0).then_some(args[index]);
    match p.func.family() {
        Family::Write | Family::Read | Family::Pwrite | Family::Pread if result > 0 => {
            let kind = match p.func.family() {
                Family::Write | Family::Pwrite => EventKind::Write,
                _ => EventKind::Read,
            };
            let start = match p.func.family() {
                Family::Pwrite | Family::Pread => offset(3),
                _ => None,
            };
            data(kind, p, caller, fd, start, result as u64);
        }
        Family::Truncate if result == 0 => match p.func {
            Func::ftruncate | Func::ftruncate64 => {
                data(EventKind::Write, p, caller, fd, Some(args[1]), TO_END)
            }
            Func::truncate | Func::truncate64 => {
                let at = place(args, false, 0);
                if let Some(stat) = stat_place(at).filter(is_regular) {
                    let mut event = base(EventKind::Write, p.func, caller);
                    on_inode(&mut event, identity(stat));
                    event.start = args[1];
                    event.len = TO_END;
                    crate::region::append(&event);
                }
            }
            Func::fallocate | Func::fallocate64 => {
                data(EventKind::Write, p, caller, fd, Some(args[2]), args[3])
            }
            _ => data(EventKind::Write, p, caller, fd, Some(args[1]), args[2]),
        },
        Family::Fsync if result == 0 && p.func != Func::msync => {
            data(EventKind::Sync, p, caller, fd, Some(0), 0)
        }
        Family::Fcntl if result == 0 => fcntl_lock(p, caller),
        Family::Flock if result == 0 => {
            let op = args[1] as c_int;
            if p.func == Func::flock {
                let (kind, mode) = match op & !libc::LOCK_NB {
                    libc::LOCK_SH => (EventKind::Acquire, LOCK_SHARED),
                    libc::LOCK_EX => (EventKind::Acquire, LOCK_EXCLUSIVE),
                    libc::LOCK_UN => (EventKind::Release, 0),
                    _ => return,
                };
                lock(p, caller, fd, kind, mode | LOCK_FLOCK, 0, TO_END);
            } else {
                let kind = match op {
                    libc::F_LOCK | libc::F_TLOCK => EventKind::Acquire,
                    libc::F_ULOCK => EventKind::Release,
                    _ => return,
                };
                let at = position(fd).unwrap_or(0) as i64;
                let (start, len) = range(at, args[2] as i64);
                let mode = if kind == EventKind::Acquire {
                    LOCK_EXCLUSIVE
                } else {
                    0
                };
                lock(p, caller, fd, kind, mode | LOCK_POSIX, start, len);
            }
        }
        Family::Open if result >= 0 => {
            let (at, flags) = match p.func {
                Func::openat | Func::openat64 | Func::__openat_2 | Func::__openat64_2 => {
                    (place(args, true, 0), args[2] as c_int)
                }
                Func::creat | Func::creat64 => (
                    place(args, false, 0),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                ),
                _ => (place(args, false, 0), args[1] as c_int),
            };
            // A new descriptor: whatever the cache held for its number
            // (closed where no wrapper saw it) is replaced.
            let Some(inode) = crate::descriptors::renew(result as c_int).and_then(Known::regular)
            else {
                return;
            };
            let exclusive = flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL;
            let kind = if exclusive {
                EventKind::Create
            } else {
                EventKind::Open
            };
            name(kind, p, caller, at, Some(inode));
            if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
                let mut event = base(EventKind::Write, p.func, caller);
                on_inode(&mut event, inode);
                event.len = TO_END;
                crate::region::append(&event);
            }
        }
        Family::Close if p.before != (0, 0) => {
            let mut event = base(EventKind::ReleaseAll, p.func, caller);
            (event.dev, event.ino) = p.before;
            emit(p, event);
        }
        Family::Rename if result == 0 => {
            let at = p.func != Func::rename;
            let (old, new) = if at {
                (place(args, true, 0), place(args, true, 2))
            } else {
                (place(args, false, 0), place(args, false, 1))
            };
            let moved = stat_place(new).map(|s| (s.st_dev, s.st_ino));
            // The new name's event takes the slot claimed before the
            // call: it publishes what the renamer wrote.
            name(EventKind::RenameTo, p, caller, new, moved);
            name_into(EventKind::Unlink, p, caller, old, moved, false);
        }
        Family::Unlink if result == 0 => {
            let at = place(args, p.func == Func::unlinkat, 0);
            name(EventKind::Unlink, p, caller, at, Some(p.before));
        }
        Family::Link if result == 0 => {
            let at = match p.func {
                Func::link => place(args, false, 1),
                Func::linkat => place(args, true, 2),
                Func::symlink => place(args, false, 1),
                _ => place(args, true, 1),
            };
            name(EventKind::Create, p, caller, at, None);
        }
        Family::Mkdir if result == 0 => match p.func {
            Func::rmdir => name(
                EventKind::Unlink,
                p,
                caller,
                place(args, false, 0),
                Some(p.before),
            ),
            Func::mkdirat => name(EventKind::Create, p, caller, place(args, true, 0), None),
            _ => name(EventKind::Create, p, caller, place(args, false, 0), None),
        },
        _ => {}
    }
}

/// A process event (start, fork, exit) of the calling thread.
fn process_event(kind: EventKind, aux: u64, flags: u16, text: &[u8]) {
    if !active() {
        return;
    }
    let _errno = crate::errno::SavedErrno::save();
    let mut event = base(kind, Func::write, 0);
    event.func = u16::MAX;
    event.aux = aux;
    event.flags = flags;
    let take = text.len().min(event.name.len());
    event.name[..take].copy_from_slice(&text[..take]);
    crate::region::append(&event);
}

/// The directory part of an absolute path (name events carry its hash in
/// `start`, so the report can tell which files a shared mapping sits beside).
fn directory(path: &[u8]) -> &[u8] {
    let end = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    &path[..end]
}

/// A file mapped shared and writable (from [`crate::mapping`]).
#[cfg_attr(test, allow(dead_code))]
pub(crate) fn mapped_shared(fd: c_int) {
    let _errno = crate::errno::SavedErrno::save();
    let Some(stat) = stat_fd(fd).filter(is_regular) else {
        return;
    };
    let mut event = base(EventKind::Map, Func::write, 0);
    event.func = u16::MAX;
    on_inode(&mut event, identity(stat));
    let _ = crate::pool::with_workspace(|space| {
        if let Some(n) = crate::call::resolve_path(&Call::fd(fd), &mut space.path) {
            let path = &space.path[..n];
            event.aux = path_hash(path);
            event.start = path_hash(directory(path));
            tail_into(&mut event.name, path);
        }
    });
    crate::region::append(&event);
}

/// `flags` of a Start event in a fork child (an exec'd program's has none).
pub const STARTED_BY_FORK: u16 = 0x100;

/// At load, after the configuration: maps the region if one is named,
/// and says the process started. `command_line` is /proc/self/cmdline.
pub(crate) fn init(region: Option<&std::ffi::CStr>, command_line: &[u8]) {
    let Some(path) = region else {
        return;
    };
    if crate::region::map_at_load(path).is_err() {
        return;
    }
    // SAFETY: getpid and getppid cannot fail.
    PID.store(unsafe { libc::getpid() } as u32, Relaxed);
    let mut text = [0u8; 56];
    let take = command_line.len().min(text.len());
    text[..take].copy_from_slice(&command_line[..take]);
    for b in &mut text[..take] {
        if *b == 0 {
            *b = b' ';
        }
    }
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() } as u64;
    process_event(EventKind::Start, parent, 0, &text[..take]);
    details(command_line);
    // SAFETY: handlers with the signatures pthread_atfork and atexit expect.
    unsafe {
        libc::pthread_atfork(Some(before_fork), None, Some(in_fork_child));
        libc::atexit(at_exit);
    }
}

/// At load (allocation allowed): the executable, the whole command line
/// and the paths of the objects mapped executable, as Detail events, so
/// that the report names processes and symbolizes call sites after the
/// processes are gone (a Start holds 56 bytes; a site an object's tail).
/// A fork child runs its parent's image: its parent's details stand.
fn details(command_line: &[u8]) {
    use std::os::unix::ffi::OsStrExt as _;
    let mut number = 0;
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        detail(DETAIL_EXECUTABLE, number, exe.as_os_str().as_bytes());
        number += 1;
    }
    let argv = command_line.strip_suffix(b"\0").unwrap_or(command_line);
    detail(DETAIL_ARGV, number, argv);
    number += 1;
    let maps = std::fs::read("/proc/self/maps").unwrap_or_default();
    let mut seen: Vec<&[u8]> = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        // start-end perms offset dev inode path
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let executable = fields.nth(1).is_some_and(|perms| perms.contains(&b'x'));
        let Some(path) = fields.nth(3).filter(|p| p.starts_with(b"/")) else {
            continue;
        };
        if executable && !seen.contains(&path) && seen.len() < DETAIL_MAX_OBJECTS {
            seen.push(path);
            detail(DETAIL_OBJECT, number, path);
            number += 1;
        }
    }
}

/// One detail text, in pieces of a name field each.
fn detail(what: u64, number: u64, text: &[u8]) {
    let text = &text[..text.len().min(DETAIL_MAX_TEXT)];
    for (at, piece) in (0..).step_by(NAME_BYTES).zip(text.chunks(NAME_BYTES)) {
        let mut event = base(EventKind::Detail, Func::write, 0);
        event.func = u16::MAX;
        event.aux = what;
        event.site = number;
        event.start = at;
        event.len = text.len() as u64;
        event.name[..piece.len()].copy_from_slice(piece);
        crate::region::append(&event);
    }
}

extern "C" fn before_fork() {
    process_event(EventKind::Fork, 0, 0, b"");
}

extern "C" fn in_fork_child() {
    // SAFETY: getpid and getppid cannot fail.
    PID.store(unsafe { libc::getpid() } as u32, Relaxed);
    GENERATION.fetch_add(1, Relaxed);
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() } as u64;
    process_event(EventKind::Start, parent, STARTED_BY_FORK, b"");
}

extern "C" fn at_exit() {
    exiting();
}

/// The process ends (atexit, `_exit`): its locks go with it.
pub(crate) fn exiting() {
    // A vfork child shares the parent's memory and cached pid: not its exit.
    // SAFETY: getpid cannot fail.
    if PID.load(Relaxed) != unsafe { libc::getpid() } as u32 {
        return;
    }
    process_event(EventKind::Exit, 0, 0, b"");
}
