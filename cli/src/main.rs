//! `delayshim`: runs programs under libdelayshim.so, which it carries
//! inside itself. One module per subcommand, each a thin layer of argument
//! parsing over the `delayshim-campaign` library.

mod backend;
mod check;
mod conflicts;
mod fuzz;
mod manpage;
mod minimize;
mod report;
mod run;
mod settings_args;
mod shard_env;
mod shim;
mod stats;
mod suggest;
mod terminal;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// Exit statuses of every subcommand, shown by `--help` and the README.
const EXIT_STATUSES: &str = "\
Exit statuses:
  run        the program's own (delayshim execs it, or under --backend seccomp
             exits with it); 125 delayshim's own error (bad option, a setting the
             shim or the supervisor refuses); 126 the program cannot run (set-user-ID,
             static under --backend preload, not executable); 127 not found
  fuzz       0 every run passed; 1 a run failed, crashed, hung, failed --check or
             was not fuzzed; 2 usage error (a refused program or setting, an --out
             in use or not empty, included); 3 the whole campaign injected no
             delay; 130 interrupted (SIGINT), 143 terminated (SIGTERM)
  check      0 a backend works beneath the program (the shim would delay some of its
             calls, or auto takes seccomp); 1 neither can run it, or nothing would be
             delayed; 2 usage error (not found, not a program)
  stats      0 summed; 2 usage error (a missing file, a line that is not statistics)
  report     as fuzz over the merged runs: 0 all passed, 1 a failure, 3 nothing
             injected; 2 usage error (a directory that is not a campaign's output)
  minimize   0 explained; 1 the recorded delays do not make it fail again, or the
             minimal set fails below --threshold; 2 usage error (a passing run
             included); 130 interrupted, 143 terminated (rerun to resume)";

/// Delay fuzzing beneath unmodified programs.
///
/// Runs programs under libdelayshim.so (carried inside this command), which
/// sleeps around the libc calls that write, lock and sync files, so rare
/// interleavings of processes and threads become common.
#[derive(Debug, Parser)]
#[command(name = "delayshim", version, after_help = EXIT_STATUSES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Run(run::Args),
    // Boxed: its many options make it far larger than the others.
    Fuzz(Box<fuzz::Args>),
    Minimize(minimize::Args),
    Check(check::Args),
    Stats(stats::Args),
    Report(report::Args),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints a man page in roff: delayshim(1), or delayshim-SUBCOMMAND(1);
    /// --dir DIR writes them all.
    Manpage(manpage::Args),
    /// Prints the path of the shim this command preloads, writing it to
    /// the cache directory first if needed.
    #[command(hide = true)]
    ShimPath,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error)
            if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            let _ = error.print();
            return ExitCode::from(2);
        }
        Err(error) => {
            let subcommand = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
            let name = match &subcommand {
                Some(subcommand) => format!("delayshim {subcommand}"),
                None => "delayshim".to_owned(),
            };
            // One line: clap's first, which names the problem, and its tip
            // (a similar option) if it has one.
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or("error: bad arguments");
            let tip = rendered
                .lines()
                .find_map(|line| line.trim().strip_prefix("tip: "))
                .map(|tip| format!("; {tip}"))
                .unwrap_or_default();
            let program_without_dashes = error.kind() == clap::error::ErrorKind::UnknownArgument
                && matches!(
                    error.get(clap::error::ContextKind::InvalidArg),
                    Some(clap::error::ContextValue::String(arg)) if !arg.starts_with('-')
                );
            let hint = if program_without_dashes {
                format!(" (the program goes after --: {name} [OPTIONS] -- PROGRAM [ARGS])")
            } else {
                format!(" ({name} --help lists the options)")
            };
            eprintln!("{name}: {first}{tip}{hint}");
            // `run` keeps 1 and 2 for the program: its own errors are 125,
            // as env(1) and timeout(1) do.
            let is_run = subcommand.as_deref() == Some("run");
            return ExitCode::from(if is_run { run::EXIT_OWN_ERROR } else { 2 });
        }
    };
    let status = match cli.command {
        Command::Run(args) => run::main(args),
        Command::Fuzz(args) => fuzz::main(*args),
        Command::Minimize(args) => minimize::main(args),
        Command::Check(args) => check::main(args),
        Command::Stats(args) => stats::main(args),
        Command::Report(args) => report::main(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "delayshim",
                &mut std::io::stdout(),
            );
            0
        }
        Command::Manpage(args) => manpage::main(args),
        Command::ShimPath => match shim::path() {
            Ok(path) => {
                delayshim_campaign::output::print(&format!("{}\n", path.display()));
                0
            }
            Err(error) => {
                eprintln!("delayshim: error: {error:#}");
                2
            }
        },
    };
    ExitCode::from(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
