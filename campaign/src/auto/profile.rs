//! What the calibration run (blanket delays of 1 us, statistics on) says
//! about a program: which families of calls each process makes and how
//! many of them a delay selects, and how long a run takes. `auto`
//! schedules only arms that select some of these calls and sizes its delay
//! scales and cost estimates from them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::stats::{StatsEvent, StatsLine};

/// Where a campaign keeps its calibration profile.
pub const PROFILE_JSON: &str = "auto-profile.json";

/// The calibration run's settings: every call the default families
/// select sleeps 1 us, so the statistics count the calls a blanket delay
/// selects (a read-only open, an fcntl that is not a lock: counted, not
/// selected) at no measurable cost. Counting calls alone overstated a
/// Python program's effect calls fivefold (its imports' opens), and with
/// them the cost of every blanket cell.
pub const CALIBRATION_SETTINGS: [(&str, &str); 4] = [
    ("DELAYSHIM_STRATEGY", "every"),
    ("DELAYSHIM_DIST", "fixed"),
    ("DELAYSHIM_MEAN_US", "1"),
    ("DELAYSHIM_PROB", "1"),
];

/// The families whose calls hold a lock or let one go.
pub const LOCK_FAMILIES: [&str; 2] = ["fcntl", "flock"];

/// A program's calls, from one run with delays off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Wall time of the calibration run.
    pub wall: Duration,
    /// Processes that wrote an exit line.
    pub processes: u64,
    /// Per family: the most calls one process made.
    pub family_max: BTreeMap<String, u64>,
    /// The most intercepted calls (any family) one process made.
    pub busiest_calls: u64,
    /// The most calls of default-on (effect) families a blanket delay
    /// selected in one process.
    pub effect_calls: u64,
    /// The most lock calls (fcntl and flock families that took or let go
    /// of a lock) one process made.
    pub lock_calls: u64,
}

impl Profile {
    /// Reads a calibration run's statistics file.
    pub fn read(stats: &Path, wall: Duration) -> Result<Profile> {
        let lines = crate::stats::read_lines(stats, true)?;
        Ok(Profile::from_lines(lines.iter(), wall))
    }

    pub fn from_lines<'a>(lines: impl Iterator<Item = &'a StatsLine>, wall: Duration) -> Profile {
        let mut profile = Profile {
            wall,
            ..Profile::default()
        };
        for line in lines {
            if line.event == Some(StatsEvent::Start) {
                continue;
            }
            profile.processes += 1;
            let by_family = |field: &str| {
                let mut by_family: BTreeMap<&str, u64> = BTreeMap::new();
                for (function, n) in line.by_function(field).into_iter().flatten() {
                    let family =
                        delayshim_settings::family_of(function).map_or("other", |f| f.name);
                    *by_family.entry(family).or_default() += n;
                }
                by_family
            };
            let calls = by_family("calls");
            // What the calibration's delays selected; a line without the
            // field (delays off) has only its calls to go by.
            let selected = if line.by_function("delayed").is_some() {
                by_family("delayed")
            } else {
                calls.clone()
            };
            let effect: u64 = selected
                .iter()
                .filter(|(family, _)| is_effect_family(family))
                .map(|(_, n)| n)
                .sum();
            let locks: u64 = LOCK_FAMILIES
                .iter()
                .map(|f| selected.get(f).copied().unwrap_or(0))
                .sum();
            let by_family = calls;
            profile.busiest_calls = profile.busiest_calls.max(by_family.values().sum());
            profile.effect_calls = profile.effect_calls.max(effect);
            profile.lock_calls = profile.lock_calls.max(locks);
            for (family, n) in by_family {
                let max = profile.family_max.entry(family.to_owned()).or_default();
                *max = (*max).max(n);
            }
        }
        profile
    }

    /// Keeps the profile in the campaign's directory, for `--resume`.
    pub fn save(&self, out: &Path) -> Result<()> {
        let path = out.join(PROFILE_JSON);
        std::fs::write(&path, format!("{:#}\n", self.json()))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
    }

    /// The profile a campaign kept, if it has a readable one.
    pub fn load(out: &Path) -> Option<Profile> {
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(PROFILE_JSON)).ok()?).ok()?;
        let count = |field: &str| json[field].as_u64();
        Some(Profile {
            wall: Duration::try_from_secs_f64(json["wall_s"].as_f64()?).ok()?,
            processes: count("processes")?,
            family_max: serde_json::from_value(json["family_max"].clone()).ok()?,
            busiest_calls: count("busiest_calls")?,
            effect_calls: count("effect_calls")?,
            lock_calls: count("lock_calls")?,
        })
    }

    /// Whether the program makes any call a delay can reorder.
    pub fn has_effect_calls(&self) -> bool {
        self.effect_calls > 0
    }

    pub fn has_lock_calls(&self) -> bool {
        self.lock_calls > 0
    }

    /// The mean time between one process's lock calls, if it makes any:
    /// about how long a released lock should be held open.
    pub fn lock_gap(&self) -> Option<Duration> {
        (self.lock_calls > 0).then(|| self.wall / self.lock_calls.min(u32::MAX.into()) as u32)
    }

    /// One line for the campaign's start.
    pub fn describe(&self) -> String {
        let families: Vec<String> = self
            .family_max
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(family, n)| format!("{family} {n}"))
            .collect();
        format!(
            "{} process{}, {:.0} ms; most calls in one process: {} ({} effect, {} lock){}",
            self.processes,
            if self.processes == 1 { "" } else { "es" },
            self.wall.as_secs_f64() * 1e3,
            self.busiest_calls,
            self.effect_calls,
            self.lock_calls,
            if families.is_empty() {
                String::new()
            } else {
                format!(": {}", families.join(", "))
            }
        )
    }

    pub fn json(&self) -> Value {
        serde_json::json!({
            "wall_s": self.wall.as_secs_f64(),
            "processes": self.processes,
            "busiest_calls": self.busiest_calls,
            "effect_calls": self.effect_calls,
            "lock_calls": self.lock_calls,
            "family_max": self.family_max,
        })
    }
}

/// The shim's default families are those whose calls other processes can
/// see (the read families are off by default).
pub fn is_effect_family(family: &str) -> bool {
    delayshim_settings::FAMILIES
        .iter()
        .any(|f| f.name == family && f.default_on)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<StatsLine> {
        text.iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn with_the_calibration_delays_only_the_selected_calls_count_as_effects_and_locks() {
        // A Python parent: 50 opens of its imports (read-only, not
        // selected), fcntl calls that are not locks; one forked worker.
        let calibration = lines(&[
            r#"{"pid":1,"calls":{"open64":50,"close":49,"fcntl64":7,"write":4},"delayed":{"open64":2,"write":4}}"#,
            r#"{"pid":2,"calls":{"open64":4,"flock":2,"fsync":2},"delayed":{"open64":2,"flock":2,"fsync":2}}"#,
        ]);
        let profile = Profile::from_lines(calibration.iter(), Duration::from_millis(40));
        assert_eq!(profile.busiest_calls, 110, "calls, selected or not");
        assert_eq!(profile.effect_calls, 6, "the selected ones");
        assert_eq!(
            profile.lock_calls, 2,
            "the flocks; the fcntl calls took no lock"
        );
        assert_eq!(profile.family_max["open"], 50);
        // An exit line with no delayed field at all (delays off): calls.
        let off = lines(&[r#"{"pid":1,"calls":{"open64":50,"fcntl64":7}}"#]);
        let profile = Profile::from_lines(off.iter(), Duration::from_millis(40));
        assert_eq!((profile.effect_calls, profile.lock_calls), (57, 7));
    }

    #[test]
    fn a_profile_keeps_the_busiest_process_per_family() {
        let calibration = lines(&[
            r#"{"event":"start","pid":1}"#,
            r#"{"pid":1,"calls":{"fcntl64":10,"pwrite64":4,"pread64":30}}"#,
            r#"{"pid":2,"calls":{"flock":3,"write":20,"rename":1}}"#,
        ]);
        let profile = Profile::from_lines(calibration.iter(), Duration::from_millis(40));
        assert_eq!(profile.processes, 2);
        assert_eq!(profile.busiest_calls, 44);
        assert_eq!(profile.effect_calls, 24, "reads are not effects");
        assert_eq!(profile.lock_calls, 10);
        assert_eq!(profile.family_max["pread"], 30);
        assert_eq!(profile.lock_gap(), Some(Duration::from_millis(4)));
        assert!(profile.has_effect_calls() && profile.has_lock_calls());
        let reads_only = lines(&[r#"{"pid":1,"calls":{"read":5}}"#]);
        let profile = Profile::from_lines(reads_only.iter(), Duration::from_millis(1));
        assert!(!profile.has_effect_calls() && profile.lock_gap().is_none());
        let dir = std::env::temp_dir().join(format!("profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Profile::load(&dir), None);
        profile.save(&dir).unwrap();
        assert_eq!(Profile::load(&dir), Some(profile));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
