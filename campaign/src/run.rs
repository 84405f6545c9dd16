//! One run of the program under the shim: spawn it in its own process
//! group, kill the group if it outlives the timeout, and read what the
//! shim counted.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Set by SIGINT/SIGTERM: running groups are killed and no run starts.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

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
    /// Stopped by the user's interrupt.
    Interrupted,
}

impl Outcome {
    pub fn is_pass(&self) -> bool {
        *self == Outcome::Pass
    }

    /// The kind, as the per-run line and the summary name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail(_) => "FAIL",
            Outcome::Crash(_) => "CRASH",
            Outcome::Hang => "HANG",
            Outcome::NoInjection(_) => "NO INJECTION",
            Outcome::Interrupted => "INTERRUPTED",
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            Outcome::Fail(code) => Some(format!("exit status {code}")),
            Outcome::Crash(signal) => Some(format!("killed by {}", signal_name(*signal))),
            Outcome::NoInjection(why) => Some(why.clone()),
            _ => None,
        }
    }
}

fn signal_name(signal: i32) -> String {
    // SAFETY: strsignal returns a static or thread-local string.
    let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(signal)) };
    format!("signal {signal} ({})", name.to_string_lossy())
}

/// What the shim reported for one run, summed over its processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Injection {
    /// Processes that wrote a statistics line.
    pub processes: usize,
    pub calls: BTreeMap<String, u64>,
    pub delayed: BTreeMap<String, u64>,
    pub delay_us: BTreeMap<String, u64>,
}

impl Injection {
    pub fn total_delayed(&self) -> u64 {
        self.delayed.values().sum()
    }

    /// Reads the shim's statistics file: one JSON line per process.
    pub fn read(path: &Path) -> Result<Injection> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut injection = Injection::default();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let process: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("a statistics line in {}: {line:?}", path.display()))?;
            injection.processes += 1;
            for (field, totals) in [
                ("calls", &mut injection.calls),
                ("delayed", &mut injection.delayed),
                ("delay_us", &mut injection.delay_us),
            ] {
                for (name, count) in process[field].as_object().into_iter().flatten() {
                    *totals.entry(name.clone()).or_default() += count.as_u64().unwrap_or(0);
                }
            }
        }
        Ok(injection)
    }

    /// Why a run that exited 0 does not count as fuzzed, if it does not.
    fn not_fuzzed(&self) -> Option<String> {
        let calls: u64 = self.calls.values().sum();
        if self.processes == 0 {
            Some("the shim wrote no statistics: it was not loaded, or the program left without exit()".into())
        } else if calls == 0 {
            Some("the shim intercepted no calls".into())
        } else if self.total_delayed() == 0 {
            Some(format!(
                "the shim intercepted {calls} calls but delayed none"
            ))
        } else {
            None
        }
    }
}

/// Everything needed to start runs of one campaign.
#[derive(Debug)]
pub struct RunSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Variables set for every run (LD_PRELOAD and DELAYSHIM_* settings).
    pub env: Vec<(String, OsString)>,
    pub timeout: Duration,
    pub keep_log: bool,
}

/// The result of one run.
#[derive(Debug)]
pub struct RunResult {
    pub index: u64,
    pub seed: u64,
    pub outcome: Outcome,
    pub elapsed: Duration,
    pub injection: Injection,
    pub dir: PathBuf,
}

/// Files a run leaves in its directory.
pub const STDOUT: &str = "stdout";
pub const STDERR: &str = "stderr";
pub const STATS: &str = "stats.jsonl";
pub const LOG: &str = "delays.log";

/// Makes run `index` with `seed`, keeping its files in `dir`.
pub fn run_once(spec: &RunSpec, index: u64, seed: u64, dir: &Path) -> Result<RunResult> {
    // A rerun of the same campaign starts from empty files: the shim appends.
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stats = dir.join(STATS);
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("DELAYSHIM_SEED", seed.to_string())
        .env("DELAYSHIM_STATS", &stats)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join(STDOUT))?)
        .stderr(File::create(dir.join(STDERR))?)
        .process_group(0);
    // The campaign owns the log: an inherited DELAYSHIM_LOG would gather
    // every run's delays in one place.
    if spec.keep_log {
        command.env("DELAYSHIM_LOG", dir.join(LOG));
    } else {
        command.env_remove("DELAYSHIM_LOG");
    }
    let start = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", spec.program.to_string_lossy()))?;
    let group = child.id() as libc::pid_t;
    let mut pause = Duration::from_millis(1);
    let ended = loop {
        if let Some(status) = child.try_wait()? {
            break Ended::Exited(status);
        }
        let interrupted = INTERRUPTED.load(Ordering::Relaxed);
        if interrupted || start.elapsed() >= spec.timeout {
            kill_group(group);
            child.wait()?;
            await_group_exit(group);
            break if interrupted {
                Ended::Interrupted
            } else {
                Ended::TimedOut
            };
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    // Whatever the program left running in its group goes too.
    kill_group(group);
    let injection = Injection::read(&stats)?;
    let outcome = match ended {
        Ended::Interrupted => Outcome::Interrupted,
        Ended::TimedOut => Outcome::Hang,
        Ended::Exited(status) => match (status.code(), status.signal()) {
            (Some(0), _) => match injection.not_fuzzed() {
                Some(why) => Outcome::NoInjection(why),
                None => Outcome::Pass,
            },
            (Some(code), _) => Outcome::Fail(code),
            (_, signal) => Outcome::Crash(signal.unwrap_or(0)),
        },
    };
    Ok(RunResult {
        index,
        seed,
        outcome,
        elapsed,
        injection,
        dir: dir.to_owned(),
    })
}

enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    Interrupted,
}

fn kill_group(group: libc::pid_t) {
    // SAFETY: kill with a negative pid signals that process group only.
    unsafe { libc::kill(-group, libc::SIGKILL) };
}

/// Waits, up to a second, until no process of `group` is left: SIGKILL is
/// delivered asynchronously, and a killed run's grandchildren must be gone
/// when the campaign reports it. (Zombies that a non-reaping init keeps
/// would still count, hence the bound.)
fn await_group_exit(group: libc::pid_t) {
    let start = Instant::now();
    // SAFETY: signal 0 only asks whether the group still has members.
    while unsafe { libc::kill(-group, 0) } == 0 && start.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_sum_over_processes() {
        let dir = std::env::temp_dir().join(format!("run-stats-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(STATS);
        fs::write(
            &path,
            concat!(
                r#"{"pid":1,"calls":{"fcntl64":3,"pread64":2},"delayed":{"fcntl64":3},"delay_us":{"fcntl64":30}}"#,
                "\n",
                r#"{"pid":2,"calls":{"fcntl64":1},"delayed":{"fcntl64":1},"delay_us":{"fcntl64":5}}"#,
                "\n"
            ),
        )
        .unwrap();
        let injection = Injection::read(&path).unwrap();
        assert_eq!(injection.processes, 2);
        assert_eq!(injection.calls["fcntl64"], 4);
        assert_eq!(injection.delay_us["fcntl64"], 35);
        assert_eq!(injection.not_fuzzed(), None);
        fs::write(
            &path,
            r#"{"calls":{"fcntl64":2},"delayed":{},"delay_us":{}}"#,
        )
        .unwrap();
        assert!(Injection::read(&path)
            .unwrap()
            .not_fuzzed()
            .unwrap()
            .contains("delayed none"));
        fs::remove_file(&path).unwrap();
        assert!(Injection::read(&path)
            .unwrap()
            .not_fuzzed()
            .unwrap()
            .contains("no statistics"));
        fs::write(&path, "not json\n").unwrap();
        assert!(Injection::read(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
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
