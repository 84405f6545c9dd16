//! A counter kept the safe way against crashes (write a temporary file,
//! rename it over the counter) but not against other processes: each
//! process reads the counter, appends its journal lines, then writes the
//! counter plus one. No lock at all. The second process starts 50 ms
//! after the first, which natively has long finished by then; only a
//! delay on most of the first process's ~20 writes, creates and renames
//! that adds up to 50 ms holds its window open: blanket delays of a few
//! milliseconds each. Sampled or sparse delays, or delays of 1 ms, rarely
//! add up to that; there is no lock to hold open.
//!
//! Exits 1 when an increment was lost.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use delayshim_targets::fileio::{append_line, pause_us, read_file, rename, Fd};
use delayshim_targets::{exit_status, run_workers, EXIT_BUG_FOUND, EXIT_NO_BUG};

/// Processes each add one to a counter file (read, journal, write a
/// temporary file, rename); exits 1 if an increment was lost.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[arg(long, default_value_t = 2)]
    processes: u32,
    /// Journal lines each process appends between its read and its write
    /// (each an open with O_CREAT and a write).
    #[arg(long, default_value_t = 16)]
    journal: u32,
    /// Microseconds between the processes' starts.
    #[arg(long, default_value_t = 100_000)]
    stagger_us: u64,
}

fn read_counter(path: &Path) -> Result<u64> {
    let text = String::from_utf8(read_file(path)?).context("the counter is not text")?;
    text.trim().parse().context("parsing the counter")
}

fn increment(dir: &Path, worker: u32, args: &Args) -> Result<()> {
    pause_us(args.stagger_us * u64::from(worker));
    let counter = dir.join("counter");
    let value = read_counter(&counter)?;
    for line in 0..args.journal {
        append_line(
            &dir.join("journal"),
            &format!("worker {worker} line {line} saw {value}"),
        )?;
    }
    let temp = dir.join(format!("counter.tmp{worker}"));
    let fd = Fd::open(&temp, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644)?;
    fd.write_all(format!("{}\n", value + 1).as_bytes())?;
    drop(fd);
    rename(&temp, &counter).context("renaming the temporary file over the counter")
}

fn run(args: &Args) -> Result<u8> {
    let dir = tempfile::Builder::new().prefix("slow-window-").tempdir()?;
    std::fs::write(dir.path().join("counter"), "0\n")?;
    run_workers(args.processes, |worker| increment(dir.path(), worker, args))?;
    let value = read_counter(&dir.path().join("counter"))?;
    if value == u64::from(args.processes) {
        println!("PASS: counter {value}");
        return Ok(EXIT_NO_BUG);
    }
    println!(
        "FAIL: lost update: counter {value}, expected {}",
        args.processes
    );
    Ok(EXIT_BUG_FOUND)
}

fn main() -> ExitCode {
    exit_status("slow-window", run(&Args::parse()))
}
