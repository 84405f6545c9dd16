//! The one list of interposed functions, grouped in families. Adding a
//! function or a family is a line here: [`crate::table`] builds the index
//! and the per-function facts from it, [`crate::exports`] the exported
//! wrappers.
//!
//! Each entry is `fn NAME(ARGS [; variadic ARG: TYPE]) -> RET => CALL [, OPTIONS];`
//! where `CALL` (an expression over the arguments, built with
//! [`crate::call::Call`]'s constructors) says what the call touches, and the
//! options say how the shim may alter it: `short(COUNT)` (a fault may make it
//! transfer less), `nonblocking(ARG => EXPR)` (the form that fails instead of
//! waiting, for a blocking call whose delay a signal cut short), and
//! `errors: value` (it returns an error number instead of setting errno).
//!
//! At most five arguments: the exported trampoline passes the caller's
//! address in the next argument register.

/// Calls `$callback!` with the whole list.
macro_rules! with_families {
    ($callback:ident) => {
        $callback! {
            Write {
                fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t => Call::fd(fd), short(count);
                fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t => Call::fd(fd);
            }
            Pwrite {
                fn pwrite(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t => Call::fd(fd), short(count);
                fn pwrite64(fd: c_int, buf: *const c_void, count: size_t, offset: off64_t) -> ssize_t => Call::fd(fd), short(count);
                fn __pwrite64(fd: c_int, buf: *const c_void, count: size_t, offset: off64_t) -> ssize_t => Call::fd(fd), short(count);
                fn pwritev(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t => Call::fd(fd);
                fn pwritev64(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off64_t) -> ssize_t => Call::fd(fd);
                fn pwritev2(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t, flags: c_int) -> ssize_t => Call::fd(fd);
                fn pwritev64v2(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off64_t, flags: c_int) -> ssize_t => Call::fd(fd);
            }
            Fcntl {
                fn fcntl(fd: c_int, cmd: c_int; variadic arg: c_ulong) -> c_int => Call::fd(fd).fcntl(cmd, arg), nonblocking(cmd => crate::locks::fcntl_nonblocking(cmd));
                fn fcntl64(fd: c_int, cmd: c_int; variadic arg: c_ulong) -> c_int => Call::fd(fd).fcntl(cmd, arg), nonblocking(cmd => crate::locks::fcntl_nonblocking(cmd));
                fn __fcntl(fd: c_int, cmd: c_int; variadic arg: c_ulong) -> c_int => Call::fd(fd).fcntl(cmd, arg), nonblocking(cmd => crate::locks::fcntl_nonblocking(cmd));
            }
            Flock {
                fn flock(fd: c_int, operation: c_int) -> c_int => Call::fd(fd).flock(operation), nonblocking(operation => operation | libc::LOCK_NB);
                fn lockf(fd: c_int, cmd: c_int, len: off_t) -> c_int => Call::fd(fd).lockf(cmd), nonblocking(cmd => crate::locks::lockf_nonblocking(cmd));
                fn lockf64(fd: c_int, cmd: c_int, len: off64_t) -> c_int => Call::fd(fd).lockf(cmd), nonblocking(cmd => crate::locks::lockf_nonblocking(cmd));
            }
            Fsync {
                fn fsync(fd: c_int) -> c_int => Call::fd(fd);
                fn fdatasync(fd: c_int) -> c_int => Call::fd(fd);
                fn sync_file_range(fd: c_int, offset: off64_t, nbytes: off64_t, flags: c_uint) -> c_int => Call::fd(fd);
                fn syncfs(fd: c_int) -> c_int => Call::fd(fd);
                fn msync(addr: *mut c_void, length: size_t, flags: c_int) -> c_int => Call::memory();
            }
            Open {
                fn open(path: *const c_char, flags: c_int; variadic mode: c_ulong) -> c_int => Call::path(path).open(flags);
                fn open64(path: *const c_char, flags: c_int; variadic mode: c_ulong) -> c_int => Call::path(path).open(flags);
                fn openat(dirfd: c_int, path: *const c_char, flags: c_int; variadic mode: c_ulong) -> c_int => Call::at(dirfd, path).open(flags);
                fn openat64(dirfd: c_int, path: *const c_char, flags: c_int; variadic mode: c_ulong) -> c_int => Call::at(dirfd, path).open(flags);
                fn creat(path: *const c_char, mode: mode_t) -> c_int => Call::path(path).open(libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC);
                fn creat64(path: *const c_char, mode: mode_t) -> c_int => Call::path(path).open(libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC);
                fn __open_2(path: *const c_char, flags: c_int) -> c_int => Call::path(path).open(flags);
                fn __open64_2(path: *const c_char, flags: c_int) -> c_int => Call::path(path).open(flags);
                fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int => Call::at(dirfd, path).open(flags);
                fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int => Call::at(dirfd, path).open(flags);
            }
            Close {
                fn close(fd: c_int) -> c_int => Call::fd(fd).close();
            }
            Rename {
                fn rename(old: *const c_char, new: *const c_char) -> c_int => Call::path(old).and(libc::AT_FDCWD, new);
                fn renameat(olddirfd: c_int, old: *const c_char, newdirfd: c_int, new: *const c_char) -> c_int => Call::at(olddirfd, old).and(newdirfd, new);
                fn renameat2(olddirfd: c_int, old: *const c_char, newdirfd: c_int, new: *const c_char, flags: c_uint) -> c_int => Call::at(olddirfd, old).and(newdirfd, new);
            }
            Unlink {
                fn unlink(path: *const c_char) -> c_int => Call::path(path);
                fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int => Call::at(dirfd, path);
            }
            Link {
                fn link(old: *const c_char, new: *const c_char) -> c_int => Call::path(new).and(libc::AT_FDCWD, old);
                fn linkat(olddirfd: c_int, old: *const c_char, newdirfd: c_int, new: *const c_char, flags: c_int) -> c_int => Call::at(newdirfd, new).and(olddirfd, old);
                fn symlink(target: *const c_char, linkpath: *const c_char) -> c_int => Call::path(linkpath);
                fn symlinkat(target: *const c_char, newdirfd: c_int, linkpath: *const c_char) -> c_int => Call::at(newdirfd, linkpath);
            }
            Mkdir {
                fn mkdir(path: *const c_char, mode: mode_t) -> c_int => Call::path(path);
                fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int => Call::at(dirfd, path);
                fn rmdir(path: *const c_char) -> c_int => Call::path(path);
            }
            Truncate {
                fn ftruncate(fd: c_int, length: off_t) -> c_int => Call::fd(fd);
                fn ftruncate64(fd: c_int, length: off64_t) -> c_int => Call::fd(fd);
                fn truncate(path: *const c_char, length: off_t) -> c_int => Call::path(path);
                fn truncate64(path: *const c_char, length: off64_t) -> c_int => Call::path(path);
                fn fallocate(fd: c_int, mode: c_int, offset: off_t, len: off_t) -> c_int => Call::fd(fd);
                fn fallocate64(fd: c_int, mode: c_int, offset: off64_t, len: off64_t) -> c_int => Call::fd(fd);
                fn posix_fallocate(fd: c_int, offset: off_t, len: off_t) -> c_int => Call::fd(fd), errors: value;
                fn posix_fallocate64(fd: c_int, offset: off64_t, len: off64_t) -> c_int => Call::fd(fd), errors: value;
            }
            Read {
                fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t => Call::fd(fd), short(count);
                fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t => Call::fd(fd);
                fn __read_chk(fd: c_int, buf: *mut c_void, count: size_t, buflen: size_t) -> ssize_t => Call::fd(fd), short(count);
            }
            Pread {
                fn pread(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t => Call::fd(fd), short(count);
                fn pread64(fd: c_int, buf: *mut c_void, count: size_t, offset: off64_t) -> ssize_t => Call::fd(fd), short(count);
                fn __pread64(fd: c_int, buf: *mut c_void, count: size_t, offset: off64_t) -> ssize_t => Call::fd(fd), short(count);
                fn __pread_chk(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t, buflen: size_t) -> ssize_t => Call::fd(fd), short(count);
                fn __pread64_chk(fd: c_int, buf: *mut c_void, count: size_t, offset: off64_t, buflen: size_t) -> ssize_t => Call::fd(fd), short(count);
                fn preadv(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t => Call::fd(fd);
                fn preadv64(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off64_t) -> ssize_t => Call::fd(fd);
                fn preadv2(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t, flags: c_int) -> ssize_t => Call::fd(fd);
                fn preadv64v2(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off64_t, flags: c_int) -> ssize_t => Call::fd(fd);
            }
        }
    };
}
pub(crate) use with_families;
