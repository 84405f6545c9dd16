//! `auto` against simulated programs: which cells the runs go to when
//! only some cells find the bug.

use std::time::Duration;

use super::*;

/// targets' slow-window as its calibration run saw it (3 processes, at
/// most 35 effect calls a blanket delay selects in one, no lock; 121 ms a
/// run).
fn no_lock_profile() -> Profile {
    Profile {
        wall: Duration::from_millis(121),
        processes: 3,
        busiest_calls: 56,
        effect_calls: 35,
        lock_calls: 0,
        ..Profile::default()
    }
}

/// Runs a simulated campaign of `runs` runs: `fails(cell, draw)` says
/// whether a run of the cell fails; each run costs the cell's guess and
/// reports `keys` novelty keys drawn from a pool of 400.
fn simulate(
    seed: u64,
    runs: u64,
    lag: usize,
    fails: impl Fn(&Cell, f64) -> bool,
) -> Vec<(Cell, bool)> {
    let mut auto = Auto::new(
        seed,
        no_lock_profile(),
        &arms::Choice::default(),
        (0..runs).collect(),
        lag,
    );
    let mut draws = bandit::Draws::new(seed ^ 0xfeed);
    let mut in_flight = std::collections::VecDeque::new();
    let mut out = Vec::new();
    loop {
        while in_flight.len() >= lag || (!auto.ready() && !in_flight.is_empty()) {
            let (plan, cell): (RunPlan, Cell) = in_flight.pop_front().unwrap();
            let failed = fails(&cell, draws.uniform());
            let keys: Vec<u64> = (0..10).map(|_| (draws.uniform() * 400.0) as u64).collect();
            auto.observe(
                plan.index,
                Report {
                    failed,
                    seconds: cell.expected_seconds(&no_lock_profile()),
                    delayed: 10,
                    keys,
                },
            );
            out.push((cell, failed));
        }
        let Some(plan) = auto.next_plan() else { break };
        let cell = auto.cells[*auto.chosen.last().unwrap()];
        in_flight.push_back((plan, cell));
        if in_flight.is_empty() {
            break;
        }
    }
    for (plan, cell) in in_flight {
        let _ = plan;
        out.push((cell, false));
    }
    out
}

fn every_at_5ms(cell: &Cell) -> bool {
    cell.arm().name.starts_with("every") && cell.scale_us == 5000
}

/// Share of the runs after the first failure that went to blanket 5 ms.
fn share_after_first_failure(runs: &[(Cell, bool)]) -> Option<f64> {
    let first = runs.iter().position(|(_, failed)| *failed)?;
    let after = &runs[first + 1..];
    if after.is_empty() {
        return None;
    }
    Some(after.iter().filter(|(c, _)| every_at_5ms(c)).count() as f64 / after.len() as f64)
}

#[test]
fn runs_move_to_the_only_cell_that_fails() {
    // Blanket 5 ms delays fail 60% of runs, nothing else ever fails.
    let fails = |cell: &Cell, u: f64| every_at_5ms(cell) && u < 0.6;
    let mut shares = Vec::new();
    let mut late = 0;
    for seed in 0..2000 {
        let runs = simulate(seed, 60, 1, fails);
        match runs.iter().position(|(_, f)| *f) {
            Some(first) if first < 40 => shares.push(share_after_first_failure(&runs).unwrap()),
            _ => late += 1,
        }
    }
    shares.sort_by(f64::total_cmp);
    let median = shares[shares.len() / 2];
    let worst = shares[0];
    eprintln!("median {median:.2}, worst {worst:.2}, first failure after run 40: {late}/2000");
    // Deterministic (fixed seeds): regression bounds below what was
    // measured when the constants were chosen (median 0.87, 0 late).
    assert!(median > 0.75, "median share {median}");
    assert!(late < 20, "{late}");
}

#[test]
fn the_allocation_is_a_function_of_the_seed_and_the_reports() {
    let fails = |cell: &Cell, u: f64| every_at_5ms(cell) && u < 0.5;
    for lag in [1, 3] {
        let a = simulate(5, 40, lag, fails);
        let b = simulate(5, 40, lag, fails);
        assert_eq!(a, b);
    }
    assert_ne!(simulate(5, 40, 1, fails), simulate(6, 40, 1, fails));
}

type Fails = Box<dyn Fn(&Cell, f64) -> bool>;

/// Expected time to detection (seconds per failure over a 60-run
/// campaign, the median of 1000 campaigns) against the best single cell's
/// (its cost over its rate), in four simulated programs. The figures
/// measured when the constants were chosen are in the comments: a cell
/// the suite rates low is where auto loses most, as its prior puts it
/// after the others (18 cells).
#[test]
fn simulated_time_to_detection_stays_near_the_best_cell() {
    let p = no_lock_profile();
    let cost = |label: &str| {
        let cells = arms::cells_for(&p, &arms::Choice::default());
        let cell = cells.iter().find(|c| c.label() == label).unwrap();
        cell.expected_seconds(&p)
    };
    let scenarios: Vec<(&str, Fails, f64, f64)> = vec![
        // 1.09x
        (
            "blanket 5 ms fails 60%",
            Box::new(|c: &Cell, u| every_at_5ms(c) && u < 0.6),
            cost("every@5ms") / 0.6,
            1.3,
        ),
        // 1.54x
        (
            "blanket 5 ms fails 20%",
            Box::new(|c: &Cell, u| every_at_5ms(c) && u < 0.2),
            cost("every@5ms") / 0.2,
            2.2,
        ),
        // 2.57x
        (
            "sites at 200 us fail 30%",
            Box::new(|c: &Cell, u| c.label() == "sites@200us" && u < 0.3),
            cost("sites@200us") / 0.3,
            3.2,
        ),
        // 1.51x
        (
            "every arm at 1 ms fails 30%",
            Box::new(|c: &Cell, u| c.scale_us == 1000 && u < 0.3),
            cost("sparse@1ms") / 0.3,
            2.0,
        ),
    ];
    for (name, fails, best, bound) in &scenarios {
        let mut times = Vec::new();
        for seed in 0..1000 {
            let runs = simulate(seed, 60, 1, fails);
            let total: f64 = runs.iter().map(|(c, _)| c.expected_seconds(&p)).sum();
            let failures = runs.iter().filter(|(_, f)| *f).count();
            // No failure in 60 runs: at least twice the time spent.
            times.push(total / failures.max(1) as f64 * if failures == 0 { 2.0 } else { 1.0 });
        }
        times.sort_by(f64::total_cmp);
        let ratio = times[times.len() / 2] / best;
        eprintln!("{name}: auto {ratio:.2}x the best cell's time to detection");
        assert!(ratio < *bound, "{name}: {ratio:.2}x");
    }
}

/// Whether a campaign passes the integration test's check
/// (tests/auto.rs): after its first failure (by run 50), the blanket 5 ms
/// cells get at least a quarter of the runs and no other cell more.
pub fn passes_the_slow_window_check(runs: &[(String, bool)]) -> bool {
    let Some(first) = runs.iter().position(|(_, failed)| *failed) else {
        return false;
    };
    let after = &runs[first + 1..];
    if first >= 50 || after.is_empty() {
        return false;
    }
    let blanket = |label: &str| label == "every@5ms" || label == "every-fixed@5ms";
    let mut by_cell: std::collections::BTreeMap<&str, usize> = Default::default();
    for (label, _) in after {
        *by_cell
            .entry(if blanket(label) { "5ms" } else { label })
            .or_default() += 1;
    }
    let ours = by_cell.get("5ms").copied().unwrap_or(0);
    4 * ours >= after.len() && by_cell.iter().all(|(cell, n)| *cell == "5ms" || *n <= ours)
}

/// The bound of tests/auto.rs's slow-window campaign, simulated with the
/// rates measured there (blanket 5 ms failed 64 of 64 runs, sites at 5 ms
/// 0 of 20, victims at 5 ms 4 of 20): at p = 0.99 for blanket 5 ms (and
/// 0.05 and 0.25 for the others) the check failed 2 of 20,000 campaigns
/// (1e-4) with 54 effect calls a process (calls, before the calibration
/// counted what a delay selects), 0 of 20,000 with the 35 it counts now;
/// at p = 0.95, the least the 64 of 64 allow at 95%, 6 and 0 of 20,000.
/// The campaigns that failed it stayed with victims at 5 ms after an
/// early exploring run of it failed.
#[test]
fn the_slow_window_check_rarely_fails_in_simulation() {
    let fails = |p: f64| {
        move |c: &Cell, u: f64| match (c.arm().name, c.scale_us) {
            ("every" | "every-fixed", 5000) => u < p,
            ("sites", 5000) => u < 0.05,
            ("victims", 5000) => u < 0.25,
            _ => false,
        }
    };
    const CAMPAIGNS: u64 = 3_000;
    // 3,000 campaigns each, to keep the suite fast (the figures above are
    // from 20,000); the seeds are fixed, so this is a regression check.
    for (p, most) in [(0.99, 1), (0.95, 1)] {
        let failing = (0..CAMPAIGNS)
            .filter(|&seed| {
                let runs: Vec<(String, bool)> = simulate(seed, 60, 1, fails(p))
                    .into_iter()
                    .map(|(c, f)| (c.label(), f))
                    .collect();
                !passes_the_slow_window_check(&runs)
            })
            .count();
        eprintln!("p = {p}: the check failed {failing} of {CAMPAIGNS} simulated campaigns");
        assert!(failing <= most, "p = {p}: {failing}");
    }
}
