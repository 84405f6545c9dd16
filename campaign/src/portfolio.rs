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

/// The `DELAYSHIM_*` settings of run `seed` under `auto`. `calls` is the
/// most calls one process made in the calibration run, if there was one.
pub fn auto_settings(seed: u64, calls: Option<u64>) -> Vec<(String, String)> {
    // Draws independent of the run's own seed's use in the shim.
    let mut draws = (0..).map(|i| run_seed(seed ^ 0x00a0_70f0_11c1_0000, i));
    let mut pick = |n: usize| (draws.next().expect("endless") % n as u64) as usize;
    let strategy = STRATEGIES[pick(STRATEGIES.len())];
    let mut settings = vec![("DELAYSHIM_STRATEGY", strategy.to_owned())];
    match strategy {
        "every" => {
            settings.push(("DELAYSHIM_MEAN_US", ["20", "100", "500"][pick(3)].into()));
            settings.push(("DELAYSHIM_PROB", ["1", "0.1"][pick(2)].into()));
        }
        "sparse" => {
            settings.push(("DELAYSHIM_DEPTH", ["1", "2", "3", "5"][pick(4)].into()));
            // Change points sleep ten times the mean: 1 to 20 ms.
            settings.push(("DELAYSHIM_MEAN_US", ["100", "500", "2000"][pick(3)].into()));
            if let Some(calls) = calls.filter(|&c| c > 0) {
                settings.push(("DELAYSHIM_HORIZON", calls.min(1_000_000_000).to_string()));
            }
        }
        "victims" => {
            settings.push(("DELAYSHIM_VICTIM_PROB", ["0.25", "0.5"][pick(2)].into()));
            settings.push((
                "DELAYSHIM_SCALE_US",
                ["10-1000", "100-10000"][pick(2)].into(),
            ));
        }
        _ => {
            settings.push(("DELAYSHIM_FIRE_PROB", ["0.25", "0.5", "1"][pick(3)].into()));
            settings.push(("DELAYSHIM_MEAN_US", ["200", "1000"][pick(2)].into()));
        }
    }
    // The strategies' own time budget stays the shim's default.
    settings
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
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
    fn the_strategies_share_the_runs_evenly() {
        let mut counts = BTreeMap::new();
        for index in 0..4000 {
            let settings = auto_settings(run_seed(7, index), None);
            *counts.entry(strategy_of(&settings).to_owned()).or_insert(0) += 1;
        }
        // Binomial(4000, 1/4): 1000 +- 27 sd; 850..1150 is over 5 sd.
        assert_eq!(counts.len(), 4, "{counts:?}");
        assert!(
            counts.values().all(|n| (850..1150).contains(n)),
            "{counts:?}"
        );
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
