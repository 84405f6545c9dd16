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

use std::ffi::{c_int, c_long, c_ulong, c_void};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering::Relaxed};

use crate::sandbox::Install;

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
    if let Some(address) = crate::real::SYSCALL.get() {
        SYSCALL_ADDRESS.store(address, Relaxed);
    }
}

/// Whether [`copy`] may be called: no seccomp filter is installed.
pub(crate) fn available() -> bool {
    !FILTERED.load(Relaxed)
}

type PrctlFn = unsafe extern "C" fn(c_int, c_ulong, c_ulong, c_ulong, c_ulong) -> c_int;

/// The program installs a seccomp filter: from now on the shim does not
/// use the kernel's reader. (A filter installed through the raw
/// `seccomp` system call is not seen; the README says so.)
///
/// # Safety
/// As for the C function, whose optional arguments are taken as four
/// register-sized integers (x86-64 and aarch64 Linux pass them so).
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn prctl(
    option: c_int,
    arg2: c_ulong,
    arg3: c_ulong,
    arg4: c_ulong,
    arg5: c_ulong,
) -> c_int {
    let Some(address) = crate::real::PRCTL.get() else {
        return crate::real::PRCTL.fail_missing();
    };
    let install = Install::of(
        libc::SYS_prctl,
        c_long::from(option),
        arg2 as c_long,
        arg3 as c_long,
    );
    let spared = before_install(install);
    // SAFETY: prctl's definition, with the caller's arguments.
    let result = unsafe {
        std::mem::transmute::<*mut c_void, PrctlFn>(address)(option, arg2, arg3, arg4, arg5)
    };
    if result == 0 {
        after_install(install, spared);
    }
    result
}

type SyscallFn =
    unsafe extern "C" fn(c_long, c_long, c_long, c_long, c_long, c_long, c_long) -> c_long;

/// The real `syscall`, for the trampoline: null until resolved.
static SYSCALL_ADDRESS: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// The shim's `syscall`: a jump to the real one, unless the call may
/// install a seccomp filter (or the real one is not resolved yet), which
/// [`watched_syscall`] makes. Naked: `syscall` is variadic, and programs
/// call it in hot paths (futex), so it adds two compares and a jump.
///
/// # Safety
/// As for the C function.
#[cfg(all(not(test), target_arch = "x86_64"))]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall() {
    // The kernel takes the number's low 32 bits; r11 is free at a call
    // (rax's low byte counts a variadic call's vector registers).
    core::arch::naked_asm!(
        "cmp edi, {seccomp}",
        "je {watched}",
        "cmp edi, {prctl}",
        "je {watched}",
        "mov r11, qword ptr [rip + {real}]",
        "test r11, r11",
        "jz {watched}",
        "jmp r11",
        seccomp = const libc::SYS_seccomp,
        prctl = const libc::SYS_prctl,
        watched = sym watched_syscall,
        real = sym SYSCALL_ADDRESS,
    )
}

/// As above, for aarch64 (unconditional branches: conditional ones reach
/// only 1 MB).
///
/// # Safety
/// As for the C function.
#[cfg(all(not(test), target_arch = "aarch64"))]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall() {
    core::arch::naked_asm!(
        "cmp w0, #{seccomp}",
        "b.ne 2f",
        "b {watched}",
        "2:",
        "cmp w0, #{prctl}",
        "b.ne 3f",
        "b {watched}",
        "3:",
        "adrp x16, {real}",
        "ldr x16, [x16, :lo12:{real}]",
        "cbnz x16, 4f",
        "b {watched}",
        "4:",
        "br x16",
        seccomp = const libc::SYS_seccomp,
        prctl = const libc::SYS_prctl,
        watched = sym watched_syscall,
        real = sym SYSCALL_ADDRESS,
    )
}

/// `syscall` for calls that may install a filter: the real call, then a
/// note of the filter if it succeeded. Seven register-sized arguments, as
/// the variadic C function takes them on x86-64 and aarch64 Linux (on
/// x86-64 the seventh on the stack, where the trampoline's jump left it).
unsafe extern "C" fn watched_syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let Some(address) = crate::real::SYSCALL.get() else {
        return crate::real::SYSCALL.fail_missing().into();
    };
    SYSCALL_ADDRESS.store(address, Relaxed);
    let install = Install::of(number, a1, a2, a3);
    let spared = before_install(install);
    // SAFETY: syscall's definition, with the caller's arguments.
    let result = unsafe {
        std::mem::transmute::<*mut c_void, SyscallFn>(address)(number, a1, a2, a3, a4, a5, a6)
    };
    if result >= 0 {
        after_install(install, spared);
    }
    result
}

/// Before a call that may install a seccomp filter: whether the filter
/// spares the shim's own system calls, read through the kernel (a bad
/// pointer must fail the call, not crash it); when it does not, the
/// process's statistics are written now, while they still can be.
fn before_install(install: Option<Install>) -> Option<bool> {
    let install = install?;
    if !available() {
        return None;
    }
    let spared = install.spares_the_shim(&|address, local: &mut [u8]| {
        let len = local.len();
        copy(local, 1, |_| (address, len)) == 1
    });
    if spared == Some(false) {
        crate::init::before_sandbox();
    }
    spared
}

/// After a filter was installed: it binds the calling thread from now on.
/// One that does not spare the shim silences it in this process.
fn after_install(install: Option<Install>, spared: Option<bool>) {
    let Some(install) = install else {
        return;
    };
    FILTERED.store(true, Relaxed);
    let spared = spared.or_else(|| {
        // The kernel accepted the program, so its memory is readable.
        install.spares_the_shim(&|address, local: &mut [u8]| {
            // SAFETY: the kernel has just read these bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(address as *const u8, local.as_mut_ptr(), local.len())
            };
            true
        })
    });
    if spared != Some(true) {
        crate::init::enter_sandbox();
    }
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
