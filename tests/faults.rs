//! The cache under injected faults (`DELAYSHIM_FAULTS`): every operation
//! returns an error or succeeds, and the driver's `--tolerate-errors`
//! check finds every shard sound and every counter between its confirmed
//! and attempted increments.

use std::path::Path;
use std::time::Duration;

use crate::util::{assert_exit, driver, figure, read_stats, run, tempdir, text, under_shim};

const LIMIT: Duration = Duration::from_secs(180);

/// Faults the shim injected, over all processes that wrote statistics.
fn faults_injected(stats: &Path) -> u64 {
    read_stats(stats)
        .iter()
        .filter_map(|process| process.get("faults")?.as_object().cloned())
        .flat_map(|faults| faults.into_iter().filter_map(|(_, n)| n.as_u64()))
        .sum()
}

/// Runs a 4x4x50 `--tolerate-errors` driver under `rules`; returns its
/// summary line once the driver has passed its own check.
fn driver_under_faults(rules: &str, seed: &str) -> (String, u64) {
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let out = run(
        under_shim(
            driver(),
            &[
                ("DELAYSHIM_FAULTS", rules),
                ("DELAYSHIM_SEED", seed),
                ("DELAYSHIM_MEAN_US", "20"),
                ("DELAYSHIM_STATS", stats.to_str().unwrap()),
            ],
        )
        .args(["--tolerate-errors", "--workers", "4", "--threads", "4"])
        .args(["--keys", "50", "--lock-timeout", "1", "--dir"])
        .arg(dir.path().join("cache")),
        LIMIT,
    );
    assert_exit(&out, 0);
    let summary = text(&out.stdout);
    assert!(
        summary.starts_with("PASS: 50/50 counters within bounds"),
        "{summary}"
    );
    assert!(
        summary.contains("8/8 shards pass integrity_check"),
        "{summary}"
    );
    (summary, faults_injected(&stats))
}

#[test]
fn eio_enospc_eintr_and_short_writes_give_errors_never_corruption() {
    // Every kind on the calls SQLite makes; rates give tens of faults per
    // run. An EINTR on fcntl is rare here: one that fails an unlock leaves
    // the lock held (SQLite never retries a release), and every process
    // waits for it until the holder's connections fail and reconnect.
    let rules = "pwrite:EIO:0.01,pwrite:ENOSPC:0.01,pwrite:short:0.05,pwrite:EINTR:0.02,\
                 pread:EIO:0.005,pread:EINTR:0.02,fsync:EIO:0.05,fcntl:EINTR:0.001,\
                 write:short:0.05,open:EMFILE:0.01,truncate:EIO:0.05";
    let (summary, faults) = driver_under_faults(rules, "11");
    assert!(faults > 0, "no fault injected: {summary}");
    let failures = figure(&summary, "failed,") + figure(&summary, "failed opens");
    assert!(failures > 0, "no error reached the driver: {summary}");
    println!("faults: {faults} injected; {summary}");
}

#[test]
fn write_errors_surface_as_sqlite_io_errors_and_full() {
    let (summary, faults) = driver_under_faults("pwrite:EIO:0.02,pwrite:ENOSPC:0.02", "12");
    assert!(faults > 0, "no fault injected: {summary}");
    // Which of SQLite's writes meet the faults depends on the threads'
    // order: a run may see them all while opening (SQLITE_IOERR_SHMSIZE)
    // and never reach an increment, so any I/O error class will do.
    assert!(
        summary.contains("SQLITE_IOERR") || summary.contains("SQLITE_FULL"),
        "{summary}"
    );
}
