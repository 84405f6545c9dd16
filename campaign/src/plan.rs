//! Which runs a campaign makes, and with which seeds and settings.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::run::{LOG, RECORD, STATS};

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Run `index`'s seed: the index-th output of SplitMix64 seeded with the
/// campaign's first seed. Every machine derives the same seeds, so a
/// sharded campaign never repeats one.
pub fn run_seed(campaign_seed: u64, index: u64) -> u64 {
    let mut z = campaign_seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Variables the campaign sets for each run itself: options and inherited
/// values of these never reach a run or its reproduce line.
pub const PER_RUN_VARS: [&str; 5] = [
    "DELAYSHIM_SEED",
    "DELAYSHIM_STATS",
    "DELAYSHIM_LOG",
    "DELAYSHIM_RECORD",
    "DELAYSHIM_REPLAY",
];

/// The shim's strategies, which `--strategy` takes besides [`AUTO`].
pub const STRATEGIES: [&str; 4] = ["every", "sparse", "victims", "sites"];

/// `--strategy auto`: each run's arm and delay scale chosen by what earlier
/// runs found ([`crate::auto`]).
pub const AUTO: &str = "auto";

/// A campaign: how many runs, from which seed, and this machine's share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub seed: u64,
    /// Runs in the whole campaign, over every shard.
    pub runs: u64,
    pub shard: Shard,
    /// `DELAYSHIM_STRATEGY` for every run, [`AUTO`], or `None` for the
    /// shim's default.
    pub strategy: Option<String>,
    /// For [`AUTO`]: the most calls one process made in the calibration
    /// run (part of what `--resume` checks is the same campaign).
    pub calibrated_calls: Option<u64>,
}

impl Plan {
    /// This shard's runs, in order, for a fixed strategy (or the shim's
    /// default); [`AUTO`]'s runs come from [`crate::auto`], one by one.
    pub fn run_plans(&self) -> Vec<RunPlan> {
        self.shard
            .runs(self.runs)
            .map(|index| {
                let strategy = self.strategy.clone().filter(|s| s != AUTO);
                RunPlan {
                    index,
                    seed: run_seed(self.seed, index),
                    settings: strategy
                        .iter()
                        .map(|s| ("DELAYSHIM_STRATEGY".to_owned(), s.clone()))
                        .collect(),
                    strategy,
                }
            })
            .collect()
    }
}

/// Everything that differs between the runs of one campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    /// The run's place in the whole campaign, from 0.
    pub index: u64,
    pub seed: u64,
    /// The strategy the run uses, when the campaign chose one.
    pub strategy: Option<String>,
    /// The run's own `DELAYSHIM_*` settings: its strategy and parameters.
    pub settings: Vec<(String, String)>,
}

impl RunPlan {
    /// Whether the run's strategy delays only some calls on purpose, so
    /// that a run may rightly delay none.
    pub fn skips_by_design(&self) -> bool {
        let sampled = self.settings.iter().any(|(name, value)| {
            name == "DELAYSHIM_PROB" && value.parse::<f64>().is_ok_and(|p| p < 1.0)
        });
        // locks: a program may take no lock at all in one run; pct: a task
        // waits only while a higher-priority one is eligible. auto's cells
        // are named ARM@SCALE.
        let arm = self
            .strategy
            .as_deref()
            .map(|s| s.split('@').next().unwrap_or(s));
        sampled || matches!(arm, Some("sparse" | "victims" | "sites" | "locks" | "pct"))
    }

    /// The run's own variables, `None` for one to remove: its seed, its
    /// settings, and its files. The campaign owns the statistics, log and
    /// record of each run, so an inherited `DELAYSHIM_LOG` never gathers
    /// every run's delays in one place.
    pub fn env(&self, dir: &Path, keep_log: bool) -> Vec<(String, Option<OsString>)> {
        let mut env: Vec<(String, Option<OsString>)> = vec![
            ("DELAYSHIM_SEED".into(), Some(self.seed.to_string().into())),
            (
                "DELAYSHIM_STATS".into(),
                Some(dir.join(STATS).into_os_string()),
            ),
            (
                "DELAYSHIM_LOG".into(),
                keep_log.then(|| dir.join(LOG).into_os_string()),
            ),
            // Every run records its delays (one line per delayed call), so
            // a failure can be confirmed, replayed and minimized.
            (
                "DELAYSHIM_RECORD".into(),
                Some(dir.join(RECORD).into_os_string()),
            ),
            ("DELAYSHIM_REPLAY".into(), None),
        ];
        env.extend(
            self.settings
                .iter()
                .map(|(name, value)| (name.clone(), Some(value.into()))),
        );
        env
    }
}

/// `--shard I/N`: this machine runs the campaign's runs whose index is
/// I-1 modulo N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based, as users count machines.
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// The campaign's run indices that belong to this shard.
    pub fn runs(self, total: u64) -> impl Iterator<Item = u64> {
        (self.index - 1..total).step_by(self.count as usize)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("expected I/N with 1 <= I <= N, like 2/4; got {s:?}");
        let (index, count) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = index.trim().parse().map_err(|_| bad())?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count || usize::try_from(count).is_err() {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses a seed as the shim does: decimal or 0x hexadecimal.
pub fn parse_seed(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("expected a 64-bit unsigned integer (decimal or 0x hex); got {s:?}"))
}

/// A seed from the kernel's random source, for a campaign started without one.
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return run_seed(nanos, u64::from(std::process::id()));
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn seeds_are_fixed_and_distinct() {
        // Pinned: a change would make old campaigns' seeds unreproducible.
        assert_eq!(run_seed(0, 0), 0xe220_a839_7b1d_cdaf);
        let seeds: BTreeSet<u64> = (0..10_000).map(|i| run_seed(42, i)).collect();
        assert_eq!(seeds.len(), 10_000);
    }

    #[test]
    fn shards_partition_the_runs() {
        let total = 23;
        let mut seen = Vec::new();
        for index in 1..=4 {
            let shard: Shard = format!("{index}/4").parse().unwrap();
            seen.extend(shard.runs(total));
        }
        seen.sort();
        assert_eq!(seen, (0..total).collect::<Vec<_>>());
        assert_eq!(Shard::WHOLE.runs(3).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_plan_gives_each_run_its_seed_and_files() {
        let plan = Plan {
            seed: 0,
            runs: 5,
            shard: "2/2".parse().unwrap(),
            strategy: Some("sparse".into()),
            calibrated_calls: None,
        };
        let runs = plan.run_plans();
        assert_eq!(runs.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(runs[0].seed, run_seed(0, 1));
        let env = runs[0].env(Path::new("/o/run-1"), false);
        let value = |name: &str| env.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(
            value("DELAYSHIM_SEED"),
            Some(run_seed(0, 1).to_string().into())
        );
        assert_eq!(
            value("DELAYSHIM_STATS"),
            Some("/o/run-1/stats.jsonl".into())
        );
        assert_eq!(value("DELAYSHIM_LOG"), None, "removed unless kept");
        assert_eq!(
            value("DELAYSHIM_RECORD"),
            Some("/o/run-1/record.txt".into())
        );
        assert_eq!(value("DELAYSHIM_STRATEGY"), Some("sparse".into()));
        for (name, _) in &env {
            assert!(
                PER_RUN_VARS.contains(&name.as_str()) || name == "DELAYSHIM_STRATEGY",
                "{name}"
            );
        }
    }

    #[test]
    fn bad_shards_and_seeds_are_refused() {
        for bad in ["0/3", "4/3", "1", "a/b", "1/0", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(parse_seed("0xff"), Ok(255));
        assert_eq!(parse_seed("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_seed("-1").is_err());
    }
}
