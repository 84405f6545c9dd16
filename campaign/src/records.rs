//! The files a campaign keeps in its output directory, each with one typed
//! definition that the writer (the campaign) and the readers (`--resume`,
//! `report`, `minimize`) share:
//!
//! - `campaign.json`: what the campaign is ([`CampaignFile`]), so that
//!   `--resume` continues only the same campaign;
//! - `runs.jsonl`: one [`RunRecord`] per finished run, appended as each
//!   ends, so that a campaign killed at any moment leaves what it did;
//! - `summary.json`'s `runs`: the same records, streamed from runs.jsonl
//!   ([`RunsIndex`]) when the campaign ends;
//! - `result.json` in a kept run's directory: its record, so `minimize`
//!   knows whether the run failed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::run::{Outcome, RunResult};

pub const CAMPAIGN_JSON: &str = "campaign.json";
pub const RUNS_JSONL: &str = "runs.jsonl";
/// A kept run's record, in its directory.
pub const RESULT_JSON: &str = "result.json";

/// How a run ended, as files and reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OutcomeKind {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "FAIL")]
    Fail,
    #[serde(rename = "CRASH")]
    Crash,
    #[serde(rename = "HANG")]
    Hang,
    #[serde(rename = "NO INJECTION")]
    NoInjection,
    /// `fuzz --check`'s checker failed after a run that itself passed.
    #[serde(rename = "CHECK FAILED")]
    CheckFailed,
    #[serde(rename = "INTERRUPTED")]
    Interrupted,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 7] = [
        OutcomeKind::Pass,
        OutcomeKind::Fail,
        OutcomeKind::Crash,
        OutcomeKind::Hang,
        OutcomeKind::NoInjection,
        OutcomeKind::CheckFailed,
        OutcomeKind::Interrupted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OutcomeKind::Pass => "PASS",
            OutcomeKind::Fail => "FAIL",
            OutcomeKind::Crash => "CRASH",
            OutcomeKind::Hang => "HANG",
            OutcomeKind::NoInjection => "NO INJECTION",
            OutcomeKind::CheckFailed => "CHECK FAILED",
            OutcomeKind::Interrupted => "INTERRUPTED",
        }
    }

    /// A run that did not pass and was not cut short by the user.
    pub fn is_failure(self) -> bool {
        !matches!(self, OutcomeKind::Pass | OutcomeKind::Interrupted)
    }

    /// The program itself broke (what a checker or a replay can confirm).
    pub fn is_broken(self) -> bool {
        matches!(
            self,
            OutcomeKind::Fail | OutcomeKind::Crash | OutcomeKind::Hang | OutcomeKind::CheckFailed
        )
    }
}

/// How often a failing run's recorded delays failed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmed {
    pub failures: u32,
    pub replays: u32,
}

/// One finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub index: u64,
    pub seed: u64,
    #[serde(default)]
    pub strategy: Option<String>,
    /// The run's own settings (its strategy and parameters).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    pub outcome: OutcomeKind,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub delayed: BTreeMap<String, u64>,
    #[serde(default)]
    pub delay_us: u64,
    #[serde(default)]
    pub injected: u64,
    #[serde(default)]
    pub left_running: usize,
    #[serde(default)]
    pub reproduce: Option<String>,
    /// The run's directory, when it was kept (`--keep all`, or a failure).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<Confirmed>,
}

impl RunRecord {
    pub fn of(result: &RunResult, reproduce: Option<&str>) -> RunRecord {
        RunRecord {
            index: result.plan.index,
            seed: result.plan.seed,
            strategy: result.plan.strategy.clone(),
            settings: result.plan.settings.iter().cloned().collect(),
            outcome: result.outcome.kind_enum(),
            detail: result.outcome.detail(),
            seconds: result.elapsed.as_secs_f64(),
            delayed: result
                .counts
                .field("delayed")
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
            delay_us: result.counts.total("delay_us"),
            injected: result.counts.injected(),
            left_running: result.left_running,
            reproduce: reproduce.map(str::to_owned),
            dir: Some(result.dir.clone()),
            confirmed: None,
        }
    }
}

/// What a campaign is: `--resume` continues a directory only with the
/// same, and refuses it naming what differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignFile {
    pub seed: u64,
    pub runs: u64,
    pub shard: String,
    pub strategy: Option<String>,
    /// Every `DELAYSHIM_*` setting of every run.
    pub settings: BTreeMap<String, String>,
    /// The program and its arguments as a shell line.
    pub command: String,
    /// `--strategy auto`'s calibration, kept so a resumed campaign gives
    /// its remaining runs the settings the first part planned.
    #[serde(default)]
    pub calibrated_calls: Option<u64>,
}

impl CampaignFile {
    pub fn read(dir: &Path) -> Result<CampaignFile> {
        let path = dir.join(CAMPAIGN_JSON);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(CAMPAIGN_JSON);
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    /// What differs from `other`, as `name: this vs other`, ignoring the
    /// calibration.
    pub fn differences(&self, other: &CampaignFile) -> Vec<String> {
        let mut differences = Vec::new();
        let mut compare = |name: &str, a: String, b: String| {
            if a != b {
                differences.push(format!("{name} {a} (now {b})"));
            }
        };
        compare("seed", self.seed.to_string(), other.seed.to_string());
        compare("runs", self.runs.to_string(), other.runs.to_string());
        compare("shard", self.shard.clone(), other.shard.clone());
        compare(
            "strategy",
            format!("{:?}", self.strategy),
            format!("{:?}", other.strategy),
        );
        compare(
            "settings",
            format!("{:?}", self.settings),
            format!("{:?}", other.settings),
        );
        compare("command", self.command.clone(), other.command.clone());
        differences
    }
}

/// Appends records to `runs.jsonl`, one line each, flushed as written.
#[derive(Debug)]
pub struct RunsFile {
    file: File,
}

impl RunsFile {
    pub fn open(dir: &Path) -> Result<RunsFile> {
        let path = dir.join(RUNS_JSONL);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // A campaign killed mid-write left a torn line: end it, so the next
        // record is a line of its own.
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(RunsFile { file })
    }

    /// The file's length now: where the records this campaign appends begin.
    pub fn end(&self) -> Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn append(&mut self, record: &RunRecord) -> Result<()> {
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .context("appending to runs.jsonl")
    }
}

/// Where each run's last record is in runs.jsonl: an offset and a length
/// per run instead of the record, for summary.json's `runs`.
#[derive(Debug)]
pub struct RunsIndex {
    path: PathBuf,
    lines: BTreeMap<u64, (u64, usize)>,
}

impl RunsIndex {
    /// Indexes `dir/runs.jsonl` (a torn line is skipped). A run whose last
    /// record before byte `resumed_at` says INTERRUPTED is left out unless
    /// a later record has it: a resumed campaign makes those runs again.
    pub fn build(dir: &Path, resumed_at: u64) -> Result<RunsIndex> {
        let path = dir.join(RUNS_JSONL);
        let mut lines = BTreeMap::new();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RunsIndex { path, lines })
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let mut offset = 0;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            if let Ok(record) = serde_json::from_slice::<RunRecord>(&line) {
                if record.outcome == OutcomeKind::Interrupted && offset < resumed_at {
                    lines.remove(&record.index);
                } else {
                    let len = line.trim_ascii_end().len();
                    lines.insert(record.index, (offset, len));
                }
            }
            offset += n as u64;
        }
        Ok(RunsIndex { path, lines })
    }

    /// Copies each indexed record, in run order, to `out`, `separator`
    /// between two.
    pub fn write_each(&self, out: &mut impl std::io::Write, separator: &[u8]) -> Result<()> {
        let mut file =
            File::open(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        let mut buffer = Vec::new();
        for (n, (offset, len)) in self.lines.values().enumerate() {
            if n > 0 {
                out.write_all(separator)?;
            }
            buffer.resize(*len, 0);
            file.seek(SeekFrom::Start(*offset))?;
            file.read_exact(&mut buffer)
                .with_context(|| format!("reading {}", self.path.display()))?;
            out.write_all(&buffer)?;
        }
        Ok(())
    }
}

/// The records in `dir/runs.jsonl`, the last of each run index only (an
/// interrupted run that a resumed campaign made again), in index order. A
/// torn last line (a campaign killed mid-write) is skipped.
pub fn read_runs(dir: &Path) -> Result<Vec<RunRecord>> {
    let path = dir.join(RUNS_JSONL);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut by_index = BTreeMap::new();
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if let Ok(record) = serde_json::from_str::<RunRecord>(&line) {
            by_index.insert(record.index, record);
        }
    }
    Ok(by_index.into_values().collect())
}

impl Outcome {
    pub fn kind_enum(&self) -> OutcomeKind {
        match self {
            Outcome::Pass => OutcomeKind::Pass,
            Outcome::Fail(_) => OutcomeKind::Fail,
            Outcome::Crash(_) => OutcomeKind::Crash,
            Outcome::Hang => OutcomeKind::Hang,
            Outcome::NoInjection(_) => OutcomeKind::NoInjection,
            Outcome::CheckFailed(_) => OutcomeKind::CheckFailed,
            Outcome::Interrupted => OutcomeKind::Interrupted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_last_of_a_run_wins() {
        let dir = std::env::temp_dir().join(format!("records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let record = RunRecord {
            index: 3,
            seed: 9,
            strategy: Some("sparse".into()),
            settings: [("DELAYSHIM_STRATEGY".to_owned(), "sparse".to_owned())].into(),
            outcome: OutcomeKind::Interrupted,
            detail: None,
            seconds: 1.5,
            delayed: [("write".to_owned(), 2)].into(),
            delay_us: 10,
            injected: 2,
            left_running: 0,
            reproduce: None,
            dir: None,
            confirmed: None,
        };
        let mut runs = RunsFile::open(&dir).unwrap();
        runs.append(&record).unwrap();
        let again = RunRecord {
            outcome: OutcomeKind::NoInjection,
            ..record.clone()
        };
        runs.append(&again).unwrap();
        // A torn line, as a campaign killed mid-write leaves.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(RUNS_JSONL))
            .unwrap()
            .write_all(b"{\"index\":4,\"se")
            .unwrap();
        assert_eq!(read_runs(&dir).unwrap(), [again]);
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.contains("\"outcome\":\"INTERRUPTED\""), "{line}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn campaigns_name_what_differs() {
        let a = CampaignFile {
            seed: 1,
            runs: 10,
            shard: "1/1".into(),
            strategy: Some("auto".into()),
            settings: BTreeMap::new(),
            command: "prog".into(),
            calibrated_calls: Some(5),
        };
        let b = CampaignFile {
            seed: 2,
            calibrated_calls: None,
            ..a.clone()
        };
        assert_eq!(a.differences(&a.clone()), Vec::<String>::new());
        assert_eq!(b.differences(&a), ["seed 2 (now 1)"]);
    }
}
