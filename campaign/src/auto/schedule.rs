//! Hands a campaign's runs to its workers in order: fixed plans as they
//! come, `auto`'s once the reports each one depends on are in.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{Auto, Report};
use crate::plan::RunPlan;
use crate::run::RunResult;

#[derive(Debug)]
enum Source {
    Fixed(std::vec::IntoIter<RunPlan>),
    Learning(Box<Auto>),
}

/// The campaign's runs, for its workers and its main thread.
#[derive(Debug)]
pub struct Schedule {
    source: Mutex<Source>,
    reported: Condvar,
    runs: usize,
    learning: bool,
}

impl Schedule {
    pub fn fixed(plans: Vec<RunPlan>) -> Schedule {
        Schedule {
            runs: plans.len(),
            source: Mutex::new(Source::Fixed(plans.into_iter())),
            reported: Condvar::new(),
            learning: false,
        }
    }

    pub fn learning(auto: Auto) -> Schedule {
        Schedule {
            runs: auto.runs(),
            source: Mutex::new(Source::Learning(Box::new(auto))),
            reported: Condvar::new(),
            learning: true,
        }
    }

    /// Runs in this shard.
    pub fn runs(&self) -> usize {
        self.runs
    }

    fn lock(&self) -> MutexGuard<'_, Source> {
        // A worker that panicked leaves the state as it was: use it.
        self.source.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next run, once it can be chosen; `None` when every run is
    /// handed out or `stop()` says to start no more.
    pub fn next(&self, stop: impl Fn() -> bool) -> Option<RunPlan> {
        let mut source = self.lock();
        loop {
            if stop() {
                return None;
            }
            match &mut *source {
                Source::Fixed(plans) => return plans.next(),
                Source::Learning(auto) if auto.ready() => return auto.next_plan(),
                Source::Learning(_) => {}
            }
            source = self
                .reported
                .wait_timeout(source, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Takes in a finished run (called in the order runs finish).
    pub fn observe(&self, result: &RunResult) {
        if !self.learning {
            return;
        }
        // The record is read before taking the lock the workers wait on.
        let report = Report::of(result);
        if let Source::Learning(auto) = &mut *self.lock() {
            auto.observe(result.plan.index, report);
        }
        self.reported.notify_all();
    }

    /// `auto`'s leading cell, for the progress line.
    pub fn leading(&self) -> Option<String> {
        match &*self.lock() {
            Source::Learning(auto) => auto.leading(),
            Source::Fixed(_) => None,
        }
    }

    /// `auto`'s closing lines and summary.json section, after the last run.
    pub fn learned(&self) -> Option<(String, serde_json::Value)> {
        match &mut *self.lock() {
            Source::Learning(auto) => {
                auto.finish();
                Some((auto.text(), auto.json()))
            }
            Source::Fixed(_) => None,
        }
    }
}
