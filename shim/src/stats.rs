//! Per-process counts of intercepted calls, delays, delayed time and
//! faults, written as one JSON line when the process exits.
//!
//! Counting a call is the one thing the shim does to every intercepted
//! call when statistics are on, so it must cost next to nothing: each
//! thread owns a row of counters that only it writes (a plain load and
//! store, no locked instruction and no cache line shared with other
//! threads). Threads beyond the rows share the last one, with atomic adds.
//! Rows outlive their threads, so nothing is lost when a thread exits.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::output::{Line, Output};
use crate::table::{Func, FUNCS};

const N: usize = FUNCS.len();
/// Rows of call counters: one per thread, the last shared.
const ROWS: usize = 256;

#[repr(align(64))]
struct Row([AtomicU64; N]);

static CALLS: [Row; ROWS] = [const { Row([const { AtomicU64::new(0) }; N]) }; ROWS];
static NEXT_ROW: AtomicUsize = AtomicUsize::new(0);
static DELAYED: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static DELAY_NANOS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static FAULTS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
/// Delays that can reorder something between processes.
static INJECTED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicBool = AtomicBool::new(false);

pub(crate) static OUTPUT: Output = Output::new();

thread_local! {
    /// This thread's row plus one; 0 until its first counted call.
    static ROW: Cell<usize> = const { Cell::new(0) };
}

#[inline]
pub(crate) fn count_call(func: Func) {
    let row = ROW
        .try_with(|cell| {
            let row = cell.get();
            if row != 0 {
                return row - 1;
            }
            let row = NEXT_ROW.fetch_add(1, Relaxed).min(ROWS - 1);
            cell.set(row + 1);
            row
        })
        .unwrap_or(ROWS - 1);
    let counter = &CALLS[row].0[func as usize];
    if row < ROWS - 1 {
        counter.store(counter.load(Relaxed) + 1, Relaxed);
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
    let used = NEXT_ROW.load(Relaxed).min(ROWS);
    for row in CALLS.iter().take(used.max(1)).chain(CALLS.last()) {
        for counter in &row.0 {
            counter.store(0, Relaxed);
        }
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
        let before = calls_of(Func::fsync as usize);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..1000).for_each(|_| count_call(Func::fsync)));
            }
        });
        assert_eq!(calls_of(Func::fsync as usize) - before, 4000);
    }
}
