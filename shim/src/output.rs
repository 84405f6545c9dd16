//! The shim's one way out: lines formatted into fixed buffers and written
//! with raw system calls, never through the shim's own interposed names
//! (so the shim never delays or counts itself). Everything here is
//! async-signal-safe: no allocation, no locks, no stdio.
//!
//! The shim holds no descriptor of its own between lines: a file output is
//! opened, appended to and closed for each line, and standard error is the
//! host's descriptor 2, written only while it still is the file it was at
//! load. A held descriptor would count against a low `ulimit -n`, and a
//! private copy of standard error would keep a caller's pipe open in every
//! forked child that sent its own output elsewhere. The cost is an open and
//! a close per line, on calls that are being delayed anyway.

use std::ffi::{c_int, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// Flags of every file the shim writes: never through a symlink, never
/// inherited by an exec'd program, appended in one piece.
const OPEN_FLAGS: c_int =
    libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW;
const OPEN_MODE: libc::mode_t = 0o600;

/// Set when the program installs a seccomp filter of its own: from then on
/// the shim makes no system call of its own, which the filter may punish.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Stops all of the shim's output in this process (and its children).
pub(crate) fn go_quiet() {
    QUIET.store(true, Relaxed);
}

pub(crate) fn is_quiet() -> bool {
    QUIET.load(Relaxed)
}

pub(crate) fn raw_open(path: &CStr, flags: c_int, mode: libc::mode_t) -> c_int {
    // SAFETY: a NUL-terminated path; the raw system call bypasses the shim.
    unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            libc::c_uint::from(mode),
        ) as c_int
    }
}

pub(crate) fn raw_close(fd: c_int) {
    // SAFETY: closes a descriptor of the shim's own.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

pub(crate) fn raw_read(fd: c_int, buf: &mut [u8]) -> isize {
    // SAFETY: a writable buffer of its length.
    unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) as isize }
}

/// Writes all of `bytes` with as few system calls as the kernel allows
/// (one for a regular file), retrying on EINTR. Leaves errno as it was.
pub(crate) fn write_all(fd: c_int, bytes: &[u8]) {
    let _errno = crate::errno::SavedErrno::save();
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: a readable buffer of its length.
        let n = unsafe { libc::syscall(libc::SYS_write, fd, rest.as_ptr(), rest.len()) };
        if n < 0 && crate::errno::get() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        rest = rest.get(n as usize..).unwrap_or_default();
    }
}

/// The kernel's signal set holding only SIGPIPE.
const SIGPIPE_SET: u64 = 1 << (libc::SIGPIPE - 1);
const KERNEL_SIGSET_BYTES: usize = 8;

fn pending_sigpipe() -> bool {
    let mut pending = 0u64;
    // SAFETY: the kernel writes one 8-byte signal set.
    let ok = unsafe {
        libc::syscall(
            libc::SYS_rt_sigpending,
            &mut pending as *mut u64,
            KERNEL_SIGSET_BYTES,
        )
    } == 0;
    ok && pending & SIGPIPE_SET != 0
}

/// [`write_all`] to a pipe or socket whose reader may be gone: the shim's
/// own line must never kill its host with SIGPIPE. SIGPIPE is blocked in
/// this thread for the write, one that the write raised is taken back, and
/// the mask is restored (the git and curl way).
pub(crate) fn write_all_without_sigpipe(fd: c_int, bytes: &[u8]) {
    let _errno = crate::errno::SavedErrno::save();
    let mut old = 0u64;
    // SAFETY: 8-byte kernel signal sets, ours and the old one.
    let blocked = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &SIGPIPE_SET as *const u64,
            &mut old as *mut u64,
            KERNEL_SIGSET_BYTES,
        )
    } == 0;
    if !blocked {
        return;
    }
    let already_pending = pending_sigpipe();
    write_all(fd, bytes);
    if !already_pending && pending_sigpipe() {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: takes back the one pending SIGPIPE our write raised.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &SIGPIPE_SET as *const u64,
                std::ptr::null_mut::<libc::siginfo_t>(),
                &zero as *const libc::timespec,
                KERNEL_SIGSET_BYTES,
            )
        };
    }
    // SAFETY: restores the mask read above.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            KERNEL_SIGSET_BYTES,
        )
    };
}

/// The device and inode `fd` refers to.
fn identity(fd: c_int) -> Option<(u64, u64)> {
    let _errno = crate::errno::SavedErrno::save();
    // SAFETY: stat is plain old data; the raw fstat is not interposed.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel only writes the stat.
    (unsafe { libc::syscall(libc::SYS_fstat, fd, &mut stat as *mut libc::stat) } == 0)
        .then_some((stat.st_dev, stat.st_ino))
}

/// One of the shim's output files, or standard error.
#[derive(Debug)]
pub(crate) struct Output {
    /// The file's path, set at load; `None` means standard error.
    path: OnceLock<Option<CString>>,
    /// Standard error's device and inode at load.
    dev: AtomicU64,
    ino: AtomicU64,
}

impl Output {
    pub(crate) const fn new() -> Output {
        Output {
            path: OnceLock::new(),
            dev: AtomicU64::new(0),
            ino: AtomicU64::new(0),
        }
    }

    /// Checks at load that the output can be written. `None` is standard
    /// error.
    pub(crate) fn open(&self, path: Option<&std::path::Path>) -> Result<(), String> {
        let Some(path) = path else {
            // Standard error as it is now: a host that later points 2 at a
            // file of its own never gets our lines there.
            if let Some((dev, ino)) = identity(libc::STDERR_FILENO) {
                self.dev.store(dev, Relaxed);
                self.ino.store(ino, Relaxed);
                let _ = self.path.set(None);
            }
            return Ok(());
        };
        use std::os::unix::ffi::OsStrExt;
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("{}: a path with a NUL byte", path.display()))?;
        let fd = raw_open(&cpath, OPEN_FLAGS, OPEN_MODE);
        if fd < 0 {
            let error = std::io::Error::last_os_error();
            let why = if error.raw_os_error() == Some(libc::ELOOP) {
                "it is a symbolic link, which the shim does not follow".to_owned()
            } else {
                error.to_string()
            };
            return Err(format!("cannot open {}: {why}", path.display()));
        }
        // SAFETY: stat is plain old data; the raw fstat is not interposed.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel only writes the stat.
        let regular = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut stat as *mut libc::stat) }
            == 0
            && stat.st_mode & libc::S_IFMT == libc::S_IFREG;
        raw_close(fd);
        if !regular {
            return Err(format!(
                "cannot use {}: not a regular file (the word stderr means standard error)",
                path.display()
            ));
        }
        let _ = self.path.set(Some(cpath));
        Ok(())
    }

    pub(crate) fn is_open(&self) -> bool {
        self.path.get().is_some()
    }

    /// Appends one line. Async-signal-safe.
    pub(crate) fn write(&self, bytes: &[u8]) {
        if is_quiet() {
            return;
        }
        match self.path.get() {
            None => {}
            Some(None) => {
                let ours = (self.dev.load(Relaxed), self.ino.load(Relaxed));
                if identity(libc::STDERR_FILENO) == Some(ours) {
                    write_all_without_sigpipe(libc::STDERR_FILENO, bytes);
                }
            }
            Some(Some(path)) => {
                let fd = raw_open(path, OPEN_FLAGS, OPEN_MODE);
                if fd >= 0 {
                    write_all(fd, bytes);
                    raw_close(fd);
                }
            }
        }
    }
}

/// Formats a line into a fixed buffer. What does not fit is cut, and the
/// line ends with ` ...truncated` and a newline.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    bytes: &'a mut [u8],
    len: usize,
    truncated: bool,
}

const TRUNCATED: &[u8] = b" ...truncated\n";

impl<'a> Line<'a> {
    pub(crate) fn new(bytes: &'a mut [u8]) -> Line<'a> {
        Line {
            bytes,
            len: 0,
            truncated: false,
        }
    }

    fn room(&self) -> usize {
        self.bytes.len().saturating_sub(TRUNCATED.len() + self.len)
    }

    pub(crate) fn bytes(&mut self, data: &[u8]) -> &mut Self {
        let take = data.len().min(self.room());
        if let Some(dest) = self.bytes.get_mut(self.len..self.len + take) {
            dest.copy_from_slice(&data[..take]);
            self.len += take;
        }
        if take < data.len() {
            self.truncated = true;
        }
        self
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub(crate) fn u64(&mut self, mut value: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.bytes(&digits[at..])
    }

    pub(crate) fn i64(&mut self, value: i64) -> &mut Self {
        if value < 0 {
            self.str("-");
        }
        self.u64(value.unsigned_abs())
    }

    pub(crate) fn hex(&mut self, value: u64) -> &mut Self {
        self.str("0x").hex_digits(value)
    }

    /// Hexadecimal without the `0x`.
    pub(crate) fn hex_digits(&mut self, value: u64) -> &mut Self {
        let mut digits = [0u8; 16];
        for (i, digit) in digits.iter_mut().enumerate() {
            let nibble = (value >> (60 - 4 * i)) & 0xf;
            *digit = b"0123456789abcdef"[nibble as usize];
        }
        let first = digits.iter().position(|&d| d != b'0').unwrap_or(15);
        self.bytes(&digits[first..])
    }

    /// A path or name in a log or record line: one word, whatever its
    /// bytes. Spaces, `\`, control and non-ASCII bytes become `\xNN`, so a
    /// newline in a file name cannot forge a line.
    pub(crate) fn word(&mut self, data: &[u8]) -> &mut Self {
        for &b in data {
            if b.is_ascii_graphic() && b != b'\\' {
                self.bytes(&[b]);
            } else {
                self.bytes(&[b'\\', b'x', hex_digit(b >> 4), hex_digit(b & 0xf)]);
            }
        }
        self
    }

    /// A JSON string's contents.
    pub(crate) fn json(&mut self, data: &[u8]) -> &mut Self {
        for &b in data {
            match b {
                b'"' => self.bytes(b"\\\""),
                b'\\' => self.bytes(b"\\\\"),
                0x20..=0x7e => self.bytes(&[b]),
                // Bytes outside printable ASCII, as \u00NN: a path's bytes
                // need not be UTF-8, and a line must stay valid JSON.
                _ => self.bytes(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    hex_digit(b >> 4),
                    hex_digit(b & 0xf),
                ]),
            };
        }
        self
    }

    #[cfg(test)]
    pub(crate) fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The finished line, ending in a newline.
    pub(crate) fn finish(&mut self) -> &[u8] {
        if self.truncated {
            self.str(""); // keep len within room
            let end = (self.len + TRUNCATED.len()).min(self.bytes.len());
            let marker = &TRUNCATED[..end - self.len];
            self.bytes[self.len..end].copy_from_slice(marker);
            self.len = end;
        } else if self.len < self.bytes.len() {
            self.bytes[self.len] = b'\n';
            self.len += 1;
        }
        &self.bytes[..self.len]
    }
}

fn hex_digit(nibble: u8) -> u8 {
    b"0123456789abcdef"[usize::from(nibble & 0xf)]
}

/// Writes one line of the shim's own to standard error (at load only:
/// it formats with `format!` callers).
pub(crate) fn stderr_line(message: &str) {
    let mut buf = [0u8; 1024];
    let mut line = Line::new(&mut buf);
    line.str(message);
    write_all_without_sigpipe(libc::STDERR_FILENO, line.finish());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_marked_and_end_in_a_newline() {
        let mut buf = [0u8; 64];
        let mut line = Line::new(&mut buf);
        line.str(&"x".repeat(5000));
        assert!(line.is_truncated());
        let out = line.finish().to_vec();
        assert!(out.len() <= 64);
        assert!(
            out.ends_with(b" ...truncated\n"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn numbers_and_escapes() {
        let mut buf = [0u8; 256];
        let mut line = Line::new(&mut buf);
        line.u64(0)
            .str(" ")
            .u64(u64::MAX)
            .str(" ")
            .i64(-42)
            .str(" ")
            .hex(0x1f)
            .str(" ");
        line.word(b"a b\nc\\").str(" ").json(b"q\"\\\n\xff");
        assert_eq!(
            line.finish(),
            b"0 18446744073709551615 -42 0x1f a\\x20b\\x0ac\\x5c q\\\"\\\\\\u000a\\u00ff\n"
        );
    }

    #[test]
    fn a_file_output_holds_no_descriptor_between_lines() {
        let dir = std::env::temp_dir().join(format!("output-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ours = dir.join("ours");
        let output = Output::new();
        output.open(Some(&ours)).unwrap();
        output.write(b"one\n");
        output.write(b"two\n");
        assert_eq!(std::fs::read(&ours).unwrap(), b"one\ntwo\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&ours).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let link = dir.join("link");
        std::os::unix::fs::symlink(&ours, &link).unwrap();
        assert!(Output::new()
            .open(Some(&link))
            .unwrap_err()
            .contains("symbolic link"));
        assert!(Output::new().open(Some(&dir)).is_err());
        assert!(Output::new()
            .open(Some(std::path::Path::new("/dev/full")))
            .unwrap_err()
            .contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
