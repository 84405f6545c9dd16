//! Forks worker processes whose threads increment shared counters in a
//! SQLite-backed `FanoutCache`, then checks that no increment was lost: the
//! python-diskcache delay-fuzzer experiment, as a program to run under
//! `LD_PRELOAD=libdelayshim.so`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cache::{CacheOptions, FanoutCache, Key, Value};
use clap::{Parser, ValueEnum};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Exit status when every counter reached its expected value.
const EXIT_PASS: u8 = 0;
/// Exit status when the check found lost or extra increments.
const EXIT_RACE_FOUND: u8 = 1;
/// Exit status when a worker failed or crashed (clap uses 2 for usage errors).
const EXIT_WORKER_FAILED: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    /// `Cache::incr`: one atomic read-modify-write transaction (correct).
    Incr,
    /// `get`, then `set` of value+1 in a separate transaction: a lost-update
    /// race on purpose, for the fuzzer to expose.
    GetSet,
}

/// Forks WORKERS processes of THREADS threads; every thread increments keys
/// 0..KEYS-1 of one FanoutCache once each, in order. Afterwards every key
/// must hold WORKERS x THREADS.
///
/// Exit status: 0 every counter is right; 1 some counter is wrong (a race
/// was found); 2 usage error; 3 a worker failed or crashed.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Cache directory (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the cache directory and print its path.
    #[arg(long)]
    keep: bool,
    /// Worker processes to fork.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: u32,
    /// Threads per worker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: u32,
    /// Counters (keys 0..KEYS-1).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    keys: u32,
    /// Shards of the FanoutCache.
    #[arg(long, default_value_t = FanoutCache::DEFAULT_SHARDS as u32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    shards: u32,
    /// How each thread increments a counter.
    #[arg(long, value_enum, default_value_t = Op::Incr)]
    op: Op,
    /// Microseconds between workers' starts (after each has opened the
    /// cache): worker i starts i x STAGGER_US after worker 0. Staggered
    /// workers rarely overlap without help, which makes a low-contention
    /// race target.
    #[arg(long, default_value_t = 0)]
    stagger_us: u64,
    /// Seconds an operation waits for a locked database before the worker fails.
    #[arg(long, default_value_t = 60.0)]
    lock_timeout: f64,
}

impl Args {
    fn expected(&self) -> i64 {
        i64::from(self.workers) * i64::from(self.threads)
    }

    fn open(&self, dir: &Path) -> cache::Result<FanoutCache> {
        let options = CacheOptions::default().timeout(Duration::from_secs_f64(self.lock_timeout));
        FanoutCache::open_with(dir, self.shards as usize, options)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.lock_timeout.is_finite() && args.lock_timeout >= 0.0) {
        eprintln!("error: --lock-timeout must be a non-negative number of seconds");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("driver: error: {error:#}");
            ExitCode::from(EXIT_WORKER_FAILED)
        }
    }
}

fn run(args: &Args) -> Result<u8> {
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("driver-").tempdir()?),
    };
    let dir = match (&args.dir, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, temp) => temp.as_ref().expect("made above").path().to_owned(),
    };
    let start = Instant::now();
    let failures = run_workers(args, &dir)?;
    let code = if failures.is_empty() {
        let cache = args.open(&dir).context("opening the cache to check it")?;
        report(args, &cache, start.elapsed())?
    } else {
        for failure in &failures {
            eprintln!("FAIL: {failure}");
        }
        EXIT_WORKER_FAILED
    };
    if args.keep {
        if let Some(temp) = temp {
            let _kept = temp.keep();
        }
        println!("cache directory: {}", dir.display());
    }
    Ok(code)
}

/// Forks the workers and waits for all of them; returns a line for each one
/// that did not exit with status 0.
fn run_workers(args: &Args, dir: &Path) -> Result<Vec<String>> {
    let mut children = Vec::new();
    for worker in 0..args.workers {
        // SAFETY: the parent is single-threaded here, and the child only
        // runs `worker` and exits.
        match unsafe { fork() }.context("fork")? {
            ForkResult::Child => {
                let code = match run_worker(args, dir, worker) {
                    Ok(()) => 0,
                    Err(error) => {
                        // One write, so that workers' lines do not interleave.
                        let line = format!(
                            "driver: worker {worker} (pid {}): {error:#}\n",
                            std::process::id()
                        );
                        eprint!("{line}");
                        EXIT_WORKER_FAILED
                    }
                };
                // exit() rather than returning: runs atexit handlers (a
                // preloaded shim's statistics) and never the parent's code.
                std::process::exit(code.into());
            }
            ForkResult::Parent { child } => children.push((worker, child)),
        }
    }
    let mut failures = Vec::new();
    for (worker, child) in children {
        if let Some(failure) = wait_for(worker, child)? {
            failures.push(failure);
        }
    }
    Ok(failures)
}

fn wait_for(worker: u32, child: Pid) -> Result<Option<String>> {
    loop {
        return Ok(
            match waitpid(child, None).with_context(|| format!("waiting for pid {child}"))? {
                WaitStatus::Exited(_, 0) => None,
                WaitStatus::Exited(_, code) => Some(format!(
                    "worker {worker} (pid {child}) exited with status {code}"
                )),
                WaitStatus::Signaled(_, signal, core) => Some(format!(
                    "worker {worker} (pid {child}) was killed by {signal}{}",
                    if core { " (core dumped)" } else { "" }
                )),
                _ => continue,
            },
        );
    }
}

/// One worker process: its own cache (a connection never crosses fork), and
/// `threads` threads incrementing every key once.
fn run_worker(args: &Args, dir: &Path, worker: u32) -> Result<()> {
    let cache = args.open(dir).context("opening the cache")?;
    std::thread::sleep(Duration::from_micros(args.stagger_us * u64::from(worker)));
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..args.threads)
            .map(|_| scope.spawn(|| increment_all(args, &cache)))
            .collect();
        // Join every thread before reporting the first error.
        let results: Vec<Result<()>> = threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a thread panicked")))
            })
            .collect();
        results.into_iter().collect::<Result<()>>()
    })
}

fn increment_all(args: &Args, cache: &FanoutCache) -> Result<()> {
    for key in 0..i64::from(args.keys) {
        match args.op {
            Op::Incr => {
                cache.incr(key, 1, Some(0))?;
            }
            Op::GetSet => {
                let current = match cache.get(key)? {
                    None => 0,
                    Some(Value::Int(i)) => i,
                    Some(other) => anyhow::bail!("key {key} holds {other:?}, not an integer"),
                };
                cache.set(key, current + 1)?;
            }
        }
    }
    Ok(())
}

/// Checks the counters, prints the summary line and returns the exit status.
fn report(args: &Args, cache: &FanoutCache, elapsed: Duration) -> Result<u8> {
    let expected = args.expected();
    let mut problems = Vec::new();
    let mut keys = cache.iter()?.peekable();
    for key in 0..i64::from(args.keys) {
        match keys.next_if_eq(&Key::Int(key)) {
            None => problems.push(format!("key {key} missing")),
            Some(key) => match cache.get(key.clone())? {
                Some(Value::Int(value)) if value == expected => {}
                Some(Value::Int(value)) => {
                    problems.push(format!("key {key} = {value}, expected {expected}"))
                }
                other => problems.push(format!("key {key} = {other:?}, expected {expected}")),
            },
        }
    }
    let unexpected = keys.count();
    if unexpected > 0 {
        problems.push(format!("{unexpected} unexpected keys"));
    }
    let shape = format!("{} workers x {} threads", args.workers, args.threads);
    let seconds = elapsed.as_secs_f64();
    if problems.is_empty() {
        println!(
            "PASS: {keys}/{keys} counters reached {expected} ({shape}) in {seconds:.2} s",
            keys = args.keys
        );
        return Ok(EXIT_PASS);
    }
    let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
    let more = problems.len().saturating_sub(shown.len());
    println!(
        "FAIL: {}/{} counters wrong ({shape}, --op {}) in {seconds:.2} s: {}{}",
        problems.len(),
        args.keys,
        args.op
            .to_possible_value()
            .expect("no skipped variants")
            .get_name(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    Ok(EXIT_RACE_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse_with_defaults() {
        let args = Args::try_parse_from(["driver"]).unwrap();
        assert_eq!(
            (args.workers, args.threads, args.keys, args.shards),
            (8, 8, 100, 8)
        );
        assert_eq!(args.op, Op::Incr);
        assert_eq!(args.expected(), 64);
        let args = Args::try_parse_from(["driver", "--op", "get-set", "--workers", "2"]).unwrap();
        assert_eq!((args.op, args.expected()), (Op::GetSet, 16));
        assert!(Args::try_parse_from(["driver", "--workers", "0"]).is_err());
    }
}
