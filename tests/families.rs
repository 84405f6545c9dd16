//! Each interposed family is hit, and delayed, in real programs: the
//! driver (rusqlite's bundled SQLite), python3 and the sqlite3 CLI (the
//! system libsqlite3), and a probe calling every alias.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::util::{
    assert_exit, driver, read_log, read_stats, run, tempdir, text, totals, under_shim, PROBE,
};

const LIMIT: Duration = Duration::from_secs(300);

fn assert_families_delayed(delayed: &BTreeMap<String, u64>, fsync_names: &[&str]) {
    for name in ["pwrite64", "fcntl64"] {
        assert!(
            delayed.get(name).copied().unwrap_or(0) > 0,
            "{name} delayed: {delayed:?}"
        );
    }
    assert!(
        fsync_names
            .iter()
            .any(|name| delayed.get(*name).copied().unwrap_or(0) > 0),
        "one of {fsync_names:?} delayed: {delayed:?}"
    );
}

#[test]
fn driver_under_the_shim_passes_with_delays_in_every_family() {
    let dir = tempdir();
    let stats = dir.path().join("stats.jsonl");
    let out = run(
        &mut under_shim(
            driver(),
            &[
                ("DELAYSHIM_STATS", stats.to_str().unwrap()),
                ("DELAYSHIM_SEED", "1"),
            ],
        ),
        LIMIT,
    );
    assert_exit(&out, 0);
    assert!(text(&out.stdout).starts_with("PASS: 100/100 counters reached 64"));
    let stats = read_stats(&stats);
    assert_eq!(stats.len(), 9, "the parent and 8 workers each write a line");
    // Every worker, not just the process total, was fuzzed.
    for process in &stats {
        assert!(
            process["delayed"]["fcntl64"].as_u64().unwrap_or(0) > 0,
            "{process}"
        );
        assert_eq!(process["seed"].as_u64(), Some(1));
    }
    assert_families_delayed(&totals(&stats, "delayed"), &["fsync"]);
    assert_eq!(
        totals(&stats, "delayed").get("pread64"),
        None,
        "reads are not delayed by default"
    );
    assert!(
        totals(&stats, "calls")["pread64"] > 0,
        "but they are counted"
    );
}

fn python3_available() -> bool {
    std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn python3_sqlite3_module_under_the_shim() {
    assert!(
        python3_available(),
        "python3 with the sqlite3 module is needed (see .ci/run)"
    );
    let dir = tempdir();
    let stats = dir.path().join("stats.jsonl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("targets/python/sqlite_incr.py");
    let db = dir.path().join("counter.db");
    let out = run(
        under_shim("python3", &[("DELAYSHIM_STATS", stats.to_str().unwrap())])
            .arg(&script)
            .arg(&db)
            .args(["--processes", "4", "--increments", "25"]),
        LIMIT,
    );
    assert_exit(&out, 0);
    assert_eq!(text(&out.stdout).trim(), "PASS: counter = 100");
    let stats = read_stats(&stats);
    // The parent, the 4 workers (ended by os._exit) and the final check.
    assert!(stats.len() >= 5, "{stats:?}");
    assert_families_delayed(&totals(&stats, "delayed"), &["fdatasync", "fsync"]);
}

#[test]
fn sqlite3_cli_under_the_shim() {
    let dir = tempdir();
    let stats = dir.path().join("stats.jsonl");
    let db = dir.path().join("cli.db");
    let setup = run(
        under_shim("sqlite3", &[("DELAYSHIM_STATS", stats.to_str().unwrap())])
            .arg(&db)
            .arg("CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0);"),
        LIMIT,
    );
    assert!(
        setup.status.success(),
        "sqlite3 CLI: {}",
        text(&setup.stderr)
    );
    // A dot-command inside the SQL argument is silently ignored, so the
    // busy timeout goes in -cmd.
    let script = "UPDATE counter SET n = n + 1;\n".repeat(20);
    let children: Vec<_> = (0..3)
        .map(|_| {
            under_shim("sqlite3", &[("DELAYSHIM_STATS", stats.to_str().unwrap())])
                .args(["-cmd", ".timeout 60000"])
                .arg(&db)
                .arg(&script)
                .spawn()
                .expect("sqlite3")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let check = run(
        under_shim("sqlite3", &[])
            .arg(&db)
            .arg("SELECT n FROM counter;"),
        LIMIT,
    );
    assert_eq!(text(&check.stdout).trim(), "60");
    let stats = read_stats(&stats);
    assert_eq!(stats.len(), 4);
    assert_families_delayed(&totals(&stats, "delayed"), &["fdatasync", "fsync"]);
}

#[test]
fn every_alias_a_probe_calls_is_delayed() {
    let dir = tempdir();
    let log = dir.path().join("log");
    let out = run(
        under_shim(
            PROBE,
            &[
                ("DELAYSHIM_FUNCS", "all"),
                // The probe also calls on pipes and bad descriptors.
                ("DELAYSHIM_FDS", "all"),
                ("DELAYSHIM_CALLS", "all"),
                ("DELAYSHIM_MEAN_US", "20"),
                ("DELAYSHIM_LOG", log.to_str().unwrap()),
            ],
        )
        .arg("errno")
        .arg(dir.path()),
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = read_log(&log);
    for name in [
        "pwrite",
        "pwrite64",
        "pwritev",
        "pwritev2",
        "pread64",
        "preadv2",
        "fsync",
        "fdatasync",
        "fcntl",
        "fcntl64",
        "__fcntl",
    ] {
        assert!(
            log.iter().any(|line| line.get("fn") == Some(name)),
            "{name} missing from the log"
        );
    }
}
