//! What a campaign prints: a line per run, the command that reproduces a
//! failure, and the summary (also written as summary.json).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::invocation::Invocation;
use crate::plan::{RunPlan, Shard};
use crate::records::{OutcomeKind, RunRecord, RunsIndex};
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

/// The shell command that repeats run `plan` of the campaign that starts
/// the program as `campaign` does: its settings and seed added.
pub fn reproduce_command(campaign: &Invocation, plan: &RunPlan) -> String {
    let seed = OsString::from(plan.seed.to_string());
    let settings: Vec<(String, OsString)> = plan
        .settings
        .iter()
        .map(|(name, value)| (name.clone(), value.into()))
        .collect();
    let mut changes: Vec<(&str, Option<&OsString>)> = settings
        .iter()
        .map(|(name, value)| (name.as_str(), Some(value)))
        .collect();
    changes.push(("DELAYSHIM_SEED", Some(&seed)));
    // pct's tasks meet in a region of the run's own, which `delayshim run`
    // makes (and LD_PRELOAD is then its own).
    let pct = plan
        .settings
        .iter()
        .any(|(name, value)| name == "DELAYSHIM_STRATEGY" && value == "pct");
    if !pct {
        return campaign.shell_line(&changes);
    }
    changes.push(("LD_PRELOAD", None));
    let delayshim = std::env::current_exe().unwrap_or_else(|_| "delayshim".into());
    let mut args: Vec<OsString> = ["run", "--backend", "preload", "--"]
        .map(OsString::from)
        .into();
    args.push(campaign.program.clone());
    args.extend(campaign.args.iter().cloned());
    Invocation {
        program: delayshim.into_os_string(),
        args,
        ..campaign.clone()
    }
    .shell_line(&changes)
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
pub fn run_lines(summary: &Summary, result: &RunResult, campaign: &Invocation) -> Result<String> {
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
    let command = reproduce_command(campaign, &result.plan);
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

/// At most this many failing runs are listed in the closing lines; the
/// rest are counted (runs.jsonl and summary.json have them all).
pub const FAILING_LISTED: usize = 100;

/// A campaign's totals as runs finish: counts and sums, never every run's
/// record, so that a campaign's memory does not grow with its runs. The
/// records are in runs.jsonl, from which [`Summary::write_json`] streams
/// summary.json's `runs`.
#[derive(Debug)]
pub struct Summary {
    seed: u64,
    shard: Shard,
    pub planned: usize,
    pub done: usize,
    by_kind: BTreeMap<OutcomeKind, usize>,
    delayed: BTreeMap<String, u64>,
    delay_us: u64,
    injected: u64,
    left_running: usize,
    /// Per strategy: runs, failing runs, seconds.
    by_strategy: BTreeMap<String, (usize, usize, f64)>,
    /// The first [`FAILING_LISTED`] failing runs' seeds and kinds.
    failing: Vec<(u64, OutcomeKind)>,
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
            by_kind: BTreeMap::new(),
            delayed: BTreeMap::new(),
            delay_us: 0,
            injected: 0,
            left_running: 0,
            by_strategy: BTreeMap::new(),
            failing: Vec::new(),
            elapsed: Duration::ZERO,
            command: String::new(),
            settings: BTreeMap::new(),
            stopped: None,
        }
    }

    /// Counts a finished run (also the runs a resumed campaign made before).
    pub fn add(&mut self, record: &RunRecord) {
        self.done += 1;
        *self.by_kind.entry(record.outcome).or_default() += 1;
        for (name, n) in &record.delayed {
            *self.delayed.entry(name.clone()).or_default() += n;
        }
        self.delay_us += record.delay_us;
        self.injected += record.injected;
        self.left_running += record.left_running;
        let failing = record.outcome.is_failure();
        let strategy = record.strategy.as_deref().unwrap_or("default");
        let entry = self.by_strategy.entry(strategy.to_owned()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(failing);
        entry.2 += record.seconds;
        if failing && self.failing.len() < FAILING_LISTED {
            self.failing.push((record.seed, record.outcome));
        }
    }

    /// Runs that failed, crashed, hung or were not fuzzed.
    pub fn failures(&self) -> usize {
        self.by_kind
            .iter()
            .filter(|(kind, _)| kind.is_failure())
            .map(|(_, n)| n)
            .sum()
    }

    fn count(&self, kind: OutcomeKind) -> usize {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }

    fn by_kind(&self) -> BTreeMap<&'static str, usize> {
        self.by_kind
            .iter()
            .map(|(kind, n)| (kind.name(), *n))
            .collect()
    }

    /// 1 if any run failed, crashed, hung or was not fuzzed; 3 if nothing
    /// was injected in the whole campaign; 128 + the signal if interrupted.
    pub fn exit_code(&self, interrupted: Option<u8>) -> u8 {
        let broken = self.by_kind.keys().any(|kind| kind.is_broken());
        if let Some(status) = interrupted {
            status
        } else if broken {
            EXIT_FAILED
        } else if self.injected == 0 {
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
        let failures = self.failures();
        if let Some(why) = &self.stopped {
            let _ = writeln!(text, "{PREFIX}: {why}");
        } else if self.done < self.planned && stops_at_failure && failures > 0 {
            let _ = writeln!(
                text,
                "{PREFIX}: stopped at the first failure (--keep-going runs them all)"
            );
        }
        if failures > 0 {
            let seeds: Vec<String> = self
                .failing
                .iter()
                .map(|(seed, kind)| format!("{seed} ({})", kind.name()))
                .collect();
            let more = match failures - self.failing.len() {
                0 => String::new(),
                n => format!(" and {n} more (all in summary.json and runs.jsonl)"),
            };
            let _ = writeln!(text, "failing seeds: {}{more}", seeds.join(", "));
        }
        let total: u64 = self.delayed.values().sum();
        let _ = writeln!(
            text,
            "delays injected: {total} ({}), {:.1} s in all",
            delay_counts(&self.delayed),
            self.delay_us as f64 / 1e6
        );
        if self.left_running > 0 {
            let _ = writeln!(
                text,
                "processes left running by runs: {}, all killed",
                self.left_running
            );
        }
        if self.by_strategy.len() > 1 || self.by_strategy.keys().any(|s| s != "default") {
            let parts: Vec<String> = self
                .by_strategy
                .iter()
                .map(|(name, (runs, failing, seconds))| {
                    format!("{name} {failing}/{runs} failing in {seconds:.1} s")
                })
                .collect();
            let _ = writeln!(text, "by strategy: {}", parts.join(", "));
        }
        text
    }

    /// summary.json: the campaign's totals and every run, streamed in
    /// index order from `runs` (the campaign's runs.jsonl, the last record
    /// of each run) so that no more than an offset per run is in memory.
    /// Records of runs interrupted before `resumed_at` (the file's length
    /// when this campaign resumed it) are left out, as they are from the
    /// totals: the resumed campaign made those runs again or not at all.
    /// `auto` is what `--strategy auto` learned, if it ran.
    pub fn write_json(
        &self,
        path: &Path,
        exit_code: u8,
        runs: &RunsIndex,
        auto: Option<serde_json::Value>,
    ) -> Result<()> {
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
            "delayed": self.delayed,
            "injected": self.injected,
            "left_running": self.left_running,
            "seconds": self.elapsed.as_secs_f64(),
            "by_strategy": self.by_strategy.iter().map(|(name, (runs, failing, seconds))| {
                (name.clone(), serde_json::json!({ "runs": runs, "failing": failing, "seconds": seconds }))
            }).collect::<serde_json::Map<String, serde_json::Value>>(),
        });
        if let Some(auto) = auto {
            json["auto"] = auto;
        }
        let mut json = json.to_string();
        // The object without its closing brace: the runs follow.
        json.pop();
        json.push_str(",\"runs\":[\n");
        // Written whole, then renamed: a reader never sees half of one.
        let partial = path.with_extension("json.partial");
        let file = std::fs::File::create(&partial)
            .with_context(|| format!("writing {}", partial.display()))?;
        let mut writer = std::io::BufWriter::new(file);
        writer.write_all(json.as_bytes())?;
        runs.write_each(&mut writer, b",\n")?;
        writer.write_all(b"\n]}\n")?;
        writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counts;
    use std::path::PathBuf;

    #[test]
    fn a_pct_run_is_reproduced_through_delayshim_run_which_makes_its_region() {
        let context = Invocation {
            program: "prog".into(),
            args: vec![],
            cwd: "/w".into(),
            env: vec![("LD_PRELOAD".into(), "/x/libdelayshim.so".into())],
            timeout: Duration::from_secs(1),
            fresh_dir: false,
            setup: None,
            check: None,
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
        let context = Invocation {
            program: "driver".into(),
            args: vec!["--op".into(), "get-set".into()],
            cwd: "/w d".into(),
            env: vec![
                ("LD_PRELOAD".into(), "/x/libdelayshim.so".into()),
                ("DELAYSHIM_FCNTL".into(), "unlock".into()),
            ],
            timeout: Duration::from_secs(1),
            fresh_dir: false,
            setup: None,
            check: None,
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
        let fresh = Invocation {
            fresh_dir: true,
            setup: Some("touch a".into()),
            program: "prog".into(),
            args: vec!["--db={dir}/x.db".into()],
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
                summary.add(&RunRecord::of(&result(outcome, delayed), None));
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
        summary.add(&RunRecord::of(&run, None));
        let context = Invocation {
            program: "prog".into(),
            args: vec![],
            cwd: "/".into(),
            env: vec![],
            timeout: Duration::from_secs(1),
            fresh_dir: false,
            setup: None,
            check: None,
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
        summary.add(&RunRecord::of(&run, None));
        assert_eq!(
            run_lines(&summary, &run, &context).unwrap(),
            "[2/20] seed=5 strategy=sparse PASS 1.5 s  delays: fcntl64 803  (left 2 processes running: killed)\n"
        );
        assert!(summary
            .text(true)
            .contains("processes left running by runs: 2, all killed\n"));
    }
    #[test]
    fn the_failing_seeds_line_lists_a_bounded_number() {
        let mut summary = Summary::new(1, Shard::WHOLE, 5000);
        for seed in 0..5000 {
            let mut record = RunRecord::of(&result(Outcome::Fail(1), 1), None);
            record.seed = seed;
            summary.add(&record);
        }
        let text = summary.text(false);
        let line = text
            .lines()
            .find(|l| l.starts_with("failing seeds: "))
            .unwrap();
        assert_eq!(line.matches("(FAIL)").count(), FAILING_LISTED);
        assert!(line.ends_with(&format!(
            " and {} more (all in summary.json and runs.jsonl)",
            5000 - FAILING_LISTED
        )));
        assert_eq!(summary.failures(), 5000);
    }

    #[test]
    fn summary_json_streams_every_run_from_runs_jsonl() {
        let dir = std::env::temp_dir().join(format!("delayshim-summary-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let record = |index: u64, outcome: Outcome| {
            let mut record = RunRecord::of(&result(outcome, 2), None);
            record.index = index;
            record
        };
        // A first campaign: run 1 passed, run 0 was interrupted; killed
        // mid-write of run 2's record.
        let mut runs = crate::records::RunsFile::open(&dir).unwrap();
        runs.append(&record(1, Outcome::Pass)).unwrap();
        runs.append(&record(0, Outcome::Interrupted)).unwrap();
        drop(runs);
        let path = dir.join(crate::records::RUNS_JSONL);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"index\":2,\"se");
        std::fs::write(&path, text).unwrap();
        // Resumed: runs 2 and 3 done, run 0 not reached.
        let mut runs = crate::records::RunsFile::open(&dir).unwrap();
        let resumed_at = runs.end().unwrap();
        let mut summary = Summary::new(1, Shard::WHOLE, 4);
        summary.add(&record(1, Outcome::Pass));
        for index in [3, 2] {
            let record = record(index, Outcome::Fail(1));
            runs.append(&record).unwrap();
            summary.add(&record);
        }
        let index = RunsIndex::build(&dir, resumed_at).unwrap();
        let summary_path = dir.join(SUMMARY);
        summary.write_json(&summary_path, 1, &index, None).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
        let indices: Vec<u64> = json["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|run| run["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indices, [1, 2, 3]);
        assert_eq!(json["done"], 3);
        assert_eq!(json["by_outcome"]["FAIL"], 2);
        assert_eq!(json["runs"][1]["outcome"], "FAIL");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
