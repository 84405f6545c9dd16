use std::path::Path;
use std::time::Duration;

use crate::util::{assert_exit, clean_command, driver, run, tempdir, text};

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
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let out = run(
        clean_command(driver())
            .arg("--dir")
            .arg(dir.path().join("file/cache")),
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("file/cache") && stderr.contains("Not a directory"),
        "{stderr}"
    );
    assert!(stderr.contains("FAIL: worker 0 (pid "), "{stderr}");
}

#[test]
fn a_dir_holding_an_old_cache_is_refused_not_reported_as_a_race() {
    let dir = tempdir();
    let small = ["--workers", "2", "--threads", "2", "--keys", "5", "--dir"];
    let first = run(clean_command(driver()).args(small).arg(dir.path()), LIMIT);
    assert_exit(&first, 0);
    for tolerate in [&[][..], &["--tolerate-errors"]] {
        let again = run(
            clean_command(driver())
                .args(tolerate)
                .args(small)
                .arg(dir.path()),
            LIMIT,
        );
        assert_exit(&again, 2);
        let stderr = text(&again.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("is not empty") && stderr.contains(dir.path().to_str().unwrap()),
            "{stderr}"
        );
        assert!(again.stdout.is_empty(), "no verdict on the old cache");
    }
    // An empty directory is a fresh start.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run(clean_command(driver()).args(small).arg(&empty), LIMIT);
    assert_exit(&out, 0);
}

#[test]
fn out_of_range_numbers_are_usage_errors_not_panics() {
    for args in [
        &["--lock-timeout", "1e300"][..],
        &["--lock-timeout", "inf"],
        &["--lock-timeout", "NaN"],
        &["--lock-timeout", "1e10"],
        &["--stagger-us", "18446744073709551615"],
        &["--attempts", "0"],
    ] {
        let out = run(clean_command(driver()).args(args), LIMIT);
        assert_exit(&out, 2);
        let stderr = text(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: invalid value") && first.contains(args[0]),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let longest = run(
        clean_command(driver()).args(["--lock-timeout", "1e9", "--keys", "3", "--workers", "2"]),
        LIMIT,
    );
    assert_exit(&longest, 0);
}

#[test]
fn tolerate_errors_passes_a_clean_run_with_every_increment_confirmed() {
    let out = run(
        clean_command(driver()).args(["--tolerate-errors", "--keys", "20"]),
        LIMIT,
    );
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(
            "PASS: 20/20 counters within bounds (confirmed <= value <= attempted), \
             8/8 shards pass integrity_check; 1280 increments attempted: 1280 confirmed, \
             0 failed, 0 cut short; 0 failed opens; errors: none; 0 workers killed \
             (8 workers x 8 threads) in "
        ),
        "{stdout}"
    );
}

#[test]
fn tolerate_errors_reports_lost_updates_as_counters_out_of_bounds() {
    // As get_set_at_high_contention_loses_updates: every key keeping all
    // 64 confirmed updates would take hundreds of lucky orderings in a row.
    let out = run(
        clean_command(driver()).args(["--tolerate-errors", "--op", "get-set", "--keys", "10"]),
        LIMIT,
    );
    assert_exit(&out, 1);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("FAIL: "), "{stdout}");
    assert!(stdout.contains("confirmed 64, attempted 64"), "{stdout}");
    assert!(
        stdout.contains("8/8 shards pass integrity_check"),
        "{stdout}"
    );
}

#[test]
fn tolerate_errors_keeps_its_temporary_directory_only_after_a_failure() {
    let tmp = tempdir();
    let small = ["--tolerate-errors", "--workers", "4", "--threads", "4"];
    let pass = run(
        clean_command(driver())
            .env("TMPDIR", tmp.path())
            .args(small)
            .args(["--keys", "3"]),
        LIMIT,
    );
    assert_exit(&pass, 0);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "removed");
    // As tolerate_errors_reports_lost_updates_as_counters_out_of_bounds.
    let fail = run(
        clean_command(driver()).env("TMPDIR", tmp.path()).args([
            "--tolerate-errors",
            "--keys",
            "10",
            "--op",
            "get-set",
        ]),
        LIMIT,
    );
    assert_exit(&fail, 1);
    let stdout = text(&fail.stdout);
    let kept = stdout
        .lines()
        .find_map(|line| line.strip_prefix("cache directory: "))
        .expect("the kept directory is printed");
    assert!(kept.starts_with(tmp.path().to_str().unwrap()), "{stdout}");
    assert!(Path::new(kept).join("journal/run").exists(), "{kept}");
}

#[test]
fn check_only_judges_a_kept_run_and_finds_a_tampered_counter() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let out = run(
        clean_command(driver())
            .args(["--tolerate-errors", "--workers", "2", "--threads", "2"])
            .args(["--keys", "5", "--dir"])
            .arg(&cache),
        LIMIT,
    );
    assert_exit(&out, 0);
    let check = || {
        run(
            clean_command(driver())
                .args(["--tolerate-errors", "--check-only", "--dir"])
                .arg(&cache),
            LIMIT,
        )
    };
    assert_exit(&check(), 0);
    // One increment more than any thread attempted: a phantom.
    let shard = (0..8)
        .map(|i| cache.join(format!("{i:03}/cache.db")))
        .find(|db| {
            let conn = rusqlite::Connection::open(db).unwrap();
            conn.execute("UPDATE cache SET value = value + 1 WHERE key = 3", [])
                .unwrap()
                == 1
        });
    assert!(shard.is_some(), "key 3 is on some shard");
    let out = check();
    assert_exit(&out, 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("4/5 counters within bounds")
            && stdout.contains("key 3 = 5, confirmed 4, attempted 4"),
        "{stdout}"
    );
}

#[test]
fn check_only_reports_a_corrupt_shard_as_exit_status_4() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let out = run(
        clean_command(driver())
            .args(["--tolerate-errors", "--workers", "1", "--threads", "1"])
            .args(["--keys", "2000", "--shards", "1", "--dir"])
            .arg(&cache),
        LIMIT,
    );
    assert_exit(&out, 0);
    let db = cache.join("000/cache.db");
    let mut bytes = std::fs::read(&db).unwrap();
    // Pages after the schema overwritten: no valid b-tree page.
    for byte in &mut bytes[3 * 1024..] {
        *byte = 0x5a;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = run(
        clean_command(driver())
            .args(["--tolerate-errors", "--check-only", "--dir"])
            .arg(&cache),
        LIMIT,
    );
    assert_exit(&out, 4);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("CORRUPT: 1 of 1 shards fail integrity_check: "),
        "{stdout}"
    );
    assert!(stdout.contains("000/cache.db"), "{stdout}");
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
