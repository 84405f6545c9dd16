//! Reading the caller's memory through the kernel, which answers EFAULT
//! for memory that is not readable where a load would fault: a wrapper
//! that reads a bad pointer its caller passed must fail as the real call
//! would (EFAULT), not crash the host.
//!
//! The kernel's reader is `process_vm_readv`, which seccomp filters often
//! forbid (systemd's `@system-service` leaves it out, and the default
//! action kills the process): [`available`] says whether it may be used.
//! Under a filter the callers read with plain loads, as libc would.

// Unit tests compile the exported prctl out.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Set once a seccomp filter is known, or may be: filters are never
/// removed. Learned at load from `/proc/self/status`, and from the
/// program's own `prctl(PR_SET_SECCOMP)` and `syscall(SYS_seccomp, ...)`
/// (libseccomp's way), which the shim wraps; asking the kernel on each
/// use would take a `prctl` that filters may forbid too.
static FILTERED: AtomicBool = AtomicBool::new(false);

/// At load: whether a seccomp filter is installed. Unknown (no `/proc`)
/// counts as filtered: under an unknown filter no system call is a safe
/// probe, `prctl` included.
pub(crate) fn learn_filter_at_load() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mode = status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .map(str::trim);
    if mode != Some("0") {
        FILTERED.store(true, Relaxed);
    }
}

/// A seccomp filter now binds this process (the program installed one).
pub(crate) fn note_filter() {
    FILTERED.store(true, Relaxed);
}

/// Whether [`copy`] may be called: no seccomp filter is installed.
pub(crate) fn available() -> bool {
    !FILTERED.load(Relaxed)
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

/// Writes one pointer-sized `value` at `address` in this process through
/// the kernel, which refuses memory that is not writable instead of
/// faulting. Only where [`available`] says so.
pub(crate) fn write_pointer(address: usize, value: usize) -> bool {
    let bytes = value.to_ne_bytes();
    let local = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: address as *mut c_void,
        iov_len: bytes.len(),
    };
    let _errno = crate::errno::SavedErrno::save();
    // SAFETY: `local` is our own buffer; the kernel checks `remote`.
    let written = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
    written == bytes.len() as isize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_readable_elements_and_stops_at_a_bad_one() {
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
        // Writes only where the memory is writable.
        let mut target = 0usize;
        assert!(write_pointer(&mut target as *mut usize as usize, 0x1234));
        assert_eq!(target, 0x1234);
        static READ_ONLY: usize = 7;
        assert!(!write_pointer(&READ_ONLY as *const usize as usize, 0x1234));
        assert!(!write_pointer(8, 0x1234));
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
