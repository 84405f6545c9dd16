//! The split critical section: each process increments a counter in a
//! file by locking it (fcntl F_SETLKW), reading the value with pread,
//! unlocking, locking again and writing value+1 with pwrite. Between the
//! two locks another process can read the same value: an update is lost.
//! No SQLite: plain file I/O and POSIX record locks.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use delayshim_targets::{exit_status, run_workers, EXIT_BUG_FOUND, EXIT_NO_BUG};

/// Processes increment a counter file with the read and the write under
/// two separate locks; exits 1 if an increment was lost.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[arg(long, default_value_t = 2)]
    processes: u32,
    #[arg(long, default_value_t = 1)]
    increments: u32,
    /// Microseconds between the processes' starts: process i starts
    /// i x STAGGER_US after process 0, which without help is done by then.
    #[arg(long, default_value_t = 1000)]
    stagger_us: u64,
}

fn set_lock(file: &File, lock_type: i32) -> Result<()> {
    // SAFETY: flock is plain old data.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = lock_type as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: a valid descriptor and flock.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &lock) } == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).context("fcntl(F_SETLKW)");
        }
    }
}

fn read_counter(file: &File) -> Result<u64> {
    let mut bytes = [0u8; 8];
    // SAFETY: a valid descriptor; `bytes` is writable for its length.
    let n = unsafe { libc::pread64(file.as_raw_fd(), bytes.as_mut_ptr().cast(), 8, 0) };
    if n != 8 {
        bail!("pread returned {n}: {}", std::io::Error::last_os_error());
    }
    Ok(u64::from_le_bytes(bytes))
}

fn write_counter(file: &File, value: u64) -> Result<()> {
    let bytes = value.to_le_bytes();
    // SAFETY: a valid descriptor and buffer.
    let n = unsafe { libc::pwrite64(file.as_raw_fd(), bytes.as_ptr().cast(), 8, 0) };
    if n != 8 {
        bail!("pwrite returned {n}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn increment(path: &Path, worker: u32, args: &Args) -> Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    std::thread::sleep(std::time::Duration::from_micros(
        args.stagger_us * u64::from(worker),
    ));
    for _ in 0..args.increments {
        set_lock(&file, libc::F_WRLCK)?;
        let value = read_counter(&file)?;
        set_lock(&file, libc::F_UNLCK)?;
        // The bug: the lock is dropped between the read and the write.
        set_lock(&file, libc::F_WRLCK)?;
        write_counter(&file, value + 1)?;
        set_lock(&file, libc::F_UNLCK)?;
    }
    Ok(())
}

fn run(args: &Args) -> Result<u8> {
    let dir = tempfile::Builder::new().prefix("lock-gap-").tempdir()?;
    let path = dir.path().join("counter");
    write_counter(&File::create(&path)?, 0)?;
    run_workers(args.processes, |worker| increment(&path, worker, args))?;
    let value = read_counter(&File::open(&path)?)?;
    let expected = u64::from(args.processes) * u64::from(args.increments);
    if value == expected {
        println!("PASS: counter = {value}");
        return Ok(EXIT_NO_BUG);
    }
    println!("FAIL: counter = {value}, expected {expected}");
    Ok(EXIT_BUG_FOUND)
}

fn main() -> ExitCode {
    exit_status("lock-gap", run(&Args::parse()))
}
