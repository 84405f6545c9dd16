//! Each strategy delays what its definition says, a seed reproduces a
//! single-threaded program's delays under each, and the budget bounds
//! injected time.

use std::time::{Duration, Instant};

use crate::util::{
    assert_exit, read_log, read_stats, run, tempdir, totals, under_shim, LogLine, PROBE,
};

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `probe writes DIR calls threads` under `settings`; the log's lines.
fn writes(settings: &[(&str, &str)], calls: u64, threads: u64) -> Vec<LogLine> {
    let dir = tempdir();
    let log = dir.path().join("log");
    let mut all = vec![("DELAYSHIM_LOG", log.to_str().unwrap())];
    all.extend_from_slice(settings);
    let out = run(
        under_shim(PROBE, &all)
            .arg("writes")
            .arg(dir.path())
            .arg(calls.to_string())
            .arg(threads.to_string()),
        LIMIT,
    );
    assert_exit(&out, 0);
    read_log(&log)
        .into_iter()
        .filter(|line| line.get("fn") == Some("pwrite64"))
        .collect()
}

#[test]
fn sparse_with_depth_2_delays_exactly_2_calls_per_thread() {
    for threads in [1, 3] {
        let log = writes(
            &[
                ("DELAYSHIM_STRATEGY", "sparse"),
                ("DELAYSHIM_DEPTH", "2"),
                ("DELAYSHIM_HORIZON", "500"),
                ("DELAYSHIM_MEAN_US", "20"),
                ("DELAYSHIM_SEED", "5"),
            ],
            500,
            threads,
        );
        let mut per_thread = std::collections::BTreeMap::<&str, usize>::new();
        for line in &log {
            *per_thread.entry(line.get("tid").unwrap()).or_default() += 1;
        }
        assert_eq!(per_thread.len() as u64, threads, "{per_thread:?}");
        // Two change points may fall on one index: with 500 calls and this
        // seed they do not.
        assert!(per_thread.values().all(|&n| n == 2), "{per_thread:?}");
    }
}

#[test]
fn victims_probability_0_delays_nothing_and_1_everything() {
    let none = writes(
        &[
            ("DELAYSHIM_STRATEGY", "victims"),
            ("DELAYSHIM_VICTIM_PROB", "0"),
        ],
        200,
        2,
    );
    assert!(none.is_empty(), "{none:?}");
    let all = writes(
        &[
            ("DELAYSHIM_STRATEGY", "victims"),
            ("DELAYSHIM_VICTIM_PROB", "1"),
            ("DELAYSHIM_SCALE_US", "1-5"),
        ],
        200,
        2,
    );
    assert_eq!(all.len(), 400);
}

#[test]
fn sites_switch_whole_sites_on_or_off() {
    // The probe's one pwrite64 line is one site: over seeds, it is either
    // delayed at every call or at none, and both happen.
    let mut on = 0;
    for seed in 0..12 {
        let log = writes(
            &[
                ("DELAYSHIM_STRATEGY", "sites"),
                ("DELAYSHIM_SITE_PROB", "0.5"),
                ("DELAYSHIM_FIRE_PROB", "1"),
                ("DELAYSHIM_MEAN_US", "2"),
                ("DELAYSHIM_SEED", &seed.to_string()),
            ],
            50,
            1,
        );
        assert!(
            log.is_empty() || log.len() == 50,
            "seed {seed}: {} delays",
            log.len()
        );
        if !log.is_empty() {
            on += 1;
            let sites: std::collections::BTreeSet<_> = log
                .iter()
                .map(|l| l.get("site").unwrap().to_owned())
                .collect();
            assert_eq!(sites.len(), 1, "{sites:?}");
            assert!(
                sites.iter().next().unwrap().contains("/probe+0x"),
                "{sites:?}"
            );
        }
    }
    // Binomial(12, 0.5): all on or all off has probability 1 in 2048 for
    // an unlucky hash; these seeds are fixed, so this never flakes.
    assert!(
        (1..12).contains(&on),
        "{on} of 12 seeds switched the site on"
    );
}

#[test]
fn a_seed_reproduces_each_strategy_in_a_single_threaded_program() {
    for strategy in ["every", "sparse", "victims", "sites"] {
        let settings = [
            ("DELAYSHIM_STRATEGY", strategy),
            ("DELAYSHIM_SEED", "77"),
            ("DELAYSHIM_MEAN_US", "3"),
            ("DELAYSHIM_HORIZON", "300"),
            ("DELAYSHIM_VICTIM_PROB", "1"),
            ("DELAYSHIM_SCALE_US", "1-5"),
            ("DELAYSHIM_SITE_PROB", "1"),
        ];
        let delays = |log: Vec<LogLine>| -> Vec<String> {
            log.iter()
                .map(|l| l.get("delay_us").unwrap().to_owned())
                .collect()
        };
        let first = delays(writes(&settings, 300, 1));
        assert!(!first.is_empty(), "{strategy}");
        assert_eq!(delays(writes(&settings, 300, 1)), first, "{strategy}");
    }
}

#[test]
fn the_budget_bounds_injected_time() {
    // 100,000 writes at a mean of 1 ms would sleep 100 s; a budget of a
    // tenth keeps the sleep near a tenth of the run plus the grace.
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let start = Instant::now();
    let out = run(
        under_shim(
            PROBE,
            &[
                ("DELAYSHIM_MEAN_US", "1000"),
                ("DELAYSHIM_BUDGET", "0.1"),
                ("DELAYSHIM_STATS", stats.to_str().unwrap()),
            ],
        )
        .arg("writes")
        .arg(dir.path())
        .arg("100000"),
        LIMIT,
    );
    let wall = start.elapsed();
    assert_exit(&out, 0);
    let slept_us: u64 = totals(&read_stats(&stats), "delay_us").values().sum();
    let allowed_us = wall.as_micros() as u64 / 10 + 50_000;
    assert!(slept_us <= allowed_us, "slept {slept_us} us in {wall:?}");
    assert!(
        slept_us >= 10_000,
        "the 10 ms grace was used: {slept_us} us"
    );
}
