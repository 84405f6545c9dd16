//! One run of the program under the shim: spawn it in its own process
//! group, kill the group if it outlives the timeout, kill whatever of it
//! is still running when it ends, and read what the shim counted.

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::descendants::{run_marker, Reaper, RUN_MARKER_VAR};
use crate::fresh::{
    run_helper, substitute_dir, CHECK_OUT, RUN_DIR_VAR, RUN_STATUS_VAR, SETUP_OUT, WORK,
};
use crate::invocation::Invocation;
use crate::plan::RunPlan;
use crate::stats::Counts;

/// Set by SIGINT/SIGTERM: running groups are killed and no run starts.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The signal that set [`INTERRUPTED`], for the exit status (128 + it).
static INTERRUPT_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_interrupt(signal: libc::c_int) {
    INTERRUPT_SIGNAL.store(signal, Ordering::Relaxed);
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Turns SIGINT and SIGTERM into [`INTERRUPTED`]: every loop that waits
/// for a run or a replay then kills its process groups (which a terminal's
/// Ctrl-C does not reach: each sits in its own) and returns, so the
/// command can write what it has and exit with [`interrupted_status`].
pub fn install_interrupt_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to atomics, which is
        // async-signal-safe.
        unsafe {
            libc::signal(
                signal,
                on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// 128 + the interrupting signal, as a shell reports a process it killed:
/// 130 for SIGINT, 143 for SIGTERM.
pub fn interrupted_status() -> u8 {
    match INTERRUPT_SIGNAL.load(Ordering::Relaxed) {
        libc::SIGTERM => 143,
        _ => 130,
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Exited with a non-zero status.
    Fail(i32),
    /// Killed by a signal it did not get from us.
    Crash(i32),
    /// Still running at the timeout; its process group was killed.
    Hang,
    /// Exited 0, but the shim delayed nothing: not a fuzzed run.
    NoInjection(String),
    /// Passed, but `fuzz --check`'s checker then failed: why.
    CheckFailed(String),
    /// Stopped by the user's interrupt.
    Interrupted,
}

impl Outcome {
    pub fn is_pass(&self) -> bool {
        *self == Outcome::Pass
    }

    /// The kind, as the per-run line and the summary name it.
    pub fn kind(&self) -> &'static str {
        self.kind_enum().name()
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            Outcome::Fail(code) => Some(format!("exit status {code}")),
            Outcome::Crash(signal) => Some(format!("killed by {}", signal_name(*signal))),
            Outcome::NoInjection(why) | Outcome::CheckFailed(why) => Some(why.clone()),
            _ => None,
        }
    }
}

fn signal_name(signal: i32) -> String {
    // SAFETY: strsignal returns a static or thread-local string.
    let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(signal)) };
    format!("signal {signal} ({})", name.to_string_lossy())
}

/// Why a run that exited 0 does not count as fuzzed, if it does not.
pub fn not_fuzzed(counts: &Counts) -> Option<String> {
    let calls = counts.total("calls");
    if counts.processes == 0 && counts.started > 0 {
        Some("its processes wrote no statistics at exit: killed by a signal, or left with a raw exit system call".into())
    } else if counts.processes == 0 {
        Some(
            "the shim wrote no statistics: it was not loaded, or the program left without exit()"
                .into(),
        )
    } else if calls == 0 {
        Some("the shim intercepted no calls".into())
    } else if counts.total("delayed") == 0 {
        Some(format!(
            "the shim intercepted {calls} calls but delayed none"
        ))
    } else if counts.injected() == 0 {
        Some(format!(
            "the shim delayed {} calls but none that can reorder anything between processes",
            counts.total("delayed")
        ))
    } else {
        None
    }
}

/// Everything needed to start runs of one campaign.
#[derive(Debug)]
pub struct RunSpec {
    /// The program as every run starts it: its environment holds what all
    /// runs share (LD_PRELOAD and DELAYSHIM_* settings; what differs comes
    /// from [`RunPlan::env`]), `cwd` is the campaign's (a fresh directory
    /// replaces it for each run).
    pub invocation: Invocation,
    pub keep_log: bool,
    /// `--max-time`: a run still going then is stopped (as interrupted).
    pub deadline: Option<Instant>,
}

/// The result of one run.
#[derive(Debug)]
pub struct RunResult {
    pub plan: RunPlan,
    pub outcome: Outcome,
    pub elapsed: Duration,
    pub counts: Counts,
    /// Processes of the run still running when it ended, all killed.
    pub left_running: usize,
    pub dir: PathBuf,
    /// The calls around its nearest potential race, and where its full
    /// timeline is (empty without one).
    pub timeline: Vec<String>,
}

/// Files a run leaves in its directory.
pub const STDOUT: &str = "stdout";
pub const STDERR: &str = "stderr";
pub const STATS: &str = "stats.jsonl";
pub const LOG: &str = "delays.log";
pub const RECORD: &str = "record.txt";
/// How to run the program again exactly as this run did, for replay.
pub const RUN_JSON: &str = "run.json";

/// Makes the run `plan`, keeping its files in `dir`.
pub fn run_once(spec: &RunSpec, plan: &RunPlan, dir: &Path, reaper: &Reaper) -> Result<RunResult> {
    // A rerun of the same campaign starts from empty files: the shim appends.
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let base = &spec.invocation;
    let work = base.fresh_dir.then(|| dir.join(WORK));
    let (run_cwd, args) = match &work {
        Some(work) => {
            fs::create_dir(work).with_context(|| format!("creating {}", work.display()))?;
            (work.clone(), substitute_dir(&base.args, work))
        }
        None => (base.cwd.clone(), base.args.clone()),
    };
    if let (Some(setup), Some(work)) = (&base.setup, &work) {
        let env = [(RUN_DIR_VAR, work.as_os_str())];
        let failed = run_helper(setup, work, &env, &dir.join(SETUP_OUT), base.timeout)?;
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Ok(RunResult {
                plan: plan.clone(),
                outcome: Outcome::Interrupted,
                elapsed: Duration::ZERO,
                counts: Counts::default(),
                left_running: 0,
                dir: dir.to_owned(),
                timeline: Vec::new(),
            });
        }
        if let Some(why) = failed {
            anyhow::bail!(
                "--setup failed before run {} (seed {}): {why} (its output: {})",
                plan.index,
                plan.seed,
                dir.join(SETUP_OUT).display()
            );
        }
    }
    let marker = run_marker(plan.index);
    let mut command = Command::new(&base.program);
    command
        .args(&args)
        .current_dir(&run_cwd)
        .envs(base.env.iter().map(|(k, v)| (k, v)))
        .env(RUN_MARKER_VAR, &marker)
        // Each run is a tree of its own, whatever the command inherited.
        .env_remove(delayshim_settings::TREE_VAR)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join(STDOUT))?)
        .stderr(File::create(dir.join(STDERR))?)
        .process_group(0);
    let mut env = base.env.clone();
    if let Some(work) = &work {
        command.env(RUN_DIR_VAR, work);
        env.push((RUN_DIR_VAR.to_owned(), work.clone().into_os_string()));
    }
    for (name, value) in plan.env(dir, spec.keep_log) {
        env.retain(|(n, _)| *n != name);
        match value {
            Some(value) => {
                command.env(&name, &value);
                env.push((name, value));
            }
            None => {
                command.env_remove(&name);
            }
        };
    }
    Invocation {
        env,
        cwd: run_cwd.clone(),
        ..base.clone()
    }
    .write(&dir.join(RUN_JSON))?;
    // Conflicts: the run's own shared region (not in run.json: a replay
    // makes its own).
    let region = crate::conflicts::campaign::attach(&mut command);
    let start = Instant::now();
    let mut child = reaper
        .spawn(&mut command)
        .with_context(|| format!("starting {}", base.program.to_string_lossy()))?;
    let group = child.id() as libc::pid_t;
    let ended = loop {
        if let Some(status) = child.try_wait()? {
            break Ended::Exited(status);
        }
        let interrupted = INTERRUPTED.load(Ordering::Relaxed)
            || spec
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline);
        if interrupted || start.elapsed() >= base.timeout {
            reaper.kill_group(group);
            child.wait()?;
            break if interrupted {
                Ended::Interrupted
            } else {
                Ended::TimedOut
            };
        }
        // Interrupts and the deadline are looked at every 50 ms.
        let left = base.timeout.saturating_sub(start.elapsed());
        crate::descendants::wait_for_exit(&child, left.min(Duration::from_millis(50)));
    };
    reaper.release(&child);
    let elapsed = start.elapsed();
    // Whatever the program left running, in its group or not, goes too.
    let left_running = reaper.kill_leftovers(group, &marker);
    let timeline = crate::conflicts::campaign::finish(region, dir);
    let counts = Counts::read(&dir.join(STATS))?;
    let outcome = match ended {
        Ended::Interrupted => Outcome::Interrupted,
        Ended::TimedOut => Outcome::Hang,
        Ended::Exited(status) => match (status.code(), status.signal()) {
            (Some(0), _) => match not_fuzzed(&counts) {
                // sparse, victims and sites skip most calls by design: a
                // run of theirs that delayed nothing is a pass; the
                // campaign as a whole must still inject something.
                Some(_) if counts.total("calls") > 0 && plan.skips_by_design() => Outcome::Pass,
                Some(why) => Outcome::NoInjection(why),
                None => Outcome::Pass,
            },
            (Some(code), _) => Outcome::Fail(code),
            (_, signal) => Outcome::Crash(signal.unwrap_or(0)),
        },
    };
    let outcome = match &base.check {
        Some(check) if outcome != Outcome::Interrupted => {
            let status: OsString = match &ended {
                Ended::Exited(status) => match status.code() {
                    Some(code) => code.to_string().into(),
                    None => format!("signal {}", status.signal().unwrap_or(0)).into(),
                },
                _ => "hang".into(),
            };
            let mut env = vec![(RUN_STATUS_VAR, status.as_os_str())];
            if let Some(work) = &work {
                env.push((RUN_DIR_VAR, work.as_os_str()));
            }
            let failed = run_helper(check, &run_cwd, &env, &dir.join(CHECK_OUT), base.timeout)?;
            match failed {
                _ if INTERRUPTED.load(Ordering::Relaxed) => Outcome::Interrupted,
                Some(why) if matches!(outcome, Outcome::Pass | Outcome::NoInjection(_)) => {
                    Outcome::CheckFailed(format!("--check {why}"))
                }
                _ => outcome,
            }
        }
        _ => outcome,
    };
    Ok(RunResult {
        plan: plan.clone(),
        outcome,
        elapsed,
        counts,
        left_running,
        dir: dir.to_owned(),
        timeline,
    })
}

enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    Interrupted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_without_delays_are_not_fuzzed() {
        let counts = |lines: &[&str]| {
            let mut counts = Counts::default();
            for line in lines {
                counts.add_line(&serde_json::from_str(line).unwrap());
            }
            counts
        };
        assert!(not_fuzzed(&counts(&[])).unwrap().contains("no statistics"));
        let started = counts(&[r#"{"event":"start","pid":1}"#]);
        assert!(not_fuzzed(&started)
            .unwrap()
            .contains("no statistics at exit"));
        let none = counts(&[r#"{"calls":{},"delayed":{}}"#]);
        assert!(not_fuzzed(&none).unwrap().contains("intercepted no calls"));
        let undelayed = counts(&[r#"{"calls":{"fcntl64":2},"delayed":{}}"#]);
        assert!(not_fuzzed(&undelayed).unwrap().contains("delayed none"));
        let harmless = counts(&[r#"{"calls":{"write":2},"delayed":{"write":2},"injected":0}"#]);
        assert!(not_fuzzed(&harmless)
            .unwrap()
            .contains("none that can reorder"));
        let fuzzed = counts(&[
            r#"{"calls":{"fcntl64":2},"delayed":{"fcntl64":1},"injected":0}"#,
            r#"{"calls":{"fcntl64":2},"delayed":{"fcntl64":1},"injected":1}"#,
        ]);
        assert_eq!(not_fuzzed(&fuzzed), None);
    }

    #[test]
    fn outcomes_name_their_kind_and_detail() {
        assert_eq!(Outcome::Fail(1).detail().unwrap(), "exit status 1");
        assert!(Outcome::Crash(libc::SIGSEGV)
            .detail()
            .unwrap()
            .contains("signal 11"));
        assert_eq!(Outcome::NoInjection("x".into()).kind(), "NO INJECTION");
        assert!(Outcome::Pass.is_pass() && !Outcome::Hang.is_pass());
    }
}
