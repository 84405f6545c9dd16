//! Every `DELAYSHIM_*` variable, parsed and checked once at load into one
//! [`Config`]. The names, defaults and expectations come from the shared
//! table in `delayshim-settings`.

use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};

use delayshim_settings::{find, RUN_DIR_VAR, SETTINGS, TREE_VAR};

use crate::delay::Dist;
use crate::faults::FaultRule;
use crate::locks::LockKind;
use crate::table::{family_set, func_named, Family, FuncSet, ALL_FUNCS};

/// The longest delay any setting may ask for: a minute.
pub const MAX_DELAY_US: f64 = 60_000_000.0;

/// Exit status of a program stopped by a bad `DELAYSHIM_*` setting
/// (sysexits' EX_USAGE).
pub const EXIT_CONFIG_ERROR: i32 = 64;

/// Whether to sleep before the real call, after it, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before,
    After,
    Both,
}

impl When {
    pub fn before(self) -> bool {
        matches!(self, When::Before | When::Both)
    }

    pub fn after(self) -> bool {
        matches!(self, When::After | When::Both)
    }
}

/// Which locking calls (fcntl, flock, lockf) are delayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockFilter {
    All,
    Acquire,
    Release,
    /// Acquire and release, not other commands.
    Locks,
}

impl LockFilter {
    pub fn admits(self, kind: LockKind) -> bool {
        match self {
            LockFilter::All => true,
            LockFilter::Acquire => kind == LockKind::Acquire,
            LockFilter::Release => kind == LockKind::Release,
            LockFilter::Locks => kind != LockKind::Other,
        }
    }
}

/// Which descriptors' calls are delayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fds {
    /// Regular files and directories (and paths).
    Files,
    All,
}

/// How calls are chosen for a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Every,
    Sparse,
    Victims,
    Sites,
    /// Priorities across the run's tasks (PCT), through the run's region.
    Pct,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Every => "every",
            Strategy::Sparse => "sparse",
            Strategy::Victims => "victims",
            Strategy::Sites => "sites",
            Strategy::Pct => "pct",
        }
    }
}

/// The seed and place in the process tree that a parent passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    pub seed: u64,
    pub lineage: u64,
}

/// The shim's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DELAYSHIM_ENABLE`: false makes every call a pure pass-through.
    pub enabled: bool,
    pub strategy: Strategy,
    pub mean_us: f64,
    pub dist: Dist,
    /// `DELAYSHIM_MAX_US`; the longest allowed delay when unset.
    pub max_us: f64,
    pub prob: f64,
    pub funcs: FuncSet,
    pub when: When,
    pub locks: LockFilter,
    /// `DELAYSHIM_CALLS=effects`: only calls that other processes can see.
    pub effects_only: bool,
    pub fds: Fds,
    /// `DELAYSHIM_PATHS` globs, absolute; empty means every path.
    pub paths: Vec<CString>,
    pub seed: Option<u64>,
    pub depth: u32,
    /// sparse: calls per thread, or `None` for the scale-free schedule.
    pub horizon: Option<u64>,
    pub victim_prob: f64,
    pub scale_us: (f64, f64),
    pub site_prob: f64,
    pub fire_prob: f64,
    pub budget: f64,
    pub faults: Vec<FaultRule>,
    /// Statistics, log: `None` in the path means standard error.
    pub stats: Option<Option<PathBuf>>,
    pub log: Option<Option<PathBuf>>,
    pub record: Option<PathBuf>,
    pub replay: Option<PathBuf>,
    pub tree: Option<Tree>,
    /// `DELAYSHIM_REGION`: the run's shared region, for access tracking.
    pub region: Option<CString>,
}

/// The settings whose defaults are values the shim parses, in the
/// settings table's words: the one place defaults are defined. (The others
/// default to nothing: no paths, no faults, no files, a random seed.)
const VALUE_DEFAULTS: &[&str] = &[
    "DELAYSHIM_ENABLE",
    "DELAYSHIM_STRATEGY",
    "DELAYSHIM_MEAN_US",
    "DELAYSHIM_DIST",
    "DELAYSHIM_PROB",
    "DELAYSHIM_FUNCS",
    "DELAYSHIM_WHEN",
    "DELAYSHIM_LOCKS",
    "DELAYSHIM_CALLS",
    "DELAYSHIM_FDS",
    "DELAYSHIM_DEPTH",
    "DELAYSHIM_HORIZON",
    "DELAYSHIM_VICTIM_PROB",
    "DELAYSHIM_SCALE_US",
    "DELAYSHIM_SITE_PROB",
    "DELAYSHIM_FIRE_PROB",
    "DELAYSHIM_BUDGET",
];

impl Default for Config {
    /// The settings table's defaults, parsed as the shim parses a setting.
    fn default() -> Self {
        let mut config = Config {
            enabled: true,
            strategy: Strategy::Every,
            mean_us: 0.0,
            dist: Dist::Exp,
            // The table's "none": no cap but the largest delay accepted.
            max_us: MAX_DELAY_US,
            prob: 0.0,
            funcs: 0,
            when: When::Before,
            locks: LockFilter::All,
            effects_only: true,
            fds: Fds::Files,
            paths: Vec::new(),
            seed: None,
            depth: 1,
            horizon: None,
            victim_prob: 0.0,
            scale_us: (0.0, 0.0),
            site_prob: 0.0,
            fire_prob: 0.0,
            budget: 0.0,
            faults: Vec::new(),
            stats: None,
            log: None,
            record: None,
            replay: None,
            tree: None,
            region: None,
        };
        for var in VALUE_DEFAULTS {
            apply(
                &mut config,
                (*var).into(),
                default_of(var).into(),
                Path::new("/"),
                &mut None,
            )
            .expect("the settings table's defaults are valid values");
        }
        config
    }
}

/// Sets one `DELAYSHIM_*` variable in `config`, checking its value.
/// `locks_set` remembers which of the two lock-filter names was set.
fn apply(
    config: &mut Config,
    name: String,
    value: String,
    cwd: &Path,
    locks_set: &mut Option<String>,
) -> Result<(), ConfigError> {
    let Some(setting) = find(&name) else {
        let known: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| s.option.is_some())
            .map(|s| s.var)
            .collect();
        return Err(ConfigError {
            name,
            value,
            expected: format!("no such variable; the shim reads {}", known.join(", ")),
        });
    };
    let bad = || ConfigError {
        name: name.clone(),
        value: value.clone(),
        expected: setting.expected.to_owned(),
    };
    let v = value.trim();
    if apply_shape(config, &name, v, &bad)? {
        return Ok(());
    }
    match name.as_str() {
        "DELAYSHIM_FUNCS" => config.funcs = parse_funcs(v).ok_or_else(bad)?,
        "DELAYSHIM_WHEN" => {
            config.when = pick(
                v,
                &[
                    ("before", When::Before),
                    ("after", When::After),
                    ("both", When::Both),
                ],
            )
            .ok_or_else(bad)?
        }
        "DELAYSHIM_LOCKS" | "DELAYSHIM_FCNTL" => {
            let filter = parse_lock_filter(&name, v).ok_or_else(bad)?;
            if let Some(other) = locks_set.as_ref().filter(|_| config.locks != filter) {
                return Err(ConfigError {
                    name: name.clone(),
                    value: value.clone(),
                    expected: format!(
                        "the same choice as {other} (DELAYSHIM_FCNTL is the old name of DELAYSHIM_LOCKS)"
                    ),
                });
            }
            *locks_set = Some(name.clone());
            config.locks = filter;
        }
        "DELAYSHIM_CALLS" => {
            config.effects_only = pick(v, &[("effects", true), ("all", false)]).ok_or_else(bad)?
        }
        "DELAYSHIM_FDS" => {
            config.fds = pick(v, &[("files", Fds::Files), ("all", Fds::All)]).ok_or_else(bad)?
        }
        "DELAYSHIM_PATHS" => config.paths = parse_globs(v, cwd).ok_or_else(bad)?,
        "DELAYSHIM_SEED" => config.seed = Some(parse_seed(v).ok_or_else(bad)?),
        "DELAYSHIM_FAULTS" => {
            config.faults = crate::faults::parse_rules(v).map_err(|why| ConfigError {
                name: name.clone(),
                value: value.clone(),
                expected: why,
            })?
        }
        "DELAYSHIM_STATS" => config.stats = Some(parse_sink(v, cwd).ok_or_else(bad)?),
        "DELAYSHIM_LOG" => config.log = Some(parse_sink(v, cwd).ok_or_else(bad)?),
        "DELAYSHIM_RECORD" => config.record = Some(parse_path(v, cwd).ok_or_else(bad)?),
        "DELAYSHIM_REPLAY" => config.replay = Some(parse_path(v, cwd).ok_or_else(bad)?),
        TREE_VAR => config.tree = Some(parse_tree(v).ok_or_else(bad)?),
        // The campaign's, for the program: nothing for the shim.
        RUN_DIR_VAR => {}
        delayshim_settings::region::REGION_VAR => {
            config.region = Some(CString::new(v).map_err(|_| bad())?)
        }
        _ => unreachable!("every setting has an arm"),
    }
    Ok(())
}
/// [`apply`] for the settings that shape delays and strategies: whether
/// `name` was one of them.
fn apply_shape(
    config: &mut Config,
    name: &str,
    v: &str,
    bad: &dyn Fn() -> ConfigError,
) -> Result<bool, ConfigError> {
    let probability = || parse_probability(v).ok_or_else(bad);
    match name {
        "DELAYSHIM_ENABLE" => {
            config.enabled = match v {
                "1" => true,
                "0" => false,
                _ => return Err(bad()),
            }
        }
        "DELAYSHIM_STRATEGY" => {
            config.strategy = pick(
                v,
                &[
                    ("every", Strategy::Every),
                    ("sparse", Strategy::Sparse),
                    ("victims", Strategy::Victims),
                    ("sites", Strategy::Sites),
                    ("pct", Strategy::Pct),
                ],
            )
            .ok_or_else(bad)?
        }
        "DELAYSHIM_MEAN_US" => config.mean_us = parse_micros(v).ok_or_else(bad)?,
        "DELAYSHIM_MAX_US" => config.max_us = parse_micros(v).ok_or_else(bad)?,
        "DELAYSHIM_DIST" => {
            config.dist = pick(
                v,
                &[
                    ("exp", Dist::Exp),
                    ("uniform", Dist::Uniform),
                    ("fixed", Dist::Fixed),
                ],
            )
            .ok_or_else(bad)?
        }
        "DELAYSHIM_PROB" => config.prob = probability()?,
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
            let min = parse_micros(min.trim()).ok_or_else(bad)?;
            let max = parse_micros(max.trim()).ok_or_else(bad)?;
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
        _ => return Ok(false),
    }
    Ok(true)
}

/// `DELAYSHIM_LOCKS`, or its old name `DELAYSHIM_FCNTL` with its words.
fn parse_lock_filter(name: &str, value: &str) -> Option<LockFilter> {
    Some(match (name, value) {
        (_, "all") => LockFilter::All,
        (_, "locks") => LockFilter::Locks,
        ("DELAYSHIM_LOCKS", "acquire") | ("DELAYSHIM_FCNTL", "lock") => LockFilter::Acquire,
        ("DELAYSHIM_LOCKS", "release") | ("DELAYSHIM_FCNTL", "unlock") => LockFilter::Release,
        _ => return None,
    })
}

/// The value named `word` among `choices`.
fn pick<T: Copy>(word: &str, choices: &[(&str, T)]) -> Option<T> {
    choices
        .iter()
        .find(|(name, _)| *name == word)
        .map(|&(_, value)| value)
}

fn default_of(var: &str) -> &'static str {
    find(var).expect("a known setting").default
}

/// A setting the shim refuses: which variable, its value, what it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delayshim: bad setting {}={:?}: expected {}",
            self.name, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let vars = std::env::vars_os()
            .filter(|(name, _)| name.as_encoded_bytes().starts_with(b"DELAYSHIM_"))
            .map(|(name, value)| {
                let name = name.to_string_lossy().into_owned();
                match value.into_string() {
                    Ok(value) => Ok((name, value)),
                    Err(value) => Err(ConfigError {
                        name,
                        value: value.to_string_lossy().into_owned(),
                        expected: "valid UTF-8".into(),
                    }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cwd = std::env::current_dir().unwrap_or_default();
        Config::from_vars(vars, &cwd)
    }

    /// Parses `DELAYSHIM_*` pairs; relative paths are taken from `cwd`.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
        cwd: &Path,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut locks_set: Option<String> = None;
        for (name, value) in vars {
            apply(&mut config, name, value, cwd, &mut locks_set)?;
        }
        if config.record.is_some() && config.record == config.replay {
            return Err(ConfigError {
                name: "DELAYSHIM_RECORD".into(),
                value: config
                    .record
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                expected: "a file other than DELAYSHIM_REPLAY's".into(),
            });
        }
        Ok(config)
    }

    /// The functions that get delays or faults: none when disabled.
    pub fn intercepted_funcs(&self) -> FuncSet {
        if !self.enabled {
            return 0;
        }
        self.faults
            .iter()
            .fold(self.funcs, |set, rule| set | rule.funcs)
    }
}

fn parse_probability(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
}

fn parse_micros(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|us| us.is_finite() && (0.0..=MAX_DELAY_US).contains(us))
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

/// Comma-separated globs: `*/x.db` means anywhere; `x.db` and `d/*` are
/// anchored at the working directory.
fn parse_globs(value: &str, cwd: &Path) -> Option<Vec<CString>> {
    value
        .split(',')
        .map(|glob| {
            let glob = glob.trim();
            if glob.is_empty() {
                return None;
            }
            let absolute = if glob.starts_with('/') || glob.starts_with('*') {
                glob.to_owned()
            } else {
                format!("{}/{glob}", cwd.display())
            };
            CString::new(absolute).ok()
        })
        .collect()
}

fn parse_path(value: &str, cwd: &Path) -> Option<PathBuf> {
    (!value.is_empty()).then(|| cwd.join(value))
}

fn parse_sink(value: &str, cwd: &Path) -> Option<Option<PathBuf>> {
    match value {
        "stderr" => Some(None),
        path => parse_path(path, cwd).map(Some),
    }
}

/// `SEED:LINEAGE`, both in hex, as [`crate::process`] writes it.
pub(crate) fn parse_tree(value: &str) -> Option<Tree> {
    let (seed, lineage) = value.split_once(':')?;
    Some(Tree {
        seed: u64::from_str_radix(seed, 16).ok()?,
        lineage: u64::from_str_radix(lineage, 16).ok()?,
    })
}

/// Parses a comma-separated list of family names, function names and `all`.
pub fn parse_funcs(value: &str) -> Option<FuncSet> {
    value.split(',').map(str::trim).try_fold(0, |set, name| {
        let one = if name == "all" {
            ALL_FUNCS
        } else if let Some(family) = Family::ALL.iter().find(|f| f.name() == name) {
            family_set(*family)
        } else {
            1 << func_named(name)?
        };
        Some(set | one)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Func;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(
            vars.iter().map(|(n, v)| (n.to_string(), v.to_string())),
            Path::new("/work"),
        )
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).unwrap();
        assert!(config.enabled);
        assert_eq!(config.strategy, Strategy::Every);
        // The settings table's defaults, parsed: defined there only.
        assert_eq!(config.mean_us, 200.0);
        assert_eq!((config.prob, config.depth, config.horizon), (1.0, 3, None));
        assert_eq!(
            (config.victim_prob, config.scale_us),
            (0.5, (10.0, 10_000.0))
        );
        assert_eq!(
            (config.site_prob, config.fire_prob, config.budget),
            (0.25, 0.25, 0.9)
        );
        assert!(config.effects_only);
        assert_eq!((config.dist, config.when), (Dist::Exp, When::Before));
        assert_eq!((config.locks, config.fds), (LockFilter::All, Fds::Files));
        for func in [
            Func::pwrite64,
            Func::write,
            Func::fcntl64,
            Func::flock,
            Func::fsync,
            Func::open64,
            Func::rename,
            Func::ftruncate64,
        ] {
            assert_ne!(config.funcs & func.bit(), 0, "{func:?} selected by default");
        }
        assert_eq!(config.funcs & (Func::pread64.bit() | Func::read.bit()), 0);
    }

    #[test]
    fn every_variable_parses() {
        let config = parse(&[
            ("DELAYSHIM_ENABLE", "0"),
            ("DELAYSHIM_STRATEGY", "sites"),
            ("DELAYSHIM_MEAN_US", "50.5"),
            ("DELAYSHIM_DIST", "uniform"),
            ("DELAYSHIM_MAX_US", "1000"),
            ("DELAYSHIM_PROB", "0.25"),
            ("DELAYSHIM_FUNCS", "pread, fsync,pwrite64"),
            ("DELAYSHIM_WHEN", "both"),
            ("DELAYSHIM_LOCKS", "release"),
            ("DELAYSHIM_FCNTL", "unlock"),
            ("DELAYSHIM_FDS", "all"),
            ("DELAYSHIM_CALLS", "all"),
            ("DELAYSHIM_PATHS", "*.db,/tmp/*-wal,a.db"),
            ("DELAYSHIM_SEED", "0xff"),
            ("DELAYSHIM_DEPTH", "2"),
            ("DELAYSHIM_HORIZON", "500"),
            ("DELAYSHIM_VICTIM_PROB", "1"),
            ("DELAYSHIM_SCALE_US", "5-50"),
            ("DELAYSHIM_SITE_PROB", "0.5"),
            ("DELAYSHIM_FIRE_PROB", "0.75"),
            ("DELAYSHIM_BUDGET", "0.2"),
            ("DELAYSHIM_FAULTS", "fsync:EIO:0.5"),
            ("DELAYSHIM_STATS", "stats.jsonl"),
            ("DELAYSHIM_LOG", "stderr"),
            ("DELAYSHIM_RECORD", "rec"),
            ("DELAYSHIM_REPLAY", "/tmp/rep"),
            ("DELAYSHIM_TREE", "ff:10"),
        ])
        .unwrap();
        assert!(!config.enabled);
        assert_eq!(config.intercepted_funcs(), 0);
        assert_eq!(config.strategy, Strategy::Sites);
        assert_eq!(
            (config.mean_us, config.max_us, config.prob),
            (50.5, 1000.0, 0.25)
        );
        assert_eq!(
            (config.dist, config.when, config.locks, config.fds),
            (Dist::Uniform, When::Both, LockFilter::Release, Fds::All)
        );
        assert_eq!(
            config.funcs,
            family_set(Family::Pread) | family_set(Family::Fsync) | Func::pwrite64.bit()
        );
        assert_eq!(
            config.paths,
            vec![
                CString::new("*.db").unwrap(),
                CString::new("/tmp/*-wal").unwrap(),
                CString::new("/work/a.db").unwrap()
            ]
        );
        assert!(!config.effects_only);
        assert_eq!(config.seed, Some(255));
        assert_eq!((config.depth, config.horizon), (2, Some(500)));
        assert_eq!(config.scale_us, (5.0, 50.0));
        assert_eq!(
            (config.site_prob, config.fire_prob, config.budget),
            (0.5, 0.75, 0.2)
        );
        assert_eq!(config.faults.len(), 1);
        assert_eq!(config.stats, Some(Some("/work/stats.jsonl".into())));
        assert_eq!(config.log, Some(None));
        assert_eq!(config.record, Some("/work/rec".into()));
        assert_eq!(
            config.tree,
            Some(Tree {
                seed: 255,
                lineage: 16
            })
        );
        let all = parse(&[("DELAYSHIM_FUNCS", "all")]).unwrap();
        assert_eq!(all.funcs, ALL_FUNCS);
    }

    #[test]
    fn bad_values_name_the_variable_value_and_expectation() {
        for (name, value) in [
            ("DELAYSHIM_ENABLE", "yes"),
            ("DELAYSHIM_STRATEGY", "random"),
            ("DELAYSHIM_MEAN_US", "-1"),
            ("DELAYSHIM_MEAN_US", "10ms"),
            ("DELAYSHIM_MEAN_US", "inf"),
            ("DELAYSHIM_MEAN_US", "1e308"),
            ("DELAYSHIM_MEAN_US", "60000001"),
            ("DELAYSHIM_MAX_US", ""),
            ("DELAYSHIM_DIST", "normal"),
            ("DELAYSHIM_PROB", "1.5"),
            ("DELAYSHIM_PROB", "NaN"),
            ("DELAYSHIM_FUNCS", "pwrite,writes"),
            ("DELAYSHIM_FUNCS", ""),
            ("DELAYSHIM_WHEN", "during"),
            ("DELAYSHIM_LOCKS", "unlock"),
            ("DELAYSHIM_FCNTL", "release"),
            ("DELAYSHIM_FDS", "pipes"),
            ("DELAYSHIM_CALLS", "some"),
            ("DELAYSHIM_PATHS", "a,,b"),
            ("DELAYSHIM_SEED", "-3"),
            ("DELAYSHIM_SEED", "18446744073709551616"),
            ("DELAYSHIM_DEPTH", "0"),
            ("DELAYSHIM_DEPTH", "65"),
            ("DELAYSHIM_HORIZON", "0"),
            ("DELAYSHIM_VICTIM_PROB", "-0.1"),
            ("DELAYSHIM_SCALE_US", "10"),
            ("DELAYSHIM_SCALE_US", "100-10"),
            ("DELAYSHIM_SCALE_US", "0-10"),
            ("DELAYSHIM_BUDGET", "0"),
            ("DELAYSHIM_BUDGET", "2"),
            ("DELAYSHIM_FAULTS", "fsync:EEXIST:0.1"),
            ("DELAYSHIM_FAULTS", "fsync:short:0.1"),
            ("DELAYSHIM_FAULTS", "fsync:EIO"),
            ("DELAYSHIM_STATS", ""),
            ("DELAYSHIM_LOG", ""),
            ("DELAYSHIM_RECORD", ""),
            ("DELAYSHIM_TREE", "zz"),
        ] {
            let error =
                parse(&[(name, value)]).expect_err(&format!("{name}={value:?} must be refused"));
            assert_eq!((error.name.as_str(), error.value.as_str()), (name, value));
            let message = error.to_string();
            assert!(
                message.contains(name) && message.contains("expected"),
                "{message}"
            );
        }
    }

    #[test]
    fn conflicting_settings_are_refused() {
        let error = parse(&[
            ("DELAYSHIM_LOCKS", "acquire"),
            ("DELAYSHIM_FCNTL", "unlock"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("old name"), "{error}");
        assert!(parse(&[
            ("DELAYSHIM_LOCKS", "release"),
            ("DELAYSHIM_FCNTL", "unlock")
        ])
        .is_ok());
        assert!(parse(&[("DELAYSHIM_RECORD", "/x"), ("DELAYSHIM_REPLAY", "/x")]).is_err());
    }

    #[test]
    fn unknown_variable_is_refused() {
        let error = parse(&[("DELAYSHIM_MEAN", "100")]).unwrap_err();
        assert_eq!(error.name, "DELAYSHIM_MEAN");
        assert!(error.to_string().contains("DELAYSHIM_MEAN_US"), "{error}");
        assert!(!error.to_string().contains("DELAYSHIM_TREE"), "{error}");
    }
}
