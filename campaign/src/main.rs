//! `run-fuzz`: a fuzzing campaign. Runs a program many times under
//! `libdelayshim.so`, each run with its own seed, and reports every run,
//! how to reproduce each failure, and a summary. `scripts/run-fuzz.sh`
//! builds it and runs it.

mod plan;
mod preload;
mod report;
mod run;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use crate::plan::{parse_seed, run_seed, Shard};
use crate::report::{Summary, EXIT_USAGE};
use crate::run::{run_once, RunResult, RunSpec, INTERRUPTED};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dist {
    Exp,
    Uniform,
    Fixed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum When {
    Before,
    After,
    Both,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FcntlFilter {
    All,
    Lock,
    Unlock,
    Locks,
}

/// Runs PROGRAM (default: the driver, 8 workers x 8 threads incrementing
/// 100 counters) many times under libdelayshim.so, each run with its own
/// seed, and reports each run as PASS, FAIL, CRASH, HANG or NO INJECTION
/// (the shim delayed nothing: the run was not fuzzed).
///
/// Exit status: 0 every run passed; 1 a run failed, crashed, hung or was
/// not fuzzed; 2 usage error, or the campaign could not run; 3 the whole
/// campaign injected no delay; 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "run-fuzz.sh", version, about, long_about)]
struct Args {
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
    /// Seconds a run may take before it is a HANG and its process group is killed.
    #[arg(long, default_value_t = 300.0, value_parser = parse_seconds)]
    timeout: f64,
    /// Go on after a failing run (default: stop starting runs at the first one).
    #[arg(long)]
    keep_going: bool,
    /// Directory for each run's output, statistics and log (default:
    /// fuzz-out/SEED). A run's old files there are replaced.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only share I of N of the campaign's runs (1 <= I <= N): N
    /// machines with the same --seed and --runs split it with no overlap.
    #[arg(long, value_name = "I/N", default_value = "1/1")]
    shard: Shard,
    /// Keep every delay in each run's delays.log (DELAYSHIM_LOG).
    #[arg(long)]
    log: bool,
    /// DELAYSHIM_MEAN_US: mean delay in microseconds.
    #[arg(long, value_name = "US")]
    mean: Option<String>,
    /// DELAYSHIM_DIST: the delay distribution.
    #[arg(long, value_enum)]
    dist: Option<Dist>,
    /// DELAYSHIM_MAX_US: cap on one delay, in microseconds.
    #[arg(long, value_name = "US")]
    max: Option<String>,
    /// DELAYSHIM_PROB: probability that an intercepted call is delayed.
    #[arg(long, value_name = "P")]
    prob: Option<String>,
    /// DELAYSHIM_FUNCS: families (pwrite, fcntl, fsync, pread), function names or all.
    #[arg(long, value_name = "LIST")]
    funcs: Option<String>,
    /// DELAYSHIM_WHEN: sleep before the real call, after it, or both.
    #[arg(long, value_enum)]
    when: Option<When>,
    /// DELAYSHIM_FCNTL: which fcntl commands are delayed.
    #[arg(long, value_enum)]
    fcntl: Option<FcntlFilter>,
    /// DELAYSHIM_PATHS: comma-separated globs of the files whose calls are delayed.
    #[arg(long, value_name = "GLOBS")]
    paths: Option<String>,
    /// The shim to preload (default: libdelayshim.so beside this program).
    #[arg(long, hide = true)]
    shim: Option<PathBuf>,
    /// The program and its arguments, after `--`.
    #[arg(last = true, value_name = "PROGRAM [ARGS]")]
    command: Vec<OsString>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0)
        .ok_or_else(|| format!("expected a positive number of seconds; got {s:?}"))
}

impl Args {
    /// The `DELAYSHIM_*` settings the options ask for.
    fn settings(&self) -> Vec<(String, String)> {
        let name = |v: &dyn ValueEnumName| v.name();
        [
            ("DELAYSHIM_MEAN_US", self.mean.clone()),
            ("DELAYSHIM_DIST", self.dist.as_ref().map(|v| name(v))),
            ("DELAYSHIM_MAX_US", self.max.clone()),
            ("DELAYSHIM_PROB", self.prob.clone()),
            ("DELAYSHIM_FUNCS", self.funcs.clone()),
            ("DELAYSHIM_WHEN", self.when.as_ref().map(|v| name(v))),
            ("DELAYSHIM_FCNTL", self.fcntl.as_ref().map(|v| name(v))),
            ("DELAYSHIM_PATHS", self.paths.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect()
    }
}

/// A clap value's name as the shim spells it.
trait ValueEnumName {
    fn name(&self) -> String;
}

impl<T: ValueEnum> ValueEnumName for T {
    fn name(&self) -> String {
        self.to_possible_value()
            .expect("no skipped variants")
            .get_name()
            .to_owned()
    }
}

/// Variables the campaign sets for each run itself.
const PER_RUN: [&str; 3] = ["DELAYSHIM_SEED", "DELAYSHIM_STATS", "DELAYSHIM_LOG"];

fn main() -> ExitCode {
    let args = Args::parse();
    match campaign(&args) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("run-fuzz: error: {error:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn beside_this_program(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding run-fuzz's own path")?;
    Ok(exe.with_file_name(name))
}

fn campaign(args: &Args) -> Result<u8> {
    let shim = match &args.shim {
        Some(shim) => shim.clone(),
        None => beside_this_program("libdelayshim.so")?,
    };
    let shim = std::fs::canonicalize(&shim).with_context(|| {
        format!(
            "the shim {} is missing: build it with cargo build --release -p delayshim",
            shim.display()
        )
    })?;
    let command = match args.command.split_first() {
        Some((program, rest)) => (program.clone(), rest.to_vec()),
        None => (beside_this_program("driver")?.into_os_string(), Vec::new()),
    };
    let program_name = command.0.to_string_lossy().into_owned();
    let resolved = preload::resolve(&program_name).map_err(anyhow::Error::msg)?;
    match preload::check(&resolved) {
        Ok(found) => {
            if let Some(warning) = found.warning {
                eprintln!("run-fuzz: {warning}");
            }
        }
        Err(why) => {
            eprintln!("run-fuzz: refusing to fuzz {why}");
            return Ok(EXIT_USAGE);
        }
    }

    // The shim's own parser checks the settings, including any DELAYSHIM_*
    // already in the environment, by loading it into a program that does
    // nothing.
    let settings = args.settings();
    let ld_preload = match std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        Some(existing) => {
            let mut value = shim.clone().into_os_string();
            value.push(":");
            value.push(existing);
            value
        }
        None => shim.clone().into_os_string(),
    };
    if let Some(message) = preflight(&ld_preload, &settings)? {
        eprintln!("run-fuzz: the shim refuses these settings: {message}");
        return Ok(EXIT_USAGE);
    }

    let seed = args.seed.unwrap_or_else(plan::random_seed);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("fuzz-out").join(seed.to_string()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = std::fs::canonicalize(&out)?;
    let runs: Vec<u64> = args.shard.runs(args.runs).collect();

    let mut env: Vec<(String, OsString)> = vec![("LD_PRELOAD".into(), ld_preload.clone())];
    env.extend(settings.iter().map(|(k, v)| (k.clone(), v.into())));
    // Inherited settings apply to the runs too, so the reproduce line names them.
    let inherited: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("DELAYSHIM_") && !PER_RUN.contains(&k.as_str()))
        .filter(|(k, _)| !settings.iter().any(|(s, _)| s == k))
        .collect();
    let spec = RunSpec {
        program: command.0.clone(),
        args: command.1.clone(),
        env,
        timeout: Duration::from_secs_f64(args.timeout),
        keep_log: args.log,
    };
    let reproduce_env: Vec<(String, OsString)> =
        std::iter::once(("LD_PRELOAD".to_owned(), ld_preload))
            .chain(
                inherited
                    .into_iter()
                    .chain(settings)
                    .map(|(k, v)| (k, v.into())),
            )
            .collect();

    install_interrupt_handlers();
    let shard = if args.shard == Shard::WHOLE {
        String::new()
    } else {
        format!(", shard {} ({} of them here)", args.shard, runs.len())
    };
    println!(
        "run-fuzz: {} runs of {}{shard}; seed {seed}; {} job{}; timeout {} s; output in {}",
        args.runs,
        report::shell_words(std::iter::once(&command.0).chain(&command.1)),
        args.jobs,
        if args.jobs == 1 { "" } else { "s" },
        args.timeout,
        out.display()
    );

    let start = Instant::now();
    let mut summary = Summary::new(seed, args.shard, runs.len());
    let width = args.runs.saturating_sub(1).to_string().len();
    let context = report::Context {
        cwd: std::env::current_dir()?,
        env: reproduce_env,
        command: std::iter::once(command.0).chain(command.1).collect(),
    };
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let (sender, receiver) = mpsc::channel::<Result<RunResult>>();
        for _ in 0..args.jobs.min(runs.len() as u64) {
            let sender = sender.clone();
            let (spec, runs, next, stop, out) = (&spec, &runs, &next, &stop, &out);
            let keep_going = args.keep_going;
            scope.spawn(move || loop {
                if stop.load(Ordering::Relaxed) || INTERRUPTED.load(Ordering::Relaxed) {
                    break;
                }
                let Some(&index) = runs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let dir = out.join(format!("run-{index:0width$}"));
                let result = run_once(spec, index, run_seed(seed, index), &dir);
                let failed = result.as_ref().map_or(true, |r| !r.outcome.is_pass());
                if failed && !keep_going {
                    stop.store(true, Ordering::Relaxed);
                }
                if sender.send(result).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        for result in receiver {
            let result = match result {
                Ok(result) => result,
                Err(error) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(error);
                }
            };
            summary.add(&result);
            print!("{}", report::run_lines(&summary, &result, &context)?);
        }
        Ok(())
    })?;
    summary.elapsed = start.elapsed();
    let code = summary.exit_code(INTERRUPTED.load(Ordering::Relaxed));
    print!("{}", summary.text(!args.keep_going));
    summary.write_json(&out.join("summary.json"), code)?;
    Ok(code)
}

/// Loads the shim with `settings` into `true`: the shim stops a program
/// whose settings it refuses, with one line saying why.
fn preflight(ld_preload: &OsString, settings: &[(String, String)]) -> Result<Option<String>> {
    let true_program = preload::resolve("true").map_err(anyhow::Error::msg)?;
    let out = std::process::Command::new(true_program)
        .env("LD_PRELOAD", ld_preload)
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .env_remove(PER_RUN[0])
        .env_remove(PER_RUN[1])
        .env_remove(PER_RUN[2])
        .stdin(std::process::Stdio::null())
        .output()
        .context("checking the settings")?;
    if out.status.success() {
        return Ok(None);
    }
    let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if message.is_empty() {
        bail!("the shim's settings check exited with {}", out.status);
    }
    Ok(Some(message))
}

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn install_interrupt_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(
                signal,
                on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_shim_settings() {
        let args = Args::try_parse_from([
            "run-fuzz", "--mean", "50", "--dist", "uniform", "--fcntl", "unlock", "--when",
            "after", "--", "prog", "--flag",
        ])
        .unwrap();
        assert_eq!(
            args.settings(),
            [
                ("DELAYSHIM_MEAN_US".to_owned(), "50".to_owned()),
                ("DELAYSHIM_DIST".into(), "uniform".into()),
                ("DELAYSHIM_WHEN".into(), "after".into()),
                ("DELAYSHIM_FCNTL".into(), "unlock".into()),
            ]
        );
        assert_eq!(args.command, ["prog", "--flag"]);
        assert!(Args::try_parse_from(["run-fuzz", "--timeout", "0"]).is_err());
        assert!(Args::try_parse_from(["run-fuzz", "--shard", "3/2"]).is_err());
    }
}
