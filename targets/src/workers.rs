//! Forking worker processes and collecting how they ended.

use anyhow::{bail, Context, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

pub const EXIT_NO_BUG: u8 = 0;
pub const EXIT_BUG_FOUND: u8 = 1;
pub const EXIT_ERROR: u8 = 3;

/// The exit status of a target's `main`: `run`'s verdict, or
/// [`EXIT_ERROR`] with the error on standard error.
pub fn exit_status(program: &str, result: Result<u8>) -> std::process::ExitCode {
    std::process::ExitCode::from(result.unwrap_or_else(|error| {
        eprintln!("{program}: error: {error:#}");
        EXIT_ERROR
    }))
}

/// Forks `processes` workers, each running `work(index)` and exiting, and
/// waits for all of them. Fails if any worker failed.
pub fn run_workers(processes: u32, work: impl Fn(u32) -> Result<()>) -> Result<()> {
    let mut children = Vec::new();
    for index in 0..processes {
        // SAFETY: called while single-threaded; the child runs `work` and exits.
        match unsafe { fork() }.context("fork")? {
            ForkResult::Child => {
                let code = match work(index) {
                    Ok(()) => 0,
                    Err(error) => {
                        eprintln!("worker {index}: {error:#}");
                        i32::from(EXIT_ERROR)
                    }
                };
                std::process::exit(code);
            }
            ForkResult::Parent { child } => children.push(child),
        }
    }
    let mut failures = Vec::new();
    for child in children {
        match waitpid(child, None).context("waitpid")? {
            WaitStatus::Exited(_, 0) => {}
            status => failures.push(format!("{status:?}")),
        }
    }
    if !failures.is_empty() {
        bail!("workers failed: {}", failures.join(", "));
    }
    Ok(())
}
