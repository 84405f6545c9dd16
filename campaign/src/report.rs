//! What a campaign prints: a line per run, the command that reproduces a
//! failure, and the summary (also written as summary.json).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::plan::{RunPlan, Shard};
use crate::records::{Confirmed, OutcomeKind, RunRecord};
use crate::run::{Outcome, RunResult, STDERR, STDOUT};

/// What every line of the campaign's own starts with.
pub const PREFIX: &str = "delayshim fuzz";

pub const EXIT_PASS: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOTHING_INJECTED: u8 = 3;
pub const EXIT_INTERRUPTED: u8 = 130;

/// The campaign's summary file in its output directory.
pub const SUMMARY: &str = "summary.json";

/// What a reproduce command needs besides the run's seed.
#[derive(Debug)]
pub struct Context {
    pub cwd: PathBuf,
    /// LD_PRELOAD and every DELAYSHIM_* setting in effect.
    pub env: Vec<(String, OsString)>,
    pub command: Vec<OsString>,
    /// `--fresh-dir` and `--setup`: the line makes a directory of its own.
    pub fresh_dir: bool,
    pub setup: Option<OsString>,
}

/// Quotes one word for a POSIX shell.
pub fn shell_word(word: &[u8]) -> String {
    let plain = !word.is_empty()
        && word
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=,+@%".contains(b));
    let text = String::from_utf8_lossy(word);
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

pub fn shell_words<'a>(words: impl IntoIterator<Item = &'a OsString>) -> String {
    words
        .into_iter()
        .map(|w| shell_word(w.as_bytes()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The shell command that repeats run `plan`: same directory, same
/// environment, same command line.
pub fn reproduce_command(context: &Context, plan: &RunPlan) -> String {
    let mut line = if context.fresh_dir {
        // A new empty directory, as the run had: `{dir}` is "$d".
        let mut line = "d=$(mktemp -d) && cd \"$d\" && ".to_owned();
        if let Some(setup) = &context.setup {
            let _ = write!(
                line,
                "DELAYSHIM_RUN_DIR=\"$d\" sh -c {} && ",
                shell_word(setup.as_bytes())
            );
        }
        line.push_str("DELAYSHIM_RUN_DIR=\"$d\" ");
        line
    } else {
        format!("cd {} && ", shell_word(context.cwd.as_os_str().as_bytes()))
    };
    // pct's tasks meet in a region of the run's own, which `delayshim run`
    // makes (and LD_PRELOAD is then its own).
    let pct = plan
        .settings
        .iter()
        .any(|(name, value)| name == "DELAYSHIM_STRATEGY" && value == "pct");
    for (name, value) in &context.env {
        if !(pct && name == "LD_PRELOAD") {
            let _ = write!(line, "{name}={} ", shell_word(value.as_bytes()));
        }
    }
    for (name, value) in &plan.settings {
        let _ = write!(line, "{name}={} ", shell_word(value.as_bytes()));
    }
    let mut command = shell_words(&context.command);
    if pct {
        let delayshim = std::env::current_exe().unwrap_or_else(|_| "delayshim".into());
        command = format!(
            "{} run --backend preload -- {command}",
            shell_word(delayshim.as_os_str().as_bytes())
        );
    }
    if context.fresh_dir {
        // Every word holding `{dir}` is single-quoted (`{` is not plain).
        command = command.replace("{dir}", "'\"$d\"'");
    }
    let _ = write!(line, "DELAYSHIM_SEED={} {command}", plan.seed);
    line
}

/// `pwrite64 412, fcntl64 803, fsync 31`, most delayed first.
pub fn delay_counts(delayed: &BTreeMap<String, u64>) -> String {
    let mut counts: Vec<(&String, &u64)> = delayed.iter().filter(|(_, n)| **n > 0).collect();
    counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The last `n` non-empty lines of a run's output file.
fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.chars().take(200).collect())
        .collect()
}

/// The lines printed when a run ends; a failure adds what it printed last,
/// the command that reproduces it and where its files are.
pub fn run_lines(summary: &Summary, result: &RunResult, context: &Context) -> Result<String> {
    let strategy = match &result.plan.strategy {
        Some(strategy) => format!(" strategy={strategy}"),
        None => String::new(),
    };
    let mut text = format!(
        "[{}/{}] seed={}{strategy} {} {:.1} s  delays: {}",
        summary.done,
        summary.planned,
        result.plan.seed,
        result.outcome.kind(),
        result.elapsed.as_secs_f64(),
        delay_counts(result.counts.field("delayed"))
    );
    let mut details: Vec<String> = result.outcome.detail().into_iter().collect();
    if result.left_running > 0 {
        details.push(format!(
            "left {} process{} running: killed",
            result.left_running,
            if result.left_running == 1 { "" } else { "es" }
        ));
    }
    if !details.is_empty() {
        let _ = write!(text, "  ({})", details.join("; "));
    }
    text.push('\n');
    if result.outcome.is_pass() || result.outcome == Outcome::Interrupted {
        return Ok(text);
    }
    for name in [STDOUT, STDERR] {
        for line in tail(&result.dir.join(name), 3) {
            let _ = writeln!(text, "    {name}: {line}");
        }
    }
    let command = reproduce_command(context, &result.plan);
    let saved = result.dir.join("reproduce.sh");
    std::fs::write(&saved, format!("#!/bin/sh\n{command}\n"))
        .with_context(|| format!("writing {}", saved.display()))?;
    for line in &result.timeline {
        let _ = writeln!(text, "    {line}");
    }
    let _ = writeln!(text, "    reproduce: {command}");
    let _ = writeln!(
        text,
        "    output, statistics and log: {}",
        result.dir.display()
    );
    Ok(text)
}

/// A campaign's totals as runs finish: every run's record, and what the
/// closing lines and summary.json say about them.
#[derive(Debug)]
pub struct Summary {
    seed: u64,
    shard: Shard,
    pub planned: usize,
    pub done: usize,
    runs: Vec<RunRecord>,
    pub elapsed: Duration,
    /// The program and its arguments, as a shell line, for `delayshim report`.
    pub command: String,
    /// The campaign-wide `DELAYSHIM_*` settings, so that `report` tells
    /// runs of one seed under other settings apart.
    pub settings: BTreeMap<String, String>,
    /// Why the campaign stopped before its last run, if it did (not a
    /// failure with --keep-going off, which the text says itself).
    pub stopped: Option<String>,
}

impl Summary {
    pub fn new(seed: u64, shard: Shard, planned: usize) -> Summary {
        Summary {
            seed,
            shard,
            planned,
            done: 0,
            runs: Vec::new(),
            elapsed: Duration::ZERO,
            command: String::new(),
            settings: BTreeMap::new(),
            stopped: None,
        }
    }

    /// Adds a finished run; `reproduce` is its reproduce command, for a
    /// failure.
    pub fn add(&mut self, result: &RunResult, reproduce: Option<&str>) {
        self.add_record(RunRecord::of(result, reproduce));
    }

    /// Adds a run's record (also for the runs a resumed campaign made before).
    pub fn add_record(&mut self, record: RunRecord) {
        self.done += 1;
        self.runs.push(record);
    }

    /// The record of the run added last.
    pub fn last(&self) -> Option<&RunRecord> {
        self.runs.last()
    }

    pub fn last_mut(&mut self) -> Option<&mut RunRecord> {
        self.runs.last_mut()
    }

    /// Records how often run `index`'s recorded delays failed again.
    pub fn confirmed(&mut self, index: u64, failures: u32, tries: u32) {
        if let Some(run) = self.runs.iter_mut().rev().find(|run| run.index == index) {
            run.confirmed = Some(Confirmed {
                failures,
                replays: tries,
            });
        }
    }

    fn failing(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs.iter().filter(|r| r.outcome.is_failure())
    }

    /// Runs that failed, crashed, hung or were not fuzzed.
    pub fn failures(&self) -> usize {
        self.failing().count()
    }

    fn count(&self, kind: OutcomeKind) -> usize {
        self.runs.iter().filter(|r| r.outcome == kind).count()
    }

    fn by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut by_kind = BTreeMap::new();
        for run in &self.runs {
            *by_kind.entry(run.outcome.name()).or_default() += 1;
        }
        by_kind
    }

    fn delayed(&self) -> BTreeMap<String, u64> {
        let mut delayed = BTreeMap::new();
        for run in &self.runs {
            for (name, n) in &run.delayed {
                *delayed.entry(name.clone()).or_default() += n;
            }
        }
        delayed
    }

    fn injected(&self) -> u64 {
        self.runs.iter().map(|r| r.injected).sum()
    }

    fn left_running(&self) -> usize {
        self.runs.iter().map(|r| r.left_running).sum()
    }

    /// Per strategy: runs, failing runs, seconds.
    fn by_strategy(&self) -> BTreeMap<String, (usize, usize, f64)> {
        let mut by_strategy: BTreeMap<String, (usize, usize, f64)> = BTreeMap::new();
        for run in &self.runs {
            let name = run.strategy.clone().unwrap_or_else(|| "default".into());
            let entry = by_strategy.entry(name).or_default();
            entry.0 += 1;
            entry.1 += usize::from(run.outcome.is_failure());
            entry.2 += run.seconds;
        }
        by_strategy
    }

    /// 1 if any run failed, crashed, hung or was not fuzzed; 3 if nothing
    /// was injected in the whole campaign; 128 + the signal if interrupted.
    pub fn exit_code(&self, interrupted: Option<u8>) -> u8 {
        let broken = self.runs.iter().any(|r| r.outcome.is_broken());
        if let Some(status) = interrupted {
            status
        } else if broken {
            EXIT_FAILED
        } else if self.injected() == 0 {
            EXIT_NOTHING_INJECTED
        } else if self.count(OutcomeKind::NoInjection) > 0 {
            EXIT_FAILED
        } else {
            EXIT_PASS
        }
    }

    /// The closing lines.
    pub fn text(&self, stops_at_failure: bool) -> String {
        let mut text = format!(
            "{PREFIX}: {} of {} runs done in {:.1} s: {} passed",
            self.done,
            self.planned,
            self.elapsed.as_secs_f64(),
            self.count(OutcomeKind::Pass)
        );
        for kind in OutcomeKind::ALL.into_iter().skip(1) {
            let n = self.count(kind);
            if n > 0 {
                let _ = write!(text, ", {n} {}", kind.name());
            }
        }
        text.push('\n');
        let failing: Vec<&RunRecord> = self.failing().collect();
        if let Some(why) = &self.stopped {
            let _ = writeln!(text, "{PREFIX}: {why}");
        } else if self.done < self.planned && stops_at_failure && !failing.is_empty() {
            let _ = writeln!(
                text,
                "{PREFIX}: stopped at the first failure (--keep-going runs them all)"
            );
        }
        if !failing.is_empty() {
            let seeds: Vec<String> = failing
                .iter()
                .map(|r| format!("{} ({})", r.seed, r.outcome.name()))
                .collect();
            let _ = writeln!(text, "failing seeds: {}", seeds.join(", "));
        }
        let delayed = self.delayed();
        let total: u64 = delayed.values().sum();
        let delay_us: u64 = self.runs.iter().map(|r| r.delay_us).sum();
        let _ = writeln!(
            text,
            "delays injected: {total} ({}), {:.1} s in all",
            delay_counts(&delayed),
            delay_us as f64 / 1e6
        );
        let left_running = self.left_running();
        if left_running > 0 {
            let _ = writeln!(
                text,
                "processes left running by runs: {left_running}, all killed"
            );
        }
        let by_strategy = self.by_strategy();
        if by_strategy.len() > 1 || by_strategy.keys().any(|s| s != "default") {
            let parts: Vec<String> = by_strategy
                .iter()
                .map(|(name, (runs, failing, seconds))| {
                    format!("{name} {failing}/{runs} failing in {seconds:.1} s")
                })
                .collect();
            let _ = writeln!(text, "by strategy: {}", parts.join(", "));
        }
        text
    }

    /// summary.json: the campaign and every run, for scripts and CI.
    /// `auto` is what `--strategy auto` learned, if it ran.
    pub fn write_json(
        &self,
        path: &Path,
        exit_code: u8,
        auto: Option<serde_json::Value>,
    ) -> Result<()> {
        let mut runs = self.runs.clone();
        runs.sort_by_key(|r| r.index);
        let mut json = serde_json::json!({
            "seed": self.seed,
            "shard": self.shard.to_string(),
            "command": self.command,
            "settings": self.settings,
            "planned": self.planned,
            "done": self.done,
            "exit_code": exit_code,
            "stopped": self.stopped,
            "by_outcome": self.by_kind(),
            "delayed": self.delayed(),
            "injected": self.injected(),
            "left_running": self.left_running(),
            "seconds": self.elapsed.as_secs_f64(),
            "by_strategy": self.by_strategy().iter().map(|(name, (runs, failing, seconds))| {
                (name.clone(), serde_json::json!({ "runs": runs, "failing": failing, "seconds": seconds }))
            }).collect::<serde_json::Map<String, serde_json::Value>>(),
            "runs": runs,
        });
        if let Some(auto) = auto {
            json["auto"] = auto;
        }
        // Written whole, then renamed: a reader never sees half of one.
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, format!("{json:#}\n"))
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counts;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(shell_word(b"/usr/bin/driver"), "/usr/bin/driver");
        assert_eq!(shell_word(b"a b"), "'a b'");
        assert_eq!(shell_word(b"it's"), r"'it'\''s'");
        assert_eq!(shell_word(b""), "''");
        assert_eq!(shell_word(b"*.db"), "'*.db'");
    }

    #[test]
    fn a_pct_run_is_reproduced_through_delayshim_run_which_makes_its_region() {
        let context = Context {
            cwd: "/w".into(),
            env: vec![("LD_PRELOAD".into(), "/x/libdelayshim.so".into())],
            command: vec!["prog".into()],
            fresh_dir: false,
            setup: None,
        };
        let plan = RunPlan {
            index: 0,
            seed: 5,
            strategy: Some("pct@1ms".into()),
            settings: vec![("DELAYSHIM_STRATEGY".into(), "pct".into())],
        };
        let line = reproduce_command(&context, &plan);
        assert!(!line.contains("LD_PRELOAD"), "{line}");
        assert!(line.contains("DELAYSHIM_STRATEGY=pct "), "{line}");
        assert!(line.ends_with(" run --backend preload -- prog"), "{line}");
    }

    #[test]
    fn reproduce_command_sets_everything() {
        let context = Context {
            cwd: "/w d".into(),
            env: vec![
                ("LD_PRELOAD".into(), "/x/libdelayshim.so".into()),
                ("DELAYSHIM_FCNTL".into(), "unlock".into()),
            ],
            command: vec!["driver".into(), "--op".into(), "get-set".into()],
            fresh_dir: false,
            setup: None,
        };
        let mut plan = RunPlan {
            index: 3,
            seed: 7,
            strategy: None,
            settings: Vec::new(),
        };
        assert_eq!(
            reproduce_command(&context, &plan),
            "cd '/w d' && LD_PRELOAD=/x/libdelayshim.so DELAYSHIM_FCNTL=unlock DELAYSHIM_SEED=7 driver --op get-set"
        );
        plan.strategy = Some("sites".into());
        plan.settings = vec![
            ("DELAYSHIM_STRATEGY".into(), "sites".into()),
            ("DELAYSHIM_FIRE_PROB".into(), "0.5".into()),
        ];
        assert!(reproduce_command(&context, &plan)
            .contains(" DELAYSHIM_STRATEGY=sites DELAYSHIM_FIRE_PROB=0.5 DELAYSHIM_SEED=7 driver"));
        let fresh = Context {
            fresh_dir: true,
            setup: Some("touch a".into()),
            command: vec!["prog".into(), "--db={dir}/x.db".into()],
            ..context
        };
        let line = reproduce_command(&fresh, &plan);
        assert!(
            line.starts_with(
                "d=$(mktemp -d) && cd \"$d\" && DELAYSHIM_RUN_DIR=\"$d\" sh -c 'touch a' && DELAYSHIM_RUN_DIR=\"$d\" LD_PRELOAD="
            ),
            "{line}"
        );
        assert!(line.ends_with(" prog '--db='\"$d\"'/x.db'"), "{line}");
    }

    fn result(outcome: Outcome, delayed: u64) -> RunResult {
        let mut counts = Counts::default();
        counts.add_line(
            &serde_json::from_str(&format!(r#"{{"delayed":{{"fcntl64":{delayed}}}}}"#)).unwrap(),
        );
        RunResult {
            plan: RunPlan {
                index: 0,
                seed: 5,
                strategy: None,
                settings: Vec::new(),
            },
            outcome,
            elapsed: Duration::from_millis(1500),
            counts,
            left_running: 0,
            dir: PathBuf::from("/nonexistent"),
            timeline: Vec::new(),
        }
    }

    #[test]
    fn exit_codes_follow_the_worst_run() {
        let code = |outcomes: Vec<(Outcome, u64)>| {
            let mut summary = Summary::new(1, Shard::WHOLE, outcomes.len());
            for (outcome, delayed) in outcomes {
                summary.add(&result(outcome, delayed), None);
            }
            summary.exit_code(None)
        };
        assert_eq!(code(vec![(Outcome::Pass, 3)]), EXIT_PASS);
        assert_eq!(
            code(vec![(Outcome::Pass, 3), (Outcome::Hang, 0)]),
            EXIT_FAILED
        );
        assert_eq!(
            code(vec![(Outcome::NoInjection("x".into()), 0)]),
            EXIT_NOTHING_INJECTED
        );
        assert_eq!(
            code(vec![
                (Outcome::Pass, 3),
                (Outcome::NoInjection("x".into()), 0)
            ]),
            EXIT_FAILED
        );
        assert_eq!(code(vec![(Outcome::Fail(1), 0)]), EXIT_FAILED);
    }

    #[test]
    fn a_pass_line_names_the_delays() {
        let mut summary = Summary::new(1, Shard::WHOLE, 20);
        let mut run = result(Outcome::Pass, 803);
        summary.add(&run, None);
        let context = Context {
            cwd: "/".into(),
            env: vec![],
            command: vec![],
            fresh_dir: false,
            setup: None,
        };
        assert_eq!(
            run_lines(&summary, &run, &context).unwrap(),
            "[1/20] seed=5 PASS 1.5 s  delays: fcntl64 803\n"
        );
        assert!(summary
            .text(true)
            .contains("delays injected: 803 (fcntl64 803)"));
        assert!(!summary.text(true).contains("left running"));
        run.plan.strategy = Some("sparse".into());
        run.left_running = 2;
        summary.add(&run, None);
        assert_eq!(
            run_lines(&summary, &run, &context).unwrap(),
            "[2/20] seed=5 strategy=sparse PASS 1.5 s  delays: fcntl64 803  (left 2 processes running: killed)\n"
        );
        assert!(summary
            .text(true)
            .contains("processes left running by runs: 2, all killed\n"));
    }
}
