//! `pct`: probabilistic concurrency testing (Burckhardt et al., ASPLOS
//! 2010) across the processes and threads of one run, through the tasks
//! section of the run's shared region.
//!
//! Every task (a thread of a process) that reaches a scheduling point (a
//! call that can reorder something between tasks: a lock taken or let go,
//! a write, a name changed) gets a random priority from its stream. At a
//! point a task waits while another eligible task has a higher priority,
//! as PCT runs only the highest-priority enabled task. Eligible means
//! waiting at a point itself, or past one less than `blocked_after` ago:
//! a task that has not reached a point for that long (computing, or
//! blocked in a call the shim does not hold, such as a `read` on a pipe)
//! counts as blocked, and never stalls the others. Every wait is bounded.
//! The run's `DELAYSHIM_DEPTH` - 1 change points are steps of the run (the
//! count of points all tasks passed), drawn from the tree's seed over
//! `DELAYSHIM_HORIZON` steps: the task that passes one drops below every
//! initial priority, as in PCT.
//!
//! Everything here is lock-free (atomics on 64-byte slots), bounded in
//! time and space, and async-signal-safe; every slot index is checked
//! against the section's validated size. A hostile region can change how
//! long a task waits (never past the bound), not what its calls do.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use delayshim_settings::region::tasks;

use delayshim_decide::hash::combine;

/// Steps over which change points fall when no horizon is set.
pub const DEFAULT_HORIZON: u64 = 1000;

/// A slot whose task was last seen this long ago may be taken over.
const STALE_NANOS: u64 = 1_000_000_000;

thread_local! {
    // Const-initialised, without a destructor: safe in signal handlers.
    /// This thread's slot and the task id it holds it for.
    static SLOT: Cell<(usize, u64)> = const { Cell::new((usize::MAX, 0)) };
}

/// A task's turn to wait for: its slot, and how long a task may go
/// without a point before it counts as blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    pub slot: u32,
    pub blocked_after_nanos: u64,
}

/// The tasks section, if the run has a region: its base and slot count.
fn section() -> Option<(*mut u8, usize)> {
    let (base, size) = crate::region::tasks()?;
    let slots = tasks::slots(size);
    (slots > 0).then_some((base, slots))
}

/// One atomic word of the section: `field` of `slot`, or of the header
/// when `slot` is `None`.
fn word(base: *mut u8, slot: Option<usize>, field: usize) -> &'static AtomicU64 {
    let at = match slot {
        Some(slot) => tasks::HEADER + slot * tasks::SLOT_SIZE + field,
        None => field,
    };
    // SAFETY: callers pass a slot below `section()`'s count and a field
    // inside a slot (or the header), so the word lies in the validated,
    // 64-byte aligned section, which stays mapped for the process's life.
    unsafe { AtomicU64::from_ptr(base.add(at).cast()) }
}

fn task_id() -> u64 {
    // SAFETY: getpid and gettid cannot fail.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    ((pid as u64) << 32 | tid as u32 as u64) + 1
}

/// At a scheduling point, in the decision: this task's slot (claimed on
/// its first point, with a priority from `draw`), the run's step counted,
/// and a change point applied. `None` without a region or a free slot.
pub(crate) fn point(
    seed: u64,
    depth: u32,
    horizon: u64,
    draw: impl FnOnce() -> u64,
) -> Option<usize> {
    let (base, slots) = section()?;
    let slot = own_slot(base, slots, draw)?;
    let step = word(base, None, tasks::STEP).fetch_add(1, Relaxed) + 1;
    if let Some(change) = change_point_at(seed, depth, horizon, step) {
        // Below every initial priority, and lower for later changes.
        word(base, Some(slot), tasks::PRIORITY).store(u64::from(depth) - change, Relaxed);
    }
    Some(slot)
}

/// Which change point (1 to depth - 1) falls on `step`, if any.
fn change_point_at(seed: u64, depth: u32, horizon: u64, step: u64) -> Option<u64> {
    (1..u64::from(depth)).find(|&i| 1 + combine(seed ^ 0x7063_7400, i) % horizon.max(1) == step)
}

/// This thread's slot, claiming one if it has none in this process.
fn own_slot(base: *mut u8, slots: usize, draw: impl FnOnce() -> u64) -> Option<usize> {
    let id = task_id();
    let (cached, cached_id) = SLOT.try_with(Cell::get).ok()?;
    if cached_id == id && cached < slots && word(base, Some(cached), tasks::ID).load(Relaxed) == id
    {
        return Some(cached);
    }
    let now = crate::delay::now_nanos();
    let free = (0..slots).find(|&slot| {
        let current = word(base, Some(slot), tasks::ID).load(Relaxed);
        let stale = current != 0
            && word(base, Some(slot), tasks::STATE).load(Relaxed) == tasks::RUNNING
            && now.saturating_sub(word(base, Some(slot), tasks::SEEN).load(Relaxed)) > STALE_NANOS;
        (current == 0 || stale)
            && word(base, Some(slot), tasks::ID)
                .compare_exchange(current, id, Relaxed, Relaxed)
                .is_ok()
    })?;
    // Initial priorities lie above every changed one.
    word(base, Some(free), tasks::PRIORITY).store(draw() | 1 << 63, Relaxed);
    word(base, Some(free), tasks::STATE).store(tasks::RUNNING, Relaxed);
    word(base, Some(free), tasks::SEEN).store(now, Relaxed);
    word(base, None, tasks::USED).fetch_max(free as u64 + 1, Relaxed);
    let _ = SLOT.try_with(|cell| cell.set((free, id)));
    Some(free)
}

/// Waits at a scheduling point until this task is the highest-priority
/// eligible one, or `bound_nanos` passed. Returns the time waited.
/// Outside the guard: signal handlers run meanwhile.
pub(crate) fn wait_for_turn(turn: Turn, bound_nanos: u64) -> u64 {
    let Some((base, slots)) = section() else {
        return 0;
    };
    let slot = turn.slot as usize;
    if slot >= slots {
        return 0;
    }
    let start = crate::delay::now_nanos();
    word(base, Some(slot), tasks::STATE).store(tasks::WAITING, Relaxed);
    word(base, Some(slot), tasks::SEEN).store(start, Relaxed);
    let poll = (turn.blocked_after_nanos / 8).clamp(20_000, 500_000);
    let mut now = start;
    while now - start < bound_nanos && !is_highest(base, slots, slot, now, turn) {
        crate::delay::sleep_nanos(poll.min(bound_nanos - (now - start)));
        now = crate::delay::now_nanos();
    }
    word(base, Some(slot), tasks::STATE).store(tasks::RUNNING, Relaxed);
    word(base, Some(slot), tasks::SEEN).store(crate::delay::now_nanos(), Relaxed);
    now - start
}

/// Whether no eligible task outranks the one in `slot` (ties go to the
/// lower slot).
fn is_highest(base: *mut u8, slots: usize, slot: usize, now: u64, turn: Turn) -> bool {
    let mine = word(base, Some(slot), tasks::PRIORITY).load(Relaxed);
    let used = (word(base, None, tasks::USED).load(Relaxed) as usize).min(slots);
    (0..used).filter(|&other| other != slot).all(|other| {
        if word(base, Some(other), tasks::ID).load(Relaxed) == 0 {
            return true;
        }
        let waiting = word(base, Some(other), tasks::STATE).load(Relaxed) == tasks::WAITING;
        let seen = word(base, Some(other), tasks::SEEN).load(Relaxed);
        let eligible = waiting || now.saturating_sub(seen) < turn.blocked_after_nanos;
        let theirs = word(base, Some(other), tasks::PRIORITY).load(Relaxed);
        !eligible || theirs < mine || (theirs == mine && other > slot)
    })
}

/// Gives this thread's slot back (the task exits).
pub(crate) fn leave() {
    let Some((base, slots)) = section() else {
        return;
    };
    let Ok((slot, id)) = SLOT.try_with(Cell::get) else {
        return;
    };
    if slot < slots {
        let _ = word(base, Some(slot), tasks::ID).compare_exchange(id, 0, Relaxed, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_points_are_the_seeds_and_within_the_horizon() {
        let steps: Vec<u64> = (1..=100)
            .filter(|&s| change_point_at(42, 4, 100, s).is_some())
            .collect();
        assert!(!steps.is_empty() && steps.len() <= 3, "{steps:?}");
        assert_eq!(
            steps,
            (1..=100)
                .filter(|&s| change_point_at(42, 4, 100, s).is_some())
                .collect::<Vec<_>>()
        );
        assert!((1..=1000).all(|s| change_point_at(42, 1, 100, s).is_none()));
        // Over many seeds, each step of the horizon is as likely.
        let hits = (0..10_000u64)
            .filter(|&seed| change_point_at(seed, 2, 4, 1).is_some())
            .count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }

    #[test]
    fn without_a_region_there_is_no_point_and_no_wait() {
        assert_eq!(point(1, 3, 100, || 7), None);
        let turn = Turn {
            slot: 0,
            blocked_after_nanos: 1,
        };
        assert_eq!(wait_for_turn(turn, 1_000_000), 0);
        leave();
    }
}
