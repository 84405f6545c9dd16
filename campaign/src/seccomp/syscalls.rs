//! The system calls the seccomp backend can hold, as data: each one's
//! number, the shim function whose name and family it takes (so that
//! `DELAYSHIM_FUNCS`, statistics and logs use one vocabulary for both
//! backends), and where its descriptor, paths and flags are.

use delayshim_settings::{family_of, FamilyInfo};

/// Where a call's arguments are, by argument index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    /// The descriptor is argument 0 (write, fsync, fcntl, close...).
    Fd,
    /// No descriptor and no path (msync).
    Neither,
    /// A path relative to the working directory at `path`, and another
    /// (rename's and link's target) at `other`.
    Path { path: usize, other: Option<usize> },
    /// A path at `path` relative to the directory descriptor at `dirfd`,
    /// and perhaps another pair.
    At {
        dirfd: usize,
        path: usize,
        other: Option<(usize, usize)>,
    },
}

/// One system call.
#[derive(Debug, Clone, Copy)]
pub struct Syscall {
    pub nr: i64,
    /// The shim's function of the same effect, in `delayshim_settings::FAMILIES`.
    pub func: &'static str,
    pub args: Args,
    /// open's flags argument, for telling creating opens from reading ones.
    pub open_flags: Option<usize>,
}

const fn fd(nr: i64, func: &'static str) -> Syscall {
    Syscall {
        nr,
        func,
        args: Args::Fd,
        open_flags: None,
    }
}

const fn path(nr: i64, func: &'static str, path: usize, other: Option<usize>) -> Syscall {
    Syscall {
        nr,
        func,
        args: Args::Path { path, other },
        open_flags: None,
    }
}

const fn at(
    nr: i64,
    func: &'static str,
    dirfd: usize,
    path: usize,
    other: Option<(usize, usize)>,
) -> Syscall {
    Syscall {
        nr,
        func,
        args: Args::At { dirfd, path, other },
        open_flags: None,
    }
}

const fn with_flags(call: Syscall, flags: usize) -> Syscall {
    Syscall {
        open_flags: Some(flags),
        ..call
    }
}

/// Every system call the backend can hold (x86_64 numbers from libc).
pub const SYSCALLS: &[Syscall] = &[
    fd(libc::SYS_write, "write"),
    fd(libc::SYS_writev, "writev"),
    fd(libc::SYS_pwrite64, "pwrite64"),
    fd(libc::SYS_pwritev, "pwritev"),
    fd(libc::SYS_pwritev2, "pwritev2"),
    fd(libc::SYS_fcntl, "fcntl"),
    fd(libc::SYS_flock, "flock"),
    fd(libc::SYS_fsync, "fsync"),
    fd(libc::SYS_fdatasync, "fdatasync"),
    fd(libc::SYS_sync_file_range, "sync_file_range"),
    fd(libc::SYS_syncfs, "syncfs"),
    Syscall {
        nr: libc::SYS_msync,
        func: "msync",
        args: Args::Neither,
        open_flags: None,
    },
    with_flags(path(libc::SYS_open, "open", 0, None), 1),
    with_flags(at(libc::SYS_openat, "openat", 0, 1, None), 2),
    path(libc::SYS_creat, "creat", 0, None),
    fd(libc::SYS_close, "close"),
    path(libc::SYS_rename, "rename", 0, Some(1)),
    at(libc::SYS_renameat, "renameat", 0, 1, Some((2, 3))),
    at(libc::SYS_renameat2, "renameat2", 0, 1, Some((2, 3))),
    path(libc::SYS_unlink, "unlink", 0, None),
    at(libc::SYS_unlinkat, "unlinkat", 0, 1, None),
    path(libc::SYS_link, "link", 1, Some(0)),
    at(libc::SYS_linkat, "linkat", 2, 3, Some((0, 1))),
    path(libc::SYS_symlink, "symlink", 1, None),
    at(libc::SYS_symlinkat, "symlinkat", 1, 2, None),
    path(libc::SYS_mkdir, "mkdir", 0, None),
    at(libc::SYS_mkdirat, "mkdirat", 0, 1, None),
    path(libc::SYS_rmdir, "rmdir", 0, None),
    fd(libc::SYS_ftruncate, "ftruncate"),
    path(libc::SYS_truncate, "truncate", 0, None),
    fd(libc::SYS_fallocate, "fallocate"),
    fd(libc::SYS_read, "read"),
    fd(libc::SYS_readv, "readv"),
    fd(libc::SYS_pread64, "pread64"),
    fd(libc::SYS_preadv, "preadv"),
    fd(libc::SYS_preadv2, "preadv2"),
];

impl Syscall {
    /// The system call numbered `nr`, if the backend knows it.
    pub fn by_nr(nr: i64) -> Option<&'static Syscall> {
        SYSCALLS.iter().find(|s| s.nr == nr)
    }

    pub fn family(&self) -> &'static FamilyInfo {
        family_of(self.func).expect("every system call names a shim function")
    }

    /// The index of this call in [`SYSCALLS`], for per-call counters.
    pub fn index(&self) -> usize {
        SYSCALLS
            .iter()
            .position(|s| s.nr == self.nr)
            .expect("a call of the table")
    }

    /// Whether the user's selection of function names (`DELAYSHIM_FUNCS`
    /// expanded to names) reaches this call: its own name, or any function
    /// of its family with the same effect at this boundary (glibc's `pwrite`
    /// and `pwrite64` both end in the pwrite64 system call).
    pub fn selected_by(&self, names: &[&str]) -> bool {
        names.contains(&self.func) || self.aliases().iter().any(|a| names.contains(a))
    }

    /// The library functions that end in this system call.
    fn aliases(&self) -> &'static [&'static str] {
        match self.func {
            "pwrite64" => &["pwrite", "__pwrite64"],
            "pwritev" => &["pwritev64"],
            "pwritev2" => &["pwritev64v2"],
            "fcntl" => &["fcntl64", "__fcntl"],
            "flock" => &["lockf", "lockf64"],
            "openat" => &[
                "open",
                "creat",
                "open64",
                "openat64",
                "__open_2",
                "__open64_2",
                "__openat_2",
                "__openat64_2",
                "creat64",
            ],
            "open" => &["open64", "__open_2", "__open64_2"],
            "creat" => &["creat64"],
            "ftruncate" => &["ftruncate64"],
            "truncate" => &["truncate64"],
            "fallocate" => &["fallocate64", "posix_fallocate", "posix_fallocate64"],
            "read" => &["__read_chk"],
            "pread64" => &["pread", "__pread64", "__pread_chk", "__pread64_chk"],
            "preadv" => &["preadv64"],
            "preadv2" => &["preadv64v2"],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_names_a_shim_function_once() {
        for (i, call) in SYSCALLS.iter().enumerate() {
            assert!(family_of(call.func).is_some(), "{}", call.func);
            for alias in call.aliases() {
                assert_eq!(
                    family_of(alias).map(|f| f.name),
                    Some(call.family().name),
                    "{alias}"
                );
            }
            assert!(SYSCALLS[i + 1..].iter().all(|s| s.nr != call.nr));
        }
        assert_eq!(Syscall::by_nr(libc::SYS_pwrite64).unwrap().func, "pwrite64");
        assert!(Syscall::by_nr(libc::SYS_getpid).is_none());
    }

    #[test]
    fn library_names_select_their_system_call() {
        let pwrite = Syscall::by_nr(libc::SYS_pwrite64).unwrap();
        assert!(pwrite.selected_by(&["pwrite"]));
        assert!(!pwrite.selected_by(&["write"]));
    }
}
