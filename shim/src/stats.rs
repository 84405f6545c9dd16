//! Per-process counts of intercepted calls, delays and delayed time,
//! written as one JSON line when the process exits.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::config::Sink;
use crate::families::{Func, FUNCS};

const N: usize = FUNCS.len();

static CALLS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static DELAYED: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static DELAY_NANOS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static WRITTEN: AtomicBool = AtomicBool::new(false);

#[inline]
pub(crate) fn count_call(func: Func) {
    CALLS[func as usize].fetch_add(1, Relaxed);
}

pub(crate) fn count_delay(func: Func, nanos: u64) {
    DELAYED[func as usize].fetch_add(1, Relaxed);
    DELAY_NANOS[func as usize].fetch_add(nanos, Relaxed);
}

/// A fork child counts only its own calls, and writes its own line.
pub(crate) fn reset_in_child() {
    for counters in [&CALLS, &DELAYED, &DELAY_NANOS] {
        for counter in counters {
            counter.store(0, Relaxed);
        }
    }
    WRITTEN.store(false, Relaxed);
}

fn json_object(counters: &[AtomicU64; N], scale: u64) -> String {
    let mut object = String::from("{");
    for (info, counter) in FUNCS.iter().zip(counters) {
        let value = counter.load(Relaxed) / scale;
        if counter.load(Relaxed) > 0 {
            let comma = if object.len() > 1 { "," } else { "" };
            let _ = write!(object, "{comma}\"{}\":{value}", info.name);
        }
    }
    object.push('}');
    object
}

/// The statistics line for this process.
pub fn line(seed: u64) -> String {
    // SAFETY: getpid and getppid cannot fail.
    let (pid, ppid) = unsafe { (libc::getpid(), libc::getppid()) };
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let exe = exe.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "{{\"pid\":{pid},\"ppid\":{ppid},\"exe\":\"{exe}\",\"seed\":{seed},\"calls\":{},\"delayed\":{},\"delay_us\":{}}}\n",
        json_object(&CALLS, 1),
        json_object(&DELAYED, 1),
        json_object(&DELAY_NANOS, 1000),
    )
}

/// Appends this process's line to `sink`, once per process.
pub(crate) fn write(sink: &Sink, seed: u64) {
    if WRITTEN.swap(true, Relaxed) {
        return;
    }
    crate::log::append(sink, line(seed).as_bytes());
}
