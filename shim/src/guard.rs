//! The reentrancy guard: a thread inside the shim's own code passes every
//! intercepted call straight through.
//!
//! While it is held, the thread's signals are blocked: a handler that
//! `siglongjmp`s out of the shim's decision (the lock-with-timeout idiom,
//! a 1 ms SIGALRM) would otherwise leave the guard, the thread's stream and
//! a workspace held for good, and the thread would never be delayed again.
//! A signal that arrives meanwhile is delivered when the guard drops, a
//! few microseconds later. The sleeps and the real call are outside it.

use std::cell::Cell;

thread_local! {
    // Const-initialised and without a destructor, so reading it never
    // allocates or registers anything, even on a thread that is exiting.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// The kernel's 8-byte signal set of every signal but those a fault of
/// the shim's own would raise: a blocked synchronous SIGSEGV kills the
/// process instead of reaching the program's handler.
const BLOCKED: u64 = !((1 << (libc::SIGSEGV - 1))
    | (1 << (libc::SIGBUS - 1))
    | (1 << (libc::SIGFPE - 1))
    | (1 << (libc::SIGILL - 1))
    | (1 << (libc::SIGTRAP - 1)));

/// Marks the current thread as running shim code until dropped.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The signal mask to restore.
    mask: u64,
}

impl Guard {
    /// Enters the shim, or `None` if this thread is already inside it.
    pub(crate) fn enter() -> Option<Guard> {
        let mask = block_signals();
        let entered = INSIDE
            // `then`, not `then_some`: a Guard built and dropped on refusal
            // would clear the flag of the entry still in progress.
            .try_with(|inside| (!inside.replace(true)).then_some(()))
            .ok()
            .flatten();
        match entered {
            Some(()) => Some(Guard { mask }),
            None => {
                restore_signals(mask);
                None
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|inside| inside.set(false));
        restore_signals(self.mask);
    }
}

/// Blocks [`BLOCKED`] in this thread; returns the mask before.
fn block_signals() -> u64 {
    let _errno = crate::errno::SavedErrno::save();
    let mut old = 0u64;
    // SAFETY: 8-byte kernel signal sets, ours and the old one.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &BLOCKED as *const u64,
            &mut old as *mut u64,
            8usize,
        )
    };
    old
}

fn restore_signals(mask: u64) {
    let _errno = crate::errno::SavedErrno::save();
    // SAFETY: restores a mask read by block_signals.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_entry_is_refused_until_the_outer_guard_drops() {
        let outer = Guard::enter().expect("first entry");
        assert!(Guard::enter().is_none());
        assert!(Guard::enter().is_none(), "a refusal leaves the flag set");
        drop(outer);
        assert!(Guard::enter().is_some());
    }

    #[test]
    fn guards_are_per_thread() {
        let _outer = Guard::enter().expect("first entry");
        std::thread::spawn(|| assert!(Guard::enter().is_some()))
            .join()
            .unwrap();
    }

    #[test]
    fn signals_wait_while_the_guard_is_held() {
        let before = block_signals();
        restore_signals(before);
        let guard = Guard::enter().expect("entry");
        let inside = block_signals();
        restore_signals(inside);
        assert_eq!(
            inside & (1 << (libc::SIGALRM - 1)),
            1 << (libc::SIGALRM - 1)
        );
        assert_eq!(
            inside & (1 << (libc::SIGSEGV - 1)),
            before & (1 << (libc::SIGSEGV - 1))
        );
        drop(guard);
        assert_eq!(block_signals(), before, "the mask comes back");
        restore_signals(before);
    }
}
