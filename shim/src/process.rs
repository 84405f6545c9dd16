//! The process's place in its process tree, its threads' random streams,
//! and what `fork()` and `exec()` change.
//!
//! A thread's stream is seeded from the tree's seed, the process's lineage
//! (its place in the tree) and the thread's order of first interception, so
//! a single-threaded program draws the same delays for the same seed, and
//! no two processes of a tree draw the same ones: fork children take a
//! ticket from their parent, and a program exec'd by a process inherits,
//! through `DELAYSHIM_TREE`, its parent's lineage combined with a ticket of
//! its own (see [`crate::exec`]).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};

use crate::strategy::ThreadState;
use delayshim_decide::hash::combine;

static SEED: AtomicU64 = AtomicU64::new(0);
static LINEAGE: AtomicU64 = AtomicU64::new(0);
/// Bumped in every fork child, so each thread notices it must reseed.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);
static NEXT_CHILD: AtomicU64 = AtomicU64::new(0);
/// The process the shim's state belongs to: set at load and in each fork
/// child. A vfork child shares the parent's memory but not its pid.
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

thread_local! {
    // Const-initialised and without destructors: reading them never
    // allocates or registers anything, even in a signal handler.
    static THREAD: RefCell<Option<ThreadState>> = const { RefCell::new(None) };
    /// Which child of its process the fork in progress on this thread makes.
    static FORK_TICKET: Cell<u64> = const { Cell::new(0) };
}

/// Sets the tree's seed and this process's lineage: the one its parent
/// passed on at exec, or the root's. Not the command line: a seed must
/// reproduce a program run with other arguments (a new temporary
/// directory), and tickets already tell siblings apart.
pub(crate) fn init(seed: u64, lineage: Option<u64>) {
    OWNER_PID.store(current_pid(), Relaxed);
    SEED.store(seed, Relaxed);
    LINEAGE.store(lineage.unwrap_or(ROOT_LINEAGE), Relaxed);
}

/// The lineage of a process that no shimmed parent started.
const ROOT_LINEAGE: u64 = 0x5eed;

pub(crate) fn seed() -> u64 {
    SEED.load(Relaxed)
}

pub(crate) fn lineage() -> u64 {
    LINEAGE.load(Relaxed)
}

fn current_pid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// False in a vfork child (or a raw clone), whose writes to the shim's
/// counters and flags would land in its parent's memory.
pub(crate) fn owns_state() -> bool {
    OWNER_PID.load(Relaxed) == current_pid()
}

/// The lineage of the next process this one starts (a fork child, or a
/// program it executes or spawns): each takes a ticket, in order.
pub(crate) fn next_child_lineage() -> u64 {
    combine(LINEAGE.load(Relaxed), NEXT_CHILD.fetch_add(1, Relaxed))
}

/// Runs `f` with this thread's state, creating it on first use and again
/// after a fork. `None` when the thread is exiting or already inside.
pub(crate) fn with_thread<R>(
    config: &crate::config::Config,
    f: impl FnOnce(&mut ThreadState) -> R,
) -> Option<R> {
    THREAD
        .try_with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            let generation = GENERATION.load(Relaxed);
            if slot.as_ref().is_none_or(|t| t.generation != generation) {
                let ordinal = NEXT_THREAD.fetch_add(1, Relaxed);
                let seed = SEED.load(Relaxed);
                let process = combine(seed, LINEAGE.load(Relaxed));
                *slot = Some(ThreadState::new(config, seed, process, ordinal, generation));
            }
            Some(f(slot.as_mut()?))
        })
        .ok()
        .flatten()
}

/// Takes a ticket for the child a fork in progress on this thread makes
/// (the fork handlers in [`crate::init`] call these two).
pub(crate) fn take_fork_ticket() {
    let ticket = NEXT_CHILD.fetch_add(1, Relaxed);
    let _ = FORK_TICKET.try_with(|cell| cell.set(ticket));
}

/// In a fork child: a new lineage from the ticket, fresh thread numbering
/// and streams. Only atomics: the child of a multi-threaded parent may not
/// take locks.
pub(crate) fn become_fork_child() {
    OWNER_PID.store(current_pid(), Relaxed);
    let ticket = FORK_TICKET.try_with(Cell::get).unwrap_or(u64::MAX);
    LINEAGE.store(combine(LINEAGE.load(Relaxed), ticket), Relaxed);
    NEXT_CHILD.store(0, Relaxed);
    NEXT_THREAD.store(0, Relaxed);
    GENERATION.fetch_add(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;
    use crate::config::Config;

    fn draws() -> Vec<u64> {
        let config = Config::default();
        with_thread(&config, |t| (0..4).map(|_| t.rng.random::<u64>()).collect()).unwrap()
    }

    // These tests share the process-wide statics, so they run as one.
    #[test]
    fn streams_follow_seed_thread_order_fork_and_exec() {
        let _state = crate::PROCESS_STATE
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        init(42, None);
        let first = std::thread::spawn(draws).join().unwrap();
        let second = std::thread::spawn(draws).join().unwrap();
        assert_ne!(first, second, "threads draw from different streams");

        // Same seed, same thread order: same draws.
        init(42, None);
        NEXT_THREAD.store(0, Relaxed);
        assert_eq!(std::thread::spawn(draws).join().unwrap(), first);
        init(43, None);
        NEXT_THREAD.store(0, Relaxed);
        assert_ne!(std::thread::spawn(draws).join().unwrap(), first);

        // Two programs exec'd with the same command line by one parent
        // differ: each had its own ticket.
        init(42, None);
        let (a, b) = (next_child_lineage(), next_child_lineage());
        assert_ne!(a, b);
        init(42, Some(a));
        NEXT_THREAD.store(0, Relaxed);
        let from_a = std::thread::spawn(draws).join().unwrap();
        init(42, Some(b));
        NEXT_THREAD.store(0, Relaxed);
        assert_ne!(std::thread::spawn(draws).join().unwrap(), from_a);

        // Two simulated fork children of one parent differ from each other
        // and from the parent.
        init(42, None);
        let children: Vec<Vec<u64>> = (0..2)
            .map(|_| {
                // The parent's state, which a real fork leaves untouched.
                let lineage = LINEAGE.load(Relaxed);
                take_fork_ticket();
                let next_child = NEXT_CHILD.load(Relaxed);
                become_fork_child();
                let child = draws();
                LINEAGE.store(lineage, Relaxed);
                NEXT_CHILD.store(next_child, Relaxed);
                child
            })
            .collect();
        assert_ne!(children[0], children[1]);
        assert_ne!(children[0], first);
    }
}
