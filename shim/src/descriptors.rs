//! What file each of the process's descriptors is, cached for access
//! tracking ([`crate::track`]) so that a tracked call on a known
//! descriptor needs no `fstat` of its own (a system call costs about as
//! much as the call it tracks).
//!
//! One word per descriptor below [`SLOTS`]: unknown, not a regular file,
//! or an index into a table of inodes (device and inode number, written
//! once and never changed, so a reader never sees half of one). A word is
//! learned from an `fstat` and changed only by compare-and-swap from the
//! value read before that `fstat`; each change also bumps the word's
//! sequence number, so a descriptor closed (and its number reused) while
//! the `fstat` ran makes the swap fail rather than store the old file.
//!
//! The cache is right only while every close or replacement of a
//! descriptor is seen: [`forget`] runs after `close`, `dup2`, `dup3`,
//! `close_range`, `closefrom` and the libc functions that close one inside
//! (`fclose`, `freopen`, `pclose`, `closedir`, ...; see `closing`). A
//! descriptor closed where no wrapper sees it (a raw `close` system call,
//! io_uring) can leave a stale word; the README names those limits.
//!
//! Atomics only, bounded loops, no allocation: async-signal-safe, and a
//! handler that jumps out mid-way leaves at worst one inode entry claimed
//! and never used.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Descriptors below this number are cached; others are `fstat`ed each time.
pub(crate) const SLOTS: usize = 1024;
/// Distinct inodes the process can cache over its life (a hash table that
/// never forgets: a descriptor of a new inode after it fills is `fstat`ed).
const INODES: usize = 1024;
/// Places tried in the inode table before giving up.
const PROBES: usize = 16;

/// Low half of a slot word: nothing known.
const UNKNOWN: u32 = 0;
/// Low half of a slot word: open, and not a regular file.
const NOT_REGULAR: u32 = u32::MAX;
/// One in the high half: the sequence number, bumped by every change.
const SEQUENCE: u64 = 1 << 32;

static SLOT: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

const FREE: u32 = 0;
const CLAIMED: u32 = 1;
const PUBLISHED: u32 = 2;

struct Inode {
    state: AtomicU32,
    dev: AtomicU64,
    ino: AtomicU64,
}

static INODE: [Inode; INODES] = [const {
    Inode {
        state: AtomicU32::new(FREE),
        dev: AtomicU64::new(0),
        ino: AtomicU64::new(0),
    }
}; INODES];

/// What a descriptor is, as far as tracking cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// A regular file: its device and inode number.
    Regular(u64, u64),
    /// Anything else (a pipe, socket, terminal, directory).
    Other,
}

impl Known {
    fn of(stat: &libc::stat) -> Known {
        if stat.st_mode & libc::S_IFMT == libc::S_IFREG {
            Known::Regular(stat.st_dev, stat.st_ino)
        } else {
            Known::Other
        }
    }

    /// The device and inode of a regular file.
    pub(crate) fn regular(self) -> Option<(u64, u64)> {
        match self {
            Known::Regular(dev, ino) => Some((dev, ino)),
            Known::Other => None,
        }
    }
}

fn slot(fd: c_int) -> Option<&'static AtomicU64> {
    usize::try_from(fd).ok().and_then(|i| SLOT.get(i))
}

/// The cached answer for `fd`, if any: two or three loads, no system call.
#[inline]
pub(crate) fn cached(fd: c_int) -> Option<Known> {
    let word = slot(fd)?.load(Ordering::Acquire);
    decode(word)
}

fn decode(word: u64) -> Option<Known> {
    match word as u32 {
        UNKNOWN => None,
        NOT_REGULAR => Some(Known::Other),
        index => {
            let inode = INODE.get(index as usize - 1)?;
            // Published before the slot word that names it (Release), and
            // never written again.
            Some(Known::Regular(
                inode.dev.load(Ordering::Relaxed),
                inode.ino.load(Ordering::Relaxed),
            ))
        }
    }
}

fn fstat(fd: c_int) -> Option<libc::stat> {
    // SAFETY: stat is plain old data.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one struct stat; it is not interposed.
    let found = unsafe { libc::fstat(fd, &mut stat) };
    (found == 0).then_some(stat)
}

/// What `fd` is: the cached answer, else an `fstat`, whose answer is
/// cached when `learn` (a descriptor about to be closed is not worth it).
/// `None` if `fd` is not open.
pub(crate) fn identify(fd: c_int, learn: bool) -> Option<Known> {
    if let Some(known) = cached(fd) {
        return Some(known);
    }
    if learn {
        renew(fd)
    } else {
        fstat(fd).as_ref().map(Known::of)
    }
}

/// `fd` was just opened (or may hold another file than the cache says):
/// an `fstat`, whose answer replaces whatever the slot held.
pub(crate) fn renew(fd: c_int) -> Option<Known> {
    let Some(slot) = slot(fd) else {
        return fstat(fd).as_ref().map(Known::of);
    };
    // Read before the fstat: a close of `fd` during it changes the word,
    // and the swap below then fails instead of storing the closed file.
    let before = slot.load(Ordering::Acquire);
    let known = fstat(fd).as_ref().map(Known::of)?;
    // A vfork child shares this memory but not its parent's descriptors.
    if !crate::process::owns_state() {
        return Some(known);
    }
    let low = match known {
        Known::Regular(dev, ino) => match intern(dev, ino) {
            Some(index) => index + 1,
            None => return Some(known),
        },
        Known::Other => NOT_REGULAR,
    };
    fill(slot, before, low);
    Some(known)
}

/// Stores `low` with the next sequence number if the slot still holds
/// `before`; false if it changed meanwhile (a close: the fill is dropped).
fn fill(slot: &AtomicU64, before: u64, low: u32) -> bool {
    let word = (before & !u64::from(u32::MAX)).wrapping_add(SEQUENCE) | u64::from(low);
    slot.compare_exchange(before, word, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

/// `fd` was closed or replaced: nothing is known of it any more.
pub(crate) fn forget(fd: c_int) {
    if let Some(slot) = slot(fd) {
        forget_slot(slot);
    }
}

/// Every descriptor from `first` to `last` (inclusive) was closed.
pub(crate) fn forget_range(first: u32, last: u32) {
    let first = (first as usize).min(SLOTS);
    let end = (last as usize).saturating_add(1).min(SLOTS);
    for slot in &SLOT[first..end.max(first)] {
        forget_slot(slot);
    }
}

fn forget_slot(slot: &AtomicU64) {
    // A change even when nothing is known: a fill that read the word
    // before the close must fail. Each failed swap means another change
    // landed (lock-free; such changes are as rare as closes).
    let mut word = slot.load(Ordering::Relaxed);
    loop {
        let next = (word & !u64::from(u32::MAX)).wrapping_add(SEQUENCE);
        match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => word = seen,
        }
    }
}

/// The inode table's index of (dev, ino), adding it if new; `None` when
/// its places are taken by others.
fn intern(dev: u64, ino: u64) -> Option<u32> {
    let hash = (ino ^ dev.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let first = (hash >> 32) as usize;
    for probe in 0..PROBES {
        let index = (first + probe) % INODES;
        let inode = &INODE[index];
        let mut state = inode.state.load(Ordering::Acquire);
        if state == FREE {
            match inode
                .state
                .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    inode.dev.store(dev, Ordering::Relaxed);
                    inode.ino.store(ino, Ordering::Relaxed);
                    inode.state.store(PUBLISHED, Ordering::Release);
                    return Some(index as u32);
                }
                Err(seen) => state = seen,
            }
        }
        if state == PUBLISHED
            && inode.dev.load(Ordering::Relaxed) == dev
            && inode.ino.load(Ordering::Relaxed) == ino
        {
            return Some(index as u32);
        }
        // Claimed by a writer not done yet, or another inode: next place.
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd as _;

    fn file(name: &str) -> std::fs::File {
        let dir = std::env::temp_dir().join(format!("descriptors-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(name))
            .unwrap()
    }

    fn inode(file: &std::fs::File) -> Known {
        use std::os::unix::fs::MetadataExt as _;
        let meta = file.metadata().unwrap();
        Known::Regular(meta.dev(), meta.ino())
    }

    /// As after load: this process owns the shim's state (fills happen).
    fn owned() -> std::sync::MutexGuard<'static, ()> {
        let guard = crate::PROCESS_STATE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::process::init(1, None);
        guard
    }

    #[test]
    fn a_number_given_to_another_file_is_named_by_the_new_file_once_forgotten() {
        let _owned = owned();
        let (a, b) = (file("a"), file("b"));
        let fd = a.as_raw_fd();
        // Tests close descriptors with no wrapper to tell the cache.
        renew(fd);
        assert_eq!(identify(fd, true), Some(inode(&a)));
        assert_eq!(cached(fd), Some(inode(&a)), "learned");
        // dup2 puts b at a's number, then the wrapper forgets it.
        // SAFETY: two open descriptors of this test.
        assert_eq!(unsafe { libc::dup2(b.as_raw_fd(), fd) }, fd);
        forget(fd);
        assert_eq!(cached(fd), None);
        assert_eq!(identify(fd, true), Some(inode(&b)));
        assert_eq!(cached(fd), Some(inode(&b)));
        // An open seen by the shim replaces what the slot held.
        assert_eq!(renew(fd), Some(inode(&b)));
        forget_range(fd as u32, u32::MAX);
        assert_eq!(cached(fd), None);
        forget(b.as_raw_fd());
    }

    #[test]
    fn a_fill_that_raced_a_close_is_dropped() {
        let _owned = owned();
        let a = file("race");
        let fd = a.as_raw_fd();
        forget(fd);
        let slot = slot(fd).unwrap();
        let before = slot.load(Ordering::Acquire);
        // The close lands between the fill's load and its swap.
        forget(fd);
        let Known::Regular(dev, ino) = inode(&a) else {
            unreachable!()
        };
        assert!(!fill(slot, before, intern(dev, ino).unwrap() + 1));
        assert_eq!(cached(fd), None);
        // Without a close in between, the same fill lands.
        let before = slot.load(Ordering::Acquire);
        assert!(fill(slot, before, intern(dev, ino).unwrap() + 1));
        assert_eq!(cached(fd), Some(inode(&a)));
        forget(fd);
    }

    #[test]
    fn pipes_are_known_as_not_files_and_far_numbers_are_not_cached() {
        let _owned = owned();
        let mut ends = [0; 2];
        // SAFETY: pipe writes two descriptors into `ends`.
        assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0);
        forget(ends[0]);
        assert_eq!(identify(ends[0], true), Some(Known::Other));
        assert_eq!(cached(ends[0]), Some(Known::Other));
        let a = file("far");
        forget(a.as_raw_fd());
        let far = SLOTS as c_int + 7;
        // SAFETY: an open descriptor copied to a free high number.
        assert_eq!(unsafe { libc::dup2(a.as_raw_fd(), far) }, far);
        assert_eq!(identify(far, true), Some(inode(&a)));
        assert_eq!(cached(far), None);
        assert_eq!(identify(-1, true), None);
        forget(-1);
        forget_range(u32::MAX - 1, u32::MAX);
        for fd in [ends[0], ends[1], far] {
            forget(fd);
            // SAFETY: this test's descriptors.
            unsafe { libc::close(fd) };
        }
    }

    #[test]
    fn an_inode_is_interned_once() {
        let first = intern(u64::MAX - 3, 12345).unwrap();
        assert_eq!(intern(u64::MAX - 3, 12345), Some(first));
        assert_ne!(intern(u64::MAX - 3, 12346), Some(first));
    }
}
