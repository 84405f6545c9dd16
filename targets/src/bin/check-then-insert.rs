//! Check-then-insert over SQLite: every process registers keys 0..KEYS-1
//! with "if it is absent, insert it" done as a read and a separate write.
//! Two processes can both see a key absent and both insert it; the table
//! has no unique constraint, so the bug shows as a duplicate row.
//!
//! Process i starts `i x STAGGER_US` after process 0, as requests for the
//! same keys that arrive a little apart: without help the first process
//! has long registered a key when the next one looks, so the duplicate is
//! rare.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use delayshim_targets::{exit_status, run_workers, EXIT_BUG_FOUND, EXIT_NO_BUG};
use rusqlite::{Connection, OptionalExtension};

/// Processes register keys with a read, then a separate insert; exits 1
/// if a key was registered twice.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[arg(long, default_value_t = 2)]
    processes: u32,
    #[arg(long, default_value_t = 5)]
    keys: u32,
    /// Microseconds between the processes' starts.
    #[arg(long, default_value_t = 2000)]
    stagger_us: u64,
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // No fsync per commit (WAL): an insert's window is SQLite's, not the disk's.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn register_all(path: &Path, worker: u32, args: &Args) -> Result<()> {
    let conn = open(path)?;
    // The schema is read now, so the stagger measures from ready to ready.
    conn.query_row("SELECT COUNT(*) FROM users", [], |row| row.get::<_, i64>(0))?;
    std::thread::sleep(Duration::from_micros(args.stagger_us * u64::from(worker)));
    for key in 0..args.keys {
        let present: Option<i64> = conn
            .query_row("SELECT 1 FROM users WHERE name = ?", [key], |row| {
                row.get(0)
            })
            .optional()?;
        if present.is_none() {
            conn.execute(
                "INSERT INTO users (name, worker) VALUES (?, ?)",
                [key, worker],
            )?;
        }
    }
    Ok(())
}

fn run(args: &Args) -> Result<u8> {
    let dir = tempfile::Builder::new()
        .prefix("check-then-insert-")
        .tempdir()?;
    let path = dir.path().join("users.db");
    open(&path)?.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE users (name INTEGER NOT NULL, worker INTEGER NOT NULL);",
    )?;
    run_workers(args.processes, |worker| register_all(&path, worker, args))?;
    let conn = open(&path)?;
    let mut statement = conn.prepare(
        "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1 ORDER BY name",
    )?;
    let duplicates: Vec<(i64, i64)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let registered: i64 = conn.query_row("SELECT COUNT(DISTINCT name) FROM users", [], |row| {
        row.get(0)
    })?;
    if registered != i64::from(args.keys) {
        anyhow::bail!("{registered} keys registered, expected {}", args.keys);
    }
    if duplicates.is_empty() {
        println!(
            "PASS: {} keys registered once each by {} processes",
            args.keys, args.processes
        );
        return Ok(EXIT_NO_BUG);
    }
    let shown: Vec<String> = duplicates
        .iter()
        .map(|(key, n)| format!("key {key} x{n}"))
        .collect();
    println!("FAIL: registered twice: {}", shown.join(", "));
    Ok(EXIT_BUG_FOUND)
}

fn main() -> ExitCode {
    exit_status("check-then-insert", run(&Args::parse()))
}
