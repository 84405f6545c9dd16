//! The exported wrappers, generated from the list in [`crate::families`].
//!
//! Each exported name is a two-instruction trampoline that passes the
//! caller's return address (for call sites) in the argument register after
//! the function's own, then jumps to the function's `inner`, which tests
//! the pass-through case first and keeps everything else out of line.
//!
//! `inner`, `counted` and `slow` share the C calling convention so that
//! each hands on to the next, and the two fast paths to the real function,
//! with a jump: the real function then returns straight to the caller. A
//! wrapper that calls the real function instead adds a return after the
//! system call, which mispredicts when the kernel's return-stack
//! mitigations have refilled the return stack: about 8 ns a call, most of
//! what counting cost (`scripts/bench.sh overhead`).

// Unit tests compile the exported trampolines out.
#![cfg_attr(test, allow(unused_imports, unused_macros, dead_code))]

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

use libc::{iovec, mode_t, off64_t, off_t, size_t, ssize_t};

use crate::call::Call;
use crate::intercept::How;
use crate::table::Func;

/// The register that carries the caller's address: the first argument
/// register the function does not use.
#[cfg(target_arch = "x86_64")]
macro_rules! caller_register {
    () => {
        "rdi"
    };
    ($a:ident) => {
        "rsi"
    };
    ($a:ident $b:ident) => {
        "rdx"
    };
    ($a:ident $b:ident $c:ident) => {
        "rcx"
    };
    ($a:ident $b:ident $c:ident $d:ident) => {
        "r8"
    };
    ($a:ident $b:ident $c:ident $d:ident $e:ident) => {
        "r9"
    };
}

#[cfg(target_arch = "aarch64")]
macro_rules! caller_register {
    () => {
        "x0"
    };
    ($a:ident) => {
        "x1"
    };
    ($a:ident $b:ident) => {
        "x2"
    };
    ($a:ident $b:ident $c:ident) => {
        "x3"
    };
    ($a:ident $b:ident $c:ident $d:ident) => {
        "x4"
    };
    ($a:ident $b:ident $c:ident $d:ident $e:ident) => {
        "x5"
    };
}

/// The caller's return address into `$register`, then on to `$inner`.
#[cfg(target_arch = "x86_64")]
macro_rules! trampoline {
    ($register:expr, $inner:path) => {
        core::arch::naked_asm!(
            concat!("mov ", $register, ", qword ptr [rsp]"),
            "jmp {inner}",
            inner = sym $inner,
        )
    };
}

#[cfg(target_arch = "aarch64")]
macro_rules! trampoline {
    ($register:expr, $inner:path) => {
        core::arch::naked_asm!(
            concat!("mov ", $register, ", x30"),
            "b {inner}",
            inner = sym $inner,
        )
    };
}

macro_rules! real_fn_type {
    ([] ($($ty:ty),*) -> $ret:ty) => { unsafe extern "C" fn($($ty),*) -> $ret };
    ([$va:ty] ($($ty:ty),*) -> $ret:ty) => { unsafe extern "C" fn($($ty,)* ...) -> $ret };
}

macro_rules! define_exports {
    ($(
        $family:ident {
            $(fn $name:ident($($arg:ident: $ty:ty),* $(; variadic $va:ident: $vty:ty)?) -> $ret:ty
                => $call:expr $(, short($count:ident))? $(, nonblocking($nb:ident => $nbexpr:expr))? $(, errors: $errors:ident)?;)+
        }
    )+) => {
        $($(
            #[allow(non_snake_case)]
            mod $name {
                use super::*;

                type RealFn = real_fn_type!([$($vty)?] ($($ty),*) -> $ret);

                /// The caller's arguments, then its return address. The
                /// pass-through test first, with nothing else in the way: a
                /// load, a test, and a jump to the real function.
                pub(super) unsafe extern "C" fn inner($($arg: $ty,)* $($va: $vty,)? caller: usize) -> $ret {
                    if let Some(address) = crate::real::resolved(Func::$name) {
                        if crate::intercept::passes_through(Func::$name) {
                            // SAFETY: dlsym found this name's definition, whose C
                            // prototype RealFn spells out; the arguments pass on unchanged.
                            return unsafe { std::mem::transmute::<*mut c_void, RealFn>(address)($($arg,)* $($va)?) };
                        }
                    }
                    // SAFETY: the caller's arguments, passed on unchanged.
                    unsafe { counted($($arg,)* $($va,)? caller) }
                }

                /// Counted only, or on to [`slow`] (which also counts a
                /// thread's first call, claiming its row).
                #[inline(never)]
                unsafe extern "C" fn counted($($arg: $ty,)* $($va: $vty,)? caller: usize) -> $ret {
                    if crate::real::resolved(Func::$name).is_some()
                        && crate::intercept::counts_only(Func::$name)
                        && crate::stats::count_call_at_home(Func::$name)
                    {
                        // Loaded again rather than kept in a register the
                        // count needs: the jump reads it from memory.
                        if let Some(address) = crate::real::resolved(Func::$name) {
                            // SAFETY: as above.
                            return unsafe { std::mem::transmute::<*mut c_void, RealFn>(address)($($arg,)* $($va)?) };
                        }
                    }
                    // SAFETY: the caller's arguments, passed on unchanged.
                    unsafe { slow($($arg,)* $($va,)? caller) }
                }

                #[cold]
                #[inline(never)]
                unsafe extern "C" fn slow($($arg: $ty,)* $($va: $vty,)? caller: usize) -> $ret {
                    let Some(address) = crate::real::address(Func::$name) else {
                        return crate::real::missing(Func::$name);
                    };
                    // SAFETY: as above.
                    let real = unsafe { std::mem::transmute::<*mut c_void, RealFn>(address) };
                    // Access tracking (`--conflicts`): nothing without a region.
                    #[allow(clippy::unnecessary_cast)]
                    let tracked = crate::track::before(Func::$name, &[$($arg as u64,)* $($va as u64)?]);
                    let result = crate::intercept::intercept(
                        Func::$name,
                        caller,
                        || {
                            let call: Call = $call;
                            $(let call = call.with_count($count);)?
                            call
                        },
                        #[allow(unused_variables)]
                        |how: How| {
                            $(let $count = how.count($count);)?
                            $(let $nb = if how == How::NonBlocking { $nbexpr } else { $nb };)?
                            // SAFETY: the caller's arguments, or the shim's
                            // shorter count or non-blocking command.
                            unsafe { real($($arg,)* $($va)?) }
                        },
                    );
                    if let Some(pending) = tracked {
                        #[allow(clippy::unnecessary_cast)]
                        crate::track::after(pending, caller, result as i64);
                    }
                    result
                }
            }

            #[cfg(not(test))]
            #[doc = concat!("The shim's `", stringify!($name), "`: the real one, counted, delayed or failed as configured.")]
            ///
            /// # Safety
            /// As for the C function: the arguments must be what it accepts.
            #[unsafe(naked)]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $name($($arg: $ty,)* $($va: $vty)?) -> $ret {
                trampoline!(caller_register!($($arg)* $($va)?), $name::inner)
            }
        )+)+
    };
}

crate::families::with_families!(define_exports);
