//! The interposed functions, grouped in families. Adding a family or an
//! alias is a few lines in the `interpose!` call at the bottom.

// Unit tests compile the wrappers out, leaving their imports unused.
#![cfg_attr(test, allow(unused_imports, unused_macros))]

use std::ffi::{c_int, c_ulong, c_void, CStr};

use libc::{iovec, off64_t, off_t, size_t, ssize_t};

use crate::fcntl::FcntlCall;

/// A group of functions that a user selects together by one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Pwrite,
    Fcntl,
    Fsync,
    Pread,
}

impl Family {
    pub const ALL: [Family; 4] = [Family::Pwrite, Family::Fcntl, Family::Fsync, Family::Pread];

    /// The name a user selects the family by in `DELAYSHIM_FUNCS`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Pwrite => "pwrite",
            Family::Fcntl => "fcntl",
            Family::Fsync => "fsync",
            Family::Pread => "pread",
        }
    }
}

/// One interposed function.
#[derive(Debug)]
pub struct FuncInfo {
    pub name: &'static str,
    pub cname: &'static CStr,
    pub family: Family,
}

/// Selected functions as a bit set indexed by [`Func`].
pub type FuncSet = u64;

/// Generates, from one list: the [`Func`] index enum, the [`FUNCS`] table
/// and an exported wrapper per function that calls
/// [`crate::intercept::intercept_slow`] around the real function.
///
/// Every function's first argument is a file descriptor. A variadic real
/// function (fcntl) takes its optional argument after `; variadic`, as one
/// pointer-sized integer passed through unchanged: the x86-64 and aarch64
/// Linux calling conventions pass it in the same register either way.
/// `=> expr` describes the call for filtering and logging.
macro_rules! interpose {
    ($(
        $family:ident {
            $(fn $name:ident($fd:ident: c_int $(, $arg:ident: $ty:ty)* $(; variadic $va:ident: $vty:ty)?) -> $ret:ty
                $(=> $detail:expr)?;)+
        }
    )+) => {
        /// Index of each interposed function in [`FUNCS`].
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Func { $($($name,)+)+ }

        /// Every interposed function, in [`Func`] order.
        pub const FUNCS: &[FuncInfo] = &[$($(
            FuncInfo {
                name: stringify!($name),
                cname: match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                    Ok(name) => name,
                    Err(_) => panic!("function names have no NUL"),
                },
                family: Family::$family,
            },
        )+)+];

        $($(
            // Unit tests link this crate into a test harness, which must not
            // interpose its own libc calls.
            #[cfg(not(test))]
            #[doc = concat!("The shim's `", stringify!($name), "`: the real one, with delays around it.")]
            ///
            /// # Safety
            /// As for the C function: the arguments must be what it accepts.
            #[no_mangle]
            pub unsafe extern "C" fn $name($fd: c_int $(, $arg: $ty)* $(, $va: $vty)?) -> $ret {
                type RealFn = real_fn_type!([$($vty)?] ($($ty),*) -> $ret);

                // Everything but the pass-through, out of line so that the
                // exported function keeps no frame: two loads, two tests
                // and a jump to the real function.
                #[cold]
                #[inline(never)]
                unsafe fn slow($fd: c_int $(, $arg: $ty)* $(, $va: $vty)?) -> $ret {
                    let Some(address) = crate::real::address(Func::$name) else {
                        return crate::real::missing(Func::$name);
                    };
                    // SAFETY: dlsym found this name's definition, whose C
                    // prototype RealFn spells out.
                    let real = unsafe { std::mem::transmute::<*mut c_void, RealFn>(address) };
                    crate::intercept::intercept_slow(
                        Func::$name,
                        $fd,
                        || -> Option<FcntlCall> { $(return Some($detail);)? #[allow(unreachable_code)] None },
                        // SAFETY: the caller's arguments, passed on unchanged.
                        || unsafe { real($fd $(, $arg)* $(, $va)?) },
                    )
                }

                match crate::real::resolved(Func::$name) {
                    Some(address) if crate::intercept::passes_through(Func::$name) => {
                        // SAFETY: dlsym found this name's definition, whose C
                        // prototype RealFn spells out; the caller's arguments
                        // pass on unchanged.
                        unsafe { std::mem::transmute::<*mut c_void, RealFn>(address)($fd $(, $arg)* $(, $va)?) }
                    }
                    // SAFETY: the caller's arguments, passed on unchanged.
                    _ => unsafe { slow($fd $(, $arg)* $(, $va)?) },
                }
            }
        )+)+
    };
}

macro_rules! real_fn_type {
    ([] ($($ty:ty),*) -> $ret:ty) => { unsafe extern "C" fn(c_int, $($ty),*) -> $ret };
    ([$va:ty] ($($ty:ty),*) -> $ret:ty) => { unsafe extern "C" fn(c_int, $($ty,)* ...) -> $ret };
}

interpose! {
    Pwrite {
        fn pwrite(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t;
        fn pwrite64(fd: c_int, buf: *const c_void, count: size_t, offset: off64_t) -> ssize_t;
        fn __pwrite64(fd: c_int, buf: *const c_void, count: size_t, offset: off64_t) -> ssize_t;
        fn pwritev(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t;
        fn pwritev64(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off64_t) -> ssize_t;
        fn pwritev2(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t, flags: c_int) -> ssize_t;
        fn pwritev64v2(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off64_t, flags: c_int) -> ssize_t;
    }
    Fcntl {
        fn fcntl(fd: c_int, cmd: c_int; variadic arg: c_ulong) -> c_int => FcntlCall::new(cmd, arg);
        fn fcntl64(fd: c_int, cmd: c_int; variadic arg: c_ulong) -> c_int => FcntlCall::new(cmd, arg);
        fn __fcntl(fd: c_int, cmd: c_int; variadic arg: c_ulong) -> c_int => FcntlCall::new(cmd, arg);
    }
    Fsync {
        fn fsync(fd: c_int) -> c_int;
        fn fdatasync(fd: c_int) -> c_int;
    }
    Pread {
        fn pread(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t;
        fn pread64(fd: c_int, buf: *mut c_void, count: size_t, offset: off64_t) -> ssize_t;
        fn __pread64(fd: c_int, buf: *mut c_void, count: size_t, offset: off64_t) -> ssize_t;
        fn __pread_chk(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t, buflen: size_t) -> ssize_t;
        fn __pread64_chk(fd: c_int, buf: *mut c_void, count: size_t, offset: off64_t, buflen: size_t) -> ssize_t;
        fn preadv(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t;
        fn preadv64(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off64_t) -> ssize_t;
        fn preadv2(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t, flags: c_int) -> ssize_t;
        fn preadv64v2(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off64_t, flags: c_int) -> ssize_t;
    }
}

const _: () = assert!(
    FUNCS.len() <= FuncSet::BITS as usize,
    "FuncSet holds one bit per function"
);

/// The functions of `family`, as a set.
pub fn family_set(family: Family) -> FuncSet {
    FUNCS
        .iter()
        .enumerate()
        .filter(|(_, info)| info.family == family)
        .fold(0, |set, (index, _)| set | 1 << index)
}

/// The index of the function called `name`.
pub fn func_named(name: &str) -> Option<usize> {
    FUNCS.iter().position(|info| info.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_enum_order() {
        assert_eq!(FUNCS[Func::pwrite64 as usize].name, "pwrite64");
        assert_eq!(FUNCS[Func::fdatasync as usize].family, Family::Fsync);
        assert_eq!(
            FUNCS[Func::preadv64v2 as usize].cname.to_bytes(),
            b"preadv64v2"
        );
    }

    #[test]
    fn families_partition_the_functions() {
        let all = Family::ALL.iter().fold(0, |set, &f| {
            assert_eq!(set & family_set(f), 0, "{f:?} overlaps another family");
            set | family_set(f)
        });
        assert_eq!(all.count_ones() as usize, FUNCS.len());
        assert_eq!(family_set(Family::Fsync).count_ones(), 2);
    }
}
