//! `delayshim report`: the output directories of several campaigns, or of
//! the shards of one, merged into one summary in Markdown and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::records::{read_runs, CampaignFile, OutcomeKind, RunRecord, CAMPAIGN_JSON};
use crate::report::{EXIT_FAILED, EXIT_NOTHING_INJECTED, EXIT_PASS, SUMMARY};

/// One run as a campaign's summary.json (or runs.jsonl) lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedRun {
    pub campaign_seed: u64,
    pub index: u64,
    pub seed: u64,
    pub strategy: String,
    pub outcome: String,
    pub detail: Option<String>,
    pub reproduce: Option<String>,
    pub injected: u64,
    pub dir: String,
    /// The campaign directory it came from.
    pub from: PathBuf,
    /// Another directory has the same run (seed, settings, program) with
    /// another outcome.
    pub conflicting: bool,
}

/// What makes two runs the same run: the same seed, every setting and the
/// same program. Two campaigns with one seed but other settings made other
/// runs; the same run twice must give one outcome, or it is a conflict.
type RunKey = (u64, BTreeMap<String, String>, String);

/// The runs of every directory: each run once per outcome it had.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    pub directories: Vec<PathBuf>,
    /// Campaign seed to its command and shards seen.
    pub campaigns: BTreeMap<u64, (String, Vec<String>)>,
    pub runs: Vec<MergedRun>,
    /// Copies of a run with the same outcome, counted once.
    pub duplicates: usize,
    /// Directories without summary.json (a campaign killed outright),
    /// read from their runs.jsonl.
    pub incomplete: Vec<PathBuf>,
    /// What `--strategy auto` learned, per directory that has it.
    pub learned: Vec<(PathBuf, Value)>,
}

/// The parts of summary.json that merging reads.
#[derive(Debug, Deserialize)]
struct SummaryFile {
    seed: u64,
    #[serde(default)]
    shard: Option<String>,
    #[serde(default)]
    command: String,
    /// Every run's campaign-wide settings (newer summaries).
    #[serde(default)]
    settings: BTreeMap<String, String>,
    runs: Vec<RunRecord>,
    /// What `--strategy auto` learned (summary.json's own schema:
    /// [`crate::auto::Auto::json`]).
    #[serde(default)]
    auto: Option<Value>,
}

/// A directory's summary, or what a killed campaign left: its
/// campaign.json and runs.jsonl.
fn read_summary(dir: &Path) -> Result<(SummaryFile, bool)> {
    let path = dir.join(SUMMARY);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let summary = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a campaign summary", path.display()))?;
            Ok((summary, true))
        }
        Err(_) if dir.join(CAMPAIGN_JSON).exists() => {
            let campaign = CampaignFile::read(dir)?;
            let summary = SummaryFile {
                seed: campaign.seed,
                shard: Some(campaign.shard),
                command: campaign.command,
                settings: campaign.settings,
                runs: read_runs(dir)?,
                auto: None,
            };
            Ok((summary, false))
        }
        Err(_) => bail!(
            "{} is not a campaign's output directory: it has no readable {SUMMARY}",
            dir.display()
        ),
    }
}

/// Reads `DIR/summary.json` of each directory.
pub fn merge(dirs: &[impl AsRef<Path>]) -> Result<Merged> {
    let mut merged = Merged::default();
    // Each run's outcomes, in the order first seen, with their place in
    // merged.runs.
    let mut seen: BTreeMap<RunKey, Vec<(OutcomeKind, usize)>> = BTreeMap::new();
    for dir in dirs {
        let dir = dir.as_ref();
        let (summary, complete) = read_summary(dir)?;
        if !complete {
            merged.incomplete.push(dir.to_owned());
        }
        let campaign = merged
            .campaigns
            .entry(summary.seed)
            .or_insert_with(|| (summary.command.clone(), Vec::new()));
        campaign
            .1
            .push(summary.shard.clone().unwrap_or_else(|| "1/1".into()));
        for run in summary.runs {
            let mut settings = summary.settings.clone();
            settings.extend(run.settings.clone());
            let key = (run.seed, settings, summary.command.clone());
            let outcomes = seen.entry(key).or_default();
            if outcomes.iter().any(|(outcome, _)| *outcome == run.outcome) {
                merged.duplicates += 1;
                continue;
            }
            let conflicting = !outcomes.is_empty();
            for (_, at) in outcomes.iter() {
                merged.runs[*at].conflicting = true;
            }
            outcomes.push((run.outcome, merged.runs.len()));
            merged.runs.push(MergedRun {
                campaign_seed: summary.seed,
                index: run.index,
                seed: run.seed,
                strategy: run.strategy.unwrap_or_else(|| "default".into()),
                outcome: run.outcome.name().to_owned(),
                detail: run.detail,
                reproduce: run.reproduce,
                injected: if run.injected > 0 {
                    run.injected
                } else {
                    run.delayed.values().sum()
                },
                dir: run.dir.map(|d| d.display().to_string()).unwrap_or_default(),
                from: dir.to_owned(),
                conflicting,
            });
        }
        if let Some(auto) = summary.auto.filter(Value::is_object) {
            if !merged.directories.iter().any(|d| d == dir) {
                merged.learned.push((dir.to_owned(), auto));
            }
        }
        merged.directories.push(dir.to_owned());
    }
    merged.runs.sort_by(|a, b| {
        (a.campaign_seed, a.index, &a.from).cmp(&(b.campaign_seed, b.index, &b.from))
    });
    Ok(merged)
}

fn is_failure(outcome: &str) -> bool {
    !matches!(outcome, "PASS" | "INTERRUPTED")
}

impl Merged {
    pub fn by_outcome(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for run in &self.runs {
            *counts.entry(run.outcome.as_str()).or_default() += 1;
        }
        counts
    }

    /// Runs and failures per strategy.
    pub fn by_strategy(&self) -> BTreeMap<&str, (usize, usize)> {
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for run in &self.runs {
            let entry = counts.entry(run.strategy.as_str()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(is_failure(&run.outcome));
        }
        counts
    }

    pub fn failing(&self) -> impl Iterator<Item = &MergedRun> {
        self.runs.iter().filter(|r| is_failure(&r.outcome))
    }

    /// Runs with more than one outcome, each copy.
    pub fn conflicting(&self) -> impl Iterator<Item = &MergedRun> {
        self.runs.iter().filter(|r| r.conflicting)
    }

    /// One line per run with conflicting outcomes: `seed S: FAIL in A, PASS in B`.
    pub fn conflict_lines(&self) -> Vec<String> {
        let mut by_seed: BTreeMap<(u64, u64), Vec<&MergedRun>> = BTreeMap::new();
        for run in self.conflicting() {
            by_seed
                .entry((run.seed, run.campaign_seed))
                .or_default()
                .push(run);
        }
        by_seed
            .into_iter()
            .map(|((seed, _), runs)| {
                let copies: Vec<String> = runs
                    .iter()
                    .map(|r| format!("{} in {}", r.outcome, r.from.display()))
                    .collect();
                format!("seed {seed}: {}", copies.join(", "))
            })
            .collect()
    }

    /// As a campaign's: 0 every run passed, 1 a run failed, crashed, hung
    /// or was not fuzzed, 3 nothing was injected in any run.
    pub fn exit_code(&self) -> u8 {
        let broken = self
            .runs
            .iter()
            .any(|r| matches!(r.outcome.as_str(), "FAIL" | "CRASH" | "HANG"));
        if broken {
            EXIT_FAILED
        } else if self.runs.iter().map(|r| r.injected).sum::<u64>() == 0 {
            EXIT_NOTHING_INJECTED
        } else if self.failing().next().is_some() {
            EXIT_FAILED
        } else {
            EXIT_PASS
        }
    }

    pub fn markdown(&self) -> String {
        let mut text = String::from("# delayshim report\n\n");
        let _ = writeln!(
            text,
            "{} runs from {} director{}{}.\n",
            self.runs.len(),
            self.directories.len(),
            if self.directories.len() == 1 {
                "y"
            } else {
                "ies"
            },
            if self.duplicates > 0 {
                format!(" ({} duplicate runs counted once)", self.duplicates)
            } else {
                String::new()
            }
        );
        text.push_str("| campaign seed | command | shards |\n| --- | --- | --- |\n");
        for (seed, (command, shards)) in &self.campaigns {
            let _ = writeln!(text, "| {seed} | `{command}` | {} |", shards.join(", "));
        }
        text.push_str("\n| result | runs |\n| --- | --- |\n");
        for (outcome, n) in self.by_outcome() {
            let _ = writeln!(text, "| {outcome} | {n} |");
        }
        text.push_str("\n## By strategy\n\n| strategy | runs | failing | failing share |\n| --- | --- | --- | --- |\n");
        for (strategy, (runs, failing)) in self.by_strategy() {
            let _ = writeln!(
                text,
                "| {strategy} | {runs} | {failing} | {:.1}% |",
                100.0 * failing as f64 / runs.max(1) as f64
            );
        }
        let conflicts = self.conflict_lines();
        if !conflicts.is_empty() {
            let _ = writeln!(
                text,
                "\n## Conflicting outcomes\n\n{} run{} (same seed, settings and program) had different outcomes in different directories; every outcome is counted above:\n",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" }
            );
            for line in &conflicts {
                let _ = writeln!(text, "- {line}");
            }
        }
        if !self.incomplete.is_empty() {
            let dirs: Vec<String> = self
                .incomplete
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            let _ = writeln!(
                text,
                "\nNo summary.json in {} (the campaign was killed): read from runs.jsonl.",
                dirs.join(", ")
            );
        }
        text.push_str(&self.learned_markdown());
        text.push_str("\n## Failing seeds\n\n");
        let mut any = false;
        for run in self.failing() {
            any = true;
            let detail = run
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let _ = writeln!(
                text,
                "- seed {}: {}{detail}, in `{}`",
                run.seed, run.outcome, run.dir
            );
            if let Some(reproduce) = &run.reproduce {
                let _ = writeln!(text, "\n  ```sh\n  {reproduce}\n  ```\n");
            }
        }
        if !any {
            text.push_str("None.\n");
        }
        text
    }

    /// `auto`'s cells summed over the directories: label to runs, failing
    /// runs, seconds and new novelty keys, most runs first.
    pub fn learned_cells(&self) -> Vec<(String, u64, u64, f64, u64)> {
        let mut cells: BTreeMap<String, (u64, u64, f64, u64)> = BTreeMap::new();
        for (_, auto) in &self.learned {
            for cell in auto["cells"].as_array().into_iter().flatten() {
                let entry = cells
                    .entry(cell["cell"].as_str().unwrap_or("?").to_owned())
                    .or_default();
                entry.0 += cell["runs"].as_u64().unwrap_or(0);
                entry.1 += cell["failing"].as_u64().unwrap_or(0);
                entry.2 += cell["seconds"].as_f64().unwrap_or(0.0);
                entry.3 += cell["new_keys"].as_u64().unwrap_or(0);
            }
        }
        let mut cells: Vec<(String, u64, u64, f64, u64)> = cells
            .into_iter()
            .filter(|(_, c)| c.0 > 0)
            .map(|(label, (runs, failing, seconds, keys))| (label, runs, failing, seconds, keys))
            .collect();
        cells.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
        cells
    }

    /// The `auto` section: runs, failures and time per cell, how the
    /// shares moved and the novelty curve, per directory.
    fn learned_markdown(&self) -> String {
        if self.learned.is_empty() {
            return String::new();
        }
        let mut text = String::from(
            "\n## What auto learned\n\n| arm @ scale | runs | failing | seconds | new novelty keys |\n| --- | --- | --- | --- | --- |\n",
        );
        for (label, runs, failing, seconds, keys) in self.learned_cells() {
            let _ = writeln!(
                text,
                "| {label} | {runs} | {failing} | {seconds:.1} | {keys} |"
            );
        }
        for (dir, auto) in &self.learned {
            let shares: Vec<String> = auto["shares"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|quarter| {
                    let mut arms: Vec<(String, u64)> = quarter["runs_by_arm"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(arm, n)| (arm.clone(), n.as_u64().unwrap_or(0)))
                        .collect();
                    arms.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    let arms: Vec<String> =
                        arms.iter().map(|(arm, n)| format!("{arm} {n}")).collect();
                    format!(
                        "runs {}-{}: {}",
                        quarter["from"],
                        quarter["to"],
                        arms.join(", ")
                    )
                })
                .collect();
            let curve: Vec<u64> = auto["novelty_curve"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .collect();
            let points: Vec<String> = crate::auto::curve_points(curve.len())
                .into_iter()
                .map(|p| format!("{} after {p}", curve[p - 1]))
                .collect();
            let _ = writeln!(
                text,
                "\n`{}`: shares by quarter: {}; novelty keys: {}.",
                dir.display(),
                shares.join("; "),
                if points.is_empty() {
                    "none".to_owned()
                } else {
                    points.join(", ")
                }
            );
        }
        text
    }

    pub fn json(&self) -> Value {
        let failing: Vec<Value> = self
            .failing()
            .map(|r| {
                json!({
                    "campaign_seed": r.campaign_seed,
                    "index": r.index,
                    "seed": r.seed,
                    "strategy": r.strategy,
                    "outcome": r.outcome,
                    "detail": r.detail,
                    "reproduce": r.reproduce,
                    "dir": r.dir,
                    "conflicting": r.conflicting,
                })
            })
            .collect();
        let strategies: BTreeMap<&str, Value> = self
            .by_strategy()
            .into_iter()
            .map(|(name, (runs, failing))| (name, json!({"runs": runs, "failing": failing})))
            .collect();
        let campaigns: Vec<Value> = self
            .campaigns
            .iter()
            .map(|(seed, (command, shards))| json!({"seed": seed, "command": command, "shards": shards}))
            .collect();
        json!({
            "directories": self.directories,
            "campaigns": campaigns,
            "runs": self.runs.len(),
            "duplicates": self.duplicates,
            "conflicts": self.conflict_lines(),
            "incomplete": self.incomplete,
            "by_outcome": self.by_outcome(),
            "strategies": strategies,
            "failing": failing,
            "seeds": self.runs.iter().map(|r| r.seed).collect::<Vec<_>>(),
            "exit_code": self.exit_code(),
            "auto": {
                "cells": self.learned_cells().iter().map(|(cell, runs, failing, seconds, keys)| {
                    json!({"cell": cell, "runs": runs, "failing": failing, "seconds": seconds, "new_keys": keys})
                }).collect::<Vec<_>>(),
                "by_directory": self.learned.iter().map(|(dir, auto)| {
                    json!({"dir": dir, "shares": auto["shares"], "novelty_curve": auto["novelty_curve"]})
                }).collect::<Vec<_>>(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_summary(dir: &Path, shard: &str, runs: &[(u64, u64, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        let runs: Vec<Value> = runs
            .iter()
            .map(|(index, seed, outcome)| {
                json!({"index": index, "seed": seed, "outcome": outcome, "delayed": {"fcntl64": 3},
                       "reproduce": (*outcome == "FAIL").then(|| format!("DELAYSHIM_SEED={seed} prog"))})
            })
            .collect();
        let auto = json!({
            "cells": [{"cell": "every@5ms", "runs": runs.len(), "failing": 1, "seconds": 0.5, "new_keys": 7}],
            "shares": [{"from": 1, "to": runs.len(), "runs_by_arm": {"every": runs.len()}}],
            "novelty_curve": [4, 7],
        });
        let summary =
            json!({"seed": 99, "shard": shard, "command": "prog", "runs": runs, "auto": auto});
        std::fs::write(dir.join(SUMMARY), summary.to_string()).unwrap();
    }

    #[test]
    fn shards_merge_into_one_campaign_without_duplicates() {
        let root = std::env::temp_dir().join(format!("merge-{}", std::process::id()));
        write_summary(&root.join("a"), "1/2", &[(0, 10, "PASS"), (2, 12, "FAIL")]);
        write_summary(&root.join("b"), "2/2", &[(1, 11, "PASS"), (3, 13, "HANG")]);
        let merged = merge(&[root.join("a"), root.join("b"), root.join("a")]).unwrap();
        assert_eq!(
            merged.runs.iter().map(|r| r.seed).collect::<Vec<_>>(),
            [10, 11, 12, 13]
        );
        assert_eq!(merged.duplicates, 2);
        assert_eq!(merged.by_outcome()["PASS"], 2);
        assert_eq!(merged.by_strategy()["default"], (4, 2));
        assert_eq!(merged.exit_code(), EXIT_FAILED);
        let markdown = merged.markdown();
        assert!(
            markdown.contains("| 99 | `prog` | 1/2, 2/2, 1/2 |"),
            "{markdown}"
        );
        assert!(markdown.contains("DELAYSHIM_SEED=12 prog"), "{markdown}");
        // auto's cells summed over both shards (a directory given twice once).
        assert!(
            markdown.contains("| every@5ms | 4 | 2 | 1.0 | 14 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("novelty keys: 4 after 1, 7 after 2."),
            "{markdown}"
        );
        assert_eq!(merged.json()["failing"].as_array().unwrap().len(), 2);
        let error = merge(&[root.join("missing")]).unwrap_err().to_string();
        assert!(
            error.contains("is not a campaign's output directory"),
            "{error}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_killed_campaigns_directory_is_read_from_its_runs_file() {
        use crate::records::{CampaignFile, RunsFile};
        let dir = std::env::temp_dir().join(format!("merge-killed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        CampaignFile {
            seed: 4,
            runs: 10,
            shard: "1/1".into(),
            strategy: None,
            settings: BTreeMap::new(),
            command: "prog".into(),
            calibrated_calls: None,
        }
        .write(&dir)
        .unwrap();
        let line = r#"{"index":2,"seed":77,"outcome":"FAIL","delayed":{"write":1},"injected":1}"#;
        let record: RunRecord = serde_json::from_str(line).unwrap();
        RunsFile::open(&dir).unwrap().append(&record).unwrap();
        let merged = merge(&[&dir]).unwrap();
        assert_eq!(merged.incomplete, std::slice::from_ref(&dir));
        assert_eq!(merged.runs.len(), 1);
        assert_eq!(merged.exit_code(), EXIT_FAILED);
        assert!(merged.markdown().contains("No summary.json in"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_run_with_two_outcomes_is_shown_twice_and_flagged() {
        let root = std::env::temp_dir().join(format!("merge-conflict-{}", std::process::id()));
        // Two campaigns of one seed: run 1 failed in one, passed in the other.
        write_summary(&root.join("a"), "1/1", &[(0, 10, "PASS"), (1, 11, "FAIL")]);
        write_summary(&root.join("b"), "1/1", &[(0, 10, "PASS"), (1, 11, "PASS")]);
        for order in [["a", "b"], ["b", "a"]] {
            let merged = merge(&[root.join(order[0]), root.join(order[1])]).unwrap();
            assert_eq!(
                merged.by_outcome()["FAIL"],
                1,
                "the failure is never dropped"
            );
            assert_eq!(merged.by_outcome()["PASS"], 2);
            assert_eq!(merged.duplicates, 1, "run 0 passed in both");
            assert_eq!(merged.exit_code(), EXIT_FAILED);
            let lines = merged.conflict_lines();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].starts_with("seed 11: "), "{lines:?}");
            assert!(lines[0].contains("FAIL in ") && lines[0].contains("PASS in "));
            assert!(merged.markdown().contains("## Conflicting outcomes"));
        }
        // The same seed under other settings is another run: no conflict.
        let summary = std::fs::read_to_string(root.join("b").join(SUMMARY)).unwrap();
        let mut summary: Value = serde_json::from_str(&summary).unwrap();
        summary["settings"] = json!({"DELAYSHIM_MEAN_US": "5"});
        std::fs::write(root.join("b").join(SUMMARY), summary.to_string()).unwrap();
        let merged = merge(&[root.join("a"), root.join("b")]).unwrap();
        assert!(merged.conflict_lines().is_empty());
        assert_eq!((merged.runs.len(), merged.duplicates), (4, 0));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
