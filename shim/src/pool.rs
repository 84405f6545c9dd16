//! The buffers the shim formats and resolves paths in, kept in a static
//! pool rather than in thread-local storage: a preloaded library's
//! thread-locals are carved out of every thread's stack, even of threads
//! the host gave a few kilobytes, and even when the shim is idle. A call
//! takes a free workspace with one compare-and-swap and gives it back;
//! with none free (more threads inside the shim at once than workspaces),
//! it goes without: the call is still made, only not logged or matched.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sites::SiteCache;

/// One call's scratch space.
pub(crate) struct Workspace {
    pub path: [u8; 4096],
    pub other: [u8; 4096],
    pub line: [u8; 2048],
    pub sites: SiteCache,
}

const SLOTS: usize = 16;

struct Slot {
    busy: AtomicBool,
    space: UnsafeCell<Workspace>,
}

// SAFETY: a slot's space is used only by the one caller whose
// compare-and-swap set `busy`, until it clears it.
unsafe impl Sync for Slot {}

static POOL: [Slot; SLOTS] = [const {
    Slot {
        busy: AtomicBool::new(false),
        space: UnsafeCell::new(Workspace {
            path: [0; 4096],
            other: [0; 4096],
            line: [0; 2048],
            sites: SiteCache::EMPTY,
        }),
    }
}; SLOTS];

/// Runs `f` with a free workspace, or returns `None` when all are taken.
pub(crate) fn with_workspace<R>(f: impl FnOnce(&mut Workspace) -> R) -> Option<R> {
    for slot in &POOL {
        if slot
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: this caller set `busy`; no one else touches the space
            // until it is cleared below.
            let result = f(unsafe { &mut *slot.space.get() });
            slot.busy.store(false, Ordering::Release);
            return Some(result);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_are_exclusive_and_come_back() {
        let nested = with_workspace(|outer| {
            outer.line[0] = 1;
            with_workspace(|inner| {
                assert_eq!(inner.line[0], 0, "another slot");
                inner.line[0] = 0;
            })
        });
        assert_eq!(nested, Some(Some(())));
        // Taking every slot leaves none, then all return.
        fn take() -> usize {
            with_workspace(|_| 1 + take()).unwrap_or(0)
        }
        assert_eq!(take(), SLOTS);
        assert!(with_workspace(|_| ()).is_some());
    }
}
