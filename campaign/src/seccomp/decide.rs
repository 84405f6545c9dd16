//! Deciding what to do to one held call, exactly as the shim does: the
//! same seeded streams per process and thread, the same strategies and
//! distributions, drawn in the same order, and the same time budget.
//!
//! The shim cannot be linked into the command, whose own calls its
//! exported wrappers would interpose. The pure pieces (hashing, the
//! distributions and their draw) come from `delayshim-decide`, shared with
//! the shim; the per-thread state and the strategy decision below follow
//! `shim/src/strategy.rs`, over the supervisor's view of a call.
//! `tests/seccomp.rs` checks that one seed gives the same delays under
//! either backend.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use delayshim_decide::hash::{combine, hash_bytes, mix};
pub use delayshim_decide::sampler::{Dist, Sampler};

use super::config::{Config, Strategy};

/// The lineage of a process that no shimmed parent started.
pub const ROOT_LINEAGE: u64 = 0x5eed;

const GRACE_NANOS: u64 = 10_000_000;
const SPARSE_AUTO_HORIZON: f64 = (1u64 << 20) as f64;
const SPARSE_STRETCH: f64 = 10.0;

/// What is done to one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    pub before_nanos: u64,
    /// Slept before the thread's next held call: the kernel returns from
    /// a continued call to the program without asking the supervisor.
    pub after_nanos: u64,
    /// The errno the call fails with, without being performed.
    pub fault: Option<i32>,
}

impl Decision {
    pub fn is_nothing(&self) -> bool {
        *self == Decision::default()
    }
}

/// One thread's stream and strategy state (the shim's `ThreadState`).
#[derive(Debug)]
pub struct ThreadState {
    pub ordinal: u64,
    pub rng: SmallRng,
    seed: u64,
    pub calls: u64,
    start_nanos: u64,
    injected_nanos: u64,
    victim: bool,
    scale_us: f64,
    points: [u64; 64],
    n_points: usize,
    next_point: usize,
}

impl ThreadState {
    /// Seeds the stream and draws the per-thread choices in the shim's order.
    pub fn new(
        config: &Config,
        seed: u64,
        process: u64,
        ordinal: u64,
        now_nanos: u64,
    ) -> ThreadState {
        let mut process_rng = SmallRng::seed_from_u64(mix(process));
        let (lo, hi) = config.scale_us;
        let scale_us = (lo.ln() + process_rng.random::<f64>() * (hi.ln() - lo.ln())).exp();
        let mut rng = SmallRng::seed_from_u64(combine(process, ordinal));
        let victim = rng.random::<f64>() < config.victim_prob;
        let mut points = [0u64; 64];
        let n_points = config.depth as usize;
        for point in points.iter_mut().take(n_points) {
            let u: f64 = rng.random();
            *point = match config.horizon {
                Some(horizon) => (u * horizon as f64) as u64,
                None => (u * SPARSE_AUTO_HORIZON.ln()).exp() as u64 - 1,
            };
        }
        points[..n_points].sort_unstable();
        ThreadState {
            ordinal,
            rng,
            seed,
            calls: 0,
            start_nanos: now_nanos,
            injected_nanos: 0,
            victim,
            scale_us,
            points,
            n_points,
            next_point: 0,
        }
    }

    fn change_points_at(&mut self, index: u64) -> usize {
        let mut hits = 0;
        while self.next_point < self.n_points && self.points[self.next_point] <= index {
            if self.points[self.next_point] == index {
                hits += 1;
            }
            self.next_point += 1;
        }
        hits
    }

    fn within_budget(&mut self, budget: f64, nanos: u64, now_nanos: u64) -> u64 {
        if nanos == 0 {
            return 0;
        }
        let elapsed = now_nanos.saturating_sub(self.start_nanos);
        let allowed = (budget * elapsed as f64) as u64 + GRACE_NANOS;
        if self.injected_nanos >= allowed {
            return 0;
        }
        self.injected_nanos += nanos;
        nanos
    }
}

/// Whether call site `site` is switched on for `seed`.
pub fn site_active(seed: u64, site: u64, site_prob: f64) -> bool {
    ((combine(seed, site) >> 11) as f64 / (1u64 << 53) as f64) < site_prob
}

/// Decides what to do to the thread's next decided call. `delayed`: the
/// call is selected for delays; `call` indexes the fault rules' calls.
pub fn decide(
    config: &Config,
    thread: &mut ThreadState,
    call: usize,
    delayed: bool,
    site: impl FnOnce() -> u64,
    now_nanos: u64,
) -> Decision {
    let mut decision = Decision::default();
    let sampler = Sampler {
        dist: config.dist,
        mean_us: config.mean_us,
        max_us: config.max_us,
    };
    let index = thread.calls;
    thread.calls += 1;
    if delayed {
        let (fire, sampler) = match config.strategy {
            Strategy::Every => (
                config.prob >= 1.0 || thread.rng.random::<f64>() < config.prob,
                sampler,
            ),
            Strategy::Sparse => (
                thread.change_points_at(index) > 0,
                Sampler {
                    mean_us: config.mean_us * SPARSE_STRETCH,
                    ..sampler
                },
            ),
            Strategy::Victims => (
                thread.victim,
                Sampler {
                    dist: Dist::Exp,
                    mean_us: thread.scale_us,
                    max_us: config.max_us,
                },
            ),
            Strategy::Sites => (
                site_active(thread.seed, site(), config.site_prob)
                    && thread.rng.random::<f64>() < config.fire_prob,
                sampler,
            ),
        };
        if fire {
            if config.when_before {
                decision.before_nanos = sampler.draw(&mut thread.rng);
            }
            if config.when_after {
                decision.after_nanos = sampler.draw(&mut thread.rng);
            }
        }
    }
    for rule in &config.faults {
        if rule.calls.contains(&call) && thread.rng.random::<f64>() < rule.prob {
            decision.fault.get_or_insert(rule.errno);
        }
    }
    if decision.fault.is_some() {
        // The call is not performed: nothing to wait for after it.
        decision.after_nanos = 0;
    }
    decision.before_nanos = thread.within_budget(config.budget, decision.before_nanos, now_nanos);
    decision.after_nanos = thread.within_budget(config.budget, decision.after_nanos, now_nanos);
    decision
}

/// The monotonic clock, in nanoseconds.
pub fn now_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&vars, std::path::Path::new("/")).unwrap()
    }

    #[test]
    fn sparse_delays_exactly_depth_calls_within_its_horizon() {
        let config = config(&[
            ("DELAYSHIM_STRATEGY", "sparse"),
            ("DELAYSHIM_DEPTH", "3"),
            ("DELAYSHIM_HORIZON", "100000"),
            ("DELAYSHIM_DIST", "fixed"),
        ]);
        let mut thread = ThreadState::new(&config, 99, 7, 0, 0);
        let delayed = (0..100_000)
            .filter(|_| decide(&config, &mut thread, 0, true, || 0, 0).before_nanos > 0)
            .count();
        assert_eq!(delayed, 3);
    }

    #[test]
    fn the_budget_caps_injected_time() {
        let config = config(&[
            ("DELAYSHIM_MEAN_US", "1000000"),
            ("DELAYSHIM_DIST", "fixed"),
            ("DELAYSHIM_BUDGET", "0.1"),
        ]);
        let mut thread = ThreadState::new(&config, 99, 7, 0, 0);
        let total: u64 = (0..100)
            .map(|_| decide(&config, &mut thread, 0, true, || 0, 0).before_nanos)
            .sum();
        assert_eq!(total, 1_000_000_000);
    }
}
