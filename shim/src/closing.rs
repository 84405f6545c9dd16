//! The exported functions that close or replace a descriptor where the
//! shim's wrappers would not see it (libc closes inside `fclose`,
//! `freopen`, `pclose`, `closedir`, replaces inside `daemon` and
//! `login_tty`), and `dup2`, `dup3`, `close_range`, `closefrom`: each tells
//! [`crate::descriptors`] that the numbers it frees or reuses are no longer
//! what the cache says. Without a region (no tracking) each is the real
//! function and one test.

// Unit tests compile the exported functions out.
#![cfg_attr(test, allow(dead_code, unused_imports, unused_macros))]

use std::ffi::{c_char, c_int, c_uint, c_void};

use libc::FILE;

use crate::real::Real;

static DUP2: Real = Real::new(c"dup2");
static DUP2_ALIAS: Real = Real::new(c"__dup2");
static DUP3: Real = Real::new(c"dup3");
static CLOSE_ALIAS: Real = Real::new(c"__close");
static CLOSE_RANGE: Real = Real::new(c"close_range");
static CLOSEFROM: Real = Real::new(c"closefrom");
static FCLOSE: Real = Real::new(c"fclose");
static FCLOSE_ALIAS: Real = Real::new(c"_IO_fclose");
static FCLOSEALL: Real = Real::new(c"fcloseall");
static FREOPEN: Real = Real::new(c"freopen");
static FREOPEN64: Real = Real::new(c"freopen64");
static PCLOSE: Real = Real::new(c"pclose");
static CLOSEDIR: Real = Real::new(c"closedir");
static DAEMON: Real = Real::new(c"daemon");
static LOGIN_TTY: Real = Real::new(c"login_tty");
static FORKPTY: Real = Real::new(c"forkpty");

/// Resolves the real functions at load, while single-threaded.
pub(crate) fn resolve() {
    for real in [
        &DUP2,
        &DUP2_ALIAS,
        &DUP3,
        &CLOSE_ALIAS,
        &CLOSE_RANGE,
        &CLOSEFROM,
        &FCLOSE,
        &FCLOSE_ALIAS,
        &FCLOSEALL,
        &FREOPEN,
        &FREOPEN64,
        &PCLOSE,
        &CLOSEDIR,
        &DAEMON,
        &LOGIN_TTY,
        &FORKPTY,
    ] {
        let _ = real.get();
    }
}

/// The descriptor behind a stream, read before the real call frees it;
/// `None` without tracking (then nothing is cached) or for a stream
/// without one.
fn stream_fd(stream: *mut FILE) -> Option<c_int> {
    if !crate::track::active() || stream.is_null() {
        return None;
    }
    let _errno = crate::errno::SavedErrno::save();
    // SAFETY: the caller's stream, which the real call is about to use.
    let fd = unsafe { libc::fileno(stream) };
    (fd >= 0).then_some(fd)
}

fn forget(fd: c_int) {
    if crate::track::active() {
        crate::descriptors::forget(fd);
    }
}

/// The real function `$real` as `$ty`, or the failure for a missing one.
macro_rules! real_or_fail {
    ($real:expr, $ty:ty, $missing:expr) => {
        match $real.get() {
            // SAFETY: dlsym found the definition of this name, whose C
            // prototype `$ty` spells out.
            Some(address) => unsafe { std::mem::transmute::<*mut c_void, $ty>(address) },
            None => {
                $real.report_missing();
                crate::errno::set(libc::ENOSYS);
                return $missing;
            }
        }
    };
}

type Dup2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type Dup3Fn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
type CloseRangeFn = unsafe extern "C" fn(c_uint, c_uint, c_int) -> c_int;
type ClosefromFn = unsafe extern "C" fn(c_int);
type FcloseFn = unsafe extern "C" fn(*mut FILE) -> c_int;
type FcloseallFn = unsafe extern "C" fn() -> c_int;
type FreopenFn = unsafe extern "C" fn(*const c_char, *const c_char, *mut FILE) -> *mut FILE;
type DaemonFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type ForkptyFn =
    unsafe extern "C" fn(*mut c_int, *mut c_char, *const c_void, *const c_void) -> c_int;

unsafe fn dup2_through(real: &Real, old: c_int, new: c_int) -> c_int {
    let dup2 = real_or_fail!(real, Dup2Fn, -1);
    // SAFETY: the caller's arguments.
    let result = unsafe { dup2(old, new) };
    forget(new);
    result
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { dup2_through(&DUP2, old, new) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { dup2_through(&DUP2_ALIAS, old, new) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let dup3 = real_or_fail!(DUP3, Dup3Fn, -1);
    // SAFETY: the caller's arguments.
    let result = unsafe { dup3(old, new, flags) };
    forget(new);
    result
}

/// glibc's old alias of `close`: the shim's `close` wrapper does not see it.
///
/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __close(fd: c_int) -> c_int {
    let close = real_or_fail!(CLOSE_ALIAS, CloseFn, -1);
    // SAFETY: the caller's argument.
    let result = unsafe { close(fd) };
    forget(fd);
    result
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let result = match CLOSE_RANGE.get() {
        // SAFETY: close_range's definition, with the caller's arguments.
        Some(address) => unsafe {
            std::mem::transmute::<*mut c_void, CloseRangeFn>(address)(first, last, flags)
        },
        // An older libc: the system call itself.
        // SAFETY: the caller's arguments; every one a full register.
        None => unsafe {
            libc::syscall(
                libc::SYS_close_range,
                libc::c_long::from(first),
                libc::c_long::from(last),
                libc::c_long::from(flags),
            ) as c_int
        },
    };
    // CLOSE_RANGE_CLOEXEC closes nothing yet; forgetting is still right.
    if crate::track::active() {
        crate::descriptors::forget_range(first, last);
    }
    result
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closefrom(first: c_int) {
    match CLOSEFROM.get() {
        // SAFETY: closefrom's definition, with the caller's argument.
        Some(address) => unsafe { std::mem::transmute::<*mut c_void, ClosefromFn>(address)(first) },
        None => {
            // SAFETY: close_range with the caller's first descriptor.
            unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    libc::c_long::from(first),
                    libc::c_long::from(c_uint::MAX),
                    0 as libc::c_long,
                )
            };
        }
    }
    if crate::track::active() {
        crate::descriptors::forget_range(first.max(0) as c_uint, c_uint::MAX);
    }
}

unsafe fn fclose_through(real: &Real, stream: *mut FILE) -> c_int {
    let fclose = real_or_fail!(real, FcloseFn, libc::EOF);
    let fd = stream_fd(stream);
    // SAFETY: the caller's stream.
    let result = unsafe { fclose(stream) };
    if let Some(fd) = fd {
        forget(fd);
    }
    result
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fclose(stream: *mut FILE) -> c_int {
    // SAFETY: the caller's stream.
    unsafe { fclose_through(&FCLOSE, stream) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _IO_fclose(stream: *mut FILE) -> c_int {
    // SAFETY: the caller's stream.
    unsafe { fclose_through(&FCLOSE_ALIAS, stream) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pclose(stream: *mut FILE) -> c_int {
    // SAFETY: the caller's stream.
    unsafe { fclose_through(&PCLOSE, stream) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcloseall() -> c_int {
    let fcloseall = real_or_fail!(FCLOSEALL, FcloseallFn, libc::EOF);
    // SAFETY: no arguments.
    let result = unsafe { fcloseall() };
    // Which descriptors were streams' is not known: all of them.
    if crate::track::active() {
        crate::descriptors::forget_range(0, c_uint::MAX);
    }
    result
}

unsafe fn freopen_through(
    real: &Real,
    path: *const c_char,
    mode: *const c_char,
    stream: *mut FILE,
) -> *mut FILE {
    let freopen = real_or_fail!(real, FreopenFn, std::ptr::null_mut());
    let before = stream_fd(stream);
    // SAFETY: the caller's arguments.
    let result = unsafe { freopen(path, mode, stream) };
    // The new file may take the old number (glibc moves it there).
    if let Some(fd) = before {
        forget(fd);
    }
    if let Some(fd) = stream_fd(result) {
        forget(fd);
    }
    result
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn freopen(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut FILE,
) -> *mut FILE {
    // SAFETY: the caller's arguments.
    unsafe { freopen_through(&FREOPEN, path, mode, stream) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut FILE,
) -> *mut FILE {
    // SAFETY: the caller's arguments.
    unsafe { freopen_through(&FREOPEN64, path, mode, stream) }
}

type ClosedirFn = unsafe extern "C" fn(*mut libc::DIR) -> c_int;

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closedir(dir: *mut libc::DIR) -> c_int {
    let closedir = real_or_fail!(CLOSEDIR, ClosedirFn, -1);
    let fd = if crate::track::active() && !dir.is_null() {
        let _errno = crate::errno::SavedErrno::save();
        // SAFETY: the caller's directory stream, about to be closed.
        Some(unsafe { libc::dirfd(dir) })
    } else {
        None
    };
    // SAFETY: the caller's argument.
    let result = unsafe { closedir(dir) };
    if let Some(fd) = fd {
        forget(fd);
    }
    result
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn daemon(nochdir: c_int, noclose: c_int) -> c_int {
    let daemon = real_or_fail!(DAEMON, DaemonFn, -1);
    // SAFETY: the caller's arguments.
    let result = unsafe { daemon(nochdir, noclose) };
    // Standard input, output and error now name /dev/null.
    for fd in 0..=2 {
        forget(fd);
    }
    result
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn login_tty(fd: c_int) -> c_int {
    let login_tty = real_or_fail!(LOGIN_TTY, CloseFn, -1);
    // SAFETY: the caller's argument.
    let result = unsafe { login_tty(fd) };
    for fd in [0, 1, 2, fd] {
        forget(fd);
    }
    result
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn forkpty(
    master: *mut c_int,
    name: *mut c_char,
    termios: *const c_void,
    size: *const c_void,
) -> c_int {
    let forkpty = real_or_fail!(FORKPTY, ForkptyFn, -1);
    // SAFETY: the caller's arguments.
    let result = unsafe { forkpty(master, name, termios, size) };
    if result == 0 {
        // The child's standard descriptors now name the terminal.
        for fd in 0..=2 {
            forget(fd);
        }
    }
    result
}
