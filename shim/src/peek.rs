//! Reading the caller's memory through the kernel, which answers EFAULT
//! for memory that is not readable where a load would fault: a wrapper
//! that reads a bad pointer its caller passed must fail as the real call
//! would (EFAULT), not crash the host.
//!
//! The kernel's reader is `process_vm_readv`, which seccomp filters often
//! forbid (systemd's `@system-service` leaves it out, and the default
//! action kills the process): [`available`] says whether it may be used.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Set once a seccomp filter is seen: filters are never removed.
static FILTERED: AtomicBool = AtomicBool::new(false);

/// Whether [`copy`] may be called: no seccomp filter is installed (one
/// `prctl` while none is; a filter that refuses the `prctl` counts as one).
pub(crate) fn available() -> bool {
    if FILTERED.load(Relaxed) {
        return false;
    }
    let _errno = crate::errno::SavedErrno::save();
    // SAFETY: PR_GET_SECCOMP takes no other argument.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode != 0 {
        FILTERED.store(true, Relaxed);
        return false;
    }
    true
}

/// Copies `count` elements of the caller's memory, element `i` being the
/// `(address, length)` that `source(i)` gives, one after another into
/// `local`, and returns how many whole elements arrived: the kernel stops
/// at the first one it cannot read, and never splits one. Only where
/// [`available`] says so.
pub(crate) fn copy(
    local: &mut [u8],
    count: usize,
    source: impl Fn(usize) -> (usize, usize),
) -> usize {
    const AT_ONCE: usize = 8;
    let mut remote = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; AT_ONCE];
    let mut copied = 0;
    let mut offset = 0;
    while copied < count {
        let batch = AT_ONCE.min(count - copied);
        let mut wanted = 0;
        for (i, slot) in remote[..batch].iter_mut().enumerate() {
            let (address, len) = source(copied + i);
            *slot = libc::iovec {
                iov_base: address as *mut c_void,
                iov_len: len,
            };
            wanted += len;
        }
        if offset + wanted > local.len() {
            return copied;
        }
        let target = libc::iovec {
            iov_base: local[offset..].as_mut_ptr().cast(),
            iov_len: wanted,
        };
        let _errno = crate::errno::SavedErrno::save();
        // SAFETY: `target` is our own writable buffer; the kernel checks
        // every remote address.
        let got = unsafe {
            libc::process_vm_readv(libc::getpid(), &target, 1, remote.as_ptr(), batch as _, 0)
        };
        let mut got = usize::try_from(got).unwrap_or(0);
        for slot in &remote[..batch] {
            if got < slot.iov_len {
                return copied;
            }
            got -= slot.iov_len;
            copied += 1;
            offset += slot.iov_len;
        }
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_readable_elements_and_stops_at_a_bad_one() {
        assert!(available(), "the tests run without a seccomp filter");
        let (a, b) = (*b"abcd", *b"efgh");
        // The first page is never mapped.
        let sources = [(a.as_ptr() as usize, 4), (b.as_ptr() as usize, 4), (8, 4)];
        let mut local = [0u8; 12];
        assert_eq!(copy(&mut local, 3, |i| sources[i]), 2);
        assert_eq!(&local[..8], b"abcdefgh");
        assert_eq!(copy(&mut local, 1, |_| sources[2]), 0);
        // More elements than one system call takes.
        let many: Vec<u8> = (0..100).collect();
        let mut local = [0u8; 100];
        assert_eq!(
            copy(&mut local, 100, |i| (&many[i] as *const u8 as usize, 1)),
            100
        );
        assert_eq!(local.as_slice(), many.as_slice());
        // Never past the local buffer.
        assert_eq!(
            copy(&mut local[..10], 100, |i| (
                &many[i] as *const u8 as usize,
                1
            )),
            8
        );
    }
}
