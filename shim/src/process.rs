//! Per-process and per-thread random streams, and what `fork()` changes.
//!
//! A thread's stream is seeded from the run's seed, the process's position
//! in the fork tree (its lineage) and the thread's order of first
//! interception, so a single-threaded program draws the same delays for
//! the same seed, and no two forked workers draw the same ones.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};

use rand::rngs::SmallRng;
use rand::SeedableRng;

static SEED: AtomicU64 = AtomicU64::new(0);
static LINEAGE: AtomicU64 = AtomicU64::new(0);
/// Bumped in every fork child, so each thread notices it must reseed.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);
static NEXT_CHILD: AtomicU64 = AtomicU64::new(0);
/// The process the shim's state belongs to: set at load and in each fork
/// child. A vfork child shares the parent's memory but not its pid.
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

struct Stream {
    generation: u64,
    rng: Option<SmallRng>,
}

thread_local! {
    static STREAM: RefCell<Stream> = const { RefCell::new(Stream { generation: 0, rng: None }) };
    /// Which child of its process the fork in progress on this thread makes.
    static FORK_TICKET: Cell<u64> = const { Cell::new(0) };
}

/// SplitMix64's finalizer: a bijective mix of 64 bits.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn combine(a: u64, b: u64) -> u64 {
    mix(a ^ mix(b))
}

/// Sets the run's seed and the root lineage. An exec'd program starts a
/// new root, told apart from its parent by its command line.
pub(crate) fn init(seed: u64, command_line: &[u8]) {
    OWNER_PID.store(current_pid(), Relaxed);
    SEED.store(seed, Relaxed);
    let lineage = command_line.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    LINEAGE.store(lineage, Relaxed);
}

pub(crate) fn seed() -> u64 {
    SEED.load(Relaxed)
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

/// Runs `f` with this thread's random stream, seeding it on first use and
/// again after a fork.
pub(crate) fn with_rng<R>(f: impl FnOnce(&mut SmallRng) -> R) -> Option<R> {
    STREAM
        .try_with(|stream| {
            let mut stream = stream.try_borrow_mut().ok()?;
            let generation = GENERATION.load(Relaxed);
            if stream.rng.is_none() || stream.generation != generation {
                let ordinal = NEXT_THREAD.fetch_add(1, Relaxed);
                let seed = combine(combine(SEED.load(Relaxed), LINEAGE.load(Relaxed)), ordinal);
                stream.rng = Some(SmallRng::seed_from_u64(seed));
                stream.generation = generation;
            }
            Some(f(stream.rng.as_mut()?))
        })
        .ok()
        .flatten()
}

/// `pthread_atfork` prepare handler: takes a ticket for the coming child.
pub(crate) extern "C" fn before_fork() {
    let _ = FORK_TICKET.try_with(|ticket| ticket.set(NEXT_CHILD.fetch_add(1, Relaxed)));
}

/// `pthread_atfork` child handler: a new lineage, fresh thread numbering
/// and streams, and statistics of its own. Only atomics: the child of a
/// multi-threaded parent may not take locks.
pub(crate) extern "C" fn in_fork_child() {
    OWNER_PID.store(current_pid(), Relaxed);
    let ticket = FORK_TICKET.try_with(Cell::get).unwrap_or(u64::MAX);
    LINEAGE.store(combine(LINEAGE.load(Relaxed), ticket), Relaxed);
    NEXT_CHILD.store(0, Relaxed);
    NEXT_THREAD.store(0, Relaxed);
    GENERATION.fetch_add(1, Relaxed);
    crate::stats::reset_in_child();
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    fn draws() -> Vec<u64> {
        with_rng(|rng| (0..4).map(|_| rng.random::<u64>()).collect()).unwrap()
    }

    // These tests share the process-wide statics, so they run as one.
    #[test]
    fn streams_follow_seed_thread_order_and_fork() {
        init(42, b"prog\0arg\0");
        let first = std::thread::spawn(draws).join().unwrap();
        let second = std::thread::spawn(draws).join().unwrap();
        assert_ne!(first, second, "threads draw from different streams");

        // Same seed, same command line, same thread order: same draws.
        init(42, b"prog\0arg\0");
        NEXT_THREAD.store(0, Relaxed);
        assert_eq!(std::thread::spawn(draws).join().unwrap(), first);

        // A different command line is a different root.
        init(42, b"other\0");
        NEXT_THREAD.store(0, Relaxed);
        assert_ne!(std::thread::spawn(draws).join().unwrap(), first);

        // Two simulated fork children of one parent differ from each other
        // and from the parent.
        init(42, b"prog\0arg\0");
        let children: Vec<Vec<u64>> = (0..2)
            .map(|_| {
                // The parent's state, which a real fork leaves untouched.
                let lineage = LINEAGE.load(Relaxed);
                before_fork();
                let next_child = NEXT_CHILD.load(Relaxed);
                in_fork_child();
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
