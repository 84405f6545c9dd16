use std::time::Duration;

use crate::util::{clean_command, driver, run, tempdir, text};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn default_run_passes() {
    let out = run(&mut clean_command(driver()), LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("PASS: 100/100 counters reached 64 (8 workers x 8 threads) in "),
        "{stdout}"
    );
}

#[test]
fn get_set_at_high_contention_loses_updates() {
    // 64 threads read-modify-writing each of 10 keys: runs measured here
    // lose updates on nearly every key; all 10 keys coming out right by
    // luck would take 630 unlucky orderings in a row.
    let out = run(
        clean_command(driver()).args(["--op", "get-set", "--keys", "10"]),
        LIMIT,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("FAIL: "), "{stdout}");
    assert!(stdout.contains("expected 64"), "{stdout}");
}

#[test]
fn worker_error_is_exit_status_3_with_the_cause() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("000")).unwrap();
    std::fs::write(dir.path().join("000/cache.db"), vec![b'x'; 4096]).unwrap();
    let out = run(clean_command(driver()).arg("--dir").arg(dir.path()), LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("000/cache.db") && stderr.contains("not a database"),
        "{stderr}"
    );
    assert!(stderr.contains("FAIL: worker 0 (pid "), "{stderr}");
}

#[test]
fn usage_errors_are_exit_status_2() {
    for args in [
        &["--workers", "0"][..],
        &["--op", "add"],
        &["--bogus"],
        &["--lock-timeout", "-1"],
    ] {
        let out = run(clean_command(driver()).args(args), LIMIT);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?} explains itself");
    }
    let help = run(clean_command(driver()).arg("--help"), LIMIT);
    assert!(text(&help.stdout).contains("--op <OP>"));
}

#[test]
fn keep_leaves_the_cache_for_inspection() {
    let out = run(
        clean_command(driver()).args(["--keep", "--workers", "2", "--threads", "2", "--keys", "5"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let dir = stdout
        .lines()
        .find_map(|line| line.strip_prefix("cache directory: "))
        .expect("the kept directory is printed");
    let db = std::path::Path::new(dir).join("004/cache.db");
    assert!(db.exists(), "{db:?}");
    std::fs::remove_dir_all(dir).unwrap();
}
