//! `libdelayshim.so`: sleeps around the calls through which storage code
//! races (writes, locks, syncs, and changes to names: open, rename, link,
//! unlink), beneath unmodified programs, and optionally makes them fail.
//!
//! Load it with `LD_PRELOAD=/abs/path/libdelayshim.so PROGRAM`. The data
//! flows one way:
//!
//! ```text
//! exported trampoline (exports, from the list in families)
//!   -> pass-through test: one load, one test, jump to the real function
//!   -> count (stats) -> Call (call: function, descriptor or path, kind)
//!   -> filters (intercept: DELAYSHIM_FUNCS, LOCKS, FDS, PATHS)
//!   -> Decision (replay, or strategy::decide: every | sparse | victims | sites, faults, budget)
//!   -> record and log (record), counts (stats), all through output
//!   -> sleep before, real call or fault, sleep after
//! ```
//!
//! Everything between an exported function and the real call, and in
//! `_exit`, is async-signal-safe: no allocation, no locks, no stdio, fixed
//! buffers of the thread's own, and raw system calls for the shim's own
//! I/O. Allocation, parsing and opening files happen once, at load
//! ([`config`], `init`). The real call's result and `errno` reach the
//! caller untouched unless a fault was asked for.

//! The modules form layers, each importing only from those below it (a
//! unit test, `modules_import_each_other_in_layers`, keeps it so):
//!
//! ```text
//! exports, exec, lifecycle,       every exported symbol (mapping: mmap,
//! mapping, closing                seen only while tracking; closing: the
//!                                 ways descriptors close unseen by exports)
//! init                            load, fork handlers, exit
//! intercept                       the call pipeline, top to bottom
//! track                           access events for --conflicts
//! descriptors                     what each descriptor is, cached for track
//! record, process, strategy       output of decisions; per-process and
//! replay, pool, sites, config     per-thread state; deciding; settings
//! call, stats, real, delay,       describing a call (no side effects),
//! decision, faults, locks, table  counting, real functions, sleeping
//! region                          the run's shared region (mapped, appended)
//! output, peek, guard, sandbox,   leaves: raw system calls, errno,
//! errno, families                  the function list (hashing, drawing
//!                                 delays, globs and errno names are in
//!                                 the delayshim-decide crate)
//! ```
//!
// Every unsafe block says why it is sound (CI denies warnings).
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!(
    "delayshim supports glibc Linux on x86-64 and aarch64 only: its wrappers \
     pass variadic arguments as one pointer-sized integer and the caller's \
     address in an argument register, which is only known to be correct there"
);

pub mod call;
mod closing;
pub mod config;
mod decision;
pub mod delay;
mod descriptors;
mod errno;
mod exec;
mod exports;
mod families;
pub mod faults;
mod guard;

mod init;
pub mod intercept;
mod lifecycle;
pub mod locks;
mod mapping;
mod output;
mod pct;
mod peek;
mod pool;
mod process;
mod real;
mod record;
mod region;
mod replay;
mod sandbox;
mod sites;
pub mod stats;
pub mod strategy;
pub mod table;
mod track;

/// Held by the unit tests that change or count in process-wide state (the
/// seed and lineage, a simulated fork child's reset of the statistics), so
/// they do not see each other's changes.
#[cfg(test)]
pub(crate) static PROCESS_STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod layer_tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// Each module's `crate::NAME` references in code (not comments, not
    /// its unit tests).
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let sources: BTreeMap<String, String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "rs"))
            .map(|path| {
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .filter(|(name, _)| name != "lib")
            .collect();
        let names: BTreeSet<String> = sources.keys().cloned().collect();
        sources
            .iter()
            .map(|(name, source)| {
                let code = source.split("#[cfg(test)]\nmod tests").next().unwrap();
                let used = code
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .flat_map(|line| line.split("crate::").skip(1))
                    .map(|rest| {
                        rest.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .filter(|used| used != name && names.contains(used))
                    .collect();
                (name.clone(), used)
            })
            .collect()
    }

    #[test]
    fn modules_import_each_other_in_layers() {
        let graph = imports();
        assert!(graph.len() > 20, "read the shim's modules: {graph:?}");
        // Depth-first search for a back edge: a circle of imports.
        fn visit(
            module: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) {
            if done.contains(module) {
                return;
            }
            if let Some(at) = path.iter().position(|m| m == module) {
                panic!("a circle of imports: {:?} -> {module}", &path[at..]);
            }
            path.push(module.to_owned());
            for next in &graph[module] {
                visit(next, graph, path, done);
            }
            path.pop();
            done.insert(module.to_owned());
        }
        let mut done = BTreeSet::new();
        for module in graph.keys() {
            visit(module, &graph, &mut Vec::new(), &mut done);
        }
        // The leaves import nothing of the shim but errno.
        for leaf in ["sandbox", "errno", "output", "peek", "guard"] {
            assert!(
                graph[leaf].iter().all(|m| m == "errno"),
                "{leaf} imports {:?}",
                graph[leaf]
            );
        }
    }
}
