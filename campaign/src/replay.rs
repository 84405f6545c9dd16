//! Running a program again exactly as a campaign's run did, with its
//! recorded delays replayed (`DELAYSHIM_REPLAY`): for `fuzz --confirm` and
//! for `minimize`. A run's directory keeps what that needs in `run.json`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::descendants::{replay_marker, Reaper, RUN_MARKER_VAR};
use crate::fresh::{run_helper, substitute_dir, RUN_DIR_VAR};
use crate::report::shell_word;
use crate::run::INTERRUPTED;

/// A run's program, environment and directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Every variable the campaign set for the run (LD_PRELOAD, settings,
    /// seed and files).
    pub env: Vec<(String, OsString)>,
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// `--fresh-dir`: each replay in a new empty directory beside `cwd`
    /// (`{dir}` in `args` and `DELAYSHIM_RUN_DIR`), prepared by `setup`.
    pub fresh_dir: bool,
    pub setup: Option<OsString>,
}

fn bytes(value: &OsString) -> serde_json::Value {
    // Hex keeps any bytes; the shell line below shows them to people.
    serde_json::Value::String(
        value
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

fn unhex(value: &serde_json::Value) -> Option<OsString> {
    let text = value.as_str()?;
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    Some(OsString::from_vec(bytes?))
}

impl Invocation {
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::json!({
            "program": bytes(&self.program),
            "args": self.args.iter().map(bytes).collect::<Vec<_>>(),
            "env": self.env.iter().map(|(k, v)| serde_json::json!([k, bytes(v)])).collect::<Vec<_>>(),
            "cwd": bytes(&self.cwd.clone().into_os_string()),
            "timeout_seconds": self.timeout.as_secs_f64(),
            "fresh_dir": self.fresh_dir,
            "setup": self.setup.as_ref().map(bytes),
            "shell": self.shell_line(&[]),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<Invocation> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading {}: not the directory of a run of delayshim fuzz",
                path.display()
            )
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let parse = || -> Option<Invocation> {
            Some(Invocation {
                program: unhex(&json["program"])?,
                args: json["args"]
                    .as_array()?
                    .iter()
                    .map(unhex)
                    .collect::<Option<_>>()?,
                env: json["env"]
                    .as_array()?
                    .iter()
                    .map(|pair| Some((pair[0].as_str()?.to_owned(), unhex(&pair[1])?)))
                    .collect::<Option<_>>()?,
                cwd: PathBuf::from(unhex(&json["cwd"])?),
                timeout: Duration::try_from_secs_f64(json["timeout_seconds"].as_f64()?).ok()?,
                fresh_dir: json["fresh_dir"].as_bool().unwrap_or(false),
                setup: match &json["setup"] {
                    serde_json::Value::Null => None,
                    setup => Some(unhex(setup)?),
                },
            })
        };
        match parse() {
            Some(invocation) => Ok(invocation),
            None => bail!(
                "{} is not a run description of delayshim fuzz",
                path.display()
            ),
        }
    }

    /// The environment with `changes` applied (`None` removes a variable).
    fn env_with(&self, changes: &[(&str, Option<&OsString>)]) -> Vec<(String, OsString)> {
        let mut env: Vec<(String, OsString)> = self
            .env
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .collect();
        env.extend(
            changes
                .iter()
                .filter_map(|(k, v)| Some(((*k).to_owned(), (*v)?.clone()))),
        );
        env
    }

    /// The shell command that runs the program with `changes`.
    pub fn shell_line(&self, changes: &[(&str, Option<&OsString>)]) -> String {
        let mut line = format!("cd {} && ", shell_word(self.cwd.as_os_str().as_bytes()));
        for (name, value) in self.env_with(changes) {
            line.push_str(&format!("{name}={} ", shell_word(value.as_bytes())));
        }
        let words: Vec<String> = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|w| shell_word(w.as_bytes()))
            .collect();
        line + &words.join(" ")
    }

    /// The changes that replay `replay` (or turn delays off for `None`):
    /// nothing is recorded, and statistics and the log go nowhere.
    pub fn replay_changes(replay: Option<&OsString>) -> Vec<(&'static str, Option<&OsString>)> {
        vec![
            ("DELAYSHIM_REPLAY", replay),
            ("DELAYSHIM_RECORD", None),
            ("DELAYSHIM_STATS", None),
            ("DELAYSHIM_LOG", None),
        ]
    }

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
        Ok(match status {
            Some(status) => status.code() != Some(0) || status.signal().is_some(),
            None => true,
        })
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
