//! The delay log (`DELAYSHIM_LOG`, one line per delay, for people) and the
//! record (`DELAYSHIM_RECORD`, one line per altered call, for replay and
//! minimizing). Both are formatted into the thread's own fixed buffers and
//! written through [`crate::output`].
//!
//! Record lines, one word per field, paths escaped by [`Line::word`]:
//!
//! ```text
//! process proc=LINEAGE pid=N ppid=N funcs=NAME,NAME... cmdline=ARG\x00ARG...
//! call proc=LINEAGE thread=T index=I fn=NAME before_ns=N after_ns=N [fault=ERRNO|short] site=OBJECT+0xOFFSET [cmd=CMD] [lock=TYPE] [path=PATH] [other=PATH] pid=N
//! ```
//!
//! `proc` is the process's lineage in hex (its place in the process tree,
//! the same in every run of the same program), `thread` its order of first
//! interception, `index` the call's index among that thread's decided calls.

use std::sync::OnceLock;

use crate::call::{resolve_other, resolve_path, Call};
use crate::decision::Decision;
use crate::faults::{errno_name, Fault};
use crate::output::{Line, Output};
use crate::table::FuncSet;

pub(crate) static LOG: Output = Output::new();
pub(crate) static RECORD: Output = Output::new();
/// The command line, read at load, for the record's process lines.
pub(crate) static COMMAND_LINE: OnceLock<Vec<u8>> = OnceLock::new();

pub(crate) fn wanted() -> bool {
    LOG.is_open() || RECORD.is_open()
}

/// Writes this process's line to the record (at load and in fork children).
/// Formatted in a workspace, not on the stack: a crash reporter forks
/// from a handler on a small alternate stack.
pub(crate) fn process_line(intercepted: FuncSet) {
    if RECORD.is_open() {
        let _ =
            crate::pool::with_workspace(|space| write_process_line(&mut space.path, intercepted));
    }
}

fn write_process_line(buf: &mut [u8], intercepted: FuncSet) {
    let mut line = Line::new(buf);
    // SAFETY: getpid and getppid cannot fail.
    let (pid, ppid) = unsafe { (libc::getpid(), libc::getppid()) };
    line.str("process proc=")
        .hex(crate::process::lineage())
        .str(" pid=")
        .i64(pid.into())
        .str(" ppid=")
        .i64(ppid.into())
        .str(" funcs=");
    // The functions that reached a decision: a replay must intercept the
    // same ones for call indices to line up.
    let mut first = true;
    for (index, info) in crate::table::FUNCS.iter().enumerate() {
        if intercepted & 1 << index != 0 {
            if !first {
                line.str(",");
            }
            first = false;
            line.str(info.name);
        }
    }
    line.str(" cmdline=");
    let command_line = COMMAND_LINE.get().map_or(&[][..], Vec::as_slice);
    line.word(command_line.strip_suffix(b"\0").unwrap_or(command_line));
    RECORD.write(line.finish());
}

fn fault_name(fault: Fault) -> &'static str {
    match fault {
        Fault::Errno(errno) => errno_name(errno),
        Fault::Short => "short",
    }
}

/// Logs and records what was decided for `call`.
pub(crate) fn decision(call: &Call, thread: u64, index: u64, decision: &Decision) {
    let _ = crate::pool::with_workspace(|space| {
        let path = resolve_path(call, &mut space.path).unwrap_or(0);
        let other = resolve_other(call, &mut space.other).unwrap_or(0);
        let (path, other) = (&space.path[..path], &space.other[..other]);
        let site = crate::sites::site(&mut space.sites, call.caller);
        let line = &mut space.line;
        if RECORD.is_open() {
            let mut text = Line::new(line);
            record_line(&mut text, call, thread, index, decision, site, path, other);
            RECORD.write(text.finish());
        }
        if LOG.is_open() {
            for (when, nanos) in [
                ("before", decision.before_nanos),
                ("after", decision.after_nanos),
            ] {
                if nanos > 0 {
                    let mut text = Line::new(line);
                    log_line(&mut text, call, site, path, other);
                    text.str(" when=")
                        .str(when)
                        .str(" delay_us=")
                        .u64(nanos.div_ceil(1000));
                    LOG.write(text.finish());
                }
            }
            if let Some(fault) = decision.fault {
                let mut text = Line::new(line);
                log_line(&mut text, call, site, path, other);
                text.str(" when=fault fault=").str(fault_name(fault));
                LOG.write(text.finish());
            }
        }
    });
}

fn command(line: &mut Line<'_>, call: &Call) {
    let (cmd, lock) = call.command_names();
    match (cmd, call.command_number()) {
        (Some(name), _) => {
            line.str(" cmd=").str(name);
        }
        (None, Some(number)) => {
            line.str(" cmd=").i64(number.into());
        }
        _ => {}
    }
    if let Some(lock) = lock {
        line.str(" lock=").str(lock);
    }
}

fn site_field(line: &mut Line<'_>, site: Option<crate::sites::Site<'_>>) {
    if let Some(site) = site {
        line.str(" site=")
            .word(site.object)
            .str("+")
            .hex(site.offset);
    }
}

#[allow(clippy::too_many_arguments)]
fn record_line(
    line: &mut Line<'_>,
    call: &Call,
    thread: u64,
    index: u64,
    decision: &Decision,
    site: Option<crate::sites::Site<'_>>,
    path: &[u8],
    other: &[u8],
) {
    line.str("call proc=")
        .hex(crate::process::lineage())
        .str(" thread=")
        .u64(thread)
        .str(" index=")
        .u64(index)
        .str(" fn=")
        .str(call.func.info().name)
        .str(" before_ns=")
        .u64(decision.before_nanos)
        .str(" after_ns=")
        .u64(decision.after_nanos);
    if let Some(fault) = decision.fault {
        line.str(" fault=").str(fault_name(fault));
    }
    site_field(line, site);
    command(line, call);
    if !path.is_empty() {
        line.str(" path=").word(path);
    }
    if !other.is_empty() {
        line.str(" other=").word(other);
    }
    // SAFETY: getpid cannot fail.
    line.str(" pid=").i64(unsafe { libc::getpid() }.into());
}

fn log_line(
    line: &mut Line<'_>,
    call: &Call,
    site: Option<crate::sites::Site<'_>>,
    path: &[u8],
    other: &[u8],
) {
    // SAFETY: getpid and gettid cannot fail.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    line.str("delayshim pid=")
        .i64(pid.into())
        .str(" tid=")
        .i64(tid.into())
        .str(" fn=")
        .str(call.func.info().name);
    if let Some(fd) = call.fd {
        line.str(" fd=").i64(fd.into());
    }
    if !path.is_empty() {
        line.str(" path=").word(path);
    }
    if !other.is_empty() {
        line.str(" other=").word(other);
    }
    command(line, call);
    site_field(line, site);
}
