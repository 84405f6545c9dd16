//! `delayshim run [SETTINGS] -- PROGRAM [ARGS]`: one program under the shim.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;

use delayshim_campaign::plan::random_seed;
use delayshim_campaign::preload::{ld_preload, preflight};

use delayshim_campaign::backend::{Backend, Choice};

use crate::backend::BackendArgs;
use crate::check::{check_before_running, Unfit};
use crate::settings_args::ShimSettings;
use crate::shim;

/// delayshim's own error: a bad option, or a setting the shim refuses.
pub const EXIT_OWN_ERROR: u8 = 125;
/// The program was found but cannot run under the shim.
pub const EXIT_CANNOT_RUN: u8 = 126;
pub const EXIT_NOT_FOUND: u8 = 127;

/// Runs one program under the shim.
///
/// Every setting is an option. The shim goes first in LD_PRELOAD, the
/// program is checked as `delayshim check` does and the settings by the
/// shim itself before the program starts; delayshim then becomes the
/// program (exec), so its exit status is the program's.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    settings: ShimSettings<false>,
    /// Track the program's file accesses, locks and names in a shared
    /// region, and print the conflicts found (potential races) to stderr
    /// when it ends.
    #[arg(long)]
    conflicts: bool,
    /// With --conflicts: events the region holds (each 160 bytes of
    /// /dev/shm); a run that makes more is analysed in part, and says so.
    #[arg(long, value_name = "N", requires = "conflicts", default_value_t = delayshim_campaign::region::DEFAULT_EVENTS,
          value_parser = clap::value_parser!(u64).range(1..=delayshim_campaign::region::MAX_EVENTS))]
    conflicts_events: u64,
    #[command(flatten)]
    backend: BackendArgs,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
    command: Vec<OsString>,
}

pub fn main(args: Args) -> u8 {
    let error = |status: u8, message: String| {
        eprintln!("delayshim run: {message}");
        status
    };
    let (program, rest) = args.command.split_first().expect("clap requires a program");
    let funcs = args.settings.get("DELAYSHIM_FUNCS");
    // The conflicts report is made of what the shim records: under auto,
    // a program the shim would not delay is still run beneath it.
    let choice = match args.backend.backend {
        Choice::Auto if args.conflicts => Choice::Preload,
        choice => choice,
    };
    let checked = check_before_running(program, funcs, "delayshim run", choice);
    let found = match checked {
        Ok((found, backend)) => (found, backend),
        Err(unfit) => {
            return match unfit {
                Unfit::NotFound(why) => error(EXIT_NOT_FOUND, why),
                Unfit::NotAProgram(why) => error(EXIT_CANNOT_RUN, why),
                Unfit::Refused(why) => error(EXIT_CANNOT_RUN, format!("refusing to run {why}")),
            }
        }
    };
    let shim = match shim::path() {
        Ok(shim) => shim,
        Err(e) => return error(EXIT_OWN_ERROR, format!("error: {e:#}")),
    };
    let preload = ld_preload(&shim);
    let mut settings = args.settings.env();
    // A seed drawn here, not by the shim, so that it can be shown: the
    // delays of a run that went wrong can be had again.
    let drawn = (args.settings.get("DELAYSHIM_SEED").is_none()
        && std::env::var_os("DELAYSHIM_SEED").is_none())
    .then(random_seed);
    if let Some(seed) = drawn {
        settings.push(("DELAYSHIM_SEED".to_owned(), seed.to_string()));
    }
    match preflight(&preload, &settings) {
        Ok(None) => {}
        Ok(Some(message)) => {
            return error(
                EXIT_OWN_ERROR,
                format!("the shim refuses these settings: {message}"),
            )
        }
        Err(e) => return error(EXIT_OWN_ERROR, format!("error: {e:#}")),
    }
    if let Some(seed) = drawn {
        eprintln!("delayshim run: seed {seed} (--seed {seed} repeats these delays)");
    }
    if let (found, Backend::Seccomp) = found {
        if args.conflicts {
            return error(
                EXIT_OWN_ERROR,
                "--conflicts needs the preload backend (the shim records the accesses): add --backend preload".into(),
            );
        }
        // The supervisor stays, holding the program's calls; it exits
        // with the program's status.
        let argv: Vec<OsString> = std::iter::once(program.clone())
            .chain(rest.iter().cloned())
            .collect();
        return crate::backend::supervise(&found.program, &argv, &settings)
            .unwrap_or_else(|why| error(EXIT_OWN_ERROR, why));
    }
    let mut command = std::process::Command::new(program);
    command
        .args(rest)
        .env("LD_PRELOAD", preload)
        // The command starts a tree of its own: an inherited place in
        // another run's tree must not choose this one's streams.
        .env_remove(delayshim_settings::TREE_VAR)
        .envs(settings);
    // pct's tasks wait for each other through the run's region, which
    // must be removed after the run: the command then stays as a parent.
    let pct = args
        .settings
        .get("DELAYSHIM_STRATEGY")
        .map(str::to_owned)
        .or_else(|| std::env::var("DELAYSHIM_STRATEGY").ok())
        .is_some_and(|strategy| strategy.trim() == "pct");
    if args.conflicts || pct {
        let report = args.conflicts.then_some(args.conflicts_events);
        return match crate::conflicts::run_in_region(command, report) {
            Ok(status) => status,
            Err(e) => error(EXIT_CANNOT_RUN, format!("{e:#}")),
        };
    }
    let exec_error = command.exec();
    error(
        EXIT_CANNOT_RUN,
        format!("cannot run {}: {exec_error}", program.to_string_lossy()),
    )
}
