//! Telling lock acquisitions from releases, for fcntl, flock and lockf,
//! and the non-blocking form of each blocking lock call.

use std::ffi::{c_int, c_short, c_ulong};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Whether this process has been seen taking an fcntl record lock: then
/// closing any descriptor may release one, so `close` is a release point.
static TOOK_RECORD_LOCKS: AtomicBool = AtomicBool::new(false);

/// What a locking call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Acquire,
    Release,
    /// Any other command, or a lock whose `struct flock` is unreadable.
    Other,
}

fn is_set_lock(cmd: c_int) -> bool {
    matches!(
        cmd,
        libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_SETLK | libc::F_OFD_SETLKW
    )
}

/// One fcntl call's command and, for lock commands, its lock type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcntlCall {
    pub cmd: c_int,
    pub lock_type: Option<c_short>,
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

    pub fn kind(&self) -> LockKind {
        match self.lock_type {
            Some(_) if !is_set_lock(self.cmd) => LockKind::Other,
            Some(t) if c_int::from(t) == libc::F_UNLCK => LockKind::Release,
            Some(t) if matches!(c_int::from(t), libc::F_RDLCK | libc::F_WRLCK) => LockKind::Acquire,
            _ => LockKind::Other,
        }
    }

    pub fn blocks(&self) -> bool {
        matches!(self.cmd, libc::F_SETLKW | libc::F_OFD_SETLKW) && self.kind() == LockKind::Acquire
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

/// Records that this process took a lock: record locks go when any
/// descriptor of the file closes, flock and OFD locks when the last one
/// does, so from now on `close` may release one.
pub fn took_a_lock() {
    TOOK_RECORD_LOCKS.store(true, Relaxed);
}

/// What `flock(fd, operation)` does.
pub fn flock_kind(operation: c_int) -> LockKind {
    match operation & !libc::LOCK_NB {
        libc::LOCK_SH | libc::LOCK_EX => LockKind::Acquire,
        libc::LOCK_UN => LockKind::Release,
        _ => LockKind::Other,
    }
}

pub fn flock_name(operation: c_int) -> &'static str {
    let nb = operation & libc::LOCK_NB != 0;
    match (operation & !libc::LOCK_NB, nb) {
        (libc::LOCK_SH, false) => "LOCK_SH",
        (libc::LOCK_SH, true) => "LOCK_SH|LOCK_NB",
        (libc::LOCK_EX, false) => "LOCK_EX",
        (libc::LOCK_EX, true) => "LOCK_EX|LOCK_NB",
        (libc::LOCK_UN, _) => "LOCK_UN",
        _ => "?",
    }
}

/// What `lockf(fd, cmd, len)` does.
pub fn lockf_kind(cmd: c_int) -> LockKind {
    match cmd {
        libc::F_LOCK | libc::F_TLOCK => LockKind::Acquire,
        libc::F_ULOCK => LockKind::Release,
        _ => LockKind::Other,
    }
}

pub fn lockf_name(cmd: c_int) -> &'static str {
    match cmd {
        libc::F_LOCK => "F_LOCK",
        libc::F_TLOCK => "F_TLOCK",
        libc::F_ULOCK => "F_ULOCK",
        libc::F_TEST => "F_TEST",
        _ => "?",
    }
}

/// The non-blocking fcntl command for a blocking one.
pub fn fcntl_nonblocking(cmd: c_int) -> c_int {
    match cmd {
        libc::F_SETLKW => libc::F_SETLK,
        libc::F_OFD_SETLKW => libc::F_OFD_SETLK,
        other => other,
    }
}

/// The non-blocking lockf command for a blocking one.
pub fn lockf_nonblocking(cmd: c_int) -> c_int {
    if cmd == libc::F_LOCK {
        libc::F_TLOCK
    } else {
        cmd
    }
}

/// Whether `close` may release record locks in this process.
pub fn close_may_release() -> bool {
    TOOK_RECORD_LOCKS.load(Relaxed)
}

/// Reads `struct flock`'s first field, `l_type`, from the caller's memory
/// through the kernel, which answers EFAULT instead of faulting.
pub(crate) fn read_lock_type(arg: c_ulong) -> Option<c_short> {
    if arg == 0 {
        return None;
    }
    if !crate::peek::available() {
        // Under a seccomp filter, which may kill a process for the
        // kernel's reader: a plain load, trusting the pointer as the
        // caller does (only a bad one, which the real call would answer
        // with EFAULT, faults here).
        // SAFETY: the caller passes a struct flock, whose first field this is.
        return Some(unsafe { std::ptr::read_volatile(arg as *const c_short) });
    }
    let mut lock_type = [0u8; std::mem::size_of::<c_short>()];
    let copied = crate::peek::copy(&mut lock_type, 1, |_| {
        (arg as usize, std::mem::size_of::<c_short>())
    });
    (copied == 1).then_some(c_short::from_ne_bytes(lock_type))
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
            LockKind::Acquire
        );
        assert_eq!(
            lock(libc::F_OFD_SETLKW, libc::F_RDLCK).0.kind(),
            LockKind::Acquire
        );
        assert!(lock(libc::F_OFD_SETLKW, libc::F_RDLCK).0.blocks());
        assert!(!lock(libc::F_SETLKW, libc::F_UNLCK).0.blocks());
        assert_eq!(
            lock(libc::F_SETLKW, libc::F_UNLCK).0.kind(),
            LockKind::Release
        );
        assert_eq!(lock(libc::F_GETLK, libc::F_WRLCK).0.kind(), LockKind::Other);
        assert_eq!(FcntlCall::new(libc::F_GETFL, 0).kind(), LockKind::Other);
        let (call, _flock) = lock(libc::F_SETLK, libc::F_UNLCK);
        assert_eq!(
            (call.cmd_name(), call.lock_name()),
            (Some("F_SETLK"), Some("F_UNLCK"))
        );
    }

    #[test]
    fn flock_and_lockf_kinds() {
        assert_eq!(flock_kind(libc::LOCK_EX | libc::LOCK_NB), LockKind::Acquire);
        assert_eq!(flock_kind(libc::LOCK_UN), LockKind::Release);
        assert_eq!(lockf_kind(libc::F_TLOCK), LockKind::Acquire);
        assert_eq!(lockf_kind(libc::F_ULOCK), LockKind::Release);
        assert_eq!(lockf_kind(libc::F_TEST), LockKind::Other);
        assert_eq!(lockf_nonblocking(libc::F_LOCK), libc::F_TLOCK);
        assert_eq!(fcntl_nonblocking(libc::F_OFD_SETLKW), libc::F_OFD_SETLK);
        assert_eq!(flock_name(libc::LOCK_EX | libc::LOCK_NB), "LOCK_EX|LOCK_NB");
    }

    #[test]
    fn unreadable_lock_pointer_is_other_not_a_crash() {
        assert_eq!(FcntlCall::new(libc::F_SETLK, 8).kind(), LockKind::Other);
        assert_eq!(FcntlCall::new(libc::F_SETLK, 0).kind(), LockKind::Other);
    }
}
