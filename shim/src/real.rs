//! The real libc functions behind the interposed names, resolved once with
//! `dlsym(RTLD_NEXT, ...)`.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::table::{Func, FUNCS};

/// One real function's address: null until resolved.
#[derive(Debug)]
pub(crate) struct Real {
    name: &'static CStr,
    address: AtomicPtr<c_void>,
    reported_missing: AtomicBool,
}

impl Real {
    pub(crate) const fn new(name: &'static CStr) -> Real {
        Real {
            name,
            address: AtomicPtr::new(ptr::null_mut()),
            reported_missing: AtomicBool::new(false),
        }
    }

    /// The real function's address, resolving it on first use (a call from
    /// another library's constructor can come before ours).
    #[inline(always)]
    pub(crate) fn get(&self) -> Option<*mut c_void> {
        let address = self.address.load(Ordering::Relaxed);
        if !address.is_null() {
            return Some(address);
        }
        self.resolve()
    }

    #[cold]
    fn resolve(&self) -> Option<*mut c_void> {
        // SAFETY: dlsym takes a valid NUL-terminated name.
        let address = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        if address.is_null() {
            return None;
        }
        self.address.store(address, Ordering::Relaxed);
        Some(address)
    }

    /// What a wrapper returns when the function has no definition after
    /// the shim: -1 with ENOSYS, reported once.
    #[cold]
    pub(crate) fn fail_missing(&self) -> c_int {
        self.report_missing();
        crate::errno::set(libc::ENOSYS);
        -1
    }

    /// Reports, once, that the function has no definition after the shim.
    #[cold]
    pub(crate) fn report_missing(&self) {
        if !self.reported_missing.swap(true, Ordering::Relaxed) {
            let mut buf = [0u8; 256];
            let mut line = crate::output::Line::new(&mut buf);
            line.str("delayshim: no real ")
                .bytes(self.name.to_bytes())
                .str(" after the shim (dlsym RTLD_NEXT failed); calls to it fail with ENOSYS");
            crate::output::write_all(libc::STDERR_FILENO, line.finish());
        }
    }
}

/// The real address of every function in [`FUNCS`], by [`Func`] index.
static REALS: [Real; FUNCS.len()] = {
    let mut reals = [const { Real::new(c"") }; FUNCS.len()];
    let mut i = 0;
    while i < FUNCS.len() {
        reals[i] = Real::new(FUNCS[i].cname);
        i += 1;
    }
    reals
};

pub(crate) static EXIT: Real = Real::new(c"_exit");
pub(crate) static QUICK_EXIT: Real = Real::new(c"quick_exit");
pub(crate) static EXECVE: Real = Real::new(c"execve");
pub(crate) static EXECVPE: Real = Real::new(c"execvpe");
pub(crate) static FEXECVE: Real = Real::new(c"fexecve");
pub(crate) static EXECVEAT: Real = Real::new(c"execveat");
pub(crate) static POSIX_SPAWN: Real = Real::new(c"posix_spawn");
pub(crate) static SYSTEM: Real = Real::new(c"system");
pub(crate) static POPEN: Real = Real::new(c"popen");
pub(crate) static WORDEXP: Real = Real::new(c"wordexp");
pub(crate) static PRCTL: Real = Real::new(c"prctl");
pub(crate) static SYSCALL: Real = Real::new(c"syscall");
/// The real `syscall`'s address for the exported trampoline, which jumps
/// through it: null until resolved.
pub(crate) static SYSCALL_ADDRESS: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
pub(crate) static POSIX_SPAWNP: Real = Real::new(c"posix_spawnp");

/// Resolves every real function now, while the process is still
/// single-threaded: `dlsym` takes the loader's lock, which a later fork
/// from a multi-threaded host could leave held in the child, and which a
/// signal handler must never need.
pub(crate) fn resolve_all() {
    for real in REALS.iter().chain([
        &EXIT,
        &QUICK_EXIT,
        &EXECVE,
        &EXECVPE,
        &FEXECVE,
        &EXECVEAT,
        &POSIX_SPAWN,
        &POSIX_SPAWNP,
        &SYSTEM,
        &POPEN,
        &WORDEXP,
        &PRCTL,
        &SYSCALL,
    ]) {
        let _ = real.get();
    }
    if let Some(address) = SYSCALL.get() {
        SYSCALL_ADDRESS.store(address, Ordering::Relaxed);
    }
}

/// The address of `func`'s real definition if it is resolved already: one
/// load, for the pass-through path.
#[inline(always)]
pub(crate) fn resolved(func: Func) -> Option<*mut c_void> {
    let address = REALS[func as usize].address.load(Ordering::Relaxed);
    (!address.is_null()).then_some(address)
}

/// The address of `func`'s real definition, if there is one.
#[inline(always)]
pub(crate) fn address(func: Func) -> Option<*mut c_void> {
    REALS[func as usize].get()
}

/// The value a call returns when its real definition is missing.
#[cold]
pub(crate) fn missing<R: From<i8> + TryFrom<i32>>(func: Func) -> R {
    REALS[func as usize].report_missing();
    if func.info().errors == crate::table::Errors::Value {
        return R::try_from(libc::ENOSYS).unwrap_or_else(|_| R::from(-1));
    }
    crate::errno::set(libc::ENOSYS);
    R::from(-1)
}
