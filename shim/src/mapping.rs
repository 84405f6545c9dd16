//! `mmap` and `mmap64`, exported only to see shared, writable mappings of
//! files while accesses are tracked: what processes order through shared
//! memory (SQLite's WAL index in its `-shm` file) is invisible to the
//! shim, and the conflicts report says so for the files concerned instead
//! of calling those pairs races. Without a region the real function is
//! called and nothing else happens.

// Unit tests compile the exported functions out.
#![cfg_attr(test, allow(dead_code))]

use std::ffi::{c_int, c_void};

use crate::real::Real;

static MMAP: Real = Real::new(c"mmap");
static MMAP64: Real = Real::new(c"mmap64");

/// Resolves the real functions at load, while single-threaded.
pub(crate) fn resolve() {
    let _ = MMAP.get();
    let _ = MMAP64.get();
}

type MmapFn = unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, c_int, i64) -> *mut c_void;

unsafe fn forward(
    real: &Real,
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: i64,
) -> *mut c_void {
    let result = match real.get() {
        // SAFETY: dlsym found mmap's definition, whose prototype MmapFn is.
        Some(address) => unsafe {
            std::mem::transmute::<*mut c_void, MmapFn>(address)(addr, len, prot, flags, fd, offset)
        },
        None => {
            // SAFETY: the caller's arguments, to the raw system call.
            // Every argument a full register: syscall() is variadic.
            let raw = unsafe {
                libc::syscall(
                    libc::SYS_mmap,
                    addr,
                    len as libc::c_long,
                    libc::c_long::from(prot),
                    libc::c_long::from(flags),
                    libc::c_long::from(fd),
                    offset as libc::c_long,
                )
            };
            raw as *mut c_void
        }
    };
    if result != libc::MAP_FAILED
        && fd >= 0
        && flags & libc::MAP_SHARED != 0
        && prot & libc::PROT_WRITE != 0
        && crate::track::active()
    {
        crate::track::mapped_shared(fd);
    }
    result
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: i64,
) -> *mut c_void {
    // SAFETY: the caller's arguments.
    unsafe { forward(&MMAP, addr, len, prot, flags, fd, offset) }
}

/// # Safety
/// As for the C function.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: i64,
) -> *mut c_void {
    // SAFETY: the caller's arguments.
    unsafe { forward(&MMAP64, addr, len, prot, flags, fd, offset) }
}
