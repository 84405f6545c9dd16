//! One intercepted call, as the filters, the strategies and the output
//! see it: the function, what it touches, what it does to other processes.

use std::ffi::{c_char, c_int, c_ulong, CStr};

use crate::locks::{FcntlCall, LockKind};
use crate::table::{Family, Func};

/// A path argument, relative to `dirfd` (or the working directory).
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub dirfd: c_int,
    pub path: *const c_char,
}

/// What a call does beyond its family, where that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Plain,
    Fcntl(FcntlCall),
    Flock(c_int),
    Lockf(c_int),
    Open(c_int),
    Close,
}

/// The effect a call can have on other processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Acquire,
    Release,
    Write,
    Sync,
    /// Creating, renaming, linking or removing a name.
    Namespace,
    Read,
    Other,
}

impl Kind {
    /// Whether a delay here can reorder something between processes.
    pub fn reorders(self) -> bool {
        !matches!(self, Kind::Read | Kind::Other)
    }
}

/// One intercepted call.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub func: Func,
    /// The caller's return address.
    pub caller: usize,
    pub fd: Option<c_int>,
    pub place: Option<Place>,
    /// rename's and link's other path.
    pub other: Option<Place>,
    pub op: Op,
    /// The byte count of a transfer that a fault may make short.
    pub count: Option<usize>,
}

impl Call {
    fn new() -> Call {
        Call {
            func: Func::write,
            caller: 0,
            fd: None,
            place: None,
            other: None,
            op: Op::Plain,
            count: None,
        }
    }

    /// The transfer's byte count.
    pub fn with_count(self, count: usize) -> Call {
        Call {
            count: Some(count),
            ..self
        }
    }

    /// Whether a short-transfer fault can be made of this call: at least
    /// one byte must still move, so it takes two.
    pub fn can_be_short(&self) -> bool {
        self.count.is_some_and(|count| count >= 2)
    }

    pub fn fd(fd: c_int) -> Call {
        Call {
            fd: Some(fd),
            ..Call::new()
        }
    }

    pub fn path(path: *const c_char) -> Call {
        Call::at(libc::AT_FDCWD, path)
    }

    pub fn at(dirfd: c_int, path: *const c_char) -> Call {
        Call {
            place: Some(Place { dirfd, path }),
            ..Call::new()
        }
    }

    /// A call on memory (msync): no descriptor or path to check.
    pub fn memory() -> Call {
        Call::new()
    }

    pub fn and(self, dirfd: c_int, path: *const c_char) -> Call {
        Call {
            other: Some(Place { dirfd, path }),
            ..self
        }
    }

    pub fn fcntl(self, cmd: c_int, arg: c_ulong) -> Call {
        Call {
            op: Op::Fcntl(FcntlCall::new(cmd, arg)),
            ..self
        }
    }

    pub fn flock(self, operation: c_int) -> Call {
        Call {
            op: Op::Flock(operation),
            ..self
        }
    }

    pub fn lockf(self, cmd: c_int) -> Call {
        Call {
            op: Op::Lockf(cmd),
            ..self
        }
    }

    pub fn open(self, flags: c_int) -> Call {
        Call {
            op: Op::Open(flags),
            ..self
        }
    }

    pub fn close(self) -> Call {
        Call {
            op: Op::Close,
            ..self
        }
    }

    /// Which lock operation this is, for lock filtering.
    pub fn lock_kind(&self) -> Option<LockKind> {
        match self.op {
            Op::Fcntl(call) => Some(call.kind()),
            Op::Flock(operation) => Some(crate::locks::flock_kind(operation)),
            Op::Lockf(cmd) => Some(crate::locks::lockf_kind(cmd)),
            _ => None,
        }
    }

    pub fn kind(&self) -> Kind {
        let lock = |kind| match kind {
            LockKind::Acquire => Kind::Acquire,
            LockKind::Release => Kind::Release,
            LockKind::Other => Kind::Other,
        };
        match self.func.family() {
            Family::Write | Family::Pwrite | Family::Truncate => Kind::Write,
            Family::Fsync => Kind::Sync,
            Family::Fcntl | Family::Flock => lock(self.lock_kind().unwrap_or(LockKind::Other)),
            Family::Open => match self.op {
                Op::Open(flags) if flags & (libc::O_CREAT | libc::O_TRUNC) != 0 => Kind::Namespace,
                _ => Kind::Read,
            },
            Family::Close if crate::locks::close_may_release() => Kind::Release,
            Family::Close => Kind::Other,
            Family::Rename | Family::Unlink | Family::Link | Family::Mkdir => Kind::Namespace,
            Family::Read | Family::Pread => Kind::Read,
        }
    }

    /// Whether the real call may wait for another process (a blocking lock).
    pub fn blocks(&self) -> bool {
        match self.op {
            Op::Fcntl(call) => call.blocks(),
            Op::Flock(operation) => {
                operation & libc::LOCK_NB == 0
                    && crate::locks::flock_kind(operation) == LockKind::Acquire
            }
            Op::Lockf(cmd) => cmd == libc::F_LOCK,
            _ => false,
        }
    }

    /// The fcntl, flock or lockf command and lock type, for output.
    pub fn command_names(&self) -> (Option<&'static str>, Option<&'static str>) {
        match self.op {
            Op::Fcntl(call) => (call.cmd_name(), call.lock_name()),
            Op::Flock(operation) => (Some(crate::locks::flock_name(operation)), None),
            Op::Lockf(cmd) => (Some(crate::locks::lockf_name(cmd)), None),
            _ => (None, None),
        }
    }

    /// The raw command number, for a command without a name.
    pub fn command_number(&self) -> Option<c_int> {
        match self.op {
            Op::Fcntl(call) => Some(call.cmd),
            _ => None,
        }
    }

    /// Whether the kernel can read the call's path arguments: a bad pointer
    /// (EFAULT) or an unterminated name (ENAMETOOLONG) fails the real call,
    /// and the shim must not read them itself.
    pub fn paths_readable(&self) -> bool {
        [self.place, self.other].into_iter().flatten().all(|place| {
            if place.path.is_null() {
                return false;
            }
            let _errno = crate::errno::SavedErrno::save();
            // SAFETY: the kernel checks the pointer; stat is plain old data.
            let mut stat: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above: the kernel only writes the stat.
            let found = unsafe {
                libc::fstatat(
                    place.dirfd,
                    place.path,
                    &mut stat,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            found == 0 || !matches!(crate::errno::get(), libc::EFAULT | libc::ENAMETOOLONG)
        })
    }

    /// Whether the call is on a regular file or directory (or creates,
    /// renames or removes a name), not a pipe, socket, terminal or device.
    pub fn on_file(&self) -> bool {
        if let Some(fd) = self.fd {
            return fd_is_file(fd);
        }
        match self.place {
            Some(place) => place_is_file(place),
            None => true,
        }
    }
}

fn is_file_mode(mode: libc::mode_t) -> bool {
    matches!(
        mode & libc::S_IFMT,
        libc::S_IFREG | libc::S_IFDIR | libc::S_IFLNK
    )
}

fn fd_is_file(fd: c_int) -> bool {
    // SAFETY: stat is plain old data; fstat is not interposed.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel only writes the stat.
    unsafe { libc::fstat(fd, &mut stat) == 0 && is_file_mode(stat.st_mode) }
}

fn place_is_file(place: Place) -> bool {
    if place.path.is_null() {
        return false;
    }
    // SAFETY: as above; a path that does not exist yet will be a file.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let found = unsafe {
        libc::fstatat(
            place.dirfd,
            place.path,
            &mut stat,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    found != 0 || is_file_mode(stat.st_mode)
}

/// Writes the absolute path that `call` touches into `buf`; returns its
/// length (cut at the buffer's size), or `None` when there is none.
pub fn resolve_path(call: &Call, buf: &mut [u8]) -> Option<usize> {
    if let Some(fd) = call.fd {
        return fd_path(fd, buf);
    }
    place_path(call.place?, buf)
}

/// The other path of rename and link, absolute.
pub fn resolve_other(call: &Call, buf: &mut [u8]) -> Option<usize> {
    place_path(call.other?, buf)
}

fn fd_path(fd: c_int, buf: &mut [u8]) -> Option<usize> {
    // "/proc/self/fd/" and up to ten digits and a NUL.
    let mut link = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
    let mut digits = [0u8; 10];
    let (mut value, mut n) = (u32::try_from(fd).ok()?, 0);
    loop {
        digits[n] = b'0' + (value % 10) as u8;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for (i, digit) in digits[..n].iter().rev().enumerate() {
        link[14 + i] = *digit;
    }
    // SAFETY: a NUL-terminated name and a writable buffer.
    let got = unsafe { libc::readlink(link.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
    (got >= 0).then_some(got as usize)
}

fn place_path(place: Place, buf: &mut [u8]) -> Option<usize> {
    if place.path.is_null() {
        return None;
    }
    // SAFETY: the caller's path argument, NUL-terminated as the C function requires.
    let path = unsafe { CStr::from_ptr(place.path) }.to_bytes();
    if path.first() == Some(&b'/') {
        let n = path.len().min(buf.len());
        buf[..n].copy_from_slice(&path[..n]);
        return Some(n);
    }
    let mut len = if place.dirfd == libc::AT_FDCWD {
        // The raw system call: glibc's getcwd falls back to code that
        // allocates when the directory's name is longer than a page.
        // SAFETY: a writable buffer of its length.
        let got = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
        if got <= 0 {
            return None;
        }
        buf.iter().position(|&b| b == 0)?
    } else {
        fd_path(place.dirfd, buf)?
    };
    for &b in std::iter::once(&b'/').chain(path) {
        if len == buf.len() {
            break;
        }
        buf[len] = b;
        len += 1;
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_family_and_operation() {
        let call = |func, call: Call| Call { func, ..call };
        assert_eq!(call(Func::write, Call::fd(1)).kind(), Kind::Write);
        assert_eq!(call(Func::fsync, Call::fd(1)).kind(), Kind::Sync);
        assert_eq!(
            call(Func::open, Call::path(c"/x".as_ptr()).open(libc::O_RDONLY)).kind(),
            Kind::Read
        );
        assert_eq!(
            call(Func::open, Call::path(c"/x".as_ptr()).open(libc::O_CREAT)).kind(),
            Kind::Namespace
        );
        assert_eq!(
            call(Func::flock, Call::fd(3).flock(libc::LOCK_UN)).kind(),
            Kind::Release
        );
        let blocking = call(Func::flock, Call::fd(3).flock(libc::LOCK_EX));
        assert!(blocking.blocks() && blocking.kind() == Kind::Acquire);
        assert!(!call(
            Func::flock,
            Call::fd(3).flock(libc::LOCK_EX | libc::LOCK_NB)
        )
        .blocks());
        assert_eq!(
            call(Func::rename, Call::path(c"a".as_ptr())).kind(),
            Kind::Namespace
        );
        assert!(!Kind::Read.reorders() && Kind::Release.reorders());
    }

    #[test]
    fn files_and_paths() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsRawFd;
        assert!(Call::fd(file.as_raw_fd()).on_file());
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(!Call::fd(null.as_raw_fd()).on_file());
        assert!(!Call::path(c"/dev/null".as_ptr()).on_file());
        assert!(Call::path(c"/no/such/file/yet".as_ptr()).on_file());
        assert!(Call::path(c"/no/such/file/yet".as_ptr()).paths_readable());
        assert!(!Call::path(8 as *const std::ffi::c_char).paths_readable());
        assert!(!Call::path(std::ptr::null()).paths_readable());
        let mut buf = [0u8; 4096];
        let n = resolve_path(&Call::path(c"rel/x".as_ptr()), &mut buf).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(&buf[..n], format!("{}/rel/x", cwd.display()).as_bytes());
        let n = resolve_path(&Call::fd(file.as_raw_fd()), &mut buf).unwrap();
        assert!(buf[..n].ends_with(b"/status"));
        // A descriptor numbered 1000 and up has its path too.
        // SAFETY: duplicates a descriptor the test owns.
        let high = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 1500) };
        assert!(high >= 1500);
        let n = resolve_path(&Call::fd(high), &mut buf).unwrap();
        assert!(buf[..n].ends_with(b"/status"));
        // SAFETY: closes the duplicate made above.
        unsafe { libc::close(high) };
        let mut small = [0u8; 4];
        assert_eq!(
            resolve_path(&Call::path(c"/abcdef".as_ptr()), &mut small),
            Some(4)
        );
    }
}
