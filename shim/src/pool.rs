//! The buffers the shim formats and resolves paths in, kept in a pool
//! rather than in thread-local storage: a preloaded library's
//! thread-locals are carved out of every thread's stack, even of threads
//! the host gave a few kilobytes, and even when the shim is idle. A call
//! takes a free workspace with one compare-and-swap and gives it back.
//!
//! The first [`STATIC_SLOTS`] are static; when more threads are inside the
//! shim at once, the pool grows by a mapped chunk of [`CHUNK_SLOTS`] (a
//! raw `mmap`, async-signal-safe, pushed with one compare-and-swap and
//! never unmapped), so no call goes unlogged, unrecorded or unmatched for
//! want of a workspace. Only when the kernel refuses memory does a call go
//! without (it is still made).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use crate::sites::SiteCache;

/// One call's scratch space. All zeros is its empty state.
pub(crate) struct Workspace {
    pub path: [u8; 4096],
    pub other: [u8; 4096],
    pub line: [u8; 2048],
    pub sites: SiteCache,
}

const STATIC_SLOTS: usize = 16;
const CHUNK_SLOTS: usize = 16;

struct Slot {
    busy: AtomicBool,
    space: UnsafeCell<Workspace>,
}

// SAFETY: a slot's space is used only by the one caller whose
// compare-and-swap set `busy`, until it clears it.
unsafe impl Sync for Slot {}

static POOL: [Slot; STATIC_SLOTS] = [const {
    Slot {
        busy: AtomicBool::new(false),
        space: UnsafeCell::new(Workspace {
            path: [0; 4096],
            other: [0; 4096],
            line: [0; 2048],
            sites: SiteCache::EMPTY,
        }),
    }
}; STATIC_SLOTS];

/// A mapped chunk of slots; chunks form a list that only grows.
struct Chunk {
    next: *mut Chunk,
    slots: [Slot; CHUNK_SLOTS],
}

static CHUNKS: AtomicPtr<Chunk> = AtomicPtr::new(std::ptr::null_mut());
/// Chunks mapped so far, for the tests and the limits.
static MAPPED_CHUNKS: AtomicU64 = AtomicU64::new(0);

fn try_slot<R>(slot: &Slot, f: &mut Option<impl FnOnce(&mut Workspace) -> R>) -> Option<R> {
    if slot
        .busy
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    // SAFETY: this caller set `busy`; no one else touches the space until
    // it is cleared below.
    let result = f.take().map(|f| f(unsafe { &mut *slot.space.get() }));
    slot.busy.store(false, Ordering::Release);
    result
}

/// Runs `f` with a free workspace, or returns `None` when there is none
/// and no memory for more.
pub(crate) fn with_workspace<R>(f: impl FnOnce(&mut Workspace) -> R) -> Option<R> {
    let mut f = Some(f);
    for slot in &POOL {
        if let Some(result) = try_slot(slot, &mut f) {
            return Some(result);
        }
    }
    loop {
        let mut chunk = CHUNKS.load(Ordering::Acquire);
        while !chunk.is_null() {
            // SAFETY: chunks are never unmapped; `next` is set before a
            // chunk is published.
            let this = unsafe { &*chunk };
            for slot in &this.slots {
                if let Some(result) = try_slot(slot, &mut f) {
                    return Some(result);
                }
            }
            chunk = this.next;
        }
        grow()?;
    }
}

/// Maps one more chunk and publishes it. Zeroed memory is a chunk of free,
/// empty slots.
#[cold]
fn grow() -> Option<()> {
    let _errno = crate::errno::SavedErrno::save();
    // SAFETY: an anonymous private mapping; the raw call is not interposed.
    let address = unsafe {
        libc::syscall(
            libc::SYS_mmap,
            std::ptr::null_mut::<libc::c_void>(),
            std::mem::size_of::<Chunk>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if address < 0 || !(address as usize).is_multiple_of(std::mem::align_of::<Chunk>()) {
        return None;
    }
    let chunk = address as *mut Chunk;
    MAPPED_CHUNKS.fetch_add(1, Ordering::Relaxed);
    let mut head = CHUNKS.load(Ordering::Relaxed);
    loop {
        // SAFETY: the chunk is ours until the exchange below publishes it.
        unsafe { (*chunk).next = head };
        match CHUNKS.compare_exchange(head, chunk, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return Some(()),
            Err(now) => head = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_are_exclusive_come_back_and_never_run_out() {
        let nested = with_workspace(|outer| {
            outer.line[0] = 1;
            with_workspace(|inner| {
                assert_eq!(inner.line[0], 0, "another slot");
                inner.line[0] = 0;
            })
        });
        assert_eq!(nested, Some(Some(())));
        // More at once than the static slots: the pool grows.
        fn take(depth: usize) -> usize {
            if depth == 0 {
                return 0;
            }
            with_workspace(|_| 1 + take(depth - 1)).unwrap_or(0)
        }
        let chunks_before = MAPPED_CHUNKS.load(Ordering::Relaxed);
        let wanted = STATIC_SLOTS + CHUNK_SLOTS + 3;
        let handle = std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || take(wanted))
            .unwrap();
        assert_eq!(handle.join().unwrap(), wanted);
        assert!(MAPPED_CHUNKS.load(Ordering::Relaxed) > chunks_before);
        assert!(with_workspace(|_| ()).is_some());
    }
}
