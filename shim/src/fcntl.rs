//! Telling fcntl lock acquisitions from releases.

use std::ffi::{c_int, c_short, c_ulong, c_void};

/// What an fcntl call does, as far as lock filtering cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FcntlKind {
    /// F_SETLK/F_SETLKW/F_OFD_SETLK/F_OFD_SETLKW with F_RDLCK or F_WRLCK.
    Acquire,
    /// The same commands with F_UNLCK.
    Release,
    /// Any other command, or a lock whose `struct flock` is unreadable.
    Other,
}

/// One fcntl call's command and, for lock commands, its lock type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcntlCall {
    pub cmd: c_int,
    pub lock_type: Option<c_short>,
}

fn is_set_lock(cmd: c_int) -> bool {
    matches!(
        cmd,
        libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_SETLK | libc::F_OFD_SETLKW
    )
}

impl FcntlCall {
    /// Describes `fcntl(fd, cmd, arg)`. The lock type is read without
    /// trusting `arg`: a bad pointer must reach the real fcntl and fail
    /// there with EFAULT, not crash the shim.
    pub fn new(cmd: c_int, arg: c_ulong) -> FcntlCall {
        let locks = is_set_lock(cmd) || matches!(cmd, libc::F_GETLK | libc::F_OFD_GETLK);
        FcntlCall {
            cmd,
            lock_type: if locks { read_lock_type(arg) } else { None },
        }
    }

    pub fn kind(&self) -> FcntlKind {
        match self.lock_type {
            Some(_) if !is_set_lock(self.cmd) => FcntlKind::Other,
            Some(t) if c_int::from(t) == libc::F_UNLCK => FcntlKind::Release,
            Some(t) if matches!(c_int::from(t), libc::F_RDLCK | libc::F_WRLCK) => {
                FcntlKind::Acquire
            }
            _ => FcntlKind::Other,
        }
    }

    /// The command's name, for the log.
    pub fn cmd_name(&self) -> Option<&'static str> {
        Some(match self.cmd {
            libc::F_DUPFD => "F_DUPFD",
            libc::F_DUPFD_CLOEXEC => "F_DUPFD_CLOEXEC",
            libc::F_GETFD => "F_GETFD",
            libc::F_SETFD => "F_SETFD",
            libc::F_GETFL => "F_GETFL",
            libc::F_SETFL => "F_SETFL",
            libc::F_GETLK => "F_GETLK",
            libc::F_SETLK => "F_SETLK",
            libc::F_SETLKW => "F_SETLKW",
            libc::F_OFD_GETLK => "F_OFD_GETLK",
            libc::F_OFD_SETLK => "F_OFD_SETLK",
            libc::F_OFD_SETLKW => "F_OFD_SETLKW",
            _ => return None,
        })
    }

    /// The lock type's name, for the log.
    pub fn lock_name(&self) -> Option<&'static str> {
        Some(match c_int::from(self.lock_type?) {
            libc::F_RDLCK => "F_RDLCK",
            libc::F_WRLCK => "F_WRLCK",
            libc::F_UNLCK => "F_UNLCK",
            _ => return None,
        })
    }
}

/// Reads `struct flock`'s first field, `l_type`, from the caller's memory
/// through the kernel, which answers EFAULT instead of faulting.
fn read_lock_type(arg: c_ulong) -> Option<c_short> {
    if arg == 0 {
        return None;
    }
    let mut lock_type: c_short = 0;
    let local = libc::iovec {
        iov_base: (&mut lock_type as *mut c_short).cast::<c_void>(),
        iov_len: std::mem::size_of::<c_short>(),
    };
    let remote = libc::iovec {
        iov_base: arg as *mut c_void,
        iov_len: std::mem::size_of::<c_short>(),
    };
    // SAFETY: `local` is our own writable c_short; the kernel validates `remote`.
    let copied = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (copied == std::mem::size_of::<c_short>() as isize).then_some(lock_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(cmd: c_int, lock_type: c_int) -> (FcntlCall, Box<libc::flock>) {
        // SAFETY: flock is plain old data.
        let mut flock: Box<libc::flock> = Box::new(unsafe { std::mem::zeroed() });
        flock.l_type = lock_type as c_short;
        let call = FcntlCall::new(cmd, &*flock as *const libc::flock as c_ulong);
        (call, flock)
    }

    #[test]
    fn classifies_acquire_release_and_other() {
        assert_eq!(
            lock(libc::F_SETLK, libc::F_WRLCK).0.kind(),
            FcntlKind::Acquire
        );
        assert_eq!(
            lock(libc::F_OFD_SETLKW, libc::F_RDLCK).0.kind(),
            FcntlKind::Acquire
        );
        assert_eq!(
            lock(libc::F_SETLKW, libc::F_UNLCK).0.kind(),
            FcntlKind::Release
        );
        assert_eq!(
            lock(libc::F_GETLK, libc::F_WRLCK).0.kind(),
            FcntlKind::Other
        );
        assert_eq!(FcntlCall::new(libc::F_GETFL, 0).kind(), FcntlKind::Other);
        let (call, _flock) = lock(libc::F_SETLK, libc::F_UNLCK);
        assert_eq!(
            (call.cmd_name(), call.lock_name()),
            (Some("F_SETLK"), Some("F_UNLCK"))
        );
    }

    #[test]
    fn unreadable_lock_pointer_is_other_not_a_crash() {
        assert_eq!(FcntlCall::new(libc::F_SETLK, 8).kind(), FcntlKind::Other);
        assert_eq!(FcntlCall::new(libc::F_SETLK, 0).kind(), FcntlKind::Other);
    }
}
