//! A JSON document store saved the safe way, write a temporary file and
//! rename it over the store, under an flock()ed lock file; but each save
//! reads the store under the lock, RELEASES it, and locks again to write.
//! A process that saves in that gap has its update overwritten: a lost
//! update, seen at the end as a missing key.
//!
//! Every step is a libc call the shim can delay: open, read, close, flock,
//! write, fsync, rename. Process i starts `i x STAGGER_US` after process 0,
//! which without help has long saved by then.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use delayshim_targets::fileio::{pause_us, read_file, rename, Fd};
use delayshim_targets::{exit_status, run_workers, EXIT_BUG_FOUND, EXIT_NO_BUG};
use serde_json::{Map, Value};

/// Processes each add keys to a JSON store, reading it and writing it
/// under two separate flock()s; exits 1 if a key was lost.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[arg(long, default_value_t = 2)]
    processes: u32,
    /// Saves per process, one new key each.
    #[arg(long, default_value_t = 2)]
    saves: u32,
    /// Microseconds between the processes' starts.
    #[arg(long, default_value_t = 2000)]
    stagger_us: u64,
    /// Microseconds to sleep between the read's unlock and the write's
    /// lock: holds the race window open without any fuzzer.
    #[arg(long, default_value_t = 0)]
    window_us: u64,
}

struct Store {
    path: PathBuf,
    lock: PathBuf,
}

impl Store {
    fn load(&self) -> Result<Map<String, Value>> {
        let bytes =
            read_file(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        match serde_json::from_slice(&bytes).context("parsing the store")? {
            Value::Object(map) => Ok(map),
            other => bail!("the store is not an object: {other}"),
        }
    }

    /// Writes `map` to a temporary file of this process's own, flushes it
    /// and renames it over the store: readers never see half a document.
    fn save(&self, map: &Map<String, Value>, worker: u32) -> Result<()> {
        let temp = self.path.with_extension(format!("json.tmp{worker}"));
        let fd = Fd::open(&temp, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644)?;
        fd.write_all(&serde_json::to_vec_pretty(map)?)?;
        fd.fsync()?;
        drop(fd);
        rename(&temp, &self.path).context("renaming the temporary file over the store")
    }
}

/// The write half of a save, under its own lock: the lock taken here is a
/// call site of its own.
#[inline(never)]
fn relock_and_save(store: &Store, lock: &Fd, map: &Map<String, Value>, worker: u32) -> Result<()> {
    lock.flock(libc::LOCK_EX)?;
    store.save(map, worker)?;
    lock.flock(libc::LOCK_UN)?;
    Ok(())
}

fn add_keys(store: &Store, worker: u32, args: &Args) -> Result<()> {
    let lock = Fd::open(&store.lock, libc::O_RDWR | libc::O_CREAT, 0o644)?;
    pause_us(args.stagger_us * u64::from(worker));
    for save in 0..args.saves {
        lock.flock(libc::LOCK_EX)?;
        let mut map = store.load()?;
        // The bug: the lock is dropped between the read and the write.
        lock.flock(libc::LOCK_UN)?;
        map.insert(format!("worker{worker}-save{save}"), Value::from(save));
        pause_us(args.window_us);
        relock_and_save(store, &lock, &map, worker)?;
    }
    Ok(())
}

fn run(args: &Args) -> Result<u8> {
    let dir = tempfile::Builder::new().prefix("json-store-").tempdir()?;
    let store = Store {
        path: dir.path().join("store.json"),
        lock: dir.path().join("store.lock"),
    };
    store.save(&Map::new(), u32::MAX)?;
    run_workers(args.processes, |worker| add_keys(&store, worker, args))?;
    let map = store.load()?;
    let missing: Vec<String> = (0..args.processes)
        .flat_map(|w| (0..args.saves).map(move |s| format!("worker{w}-save{s}")))
        .filter(|key| !map.contains_key(key))
        .collect();
    if missing.is_empty() {
        println!("PASS: all {} keys in the store", map.len());
        return Ok(EXIT_NO_BUG);
    }
    println!(
        "FAIL: lost update: {} missing from the store ({} keys kept)",
        missing.join(", "),
        map.len()
    );
    Ok(EXIT_BUG_FOUND)
}

fn main() -> ExitCode {
    exit_status("json-store", run(&Args::parse()))
}
