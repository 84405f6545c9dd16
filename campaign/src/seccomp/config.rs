//! The supervisor's settings: the same `DELAYSHIM_*` variables as the
//! shim, parsed to the same values (names, defaults and expectations from
//! `delayshim-settings`), and a clear refusal of what this backend cannot
//! do honestly.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use delayshim_settings::{find, FAMILIES, RUN_DIR_VAR, SETTINGS, TREE_VAR};

pub use delayshim_decide::errnos::{errno_name, errno_named, ERRNOS};

use super::decide::Dist;
use super::syscalls::{Syscall, SYSCALLS};

/// How calls are chosen for a delay (the shim's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Every,
    Sparse,
    Victims,
    Sites,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Every => "every",
            Strategy::Sparse => "sparse",
            Strategy::Victims => "victims",
            Strategy::Sites => "sites",
        }
    }
}

/// Which locking calls are delayed (`DELAYSHIM_LOCKS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockFilter {
    All,
    Acquire,
    Release,
    Locks,
}

/// An errno fault rule: the calls it applies to and its probability.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Indices into [`SYSCALLS`].
    pub calls: Vec<usize>,
    pub errno: i32,
    pub prob: f64,
}

/// The settings, parsed.
#[derive(Debug, Clone)]
pub struct Config {
    pub enabled: bool,
    pub strategy: Strategy,
    pub mean_us: f64,
    pub dist: Dist,
    pub max_us: f64,
    pub prob: f64,
    /// `DELAYSHIM_WHEN`: sleep before the call, after it, or both.
    pub when_before: bool,
    pub when_after: bool,
    /// Per system call of [`SYSCALLS`]: selected for delays.
    pub delayed: Vec<bool>,
    pub locks: LockFilter,
    pub effects_only: bool,
    pub files_only: bool,
    /// Absolute globs; empty means every path.
    pub paths: Vec<String>,
    pub seed: Option<u64>,
    pub depth: u32,
    pub horizon: Option<u64>,
    pub victim_prob: f64,
    pub scale_us: (f64, f64),
    pub site_prob: f64,
    pub fire_prob: f64,
    pub budget: f64,
    pub faults: Vec<FaultRule>,
    pub stats: Option<PathBuf>,
    pub log: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub replay: Option<PathBuf>,
    /// The seed and lineage a parent passed on, as the shim reads them.
    pub tree: Option<(u64, u64)>,
}

/// The shim's default mean delay and longest delay, in microseconds.
const DEFAULT_MEAN_US: f64 = 200.0;
const MAX_DELAY_US: f64 = 60_000_000.0;

impl Config {
    /// Parses `vars` (only `DELAYSHIM_*` ones) as the shim would; relative
    /// paths are taken from `cwd`.
    pub fn from_vars(vars: &[(String, String)], cwd: &Path) -> Result<Config> {
        let default = |var: &str| find(var).expect("a known setting").default;
        let mut config = Config {
            enabled: true,
            strategy: Strategy::Every,
            mean_us: DEFAULT_MEAN_US,
            dist: Dist::Exp,
            max_us: MAX_DELAY_US,
            prob: 1.0,
            when_before: true,
            when_after: false,
            delayed: select(default("DELAYSHIM_FUNCS")).expect("the default is valid"),
            locks: LockFilter::All,
            effects_only: true,
            files_only: true,
            paths: Vec::new(),
            seed: None,
            depth: 3,
            horizon: None,
            victim_prob: 0.5,
            scale_us: (10.0, 10_000.0),
            site_prob: 0.25,
            fire_prob: 0.25,
            budget: default("DELAYSHIM_BUDGET").parse()?,
            faults: Vec::new(),
            stats: None,
            log: None,
            record: None,
            replay: None,
            tree: None,
        };
        for (name, value) in vars {
            let Some(setting) = find(name) else {
                let known: Vec<&str> = SETTINGS
                    .iter()
                    .filter(|s| s.option.is_some())
                    .map(|s| s.var)
                    .collect();
                bail!(
                    "bad setting {name}={value:?}: expected no such variable; the shim reads {}",
                    known.join(", ")
                );
            };
            let v = value.trim();
            let bad = || {
                anyhow::anyhow!(
                    "bad setting {name}={value:?}: expected {}",
                    setting.expected
                )
            };
            let probability = || {
                v.parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(bad)
            };
            let micros = |v: &str| {
                v.parse::<f64>()
                    .ok()
                    .filter(|us| us.is_finite() && (0.0..=MAX_DELAY_US).contains(us))
                    .ok_or_else(bad)
            };
            let sink = |v: &str| -> Result<Option<PathBuf>> {
                match v {
                    "" => Err(bad()),
                    // Standard error is the supervisor's, which is the program's.
                    "stderr" => Ok(Some(PathBuf::from("/dev/stderr"))),
                    path => Ok(Some(cwd.join(path))),
                }
            };
            match name.as_str() {
                "DELAYSHIM_ENABLE" => {
                    config.enabled = match v {
                        "1" => true,
                        "0" => false,
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_STRATEGY" => {
                    config.strategy = match v {
                        "every" => Strategy::Every,
                        "sparse" => Strategy::Sparse,
                        "victims" => Strategy::Victims,
                        "sites" => Strategy::Sites,
                        "pct" => bail!(
                            "{name}=pct: the seccomp backend does not implement pct (its priorities live in the shim's shared region); use --backend preload"
                        ),
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_MEAN_US" => config.mean_us = micros(v)?,
                "DELAYSHIM_MAX_US" => config.max_us = micros(v)?,
                "DELAYSHIM_DIST" => {
                    config.dist = match v {
                        "exp" => Dist::Exp,
                        "uniform" => Dist::Uniform,
                        "fixed" => Dist::Fixed,
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_PROB" => config.prob = probability()?,
                "DELAYSHIM_FUNCS" => config.delayed = select(v).ok_or_else(bad)?,
                "DELAYSHIM_WHEN" => {
                    (config.when_before, config.when_after) = match v {
                        "before" => (true, false),
                        "after" => (false, true),
                        "both" => (true, true),
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_LOCKS" | "DELAYSHIM_FCNTL" => {
                    config.locks = match (name.as_str(), v) {
                        (_, "all") => LockFilter::All,
                        (_, "locks") => LockFilter::Locks,
                        ("DELAYSHIM_LOCKS", "acquire") | ("DELAYSHIM_FCNTL", "lock") => {
                            LockFilter::Acquire
                        }
                        ("DELAYSHIM_LOCKS", "release") | ("DELAYSHIM_FCNTL", "unlock") => {
                            LockFilter::Release
                        }
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_CALLS" => {
                    config.effects_only = match v {
                        "effects" => true,
                        "all" => false,
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_FDS" => {
                    config.files_only = match v {
                        "files" => true,
                        "all" => false,
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_PATHS" => {
                    config.paths = v
                        .split(',')
                        .map(|glob| {
                            let glob = glob.trim();
                            match glob {
                                "" => Err(bad()),
                                g if g.starts_with('/') || g.starts_with('*') => Ok(g.to_owned()),
                                g => Ok(format!("{}/{g}", cwd.display())),
                            }
                        })
                        .collect::<Result<_>>()?
                }
                "DELAYSHIM_SEED" => config.seed = Some(parse_seed(v).ok_or_else(bad)?),
                "DELAYSHIM_DEPTH" => {
                    config.depth = v
                        .parse()
                        .ok()
                        .filter(|d| (1..=64).contains(d))
                        .ok_or_else(bad)?
                }
                "DELAYSHIM_HORIZON" => {
                    config.horizon = match v {
                        "auto" => None,
                        n => Some(
                            n.parse()
                                .ok()
                                .filter(|h| (1..=1_000_000_000).contains(h))
                                .ok_or_else(bad)?,
                        ),
                    }
                }
                "DELAYSHIM_VICTIM_PROB" => config.victim_prob = probability()?,
                "DELAYSHIM_SCALE_US" => {
                    let (min, max) = v.split_once('-').ok_or_else(bad)?;
                    let (min, max) = (micros(min.trim())?, micros(max.trim())?);
                    if !(min > 0.0 && min <= max) {
                        return Err(bad());
                    }
                    config.scale_us = (min, max);
                }
                "DELAYSHIM_SITE_PROB" => config.site_prob = probability()?,
                "DELAYSHIM_FIRE_PROB" => config.fire_prob = probability()?,
                "DELAYSHIM_BUDGET" => {
                    config.budget = v
                        .parse::<f64>()
                        .ok()
                        .filter(|b| (0.01..=1.0).contains(b))
                        .ok_or_else(bad)?
                }
                "DELAYSHIM_FAULTS" => {
                    config.faults = parse_faults(v)
                        .map_err(|why| anyhow::anyhow!("bad setting {name}={value:?}: {why}"))?
                }
                "DELAYSHIM_STATS" => config.stats = sink(v)?,
                "DELAYSHIM_LOG" => config.log = sink(v)?,
                "DELAYSHIM_RECORD" => config.record = sink(v)?,
                "DELAYSHIM_REPLAY" => config.replay = sink(v)?,
                TREE_VAR => {
                    let (seed, lineage) = v.split_once(':').ok_or_else(bad)?;
                    config.tree = Some((
                        u64::from_str_radix(seed, 16).map_err(|_| bad())?,
                        u64::from_str_radix(lineage, 16).map_err(|_| bad())?,
                    ));
                }
                // The campaign's run directory, for the program's own use.
                RUN_DIR_VAR => {}
                // The shared region the shim writes accesses into, for
                // conflicts: the supervisor records none (README, Backends).
                delayshim_settings::region::REGION_VAR => {}
                _ => bail!("{name}: not read by the seccomp backend"),
            }
        }
        Ok(config)
    }

    /// The system calls the filter sends to the supervisor: those selected
    /// for delays and those with a fault rule.
    /// With `DELAYSHIM_ENABLE=0` they are still held and counted (what a
    /// calibration run measures), and let through at once.
    pub fn watched(&self) -> Vec<&'static Syscall> {
        SYSCALLS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.delayed[*i] || self.faults.iter().any(|r| r.calls.contains(i)))
            .map(|(_, s)| s)
            .collect()
    }
}

pub fn parse_seed(value: &str) -> Option<u64> {
    match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

/// The shim's function names a `DELAYSHIM_FUNCS` value selects.
fn names(value: &str) -> Option<Vec<&'static str>> {
    let mut names = Vec::new();
    for name in value.split(',').map(str::trim) {
        if name == "all" {
            names.extend(FAMILIES.iter().flat_map(|f| f.functions.iter().copied()));
        } else if let Some(family) = FAMILIES.iter().find(|f| f.name == name) {
            names.extend(family.functions.iter().copied());
        } else {
            let known = FAMILIES
                .iter()
                .flat_map(|f| f.functions.iter())
                .find(|f| **f == name)?;
            names.push(*known);
        }
    }
    Some(names)
}

/// Per system call: selected by a `DELAYSHIM_FUNCS` value.
fn select(value: &str) -> Option<Vec<bool>> {
    let names = names(value)?;
    Some(SYSCALLS.iter().map(|s| s.selected_by(&names)).collect())
}

/// `FUNCTION_OR_FAMILY:ERRNO:PROBABILITY,...`, the shim's fault rules
/// (already checked by the shim's own parser), errno faults only.
fn parse_faults(value: &str) -> Result<Vec<FaultRule>, String> {
    value
        .split(',')
        .map(|rule| {
            let parts: Vec<&str> = rule.trim().split(':').collect();
            let [target, fault, prob] = parts[..] else {
                return Err(format!("rule {rule:?} does not have three parts"));
            };
            let names = names(target).ok_or_else(|| format!("unknown function {target:?}"))?;
            let calls: Vec<usize> = SYSCALLS
                .iter()
                .enumerate()
                .filter(|(_, s)| s.selected_by(&names))
                .map(|(i, _)| i)
                .collect();
            if fault == "short" {
                return Err("a short transfer needs the call performed for the program; the seccomp backend can only let a call through or fail it (use --backend preload)".into());
            }
            if calls.iter().any(|&i| SYSCALLS[i].func == "close") {
                return Err("a failed close still closes its descriptor; the seccomp backend cannot both close it and fail (use --backend preload)".into());
            }
            let errno = errno_named(fault).ok_or_else(|| format!("unknown errno {fault:?}"))?;
            let prob = prob
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| format!("probability {prob:?} is not from 0 to 1"))?;
            Ok(FaultRule { calls, errno, prob })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Config> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&vars, Path::new("/work"))
    }

    #[test]
    fn every_setting_of_the_shared_table_is_read() {
        for setting in SETTINGS {
            if let Err(e) = parse(&[(setting.var, setting.default)]) {
                assert!(!e.to_string().contains("not read"), "{}: {e}", setting.var);
            }
        }
    }

    #[test]
    fn values_parse_as_the_shim_parses_them() {
        let config = parse(&[
            ("DELAYSHIM_WHEN", "both"),
            ("DELAYSHIM_FUNCS", "pwrite64,fdatasync"),
            ("DELAYSHIM_PATHS", "*.db,a.json"),
            ("DELAYSHIM_FAULTS", "fsync:EIO:0.5"),
            ("DELAYSHIM_SEED", "0xff"),
        ])
        .unwrap();
        assert!(config.when_before && config.when_after);
        let delayed: Vec<&str> = SYSCALLS
            .iter()
            .zip(&config.delayed)
            .filter(|(_, d)| **d)
            .map(|(s, _)| s.func)
            .collect();
        assert_eq!(delayed, ["pwrite64", "fdatasync"]);
        assert_eq!(config.paths, ["*.db", "/work/a.json"]);
        assert_eq!(config.faults[0].errno, libc::EIO);
        assert_eq!(config.seed, Some(255));
        let watched: Vec<&str> = config.watched().iter().map(|s| s.func).collect();
        // The fault rule names the fsync family: all of it is watched.
        assert_eq!(
            watched,
            [
                "pwrite64",
                "fsync",
                "fdatasync",
                "sync_file_range",
                "syncfs",
                "msync"
            ]
        );
    }

    #[test]
    fn what_the_supervisor_cannot_do_is_refused_in_words() {
        let short = parse(&[("DELAYSHIM_FAULTS", "write:short:1")])
            .unwrap_err()
            .to_string();
        assert!(short.contains("--backend preload"), "{short}");
        let close = parse(&[("DELAYSHIM_FAULTS", "close:EIO:1")])
            .unwrap_err()
            .to_string();
        assert!(close.contains("close"), "{close}");
        let pct = parse(&[("DELAYSHIM_STRATEGY", "pct")])
            .unwrap_err()
            .to_string();
        assert!(pct.contains("--backend preload"), "{pct}");
    }
}
