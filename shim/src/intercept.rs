//! What every interposed function does around its real call, in one
//! direction: count it, filter it, decide, output, then sleep, call (or
//! fail) and sleep.

use std::ffi::{c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::call::{resolve_path, Call};
use crate::config::{Config, Fds};
use crate::decision::Decision;
use crate::delay::{sleep_interruptible, sleep_nanos};
use crate::faults::Fault;
use crate::guard::Guard;
use crate::table::{Errors, Family, Func, FuncSet, FUNCS};

/// Bit of each [`ACTIVE`] word that asks for calls to be counted.
const COUNT_CALLS: u64 = 1 << 63;
/// Bit of each [`ACTIVE`] word that asks for calls to be tracked into the
/// run's region ([`crate::track`]).
const TRACK_CALLS: u64 = 1 << 62;
/// Functions per [`ACTIVE`] word (the top bits are [`COUNT_CALLS`] and
/// [`TRACK_CALLS`]).
const PER_WORD: usize = 62;
const WORDS: usize = FUNCS.len().div_ceil(PER_WORD);

/// The functions that get delays or faults, plus [`COUNT_CALLS`] in every
/// word. Zero until the shim is configured: every call before that is a
/// pass-through.
static ACTIVE: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

static CONFIG: OnceLock<Config> = OnceLock::new();

#[inline(always)]
const fn slot(func: Func) -> (usize, u64) {
    let index = func as usize;
    (index / PER_WORD, 1 << (index % PER_WORD))
}

/// Installs the configuration and turns interception on.
pub(crate) fn activate(config: Config) {
    let intercepted: FuncSet = crate::replay::funcs().unwrap_or(config.intercepted_funcs());
    let count = if config.stats.is_some() {
        COUNT_CALLS
    } else {
        0
    } | if crate::track::active() {
        TRACK_CALLS
    } else {
        0
    };
    if CONFIG.set(config).is_ok() {
        for (word, active) in ACTIVE.iter().enumerate() {
            let bits = (intercepted >> (word * PER_WORD)) as u64 & !(COUNT_CALLS | TRACK_CALLS);
            active.store(bits | count, Relaxed);
        }
    }
}

/// Passes every call through from now on, uncounted.
pub(crate) fn deactivate() {
    for active in &ACTIVE {
        active.store(0, Relaxed);
    }
}

/// The functions that get delays or faults: a replay's recorded ones, or
/// the configuration's.
pub(crate) fn intercepted_funcs() -> FuncSet {
    config().map_or(0, |c| {
        crate::replay::funcs().unwrap_or(c.intercepted_funcs())
    })
}

pub(crate) fn config() -> Option<&'static Config> {
    CONFIG.get()
}

/// Whether a call to `func` goes straight to the real function: neither
/// delayed, counted nor tracked. One load and one test.
#[inline(always)]
pub fn passes_through(func: Func) -> bool {
    let (word, bit) = slot(func);
    ACTIVE[word].load(Relaxed) & (bit | COUNT_CALLS | TRACK_CALLS) == 0
}

/// Whether a call to `func` is only counted, never delayed, failed or
/// tracked.
#[inline(always)]
pub fn counts_only(func: Func) -> bool {
    let (word, bit) = slot(func);
    ACTIVE[word].load(Relaxed) & (bit | TRACK_CALLS) == 0
}

/// How to make the real call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Real,
    /// Transfer only part of the count (a short-write fault).
    Short,
    /// The non-blocking form of a blocking lock call.
    NonBlocking,
}

impl How {
    /// The count to pass for a call made this way.
    pub fn count(self, count: usize) -> usize {
        match self {
            How::Short if count > 1 => count / 2,
            _ => count,
        }
    }
}

/// What was decided for one call.
struct Prepared {
    decision: Decision,
    blocks: bool,
    /// A `pct` wait, counted and recorded once its length is known: the
    /// call, its thread and index, and whether it can reorder.
    pending: Option<(Call, u64, u64, bool)>,
}

/// Calls `call` (the real function), counting it and delaying or failing
/// it when `func` is selected. The real call's result and errno reach the
/// caller untouched.
#[inline(never)]
pub fn intercept<R>(
    func: Func,
    caller: usize,
    describe: impl FnOnce() -> Call,
    call: impl FnOnce(How) -> R,
) -> R
where
    R: Copy + PartialEq + From<i8> + TryFrom<c_int>,
{
    let (word, bit) = slot(func);
    let active = ACTIVE[word].load(Relaxed);
    if active & COUNT_CALLS != 0 {
        crate::stats::count_call(func);
    }
    if active & bit == 0 {
        return call(How::Real);
    }
    // A vfork child, or one made by a raw clone or _Fork, shares or copied
    // its parent's state without the fork handlers: its calls pass.
    if !crate::process::owns_state() {
        return call(How::Real);
    }
    // The guard covers the decision only: a signal handler's calls during
    // the sleeps below are decided as any others, and a handler that jumps
    // out of a sleep leaves nothing held.
    let prepared = {
        let Some(_guard) = Guard::enter() else {
            return call(How::Real);
        };
        let _errno = crate::errno::SavedErrno::save();
        // A panic in the shim's own code must not unwind into C: the call
        // then goes through unaltered.
        catch_unwind(AssertUnwindSafe(|| prepare(func, caller, describe))).unwrap_or(None)
    };
    let Some(Prepared {
        mut decision,
        blocks,
        pending,
    }) = prepared
    else {
        return call(How::Real);
    };
    // For the conflicts timeline: this call was delayed or failed.
    crate::track::note_delayed();
    if let (Some(turn), Some(pending)) = (decision.turn, pending) {
        let waited = crate::pct::wait_for_turn(turn, decision.before_nanos);
        decision.before_nanos = 0;
        after_wait(func, pending, waited);
    }
    if decision.before_nanos > 0 {
        if blocks {
            if !sleep_interruptible(decision.before_nanos) {
                // A signal whose handler lacks SA_RESTART arrived while the
                // call would have been waiting. Natively it would then fail
                // with EINTR, unless it had not had to wait at all.
                let result = call(How::NonBlocking);
                let would_block = result == R::from(-1)
                    && matches!(crate::errno::get(), libc::EAGAIN | libc::EACCES);
                return if would_block {
                    fail(func, libc::EINTR)
                } else {
                    result
                };
            }
        } else {
            sleep_nanos(decision.before_nanos);
        }
    }
    let result = match decision.fault {
        // Linux releases the descriptor whatever close reports: a program
        // that rightly does not retry must not leak it, nor its locks.
        Some(Fault::Errno(errno)) if func.family() == Family::Close => {
            let _ = call(How::Real);
            fail(func, errno)
        }
        Some(Fault::Errno(errno)) => fail(func, errno),
        Some(Fault::Short) => call(How::Short),
        None => call(How::Real),
    };
    if decision.after_nanos > 0 {
        sleep_nanos(decision.after_nanos);
    }
    result
}

/// What a failing call returns, with errno set as the function does.
fn fail<R: From<i8> + TryFrom<c_int>>(func: Func, errno: c_int) -> R {
    match func.info().errors {
        Errors::Errno => {
            crate::errno::set(errno);
            R::from(-1)
        }
        Errors::Value => R::try_from(errno).unwrap_or_else(|_| R::from(-1)),
    }
}

/// Filters the call, decides, and says what was decided.
fn prepare(func: Func, caller: usize, describe: impl FnOnce() -> Call) -> Option<Prepared> {
    let config = config()?;
    let call = Call {
        func,
        caller,
        ..describe()
    };
    if let Some(kind) = call.lock_kind() {
        if kind == crate::locks::LockKind::Acquire {
            // From now on a close may release a lock: a release point.
            crate::locks::took_a_lock();
        }
        if !config.locks.admits(kind) {
            return None;
        }
    }
    let on_file = call.on_file();
    if config.fds == Fds::Files && !on_file {
        return None;
    }
    if !call.paths_readable() {
        // The real call fails with EFAULT or ENAMETOOLONG; the shim must not
        // read the path itself.
        return None;
    }
    if !config.paths.is_empty() && !path_matches(&call, &config.paths) {
        return None;
    }
    let kind = call.kind();
    let visible = kind.reorders() || matches!(func.family(), Family::Read | Family::Pread);
    let delayed =
        config.enabled && config.funcs & func.bit() != 0 && (visible || !config.effects_only);
    let (thread, index, decision) = crate::process::with_thread(config, |thread| {
        let index = thread.calls;
        let decision = if crate::replay::active() {
            thread.calls += 1;
            crate::replay::lookup(crate::process::lineage(), thread.ordinal, index)
        } else {
            crate::strategy::decide(config, thread, &call, delayed, || site_key(&call))
        };
        (thread.ordinal, index, decision)
    })?;
    let mut decision = decision;
    if decision.fault == Some(crate::faults::Fault::Errno(libc::EINTR))
        && matches!(func.family(), Family::Fcntl | Family::Flock)
        && !call.blocks()
    {
        // Only a call that waits can be interrupted: Linux never fails an
        // unlock or a non-blocking lock with EINTR.
        decision.fault = None;
    }
    if decision.fault == Some(Fault::Short) && !call.can_be_short() {
        // A transfer of 0 or 1 byte has no shorter form that still moves
        // something: it is made whole, and not counted as a fault.
        decision.fault = None;
    }
    if decision.is_nothing() {
        return None;
    }
    let injected = on_file && kind.reorders();
    if decision.turn.is_some() {
        return Some(Prepared {
            decision,
            blocks: call.blocks(),
            pending: Some((call, thread, index, injected)),
        });
    }
    for nanos in [decision.before_nanos, decision.after_nanos] {
        if nanos > 0 {
            crate::stats::count_delay(func, nanos, injected);
        }
    }
    if decision.fault.is_some() {
        crate::stats::count_fault(func);
    }
    if crate::record::wanted() {
        crate::record::decision(&call, thread, index, &decision);
    }
    Some(Prepared {
        decision,
        blocks: call.blocks(),
        pending: None,
    })
}

/// After a `pct` wait: counts and records it as the delay it was, so a
/// replay sleeps as long.
fn after_wait(func: Func, (call, thread, index, injected): (Call, u64, u64, bool), waited: u64) {
    let Some(_guard) = Guard::enter() else {
        return;
    };
    if waited == 0 {
        return;
    }
    if let Some(config) = config() {
        crate::process::with_thread(config, |thread| thread.charge(waited));
    }
    crate::stats::count_delay(func, waited, injected);
    if crate::record::wanted() {
        let decision = Decision {
            before_nanos: waited,
            ..Decision::default()
        };
        crate::record::decision(&call, thread, index, &decision);
    }
}

/// A call site's key: the function, the caller's place in its object
/// file, and the lock command, so that F_SETLK and F_UNLCK from one line
/// of code are one site each.
fn site_key(call: &Call) -> u64 {
    let place = crate::pool::with_workspace(|space| {
        crate::sites::site(&mut space.sites, call.caller).map_or(0, |s| s.key())
    })
    .unwrap_or(0);
    let (cmd, lock) = call.command_names();
    let command = delayshim_decide::hash::hash_bytes(cmd.unwrap_or("").as_bytes())
        ^ delayshim_decide::hash::hash_bytes(lock.unwrap_or("").as_bytes()).rotate_left(17);
    delayshim_decide::hash::combine(
        delayshim_decide::hash::combine(place, call.func as u64),
        command,
    )
}

fn path_matches(call: &Call, globs: &[CString]) -> bool {
    crate::pool::with_workspace(|space| {
        let matches = |path: &[u8]| {
            globs
                .iter()
                .any(|glob| delayshim_decide::glob::glob_match(glob.to_bytes(), path))
        };
        let first = resolve_path(call, &mut space.path).is_some_and(|n| matches(&space.path[..n]));
        first
            || crate::call::resolve_other(call, &mut space.other)
                .is_some_and(|n| matches(&space.other[..n]))
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cover_every_function_without_the_count_bit() {
        for index in 0..FUNCS.len() {
            // SAFETY: Func is a u8 enum with one variant per FUNCS entry.
            let (word, bit) = slot(unsafe { std::mem::transmute::<u8, Func>(index as u8) });
            assert!(word < WORDS && bit & (COUNT_CALLS | TRACK_CALLS) == 0);
        }
        assert_eq!(How::Short.count(10), 5);
        assert_eq!(How::Short.count(1), 1);
        assert_eq!(How::Real.count(10), 10);
    }
}
