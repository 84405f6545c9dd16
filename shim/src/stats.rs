//! Per-process counts of intercepted calls, delays, delayed time and
//! faults, written as one JSON line when the process exits.
//!
//! Counting a call is the one thing the shim does to every intercepted
//! call when statistics are on, so it must cost next to nothing: each
//! thread owns a row of counters that only it writes (one unlocked
//! increment, no cache line shared with other threads), found from its
//! thread pointer. Threads beyond the rows share
//! the last one, with atomic adds. Rows outlive their threads, so nothing
//! is lost when a thread exits.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::output::{Line, Output};
use crate::table::{Func, FUNCS};

const N: usize = FUNCS.len();
/// Rows of call counters: one per thread (a power of two), and a shared one.
const ROWS: usize = 257;

#[repr(align(64))]
struct Row([AtomicU64; N]);

static CALLS: [Row; ROWS] = [const { Row([const { AtomicU64::new(0) }; N]) }; ROWS];
static DELAYED: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static DELAY_NANOS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static FAULTS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
/// Delays that can reorder something between processes.
static INJECTED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicBool = AtomicBool::new(false);

pub(crate) static OUTPUT: Output = Output::new();

/// Which thread owns each row: its thread pointer, or 0 while free. A row
/// whose thread exited passes to a new thread that gets the same thread
/// pointer; its counts stay, so nothing is lost.
static OWNERS: [AtomicUsize; ROWS - 1] = [const { AtomicUsize::new(0) }; ROWS - 1];

/// The thread pointer: one instruction, unique among live threads, and
/// no thread-local access (which costs a `__tls_get_addr` call in a
/// shared library).
#[inline(always)]
pub(crate) fn thread_pointer() -> usize {
    let pointer: usize;
    // SAFETY: reads the thread pointer register, which every thread has.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) pointer, options(nostack, readonly, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("mrs {}, tpidr_el0", out(reg) pointer, options(nostack, nomem, preserves_flags));
    }
    pointer
}

/// The two rows a thread may count in without a search: two hashes of its
/// thread pointer from one multiply (Fibonacci hashing's top bits, and
/// the bits below them). With two choices, a thread has neither only when
/// both are taken: for a process with 8 threads, about (7/256)^2, or 1
/// thread in 1,300, against 1 in 37 with one choice.
#[inline(always)]
fn home_rows(me: usize) -> (usize, usize) {
    const BITS: u32 = (ROWS - 1).trailing_zeros();
    let product = me.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (
        product >> (usize::BITS - BITS),
        (product >> (usize::BITS - 2 * BITS)) & (ROWS - 2),
    )
}

/// This thread's row, claiming a free one on its first counted call.
fn row() -> usize {
    let me = thread_pointer();
    let (home, other) = home_rows(me);
    for at in [home, other] {
        if OWNERS[at].load(Relaxed) == me {
            return at;
        }
    }
    claim_row(me, home, other)
}

/// Finds or claims this thread's row: one of its two home rows if either
/// is free, else the first free one after its home. Plain loads first, so
/// a thread that lives away from home finds its row without a locked
/// instruction. Rows are freed only in a fork child, where the one thread
/// keeps its own.
#[cold]
#[inline(never)]
fn claim_row(me: usize, home: usize, other: usize) -> usize {
    let free_or_mine = |at: usize| match OWNERS[at].compare_exchange(0, me, Relaxed, Relaxed) {
        Ok(_) => true,
        Err(owner) => owner == me,
    };
    for at in [home, other] {
        if free_or_mine(at) {
            return at;
        }
    }
    for step in 1..ROWS - 1 {
        let at = (home + step) % (ROWS - 1);
        let owner = OWNERS[at].load(Relaxed);
        if owner == me || (owner == 0 && free_or_mine(at)) {
            return at;
        }
    }
    ROWS - 1
}

/// Counts one call in a row this thread owns at one of its home places,
/// or returns false (a thread's first call, or a thread that lives away
/// from home) for [`count_call`] to do it. On the counted-only path of
/// every wrapper: one increment, and no call, so the wrapper
/// saves no registers and its calls to the real function stay jumps.
#[inline(always)]
pub(crate) fn count_call_at_home(func: Func) -> bool {
    let me = thread_pointer();
    let (home, other) = home_rows(me);
    let row = if OWNERS[home].load(Relaxed) == me {
        home
    } else if OWNERS[other].load(Relaxed) == me {
        other
    } else {
        return false;
    };
    add_one_in_own_row(&CALLS[row].0[func as usize]);
    true
}

/// Adds one to a counter only this thread writes, in a way a signal
/// handler that counts on the same thread cannot interleave with: one
/// unlocked `inc` on x86-64 (a load and a store could be split by the
/// handler, whose count the store would then undo), an atomic add on
/// aarch64, where no single plain instruction adds to memory.
#[inline(always)]
fn add_one_in_own_row(counter: &AtomicU64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a valid, aligned u64 that only atomic operations and this
    // thread's own increments touch.
    unsafe {
        std::arch::asm!("inc qword ptr [{}]", in(reg) counter.as_ptr(), options(nostack));
    }
    #[cfg(target_arch = "aarch64")]
    counter.fetch_add(1, Relaxed);
}

/// Counts one call, claiming a row for this thread first if it has none.
pub(crate) fn count_call(func: Func) {
    let row = row();
    let counter = &CALLS[row].0[func as usize];
    if row < ROWS - 1 {
        add_one_in_own_row(counter);
    } else {
        counter.fetch_add(1, Relaxed);
    }
}

pub(crate) fn count_delay(func: Func, nanos: u64, injected: bool) {
    DELAYED[func as usize].fetch_add(1, Relaxed);
    DELAY_NANOS[func as usize].fetch_add(nanos, Relaxed);
    if injected {
        INJECTED.fetch_add(1, Relaxed);
    }
}

pub(crate) fn count_fault(func: Func) {
    FAULTS[func as usize].fetch_add(1, Relaxed);
}

/// A fork child counts only its own calls, and writes its own line.
pub(crate) fn reset_in_child() {
    // Only the forking thread lives on in the child: every row but its own
    // is free again, and every count starts from zero.
    let me = thread_pointer();
    for (owner, row) in OWNERS.iter().zip(&CALLS) {
        if owner.load(Relaxed) != 0 {
            for counter in &row.0 {
                counter.store(0, Relaxed);
            }
        }
        if owner.load(Relaxed) != me {
            owner.store(0, Relaxed);
        }
    }
    for counter in &CALLS[ROWS - 1].0 {
        counter.store(0, Relaxed);
    }
    for counters in [&DELAYED, &DELAY_NANOS, &FAULTS] {
        for counter in counters {
            counter.store(0, Relaxed);
        }
    }
    INJECTED.store(0, Relaxed);
    WRITTEN.store(false, Relaxed);
}

fn calls_of(func: usize) -> u64 {
    CALLS.iter().map(|row| row.0[func].load(Relaxed)).sum()
}

fn object(line: &mut Line<'_>, name: &str, value: impl Fn(usize) -> u64) {
    line.str(",\"").str(name).str("\":{");
    let mut first = true;
    for (index, info) in FUNCS.iter().enumerate() {
        let count = value(index);
        if count == 0 {
            continue;
        }
        if !first {
            line.str(",");
        }
        first = false;
        line.str("\"").str(info.name).str("\":").u64(count);
    }
    line.str("}");
}

/// The head of every line: who this process is.
fn identity(line: &mut Line<'_>, event: &str) {
    // SAFETY: getpid and getppid cannot fail.
    let (pid, ppid) = unsafe { (libc::getpid(), libc::getppid()) };
    let mut exe = [0u8; 1024];
    // SAFETY: a NUL-terminated name and a writable buffer.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            exe.as_mut_ptr().cast(),
            exe.len(),
        )
    };
    let exe = &exe[..n.max(0) as usize];
    line.str("{\"event\":\"")
        .str(event)
        .str("\",\"pid\":")
        .i64(pid.into())
        .str(",\"ppid\":")
        .i64(ppid.into())
        .str(",\"exe\":\"")
        .json(exe)
        .str("\"");
}

/// Writes the line that says this process started, so that a reader can
/// tell processes that ended without their statistics (killed by a
/// signal, or a raw exit system call) from those that never ran.
pub(crate) fn write_start() {
    let mut buf = [0u8; 1280];
    let mut line = Line::new(&mut buf);
    identity(&mut line, "start");
    line.str("}");
    OUTPUT.write(line.finish());
}

/// The end line's buffer: at exit only one caller gets past `WRITTEN`.
struct ExitBuffer(std::cell::UnsafeCell<[u8; 16384]>);
// SAFETY: written only by the one thread that wins the WRITTEN swap.
unsafe impl Sync for ExitBuffer {}
static EXIT_BUFFER: ExitBuffer = ExitBuffer(std::cell::UnsafeCell::new([0; 16384]));

/// Appends this process's statistics line, once per process. No
/// allocation: it runs in `_exit`, which signal handlers call.
pub(crate) fn write_exit(seed: u64, strategy: &str) {
    if WRITTEN.swap(true, Relaxed) {
        return;
    }
    // SAFETY: the swap above lets exactly one caller per process here.
    let buf = unsafe { &mut *EXIT_BUFFER.0.get() };
    let mut line = Line::new(buf);
    identity(&mut line, "exit");
    line.str(",\"seed\":")
        .u64(seed)
        .str(",\"strategy\":\"")
        .str(strategy)
        .str("\"");
    object(&mut line, "calls", calls_of);
    object(&mut line, "delayed", |i| DELAYED[i].load(Relaxed));
    object(&mut line, "delay_us", |i| {
        DELAY_NANOS[i].load(Relaxed) / 1000
    });
    object(&mut line, "faults", |i| FAULTS[i].load(Relaxed));
    line.str(",\"injected\":")
        .u64(INJECTED.load(Relaxed))
        .str("}");
    OUTPUT.write(line.finish());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let _state = crate::PROCESS_STATE
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let before = calls_of(Func::fsync as usize);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..1000).for_each(|_| count_call(Func::fsync)));
            }
        });
        assert_eq!(calls_of(Func::fsync as usize) - before, 4000);
    }

    #[test]
    fn more_threads_than_rows_lose_no_count() {
        let _state = crate::PROCESS_STATE
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Every row free again, as in a fork child: rows outlive threads.
        reset_in_child();
        let before = calls_of(Func::msync as usize);
        let threads = ROWS + 44;
        let all_started = std::sync::Barrier::new(threads);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    // All alive at once: 300 thread pointers for 256 rows.
                    all_started.wait();
                    for _ in 0..100 {
                        if !count_call_at_home(Func::msync) {
                            count_call(Func::msync);
                        }
                    }
                });
            }
        });
        assert_eq!(
            calls_of(Func::msync as usize) - before,
            threads as u64 * 100
        );
    }

    #[test]
    fn the_home_row_counts_after_the_first_call_and_nothing_is_lost() {
        let _state = crate::PROCESS_STATE
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Every row free again, as in a fork child: rows outlive threads.
        reset_in_child();
        let before = calls_of(Func::syncfs as usize);
        let at_home = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        // As a wrapper does: the slow path counts what the
                        // home row does not.
                        let mut at_home = 0;
                        for _ in 0..1000 {
                            if count_call_at_home(Func::syncfs) {
                                at_home += 1;
                            } else {
                                count_call(Func::syncfs);
                            }
                        }
                        at_home
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<u32>>()
        });
        assert_eq!(calls_of(Func::syncfs as usize) - before, 8000);
        // A thread whose home row was free claims it on its first call
        // (the fast path refuses that one, unless an exited thread with the
        // same thread pointer left it claimed) and counts there from then on.
        assert!(at_home.iter().any(|&n| n >= 999), "{at_home:?}");
    }
}
