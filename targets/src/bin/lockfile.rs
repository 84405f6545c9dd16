//! A lock-file protocol: a process holds the lock while the file it made
//! with `open(O_CREAT | O_EXCL)` exists; the file holds the holder's pid.
//! A lock whose holder is dead is stale, and is broken: unlinked, then
//! created anew. The bug is the classic one in breaking: "it is stale"
//! is checked, then the file is unlinked by name. If another process broke
//! the same stale lock and made its own in between, the unlink removes
//! the live lock, and two processes hold it at once.
//!
//! Each run starts with a stale lock (the pid of a process that has
//! exited). Breaking it is logged, then the lock is unlinked. Process i
//! starts `i x STAGGER_US` after process 0, which without help has broken
//! the stale lock and holds its own by then. Each
//! holder notes entering and leaving in a journal, and checks on release
//! that the lock file is still its own.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use delayshim_targets::fileio::{append_line, pause_us, read_file, unlink, Fd};
use delayshim_targets::{exit_status, run_workers, EXIT_BUG_FOUND, EXIT_NO_BUG};

/// Processes take a lock file, breaking it when stale; exits 1 if two
/// processes held it at once.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[arg(long, default_value_t = 2)]
    processes: u32,
    /// Times each process takes the lock.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Microseconds between the processes' starts.
    #[arg(long, default_value_t = 300)]
    stagger_us: u64,
    /// Lines a holder writes to the shared data file while it holds the lock.
    #[arg(long, default_value_t = 8)]
    work: u32,
    /// Microseconds to sleep between finding the lock stale and unlinking
    /// it: holds the race window open without any fuzzer.
    #[arg(long, default_value_t = 0)]
    window_us: u64,
    /// Microseconds a holder sleeps while it holds the lock.
    #[arg(long, default_value_t = 0)]
    hold_us: u64,
}

struct Paths {
    lock: PathBuf,
    journal: PathBuf,
    data: PathBuf,
    /// The processes' log, where breaking a stale lock is noted.
    log: PathBuf,
}

/// The pid in the lock file; `None` if the file is gone, or is empty or
/// half-written (its maker is between creating and writing it: alive).
fn holder(lock: &Path) -> Result<Option<i32>> {
    match read_file(lock) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).trim().parse().ok()),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).context("reading the lock file"),
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() != libc::ESRCH }
}

/// Breaks a lock found stale: unlinks it by name. Its own call site.
#[inline(never)]
fn break_stale_lock(lock: &Path, window_us: u64) -> Result<()> {
    pause_us(window_us);
    match unlink(lock) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).context("unlinking a stale lock"),
    }
}

fn acquire(paths: &Paths, me: i32, args: &Args) -> Result<()> {
    loop {
        match Fd::open(
            &paths.lock,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o644,
        ) {
            Ok(fd) => {
                fd.write_all(format!("{me}\n").as_bytes())?;
                return Ok(());
            }
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error).context("creating the lock file"),
        }
        match holder(&paths.lock)? {
            // The bug: between this check and the unlink, the stale lock
            // may have been broken and taken by someone else.
            Some(pid) if !alive(pid) => {
                append_line(
                    &paths.log,
                    &format!("pid {me}: breaking the stale lock of pid {pid}"),
                )?;
                break_stale_lock(&paths.lock, args.window_us)?;
            }
            _ => pause_us(50),
        }
    }
}

/// Releases the lock after checking it is still this process's own.
fn release(paths: &Paths, me: i32, worker: u32) -> Result<()> {
    let found = holder(&paths.lock)?;
    if found != Some(me) {
        let found = found.map_or("no lock".to_owned(), |pid| format!("pid {pid}'s lock"));
        append_line(&paths.journal, &format!("stolen {worker} {found}"))?;
    }
    // Removes whatever lock is there, as the protocol does.
    match unlink(&paths.lock) {
        Err(error) if error.kind() != ErrorKind::NotFound => {
            Err(error).context("releasing the lock")
        }
        _ => Ok(()),
    }
}

fn take_turns(paths: &Paths, worker: u32, args: &Args) -> Result<()> {
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    pause_us(args.stagger_us * u64::from(worker));
    for _ in 0..args.rounds {
        acquire(paths, me, args)?;
        append_line(&paths.journal, &format!("enter {worker}"))?;
        for line in 0..args.work {
            append_line(&paths.data, &format!("worker {worker} line {line}"))?;
        }
        pause_us(args.hold_us);
        append_line(&paths.journal, &format!("leave {worker}"))?;
        release(paths, me, worker)?;
    }
    Ok(())
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> Result<i32> {
    let child = std::process::Command::new("true")
        .spawn()
        .context("running true")?;
    let pid = child.id() as i32;
    child.wait_with_output()?;
    Ok(pid)
}

/// Problems the journal shows: a holder entering while another is inside,
/// or a lock stolen from its holder.
fn check(journal: &str) -> Result<Vec<String>> {
    let mut inside: Vec<u32> = Vec::new();
    let mut problems = Vec::new();
    for line in journal.lines() {
        let mut words = line.split_whitespace();
        let (Some(event), Some(worker)) = (words.next(), words.next()) else {
            bail!("bad journal line {line:?}");
        };
        let worker: u32 = worker.parse().context("journal worker")?;
        match event {
            "enter" => {
                if !inside.is_empty() {
                    problems.push(format!(
                        "worker {worker} entered while worker {inside:?} held the lock"
                    ));
                }
                inside.push(worker);
            }
            "leave" => inside.retain(|&w| w != worker),
            "stolen" => problems.push(format!(
                "worker {worker} found {} on release",
                words.collect::<Vec<_>>().join(" ")
            )),
            _ => bail!("bad journal line {line:?}"),
        }
    }
    Ok(problems)
}

fn run(args: &Args) -> Result<u8> {
    let dir = tempfile::Builder::new().prefix("lockfile-").tempdir()?;
    let paths = Paths {
        lock: dir.path().join("app.lock"),
        journal: dir.path().join("journal"),
        data: dir.path().join("data"),
        log: dir.path().join("log"),
    };
    let stale = dead_pid()?;
    std::fs::write(&paths.lock, format!("{stale}\n"))?;
    std::fs::write(&paths.journal, "")?;
    run_workers(args.processes, |worker| take_turns(&paths, worker, args))?;
    let problems = check(&std::fs::read_to_string(&paths.journal)?)?;
    if problems.is_empty() {
        println!(
            "PASS: {} processes x {} rounds held the lock one at a time",
            args.processes, args.rounds
        );
        return Ok(EXIT_NO_BUG);
    }
    println!("FAIL: two holders at once: {}", problems.join("; "));
    Ok(EXIT_BUG_FOUND)
}

fn main() -> ExitCode {
    exit_status("lockfile", run(&Args::parse()))
}
