//! Output: the per-delay log, statistics lines and the shim's own messages,
//! each written with one `write(2)` so processes sharing a file (O_APPEND)
//! never interleave within a line.

use std::ffi::CString;
use std::fmt::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

use crate::config::Sink;
use crate::families::{Func, FUNCS};
use crate::fcntl::FcntlCall;

/// The log's descriptor, opened once at load and shared with fork children.
static LOG_FD: AtomicI32 = AtomicI32::new(-1);

/// Descriptors below this are left to the host program.
const HIGH_FD: libc::c_int = 700;

fn open_append(path: &std::path::Path) -> libc::c_int {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return -1;
    };
    // SAFETY: a valid path; open is not interposed.
    unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        )
    }
}

/// Opens the delay log. The descriptor is moved high, out of the way of
/// programs that assume the lowest free numbers.
pub(crate) fn open_log(sink: &Sink) -> Result<(), String> {
    let fd = match sink {
        Sink::Stderr => libc::STDERR_FILENO,
        Sink::File(path) => {
            let fd = open_append(path);
            if fd < 0 {
                return Err(format!(
                    "delayshim: cannot open DELAYSHIM_LOG file {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: fd is ours; F_DUPFD_CLOEXEC through the real fcntl.
            let high = crate::real::fcntl_dupfd_cloexec(fd, HIGH_FD);
            if high >= 0 {
                unsafe { libc::close(fd) };
                high
            } else {
                fd
            }
        }
    };
    LOG_FD.store(fd, Relaxed);
    Ok(())
}

fn write_all(fd: libc::c_int, bytes: &[u8]) {
    let _errno = crate::errno::SavedErrno::save();
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: a valid buffer; write is not interposed.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        rest = &rest[n as usize..];
    }
}

/// Appends `bytes` to `sink`: opened for this one write, so a fork child
/// or a program that closed descriptors still reaches the file.
pub(crate) fn append(sink: &Sink, bytes: &[u8]) {
    match sink {
        Sink::Stderr => write_all(libc::STDERR_FILENO, bytes),
        Sink::File(path) => {
            let fd = open_append(path);
            if fd >= 0 {
                write_all(fd, bytes);
                // SAFETY: our own descriptor.
                unsafe { libc::close(fd) };
            } else {
                stderr_line(&format!(
                    "delayshim: cannot open {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
}

/// Writes one line of the shim's own to standard error.
pub(crate) fn stderr_line(message: &str) {
    let mut line = LineBuf::new();
    let _ = writeln!(line, "{message}");
    write_all(libc::STDERR_FILENO, line.as_bytes());
}

/// A line formatted on the stack: the log is written from inside
/// intercepted calls, where allocating is best avoided.
struct LineBuf {
    bytes: [u8; 1024],
    len: usize,
}

impl LineBuf {
    fn new() -> LineBuf {
        LineBuf {
            bytes: [0; 1024],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep the last byte for the newline of an over-long line.
        let room = self.bytes.len() - 1 - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.bytes[self.len] = b'\n';
            self.len += 1;
            return Err(fmt::Error);
        }
        Ok(())
    }
}

/// One delay as it is injected.
#[derive(Debug)]
pub(crate) struct DelayRecord<'a> {
    pub func: Func,
    pub fd: libc::c_int,
    pub path: Option<&'a [u8]>,
    pub fcntl: Option<FcntlCall>,
    pub after: bool,
    pub nanos: u64,
}

pub(crate) fn log_enabled() -> bool {
    LOG_FD.load(Relaxed) >= 0
}

/// Writes `record` to the delay log, if there is one.
pub(crate) fn log_delay(record: &DelayRecord<'_>) {
    let fd = LOG_FD.load(Relaxed);
    if fd < 0 {
        return;
    }
    let mut line = LineBuf::new();
    // SAFETY: getpid and gettid cannot fail.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    let _ = write!(
        line,
        "delayshim pid={pid} tid={tid} fn={} fd={}",
        FUNCS[record.func as usize].name, record.fd
    );
    if let Some(path) = record.path {
        let _ = write!(line, " path={}", String::from_utf8_lossy(path));
    }
    if let Some(call) = record.fcntl {
        match call.cmd_name() {
            Some(name) => {
                let _ = write!(line, " cmd={name}");
            }
            None => {
                let _ = write!(line, " cmd={}", call.cmd);
            }
        }
        if let Some(lock) = call.lock_name() {
            let _ = write!(line, " lock={lock}");
        }
    }
    let when = if record.after { "after" } else { "before" };
    let _ = writeln!(
        line,
        " when={when} delay_us={}",
        (record.nanos + 500) / 1000
    );
    write_all(fd, line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_but_end_in_a_newline() {
        let mut line = LineBuf::new();
        assert!(write!(line, "{}", "x".repeat(5000)).is_err());
        assert_eq!(line.as_bytes().len(), 1024);
        assert_eq!(line.as_bytes().last(), Some(&b'\n'));
    }
}
