//! `delayshim report`: the output directories of several campaigns, or of
//! the shards of one, merged into one summary in Markdown and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::report::{EXIT_FAILED, EXIT_NOTHING_INJECTED, EXIT_PASS, SUMMARY};

/// One run as a campaign's summary.json lists it.
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
}

/// The runs of every directory, each run once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    pub directories: Vec<PathBuf>,
    /// Campaign seed to its command and shards seen.
    pub campaigns: BTreeMap<u64, (String, Vec<String>)>,
    pub runs: Vec<MergedRun>,
    /// Runs found in more than one directory, counted once.
    pub duplicates: usize,
}

/// Reads `DIR/summary.json` of each directory.
pub fn merge(dirs: &[impl AsRef<Path>]) -> Result<Merged> {
    let mut merged = Merged::default();
    let mut seen = std::collections::BTreeSet::new();
    for dir in dirs {
        let dir = dir.as_ref();
        let path = dir.join(SUMMARY);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            anyhow::anyhow!(
                "{} is not a campaign's output directory: it has no readable {SUMMARY}",
                dir.display()
            )
        })?;
        let summary: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a campaign summary", path.display()))?;
        let (Some(seed), Some(runs)) = (summary["seed"].as_u64(), summary["runs"].as_array())
        else {
            bail!(
                "{} is not a campaign summary: no seed or runs",
                path.display()
            );
        };
        let campaign = merged.campaigns.entry(seed).or_insert_with(|| {
            (
                summary["command"].as_str().unwrap_or("").to_owned(),
                Vec::new(),
            )
        });
        campaign
            .1
            .push(summary["shard"].as_str().unwrap_or("1/1").to_owned());
        for run in runs {
            let (Some(index), Some(run_seed)) = (run["index"].as_u64(), run["seed"].as_u64())
            else {
                bail!("{}: a run without index or seed", path.display());
            };
            if !seen.insert((seed, index)) {
                merged.duplicates += 1;
                continue;
            }
            let text = |field: &str| run[field].as_str().map(str::to_owned);
            let injected = run["injected"].as_u64().unwrap_or_else(|| {
                run["delayed"]
                    .as_object()
                    .map_or(0, |d| d.values().filter_map(Value::as_u64).sum())
            });
            merged.runs.push(MergedRun {
                campaign_seed: seed,
                index,
                seed: run_seed,
                strategy: text("strategy").unwrap_or_else(|| "default".into()),
                outcome: text("outcome").unwrap_or_else(|| "?".into()),
                detail: text("detail"),
                reproduce: text("reproduce"),
                injected,
                dir: text("dir").unwrap_or_default(),
            });
        }
        merged.directories.push(dir.to_owned());
    }
    merged.runs.sort_by_key(|r| (r.campaign_seed, r.index));
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
            "by_outcome": self.by_outcome(),
            "strategies": strategies,
            "failing": failing,
            "seeds": self.runs.iter().map(|r| r.seed).collect::<Vec<_>>(),
            "exit_code": self.exit_code(),
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
        let summary = json!({"seed": 99, "shard": shard, "command": "prog", "runs": runs});
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
        assert_eq!(merged.json()["failing"].as_array().unwrap().len(), 2);
        let error = merge(&[root.join("missing")]).unwrap_err().to_string();
        assert!(
            error.contains("is not a campaign's output directory"),
            "{error}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
