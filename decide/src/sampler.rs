//! Drawing a delay: its distribution and the one draw, shared by the shim
//! and the seccomp backend so that a seed draws the same delays under
//! either.

use rand::Rng;
use rand_distr::{Distribution, Exp1};

/// The distribution of delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    /// Exponential with the given mean, like the original `expovariate`.
    Exp,
    /// Uniform from 0 to twice the mean.
    Uniform,
    /// Always the mean.
    Fixed,
}

/// Draws delays, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    pub dist: Dist,
    pub mean_us: f64,
    pub max_us: f64,
}

impl Sampler {
    /// One delay, capped at `max_us`, in nanoseconds. Always draws the same
    /// amount of randomness for a distribution, so streams stay aligned.
    pub fn draw(&self, rng: &mut impl Rng) -> u64 {
        let us = match self.dist {
            Dist::Exp => {
                let unit: f64 = Exp1.sample(rng);
                unit * self.mean_us
            }
            Dist::Uniform => rng.random::<f64>() * 2.0 * self.mean_us,
            Dist::Fixed => self.mean_us,
        };
        let nanos = (us.min(self.max_us) * 1000.0).round() as u64;
        // A drawn delay is a delay: an exponential draw that rounds to zero
        // still counts (and sleeps) as one, so "every call" means every.
        if self.mean_us > 0.0 && self.max_us > 0.0 {
            nanos.max(1)
        } else {
            nanos
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    use super::*;

    fn mean_of(sampler: Sampler, n: usize) -> f64 {
        let mut rng = SmallRng::seed_from_u64(7);
        (0..n).map(|_| sampler.draw(&mut rng) as f64).sum::<f64>() / n as f64 / 1000.0
    }

    #[test]
    fn means_match_the_setting() {
        // 100k draws: the standard error of the mean is 0.3% of the mean
        // (exp) and less (uniform), so 2% is over six standard errors.
        for dist in [Dist::Exp, Dist::Uniform] {
            let sampler = Sampler {
                dist,
                mean_us: 500.0,
                max_us: f64::INFINITY,
            };
            let mean = mean_of(sampler, 100_000);
            assert!((mean - 500.0).abs() < 10.0, "{dist:?} mean {mean}");
        }
        let fixed = Sampler {
            dist: Dist::Fixed,
            mean_us: 123.0,
            max_us: f64::INFINITY,
        };
        assert_eq!(mean_of(fixed, 10), 123.0);
    }

    #[test]
    fn cap_bounds_every_draw() {
        let sampler = Sampler {
            dist: Dist::Exp,
            mean_us: 1000.0,
            max_us: 50.0,
        };
        let mut rng = SmallRng::seed_from_u64(1);
        assert!((0..10_000).all(|_| sampler.draw(&mut rng) <= 50_000));
    }

    #[test]
    fn exponential_has_its_shape() {
        // P(X > mean) = 1/e for an exponential distribution.
        let sampler = Sampler {
            dist: Dist::Exp,
            mean_us: 100.0,
            max_us: f64::INFINITY,
        };
        let mut rng = SmallRng::seed_from_u64(3);
        let above = (0..100_000)
            .filter(|_| sampler.draw(&mut rng) > 100_000)
            .count();
        let share = above as f64 / 100_000.0;
        assert!((share - (-1.0f64).exp()).abs() < 0.01, "{share}");
    }
}
