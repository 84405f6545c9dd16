//! Keeping the caller's `errno` intact across the shim's own work.

use std::ffi::c_int;

pub(crate) fn get() -> c_int {
    // SAFETY: errno is this thread's and always readable.
    unsafe { *libc::__errno_location() }
}

pub(crate) fn set(value: c_int) {
    // SAFETY: errno is this thread's and always writable.
    unsafe { *libc::__errno_location() = value };
}

/// Restores `errno` to its value at creation when dropped.
#[derive(Debug)]
pub(crate) struct SavedErrno(c_int);

impl SavedErrno {
    pub(crate) fn save() -> SavedErrno {
        SavedErrno(get())
    }
}

impl Drop for SavedErrno {
    fn drop(&mut self) {
        set(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_comes_back_after_the_guard() {
        set(libc::EAGAIN);
        {
            let _saved = SavedErrno::save();
            set(libc::EBADF);
        }
        assert_eq!(get(), libc::EAGAIN);
    }
}
