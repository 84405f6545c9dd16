//! The run's shared region (layout in [`delayshim_settings::region`]),
//! mapped once at load from the file `DELAYSHIM_REGION` names, and kept by
//! fork children (a shared mapping). No descriptor stays open.
//!
//! The header is copied and validated against the mapped length before
//! any offset from it is used, and only the validated copy is used after:
//! a writer that changes the shared header later cannot move the shim's
//! writes. Appending is one atomic add and bounded copies into a slot the
//! add handed out; with no room left, a flag says so. A region that is
//! missing, of garbage, truncated, of another version, not a regular file
//! of this user or writable by others is ignored: the shim then behaves as
//! without one.

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use delayshim_settings::region::{events, Event, Layout, COMMITTED, EVENT_SIZE, HEADER_SIZE};

static BASE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static EVENTS_AT: AtomicU64 = AtomicU64::new(0);
static CAPACITY: AtomicU64 = AtomicU64::new(0);
static TASKS_AT: AtomicU64 = AtomicU64::new(0);
static TASKS_SIZE: AtomicU64 = AtomicU64::new(0);

/// Whether a valid region is mapped.
#[inline(always)]
pub(crate) fn mapped() -> bool {
    !BASE.load(Ordering::Relaxed).is_null()
}

/// Maps the region at `path`, if it is one. At load only.
pub(crate) fn map_at_load(path: &CStr) -> Result<(), &'static str> {
    let fd = crate::output::raw_open(path, libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0);
    if fd < 0 {
        return Err("cannot be opened");
    }
    let result = map_fd(fd);
    crate::output::raw_close(fd);
    result
}

fn map_fd(fd: i32) -> Result<(), &'static str> {
    // SAFETY: stat is plain old data; fstat fills it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one struct stat into `stat`.
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return Err("cannot be examined");
    }
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG
        || stat.st_uid != uid
        || stat.st_mode & 0o022 != 0
    {
        return Err("is not a private regular file of this user");
    }
    let length = stat.st_size as u64;
    if length < (HEADER_SIZE + events::HEADER) as u64 || length > isize::MAX as u64 {
        return Err("is shorter than its header");
    }
    // SAFETY: a new shared mapping of the whole file; nothing else is
    // at the address the kernel picks.
    // The raw system call: the shim's own `mmap` export is for the host.
    let base = unsafe {
        // Every argument a full register: syscall() is variadic.
        libc::syscall(
            libc::SYS_mmap,
            0 as libc::c_long,
            length as libc::c_long,
            libc::c_long::from(libc::PROT_READ | libc::PROT_WRITE),
            libc::c_long::from(libc::MAP_SHARED),
            libc::c_long::from(fd),
            0 as libc::c_long,
        )
    };
    // glibc's syscall() returns -1 (errno set) for a failed call.
    if base == -1 {
        return Err("cannot be mapped");
    }
    let base = base as *mut libc::c_void;
    let mut prefix = [0u8; HEADER_SIZE + events::HEADER];
    // SAFETY: the mapping is at least this long (checked above).
    unsafe { std::ptr::copy_nonoverlapping(base.cast::<u8>(), prefix.as_mut_ptr(), prefix.len()) };
    match Layout::validate(&prefix, length) {
        Ok(layout) => {
            EVENTS_AT.store(layout.events, Ordering::Relaxed);
            CAPACITY.store(layout.capacity, Ordering::Relaxed);
            TASKS_AT.store(layout.tasks, Ordering::Relaxed);
            TASKS_SIZE.store(layout.tasks_size, Ordering::Relaxed);
            BASE.store(base.cast(), Ordering::Release);
            Ok(())
        }
        Err(why) => {
            // SAFETY: the mapping made above, used by no one.
            unsafe { libc::syscall(libc::SYS_munmap, base, length as libc::c_long) };
            Err(why.reason())
        }
    }
}

/// The tasks section (`pct`'s scheduling state): its address and its
/// validated size, 64-byte aligned and inside the mapping.
pub(crate) fn tasks() -> Option<(*mut u8, u64)> {
    let base = BASE.load(Ordering::Acquire);
    if base.is_null() {
        return None;
    }
    let at = TASKS_AT.load(Ordering::Relaxed) as usize;
    // SAFETY: validated at map time: the section lies inside the mapping.
    Some((unsafe { base.add(at) }, TASKS_SIZE.load(Ordering::Relaxed)))
}

/// Claims the next slot: its index, or `None` without a region or room
/// (then the region is marked full). Async-signal-safe and lock-free.
/// Claiming orders events: a release is claimed before the real call, an
/// acquisition after it, so the slot order never puts an acquisition
/// before the release it waited for.
pub(crate) fn claim() -> Option<u64> {
    let base = BASE.load(Ordering::Acquire);
    if base.is_null() {
        return None;
    }
    let events_at = EVENTS_AT.load(Ordering::Relaxed) as usize;
    // SAFETY: validated: the events section's header lies in the mapping,
    // 64-byte aligned, so both words are aligned and in bounds.
    let cursor = unsafe { AtomicU64::from_ptr(base.add(events_at + events::CURSOR).cast()) };
    let index = cursor.fetch_add(1, Ordering::Relaxed);
    if index >= CAPACITY.load(Ordering::Relaxed) {
        // SAFETY: as above.
        let full = unsafe { AtomicU32::from_ptr(base.add(events_at + events::FULL).cast()) };
        full.store(1, Ordering::Relaxed);
        return None;
    }
    Some(index)
}

/// Writes `event` into the slot [`claim`] handed out, commit word last.
/// A claimed slot never written stays uncommitted, and readers skip it.
pub(crate) fn write(index: u64, event: &Event) {
    let base = BASE.load(Ordering::Acquire);
    let capacity = CAPACITY.load(Ordering::Relaxed);
    if base.is_null() || index >= capacity {
        return;
    }
    let layout = Layout {
        total: 0,
        events: EVENTS_AT.load(Ordering::Relaxed),
        capacity,
        tasks: 0,
        tasks_size: 0,
    };
    let slot = layout.slot(index) as usize;
    let mut body = [0u8; EVENT_SIZE - 4];
    event.encode(&mut body);
    // SAFETY: validated: slot `index < capacity` lies in the mapping, and
    // slots start 4-aligned (64 + 64 + index * EVENT_SIZE).
    unsafe {
        std::ptr::copy_nonoverlapping(body.as_ptr(), base.add(slot + 4), body.len());
        AtomicU32::from_ptr(base.add(slot).cast()).store(COMMITTED, Ordering::Release);
    }
}

/// Claims a slot and writes `event` into it.
pub(crate) fn append(event: &Event) {
    if let Some(index) = claim() {
        write(index, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    fn cpath(path: &std::path::Path) -> std::ffi::CString {
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
    }

    #[test]
    fn hostile_regions_are_refused_without_being_mapped() {
        let dir = std::env::temp_dir().join(format!("region-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let layout = Layout::new(4);
        let write = |name: &str, bytes: &[u8], len: u64| {
            let path = dir.join(name);
            let mut file = std::fs::File::create(&path).unwrap();
            file.write_all(bytes).unwrap();
            file.set_len(len).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        let garbage = write("garbage", &[0xa5; 4096], 4096);
        assert_eq!(map_fd_path(&garbage), Err("not a delayshim region"));
        let truncated = write("truncated", &layout.initial_bytes(), layout.total / 2);
        assert_eq!(
            map_fd_path(&truncated),
            Err("of another size than its header says")
        );
        let tiny = write("tiny", b"DSREGION", 8);
        assert_eq!(map_fd_path(&tiny), Err("is shorter than its header"));
        let open = write("open", &layout.initial_bytes(), layout.total);
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(
            map_fd_path(&open),
            Err("is not a private regular file of this user")
        );
        assert!(!mapped());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn map_fd_path(path: &std::path::Path) -> Result<(), &'static str> {
        map_at_load(&cpath(path))
    }
}
