//! The library behind the `delayshim` command, one module per part the
//! subcommands share, each testable without the command:
//!
//! - [`backend`]: preload or seccomp beneath a program, and why;
//! - [`plan`]: a campaign's runs, seeds, shards and per-run settings;
//! - [`run`]: one run under the shim (process group, timeout, outcome),
//!   with [`descendants`] killing whatever it leaves running and
//!   [`watchdog`] doing so when the campaign itself is killed;
//! - [`fresh`]: `--fresh-dir`'s directory per run, `--setup` and `--check`;
//! - [`campaign`]: many runs, `--jobs` at a time, with [`report`]'s lines
//!   and summary, told through [`events`];
//! - [`inspect`]: what the shim can do beneath a program, from its ELF files;
//! - [`preload`]: `LD_PRELOAD` and the shim's own check of the settings;
//! - [`stats`]: the shim's statistics lines, summed;
//! - [`merge`]: several campaigns' output directories in one report;
//! - [`auto`]: `--strategy auto`, a campaign that learns which arm and
//!   delay scale find something in the program;
//! - [`invocation`]: how the program is started (run.json) and the one
//!   renderer of its shell line;
//! - [`replay`]: a run again, its recorded delays replayed;
//! - [`minimize`]: the fewest recorded delays that still fail, explained
//!   with [`symbols`]' names for call sites;
//! - [`records`]: the files a campaign writes, typed once for writer and
//!   readers; [`output`]: standard output that may close early;
//! - [`shim_file`]: where the command keeps the shim it carries;
//! - [`region`]: the per-run shared region the shim writes accesses into,
//!   and [`conflicts`]: the race detector over them;
//! - [`seccomp`]: the other backend, a supervisor that holds the program's
//!   system calls through a seccomp filter.

pub mod auto;
pub mod backend;
pub mod campaign;
pub mod conflicts;
pub mod descendants;
pub mod events;
pub mod fresh;
pub mod inspect;
pub mod invocation;
pub mod merge;
pub mod minimize;
pub mod output;
pub mod plan;
pub mod preload;
pub mod records;
pub mod region;
pub mod replay;
pub mod report;
pub mod run;
pub mod seccomp;
pub mod shim_file;
pub mod stats;
pub mod symbols;
pub mod watchdog;

pub use campaign::{run_campaign, Campaign};
pub use events::Events;
pub use inspect::{inspect, resolve, FuncSelection, Inspection};
pub use plan::{Plan, RunPlan, Shard};
pub use stats::{Counts, StatsTable};
