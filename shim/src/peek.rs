//! Reading the caller's memory through the kernel, which answers EFAULT
//! for memory that is not readable where a load would fault: a wrapper
//! that reads a bad pointer its caller passed must fail as the real call
//! would (EFAULT), not crash the host.

use std::ffi::c_void;

/// Copies from `sources` (the caller's memory) into `local`, element by
/// element, and returns how many whole elements arrived: the kernel stops
/// at the first one it cannot read, and never splits one.
pub(crate) fn copy(local: &mut [u8], sources: &[(usize, usize)]) -> usize {
    const AT_ONCE: usize = 16;
    let mut remote = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; AT_ONCE];
    let mut copied = 0;
    let mut offset = 0;
    for batch in sources.chunks(AT_ONCE) {
        let mut wanted = 0;
        for (slot, &(address, len)) in remote.iter_mut().zip(batch) {
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
            libc::process_vm_readv(
                libc::getpid(),
                &target,
                1,
                remote.as_ptr(),
                batch.len() as _,
                0,
            )
        };
        let mut got = usize::try_from(got).unwrap_or(0);
        for &(_, len) in batch {
            if got < len {
                return copied;
            }
            got -= len;
            copied += 1;
            offset += len;
        }
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_readable_elements_and_stops_at_a_bad_one() {
        let (a, b) = (*b"abcd", *b"efgh");
        let mut local = [0u8; 12];
        let sources = [
            (a.as_ptr() as usize, 4),
            (b.as_ptr() as usize, 4),
            (8, 4), // the first page is never mapped
        ];
        assert_eq!(copy(&mut local, &sources), 2);
        assert_eq!(&local[..8], b"abcdefgh");
        assert_eq!(copy(&mut local, &sources[2..]), 0);
        // More elements than one system call takes.
        let many: Vec<u8> = (0..100).collect();
        let sources: Vec<_> = many.iter().map(|b| (b as *const u8 as usize, 1)).collect();
        let mut local = [0u8; 100];
        assert_eq!(copy(&mut local, &sources), 100);
        assert_eq!(local.as_slice(), many.as_slice());
    }
}
