//! `auto`'s arms: one entry per way of choosing which calls sleep, each
//! turned into the shim's settings at a delay scale. A cell is an arm at
//! a scale; the bandit ([`super::bandit`]) shares the runs among cells.
//! A new strategy (`pct`, say) is one more entry in [`ARMS`].

use super::profile::Profile;

/// Which of the program's calls an arm can select at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Calls of the default (effect) families.
    Effects,
    /// Lock calls (the fcntl and flock families).
    Locks,
    /// Effect calls, beneath the shim: its tasks meet in the run's region,
    /// which the seccomp backend does not give them.
    EffectsUnderShim,
}

/// One arm.
#[derive(Debug)]
pub struct Arm {
    /// The name runs, summaries and reports give it (`strategy=NAME`).
    pub name: &'static str,
    pub needs: Needs,
    /// The shim's settings for scale `scale_us`: the typical sleep of a
    /// delayed call.
    pub settings: fn(scale_us: u64, profile: &Profile) -> Vec<(&'static str, String)>,
    /// About how many of one process's calls sleep, and how long each,
    /// relative to the scale: for a first guess of a run's cost.
    pub sleeps: fn(scale_us: u64, profile: &Profile) -> f64,
    /// The share of runs that failed at a scale (in microseconds), mean
    /// over the real-program suite's twelve harnesses, 30 runs each
    /// (BENCHMARKS.md, "Real-program suite", 2026-12-04): the bandit's
    /// prior. A scale the suite did not measure takes the rate of the
    /// nearest one it did; an arm it never measured, [`UNMEASURED_PRIOR`].
    pub prior: &'static [(u64, f64)],
}

/// The prior of an arm the suite did not measure: about the rate of the
/// weaker measured arms (sites 0.18, locks 0.13, sparse 0.06), so it is
/// tried early where it is cheap and after the blanket cells where not.
pub const UNMEASURED_PRIOR: f64 = 0.1;

/// The shim's own budget: a thread's injected sleep stays under 0.9 of its
/// time. A blanket 5 ms delay needs room: a lower budget stops it long
/// before it bridges a gap of a few milliseconds in a short program.
pub const BUDGET: f64 = 0.9;
/// The shim's grace: sleep allowed beyond the budget, in seconds.
pub const GRACE_S: f64 = 0.010;

fn blanket(dist: &'static str) -> impl Fn(u64, &Profile) -> Vec<(&'static str, String)> {
    move |scale_us, _| {
        vec![
            ("DELAYSHIM_STRATEGY", "every".into()),
            ("DELAYSHIM_DIST", dist.into()),
            ("DELAYSHIM_MEAN_US", scale_us.to_string()),
            ("DELAYSHIM_PROB", "1".into()),
        ]
    }
}

/// The arms, in the order summaries list them.
pub const ARMS: &[Arm] = &[
    Arm {
        name: "every",
        needs: Needs::Effects,
        settings: |scale, p| blanket("exp")(scale, p),
        sleeps: |scale, p| p.effect_calls as f64 * scale as f64,
        prior: &[(200, 0.24), (1000, 0.36), (5000, 0.57)],
    },
    Arm {
        name: "every-fixed",
        needs: Needs::Effects,
        settings: |scale, p| blanket("fixed")(scale, p),
        sleeps: |scale, p| p.effect_calls as f64 * scale as f64,
        prior: &[(200, 0.26), (1000, 0.37), (5000, 0.71)],
    },
    // A release held open: the window of a lost update between a lock's
    // release and the next acquisition.
    Arm {
        name: "locks",
        needs: Needs::Locks,
        settings: |scale, _| {
            vec![
                ("DELAYSHIM_STRATEGY", "every".into()),
                ("DELAYSHIM_FUNCS", "fcntl,flock".into()),
                ("DELAYSHIM_LOCKS", "release".into()),
                ("DELAYSHIM_WHEN", "after".into()),
                ("DELAYSHIM_DIST", "exp".into()),
                ("DELAYSHIM_MEAN_US", scale.to_string()),
                ("DELAYSHIM_PROB", "1".into()),
            ]
        },
        sleeps: |scale, p| p.lock_calls as f64 * 0.5 * scale as f64,
        prior: &[(1000, 0.13)],
    },
    // Call sites on for a seed: over lock calls where there are any, else
    // over every effect call (a write+rename program has no lock to hold).
    Arm {
        name: "sites",
        needs: Needs::Effects,
        settings: |scale, p| {
            let mut settings = vec![("DELAYSHIM_STRATEGY", "sites".into())];
            if p.has_lock_calls() {
                settings.push(("DELAYSHIM_FUNCS", "fcntl,flock".into()));
                settings.push(("DELAYSHIM_LOCKS", "locks".into()));
                settings.push(("DELAYSHIM_WHEN", "after".into()));
            }
            settings.extend([
                ("DELAYSHIM_SITE_PROB", "0.5".into()),
                ("DELAYSHIM_FIRE_PROB", "0.5".into()),
                ("DELAYSHIM_MEAN_US", scale.to_string()),
            ]);
            settings
        },
        sleeps: |scale, p| {
            let selected = if p.has_lock_calls() {
                p.lock_calls
            } else {
                p.effect_calls
            };
            selected as f64 * 0.25 * scale as f64
        },
        prior: &[(1000, 0.18)],
    },
    // Change points sleep ten times the shim's mean: the scale is theirs.
    Arm {
        name: "sparse",
        needs: Needs::Effects,
        settings: |scale, p| {
            let mut settings = vec![
                ("DELAYSHIM_STRATEGY", "sparse".into()),
                ("DELAYSHIM_DEPTH", "3".into()),
                ("DELAYSHIM_MEAN_US", (scale / 10).max(1).to_string()),
            ];
            if p.busiest_calls > 0 {
                settings.push((
                    "DELAYSHIM_HORIZON",
                    p.busiest_calls.min(1_000_000_000).to_string(),
                ));
            }
            settings
        },
        sleeps: |scale, _| 3.0 * scale as f64,
        prior: &[(1000, 0.06)],
    },
    // PCT across the run's processes and threads: the scale is a task's
    // typical wait, which the shim bounds by 5 means (then a quiet task
    // counts as blocked); one change point (depth 2) over the run's steps,
    // about the effect calls all its processes make.
    Arm {
        name: "pct",
        needs: Needs::EffectsUnderShim,
        settings: |scale, p| {
            vec![
                ("DELAYSHIM_STRATEGY", "pct".into()),
                ("DELAYSHIM_DEPTH", "2".into()),
                ("DELAYSHIM_MEAN_US", (scale / 5).max(1).to_string()),
                (
                    "DELAYSHIM_HORIZON",
                    (p.effect_calls * p.processes.max(1))
                        .clamp(1, 1_000_000_000)
                        .to_string(),
                ),
            ]
        },
        sleeps: |scale, p| p.effect_calls as f64 * 0.5 * scale as f64,
        prior: &[],
    },
    // A process's scale is drawn log-uniformly up to the cell's.
    Arm {
        name: "victims",
        needs: Needs::Effects,
        settings: |scale, _| {
            vec![
                ("DELAYSHIM_STRATEGY", "victims".into()),
                ("DELAYSHIM_VICTIM_PROB", "0.5".into()),
                (
                    "DELAYSHIM_SCALE_US",
                    format!("{}-{scale}", (scale / 10).max(1)),
                ),
            ]
        },
        sleeps: |scale, p| p.effect_calls as f64 * 0.5 * 0.4 * scale as f64,
        prior: &[],
    },
];

/// Delay scales every arm is tried at, in microseconds: the gaps races
/// need run from a fraction of a millisecond to several.
pub const SCALES_US: [u64; 3] = [200, 1000, 5000];

/// An arm at a scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    /// Index into [`ARMS`].
    pub arm: usize,
    pub scale_us: u64,
}

impl Cell {
    pub fn arm(&self) -> &'static Arm {
        &ARMS[self.arm]
    }

    /// `every@5ms`, `locks@300us`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.arm().name, scale_text(self.scale_us))
    }

    /// The run's `DELAYSHIM_*` settings: every one it uses, stated, so its
    /// reproduce line needs nothing else.
    pub fn settings(&self, profile: &Profile) -> Vec<(String, String)> {
        let mut settings: Vec<(String, String)> = (self.arm().settings)(self.scale_us, profile)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        settings.push(("DELAYSHIM_BUDGET".into(), BUDGET.to_string()));
        settings
    }

    /// The suite's share of failing runs for this cell's arm at the
    /// nearest measured scale, or [`UNMEASURED_PRIOR`].
    pub fn prior(&self) -> f64 {
        let distance = |scale: u64| (scale as f64 / self.scale_us.max(1) as f64).ln().abs();
        self.arm()
            .prior
            .iter()
            .min_by(|a, b| distance(a.0).total_cmp(&distance(b.0)))
            .map_or(UNMEASURED_PRIOR, |(_, rate)| *rate)
    }

    /// A first guess of one run's wall time in seconds: the calibration
    /// run's, plus what one process may sleep, as far as the budget lets
    /// it (sleep s <= BUDGET * (wall + s) + GRACE).
    pub fn expected_seconds(&self, profile: &Profile) -> f64 {
        let wall = profile.wall.as_secs_f64().max(1e-3);
        let sleep = (self.arm().sleeps)(self.scale_us, profile) / 1e6;
        let cap = (BUDGET * wall + GRACE_S) / (1.0 - BUDGET);
        wall + sleep.min(cap)
    }
}

/// `200us`, `1ms`, `5ms`, `1.5ms`.
pub fn scale_text(us: u64) -> String {
    if us >= 1000 && us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else if us >= 1000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}

/// What the user lets `auto` try (`--auto-arms`, `--auto-scales`): empty
/// means everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    pub arms: Vec<&'static str>,
    pub scales_us: Vec<u64>,
    /// The runs go beneath the seccomp backend: no arm that needs the shim.
    pub seccomp: bool,
}

/// The most a scale may be: one delay of a second already makes a run of
/// hundreds of calls take minutes.
pub const MAX_SCALE_US: u64 = 1_000_000;

/// `every,locks`: arm names, each known, none twice.
pub fn parse_arms(text: &str) -> Result<Vec<&'static str>, String> {
    let known: Vec<&str> = ARMS.iter().map(|a| a.name).collect();
    let mut arms = Vec::new();
    for name in text.split(',').map(str::trim) {
        let Some(arm) = ARMS.iter().find(|a| a.name == name) else {
            return Err(format!(
                "expected arm names separated by commas, from {}; got {name:?}",
                known.join(", ")
            ));
        };
        if !arms.contains(&arm.name) {
            arms.push(arm.name);
        }
    }
    Ok(arms)
}

/// `200us,1ms,5ms` (or plain microseconds): each from 1 us to 1 s.
pub fn parse_scales(text: &str) -> Result<Vec<u64>, String> {
    let mut scales = Vec::new();
    for word in text.split(',').map(str::trim) {
        let (number, factor) = [("us", 1.0), ("ms", 1e3), ("s", 1e6)]
            .iter()
            .find_map(|(unit, factor)| Some((word.strip_suffix(unit)?, *factor)))
            .unwrap_or((word, 1.0));
        let us = number
            .trim()
            .parse::<f64>()
            .ok()
            .map(|n| n * factor)
            .filter(|us| us.is_finite() && us.fract() == 0.0);
        match us {
            Some(us) if (1.0..=MAX_SCALE_US as f64).contains(&us) => {
                if !scales.contains(&(us as u64)) {
                    scales.push(us as u64);
                }
            }
            _ => {
                return Err(format!(
                    "expected delay scales separated by commas, each a whole number of microseconds from 1us to 1s (like 200us,1ms,5ms); got {word:?}"
                ))
            }
        }
    }
    Ok(scales)
}

/// The cells worth running on this program: every arm that selects some
/// of its calls, at each scale; lock arms also at the program's own gap
/// between lock calls when that differs from the fixed scales. A program
/// with no effect call gets the blanket arm alone, whose runs then say
/// NO INJECTION.
pub fn cells_for(profile: &Profile, choice: &Choice) -> Vec<Cell> {
    let mut cells = Vec::new();
    let fixed = if choice.scales_us.is_empty() {
        SCALES_US.to_vec()
    } else {
        choice.scales_us.clone()
    };
    for (index, arm) in ARMS.iter().enumerate() {
        let applies = match arm.needs {
            Needs::Effects => profile.has_effect_calls(),
            Needs::Locks => profile.has_lock_calls(),
            Needs::EffectsUnderShim => profile.has_effect_calls() && !choice.seccomp,
        };
        if !applies || !(choice.arms.is_empty() || choice.arms.contains(&arm.name)) {
            continue;
        }
        let mut scales = fixed.clone();
        if arm.needs == Needs::Locks && choice.scales_us.is_empty() {
            if let Some(gap) = profile.lock_gap() {
                let gap = (gap.as_micros() as u64).clamp(50, 20_000);
                // Rounded to two significant digits, so it reads well.
                let magnitude = 10u64.pow((gap as f64).log10().floor() as u32).max(10) / 10;
                let gap = gap / magnitude * magnitude;
                let far = |s: &u64| (gap as f64 / *s as f64).ln().abs() > 2.5f64.ln();
                if SCALES_US.iter().all(far) {
                    scales.push(gap);
                }
            }
        }
        cells.extend(scales.into_iter().map(|scale_us| Cell {
            arm: index,
            scale_us,
        }));
    }
    if cells.is_empty() {
        // Nothing the choice allows selects a call: the first allowed arm
        // (or blanket delays), whose runs then say NO INJECTION.
        let arm = ARMS
            .iter()
            .position(|a| choice.arms.first() == Some(&a.name))
            .unwrap_or(0);
        cells.push(Cell {
            arm,
            scale_us: fixed[0],
        });
    }
    cells
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn profile(effect: u64, locks: u64) -> Profile {
        Profile {
            wall: Duration::from_millis(20),
            processes: 2,
            busiest_calls: effect + 10,
            effect_calls: effect,
            lock_calls: locks,
            ..Profile::default()
        }
    }

    #[test]
    fn a_program_without_locks_gets_no_lock_only_cell() {
        let cells = cells_for(&profile(12, 0), &Choice::default());
        assert!(!cells.is_empty());
        for cell in &cells {
            assert_ne!(cell.arm().needs, Needs::Locks, "{}", cell.label());
            let settings = cell.settings(&profile(12, 0));
            assert!(
                !settings.iter().any(|(n, _)| n == "DELAYSHIM_FUNCS"),
                "{}: selects only some families: {settings:?}",
                cell.label()
            );
        }
        let with_locks = cells_for(&profile(12, 8), &Choice::default());
        assert!(with_locks.iter().any(|c| c.arm().name == "locks"));
        // 20 ms over 8 lock calls: 2.5 ms apart, not far from 1 or 5 ms.
        assert_eq!(with_locks.len(), ARMS.len() * SCALES_US.len());
        let sparse_locks = Profile {
            wall: Duration::from_millis(200),
            ..profile(12, 4)
        };
        let cells = cells_for(&sparse_locks, &Choice::default());
        // 50 ms between lock calls, held open at most 20 ms.
        assert!(
            cells.iter().any(|c| c.label() == "locks@20ms"),
            "{:?}",
            cells.iter().map(Cell::label).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_program_without_effect_calls_gets_one_blanket_cell() {
        let cells = cells_for(&profile(0, 0), &Choice::default());
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].label(), "every@200us");
    }

    #[test]
    fn pct_is_an_arm_beneath_the_shim_only() {
        let cells = |seccomp| {
            cells_for(
                &profile(12, 8),
                &Choice {
                    seccomp,
                    ..Choice::default()
                },
            )
            .iter()
            .filter(|c| c.arm().name == "pct")
            .count()
        };
        assert_eq!(cells(false), SCALES_US.len());
        assert_eq!(cells(true), 0);
    }

    #[test]
    fn the_choice_narrows_the_cells_and_bad_lists_are_refused() {
        let choice = Choice {
            arms: parse_arms("locks, every").unwrap(),
            scales_us: parse_scales("500us,2ms,3000").unwrap(),
            seccomp: false,
        };
        let labels: Vec<String> = cells_for(&profile(12, 8), &choice)
            .iter()
            .map(Cell::label)
            .collect();
        assert_eq!(
            labels,
            [
                "every@500us",
                "every@2ms",
                "every@3ms",
                "locks@500us",
                "locks@2ms",
                "locks@3ms"
            ]
        );
        // Only lock arms allowed on a program without locks: one cell,
        // whose runs will say NO INJECTION rather than nothing at all.
        let locks_only = Choice {
            arms: vec!["locks"],
            ..Choice::default()
        };
        assert_eq!(cells_for(&profile(12, 0), &locks_only).len(), 1);
        for bad in ["", "every,chaos", "EVERY"] {
            let error = parse_arms(bad).unwrap_err();
            assert!(error.starts_with("expected arm names"), "{error}");
        }
        for bad in ["0", "2s", "1.5us", "5 ms x", "-1ms", "1ms,,2ms", "nan"] {
            let error = parse_scales(bad).unwrap_err();
            assert!(error.starts_with("expected delay scales"), "{bad}: {error}");
        }
        assert_eq!(parse_scales("1s,1us").unwrap(), [1_000_000, 1]);
    }

    #[test]
    fn costs_grow_with_the_scale_and_stop_at_the_budget() {
        let p = profile(100, 50);
        let every = |scale_us| Cell { arm: 0, scale_us }.expected_seconds(&p);
        assert!(every(200) < every(1000));
        // 100 calls x 5 ms = 0.5 s, over the budget's (0.9 x 20 ms + 10 ms) / 0.1 = 0.28 s.
        assert!((every(5000) - 0.3).abs() < 1e-9, "{}", every(5000));
        assert_eq!(scale_text(200), "200us");
        assert_eq!(scale_text(5000), "5ms");
        assert_eq!(scale_text(2500), "2.5ms");
    }
}
