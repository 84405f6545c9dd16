//! The real libc functions behind the interposed names, resolved once with
//! `dlsym(RTLD_NEXT, ...)`.

use std::ffi::{c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::families::{Func, FUNCS};

/// One real function's address: null until resolved.
#[derive(Debug)]
pub(crate) struct Real {
    address: AtomicPtr<c_void>,
    #[cfg_attr(test, allow(dead_code))]
    reported_missing: AtomicBool,
}

impl Real {
    pub(crate) const fn new() -> Real {
        Real {
            address: AtomicPtr::new(ptr::null_mut()),
            reported_missing: AtomicBool::new(false),
        }
    }

    /// The real function's address, resolving it on first use (a call from
    /// another library's constructor can come before ours).
    #[inline(always)]
    pub(crate) fn get(&self, name: &CStr) -> Option<*mut c_void> {
        let address = self.address.load(Ordering::Relaxed);
        if !address.is_null() {
            return Some(address);
        }
        self.resolve(name)
    }

    #[cold]
    fn resolve(&self, name: &CStr) -> Option<*mut c_void> {
        // SAFETY: dlsym takes a valid NUL-terminated name.
        let address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        if address.is_null() {
            return None;
        }
        self.address.store(address, Ordering::Relaxed);
        Some(address)
    }

    #[cfg_attr(test, allow(dead_code))]
    /// Reports, once, that `name` has no definition after the shim.
    #[cold]
    pub(crate) fn report_missing(&self, name: &CStr) {
        if !self.reported_missing.swap(true, Ordering::Relaxed) {
            crate::log::stderr_line(&format!(
                "delayshim: no real {} after the shim (dlsym RTLD_NEXT failed); calls to it fail with ENOSYS",
                name.to_string_lossy()
            ));
        }
    }
}

/// The real address of every function in [`FUNCS`], by [`Func`] index.
static REALS: [Real; FUNCS.len()] = [const { Real::new() }; FUNCS.len()];

/// Resolves every interposed function now, while the process is still
/// single-threaded: `dlsym` takes the loader's lock, which a later fork
/// from a multi-threaded host could leave held in the child.
pub(crate) fn resolve_all() {
    for (index, info) in FUNCS.iter().enumerate() {
        let _ = REALS[index].get(info.cname);
    }
    let _ = exit_address();
}

/// The address of `func`'s real definition if it is resolved already: one
/// load, for the pass-through path.
#[inline(always)]
#[cfg_attr(test, allow(dead_code))]
pub(crate) fn resolved(func: Func) -> Option<*mut c_void> {
    let address = REALS[func as usize].address.load(Ordering::Relaxed);
    (!address.is_null()).then_some(address)
}

/// The address of `func`'s real definition, if there is one.
#[inline(always)]
pub(crate) fn address(func: Func) -> Option<*mut c_void> {
    REALS[func as usize].get(FUNCS[func as usize].cname)
}

#[cfg_attr(test, allow(dead_code))]
/// The value a call returns when its real definition is missing.
#[cold]
pub(crate) fn missing<R: From<i8>>(func: Func) -> R {
    REALS[func as usize].report_missing(FUNCS[func as usize].cname);
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    R::from(-1)
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)` through the real fcntl, for the shim's
/// own descriptors.
pub(crate) fn fcntl_dupfd_cloexec(fd: std::ffi::c_int, min: std::ffi::c_int) -> std::ffi::c_int {
    type Fcntl = unsafe extern "C" fn(std::ffi::c_int, std::ffi::c_int, ...) -> std::ffi::c_int;
    match address(Func::fcntl) {
        // SAFETY: the real fcntl, called with an int argument as F_DUPFD_CLOEXEC takes.
        Some(real) => unsafe {
            std::mem::transmute::<*mut c_void, Fcntl>(real)(fd, libc::F_DUPFD_CLOEXEC, min)
        },
        None => -1,
    }
}

static REAL_EXIT: Real = Real::new();

/// The real `_exit`, which the shim wraps to write its statistics.
pub(crate) fn exit_address() -> Option<*mut c_void> {
    REAL_EXIT.get(c"_exit")
}
