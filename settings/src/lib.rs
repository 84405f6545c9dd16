//! Every `DELAYSHIM_*` variable the shim reads, defined once.
//!
//! The shim checks names against [`SETTINGS`]; the `delayshim` command turns
//! each user-facing entry into an option of `run` and `fuzz`; a test checks
//! that the README's settings table names every one. Adding a setting here
//! makes it reachable everywhere, so a new variable cannot drift between
//! the three. No dependencies: the shim runs inside other people's
//! processes.

pub mod region;

/// How a setting's value is written, for options that convert units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A number of microseconds; the command also accepts `500us`, `2ms`, `1s`.
    Micros,
    /// A range of microseconds, `MIN-MAX`; the command accepts units on each end.
    MicrosRange,
    /// Anything else, passed through as written.
    Text,
    /// A file path; the command makes it absolute.
    Path,
}

/// One `DELAYSHIM_*` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable.
    pub var: &'static str,
    /// The long option of `delayshim run` and `delayshim fuzz`; `None` for
    /// a variable the shim sets for itself.
    pub option: Option<&'static str>,
    /// The value's placeholder in `--help`.
    pub value_name: &'static str,
    pub kind: Kind,
    /// The default, as the README's table shows it.
    pub default: &'static str,
    /// What the shim expects, in the words of its error message.
    pub expected: &'static str,
    /// One line for `--help` and the README.
    pub help: &'static str,
}

const fn setting(
    var: &'static str,
    option: &'static str,
    value_name: &'static str,
    kind: Kind,
    default: &'static str,
    expected: &'static str,
    help: &'static str,
) -> Setting {
    Setting {
        var,
        option: Some(option),
        value_name,
        kind,
        default,
        expected,
        help,
    }
}

/// Every variable, in the order the README lists them.
pub const SETTINGS: &[Setting] = &[
    setting(
        "DELAYSHIM_STRATEGY",
        "strategy",
        "NAME",
        Kind::Text,
        "every",
        "every, sparse, victims, sites or pct",
        "how calls are chosen for a delay: every selected call (every), a few change points per thread (sparse), only victim threads (victims), a random quarter of call sites (sites), or priorities across the run's processes and threads (pct: needs the run's region, which delayshim run and fuzz make)",
    ),
    // SQLite's critical sections last tens of microseconds, so a mean of a
    // few hundred stretches them by an order of magnitude, enough to reorder
    // competing processes, while the 8x8x100 driver still finishes in seconds.
    setting(
        "DELAYSHIM_MEAN_US",
        "mean",
        "US",
        Kind::Micros,
        "200",
        "a number of microseconds from 0 to 60000000",
        "mean delay in microseconds (every, sites; sparse sleeps 10x this)",
    ),
    setting(
        "DELAYSHIM_DIST",
        "dist",
        "DIST",
        Kind::Text,
        "exp",
        "exp, uniform or fixed",
        "delay distribution: exp (like expovariate), uniform (0 to twice the mean) or fixed",
    ),
    setting(
        "DELAYSHIM_MAX_US",
        "max",
        "US",
        Kind::Micros,
        "none",
        "a number of microseconds from 0 to 60000000",
        "cap on one delay, in microseconds",
    ),
    setting(
        "DELAYSHIM_PROB",
        "prob",
        "P",
        Kind::Text,
        "1",
        "a probability from 0 to 1",
        "probability that a selected call is delayed (every)",
    ),
    setting(
        "DELAYSHIM_FUNCS",
        "funcs",
        "LIST",
        Kind::Text,
        "write,pwrite,fcntl,flock,fsync,open,close,rename,unlink,link,mkdir,truncate",
        "a comma-separated list of families, function names, or all",
        "families or function names to delay, or all",
    ),
    setting(
        "DELAYSHIM_WHEN",
        "when",
        "WHEN",
        Kind::Text,
        "before",
        "before, after or both",
        "sleep before the real call, after it, or both",
    ),
    setting(
        "DELAYSHIM_LOCKS",
        "locks",
        "WHICH",
        Kind::Text,
        "all",
        "all, acquire, release or locks",
        "which fcntl, flock and lockf calls: all, acquire, release, or locks (acquire and release only)",
    ),
    setting(
        "DELAYSHIM_FCNTL",
        "fcntl",
        "WHICH",
        Kind::Text,
        "all",
        "all, lock, unlock or locks",
        "old name of DELAYSHIM_LOCKS (lock = acquire, unlock = release)",
    ),
    setting(
        "DELAYSHIM_CALLS",
        "calls",
        "WHICH",
        Kind::Text,
        "effects",
        "effects or all",
        "delay only calls whose effect other processes can see (lock and unlock, writes, syncs, creating, renaming and removing names; reads when a read family is selected), or all selected calls",
    ),
    setting(
        "DELAYSHIM_FDS",
        "fds",
        "KIND",
        Kind::Text,
        "files",
        "files or all",
        "delay calls on regular files and directories only (files), or on pipes, sockets and terminals too (all)",
    ),
    setting(
        "DELAYSHIM_PATHS",
        "paths",
        "GLOBS",
        Kind::Text,
        "every file",
        "comma-separated non-empty glob patterns",
        "only delay calls on files matching these globs (relative ones from the working directory)",
    ),
    setting(
        "DELAYSHIM_SEED",
        "seed",
        "SEED",
        Kind::Text,
        "random, reported",
        "a 64-bit unsigned integer (decimal or 0x hex)",
        "seed of every random choice; one per process tree",
    ),
    setting(
        "DELAYSHIM_DEPTH",
        "depth",
        "D",
        Kind::Text,
        "3",
        "a whole number from 1 to 64",
        "sparse: change points (long delays) per thread",
    ),
    setting(
        "DELAYSHIM_HORIZON",
        "horizon",
        "CALLS",
        Kind::Text,
        "auto",
        "auto or a whole number of calls from 1 to 1000000000",
        "sparse: calls a thread is expected to make (change points fall uniformly among them); auto spreads them log-uniformly over the first 2^20 calls",
    ),
    setting(
        "DELAYSHIM_VICTIM_PROB",
        "victim-prob",
        "P",
        Kind::Text,
        "0.5",
        "a probability from 0 to 1",
        "victims: probability that a thread is a victim",
    ),
    setting(
        "DELAYSHIM_SCALE_US",
        "scale",
        "MIN-MAX",
        Kind::MicrosRange,
        "10-10000",
        "MIN-MAX microseconds, 0 < MIN <= MAX <= 60000000",
        "victims: each process draws its delay scale log-uniformly from this range",
    ),
    setting(
        "DELAYSHIM_SITE_PROB",
        "site-prob",
        "P",
        Kind::Text,
        "0.25",
        "a probability from 0 to 1",
        "sites: probability that a call site is switched on for this seed",
    ),
    setting(
        "DELAYSHIM_FIRE_PROB",
        "fire-prob",
        "P",
        Kind::Text,
        "0.25",
        "a probability from 0 to 1",
        "sites: probability that a call at an active site is delayed",
    ),
    setting(
        "DELAYSHIM_BUDGET",
        "budget",
        "SHARE",
        Kind::Text,
        "0.9",
        "a share of elapsed time from 0.01 to 1",
        "most of a thread's elapsed time that may be spent in injected sleep; delays stop while over it",
    ),
    setting(
        "DELAYSHIM_FAULTS",
        "faults",
        "RULES",
        Kind::Text,
        "none",
        "comma-separated FUNCTION_OR_FAMILY:KIND:PROBABILITY rules",
        "inject errors: fsync:EIO:0.01,write:short:0.05 (KIND is an errno name or short)",
    ),
    setting(
        "DELAYSHIM_STATS",
        "stats",
        "FILE",
        Kind::Path,
        "off",
        "stderr or a file path",
        "append one JSON line of statistics per process at exit",
    ),
    setting(
        "DELAYSHIM_LOG",
        "log",
        "FILE",
        Kind::Path,
        "off",
        "stderr or a file path",
        "append one line per injected delay",
    ),
    setting(
        "DELAYSHIM_RECORD",
        "record",
        "FILE",
        Kind::Path,
        "off",
        "a file path",
        "append one record per injected delay or fault, for replay and minimizing",
    ),
    setting(
        "DELAYSHIM_REPLAY",
        "replay",
        "FILE",
        Kind::Path,
        "off",
        "a file path",
        "sleep exactly the delays recorded in this file, and nothing else",
    ),
    setting(
        "DELAYSHIM_ENABLE",
        "enable",
        "0|1",
        Kind::Text,
        "1",
        "0 or 1",
        "0 turns every delay off (calls are still counted)",
    ),
    Setting {
        var: TREE_VAR,
        option: None,
        value_name: "",
        kind: Kind::Text,
        default: "",
        expected: "set by the shim for the processes it starts",
        help: "the seed and place in the process tree, passed on to exec'd descendants",
    },
    Setting {
        var: RUN_DIR_VAR,
        option: None,
        value_name: "",
        kind: Kind::Text,
        default: "",
        expected: "set by delayshim fuzz --fresh-dir for each run",
        help: "the run's own empty working directory (the shim ignores it)",
    },
    Setting {
        var: region::REGION_VAR,
        option: None,
        value_name: "",
        kind: Kind::Path,
        default: "",
        expected: "set by delayshim for the processes of one run",
        help: "the run's shared region, where the shim appends file accesses for `--conflicts`",
    },
];

/// `delayshim fuzz --fresh-dir`: each run's own working directory, for the
/// program and its --setup and --check commands. The shim reads nothing
/// from it; it is a setting so that the shim does not refuse it.
pub const RUN_DIR_VAR: &str = "DELAYSHIM_RUN_DIR";

/// The variable through which a process passes its tree's seed and its
/// own place in the tree to the programs it executes.
pub const TREE_VAR: &str = "DELAYSHIM_TREE";

/// The setting called `var`.
pub fn find(var: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.var == var)
}

/// A group of interposed functions that a user selects by one name in
/// `DELAYSHIM_FUNCS`. The shim's wrappers are generated from its own table;
/// a shim test checks that it exports exactly these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyInfo {
    pub name: &'static str,
    /// Every libc symbol of the family that the shim exports.
    pub functions: &'static [&'static str],
    /// Delayed when `DELAYSHIM_FUNCS` is not set.
    pub default_on: bool,
    /// What its calls do, for `delayshim check` and the README.
    pub does: &'static str,
}

const fn family(
    name: &'static str,
    default_on: bool,
    does: &'static str,
    functions: &'static [&'static str],
) -> FamilyInfo {
    FamilyInfo {
        name,
        functions,
        default_on,
        does,
    }
}

/// Every family, in the order the README lists them.
pub const FAMILIES: &[FamilyInfo] = &[
    family(
        "write",
        true,
        "write at the file offset",
        &["write", "writev"],
    ),
    family(
        "pwrite",
        true,
        "write at a given offset",
        &[
            "pwrite",
            "pwrite64",
            "__pwrite64",
            "pwritev",
            "pwritev64",
            "pwritev2",
            "pwritev64v2",
        ],
    ),
    family(
        "fcntl",
        true,
        "fcntl locks and other commands",
        &["fcntl", "fcntl64", "__fcntl"],
    ),
    family(
        "flock",
        true,
        "flock and lockf locks",
        &["flock", "lockf", "lockf64"],
    ),
    family(
        "fsync",
        true,
        "flush to disk",
        &["fsync", "fdatasync", "sync_file_range", "syncfs", "msync"],
    ),
    family(
        "open",
        true,
        "open or create a file",
        &[
            "open",
            "open64",
            "openat",
            "openat64",
            "creat",
            "creat64",
            "__open_2",
            "__open64_2",
            "__openat_2",
            "__openat64_2",
        ],
    ),
    family(
        "close",
        true,
        "close a descriptor (drops its fcntl locks)",
        &["close"],
    ),
    family(
        "rename",
        true,
        "rename a file",
        &["rename", "renameat", "renameat2"],
    ),
    family("unlink", true, "remove a file", &["unlink", "unlinkat"]),
    family(
        "link",
        true,
        "make a hard or symbolic link",
        &["link", "linkat", "symlink", "symlinkat"],
    ),
    family(
        "mkdir",
        true,
        "make or remove a directory",
        &["mkdir", "mkdirat", "rmdir"],
    ),
    family(
        "truncate",
        true,
        "change a file's size",
        &[
            "ftruncate",
            "ftruncate64",
            "truncate",
            "truncate64",
            "fallocate",
            "fallocate64",
            "posix_fallocate",
            "posix_fallocate64",
        ],
    ),
    family(
        "read",
        false,
        "read at the file offset",
        &["read", "readv", "__read_chk"],
    ),
    family(
        "pread",
        false,
        "read at a given offset",
        &[
            "pread",
            "pread64",
            "__pread64",
            "__pread_chk",
            "__pread64_chk",
            "preadv",
            "preadv64",
            "preadv2",
            "preadv64v2",
        ],
    ),
];

/// The family of the function called `function`.
pub fn family_of(function: &str) -> Option<&'static FamilyInfo> {
    FAMILIES.iter().find(|f| f.functions.contains(&function))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        for (i, a) in SETTINGS.iter().enumerate() {
            assert!(a.var.starts_with("DELAYSHIM_"), "{}", a.var);
            for b in &SETTINGS[i + 1..] {
                assert_ne!(a.var, b.var);
                assert!(a.option.is_none() || a.option != b.option, "{}", a.var);
            }
        }
        assert_eq!(find("DELAYSHIM_TREE").and_then(|s| s.option), None);
        assert_eq!(find("DELAYSHIM_MEAN_US").unwrap().kind, Kind::Micros);
    }

    #[test]
    fn every_function_is_in_one_family() {
        let all: Vec<&str> = FAMILIES
            .iter()
            .flat_map(|f| f.functions.iter().copied())
            .collect();
        for (i, name) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(name), "{name} twice");
        }
        assert_eq!(family_of("pwrite64").unwrap().name, "pwrite");
        let defaults: Vec<&str> = FAMILIES
            .iter()
            .filter(|f| f.default_on)
            .map(|f| f.name)
            .collect();
        assert_eq!(defaults.join(","), find("DELAYSHIM_FUNCS").unwrap().default);
    }
}
