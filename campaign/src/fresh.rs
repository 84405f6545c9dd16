//! `fuzz --fresh-dir`, `--setup` and `--check`: each run in its own empty
//! working directory (named in `DELAYSHIM_RUN_DIR` and substituted for
//! `{dir}` in the program's arguments), a command that prepares it, and an
//! invariant checker run after the program. The helpers run without the
//! shim, in their own process group, killed with what they leave at the
//! run's timeout.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::descendants::{replay_marker, Reaper, RUN_MARKER_VAR};
use crate::run::INTERRUPTED;

pub use delayshim_settings::RUN_DIR_VAR;

/// A run's working directory inside its run directory.
pub const WORK: &str = "work";
/// What `--setup` and `--check` printed, in the run directory.
pub const SETUP_OUT: &str = "setup.out";
pub const CHECK_OUT: &str = "check.out";
/// The run's exit status for `--check`: a number, `signal N` or `hang`.
pub const RUN_STATUS_VAR: &str = "DELAYSHIM_RUN_STATUS";
/// What `{dir}` in an argument becomes.
pub const DIR_PLACEHOLDER: &str = "{dir}";

/// `args` with every `{dir}` replaced by `dir`.
pub fn substitute_dir(args: &[OsString], dir: &Path) -> Vec<OsString> {
    let dir = dir.as_os_str().as_bytes();
    args.iter()
        .map(|arg| {
            let bytes = arg.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut rest = bytes;
            while let Some(at) = find(rest, DIR_PLACEHOLDER.as_bytes()) {
                out.extend_from_slice(&rest[..at]);
                out.extend_from_slice(dir);
                rest = &rest[at + DIR_PLACEHOLDER.len()..];
            }
            out.extend_from_slice(rest);
            OsString::from_vec(out)
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Runs `sh -c COMMAND` in `dir` without the shim, its output to `out`,
/// with `env` added; `Ok(None)` if it exited 0, else why not.
pub fn run_helper(
    command: &OsStr,
    dir: &Path,
    env: &[(&str, &OsStr)],
    out: &Path,
    timeout: Duration,
) -> Result<Option<String>> {
    let reaper = Reaper::shared().context("becoming the subreaper of the runs")?;
    let output = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let marker = replay_marker();
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .envs(std::env::vars_os().filter(|(k, _)| {
            let k = k.as_bytes();
            !k.starts_with(b"DELAYSHIM_") && k != b"LD_PRELOAD"
        }))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(RUN_MARKER_VAR, &marker)
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .process_group(0);
    let mut child = reaper
        .spawn(&mut sh)
        .with_context(|| format!("starting sh -c {}", command.to_string_lossy()))?;
    let group = child.id() as libc::pid_t;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() >= timeout || INTERRUPTED.load(Ordering::Relaxed) {
            reaper.kill_group(group);
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = child.wait();
    reaper.release(&child);
    reaper.kill_leftovers(group, &marker);
    let why = match status {
        Some(status) if status.success() => return Ok(None),
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited {code}"),
            (_, signal) => format!("killed by signal {}", signal.unwrap_or(0)),
        },
        None => format!("still running after {} s: killed", timeout.as_secs_f64()),
    };
    let text = std::fs::read(out).unwrap_or_default();
    let last = String::from_utf8_lossy(&text)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.chars().take(200).collect::<String>()))
        .unwrap_or_default();
    Ok(Some(format!("{why}{last}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_is_substituted_everywhere_in_each_argument() {
        let args: Vec<OsString> = vec!["--db={dir}/a.db".into(), "{dir}{dir}".into(), "x".into()];
        assert_eq!(
            substitute_dir(&args, Path::new("/r/w")),
            ["--db=/r/w/a.db", "/r/w/r/w", "x"]
        );
    }

    #[test]
    fn helpers_say_why_they_failed() {
        let dir = std::env::temp_dir().join(format!("fresh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let status: &OsStr = "3".as_ref();
        let env = [(RUN_STATUS_VAR, status)];
        let ok = run_helper(
            "test \"$DELAYSHIM_RUN_STATUS\" = 3 && test -z \"$LD_PRELOAD\"".as_ref(),
            &dir,
            &env,
            &out,
            Duration::from_secs(10),
        );
        assert_eq!(ok.unwrap(), None);
        let failed = run_helper(
            "echo broken invariant; exit 4".as_ref(),
            &dir,
            &env,
            &out,
            Duration::from_secs(10),
        );
        assert_eq!(failed.unwrap().unwrap(), "exited 4: broken invariant");
        let hung = run_helper(
            "sleep 30".as_ref(),
            &dir,
            &[],
            &out,
            Duration::from_millis(100),
        );
        assert!(hung
            .unwrap()
            .unwrap()
            .starts_with("still running after 0.1 s"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
