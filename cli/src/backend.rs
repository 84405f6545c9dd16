//! `--backend preload|seccomp|auto` of `run` and `fuzz`, and `run`'s
//! seccomp side: the supervisor, in this process.

use std::ffi::OsString;
use std::path::Path;

use delayshim_campaign::backend::Choice;
use delayshim_campaign::seccomp::{self, Ended};

/// The backend option, shared by `run` and `fuzz`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// How delays reach the program: preload (libdelayshim.so in
    /// LD_PRELOAD, libc's exported calls), seccomp (a supervisor holds the
    /// program's system calls through a seccomp filter: static binaries,
    /// Go, stdio and raw system calls too), or auto (seccomp where the shim
    /// cannot see the program's calls; `delayshim check` says which and why).
    #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = ChoiceParser)]
    pub backend: Choice,
}

/// Parses `--backend`'s value and offers its three values for completion.
#[derive(Debug, Clone, Copy)]
pub struct ChoiceParser;

impl clap::builder::TypedValueParser for ChoiceParser {
    type Value = Choice;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Choice, clap::Error> {
        clap::builder::PossibleValuesParser::new(["preload", "seccomp", "auto"])
            .parse_ref(cmd, arg, value)
            .map(|s| s.parse().expect("one of the possible values"))
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            ["preload", "seccomp", "auto"]
                .into_iter()
                .map(clap::builder::PossibleValue::new),
        ))
    }
}

/// Runs `program` beneath the supervisor with the `DELAYSHIM_*` settings
/// of the environment overridden by `settings`; returns the exit status
/// to leave with, or dies of the program's signal as the program did.
pub fn supervise(
    program: &Path,
    argv: &[OsString],
    settings: &[(String, String)],
) -> Result<u8, String> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("DELAYSHIM_"))
        // The command starts a tree of its own, as under the shim.
        .filter(|(k, _)| k != delayshim_settings::TREE_VAR)
        .filter(|(k, _)| !settings.iter().any(|(s, _)| s == k))
        .collect();
    vars.extend(settings.iter().cloned());
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let config = seccomp::Config::from_vars(&vars, &cwd)
        .map_err(|e| format!("the seccomp backend refuses these settings: {e:#}"))?;
    let env = seccomp::program_env(std::env::vars_os());
    match seccomp::supervise(config, program, argv, &env).map_err(|e| format!("{e:#}"))? {
        Ended::Exited(code) => Ok(code as u8),
        Ended::Signaled(signal) => {
            // Die the same way, so a shell or a campaign sees the signal.
            // SAFETY: resetting and raising a signal in our own process.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
                libc::kill(libc::getpid(), signal);
            }
            Ok(128 + signal as u8)
        }
    }
}
