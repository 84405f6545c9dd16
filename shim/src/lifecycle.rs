//! Exported functions about the process's life rather than its data: a
//! sandbox of the program's own (`prctl`, `syscall`, which may install a
//! seccomp filter) and its ways out (`_exit`, `_Exit`, `quick_exit`). The
//! top layer: it calls into loading and output, and nothing calls it.

// Unit tests compile the exported functions out.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::{c_int, c_long, c_ulong, c_void};
use std::sync::atomic::Ordering::Relaxed;

use crate::sandbox::Install;

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
        real = sym crate::real::SYSCALL_ADDRESS,
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
        real = sym crate::real::SYSCALL_ADDRESS,
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
    crate::real::SYSCALL_ADDRESS.store(address, Relaxed);
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
    if !crate::peek::available() {
        return None;
    }
    let spared = install.spares_the_shim(&|address, local: &mut [u8]| {
        let len = local.len();
        crate::peek::copy(local, 1, |_| (address, len)) == 1
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
    crate::peek::note_filter();
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

/// What a process leaving by a way that skips atexit handlers still does:
/// its exit event, its pct slot back, its statistics line.
fn leaving() {
    crate::track::exiting();
    crate::pct::leave();
    crate::init::write_stats();
}

/// `_exit` and `_Exit` skip atexit handlers: programs such as Python's
/// multiprocessing end their fork children with them, and signal handlers
/// call them, so the statistics are written here first, without
/// allocating (but not by a vfork child, which ends with `_exit` when its
/// exec fails and shares its parent's counters).
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn _exit(status: c_int) -> ! {
    leaving();
    crate::init::exit_now(status)
}

#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn _Exit(status: c_int) -> ! {
    leaving();
    crate::init::exit_now(status)
}

/// `quick_exit` runs only `at_quick_exit` handlers, not `atexit` ones.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn quick_exit(status: c_int) -> ! {
    leaving();
    type QuickExit = unsafe extern "C" fn(c_int) -> !;
    if let Some(real) = crate::real::QUICK_EXIT.get() {
        // SAFETY: the real quick_exit.
        unsafe { std::mem::transmute::<*mut std::ffi::c_void, QuickExit>(real)(status) }
    }
    crate::init::exit_now(status)
}
