//! `--strategy auto`: a campaign that learns which way of delaying finds
//! something in this program. The calibration run's [`profile`] says
//! which [`arms`] can select any of its calls and what a run of each costs;
//! the [`bandit`] shares the runs among (arm, scale) cells by what earlier
//! runs produced: failures, and before the first failure [`novelty`] (new
//! delayed calls and new hand-offs between processes in the run's record).
//!
//! Run `i` (the i-th of this shard) is chosen from the campaign's seed and
//! the reports of the shard's runs before `i + 1 - lag`, applied in run
//! order; `lag` is the number of jobs, so that with `--jobs N` a run never
//! waits for more than the N - 1 runs started just before it, and the
//! choice depends on which runs were reported, never on when. With
//! `--jobs 1` every run sees every earlier one. [`schedule`] hands the
//! plans to the campaign's workers in that order.

pub mod arms;
pub mod bandit;
pub mod novelty;
pub mod profile;
pub mod schedule;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::plan::{run_seed, RunPlan};
use crate::run::{Outcome, RunResult};
use arms::{Cell, Needs};
use novelty::Seen;
use profile::Profile;

/// A run without a failure earns at most this much for novelty, so that
/// one failure outweighs any amount of it.
const NOVELTY_REWARD: f64 = 0.03;
/// New keys that earn half of [`NOVELTY_REWARD`].
const NOVELTY_HALF: f64 = 20.0;

/// What the bandit takes from one finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// It failed, crashed or hung.
    pub failed: bool,
    pub seconds: f64,
    /// Calls it delayed.
    pub delayed: u64,
    /// Its novelty keys ([`novelty::keys_of_record`]).
    pub keys: Vec<u64>,
}

impl Report {
    pub fn of(result: &RunResult) -> Report {
        Report {
            failed: matches!(
                result.outcome,
                Outcome::Fail(_) | Outcome::Crash(_) | Outcome::Hang
            ),
            seconds: result.elapsed.as_secs_f64(),
            delayed: result.counts.total("delayed"),
            keys: novelty::keys_of_record(&result.dir.join(crate::run::RECORD)),
        }
    }
}

impl Report {
    /// A run done before a `--resume`, from its record (and its record
    /// file, if its directory was kept).
    pub fn of_record(record: &crate::records::RunRecord) -> Report {
        use crate::records::OutcomeKind;
        Report {
            failed: matches!(
                record.outcome,
                OutcomeKind::Fail | OutcomeKind::Crash | OutcomeKind::Hang
            ),
            seconds: record.seconds,
            delayed: record.delayed.values().sum(),
            keys: record
                .dir
                .as_ref()
                .map(|dir| novelty::keys_of_record(&dir.join(crate::run::RECORD)))
                .unwrap_or_default(),
        }
    }
}

/// One applied run, for the summary.
#[derive(Debug, Clone)]
struct Applied {
    index: u64,
    cell: usize,
    failed: bool,
    reward: f64,
    new_keys: u64,
    /// Distinct keys of the campaign after this run.
    keys: u64,
}

/// The learning campaign's state.
#[derive(Debug)]
pub struct Auto {
    seed: u64,
    profile: Profile,
    cells: Vec<Cell>,
    /// This shard's run indices, in order.
    order: Vec<u64>,
    lag: usize,
    /// The cell each handed-out run went to, by position.
    chosen: Vec<usize>,
    /// Reports not yet applied, by position.
    pending: BTreeMap<usize, Report>,
    arms: Vec<bandit::Arm>,
    /// A run over lock releases only delayed nothing: the program's fcntl
    /// calls are not locks, and lock-only cells are left out from then on.
    no_locks: bool,
    /// Runs done before a `--resume`, by index, with their cells.
    done_before: BTreeMap<u64, usize>,
    seen: Seen,
    applied: Vec<Applied>,
}

impl Auto {
    /// `order`: this shard's run indices; `lag`: the campaign's jobs.
    pub fn new(
        seed: u64,
        profile: Profile,
        choice: &arms::Choice,
        order: Vec<u64>,
        lag: usize,
    ) -> Auto {
        let cells = arms::cells_for(&profile, choice);
        let arms = cells
            .iter()
            .map(|cell| bandit::Arm {
                prior: cell.prior(),
                expected_seconds: cell.expected_seconds(&profile),
                ..bandit::Arm::default()
            })
            .collect();
        Auto {
            seed,
            profile,
            cells,
            order,
            lag: lag.max(1),
            chosen: Vec::new(),
            pending: BTreeMap::new(),
            arms,
            no_locks: false,
            done_before: BTreeMap::new(),
            seen: Seen::default(),
            applied: Vec::new(),
        }
    }

    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    pub fn runs(&self) -> usize {
        self.order.len()
    }

    /// Reports run `position` is chosen from: those of earlier positions.
    fn needed(&self, position: usize) -> usize {
        (position + 1).saturating_sub(self.lag)
    }

    /// Whether the next run can be chosen: every report it depends on is in.
    pub fn ready(&self) -> bool {
        let position = self.chosen.len();
        let needed = self.needed(position);
        (self.applied.len()..needed).all(|p| self.pending.contains_key(&p))
    }

    /// The next run of the shard, if any is left; `ready()` must hold.
    pub fn next_plan(&mut self) -> Option<RunPlan> {
        // Runs done before a --resume are handed out already.
        while let Some(&cell) = self
            .order
            .get(self.chosen.len())
            .and_then(|index| self.done_before.get(index))
        {
            self.chosen.push(cell);
        }
        let position = self.chosen.len();
        let index = *self.order.get(position)?;
        let needed = self.needed(position);
        while self.applied.len() < needed {
            let at = self.applied.len();
            let report = self
                .pending
                .remove(&at)
                .expect("next_plan called before its reports were in");
            self.apply(at, &report);
        }
        let open: Vec<usize> = (0..self.cells.len())
            .filter(|&c| !(self.no_locks && self.cells[c].arm().needs == Needs::Locks))
            .collect();
        let mut draws = bandit::draws_for(self.seed, index);
        let arms: Vec<bandit::Arm> = open.iter().map(|&c| self.arms[c].clone()).collect();
        let cell = open[bandit::choose(&arms, &mut draws)];
        self.chosen.push(cell);
        let seed = run_seed(self.seed, index);
        Some(RunPlan {
            index,
            seed,
            strategy: Some(self.cells[cell].label()),
            settings: self.cells[cell].settings(&self.profile),
        })
    }

    /// A run done before a `--resume`: run `index` went to the cell named
    /// `label`. Such runs are taken as handed out already; the next plans
    /// skip them.
    pub fn resume(&mut self, index: u64, label: &str, report: Report) {
        let Some(cell) = self.cells.iter().position(|c| c.label() == label) else {
            return;
        };
        self.done_before.insert(index, cell);
        self.observe(index, report);
    }

    /// Takes in a finished run's report.
    pub fn observe(&mut self, index: u64, report: Report) {
        if let Some(position) = self.order.iter().position(|&i| i == index) {
            if position >= self.applied.len() {
                self.pending.insert(position, report);
            }
        }
    }

    fn apply(&mut self, position: usize, report: &Report) {
        let cell = self.chosen[position];
        let new_keys = self.seen.add(&report.keys);
        // Novelty guides the search for a first failure; after one, only
        // failures count, or novelty keeps feeding cells that find nothing.
        let any_failure = self.applied.iter().any(|a| a.failed);
        let reward = if report.failed {
            1.0
        } else if any_failure {
            0.0
        } else {
            NOVELTY_REWARD * new_keys as f64 / (new_keys as f64 + NOVELTY_HALF)
        };
        let arm = &mut self.arms[cell];
        arm.runs += 1;
        arm.failures += u64::from(report.failed);
        arm.reward += reward;
        arm.seconds += report.seconds;
        if self.cells[cell].arm().name == "locks" && report.delayed == 0 && !report.failed {
            self.no_locks = true;
        }
        self.applied.push(Applied {
            index: self.order[position],
            cell,
            failed: report.failed,
            reward,
            new_keys,
            keys: self.seen.len(),
        });
    }

    /// The cell with the best posterior rate, with its runs and failures.
    pub fn leading(&self) -> Option<String> {
        if self.applied.is_empty() {
            return None;
        }
        let best = (0..self.cells.len())
            .filter(|&c| self.arms[c].runs > 0)
            .max_by(|&a, &b| self.arms[a].rate().total_cmp(&self.arms[b].rate()))?;
        let failures = self
            .applied
            .iter()
            .filter(|a| a.cell == best && a.failed)
            .count();
        Some(format!(
            "{} ({} runs, {failures} failed)",
            self.cells[best].label(),
            self.arms[best].runs
        ))
    }

    /// Per cell: runs, failures, seconds and novelty of the applied runs.
    fn cell_rows(&self) -> Vec<(usize, u64, u64, f64, u64)> {
        let mut rows: Vec<(usize, u64, u64, f64, u64)> = (0..self.cells.len())
            .map(|c| (c, 0, 0, self.arms[c].seconds, 0))
            .collect();
        for applied in &self.applied {
            let row = &mut rows[applied.cell];
            row.1 += 1;
            row.2 += u64::from(applied.failed);
            row.4 += applied.new_keys;
        }
        rows
    }

    /// Runs per arm in each quarter of the applied runs.
    fn quarters(&self) -> Vec<(usize, usize, BTreeMap<&'static str, u64>)> {
        let n = self.applied.len();
        let parts = n.clamp(1, 4);
        (0..parts)
            .map(|q| (q * n / parts, (q + 1) * n / parts))
            .filter(|(from, to)| to > from)
            .map(|(from, to)| {
                let mut shares = BTreeMap::new();
                for applied in &self.applied[from..to] {
                    *shares
                        .entry(self.cells[applied.cell].arm().name)
                        .or_default() += 1;
                }
                (from, to, shares)
            })
            .collect()
    }

    /// What the campaign learned, for the closing lines.
    pub fn text(&self) -> String {
        let mut text = format!(
            "auto: {} cells over the calibration's {}\n",
            self.cells.len(),
            self.profile.describe()
        );
        let mut rows = self.cell_rows();
        rows.retain(|r| r.1 > 0);
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
        let cells: Vec<String> = rows
            .iter()
            .map(|(c, runs, failed, seconds, _)| {
                format!(
                    "{} {failed}/{runs} in {seconds:.1} s",
                    self.cells[*c].label()
                )
            })
            .collect();
        let _ = writeln!(text, "auto: runs by cell: {}", cells.join(", "));
        let quarters: Vec<String> = self
            .quarters()
            .iter()
            .map(|(from, to, shares)| {
                let mut shares: Vec<(&&str, &u64)> = shares.iter().collect();
                shares.sort_by(|a, b| b.1.cmp(a.1));
                let parts: Vec<String> = shares
                    .iter()
                    .map(|(arm, n)| format!("{arm} {}%", **n * 100 / (to - from) as u64))
                    .collect();
                format!("runs {}-{}: {}", from + 1, to, parts.join(" "))
            })
            .collect();
        if !quarters.is_empty() {
            let _ = writeln!(text, "auto: shares moved: {}", quarters.join("; "));
        }
        let _ = writeln!(
            text,
            "auto: novelty (distinct delayed calls and hand-offs): {}",
            self.curve_text()
        );
        if let Some(first) = self.applied.iter().position(|a| a.failed) {
            let _ = writeln!(
                text,
                "auto: first failure at run {} ({})",
                first + 1,
                self.cells[self.applied[first].cell].label()
            );
        }
        text
    }

    /// The novelty curve at a few points: `1: 40, 5: 70, 20: 81`.
    fn curve_text(&self) -> String {
        let n = self.applied.len();
        if n == 0 {
            return "no runs".into();
        }
        curve_points(n)
            .iter()
            .map(|&p| format!("after {p} {}", self.applied[p - 1].keys))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The same, for summary.json.
    pub fn json(&self) -> Value {
        let cells: Vec<Value> = self
            .cell_rows()
            .iter()
            .map(|(c, runs, failed, seconds, novelty)| {
                json!({
                    "cell": self.cells[*c].label(),
                    "arm": self.cells[*c].arm().name,
                    "scale_us": self.cells[*c].scale_us,
                    "runs": runs,
                    "failing": failed,
                    "seconds": seconds,
                    "new_keys": novelty,
                    "expected_seconds": self.arms[*c].expected_seconds,
                })
            })
            .collect();
        let quarters: Vec<Value> = self
            .quarters()
            .iter()
            .map(|(from, to, shares)| json!({ "from": from + 1, "to": to, "runs_by_arm": shares }))
            .collect();
        let runs: Vec<Value> = self
            .applied
            .iter()
            .map(|a| {
                json!({
                    "index": a.index,
                    "cell": self.cells[a.cell].label(),
                    "failed": a.failed,
                    "reward": a.reward,
                    "new_keys": a.new_keys,
                    "keys": a.keys,
                })
            })
            .collect();
        json!({
            "profile": self.profile.json(),
            "lag": self.lag,
            "lock_cells_dropped": self.no_locks,
            "cells": cells,
            "shares": quarters,
            "novelty_curve": self.applied.iter().map(|a| a.keys).collect::<Vec<u64>>(),
            "runs": runs,
        })
    }

    /// Applies every report still pending, in order, for the summary; the
    /// reports of runs that never ended are left out.
    pub fn finish(&mut self) {
        while self.applied.len() < self.chosen.len() {
            let at = self.applied.len();
            let Some(report) = self.pending.remove(&at) else {
                break;
            };
            self.apply(at, &report);
        }
    }
}

/// Where to read a curve of `n` points: the first, each quarter, the last.
pub fn curve_points(n: usize) -> Vec<usize> {
    let mut points: Vec<usize> = [1, n / 4, n / 2, 3 * n / 4, n]
        .into_iter()
        .filter(|&p| p >= 1 && p <= n)
        .collect();
    points.dedup();
    points
}

#[cfg(test)]
mod tests;
