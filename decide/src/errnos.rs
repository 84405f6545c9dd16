//! The errno names the shim can inject, report and replay.

use std::ffi::c_int;

/// Errno names the shim knows.
pub const ERRNOS: &[(&str, c_int)] = &[
    ("EIO", libc::EIO),
    ("ENOSPC", libc::ENOSPC),
    ("EDQUOT", libc::EDQUOT),
    ("EINTR", libc::EINTR),
    ("EAGAIN", libc::EAGAIN),
    ("EWOULDBLOCK", libc::EWOULDBLOCK),
    ("EACCES", libc::EACCES),
    ("EPERM", libc::EPERM),
    ("EBADF", libc::EBADF),
    ("EINVAL", libc::EINVAL),
    ("EFBIG", libc::EFBIG),
    ("EROFS", libc::EROFS),
    ("EEXIST", libc::EEXIST),
    ("ENOENT", libc::ENOENT),
    ("EMFILE", libc::EMFILE),
    ("ENFILE", libc::ENFILE),
    ("ENOMEM", libc::ENOMEM),
    ("ENOLCK", libc::ENOLCK),
    ("EDEADLK", libc::EDEADLK),
    ("EXDEV", libc::EXDEV),
    ("EBUSY", libc::EBUSY),
    ("ENOTEMPTY", libc::ENOTEMPTY),
    ("EMLINK", libc::EMLINK),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("ELOOP", libc::ELOOP),
    ("ENAMETOOLONG", libc::ENAMETOOLONG),
];

/// The name of `errno`, for output.
pub fn errno_name(errno: c_int) -> &'static str {
    ERRNOS
        .iter()
        .find(|(_, value)| *value == errno)
        .map_or("E?", |(name, _)| name)
}

/// The errno called `name`.
pub fn errno_named(name: &str) -> Option<c_int> {
    ERRNOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| *value)
}
