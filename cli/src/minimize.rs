//! `delayshim minimize RUN_DIR`: the explanation of a failure, the fewest
//! recorded delays that still make it fail, with their calls and sites.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context as _, Result};
use delayshim_campaign::minimize::{explanation, minimize, Options, Record};
use delayshim_campaign::output;
use delayshim_campaign::records::{RunRecord, RESULT_JSON};
use delayshim_campaign::replay::Invocation;
use delayshim_campaign::run::{
    install_interrupt_handlers, interrupted_status, INTERRUPTED, RECORD, RUN_JSON,
};

/// Explains a failing run: the fewest recorded delays that still make it fail.
///
/// Shrinks the run's recorded delays to the few that still make it fail,
/// and says which process, thread, call, file and call site each is,
/// before or after the call, and for how long. Writes
/// RUN_DIR/explanation.md and the minimal set as RUN_DIR/minimize/minimal.txt.
///
/// Each candidate set is replayed --tries times and still fails when at
/// least --threshold of them fail; the three failure rates (no delays, the
/// whole record, the minimal set) are each measured over --rate-tries.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A failing run's directory, like fuzz-out/SEED/run-3.
    run_dir: PathBuf,
    /// Replays of each candidate set.
    #[arg(long, default_value_t = Options::default().tries, value_parser = clap::value_parser!(u32).range(1..=100))]
    tries: u32,
    /// Share of a candidate's replays that must fail.
    #[arg(long, default_value_t = Options::default().threshold, value_parser = parse_share)]
    threshold: f64,
    /// Replays for each of the three failure rates the explanation gives.
    #[arg(long, default_value_t = Options::default().rate_tries, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rate_tries: u32,
    /// Replays in parallel (they disturb each other's timing, as the
    /// campaign's parallel runs did).
    #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: u64,
}

fn parse_share(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|p| *p > 0.0 && *p <= 1.0)
        .ok_or_else(|| format!("expected a share above 0 and at most 1; got {s:?}"))
}

/// Exit status: 0 explained; 1 the record does not fail again, or the
/// minimal set fails below the threshold; 2 usage error (a passing run
/// included); 130/143 interrupted (rerun to resume).
pub fn main(args: Args) -> u8 {
    match explain(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("delayshim minimize: {error:#}");
            2
        }
    }
}

fn explain(args: &Args) -> Result<u8> {
    let dir = std::fs::canonicalize(&args.run_dir)
        .with_context(|| format!("{}: no such run directory", args.run_dir.display()))?;
    let invocation = Invocation::read(&dir.join(RUN_JSON))?;
    if let Ok(text) = std::fs::read_to_string(dir.join(RESULT_JSON)) {
        let result: RunRecord = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", dir.join(RESULT_JSON).display()))?;
        if !result.outcome.is_broken() {
            anyhow::bail!(
                "{}: the run's outcome was {}, not a failure: nothing to explain (give a FAIL, CRASH or HANG run's directory)",
                dir.display(),
                result.outcome.name()
            );
        }
    }
    let record = Record::read(&dir.join(RECORD))?;
    if record.calls.is_empty() {
        anyhow::bail!(
            "{} recorded no delay: nothing to minimize",
            dir.join(RECORD).display()
        );
    }
    let options = Options {
        tries: args.tries,
        threshold: args.threshold,
        rate_tries: args.rate_tries,
    };
    let live = std::io::stderr().is_terminal();
    let mut progress = |message: &str| {
        if live {
            eprint!("\r\x1b[Kdelayshim minimize: {message}");
        } else {
            eprintln!("delayshim minimize: {message}");
        }
        let _ = std::io::stderr().flush();
    };
    let work = dir.join("minimize");
    install_interrupt_handlers();
    let jobs = args.jobs as usize;
    let outcome = match minimize(&record, &work, &invocation, options, jobs, &mut progress) {
        Ok(outcome) => outcome,
        Err(error) => {
            if live {
                eprintln!();
            }
            if INTERRUPTED.load(Ordering::Relaxed) {
                eprintln!(
                    "delayshim minimize: interrupted; the verdicts so far are in {}: the same command again resumes",
                    work.join("progress.jsonl").display()
                );
                return Ok(interrupted_status());
            }
            eprintln!("delayshim minimize: {error:#}");
            return Ok(1);
        }
    };
    if live {
        eprintln!();
    }
    let minimal = outcome.minimal.clone().into_os_string();
    let command = invocation.shell_line(&Invocation::replay_changes(Some(&minimal)));
    let timeline = delayshim_campaign::conflicts::campaign::explanation_section(&dir);
    let text = explanation(&record, &outcome, &command, timeline.as_deref());
    let path = dir.join("explanation.md");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    output::print(&format!("{text}\n(written to {})\n", path.display()));
    if !outcome.reliable() {
        eprintln!(
            "delayshim minimize: the minimal set failed {} of {} replays, below --threshold {}: not a reliable explanation",
            outcome.rates[2], outcome.rate_tries, options.threshold
        );
        return Ok(1);
    }
    Ok(0)
}
