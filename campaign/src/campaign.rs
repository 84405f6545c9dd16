//! A fuzzing campaign: runs a program many times under the shim, each run
//! with its own seed, `--jobs` at a time, and reports every run, how to
//! reproduce each failure, and a summary (also as summary.json).

use std::ffi::OsString;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::auto::profile::Profile;
use crate::auto::schedule::Schedule;
use crate::descendants::Reaper;
use crate::events::{Events, Standing};
use crate::invocation::Invocation;
use crate::plan::{Plan, RunPlan};
use crate::records::{
    read_runs, CampaignFile, Confirmed, OutcomeKind, RunRecord, RunsFile, RunsIndex, RESULT_JSON,
};
use crate::report::{self, Summary, EXIT_USAGE, PREFIX};
use crate::run::{
    install_interrupt_handlers, interrupted_status, run_once, Outcome, RunResult, RunSpec,
    INTERRUPTED,
};

/// Which run directories a campaign keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Failing runs' only: a passing run leaves its line in runs.jsonl and
    /// summary.json and nothing else.
    Failures,
    All,
}

/// Everything a campaign needs, checked already.
#[derive(Debug)]
pub struct Campaign {
    pub plan: Plan,
    pub program: OsString,
    pub args: Vec<OsString>,
    /// `LD_PRELOAD` for every run, the shim first; `None` under the seccomp
    /// backend, whose supervisor (`program`) must not load the shim.
    pub ld_preload: Option<OsString>,
    /// `DELAYSHIM_*` settings for every run, from options and the
    /// environment; never one of [`crate::plan::PER_RUN_VARS`].
    pub settings: Vec<(String, String)>,
    pub jobs: u64,
    pub timeout: Duration,
    pub keep_going: bool,
    /// Keep each run's delays.log.
    pub keep_log: bool,
    /// Replays of each failing run's record.
    pub confirm: u32,
    pub out: PathBuf,
    /// Continue the campaign already in `out` (same seed and settings).
    pub resume: bool,
    /// Empty `out` first.
    pub force: bool,
    pub keep: Keep,
    /// No run starts after this long, and running ones are stopped.
    pub max_time: Option<Duration>,
    /// Each run in its own empty directory (`{dir}`, `DELAYSHIM_RUN_DIR`).
    pub fresh_dir: bool,
    /// A shell command that prepares each run's fresh directory.
    pub setup: Option<OsString>,
    /// An invariant checker run after each run.
    pub check: Option<OsString>,
    /// The arms and scales `--strategy auto` may use.
    pub auto_choice: crate::auto::arms::Choice,
}

/// The lock file in an output directory: one campaign at a time.
pub const LOCK: &str = ".lock";

/// An output directory this campaign holds the lock of.
#[derive(Debug)]
struct OutputDir {
    path: PathBuf,
    /// Holds the flock until the campaign ends.
    _lock: std::fs::File,
    /// Whether it held anything but the lock file.
    had_content: bool,
}

impl OutputDir {
    /// Creates `out` if needed, takes its lock, and empties it for
    /// `force`; refuses a directory with content unless `resume` or
    /// `force`.
    fn claim(out: &Path, resume: bool, force: bool) -> Result<OutputDir> {
        if out.exists() && !out.is_dir() {
            bail!(
                "--out {}: a file, not a directory (give a new or empty directory)",
                out.display()
            );
        }
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let path = std::fs::canonicalize(out)?;
        let lock_path = path.join(LOCK);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        // SAFETY: flock on a descriptor we own; the lock goes with it.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "--out {}: another campaign is writing there now (it holds {}); give another --out",
                out.display(),
                lock_path.display()
            );
        }
        let content: Vec<PathBuf> = std::fs::read_dir(&path)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|entry| entry.file_name() != Some(LOCK.as_ref()))
            .collect();
        if !content.is_empty() && force {
            for entry in &content {
                let removed = if entry.is_dir() && !entry.is_symlink() {
                    std::fs::remove_dir_all(entry)
                } else {
                    std::fs::remove_file(entry)
                };
                removed.with_context(|| format!("--force: removing {}", entry.display()))?;
            }
        } else if !content.is_empty() && !resume {
            bail!(
                "--out {}: not empty (another campaign's output?): --resume continues the campaign \
                 there (same seed and settings), --force empties it first, or give another --out",
                out.display()
            );
        }
        Ok(OutputDir {
            path,
            _lock: lock,
            had_content: !content.is_empty() && !force,
        })
    }
}

/// Runs the campaign, telling `events` as it goes, and returns its exit
/// status: [`prepare`]s it, [`execute`]s its runs, [`finish`]es with its
/// summary.
pub fn run_campaign(campaign: &Campaign, events: &mut dyn Events) -> Result<u8> {
    install_interrupt_handlers();
    let mut prepared = prepare(campaign, events)?;
    if let Err(error) = execute(campaign, &mut prepared, events) {
        // What ran is still summed up, and summary.json says why it
        // stopped (a failing --setup, a directory that cannot be written).
        prepared.summary.stopped = Some(format!("stopped by an error: {error:#}"));
        finish(campaign, prepared, events, Some(EXIT_USAGE))?;
        return Err(error);
    }
    finish(campaign, prepared, events, None)
}

/// A campaign ready to make its runs.
#[derive(Debug)]
struct Prepared {
    /// Holds the directory's lock until the campaign ends.
    output: OutputDir,
    spec: RunSpec,
    reaper: &'static Reaper,
    plan: Plan,
    /// Hands out the runs still to make (a resumed campaign's done ones
    /// left out): fixed plans, or auto's as it learns.
    schedule: Schedule,
    /// How many runs are still to make.
    to_go: usize,
    runs_file: RunsFile,
    /// Where this campaign's records begin in runs.jsonl.
    resumed_at: u64,
    summary: Summary,
    start: Instant,
}

impl Prepared {
    fn past_deadline(&self) -> bool {
        self.spec
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }
}

/// Claims the output directory, checks a resumed campaign is the same,
/// makes `auto`'s calibration run and tells what the campaign will do.
fn prepare(campaign: &Campaign, events: &mut dyn Events) -> Result<Prepared> {
    let output = OutputDir::claim(&campaign.out, campaign.resume, campaign.force)?;
    let out = output.path.clone();
    let mut env: Vec<(String, OsString)> = campaign
        .ld_preload
        .iter()
        .map(|preload| ("LD_PRELOAD".into(), preload.clone()))
        .collect();
    env.extend(campaign.settings.iter().map(|(k, v)| (k.clone(), v.into())));
    let start = Instant::now();
    let deadline = campaign.max_time.map(|limit| start + limit);
    // How every run starts the program; each run's own settings, seed
    // and files are added to it (and its reproduce line).
    let invocation = Invocation {
        program: campaign.program.clone(),
        args: campaign.args.clone(),
        env,
        cwd: std::env::current_dir()?,
        timeout: campaign.timeout,
        fresh_dir: campaign.fresh_dir,
        setup: campaign.setup.clone(),
        check: campaign.check.clone(),
    };
    let spec = RunSpec {
        invocation,
        keep_log: campaign.keep_log,
        deadline,
    };
    let invocation = &spec.invocation;
    let reaper = Reaper::shared().context("becoming the subreaper of the runs")?;
    let mut plan = campaign.plan.clone();
    let mut identity = CampaignFile {
        seed: plan.seed,
        runs: plan.runs,
        shard: plan.shard.to_string(),
        strategy: plan.strategy.clone(),
        settings: campaign.settings.iter().cloned().collect(),
        command: invocation.command_line(),
        calibrated_calls: None,
    };
    let mut previous = Vec::new();
    if output.had_content {
        let before = CampaignFile::read(&out).map_err(|_| {
            anyhow::anyhow!(
                "--resume: {} holds no campaign to continue (no readable {}); --force empties it",
                out.display(),
                crate::records::CAMPAIGN_JSON
            )
        })?;
        let differences = before.differences(&identity);
        if !differences.is_empty() {
            bail!(
                "--resume: {} holds another campaign: {}; --force empties it, or give another --out",
                out.display(),
                differences.join(", ")
            );
        }
        plan.calibrated_calls = before.calibrated_calls;
        previous = read_runs(&out)?;
        previous.retain(|r| r.outcome != OutcomeKind::Interrupted);
    }
    let auto = plan.strategy.as_deref() == Some(crate::plan::AUTO);
    let profile = if !auto {
        None
    } else if let Some(profile) = output.had_content.then(|| Profile::load(&out)).flatten() {
        Some(profile)
    } else {
        let profile = calibrate(&spec, &out, reaper, campaign.keep)?;
        profile.save(&out)?;
        if !INTERRUPTED.load(Ordering::Relaxed) {
            events.notice(&format!(
                "{PREFIX}: calibration run (1 us delays): {}\n",
                profile.describe()
            ));
        }
        Some(profile)
    };
    if !output.had_content {
        plan.calibrated_calls = profile.as_ref().map(|p| p.busiest_calls);
    }
    identity.calibrated_calls = plan.calibrated_calls;
    identity.write(&out)?;
    let runs_file = RunsFile::open(&out)?;
    let resumed_at = runs_file.end()?;
    let done_before: std::collections::HashSet<u64> = previous.iter().map(|r| r.index).collect();
    let (schedule, planned) = match profile {
        Some(profile) => {
            let order: Vec<u64> = plan.shard.runs(plan.runs).collect();
            let planned = order.len();
            let choice = crate::auto::arms::Choice {
                seccomp: campaign.ld_preload.is_none(),
                ..campaign.auto_choice.clone()
            };
            let mut learning =
                crate::auto::Auto::new(plan.seed, profile, &choice, order, campaign.jobs as usize);
            // A resumed campaign learns from the runs done before, too.
            for record in &previous {
                learning.resume(
                    record.index,
                    record.strategy.as_deref().unwrap_or(""),
                    crate::auto::Report::of_record(record),
                );
            }
            let cells: Vec<String> = learning.cells().iter().map(|c| c.label()).collect();
            events.notice(&format!(
                "{PREFIX}: auto shares the runs among {} cells by what they find: {}\n",
                cells.len(),
                cells.join(" ")
            ));
            (Schedule::learning(learning), planned)
        }
        None => {
            let all_runs = plan.run_plans();
            let planned = all_runs.len();
            let runs: Vec<RunPlan> = all_runs
                .into_iter()
                .filter(|run| !done_before.contains(&run.index))
                .collect();
            (Schedule::fixed(runs), planned)
        }
    };
    let to_go = planned - done_before.len().min(planned);

    let shard = if plan.shard == crate::plan::Shard::WHOLE {
        String::new()
    } else {
        format!(", shard {} ({planned} of them here)", plan.shard)
    };
    let strategy = match &plan.strategy {
        Some(strategy) => format!("; strategy {strategy}"),
        None => String::new(),
    };
    let resumed = if previous.is_empty() {
        String::new()
    } else {
        format!("; resuming: {} done before, {to_go} to go", previous.len())
    };
    events.notice(&format!(
        "{PREFIX}: {} runs of {}{shard}; seed {}{strategy}; {} job{}; timeout {} s; output in {}{resumed}\n",
        plan.runs,
        invocation.command_line(),
        plan.seed,
        campaign.jobs,
        if campaign.jobs == 1 { "" } else { "s" },
        campaign.timeout.as_secs_f64(),
        out.display()
    ));

    let mut summary = Summary::new(plan.seed, plan.shard, planned);
    summary.command = invocation.command_line();
    summary.settings = identity.settings.clone();
    // Counted, not kept: runs.jsonl has them for summary.json.
    for record in std::mem::take(&mut previous) {
        summary.add(&record);
    }
    Ok(Prepared {
        output,
        spec,
        reaper,
        plan,
        schedule,
        to_go,
        runs_file,
        resumed_at,
        summary,
        start,
    })
}

/// Makes the runs, `--jobs` at a time, each one's record counted, written
/// and told as it ends.
fn execute(campaign: &Campaign, prepared: &mut Prepared, events: &mut dyn Events) -> Result<()> {
    let Prepared {
        output,
        spec,
        reaper,
        plan,
        schedule,
        to_go,
        runs_file,
        summary,
        start,
        ..
    } = prepared;
    let (out, spec, reaper, schedule, start) = (&output.path, &*spec, *reaper, &*schedule, *start);
    let invocation = &spec.invocation;
    let deadline = spec.deadline;
    let width = plan.runs.saturating_sub(1).to_string().len();
    let stop = AtomicBool::new(false);
    let past_deadline = || deadline.is_some_and(|deadline| Instant::now() >= deadline);
    std::thread::scope(|scope| -> Result<()> {
        let (sender, receiver) = mpsc::channel::<Result<(RunResult, Option<u32>)>>();
        for _ in 0..campaign.jobs.min(*to_go as u64) {
            let sender = sender.clone();
            let (spec, schedule, stop, out) = (&spec, &schedule, &stop, &out);
            let (keep_going, confirm_tries) = (campaign.keep_going, campaign.confirm);
            scope.spawn(move || loop {
                if stop.load(Ordering::Relaxed)
                    || INTERRUPTED.load(Ordering::Relaxed)
                    || past_deadline()
                {
                    break;
                }
                let stopped = || {
                    stop.load(Ordering::Relaxed)
                        || INTERRUPTED.load(Ordering::Relaxed)
                        || past_deadline()
                };
                let Some(run) = schedule.next(stopped) else {
                    break;
                };
                let dir = out.join(format!("run-{:0width$}", run.index));
                let result = run_once(spec, &run, &dir, reaper).and_then(|result| {
                    // The replays that confirm a failure take this job's
                    // place: with --jobs 1 nothing runs beside them.
                    // Replays run the checker too, so its verdict is
                    // confirmed as the program's own failures are.
                    let again = if matches!(
                        result.outcome,
                        Outcome::Fail(_)
                            | Outcome::Crash(_)
                            | Outcome::Hang
                            | Outcome::CheckFailed(_)
                    ) && confirm_tries > 0
                        && !INTERRUPTED.load(Ordering::Relaxed)
                    {
                        confirm(&result, confirm_tries)?
                    } else {
                        None
                    };
                    Ok((result, again))
                });
                let failed = result.as_ref().map_or(true, |(r, _)| {
                    !r.outcome.is_pass() && r.outcome != Outcome::Interrupted
                });
                if failed && !keep_going {
                    stop.store(true, Ordering::Relaxed);
                }
                if sender.send(result).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        loop {
            let (result, again) = match receiver.recv_timeout(Duration::from_millis(500)) {
                Ok(Ok(result)) => result,
                Ok(Err(error)) => {
                    stop.store(true, Ordering::Relaxed);
                    events.stopped();
                    return Err(error);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    events.waiting(&standing(summary, schedule, start));
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            // Before anything removes the run's directory (--keep failures).
            schedule.observe(&result);
            let failed = !result.outcome.is_pass() && result.outcome != Outcome::Interrupted;
            let reproduce = failed.then(|| report::reproduce_command(invocation, &result.plan));
            let mut record = RunRecord::of(&result, reproduce.as_deref());
            summary.add(&record);
            let mut lines = report::run_lines(summary, &result, invocation)?;
            if let Some(again) = again {
                lines.push_str(&format!(
                    "    reproduce: fails {again} of {} replays of its recorded delays (delayshim minimize {} explains it)\n",
                    campaign.confirm,
                    result.dir.display()
                ));
                record.confirmed = Some(Confirmed {
                    failures: again,
                    replays: campaign.confirm,
                });
            }
            if campaign.keep == Keep::Failures && !failed {
                std::fs::remove_dir_all(&result.dir)
                    .with_context(|| format!("removing {}", result.dir.display()))?;
                record.dir = None;
            } else {
                let path = result.dir.join(RESULT_JSON);
                std::fs::write(&path, serde_json::to_string_pretty(&record)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            runs_file.append(&record)?;
            events.run_ended(&result, &lines, &standing(summary, schedule, start));
        }
        Ok(())
    })?;
    reaper.reap_orphans();
    Ok(())
}

/// Why the campaign stopped, its closing lines and summary.json; with
/// `error_status`, the campaign stopped on an error the command exits with.
fn finish(
    campaign: &Campaign,
    prepared: Prepared,
    events: &mut dyn Events,
    error_status: Option<u8>,
) -> Result<u8> {
    let past_deadline = prepared.past_deadline();
    let Prepared {
        output,
        schedule,
        resumed_at,
        mut summary,
        start,
        ..
    } = prepared;
    let out = &output.path;
    let planned = summary.planned;
    summary.elapsed = start.elapsed();
    if error_status.is_some() {
        // Its reason is in summary.stopped already.
    } else if summary.done < planned && past_deadline && !INTERRUPTED.load(Ordering::Relaxed) {
        let limit = campaign.max_time.unwrap_or_default().as_secs_f64();
        summary.stopped = Some(format!(
            "stopped at --max-time {limit} s (--resume continues the campaign)"
        ));
    } else if INTERRUPTED.load(Ordering::Relaxed) && summary.done < planned {
        summary.stopped = Some("interrupted (--resume continues the campaign)".into());
    }
    let code = error_status.unwrap_or_else(|| {
        summary.exit_code(INTERRUPTED.load(Ordering::Relaxed).then(interrupted_status))
    });
    let mut text = summary.text(!campaign.keep_going);
    let learned = schedule.learned();
    if let Some((learned, _)) = &learned {
        text.push_str(learned);
    }
    text.push_str(&crate::conflicts::campaign::summary_line(out));
    events.finished(&summary, &text);
    let runs = RunsIndex::build(out, resumed_at)?;
    summary.write_json(
        &out.join(report::SUMMARY),
        code,
        &runs,
        learned.map(|(_, json)| json),
    )?;
    Ok(code)
}

/// One run with 1 us blanket delays and statistics on: which calls each
/// process makes, which of them a delay selects, and how long a run takes.
fn calibrate(spec: &RunSpec, out: &Path, reaper: &Reaper, keep: Keep) -> Result<Profile> {
    let mut calibration = RunSpec {
        invocation: spec.invocation.clone(),
        keep_log: false,
        deadline: spec.deadline,
    };
    calibration.invocation.check = None;
    let env = &mut calibration.invocation.env;
    env.retain(|(k, _)| k != "DELAYSHIM_ENABLE");
    env.extend(
        crate::auto::profile::CALIBRATION_SETTINGS
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into())),
    );
    let plan = crate::plan::RunPlan {
        index: 0,
        seed: 0,
        strategy: None,
        settings: Vec::new(),
    };
    let dir = out.join("calibration");
    let result = run_once(&calibration, &plan, &dir, reaper)?;
    let profile = Profile::read(&dir.join(crate::run::STATS), result.elapsed)?;
    if keep == Keep::Failures {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(profile)
}

/// Where the campaign stands, for a progress line.
fn standing<'a>(summary: &'a Summary, schedule: &Schedule, start: Instant) -> Standing<'a> {
    Standing {
        summary,
        elapsed: start.elapsed(),
        leading: schedule.leading(),
    }
}

/// Replays a failing run's record `tries` times; how many failed again
/// (`None` once interrupted: the replays did not finish).
fn confirm(result: &RunResult, tries: u32) -> Result<Option<u32>> {
    let invocation = crate::replay::Invocation::read(&result.dir.join(crate::run::RUN_JSON))?;
    let record = result.dir.join(crate::run::RECORD);
    let mut failures = 0;
    for _ in 0..tries {
        match invocation.fails(Some(&record)) {
            Ok(failed) => failures += u32::from(failed),
            Err(_) if INTERRUPTED.load(Ordering::Relaxed) => return Ok(None),
            Err(error) => return Err(error),
        }
    }
    Ok(Some(failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Shard;
    use crate::run::RunResult;

    /// What a campaign told, in order.
    #[derive(Debug, Default)]
    struct Recorded(Vec<String>);

    impl Events for Recorded {
        fn notice(&mut self, text: &str) {
            self.0.push(format!("notice {text}"));
        }
        fn run_ended(&mut self, result: &RunResult, lines: &str, standing: &Standing<'_>) {
            assert!(
                lines.starts_with(&format!("[{}/", standing.summary.done)),
                "{lines}"
            );
            self.0.push(format!(
                "run {} {}",
                result.plan.index,
                result.outcome.kind()
            ));
        }
        fn waiting(&mut self, _: &Standing<'_>) {}
        fn finished(&mut self, summary: &Summary, text: &str) {
            assert!(text.starts_with(&format!("{PREFIX}: {} of 3 runs done", summary.done)));
            self.0.push("finished".into());
        }
    }

    #[test]
    fn a_campaign_tells_its_events_and_the_caller_shows_them() {
        let out = std::env::temp_dir().join(format!("delayshim-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let campaign = Campaign {
            plan: Plan {
                seed: 1,
                runs: 3,
                shard: Shard::WHOLE,
                strategy: None,
                calibrated_calls: None,
            },
            // Without the shim: each run is NO INJECTION, and told.
            program: "true".into(),
            args: Vec::new(),
            ld_preload: None,
            settings: Vec::new(),
            jobs: 1,
            timeout: Duration::from_secs(30),
            keep_going: true,
            keep_log: false,
            confirm: 0,
            out: out.clone(),
            resume: false,
            force: false,
            keep: Keep::Failures,
            max_time: None,
            fresh_dir: false,
            setup: None,
            check: None,
            auto_choice: crate::auto::arms::Choice::default(),
        };
        let mut events = Recorded::default();
        let code = run_campaign(&campaign, &mut events).unwrap();
        assert_eq!(code, report::EXIT_NOTHING_INJECTED);
        assert!(
            events.0[0].starts_with("notice delayshim fuzz: 3 runs of true"),
            "{events:?}"
        );
        assert_eq!(
            events.0[1..],
            [
                "run 0 NO INJECTION",
                "run 1 NO INJECTION",
                "run 2 NO INJECTION",
                "finished"
            ]
        );
        assert!(out.join(report::SUMMARY).exists());
        std::fs::remove_dir_all(&out).unwrap();
    }
}
