//! Keeping the caller's `errno` intact across the shim's own work.

use std::ffi::c_int;

/// Restores `errno` to its value at creation when dropped.
#[derive(Debug)]
pub(crate) struct SavedErrno(c_int);

impl SavedErrno {
    pub(crate) fn save() -> SavedErrno {
        // SAFETY: errno is this thread's and always readable.
        SavedErrno(unsafe { *libc::__errno_location() })
    }
}

impl Drop for SavedErrno {
    fn drop(&mut self) {
        // SAFETY: errno is this thread's and always writable.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_comes_back_after_the_guard() {
        unsafe { *libc::__errno_location() = libc::EAGAIN };
        {
            let _saved = SavedErrno::save();
            unsafe { *libc::__errno_location() = libc::EBADF };
        }
        assert_eq!(unsafe { *libc::__errno_location() }, libc::EAGAIN);
    }
}
