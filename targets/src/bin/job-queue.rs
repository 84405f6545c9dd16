//! A job queue in SQLite: worker processes claim jobs and record results.
//! A claim is one IMMEDIATE transaction that finds the oldest unclaimed
//! job in a queue and takes it: correct. But one claim in RACY_EVERY goes
//! through an old "batch" path that finds the job with a read of its own
//! and takes it in a later transaction, without checking it is still
//! unclaimed. A worker that claims the same job in between has it claimed
//! twice.
//!
//! A run makes thousands of intercepted calls (SQLite's pwrite, pread,
//! fcntl locks) of which the bug's are a handful; which queue each claim
//! looks in comes from a fixed seed per process.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use delayshim_targets::fileio::{pause_us, SplitMix};
use delayshim_targets::{exit_status, run_workers, EXIT_BUG_FOUND, EXIT_NO_BUG};
use rusqlite::{Connection, OptionalExtension};

/// Worker processes claim jobs from SQLite queues, one claim in
/// RACY_EVERY with a separate read and write; exits 1 if a job was
/// claimed twice.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[arg(long, default_value_t = 2)]
    processes: u32,
    #[arg(long, default_value_t = 200)]
    jobs: u32,
    /// Queues the jobs are spread over; each claim picks one.
    #[arg(long, default_value_t = 4)]
    queues: u32,
    /// Result rows a worker records per job, each its own transaction.
    #[arg(long, default_value_t = 3)]
    steps: u32,
    /// One claim in this many takes the racy path.
    #[arg(long, default_value_t = 100)]
    racy_every: u32,
    /// Microseconds between the processes' starts.
    #[arg(long, default_value_t = 0)]
    stagger_us: u64,
    /// Microseconds to sleep between the racy path's read and write:
    /// holds the race window open without any fuzzer.
    #[arg(long, default_value_t = 0)]
    window_us: u64,
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(60))?;
    // No fsync per commit (WAL): a claim's window is SQLite's, not the disk's.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// The oldest unclaimed job in `queue`, or in any queue if that one is
/// empty; `None` when every job is claimed.
fn oldest_unclaimed(conn: &Connection, queue: u64) -> Result<Option<i64>> {
    let in_queue = conn
        .prepare_cached(
            "SELECT id FROM jobs WHERE owner IS NULL AND queue = ? ORDER BY id LIMIT 1",
        )?
        .query_row([queue], |row| row.get(0))
        .optional()?;
    if in_queue.is_some() {
        return Ok(in_queue);
    }
    Ok(conn
        .prepare_cached("SELECT id FROM jobs WHERE owner IS NULL ORDER BY id LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?)
}

fn take(conn: &Connection, job: i64, worker: u32) -> Result<()> {
    conn.prepare_cached("UPDATE jobs SET owner = ? WHERE id = ?")?
        .execute(rusqlite::params![worker, job])?;
    conn.prepare_cached("INSERT INTO claims (job, worker) VALUES (?, ?)")?
        .execute(rusqlite::params![job, worker])?;
    Ok(())
}

/// The correct claim: find and take in one write transaction.
fn claim(conn: &mut Connection, queue: u64, worker: u32) -> Result<Option<i64>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let job = oldest_unclaimed(&tx, queue)?;
    if let Some(job) = job {
        take(&tx, job, worker)?;
    }
    tx.commit()?;
    Ok(job)
}

/// The batch path: finds the job in a read of its own, then takes it in
/// a later transaction without checking it is still unclaimed.
#[inline(never)]
fn claim_batch_path(
    conn: &mut Connection,
    queue: u64,
    worker: u32,
    window_us: u64,
) -> Result<Option<i64>> {
    let Some(job) = oldest_unclaimed(conn, queue)? else {
        return Ok(None);
    };
    pause_us(window_us);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    take(&tx, job, worker)?;
    tx.commit()?;
    Ok(Some(job))
}

fn work(path: &Path, worker: u32, args: &Args) -> Result<()> {
    let mut conn = open(path)?;
    // The schema is read now, so the stagger measures from ready to ready.
    conn.query_row("SELECT COUNT(*) FROM jobs", [], |row| row.get::<_, i64>(0))?;
    pause_us(args.stagger_us * u64::from(worker));
    let mut rng = SplitMix(0x0b5e_0000 + u64::from(worker));
    let phase = (worker * 37 + 11) % args.racy_every;
    for n in 0.. {
        let queue = rng.below(u64::from(args.queues));
        let job = if n % args.racy_every == phase {
            claim_batch_path(&mut conn, queue, worker, args.window_us)?
        } else {
            claim(&mut conn, queue, worker)?
        };
        let Some(job) = job else { break };
        for step in 0..args.steps {
            conn.prepare_cached("INSERT INTO results (job, worker, step) VALUES (?, ?, ?)")?
                .execute(rusqlite::params![job, worker, step])?;
        }
    }
    Ok(())
}

fn run(args: &Args) -> Result<u8> {
    anyhow::ensure!(
        args.queues > 0 && args.racy_every > 0,
        "--queues and --racy-every must be positive"
    );
    let dir = tempfile::Builder::new().prefix("job-queue-").tempdir()?;
    let path = dir.path().join("jobs.db");
    {
        let mut conn = open(&path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE jobs (id INTEGER PRIMARY KEY, queue INTEGER NOT NULL, owner INTEGER);
             CREATE INDEX jobs_queue ON jobs (queue, owner);
             CREATE TABLE claims (job INTEGER NOT NULL, worker INTEGER NOT NULL);
             CREATE TABLE results (job INTEGER NOT NULL, worker INTEGER NOT NULL, step INTEGER NOT NULL);",
        )?;
        let tx = conn.transaction()?;
        for id in 0..args.jobs {
            tx.execute(
                "INSERT INTO jobs (id, queue) VALUES (?, ?)",
                [id, id % args.queues],
            )?;
        }
        tx.commit()?;
    }
    run_workers(args.processes, |worker| work(&path, worker, args))?;
    let conn = open(&path)?;
    let unclaimed: i64 =
        conn.query_row("SELECT COUNT(*) FROM jobs WHERE owner IS NULL", [], |row| {
            row.get(0)
        })?;
    anyhow::ensure!(unclaimed == 0, "{unclaimed} jobs left unclaimed");
    let twice: Vec<String> = conn
        .prepare("SELECT job, group_concat(worker) FROM claims GROUP BY job HAVING COUNT(*) > 1 ORDER BY job")?
        .query_map([], |row| Ok(format!("job {} by workers {}", row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if twice.is_empty() {
        println!(
            "PASS: {} jobs claimed once each by {} processes",
            args.jobs, args.processes
        );
        return Ok(EXIT_NO_BUG);
    }
    println!("FAIL: claimed twice: {}", twice.join(", "));
    Ok(EXIT_BUG_FOUND)
}

fn main() -> ExitCode {
    exit_status("job-queue", run(&Args::parse()))
}
