//! Chooses each run's cell from what the campaign knows of each: its
//! chance of a failing run, Beta-distributed from a prior the real-program
//! suite measured (see [`super::arms::Arm::prior`]) updated by this
//! campaign's runs, over its expected seconds. Most runs go to the cell
//! with the best posterior mean per second; one in [`EXPLORE`] is drawn
//! by Thompson sampling, so no cell's chance is ruled out for good by a
//! prior. Draws come from a stream seeded by the campaign's seed and the
//! run's index, so the choice is a pure function of the seed and what
//! earlier runs reported.

use crate::plan::run_seed;

/// How many runs' worth of weight a cell's prior has. On the suite's
/// measured rates with each harness's prior taken from the other eleven
/// (scripts/simulate_auto.py), 1, 2, 4 and 8 gave a median time to the
/// first failure within 4% of each other (6.1 native runs at 2); the
/// lighter prior lets a program whose only failing cell the suite rates
/// low reach it sooner (auto::tests: 2.2x the best cell's time there).
pub const PRIOR_RUNS: f64 = 2.0;
/// The share of runs chosen by Thompson sampling rather than by the best
/// posterior mean: exploration beyond what the priors' order gives.
pub const EXPLORE: f64 = 0.1;
/// How many runs' worth of weight the first guess of a cell's cost has
/// against measured run times.
const COST_PRIOR_RUNS: f64 = 1.0;

/// What the bandit knows of one cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arm {
    /// The prior chance of a failing run (the suite's rate).
    pub prior: f64,
    /// Rewards summed (a failure is 1, novelty a fraction).
    pub reward: f64,
    pub runs: u64,
    /// Runs that failed, crashed or hung.
    pub failures: u64,
    /// Wall seconds of its runs.
    pub seconds: f64,
    /// The first guess of one run's seconds.
    pub expected_seconds: f64,
}

impl Arm {
    /// Mean seconds per run: the guess, then measurements.
    pub fn cost(&self) -> f64 {
        ((self.expected_seconds * COST_PRIOR_RUNS + self.seconds)
            / (COST_PRIOR_RUNS + self.runs as f64))
            .max(1e-4)
    }

    /// The posterior's Beta parameters.
    fn posterior(&self) -> (f64, f64) {
        let prior = self.prior.clamp(0.01, 0.99);
        let alpha = prior * PRIOR_RUNS + self.reward;
        let beta = (1.0 - prior) * PRIOR_RUNS + (self.runs as f64 - self.reward).max(0.0);
        (alpha, beta)
    }

    /// The posterior's mean reward per run.
    pub fn mean(&self) -> f64 {
        let (alpha, beta) = self.posterior();
        alpha / (alpha + beta)
    }

    /// The posterior mean reward per second: what choices weigh, and what
    /// the leading cell leads in.
    pub fn rate(&self) -> f64 {
        self.mean() / self.cost()
    }

    fn sample(&self, draws: &mut Draws) -> f64 {
        let (alpha, beta) = self.posterior();
        draws.beta(alpha, beta) / self.cost()
    }
}

/// The draws of run `index` of the campaign `seed`.
pub fn draws_for(seed: u64, index: u64) -> Draws {
    Draws::new(run_seed(seed ^ 0x7a0d_5eed_ba4d_17a5, index))
}

/// The best posterior rate, or one run in [`EXPLORE`] a Thompson sample.
pub fn choose(arms: &[Arm], draws: &mut Draws) -> usize {
    let explore = draws.uniform() < EXPLORE;
    let mut best = (0, f64::MIN);
    for (i, arm) in arms.iter().enumerate() {
        let score = if explore {
            arm.sample(draws)
        } else {
            arm.rate()
        };
        if score > best.1 {
            best = (i, score);
        }
    }
    best.0
}

/// A SplitMix64 stream and the distributions Thompson sampling needs.
#[derive(Debug)]
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64) -> Draws {
        Draws(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        run_seed(self.0, 0)
    }

    /// Uniform on (0, 1): never 0, so logarithms stay finite.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang (2000); below shape 1 by
    /// boosting: Gamma(a) = Gamma(a + 1) * U^(1/a).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let boost = self.uniform().powf(1.0 / shape);
            return self.gamma(shape + 1.0) * boost;
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    pub fn beta(&mut self, alpha: f64, beta: f64) -> f64 {
        let x = self.gamma(alpha);
        let y = self.gamma(beta);
        if x + y > 0.0 {
            x / (x + y)
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_draws_have_the_right_mean() {
        let mut draws = Draws::new(1);
        for (a, b) in [(0.25, 1.0), (2.0, 5.0), (30.0, 3.0)] {
            let n = 20_000;
            let mean: f64 = (0..n).map(|_| draws.beta(a, b)).sum::<f64>() / n as f64;
            // The standard deviation of a Beta is at most 0.5: of the mean
            // of 20000 draws, 0.0036; 0.02 is over five of them.
            assert!((mean - a / (a + b)).abs() < 0.02, "Beta({a}, {b}): {mean}");
        }
    }

    #[test]
    fn the_choice_is_a_function_of_the_seed_and_the_index() {
        let arm = |prior| Arm {
            prior,
            expected_seconds: 0.01,
            ..Arm::default()
        };
        let arms = vec![arm(0.1), arm(0.2), arm(0.6), arm(0.2), arm(0.05), arm(0.3)];
        let pick = |i| choose(&arms, &mut draws_for(9, i));
        let picks: Vec<usize> = (0..1000).map(pick).collect();
        assert_eq!(picks, (0..1000).map(pick).collect::<Vec<_>>());
        let best = picks.iter().filter(|&&p| p == 2).count();
        // Exploration draws 10% of the runs (Binomial(1000, 0.1): 170 is
        // over seven deviations above), and some of those draw arm 2 too.
        assert!(best > 830, "the best prior gets most runs: {best}");
        let mut seen = picks.clone();
        seen.sort_unstable();
        seen.dedup();
        assert!(seen.len() >= 5, "exploration reaches the others: {seen:?}");
        assert_ne!(
            picks,
            (0..1000)
                .map(|i| choose(&arms, &mut draws_for(10, i)))
                .collect::<Vec<_>>()
        );
    }
}
