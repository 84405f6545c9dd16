//! The race targets' bugs are real: under the shim they show in nearly
//! every run, and each run's verdict is the exit status the benchmarks read.

use std::time::Duration;

use crate::util::{artifacts, run, text, under_shim};

const RUNS: u32 = 10;

/// In how many of RUNS runs `target` under the shim exited 1 (bug found);
/// any other status than 0 or 1 fails the test.
fn found(target: &str, settings: &[(&str, &str)]) -> u32 {
    let program = artifacts().release.join(target);
    (0..RUNS)
        .filter(|i| {
            let seed = (7000 + i).to_string();
            let mut all = settings.to_vec();
            all.push(("DELAYSHIM_SEED", &seed));
            let out = run(&mut under_shim(&program, &all), Duration::from_secs(60));
            match out.status.code() {
                Some(0) => false,
                Some(1) => {
                    assert!(
                        text(&out.stdout).starts_with("FAIL: "),
                        "{}",
                        text(&out.stdout)
                    );
                    true
                }
                other => panic!("{target} ended with {other:?}: {}", text(&out.stderr)),
            }
        })
        .count() as u32
}

// Each bound: even at the lower end of the measured rate's 95% interval
// (0.98), 6 or fewer of 10 has probability 1.4e-5.

#[test]
fn check_then_insert_registers_a_key_twice_under_the_shim() {
    // Measured with the defaults: 340 of 340 runs (plain: 0 to 13 of 400).
    assert!(found("check-then-insert", &[]) >= 7);
}

#[test]
fn lock_gap_loses_an_increment_under_fixed_delays() {
    // A fixed 1 ms delay bridges the 1 ms stagger: 339 of 340 runs
    // measured (plain: 0 of 500).
    assert!(
        found(
            "lock-gap",
            &[("DELAYSHIM_DIST", "fixed"), ("DELAYSHIM_MEAN_US", "1000")]
        ) >= 7
    );
}
