//! Forks worker processes whose threads increment shared counters in a
//! SQLite-backed `FanoutCache`, then checks that no increment was lost: the
//! python-diskcache delay-fuzzer experiment, as a program to run under
//! `LD_PRELOAD=libdelayshim.so`.

mod check;
mod journal;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cache::{CacheOptions, FanoutCache, Key, Value};
use clap::{Parser, ValueEnum};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::journal::Journal;

/// Exit status when every counter reached its expected value.
const EXIT_PASS: u8 = 0;
/// Exit status when the check found lost or extra increments.
const EXIT_RACE_FOUND: u8 = 1;
/// Exit status for a usage error (as clap's own).
const EXIT_USAGE: u8 = 2;
/// Exit status when a worker failed or crashed.
const EXIT_WORKER_FAILED: u8 = 3;
/// Exit status when a shard fails `PRAGMA integrity_check` (or cannot be
/// opened to run it) after a `--tolerate-errors` run.
const EXIT_CORRUPT: u8 = 4;

/// Longest accepted `--lock-timeout`: longer is "forever" in practice, and
/// any deadline computed from it stays far from `Duration`'s limit.
const MAX_LOCK_TIMEOUT_S: f64 = 1e9;

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
/// With --tolerate-errors (for injected faults and kills), a failed
/// increment is logged and the thread goes on; afterwards every shard must
/// pass PRAGMA integrity_check and every key must lie between the
/// increments that returned success and those attempted.
///
/// Exit status: 0 every counter is right; 1 some counter is wrong (a race
/// was found, or with --tolerate-errors a counter is out of its bounds);
/// 2 usage error; 3 a worker failed or crashed (a worker killed by SIGKILL
/// is no failure with --tolerate-errors); 4 with --tolerate-errors, a shard
/// fails PRAGMA integrity_check.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Cache directory, new or empty (default: a fresh temporary directory,
    /// removed afterwards). A directory holding an old cache is refused:
    /// its counts would look like a race.
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
    /// race target. At most 10000000 (10 s).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(..=10_000_000))]
    stagger_us: u64,
    /// Seconds (0 to 1e9) an operation waits for a locked database before
    /// it fails.
    #[arg(long, default_value = "60", value_name = "SECONDS", allow_negative_numbers = true, value_parser = parse_lock_timeout)]
    lock_timeout: Duration,
    /// Count failed operations instead of failing: each thread calls an
    /// increment of a key up to ATTEMPTS times until one returns success,
    /// and logs every call and its outcome in DIR/journal/ (kept across a
    /// SIGKILL). The check then runs without the shim: every shard must
    /// pass PRAGMA integrity_check and every counter must lie between its
    /// confirmed and attempted increments.
    #[arg(long)]
    tolerate_errors: bool,
    /// With --tolerate-errors: calls per key and thread before the thread
    /// gives up on the key (opening the cache is tried as often).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    attempts: u32,
    /// With --tolerate-errors: run no workers, only check the journals and
    /// shards a --tolerate-errors run left in --dir (a kept or killed run).
    #[arg(long, requires = "tolerate_errors", requires = "dir")]
    check_only: bool,
    /// Remove --dir after --check-only (the driver's own temporary directory).
    #[arg(long, hide = true, requires = "check_only")]
    remove_dir: bool,
}

fn parse_lock_timeout(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.0..=MAX_LOCK_TIMEOUT_S).contains(&seconds) => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(format!(
            "expected a number of seconds from 0 to {MAX_LOCK_TIMEOUT_S:e}"
        )),
    }
}

impl Args {
    fn expected(&self) -> i64 {
        i64::from(self.workers) * i64::from(self.threads)
    }

    fn open(&self, dir: &Path) -> cache::Result<FanoutCache> {
        let options = CacheOptions::default().timeout(self.lock_timeout);
        FanoutCache::open_with(dir, self.shards as usize, options)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let (Some(dir), false) = (&args.dir, args.check_only) {
        if let Err(message) = check_dir_is_fresh(dir) {
            eprintln!("driver: error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let result = if args.check_only {
        check::run(&args)
    } else if args.tolerate_errors {
        run_tolerating_errors(&args)
    } else {
        run(&args)
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // Not eprintln: a write fault injected into stderr must not
            // turn an error into a panic.
            let _ = writeln!(std::io::stderr(), "driver: error: {error:#}");
            ExitCode::from(EXIT_WORKER_FAILED)
        }
    }
}

/// A run starts from an empty cache: `dir` must be new or empty. An old
/// cache's counts would show as lost or extra increments, and clearing a
/// directory the user named could destroy something else.
fn check_dir_is_fresh(dir: &Path) -> Result<(), String> {
    // Missing, empty or unreadable: the workers create it or report why not.
    let holds_something = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if holds_something {
        return Err(format!(
            "--dir {} is not empty (an old cache's counts would look like a race): \
             give a new or empty directory",
            dir.display()
        ));
    }
    Ok(())
}

/// The cache directory: `--dir`, or a new temporary directory.
fn cache_dir(args: &Args) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    Ok(match &args.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new().prefix("driver-").tempdir()?;
            (temp.path().to_owned(), Some(temp))
        }
    })
}

fn run(args: &Args) -> Result<u8> {
    let (dir, temp) = cache_dir(args)?;
    let start = Instant::now();
    let failures: Vec<String> = run_workers(args, &dir, run_worker)?
        .into_iter()
        .filter_map(|(worker, child, status)| failure(worker, child, status))
        .collect();
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

/// The name workers give themselves (`/proc/PID/comm`), so that they can
/// be told from the driver and its checker.
const WORKER_NAME: &std::ffi::CStr = c"driver-worker";

/// Exit status of a worker that panicked.
const EXIT_WORKER_PANICKED: u8 = 101;

/// Forks the workers, each running `body`, and waits for all of them;
/// returns how each ended.
fn run_workers(
    args: &Args,
    dir: &Path,
    body: fn(&Args, &Path, u32) -> Result<()>,
) -> Result<Vec<(u32, Pid, WaitStatus)>> {
    let mut children = Vec::new();
    for worker in 0..args.workers {
        // SAFETY: the parent is single-threaded here, and the child only
        // runs `worker` and exits.
        match unsafe { fork() }.context("fork")? {
            ForkResult::Child => {
                // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
                unsafe { libc::prctl(libc::PR_SET_NAME, WORKER_NAME.as_ptr()) };
                // A panic must end the worker here, never unwind into the
                // parent's frames (which would remove its temporary directory).
                let result = std::panic::catch_unwind(|| body(args, dir, worker));
                let code = match result {
                    Ok(Ok(())) => 0,
                    Ok(Err(error)) => {
                        // One write, so that workers' lines do not interleave,
                        // and no panic if stderr fails.
                        let line = format!(
                            "driver: worker {worker} (pid {}): {error:#}\n",
                            std::process::id()
                        );
                        let _ = std::io::stderr().write_all(line.as_bytes());
                        EXIT_WORKER_FAILED
                    }
                    Err(_) => EXIT_WORKER_PANICKED,
                };
                // exit() rather than returning: runs atexit handlers (a
                // preloaded shim's statistics) and never the parent's code.
                std::process::exit(code.into());
            }
            ForkResult::Parent { child } => children.push((worker, child)),
        }
    }
    children
        .into_iter()
        .map(|(worker, child)| Ok((worker, child, wait_for(child)?)))
        .collect()
}

/// Waits until `child` has exited or been killed.
fn wait_for(child: Pid) -> Result<WaitStatus> {
    loop {
        match waitpid(child, None).with_context(|| format!("waiting for pid {child}"))? {
            status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok(status),
            _ => continue,
        }
    }
}

/// A line saying how a worker failed, or `None` if it exited with status 0.
fn failure(worker: u32, child: Pid, status: WaitStatus) -> Option<String> {
    match status {
        WaitStatus::Exited(_, 0) => None,
        WaitStatus::Exited(_, code) => Some(format!(
            "worker {worker} (pid {child}) exited with status {code}"
        )),
        WaitStatus::Signaled(_, signal, core) => Some(format!(
            "worker {worker} (pid {child}) was killed by {signal}{}",
            if core { " (core dumped)" } else { "" }
        )),
        _ => Some(format!("worker {worker} (pid {child}): {status:?}")),
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
        increment(args.op, cache, key)?;
    }
    Ok(())
}

/// Adds one to `key`'s counter as `op` says.
fn increment(op: Op, cache: &FanoutCache, key: i64) -> cache::Result<()> {
    match op {
        Op::Incr => {
            cache.incr(key, 1, Some(0))?;
        }
        Op::GetSet => {
            let current = match cache.get(key)? {
                None => 0,
                Some(Value::Int(i)) => i,
                Some(_) => return Err(cache::Error::NotAnInteger(Key::Int(key))),
            };
            cache.set(key, current + 1)?;
        }
    }
    Ok(())
}

/// `--tolerate-errors`: the workers log what they try; then a checker
/// process, started without the shim, judges the journals and the shards.
fn run_tolerating_errors(args: &Args) -> Result<u8> {
    let (dir, temp) = cache_dir(args)?;
    let journals = dir.join(journal::DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    journal::create_dir(&journals).with_context(|| format!("creating {}", journals.display()))?;
    Journal::create(&journals.join(journal::RUN_FILE))?.append(&format!(
        "keys={} shards={} workers={} threads={} attempts={} op={}\n",
        args.keys,
        args.shards,
        args.workers,
        args.threads,
        args.attempts,
        op_name(args.op)
    ))?;
    let start = Instant::now();
    let ends = run_workers(args, &dir, run_tolerant_worker)?;
    let outcomes = Journal::create(&journals.join(journal::OUTCOMES_FILE))?;
    for (worker, child, status) in ends {
        let how = match status {
            WaitStatus::Exited(_, code) => format!("exited {code}"),
            WaitStatus::Signaled(_, signal, _) => format!("killed {}", signal as i32),
            _ => unreachable!("wait_for returns exits and kills only"),
        };
        outcomes.append(&format!("worker {worker} {child} {how}\n"))?;
    }
    outcomes.append(&format!("elapsed {:.3}\n", start.elapsed().as_secs_f64()))?;
    // The checker runs without the shim: it judges the faults injected
    // into the workers, and takes none itself.
    let mut checker = std::process::Command::new(
        std::env::current_exe().context("finding the driver's own executable")?,
    );
    checker
        .env_remove("LD_PRELOAD")
        .args(["--tolerate-errors", "--check-only", "--dir"])
        .arg(&dir)
        .arg("--lock-timeout")
        .arg(args.lock_timeout.as_secs_f64().to_string());
    if args.keep {
        checker.arg("--keep");
    }
    if let Some(temp) = temp {
        // The unshimmed checker removes it: an unlink failing on an
        // injected fault here would leave it behind.
        let _ = temp.keep();
        if !args.keep {
            checker.arg("--remove-dir");
        }
    }
    let status = checker.status().context("running the checker")?;
    match status.code() {
        Some(code) => Ok(u8::try_from(code).unwrap_or(EXIT_WORKER_FAILED)),
        None => anyhow::bail!("the checker {status}"),
    }
}

/// One worker of `--tolerate-errors`: every call and its outcome goes to
/// the journal; errors of the cache are counted, not returned.
fn run_tolerant_worker(args: &Args, dir: &Path, worker: u32) -> Result<()> {
    let journals = dir.join(journal::DIR);
    let opening = Journal::create(&journals.join(worker.to_string()))?;
    let mut cache = None;
    for _ in 0..args.attempts {
        match args.open(dir) {
            Ok(opened) => {
                cache = Some(opened);
                break;
            }
            Err(error) => opening.append(&format!("o {}\n", error_class(&error)))?,
        }
    }
    let Some(cache) = cache else {
        return Ok(());
    };
    std::thread::sleep(Duration::from_micros(args.stagger_us * u64::from(worker)));
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..args.threads)
            .map(|thread| {
                let journal = journals.join(format!("{worker}.{thread}"));
                let cache = &cache;
                scope.spawn(move || increment_tolerantly(args, cache, &Journal::create(&journal)?))
            })
            .collect();
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

fn increment_tolerantly(args: &Args, cache: &FanoutCache, journal: &Journal) -> Result<()> {
    for key in 0..i64::from(args.keys) {
        for _ in 0..args.attempts {
            journal.append(&format!("a {key}\n"))?;
            match increment(args.op, cache, key) {
                Ok(()) => {
                    journal.append(&format!("c {key}\n"))?;
                    break;
                }
                Err(error) => journal.append(&format!("f {key} {}\n", error_class(&error)))?,
            }
        }
    }
    Ok(())
}

/// A one-word name for the kind of a cache error, for the journal.
fn error_class(error: &cache::Error) -> String {
    let code = match error {
        cache::Error::Timeout { .. } => return "timeout".to_owned(),
        cache::Error::Io { source, .. } => return format!("io:{:?}", source.kind()),
        cache::Error::Sqlite {
            source: rusqlite::Error::SqliteFailure(failure, _),
            ..
        } => failure.extended_code,
        cache::Error::Sqlite { .. } => return "sqlite".to_owned(),
        cache::Error::NotAnInteger(_) => return "not-an-integer".to_owned(),
        _ => return "other".to_owned(),
    };
    sqlite_code_name(code)
}

/// SQLite's name for a result code, as `SQLITE_IOERR_WRITE`: an
/// extended code without a name here is its primary name and its number.
fn sqlite_code_name(code: i32) -> String {
    use rusqlite::ffi;
    let name = match code {
        ffi::SQLITE_IOERR => "IOERR",
        ffi::SQLITE_IOERR_READ => "IOERR_READ",
        ffi::SQLITE_IOERR_SHORT_READ => "IOERR_SHORT_READ",
        ffi::SQLITE_IOERR_WRITE => "IOERR_WRITE",
        ffi::SQLITE_IOERR_FSYNC => "IOERR_FSYNC",
        ffi::SQLITE_IOERR_DIR_FSYNC => "IOERR_DIR_FSYNC",
        ffi::SQLITE_IOERR_TRUNCATE => "IOERR_TRUNCATE",
        ffi::SQLITE_IOERR_FSTAT => "IOERR_FSTAT",
        ffi::SQLITE_IOERR_UNLOCK => "IOERR_UNLOCK",
        ffi::SQLITE_IOERR_RDLOCK => "IOERR_RDLOCK",
        ffi::SQLITE_IOERR_LOCK => "IOERR_LOCK",
        ffi::SQLITE_IOERR_CLOSE => "IOERR_CLOSE",
        ffi::SQLITE_IOERR_DELETE => "IOERR_DELETE",
        ffi::SQLITE_IOERR_SHMOPEN => "IOERR_SHMOPEN",
        ffi::SQLITE_IOERR_SHMSIZE => "IOERR_SHMSIZE",
        ffi::SQLITE_IOERR_SHMLOCK => "IOERR_SHMLOCK",
        ffi::SQLITE_IOERR_SHMMAP => "IOERR_SHMMAP",
        ffi::SQLITE_IOERR_SEEK => "IOERR_SEEK",
        ffi::SQLITE_IOERR_CORRUPTFS => "IOERR_CORRUPTFS",
        ffi::SQLITE_READONLY => "READONLY",
        ffi::SQLITE_FULL => "FULL",
        ffi::SQLITE_CANTOPEN => "CANTOPEN",
        ffi::SQLITE_BUSY => "BUSY",
        ffi::SQLITE_PROTOCOL => "PROTOCOL",
        ffi::SQLITE_CORRUPT => "CORRUPT",
        ffi::SQLITE_NOTADB => "NOTADB",
        code if code > 0xff => return format!("{}/{code}", sqlite_code_name(code & 0xff)),
        code => return format!("SQLITE_{code}"),
    };
    format!("SQLITE_{name}")
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Incr => "incr",
        Op::GetSet => "get-set",
    }
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
        op_name(args.op),
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
    fn sqlite_codes_have_their_names() {
        use rusqlite::ffi;
        assert_eq!(
            sqlite_code_name(ffi::SQLITE_IOERR_WRITE),
            "SQLITE_IOERR_WRITE"
        );
        assert_eq!(sqlite_code_name(ffi::SQLITE_FULL), "SQLITE_FULL");
        assert_eq!(
            sqlite_code_name(ffi::SQLITE_READONLY_CANTINIT),
            "SQLITE_READONLY/1288"
        );
        assert_eq!(sqlite_code_name(ffi::SQLITE_AUTH), "SQLITE_23");
    }

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
