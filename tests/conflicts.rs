//! `delayshim run --conflicts`: each kind of report on a small C program
//! in a racy and a fixed form (the fixed one reports nothing), fork and
//! exec, threads, renames, descriptors reused mid-run, a region that fills
//! up, hostile regions, stale regions of dead runs; precision on the
//! driver and the sqlite3 CLI, recall on the race targets.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::util::{artifacts, assert_exit, c_program, delayshim, run, tempdir, text, under_shim};

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `program ARGS` under `delayshim run --conflicts` (no delays: the
/// report must not depend on them), with `extra` options before `--`.
fn conflicts(extra: &[&str], program: &Path, args: &[&str]) -> Output {
    let out = run(
        delayshim("run")
            .args(["--conflicts", "--enable", "0"])
            .args(extra)
            .arg("--")
            .arg(program)
            .args(args),
        LIMIT,
    );
    assert_exit(&out, 0);
    out
}

/// The count of potential races the report states.
fn races(out: &Output) -> u64 {
    let report = text(&out.stderr);
    let line = report
        .lines()
        .find(|l| l.starts_with("delayshim conflicts: ") && l.contains("potential races: "))
        .unwrap_or_else(|| panic!("no report line in:\n{report}"));
    line.rsplit("potential races: ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

/// Runs one case of tests/c/conflicts.c in a fresh directory.
fn case(args: &[&str]) -> (Output, String) {
    let dir = tempdir();
    let dir_arg = dir.path().to_str().expect("UTF-8 temporary path");
    let mut all = vec![dir_arg];
    all.extend(args);
    let out = conflicts(&[], &c_program("conflicts", &[]), &all);
    let report = text(&out.stderr);
    (out, report)
}

#[test]
fn unlocked_counter_is_a_conflict_and_every_lock_kind_fixes_it() {
    let (out, report) = case(&["counter", "racy"]);
    assert!(races(&out) >= 1, "{report}");
    assert!(
        report.contains("conflict: ") && report.contains("/counter"),
        "{report}"
    );
    assert!(
        report.contains("pwrite64") || report.contains("pwrite"),
        "both sites name their call: {report}"
    );
    for lock in ["flock", "fcntl", "ofd", "lockf"] {
        let (out, report) = case(&["counter", lock]);
        assert_eq!(races(&out), 0, "{lock}: {report}");
    }
}

#[test]
fn read_and_write_in_two_lock_epochs_is_a_lock_gap() {
    let (out, report) = case(&["gap", "racy"]);
    assert_eq!(races(&out), 1, "{report}");
    assert!(
        report.contains("lock gap: ") && report.contains("/gap"),
        "{report}"
    );
    let (out, report) = case(&["gap", "fixed"]);
    assert_eq!(races(&out), 0, "{report}");
}

#[test]
fn a_lock_on_an_unlinked_lock_file_is_a_stale_lock() {
    let (out, report) = case(&["stale", "racy"]);
    assert!(races(&out) >= 1, "{report}");
    assert!(
        report.contains("stale lock: ") && report.contains("/lock"),
        "{report}"
    );
    let (out, report) = case(&["stale", "fixed"]);
    assert_eq!(races(&out), 0, "{report}");
}

#[test]
fn fork_and_exec_order_and_a_parent_that_does_not_wait_conflicts() {
    let (out, report) = case(&["exec", "racy"]);
    assert_eq!(races(&out), 1, "{report}");
    assert!(report.contains("/shared"), "{report}");
    // Both processes are named: two pids, each with its command line.
    let pids: std::collections::BTreeSet<&str> = report
        .split("by pid ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(pids.len(), 2, "{report}");
    assert!(report.contains("/conflicts-"), "{report}");
    let (out, report) = case(&["exec", "fixed"]);
    assert_eq!(races(&out), 0, "{report}");
}

#[test]
fn threads_are_reported_apart_and_flock_orders_them() {
    let (out, report) = case(&["threads", "racy"]);
    assert_eq!(races(&out), 0, "{report}");
    assert!(
        report.contains("ordering not visible: ") && report.contains("threads of one process"),
        "{report}"
    );
    let (_, report) = case(&["threads", "fixed"]);
    assert!(!report.contains("ordering not visible"), "{report}");
}

#[test]
fn rename_publishes_and_writing_in_place_conflicts() {
    let (out, report) = case(&["rename", "racy"]);
    assert_eq!(races(&out), 1, "{report}");
    let (out, report) = case(&["rename", "fixed"]);
    assert_eq!(races(&out), 0, "{report}");
}

#[test]
fn descriptors_closed_and_reused_mid_run_name_their_new_file() {
    let (out, report) = case(&["reuse"]);
    assert_eq!(races(&out), 0, "{report}");
    assert!(!report.contains("ordering not visible"), "{report}");
}

/// The shim's descriptor cache: numbers that go to another file by close,
/// fclose, freopen, dup2, close_range or closefrom and come back through an
/// open no wrapper sees, and a vfork child's and a fork child's opens,
/// each leave the file named right (a wrong name is a conflict there).
#[test]
fn a_cached_descriptor_whose_number_goes_to_another_file_names_the_new_file() {
    let (out, report) = case(&["cache"]);
    assert_eq!(races(&out), 0, "{report}");
    assert!(
        report.contains("events from 3 processes"),
        "the parent, the child and its fork child: {report}"
    );
}

#[test]
fn a_region_that_fills_up_says_so() {
    let dir = tempdir();
    let program = c_program("conflicts", &[]);
    let args = [dir.path().to_str().unwrap(), "counter", "racy"];
    let out = conflicts(&["--conflicts-events", "10"], &program, &args);
    let report = text(&out.stderr);
    assert!(
        report.contains("the region filled up after 10 events"),
        "{report}"
    );
    let out = run(
        delayshim("run").args(["--conflicts", "--conflicts-events", "0", "--", "true"]),
        LIMIT,
    );
    assert_exit(&out, 125);
}

/// Regions in /dev/shm (or the temporary directory) named like ours.
fn regions() -> Vec<String> {
    let dir = delayshim_campaign_dir();
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("delayshim-") && n.ends_with(".region"))
                .collect()
        })
        .unwrap_or_default()
}

fn delayshim_campaign_dir() -> std::path::PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

#[test]
fn the_region_is_removed_after_the_run_and_stale_ones_of_dead_runs_too() {
    // A region left by a run killed with SIGKILL: its creator's pid is gone
    // (above the kernel's pid limit), so the next run removes it.
    let stale = delayshim_campaign_dir().join("delayshim-99999999-0-dead.region");
    std::fs::write(&stale, b"left by a killed run").unwrap();
    let out = run(delayshim("run").args(["--conflicts", "--", "true"]), LIMIT);
    assert_exit(&out, 0);
    assert!(!stale.exists(), "the stale region was removed");
    let mine = format!("delayshim-{}-", std::process::id());
    assert!(
        regions().iter().all(|n| !n.starts_with(&mine)),
        "{:?}",
        regions()
    );
}

#[test]
fn a_hostile_region_changes_nothing_and_is_not_written() {
    let dir = tempdir();
    let program = c_program("conflicts", &[]);
    let work = dir.path().join("work");
    let plain = |region: Option<&Path>| {
        std::fs::create_dir_all(&work).unwrap();
        let mut command = under_shim(&program, &[("DELAYSHIM_ENABLE", "0")]);
        if let Some(region) = region {
            command.env("DELAYSHIM_REGION", region);
        }
        // The locked counter: its output (40) does not depend on timing.
        let out = run(command.arg(&work).args(["counter", "flock"]), LIMIT);
        std::fs::remove_dir_all(&work).unwrap();
        out
    };
    let native = plain(None);
    assert_exit(&native, 0);
    assert_eq!(text(&native.stdout), "counter 40\n");
    let mut valid_header = vec![0u8; 256];
    valid_header[..8].copy_from_slice(b"DSREGION");
    valid_header[8] = 1;
    let mut other_version = valid_header.clone();
    other_version[8] = 9;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage",
            (0..65536u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
        ("truncated", valid_header[..40].to_vec()),
        ("other-version", other_version),
        ("bad-sizes", {
            let mut b = valid_header.clone();
            b[12] = 64;
            b[16..24].copy_from_slice(&256u64.to_le_bytes());
            b[24..32].copy_from_slice(&64u64.to_le_bytes());
            b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in cases {
        let region = dir.path().join(name);
        std::fs::write(&region, &bytes).unwrap();
        let out = plain(Some(&region));
        assert_eq!(out.status.code(), native.status.code(), "{name}");
        assert_eq!(text(&out.stdout), text(&native.stdout), "{name}");
        assert_eq!(text(&out.stderr), "", "{name}: nothing said");
        assert_eq!(
            std::fs::read(&region).unwrap(),
            bytes,
            "{name}: not written"
        );
    }
    // A name that is no file, or a symbolic link: ignored as well.
    std::os::unix::fs::symlink(dir.path().join("garbage"), dir.path().join("link")).unwrap();
    for name in ["missing", "link"] {
        let out = plain(Some(&dir.path().join(name)));
        assert_eq!(text(&out.stdout), text(&native.stdout), "{name}");
    }
}

#[test]
fn the_driver_and_the_sqlite3_cli_report_no_race() {
    let out = conflicts(
        &[],
        &artifacts().driver,
        &["--workers", "4", "--threads", "4", "--keys", "50"],
    );
    assert_eq!(races(&out), 0, "{}", text(&out.stderr));

    let dir = tempdir();
    let db = dir.path().join("db");
    let script = format!(
        "sqlite3 {db} 'create table t(x); insert into t values(0);' && \
         for w in 1 2 3; do (for i in 1 2 3; do sqlite3 {db} '.timeout 5000' 'update t set x=x+1;'; done) & done; wait; \
         test \"$(sqlite3 {db} 'select x from t;')\" = 9",
        db = db.display()
    );
    let out = conflicts(&[], Path::new("/bin/sh"), &["-c", &script]);
    assert_eq!(races(&out), 0, "{}", text(&out.stderr));
}

#[test]
fn the_file_race_targets_are_reported_in_passing_and_failing_runs() {
    let release = &artifacts().release;
    for (target, kind, file) in [
        ("json-store", "lock gap: ", "store.json"),
        ("lock-gap", "lock gap: ", "counter"),
        ("flock-counter", "lock gap: ", "counters"),
    ] {
        for _ in 0..3 {
            let out = run(
                delayshim("run")
                    .args(["--conflicts", "--seed", "7", "--"])
                    .arg(release.join(target)),
                LIMIT,
            );
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{target}: {out:?}"
            );
            let report = text(&out.stderr);
            assert!(races(&out) >= 1, "{target}: {report}");
            assert!(
                report.contains(kind) && report.contains(file),
                "{target}: {report}"
            );
        }
    }
}
