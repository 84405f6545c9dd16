//! The shim's one way out: lines formatted into fixed buffers and written
//! with one raw `write(2)` each, to files opened at load. Everything here
//! is async-signal-safe: no allocation, no locks, no stdio, and no call
//! through the shim's own interposed names (the raw system call is used,
//! so the shim never delays or counts itself).
//!
//! The host may close the shim's descriptor and reuse its number for a
//! file of its own (`closefrom`, a low `ulimit -n`, `dup2` onto it): each
//! write first checks that the descriptor still refers to the device and
//! inode the shim opened, and otherwise reopens the path for that write.

use std::ffi::{c_int, CStr, CString};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// Flags of every file the shim writes: never through a symlink, never
/// inherited by an exec'd program, appended in one piece.
const OPEN_FLAGS: c_int =
    libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW;
const OPEN_MODE: libc::mode_t = 0o600;

/// Descriptors below this are left to the host program, when its
/// descriptor limit allows.
const HIGH_FD: c_int = 700;

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

/// The device and inode `fd` refers to.
fn identity(fd: c_int) -> Option<(u64, u64)> {
    let _errno = crate::errno::SavedErrno::save();
    // SAFETY: stat is plain old data; fstat is not interposed.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut stat) } == 0).then_some((stat.st_dev, stat.st_ino))
}

/// One of the shim's output files, or standard error.
#[derive(Debug)]
pub(crate) struct Output {
    /// The file's path, set at load; `None` means standard error.
    path: OnceLock<Option<CString>>,
    fd: AtomicI32,
    dev: AtomicU64,
    ino: AtomicU64,
}

impl Output {
    pub(crate) const fn new() -> Output {
        Output {
            path: OnceLock::new(),
            fd: AtomicI32::new(-1),
            dev: AtomicU64::new(0),
            ino: AtomicU64::new(0),
        }
    }

    /// Opens the output at load, checking it can be written. `None` is
    /// standard error.
    pub(crate) fn open(&self, path: Option<&std::path::Path>) -> Result<(), String> {
        let Some(path) = path else {
            // Standard error as it is now, through a duplicate of our own:
            // a host that closes 2 and opens a file there never gets our
            // lines, and a reused duplicate is caught like any descriptor.
            let _ = self.path.set(None);
            let fd = move_high_copy(libc::STDERR_FILENO);
            let Some((dev, ino)) = identity(fd) else {
                return Ok(());
            };
            self.dev.store(dev, Relaxed);
            self.ino.store(ino, Relaxed);
            self.fd.store(fd, Relaxed);
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
        // SAFETY: stat is plain old data; fstat is not interposed.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut stat) } != 0
            || stat.st_mode & libc::S_IFMT != libc::S_IFREG
        {
            raw_close(fd);
            return Err(format!(
                "cannot use {}: not a regular file (the word stderr means standard error)",
                path.display()
            ));
        }
        let (dev, ino) = (stat.st_dev, stat.st_ino);
        let fd = move_high(fd);
        self.dev.store(dev, Relaxed);
        self.ino.store(ino, Relaxed);
        self.fd.store(fd, Relaxed);
        let _ = self.path.set(Some(cpath));
        Ok(())
    }

    pub(crate) fn is_open(&self) -> bool {
        self.fd.load(Relaxed) >= 0
    }

    /// Appends one line. Async-signal-safe.
    pub(crate) fn write(&self, bytes: &[u8]) {
        let fd = self.fd.load(Relaxed);
        if fd < 0 {
            return;
        }
        let ours = (self.dev.load(Relaxed), self.ino.load(Relaxed));
        if identity(fd) == Some(ours) {
            write_all(fd, bytes);
            return;
        }
        let Some(Some(path)) = self.path.get() else {
            // Our copy of standard error was closed or reused: say nothing.
            return;
        };
        // The host closed or reused our descriptor: write through a new
        // one, and close it again so the host's numbering stays its own.
        let fresh = raw_open(path, OPEN_FLAGS, OPEN_MODE);
        if fresh >= 0 {
            write_all(fresh, bytes);
            raw_close(fresh);
        }
    }
}

/// A high close-on-exec copy of `fd`, which stays open.
/// -1 when it cannot be made.
fn move_high_copy(fd: c_int) -> c_int {
    // SAFETY: the raw fcntl on a descriptor we only duplicate.
    unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, high_fd_floor()) as c_int }
}

fn high_fd_floor() -> c_int {
    // SAFETY: rlimit is plain old data.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(c_int::MAX as u64) as c_int
    } else {
        1024
    };
    HIGH_FD.min(soft - soft / 4).max(3)
}

/// Moves `fd` to a high number, out of the way of hosts that assume the
/// lowest free ones. The number may still be reused: [`Output::write`]
/// checks it.
fn move_high(fd: c_int) -> c_int {
    let high = move_high_copy(fd);
    if high >= 0 {
        raw_close(fd);
        high
    } else {
        fd
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
    write_all(libc::STDERR_FILENO, line.finish());
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
    fn writes_follow_the_file_not_the_number() {
        let dir = std::env::temp_dir().join(format!("output-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ours = dir.join("ours");
        let output = Output::new();
        output.open(Some(&ours)).unwrap();
        output.write(b"one\n");
        // The host closes our number and opens its own file there.
        let fd = output.fd.load(Relaxed);
        raw_close(fd);
        let host = dir.join("host");
        let host_fd = raw_open(
            &CString::new(host.to_str().unwrap()).unwrap(),
            OPEN_FLAGS,
            0o600,
        );
        // SAFETY: moves the host's file onto our old number.
        unsafe { libc::syscall(libc::SYS_dup3, host_fd, fd, 0) };
        output.write(b"two\n");
        assert_eq!(std::fs::read(&ours).unwrap(), b"one\ntwo\n");
        assert_eq!(std::fs::read(&host).unwrap(), b"");
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
