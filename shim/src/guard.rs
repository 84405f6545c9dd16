//! The reentrancy guard: a thread inside the shim's own code passes every
//! intercepted call straight through.

use std::cell::Cell;

thread_local! {
    // Const-initialised and without a destructor, so reading it never
    // allocates or registers anything, even on a thread that is exiting.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as running shim code until dropped.
#[derive(Debug)]
pub(crate) struct Guard(());

impl Guard {
    /// Enters the shim, or `None` if this thread is already inside it.
    pub(crate) fn enter() -> Option<Guard> {
        INSIDE
            // `then`, not `then_some`: a Guard built and dropped on refusal
            // would clear the flag of the entry still in progress.
            .try_with(|inside| (!inside.replace(true)).then(|| Guard(())))
            .ok()
            .flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|inside| inside.set(false));
    }
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
}
