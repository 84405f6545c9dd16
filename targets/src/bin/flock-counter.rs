//! A rare bug among much correct traffic: processes keep counters in one
//! file, one 8-byte slot each, and append records to journals of their
//! own. Every increment takes flock(LOCK_EX), reads the slot, writes it
//! back plus one and unlocks: correct, except on one path in RACY_EVERY
//! (a "slow path" that drops the lock while it works), which unlocks
//! between the read and the write. Another process that increments the
//! same slot in that gap has its increment overwritten.
//!
//! A run makes thousands of intercepted calls (writes, flocks, preads,
//! pwrites) of which a handful are the bug's; which slot each increment
//! goes to comes from a fixed seed per process.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use delayshim_targets::fileio::{pause_us, Fd, SplitMix};
use delayshim_targets::{exit_status, run_workers, EXIT_BUG_FOUND, EXIT_NO_BUG};

/// Processes increment counters in a file under flock(), one path in
/// RACY_EVERY unlocking between read and write; exits 1 if an increment
/// was lost.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[arg(long, default_value_t = 2)]
    processes: u32,
    /// Increments per process.
    #[arg(long, default_value_t = 300)]
    increments: u32,
    /// Counters in the file; each increment picks one.
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Journal records each process writes before each increment.
    #[arg(long, default_value_t = 8)]
    records: u32,
    /// One increment in this many takes the racy path.
    #[arg(long, default_value_t = 100)]
    racy_every: u32,
    /// Microseconds between the processes' starts.
    #[arg(long, default_value_t = 0)]
    stagger_us: u64,
    /// Microseconds to sleep in the racy path's gap: holds the race
    /// window open without any fuzzer.
    #[arg(long, default_value_t = 0)]
    window_us: u64,
}

fn offset(slot: u64) -> u64 {
    slot * 8
}

/// The correct increment: read and write under one lock.
fn increment(counters: &Fd, slot: u64) -> Result<()> {
    counters.flock(libc::LOCK_EX)?;
    let value = counters.pread_u64(offset(slot))?;
    counters.pwrite_u64(offset(slot), value + 1)?;
    counters.flock(libc::LOCK_UN)?;
    Ok(())
}

/// The slow path: unlocks while it "works", then locks again and writes
/// the value it read before. Its flock calls are call sites of their own.
#[inline(never)]
fn increment_slow_path(counters: &Fd, slot: u64, window_us: u64) -> Result<()> {
    let fd = counters.0;
    // SAFETY: plain integers.
    if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("flock");
    }
    let value = counters.pread_u64(offset(slot))?;
    // The bug: the lock is dropped between the read and the write.
    // SAFETY: plain integers.
    if unsafe { libc::flock(fd, libc::LOCK_UN) } != 0 {
        return Err(std::io::Error::last_os_error()).context("flock");
    }
    pause_us(window_us);
    // SAFETY: plain integers.
    if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("flock");
    }
    counters.pwrite_u64(offset(slot), value + 1)?;
    counters.flock(libc::LOCK_UN)?;
    Ok(())
}

fn work(dir: &Path, worker: u32, args: &Args) -> Result<()> {
    let counters = Fd::open(&dir.join("counters"), libc::O_RDWR, 0)?;
    let journal = Fd::open(
        &dir.join(format!("journal{worker}")),
        libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
        0o644,
    )?;
    let mut rng = SplitMix(0x5eed_0000 + u64::from(worker));
    let mut made = vec![0u64; args.slots as usize];
    // Each process's slow paths fall at different points of its run.
    let phase = (worker * 37 + 11) % args.racy_every;
    pause_us(args.stagger_us * u64::from(worker));
    for i in 0..args.increments {
        for record in 0..args.records {
            journal.write_all(format!("{worker} {i} {record}\n").as_bytes())?;
        }
        let slot = rng.below(u64::from(args.slots));
        if i % args.racy_every == phase {
            increment_slow_path(&counters, slot, args.window_us)?;
        } else {
            increment(&counters, slot)?;
        }
        made[slot as usize] += 1;
    }
    let tally: Vec<String> = made.iter().map(u64::to_string).collect();
    std::fs::write(dir.join(format!("made{worker}")), tally.join(" "))?;
    Ok(())
}

fn run(args: &Args) -> Result<u8> {
    anyhow::ensure!(
        args.slots > 0 && args.racy_every > 0,
        "--slots and --racy-every must be positive"
    );
    let dir = tempfile::Builder::new()
        .prefix("flock-counter-")
        .tempdir()?;
    std::fs::write(
        dir.path().join("counters"),
        vec![0u8; 8 * args.slots as usize],
    )?;
    run_workers(args.processes, |worker| work(dir.path(), worker, args))?;
    let mut expected = vec![0u64; args.slots as usize];
    for worker in 0..args.processes {
        let text = std::fs::read_to_string(dir.path().join(format!("made{worker}")))?;
        for (slot, n) in text.split_whitespace().enumerate() {
            expected[slot] += n.parse::<u64>().context("tally")?;
        }
    }
    let counters = Fd::open(&dir.path().join("counters"), libc::O_RDONLY, 0)?;
    let mut lost = Vec::new();
    for (slot, want) in expected.iter().enumerate() {
        let got = counters.pread_u64(offset(slot as u64))?;
        if got != *want {
            lost.push(format!("slot {slot} = {got}, expected {want}"));
        }
    }
    if lost.is_empty() {
        println!(
            "PASS: {} increments by {} processes, none lost",
            expected.iter().sum::<u64>(),
            args.processes
        );
        return Ok(EXIT_NO_BUG);
    }
    println!("FAIL: lost increments: {}", lost.join(", "));
    Ok(EXIT_BUG_FOUND)
}

fn main() -> ExitCode {
    exit_status("flock-counter", run(&Args::parse()))
}
