//! Running a program again exactly as a campaign's run did, with its
//! recorded delays replayed (`DELAYSHIM_REPLAY`): for `fuzz --confirm` and
//! for `minimize`. A run's directory keeps what that needs in `run.json`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::descendants::{replay_marker, Reaper, RUN_MARKER_VAR};
use crate::fresh::{run_helper, substitute_dir, RUN_DIR_VAR, RUN_STATUS_VAR};
pub use crate::invocation::Invocation;
use crate::run::INTERRUPTED;

impl Invocation {
    /// Runs the program once, replaying `replay` (no delays at all for
    /// `None`); true if it failed: a non-zero exit, a signal, or still
    /// running at the timeout. Its process group, and whatever it left
    /// running elsewhere (a `setsid` daemon), is killed when it ends. An
    /// interrupt (SIGINT/SIGTERM) kills it too and is an error.
    pub fn fails(&self, replay: Option<&Path>) -> Result<bool> {
        let reaper = Reaper::shared().context("becoming the subreaper of the replays")?;
        let replay = replay.map(|p| p.as_os_str().to_owned());
        let enable_off = OsString::from("0");
        let mut changes = Invocation::replay_changes(replay.as_ref());
        if replay.is_none() {
            changes.push(("DELAYSHIM_ENABLE", Some(&enable_off)));
        }
        let marker = replay_marker();
        let fresh = self
            .fresh_dir
            .then(|| self.cwd.with_file_name(format!("replay-{marker}")));
        let _cleanup = fresh.as_ref().map(|dir| RemoveOnDrop(dir.clone()));
        let (cwd, args) = match &fresh {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                (dir.clone(), substitute_dir(&self.args, dir))
            }
            None => (self.cwd.clone(), self.args.clone()),
        };
        if let (Some(setup), Some(dir)) = (&self.setup, &fresh) {
            let out = dir.with_extension("setup.out");
            let _remove = RemoveOnDrop(out.clone());
            let env = [(RUN_DIR_VAR, dir.as_os_str())];
            if let Some(why) = run_helper(setup, dir, &env, &out, self.timeout)? {
                bail!("--setup failed before a replay: {why}");
            }
        }
        let run_dir = cwd.clone().into_os_string();
        if fresh.is_some() {
            changes.push((RUN_DIR_VAR, Some(&run_dir)));
        }
        let mut command = Command::new(&self.program);
        command
            .args(&args)
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| {
                let k = k.as_bytes();
                !k.starts_with(b"DELAYSHIM_") && k != b"LD_PRELOAD"
            }))
            .envs(self.env_with(&changes))
            .env(RUN_MARKER_VAR, &marker)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = reaper
            .spawn(&mut command)
            .with_context(|| format!("starting {}", self.program.to_string_lossy()))?;
        let group = child.id() as libc::pid_t;
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if start.elapsed() >= self.timeout || INTERRUPTED.load(Ordering::Relaxed) {
                reaper.kill_group(group);
                break None;
            }
            let left = self.timeout.saturating_sub(start.elapsed());
            crate::descendants::wait_for_exit(&child, left.min(Duration::from_millis(50)));
        };
        let _ = child.wait();
        reaper.release(&child);
        reaper.kill_leftovers(group, &marker);
        if INTERRUPTED.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let passed = status.is_some_and(|status| status.code() == Some(0));
        let Some(check) = self.check.as_ref().filter(|_| passed) else {
            return Ok(!passed);
        };
        // The checker judges the replay as it judged the run: in its
        // directory, told the program exited 0.
        let out = std::env::temp_dir().join(format!("delayshim-{marker}.check.out"));
        let _remove = RemoveOnDrop(out.clone());
        let exit_status = OsString::from("0");
        let mut env = vec![(RUN_STATUS_VAR, exit_status.as_os_str())];
        if fresh.is_some() {
            env.push((RUN_DIR_VAR, run_dir.as_os_str()));
        }
        let failed = run_helper(check, &cwd, &env, &out, self.timeout)?;
        if INTERRUPTED.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(failed.is_some())
    }
}

/// Removes a replay's directory or file when the replay ends, however.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

impl crate::minimize::Replayer for Invocation {
    fn fails(&self, replay: Option<&Path>) -> Result<bool> {
        Invocation::fails(self, replay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_round_trip_and_run() {
        let dir = std::env::temp_dir().join(format!("invocation-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let invocation = Invocation {
            program: "sh".into(),
            args: vec!["-c".into(), "test \"$X\" = 'a b\u{e9}'".into()],
            env: vec![("X".into(), "a b\u{e9}".into())],
            cwd: dir.clone(),
            timeout: Duration::from_secs(10),
            fresh_dir: false,
            setup: None,
            check: None,
        };
        let path = dir.join("run.json");
        invocation.write(&path).unwrap();
        let read = Invocation::read(&path).unwrap();
        assert_eq!(read, invocation);
        assert!(!read.fails(None).unwrap(), "X reached the program");
        let failing = Invocation {
            args: vec!["-c".into(), "exit 3".into()],
            ..invocation.clone()
        };
        assert!(failing.fails(None).unwrap());
        let hanging = Invocation {
            args: vec!["-c".into(), "sleep 30".into()],
            timeout: Duration::from_millis(200),
            ..invocation
        };
        assert!(hanging.fails(None).unwrap(), "a hang is a failure");
        std::fs::write(&path, "{}").unwrap();
        assert!(Invocation::read(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
