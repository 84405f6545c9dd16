//! Every `DELAYSHIM_*` variable, parsed once into one [`Config`].

use std::ffi::CString;
use std::fmt;
use std::path::PathBuf;

use crate::delay::Dist;
use crate::families::{family_set, func_named, Family, FuncSet, FUNCS};
use crate::fcntl::FcntlKind;

/// Mean delay when `DELAYSHIM_MEAN_US` is not set, in microseconds.
///
/// SQLite's critical sections last tens of microseconds, so a mean of a
/// few hundred stretches them by an order of magnitude, enough to reorder
/// competing processes, while the 8x8x100 driver (about ten intercepted
/// calls per increment, serialized per shard) still finishes in seconds.
pub const DEFAULT_MEAN_US: f64 = 200.0;

/// Families delayed when `DELAYSHIM_FUNCS` is not set.
pub const DEFAULT_FUNCS: &str = "pwrite,fcntl,fsync";

/// Exit status of a program stopped by a bad `DELAYSHIM_*` setting
/// (sysexits' EX_USAGE).
pub const EXIT_CONFIG_ERROR: i32 = 64;

/// Where statistics or the delay log go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stderr,
    /// An absolute path, opened with O_APPEND.
    File(PathBuf),
}

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

/// Which fcntl calls are delayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FcntlFilter {
    All,
    Lock,
    Unlock,
    Locks,
}

impl FcntlFilter {
    pub fn admits(self, kind: FcntlKind) -> bool {
        match self {
            FcntlFilter::All => true,
            FcntlFilter::Lock => kind == FcntlKind::Acquire,
            FcntlFilter::Unlock => kind == FcntlKind::Release,
            FcntlFilter::Locks => kind != FcntlKind::Other,
        }
    }
}

/// The shim's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DELAYSHIM_ENABLE`: false makes every call a pure pass-through.
    pub enabled: bool,
    pub mean_us: f64,
    pub dist: Dist,
    /// `DELAYSHIM_MAX_US`; infinite when unset.
    pub max_us: f64,
    pub prob: f64,
    pub funcs: FuncSet,
    pub when: When,
    pub fcntl: FcntlFilter,
    /// `DELAYSHIM_PATHS` globs; empty means every path.
    pub paths: Vec<CString>,
    pub seed: Option<u64>,
    pub stats: Option<Sink>,
    pub log: Option<Sink>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            mean_us: DEFAULT_MEAN_US,
            dist: Dist::Exp,
            max_us: f64::INFINITY,
            prob: 1.0,
            funcs: parse_funcs(DEFAULT_FUNCS).expect("the default is valid"),
            when: When::Before,
            fcntl: FcntlFilter::All,
            paths: Vec::new(),
            seed: None,
            stats: None,
            log: None,
        }
    }
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

/// Every variable the shim reads, with what it expects.
pub const VARIABLES: &[(&str, &str)] = &[
    ("DELAYSHIM_ENABLE", "0 or 1"),
    ("DELAYSHIM_MEAN_US", "a non-negative number of microseconds"),
    ("DELAYSHIM_DIST", "exp, uniform or fixed"),
    ("DELAYSHIM_MAX_US", "a non-negative number of microseconds"),
    ("DELAYSHIM_PROB", "a probability from 0 to 1"),
    (
        "DELAYSHIM_FUNCS",
        "a comma-separated list of families (pwrite, fcntl, fsync, pread), function names, or all",
    ),
    ("DELAYSHIM_WHEN", "before, after or both"),
    ("DELAYSHIM_FCNTL", "all, lock, unlock or locks"),
    ("DELAYSHIM_PATHS", "comma-separated non-empty glob patterns"),
    (
        "DELAYSHIM_SEED",
        "a 64-bit unsigned integer (decimal or 0x hex)",
    ),
    ("DELAYSHIM_STATS", "stderr or a file path"),
    ("DELAYSHIM_LOG", "stderr or a file path"),
];

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

    /// Parses `DELAYSHIM_*` pairs; relative sink paths are taken from `cwd`.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
        cwd: &std::path::Path,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for (name, value) in vars {
            let Some(&(_, expected)) = VARIABLES.iter().find(|(known, _)| *known == name) else {
                let known: Vec<&str> = VARIABLES.iter().map(|(known, _)| *known).collect();
                return Err(ConfigError {
                    name,
                    value,
                    expected: format!("no such variable; the shim reads {}", known.join(", ")),
                });
            };
            let bad = || ConfigError {
                name: name.clone(),
                value: value.clone(),
                expected: expected.to_owned(),
            };
            let v = value.trim();
            match name.as_str() {
                "DELAYSHIM_ENABLE" => {
                    config.enabled = match v {
                        "1" => true,
                        "0" => false,
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_MEAN_US" => config.mean_us = parse_micros(v).ok_or_else(bad)?,
                "DELAYSHIM_MAX_US" => config.max_us = parse_micros(v).ok_or_else(bad)?,
                "DELAYSHIM_DIST" => {
                    config.dist = match v {
                        "exp" => Dist::Exp,
                        "uniform" => Dist::Uniform,
                        "fixed" => Dist::Fixed,
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_PROB" => {
                    config.prob = v
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=1.0).contains(p))
                        .ok_or_else(bad)?
                }
                "DELAYSHIM_FUNCS" => config.funcs = parse_funcs(v).ok_or_else(bad)?,
                "DELAYSHIM_WHEN" => {
                    config.when = match v {
                        "before" => When::Before,
                        "after" => When::After,
                        "both" => When::Both,
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_FCNTL" => {
                    config.fcntl = match v {
                        "all" => FcntlFilter::All,
                        "lock" => FcntlFilter::Lock,
                        "unlock" => FcntlFilter::Unlock,
                        "locks" => FcntlFilter::Locks,
                        _ => return Err(bad()),
                    }
                }
                "DELAYSHIM_PATHS" => {
                    config.paths = v
                        .split(',')
                        .map(|glob| CString::new(glob.trim()).ok().filter(|g| !g.is_empty()))
                        .collect::<Option<_>>()
                        .ok_or_else(bad)?
                }
                "DELAYSHIM_SEED" => config.seed = Some(parse_seed(v).ok_or_else(bad)?),
                "DELAYSHIM_STATS" => config.stats = Some(parse_sink(v, cwd).ok_or_else(bad)?),
                "DELAYSHIM_LOG" => config.log = Some(parse_sink(v, cwd).ok_or_else(bad)?),
                _ => unreachable!("every name in VARIABLES has an arm"),
            }
        }
        Ok(config)
    }

    /// The functions that get delays: none when disabled.
    pub fn delayed_funcs(&self) -> FuncSet {
        if self.enabled {
            self.funcs
        } else {
            0
        }
    }
}

fn parse_micros(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|us| us.is_finite() && *us >= 0.0)
}

fn parse_seed(value: &str) -> Option<u64> {
    match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

fn parse_sink(value: &str, cwd: &std::path::Path) -> Option<Sink> {
    match value {
        "" => None,
        "stderr" => Some(Sink::Stderr),
        path => Some(Sink::File(cwd.join(path))),
    }
}

/// Parses a comma-separated list of family names, function names and `all`.
pub fn parse_funcs(value: &str) -> Option<FuncSet> {
    value.split(',').map(str::trim).try_fold(0, |set, name| {
        let one = if name == "all" {
            (1 << FUNCS.len()) - 1
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
    use crate::families::Func;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(
            vars.iter().map(|(n, v)| (n.to_string(), v.to_string())),
            std::path::Path::new("/work"),
        )
    }

    fn bit(func: Func) -> FuncSet {
        1 << func as usize
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).unwrap();
        assert!(config.enabled);
        assert_eq!(config.mean_us, DEFAULT_MEAN_US);
        assert_eq!(config.dist, Dist::Exp);
        assert_eq!(config.prob, 1.0);
        assert_eq!(config.when, When::Before);
        assert_eq!(config.fcntl, FcntlFilter::All);
        for func in [
            Func::pwrite64,
            Func::pwritev2,
            Func::fcntl64,
            Func::fsync,
            Func::fdatasync,
        ] {
            assert_ne!(config.funcs & bit(func), 0, "{func:?} selected by default");
        }
        assert_eq!(
            config.funcs & bit(Func::pread64),
            0,
            "reads are off by default"
        );
    }

    #[test]
    fn every_variable_parses() {
        let config = parse(&[
            ("DELAYSHIM_ENABLE", "0"),
            ("DELAYSHIM_MEAN_US", "50.5"),
            ("DELAYSHIM_DIST", "uniform"),
            ("DELAYSHIM_MAX_US", "1000"),
            ("DELAYSHIM_PROB", "0.25"),
            ("DELAYSHIM_FUNCS", "pread, fsync,pwrite64"),
            ("DELAYSHIM_WHEN", "both"),
            ("DELAYSHIM_FCNTL", "unlock"),
            ("DELAYSHIM_PATHS", "*.db,/tmp/*-wal"),
            ("DELAYSHIM_SEED", "0xff"),
            ("DELAYSHIM_STATS", "stats.jsonl"),
            ("DELAYSHIM_LOG", "stderr"),
        ])
        .unwrap();
        assert!(!config.enabled);
        assert_eq!(config.delayed_funcs(), 0);
        assert_eq!(
            (config.mean_us, config.max_us, config.prob),
            (50.5, 1000.0, 0.25)
        );
        assert_eq!(
            (config.dist, config.when, config.fcntl),
            (Dist::Uniform, When::Both, FcntlFilter::Unlock)
        );
        assert_eq!(
            config.funcs,
            family_set(Family::Pread) | family_set(Family::Fsync) | bit(Func::pwrite64)
        );
        assert_eq!(
            config.paths,
            vec![
                CString::new("*.db").unwrap(),
                CString::new("/tmp/*-wal").unwrap()
            ]
        );
        assert_eq!(config.seed, Some(255));
        assert_eq!(config.stats, Some(Sink::File("/work/stats.jsonl".into())));
        assert_eq!(config.log, Some(Sink::Stderr));
        assert_eq!(
            parse(&[("DELAYSHIM_FUNCS", "all")])
                .unwrap()
                .funcs
                .count_ones() as usize,
            FUNCS.len()
        );
    }

    #[test]
    fn bad_values_name_the_variable_value_and_expectation() {
        for (name, value) in [
            ("DELAYSHIM_ENABLE", "yes"),
            ("DELAYSHIM_MEAN_US", "-1"),
            ("DELAYSHIM_MEAN_US", "10ms"),
            ("DELAYSHIM_MEAN_US", "inf"),
            ("DELAYSHIM_MAX_US", ""),
            ("DELAYSHIM_DIST", "normal"),
            ("DELAYSHIM_PROB", "1.5"),
            ("DELAYSHIM_PROB", "NaN"),
            ("DELAYSHIM_FUNCS", "pwrite,write"),
            ("DELAYSHIM_FUNCS", ""),
            ("DELAYSHIM_WHEN", "during"),
            ("DELAYSHIM_FCNTL", "unlocks"),
            ("DELAYSHIM_PATHS", "a,,b"),
            ("DELAYSHIM_SEED", "-3"),
            ("DELAYSHIM_SEED", "18446744073709551616"),
            ("DELAYSHIM_STATS", ""),
            ("DELAYSHIM_LOG", ""),
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
    fn unknown_variable_is_refused() {
        let error = parse(&[("DELAYSHIM_MEAN", "100")]).unwrap_err();
        assert_eq!(error.name, "DELAYSHIM_MEAN");
        assert!(error.to_string().contains("DELAYSHIM_MEAN_US"), "{error}");
    }
}
