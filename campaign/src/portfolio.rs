//! `--strategy auto`: each run's strategy and parameters, chosen from the
//! run's seed, so that a run's reproduce line states every setting it used
//! and a rerun of the campaign draws the same ones.
//!
//! The portfolio mixes the shim's strategies in equal shares, each with a
//! parameter drawn from a small menu that spans the window sizes races
//! need (tens of microseconds to tens of milliseconds): no one setting
//! suits every program, and a campaign of a few dozen runs tries several.
//! A calibration run (delays off) gives the calls a process makes, which
//! sizes sparse's horizon so its change points fall inside the run.

use crate::plan::run_seed;

/// The strategies a campaign can ask for.
pub const STRATEGIES: [&str; 4] = ["every", "sparse", "victims", "sites"];

/// The portfolio's arms and their shares of the runs, in hundredths.
/// Measured on the race targets (BENCHMARKS.md): blanket delays (`every`)
/// find the races of programs that make few calls; in call-heavy programs
/// they slow every call, and what finds the rare window is a delay on lock
/// releases and acquisitions only, sampled (`locks`, `sites` over locks).
/// `sparse` and `victims` found fewer bugs there but other shapes of race
/// need them, so they keep a share.
const ARMS: [(&str, u64); 5] = [
    ("every", 30),
    ("locks", 40),
    ("sites", 15),
    ("sparse", 10),
    ("victims", 5),
];

/// Every arm's time budget: at most half of a thread's time asleep, so a
/// call-heavy program runs at most about twice as long (a short one still
/// gets the shim's 10 ms grace).
const BUDGET: &str = "0.5";

/// The `DELAYSHIM_*` settings of run `seed` under `auto`. `calls` is the
/// most calls one process made in the calibration run, if there was one.
pub fn auto_settings(seed: u64, calls: Option<u64>) -> Vec<(String, String)> {
    // Draws independent of the run's own seed's use in the shim.
    let mut draws = (0..).map(|i| run_seed(seed ^ 0x00a0_70f0_11c1_0000, i));
    let mut pick = |n: usize| (draws.next().expect("endless") % n as u64) as usize;
    let mut share = pick(100) as u64;
    let arm = ARMS
        .iter()
        .find(|(_, weight)| {
            let inside = share < *weight;
            share = share.saturating_sub(*weight);
            inside
        })
        .map_or("every", |(name, _)| name);
    let mut settings: Vec<(&str, String)> = Vec::new();
    let lock_calls_only = |settings: &mut Vec<(&str, String)>| {
        settings.push(("DELAYSHIM_FUNCS", "fcntl,flock".into()));
        settings.push(("DELAYSHIM_LOCKS", "locks".into()));
    };
    match arm {
        "every" => {
            settings.push(("DELAYSHIM_STRATEGY", "every".into()));
            settings.push((
                "DELAYSHIM_MEAN_US",
                ["20", "100", "500", "1000"][pick(4)].into(),
            ));
            settings.push(("DELAYSHIM_PROB", ["1", "1", "0.1"][pick(3)].into()));
            settings.push(("DELAYSHIM_DIST", ["exp", "exp", "fixed"][pick(3)].into()));
        }
        "locks" => {
            settings.push(("DELAYSHIM_STRATEGY", "every".into()));
            lock_calls_only(&mut settings);
            settings.push(("DELAYSHIM_LOCKS", ["locks", "release"][pick(2)].into()));
            settings.push(("DELAYSHIM_WHEN", "after".into()));
            settings.push(("DELAYSHIM_PROB", ["0.2", "0.5", "1"][pick(3)].into()));
            settings.push((
                "DELAYSHIM_MEAN_US",
                ["50", "100", "300", "1000"][pick(4)].into(),
            ));
        }
        "sites" => {
            settings.push(("DELAYSHIM_STRATEGY", "sites".into()));
            lock_calls_only(&mut settings);
            settings.push(("DELAYSHIM_WHEN", "after".into()));
            settings.push(("DELAYSHIM_SITE_PROB", "0.5".into()));
            settings.push(("DELAYSHIM_FIRE_PROB", ["0.25", "0.5"][pick(2)].into()));
            settings.push(("DELAYSHIM_MEAN_US", ["100", "500"][pick(2)].into()));
        }
        "sparse" => {
            settings.push(("DELAYSHIM_STRATEGY", "sparse".into()));
            settings.push(("DELAYSHIM_DEPTH", ["1", "2", "3", "5"][pick(4)].into()));
            // Change points sleep ten times the mean: 1 to 20 ms.
            settings.push(("DELAYSHIM_MEAN_US", ["100", "500", "2000"][pick(3)].into()));
            if let Some(calls) = calls.filter(|&c| c > 0) {
                settings.push(("DELAYSHIM_HORIZON", calls.min(1_000_000_000).to_string()));
            }
        }
        _ => {
            settings.push(("DELAYSHIM_STRATEGY", "victims".into()));
            settings.push(("DELAYSHIM_VICTIM_PROB", ["0.25", "0.5"][pick(2)].into()));
            settings.push((
                "DELAYSHIM_SCALE_US",
                ["10-1000", "100-10000"][pick(2)].into(),
            ));
        }
    }
    settings.push(("DELAYSHIM_BUDGET", BUDGET.into()));
    // One value per variable: a later choice replaces an earlier one.
    let mut unique: Vec<(String, String)> = Vec::new();
    for (name, value) in settings {
        unique.retain(|(n, _)| n != name);
        unique.push((name.to_owned(), value));
    }
    unique
}

/// The portfolio arm a run's settings came from: its strategy, or
/// `locks` for `every` over lock calls only.
pub fn arm_of(settings: &[(String, String)]) -> &str {
    let strategy = strategy_of(settings);
    let locks_only = settings
        .iter()
        .any(|(name, value)| name == "DELAYSHIM_FUNCS" && value == "fcntl,flock");
    if strategy == "every" && locks_only {
        "locks"
    } else {
        strategy
    }
}

/// The strategy named in a run's settings.
pub fn strategy_of(settings: &[(String, String)]) -> &str {
    settings
        .iter()
        .find(|(name, _)| name == "DELAYSHIM_STRATEGY")
        .map_or("every", |(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_settings() {
        for seed in [0, 1, 42, u64::MAX] {
            assert_eq!(
                auto_settings(seed, Some(500)),
                auto_settings(seed, Some(500))
            );
        }
    }

    #[test]
    fn the_arms_share_the_runs_as_weighted() {
        let mut counts = BTreeMap::new();
        for index in 0..10_000 {
            let settings = auto_settings(run_seed(7, index), None);
            *counts.entry(arm_of(&settings).to_owned()).or_insert(0u64) += 1;
        }
        // Binomial(10000, w/100): the standard deviation is at most 50, so
        // 300 either way is six of them.
        for (arm, weight) in ARMS {
            let n = counts[arm];
            assert!(n.abs_diff(weight * 100) < 300, "{arm}: {counts:?}");
        }
        assert_eq!(counts.len(), ARMS.len(), "{counts:?}");
    }

    #[test]
    fn calibration_sizes_sparse_horizons() {
        let sparse = (0..)
            .map(|i| run_seed(3, i))
            .find(|&seed| strategy_of(&auto_settings(seed, None)) == "sparse")
            .unwrap();
        let settings = auto_settings(sparse, Some(1234));
        assert!(settings.contains(&("DELAYSHIM_HORIZON".into(), "1234".into())));
        assert!(!auto_settings(sparse, None)
            .iter()
            .any(|(n, _)| n == "DELAYSHIM_HORIZON"));
    }
}
