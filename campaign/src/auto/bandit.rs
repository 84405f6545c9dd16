//! Thompson sampling over cells: each cell's chance of a rewarding run is
//! Beta-distributed; each run goes to the cell whose sampled chance per
//! expected second is highest. Draws come from a stream seeded by the
//! campaign's seed and the run's index, so the choice is a pure function
//! of the seed and what earlier runs reported.

use crate::plan::run_seed;

/// The prior: Beta(0.05, 1), mean 0.05, most of its mass near 0. Most
/// cells find nothing on most programs; a pessimistic prior lets one
/// failure lift a cell above the untried ones at once, while its long
/// tail keeps untried cells in play.
pub const PRIOR_ALPHA: f64 = 0.05;
pub const PRIOR_BETA: f64 = 1.0;
/// How much a cell's cost per run counts: a sampled chance is divided by
/// cost^COST_POWER. 1 would be failures per second, the right measure if
/// the posteriors were right; but ruling out that a cell five times
/// cheaper has a fifth of the rate takes tens of runs of it, and with 15
/// to 20 cells a campaign never gets to exploit what it found. Simulated
/// (auto::tests::explore_policies): with 0.25, runs move to a costly cell
/// that alone fails and cheap cells that fail still win most runs.
const COST_POWER: f64 = 0.25;
/// How many runs' worth of weight the first guess of a cell's cost has
/// against measured run times.
const COST_PRIOR_RUNS: f64 = 1.0;

/// What the bandit knows of one cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arm {
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

    /// The posterior's mean reward per run.
    pub fn mean(&self) -> f64 {
        let alpha = PRIOR_ALPHA + self.reward;
        alpha / (alpha + PRIOR_BETA + (self.runs as f64 - self.reward).max(0.0))
    }

    /// The posterior mean reward weighed by cost as choices are: what the
    /// leading cell leads in.
    pub fn rate(&self) -> f64 {
        self.mean() / self.cost().powf(COST_POWER)
    }

    fn sample(&self, draws: &mut Draws) -> f64 {
        let alpha = PRIOR_ALPHA + self.reward;
        let beta = PRIOR_BETA + (self.runs as f64 - self.reward).max(0.0);
        draws.beta(alpha, beta) / self.cost().powf(COST_POWER)
    }
}

/// Once some cell has failed, this share of the runs goes straight to the
/// leader (the best posterior mean, weighed by cost like the samples).
/// Thompson sampling alone keeps spreading runs over the 15 to 20 cells
/// whose pessimistic posteriors still have long tails: simulated, a cell
/// that fails 90% of its runs got under 42% of the runs after the first
/// failure in one campaign of a hundred.
pub const EXPLOIT: f64 = 0.5;

/// The arm with the best posterior among those that failed, if any did.
pub fn leader(arms: &[Arm]) -> Option<usize> {
    (0..arms.len())
        .filter(|&i| arms[i].failures > 0)
        .max_by(|&a, &b| arms[a].rate().total_cmp(&arms[b].rate()))
}

/// The draws of run `index` of the campaign `seed`.
pub fn draws_for(seed: u64, index: u64) -> Draws {
    Draws::new(run_seed(seed ^ 0x7a0d_5eed_ba4d_17a5, index))
}

/// Thompson sampling: the arm whose sampled chance, weighed by cost, is
/// highest.
pub fn choose(arms: &[Arm], draws: &mut Draws) -> usize {
    let mut best = (0, f64::MIN);
    for (i, arm) in arms.iter().enumerate() {
        let score = arm.sample(draws);
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
        let arms = vec![
            Arm {
                expected_seconds: 0.01,
                ..Arm::default()
            };
            6
        ];
        let pick = |i| choose(&arms, &mut draws_for(9, i));
        let picks: Vec<usize> = (0..50).map(pick).collect();
        assert_eq!(picks, (0..50).map(pick).collect::<Vec<_>>());
        let mut seen = picks.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 6, "equal arms all get runs: {picks:?}");
    }
}
