//! A fuzzing campaign: runs a program many times under the shim, each run
//! with its own seed, `--jobs` at a time, and reports every run, how to
//! reproduce each failure, and a summary (also as summary.json).

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::descendants::Reaper;
use crate::plan::Plan;
use crate::report::{self, Summary, PREFIX};
use crate::run::{run_once, RunResult, RunSpec, INTERRUPTED};

/// Everything a campaign needs, checked already.
#[derive(Debug)]
pub struct Campaign {
    pub plan: Plan,
    pub program: OsString,
    pub args: Vec<OsString>,
    /// `LD_PRELOAD` for every run: the shim first.
    pub ld_preload: OsString,
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
    /// Show one live progress line (on a terminal) instead of a line per
    /// passing run.
    pub progress: bool,
}

/// Runs the campaign and returns its exit status.
pub fn run_campaign(campaign: &Campaign) -> Result<u8> {
    let out = &campaign.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let out = std::fs::canonicalize(out)?;
    let mut env: Vec<(String, OsString)> = vec![("LD_PRELOAD".into(), campaign.ld_preload.clone())];
    env.extend(campaign.settings.iter().map(|(k, v)| (k.clone(), v.into())));
    let spec = RunSpec {
        program: campaign.program.clone(),
        args: campaign.args.clone(),
        env: env.clone(),
        timeout: campaign.timeout,
        keep_log: campaign.keep_log,
    };
    let command: Vec<OsString> = std::iter::once(campaign.program.clone())
        .chain(campaign.args.iter().cloned())
        .collect();
    let context = report::Context {
        cwd: std::env::current_dir()?,
        env,
        command,
    };
    let reaper = Reaper::new().context("becoming the subreaper of the runs")?;
    let mut plan = campaign.plan.clone();
    if plan.strategy.as_deref() == Some(crate::plan::AUTO) {
        plan.calibrated_calls = calibrate(&spec, &out, &reaper)?;
        match plan.calibrated_calls {
            Some(calls) => println!(
                "{PREFIX}: calibration run (no delays): at most {calls} intercepted calls in one process; sparse runs spread their change points over them"
            ),
            None => println!("{PREFIX}: calibration run (no delays) counted no calls"),
        }
    }
    let runs = plan.run_plans();

    install_interrupt_handlers();
    let plan = &plan;
    let shard = if plan.shard == crate::plan::Shard::WHOLE {
        String::new()
    } else {
        format!(", shard {} ({} of them here)", plan.shard, runs.len())
    };
    let strategy = match &plan.strategy {
        Some(strategy) => format!("; strategy {strategy}"),
        None => String::new(),
    };
    println!(
        "{PREFIX}: {} runs of {}{shard}; seed {}{strategy}; {} job{}; timeout {} s; output in {}",
        plan.runs,
        report::shell_words(&context.command),
        plan.seed,
        campaign.jobs,
        if campaign.jobs == 1 { "" } else { "s" },
        campaign.timeout.as_secs_f64(),
        out.display()
    );

    let start = Instant::now();
    let mut summary = Summary::new(plan.seed, plan.shard, runs.len());
    summary.command = report::shell_words(&context.command);
    let width = plan.runs.saturating_sub(1).to_string().len();
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let mut progress = Progress::new(campaign.progress);
    std::thread::scope(|scope| -> Result<()> {
        let (sender, receiver) = mpsc::channel::<Result<RunResult>>();
        for _ in 0..campaign.jobs.min(runs.len() as u64) {
            let sender = sender.clone();
            let (spec, runs, next, stop, out, reaper) = (&spec, &runs, &next, &stop, &out, &reaper);
            let keep_going = campaign.keep_going;
            scope.spawn(move || loop {
                if stop.load(Ordering::Relaxed) || INTERRUPTED.load(Ordering::Relaxed) {
                    break;
                }
                let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let dir = out.join(format!("run-{:0width$}", run.index));
                let result = run_once(spec, run, &dir, reaper);
                let failed = result.as_ref().map_or(true, |r| !r.outcome.is_pass());
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
            let result = match receiver.recv_timeout(Duration::from_millis(500)) {
                Ok(Ok(result)) => result,
                Ok(Err(error)) => {
                    stop.store(true, Ordering::Relaxed);
                    progress.clear();
                    return Err(error);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    progress.show(&summary, start.elapsed());
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let failed =
                !result.outcome.is_pass() && result.outcome != crate::run::Outcome::Interrupted;
            let reproduce = failed.then(|| report::reproduce_command(&context, &result.plan));
            summary.add(&result, reproduce.as_deref());
            let mut lines = report::run_lines(&summary, &result, &context)?;
            let broke = matches!(
                result.outcome,
                crate::run::Outcome::Fail(_)
                    | crate::run::Outcome::Crash(_)
                    | crate::run::Outcome::Hang
            );
            if broke && campaign.confirm > 0 && !INTERRUPTED.load(Ordering::Relaxed) {
                progress.clear();
                let again = confirm(&result, campaign.confirm, &reaper)?;
                lines.push_str(&format!(
                    "    reproduce: fails {again} of {} replays of its recorded delays (delayshim minimize {} explains it)\n",
                    campaign.confirm,
                    result.dir.display()
                ));
                summary.confirmed(result.plan.index, again, campaign.confirm);
            }
            progress.clear();
            if !campaign.progress || !result.outcome.is_pass() {
                print!("{lines}");
            }
            progress.show(&summary, start.elapsed());
        }
        progress.clear();
        Ok(())
    })?;
    reaper.reap_orphans();
    summary.elapsed = start.elapsed();
    let code = summary.exit_code(INTERRUPTED.load(Ordering::Relaxed));
    print!("{}", summary.text(!campaign.keep_going));
    summary.write_json(&out.join(report::SUMMARY), code)?;
    Ok(code)
}

/// One run with delays off and statistics on: the most calls a process
/// makes, to size sparse's horizon.
fn calibrate(spec: &RunSpec, out: &std::path::Path, reaper: &Reaper) -> Result<Option<u64>> {
    let mut calibration = RunSpec {
        program: spec.program.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        timeout: spec.timeout,
        keep_log: false,
    };
    calibration.env.retain(|(k, _)| k != "DELAYSHIM_ENABLE");
    calibration
        .env
        .push(("DELAYSHIM_ENABLE".into(), "0".into()));
    let plan = crate::plan::RunPlan {
        index: 0,
        seed: 0,
        strategy: None,
        settings: Vec::new(),
    };
    let dir = out.join("calibration");
    let result = run_once(&calibration, &plan, &dir, reaper)?;
    let busiest = crate::stats::read_lines(&dir.join(crate::run::STATS), true)?
        .iter()
        .map(|(_, process)| {
            process
                .get("calls")
                .and_then(|calls| calls.as_object())
                .map_or(0, |calls| {
                    calls.values().filter_map(|n| n.as_u64()).sum::<u64>()
                })
        })
        .max();
    Ok(busiest.filter(|&calls| calls > 0 && result.elapsed < spec.timeout))
}

/// Replays a failing run's record `tries` times; how many failed again.
fn confirm(result: &RunResult, tries: u32, reaper: &Reaper) -> Result<u32> {
    let invocation = crate::replay::Invocation::read(&result.dir.join(crate::run::RUN_JSON))?;
    let record = result.dir.join(crate::run::RECORD);
    let mut failures = 0;
    for _ in 0..tries {
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        if invocation.fails_beside(Some(&record), Some(reaper))? {
            failures += 1;
        }
    }
    Ok(failures)
}

/// The live line on a terminal: runs done, failures, time left.
#[derive(Debug)]
struct Progress {
    enabled: bool,
    shown: bool,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            shown: false,
        }
    }

    fn show(&mut self, summary: &Summary, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let left = if summary.done == 0 {
            "time left unknown".to_owned()
        } else {
            let per_run = elapsed.as_secs_f64() / summary.done as f64;
            let seconds = per_run * (summary.planned - summary.done) as f64;
            format!("about {} left", human_seconds(seconds))
        };
        print!(
            "\r\x1b[K{PREFIX}: {}/{} runs done, {} failed, {:.0} s elapsed, {left}",
            summary.done,
            summary.planned,
            summary.failures(),
            elapsed.as_secs_f64()
        );
        let _ = std::io::stdout().flush();
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            print!("\r\x1b[K");
            let _ = std::io::stdout().flush();
            self.shown = false;
        }
    }
}

fn human_seconds(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn install_interrupt_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(
                signal,
                on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_naturally() {
        assert_eq!(human_seconds(12.4), "12 s");
        assert_eq!(human_seconds(600.0), "10 min");
        assert_eq!(human_seconds(7200.0), "2.0 h");
    }
}
