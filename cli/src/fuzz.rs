//! `delayshim fuzz [OPTIONS] [-- PROGRAM [ARGS]]`: a campaign.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use delayshim_campaign::campaign::Keep;
use delayshim_campaign::plan::{parse_seed, random_seed, AUTO, PER_RUN_VARS, STRATEGIES};
use delayshim_campaign::preload::{ld_preload, preflight};
use delayshim_campaign::report::EXIT_USAGE;
use delayshim_campaign::{run_campaign, Campaign, Plan, Shard};

use delayshim_campaign::backend::Backend;

use crate::backend::BackendArgs;
use crate::check::{check_before_running, Unfit};
use crate::settings_args::ShimSettings;
use crate::shim;
use crate::terminal::Printer;

/// Runs a campaign: a program many times under the shim, each run with its own seed.
///
/// PROGRAM defaults to the driver beside delayshim (8 workers x 8 threads
/// incrementing 100 counters). Each run is PASS, FAIL, CRASH, HANG, NO
/// INJECTION (the shim delayed nothing: the run was not fuzzed) or CHECK
/// FAILED (--check's invariant checker failed after it); each
/// failure comes with the command that reproduces it. On a terminal a live
/// line shows progress and only failures are printed; piped, every run is.
/// Whatever a run leaves running (a daemon) is killed when it ends.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs in the whole campaign (a --shard runs its share of them).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// The campaign's seed: run i uses the i-th SplitMix64 output from it
    /// (decimal or 0x hex; default: random, and printed).
    #[arg(long, value_parser = parse_seed)]
    seed: Option<u64>,
    /// Runs in parallel. Parallel runs disturb each other's timing; that
    /// is more fuzzing, not less.
    #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: u64,
    /// Seconds a run may take before it is a HANG and everything it started
    /// is killed.
    #[arg(long, default_value_t = 300.0, value_parser = parse_seconds)]
    timeout: f64,
    /// Go on after a failing run (default: stop starting runs at the first one).
    #[arg(long)]
    keep_going: bool,
    /// Directory for the campaign's summary and each kept run's output,
    /// statistics and log (default: fuzz-out/SEED). One campaign at a time
    /// (a lock file in it); one that is not empty is refused without
    /// --resume or --force.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the campaign in --out (same seed, runs and settings): the
    /// runs it finished are kept and not made again.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Empty --out first.
    #[arg(long)]
    force: bool,
    /// Which run directories to keep: a passing run's is removed by
    /// default (its line stays in runs.jsonl and summary.json).
    #[arg(long, value_enum, default_value_t = KeepArg::Failures)]
    keep: KeepArg,
    /// Stop the campaign after this long (like 90, 90s, 30m, 2h): no run
    /// starts after it and running ones are stopped; --resume continues.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_time: Option<Duration>,
    /// Give each run its own empty working directory, RUN_DIR/work (kept
    /// with a failing run's directory), named in DELAYSHIM_RUN_DIR and put
    /// for every {dir} in the program's arguments: runs of a program that
    /// uses fixed paths stop sharing state.
    #[arg(long)]
    fresh_dir: bool,
    /// A shell command run (without the shim) in each run's fresh
    /// directory before the program, like `sqlite3 db.sqlite < schema.sql`.
    #[arg(long, value_name = "CMD", requires = "fresh_dir")]
    setup: Option<OsString>,
    /// An invariant checker: a shell command run (without the shim) after
    /// each run, in its directory, with the run's exit status in
    /// DELAYSHIM_RUN_STATUS (a number, `signal N` or `hang`). When it fails
    /// after a run that passed, the run is CHECK FAILED.
    #[arg(long, value_name = "CMD")]
    check: Option<OsString>,
    /// Run only share I of N of the campaign's runs (1 <= I <= N): N
    /// machines with the same --seed and --runs split it with no overlap.
    /// `auto` takes I and N from the engine that started this one (Slurm
    /// job arrays, GitLab CI, CircleCI, Buildkite); `auto/N` takes I from
    /// one that does not say N (a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX, GNU parallel's PARALLEL_JOBSLOT).
    #[arg(long, value_name = "I/N", default_value = "1/1",
          value_parser = |value: &str| crate::shard_env::parse(value, &|name| std::env::var(name).ok()))]
    shard: Shard,
    /// Keep every delay in each run's delays.log (DELAYSHIM_LOG).
    #[arg(long)]
    log: bool,
    /// Replays of a failing run's recorded delays, to say how reliably
    /// they make it fail again (0: none).
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1000))]
    confirm: u32,
    /// --strategy auto: the arms it may use, of every, every-fixed, locks
    /// (lock releases held open), sites, sparse and victims (default: each
    /// that selects some of the program's calls).
    #[arg(long, value_name = "ARM,...", value_parser = parse_arms)]
    auto_arms: Option<Arms>,
    /// --strategy auto: the delay scales it tries each arm at, each from
    /// 1us to 1s (default: 200us,1ms,5ms, and the program's gap between
    /// lock calls for the locks arm).
    #[arg(long, value_name = "SCALE,...", value_parser = parse_scales)]
    auto_scales: Option<Scales>,
    #[command(flatten)]
    settings: ShimSettings<true>,
    #[command(flatten)]
    backend: BackendArgs,
    /// The program and its arguments, after `--`.
    #[arg(last = true, value_name = "PROGRAM [ARGS]")]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum KeepArg {
    Failures,
    All,
}

/// `90`, `90s`, `30m`, `2h`, `1d`: seconds without a unit.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => s.split_at(at),
        None => (s, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => f64::NAN,
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= MAX_TIMEOUT_SECONDS)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("expected a duration like 90, 90s, 30m or 2h (at most 30 days); got {s:?}")
        })
}

/// `--strategy locks`: auto's arm of that name as a fixed setting.
const LOCKS: &str = "locks";

/// A list of arms (clap would take a `Vec` for repeated options).
#[derive(Debug, Clone)]
struct Arms(Vec<&'static str>);

#[derive(Debug, Clone)]
struct Scales(Vec<u64>);

fn parse_arms(s: &str) -> Result<Arms, String> {
    delayshim_campaign::auto::arms::parse_arms(s).map(Arms)
}

fn parse_scales(s: &str) -> Result<Scales, String> {
    delayshim_campaign::auto::arms::parse_scales(s).map(Scales)
}

/// Thirty days: longer is a mistake, and more than a Duration holds is a panic.
const MAX_TIMEOUT_SECONDS: f64 = 2_592_000.0;

fn parse_seconds(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= MAX_TIMEOUT_SECONDS)
        .ok_or_else(|| {
            format!(
                "expected a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS}; got {s:?}"
            )
        })
}

pub fn main(args: Args) -> u8 {
    match campaign(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("delayshim fuzz: error: {error:#}");
            EXIT_USAGE
        }
    }
}

fn campaign(mut args: Args) -> Result<u8> {
    let (program, rest) = match args.command.split_first() {
        Some((program, rest)) => (program.clone(), rest.to_vec()),
        None => {
            let exe = std::env::current_exe().context("finding delayshim's own path")?;
            let driver = exe.with_file_name("driver");
            anyhow::ensure!(
                driver.exists(),
                "no program to fuzz: give one after --, like delayshim fuzz -- PROGRAM ARGS \
                 (the default, the driver beside delayshim, is not there: {})",
                driver.display()
            );
            (driver.into_os_string(), Vec::new())
        }
    };
    let funcs = args.settings.get("DELAYSHIM_FUNCS");
    let backend =
        match check_before_running(&program, funcs, "delayshim fuzz", args.backend.backend) {
            Ok((_, backend)) => backend,
            Err(unfit) => {
                eprintln!(
                    "delayshim fuzz: {}",
                    match unfit {
                        Unfit::NotFound(why) | Unfit::NotAProgram(why) => why,
                        Unfit::Refused(why) => format!("refusing to fuzz {why}"),
                    }
                );
                return Ok(EXIT_USAGE);
            }
        };

    let shim = shim::path()?;
    let preload = ld_preload(&shim);
    // The strategy is a per-run setting, so a campaign can vary it; by
    // default (auto) each run's arm and scale follow what earlier runs found.
    let strategy = args
        .settings
        .take("DELAYSHIM_STRATEGY")
        .or_else(|| std::env::var("DELAYSHIM_STRATEGY").ok())
        .unwrap_or_else(|| AUTO.to_owned());
    if !(strategy == AUTO || strategy == LOCKS || STRATEGIES.contains(&strategy.as_str())) {
        let names = std::iter::once(AUTO).chain(STRATEGIES).chain([LOCKS]);
        eprintln!(
            "delayshim fuzz: bad strategy {strategy:?} (--strategy, DELAYSHIM_STRATEGY){}: expected auto (the default), {}, or locks",
            crate::suggest::did_you_mean(&strategy, names),
            STRATEGIES.join(", ")
        );
        return Ok(EXIT_USAGE);
    }
    // locks, auto's arm that runs print as strategy=locks@SCALE: every,
    // over the lock calls only, delayed after them (unless options say
    // otherwise).
    let strategy = if strategy == LOCKS {
        for (var, value) in [
            ("DELAYSHIM_FUNCS", "fcntl,flock"),
            ("DELAYSHIM_LOCKS", "locks"),
            ("DELAYSHIM_WHEN", "after"),
        ] {
            if args.settings.get(var).is_none() && std::env::var_os(var).is_none() {
                args.settings.values.push((var, value.to_owned()));
            }
        }
        "every".to_owned()
    } else {
        strategy
    };
    let mut settings = args.settings.env();
    let mut checked = settings.clone();
    if strategy != AUTO {
        checked.push(("DELAYSHIM_STRATEGY".to_owned(), strategy.clone()));
    }
    if let Some(message) = preflight(&preload, &checked)? {
        eprintln!("delayshim fuzz: the shim refuses these settings: {message}");
        return Ok(EXIT_USAGE);
    }
    // Inherited settings apply to the runs too, so the reproduce line names
    // them; the campaign's own per-run variables are never inherited.
    let inherited: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("DELAYSHIM_") && !PER_RUN_VARS.contains(&k.as_str()))
        .filter(|(k, _)| !settings.iter().any(|(s, _)| s == k))
        .filter(|(k, _)| k != "DELAYSHIM_STRATEGY")
        .collect();
    settings.splice(0..0, inherited);
    if backend == Backend::Seccomp {
        let cwd = std::env::current_dir()?;
        if let Err(why) = delayshim_campaign::seccomp::Config::from_vars(&settings, &cwd) {
            eprintln!("delayshim fuzz: the seccomp backend refuses these settings: {why:#}");
            return Ok(EXIT_USAGE);
        }
    }

    if args.shard.runs(args.runs).next().is_none() {
        eprintln!(
            "delayshim fuzz: shard {} of a {}-run campaign has no runs: give --runs at least {}",
            args.shard, args.runs, args.shard.index
        );
        return Ok(EXIT_USAGE);
    }
    if strategy != AUTO && (args.auto_arms.is_some() || args.auto_scales.is_some()) {
        eprintln!(
            "delayshim fuzz: --auto-arms and --auto-scales are for --strategy auto, not {strategy}"
        );
        return Ok(EXIT_USAGE);
    }
    // Under seccomp each run is `delayshim run --backend seccomp -- PROGRAM`,
    // without LD_PRELOAD: its reproduce line and replay use the same.
    let (program, rest, preload) = match backend {
        Backend::Preload => (program, rest, Some(preload)),
        Backend::Seccomp => {
            let exe = std::env::current_exe().context("finding delayshim's own path")?;
            let supervised: Vec<OsString> = ["run", "--backend", "seccomp", "--"]
                .into_iter()
                .map(OsString::from)
                .chain(std::iter::once(program))
                .chain(rest)
                .collect();
            (exe.into_os_string(), supervised, None)
        }
    };
    let seed = args.seed.unwrap_or_else(random_seed);
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("fuzz-out").join(seed.to_string()));
    let mut printer = Printer::new(std::io::stdout().is_terminal());
    let campaign = Campaign {
        plan: Plan {
            seed,
            runs: args.runs,
            shard: args.shard,
            strategy: Some(strategy),
            calibrated_calls: None,
        },
        program,
        args: rest,
        ld_preload: preload,
        settings,
        jobs: args.jobs,
        timeout: Duration::from_secs_f64(args.timeout),
        keep_going: args.keep_going,
        keep_log: args.log,
        confirm: args.confirm,
        auto_choice: delayshim_campaign::auto::arms::Choice {
            arms: args.auto_arms.map_or_else(Vec::new, |a| a.0),
            scales_us: args.auto_scales.map_or_else(Vec::new, |s| s.0),
            // Set by the campaign from its backend.
            seccomp: false,
        },
        out,
        resume: args.resume,
        force: args.force,
        keep: match args.keep {
            KeepArg::Failures => Keep::Failures,
            KeepArg::All => Keep::All,
        },
        max_time: args.max_time,
        fresh_dir: args.fresh_dir,
        setup: args.setup,
        check: args.check,
    };
    run_campaign(&campaign, &mut printer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Fuzz {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn options_become_shim_settings_and_campaign_settings() {
        let fuzz = Fuzz::try_parse_from([
            "fuzz", "--mean", "50", "--dist", "uniform", "--fcntl", "unlock", "--when", "after",
            "--seed", "7", "--", "prog", "--flag",
        ])
        .unwrap()
        .args;
        assert_eq!(
            fuzz.settings.env(),
            [
                ("DELAYSHIM_MEAN_US".to_owned(), "50".to_owned()),
                ("DELAYSHIM_DIST".into(), "uniform".into()),
                ("DELAYSHIM_WHEN".into(), "after".into()),
                ("DELAYSHIM_FCNTL".into(), "unlock".into()),
            ]
        );
        assert_eq!(
            fuzz.seed,
            Some(7),
            "--seed is the campaign's, not DELAYSHIM_SEED"
        );
        assert_eq!(fuzz.command, ["prog", "--flag"]);
        assert!(Fuzz::try_parse_from(["fuzz", "--timeout", "0"]).is_err());
        assert!(Fuzz::try_parse_from(["fuzz", "--shard", "3/2"]).is_err());
        assert!(Fuzz::try_parse_from(["fuzz", "--resume", "--force"]).is_err());
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0").is_err());
        assert!(
            Fuzz::try_parse_from(["fuzz", "--stats", "x"]).is_err(),
            "each run has its own"
        );
    }
}
