//! Every setting does what it says, and a bad one stops the program.

use std::time::Duration;

use crate::util::{
    driver, read_log, read_stats, run, tempdir, text, totals, under_shim, LogLine, PROBE,
};

const LIMIT: Duration = Duration::from_secs(120);

/// One row per bad setting: the variables, and what the one line must say.
/// Every row stops the program before its `main` with exit status 64.
const BAD_SETTINGS: &[(&[(&str, &str)], &str)] = &[
    (
        &[("DELAYSHIM_MEAN_US", "10ms")],
        "a number of microseconds from 0 to 60000000",
    ),
    (&[("DELAYSHIM_MEAN_US", "1e308")], "from 0 to 60000000"),
    (&[("DELAYSHIM_MEAN_US", "-1")], "from 0 to 60000000"),
    (&[("DELAYSHIM_MEAN_US", "NaN")], "from 0 to 60000000"),
    (&[("DELAYSHIM_MAX_US", "-5")], "from 0 to 60000000"),
    (&[("DELAYSHIM_MAX_US", "99999999999")], "from 0 to 60000000"),
    (&[("DELAYSHIM_DIST", "normal")], "exp, uniform or fixed"),
    (&[("DELAYSHIM_PROB", "2")], "a probability from 0 to 1"),
    (&[("DELAYSHIM_PROB", "-0")], ""),
    (
        &[("DELAYSHIM_FUNCS", "pwrite,writes")],
        "families, function names, or all",
    ),
    (
        &[("DELAYSHIM_FUNCS", "")],
        "families, function names, or all",
    ),
    (&[("DELAYSHIM_WHEN", "during")], "before, after or both"),
    (
        &[("DELAYSHIM_LOCKS", "unlock")],
        "all, acquire, release or locks",
    ),
    (
        &[("DELAYSHIM_FCNTL", "unlocks")],
        "all, lock, unlock or locks",
    ),
    (
        &[
            ("DELAYSHIM_LOCKS", "acquire"),
            ("DELAYSHIM_FCNTL", "unlock"),
        ],
        "old name of DELAYSHIM_LOCKS",
    ),
    (&[("DELAYSHIM_FDS", "pipes")], "files or all"),
    (&[("DELAYSHIM_CALLS", "some")], "effects or all"),
    (&[("DELAYSHIM_PATHS", "")], "non-empty glob patterns"),
    (&[("DELAYSHIM_PATHS", "a,,b")], "non-empty glob patterns"),
    (&[("DELAYSHIM_SEED", "abc")], "64-bit unsigned integer"),
    (
        &[("DELAYSHIM_SEED", "18446744073709551616")],
        "64-bit unsigned integer",
    ),
    (
        &[("DELAYSHIM_STRATEGY", "random")],
        "every, sparse, victims, sites or pct",
    ),
    (&[("DELAYSHIM_DEPTH", "0")], "from 1 to 64"),
    (&[("DELAYSHIM_DEPTH", "100000")], "from 1 to 64"),
    (&[("DELAYSHIM_HORIZON", "-1")], "auto or a whole number"),
    (
        &[("DELAYSHIM_VICTIM_PROB", "1.5")],
        "a probability from 0 to 1",
    ),
    (&[("DELAYSHIM_SCALE_US", "100-10")], "MIN-MAX microseconds"),
    (&[("DELAYSHIM_SCALE_US", "1-1e300")], "MIN-MAX microseconds"),
    (&[("DELAYSHIM_SITE_PROB", "x")], "a probability from 0 to 1"),
    (
        &[("DELAYSHIM_FIRE_PROB", "inf")],
        "a probability from 0 to 1",
    ),
    (&[("DELAYSHIM_BUDGET", "0")], "from 0.01 to 1"),
    (&[("DELAYSHIM_BUDGET", "1e9")], "from 0.01 to 1"),
    (
        &[("DELAYSHIM_FAULTS", "fsync:EEXIST:0.1")],
        "fsync never fails with EEXIST",
    ),
    (
        &[("DELAYSHIM_FAULTS", "writev:short:0.1")],
        "cannot be made short",
    ),
    (
        &[("DELAYSHIM_FAULTS", "fsync:EIO")],
        "does not have three parts",
    ),
    (
        &[("DELAYSHIM_FAULTS", "fsync:EIO:7")],
        "probability must be from 0 to 1",
    ),
    (
        &[("DELAYSHIM_FAULTS", "nosuch:EIO:0.1")],
        "neither a family nor",
    ),
    (&[("DELAYSHIM_STATS", "")], "stderr or a file path"),
    (
        &[("DELAYSHIM_STATS", "/nonexistent-dir/stats")],
        "No such file or directory",
    ),
    (&[("DELAYSHIM_STATS", "/")], "DELAYSHIM_STATS"),
    (&[("DELAYSHIM_STATS", "/dev/full")], "not a regular file"),
    (
        &[("DELAYSHIM_LOG", "/nonexistent-dir/log")],
        "No such file or directory",
    ),
    (&[("DELAYSHIM_LOG", "/dev/full")], "not a regular file"),
    (&[("DELAYSHIM_RECORD", "/")], "DELAYSHIM_RECORD"),
    (&[("DELAYSHIM_REPLAY", "/nonexistent-dir/r")], "cannot read"),
    (
        &[
            ("DELAYSHIM_RECORD", "/tmp/same"),
            ("DELAYSHIM_REPLAY", "/tmp/same"),
        ],
        "other than DELAYSHIM_REPLAY",
    ),
    (&[("DELAYSHIM_ENABLE", "yes")], "0 or 1"),
    (&[("DELAYSHIM_TREE", "garbage")], "set by the shim"),
    (&[("DELAYSHIM_MEAN", "100")], "no such variable"),
];

#[test]
fn a_bad_setting_stops_the_program_before_main_with_one_line() {
    for (settings, expected) in BAD_SETTINGS {
        let out = run(
            under_shim("sh", settings).args(["-c", "echo main ran"]),
            LIMIT,
        );
        let stderr = text(&out.stderr);
        let row = format!("{settings:?}");
        if settings == &[("DELAYSHIM_PROB", "-0")] {
            // -0 is a probability of zero: accepted.
            assert_eq!(out.status.code(), Some(0), "{row}: {stderr}");
            continue;
        }
        assert_eq!(out.status.code(), Some(64), "{row}: {stderr}");
        assert!(out.stdout.is_empty(), "{row}: main must not run");
        assert_eq!(stderr.lines().count(), 1, "{row}: {stderr}");
        assert!(stderr.starts_with("delayshim: "), "{row}: {stderr}");
        assert!(stderr.contains(expected), "{row}: {stderr}");
        let (name, value) = settings[settings.len() - 1];
        assert!(
            stderr.contains(name) || stderr.contains(settings[0].0),
            "{row}: {stderr}"
        );
        if !value.is_empty() && !name.ends_with("REPLAY") {
            assert!(
                stderr.contains(value) || stderr.contains(settings[0].1),
                "{row}: {stderr}"
            );
        }
    }
}

/// Runs the small driver under the shim with `settings` and the delay log.
fn driver_log(settings: &[(&str, &str)]) -> Vec<LogLine> {
    let dir = tempdir();
    let log = dir.path().join("log");
    let mut all = vec![
        ("DELAYSHIM_MEAN_US", "20"),
        ("DELAYSHIM_LOG", log.to_str().unwrap()),
    ];
    all.extend_from_slice(settings);
    let out = run(
        under_shim(driver(), &all).args(["--workers", "2", "--threads", "2", "--keys", "10"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    read_log(&log)
}

fn fcntl_lines(log: &[LogLine]) -> Vec<&LogLine> {
    log.iter()
        .filter(|line| line.get("fn") == Some("fcntl64"))
        .collect()
}

#[test]
fn fcntl_unlock_delays_only_unlocks() {
    let log = driver_log(&[("DELAYSHIM_FCNTL", "unlock"), ("DELAYSHIM_WHEN", "after")]);
    let fcntl = fcntl_lines(&log);
    assert!(!fcntl.is_empty());
    for line in &fcntl {
        assert_eq!(line.get("lock"), Some("F_UNLCK"), "{line:?}");
        assert!(line.get("cmd").unwrap().starts_with("F_SETLK"), "{line:?}");
        assert_eq!(line.get("when"), Some("after"), "{line:?}");
    }
    assert!(
        log.iter().any(|line| line.get("fn") == Some("pwrite64")),
        "other families are still delayed"
    );
}

#[test]
fn fcntl_lock_delays_only_acquisitions() {
    let log = driver_log(&[("DELAYSHIM_FCNTL", "lock")]);
    let fcntl = fcntl_lines(&log);
    assert!(!fcntl.is_empty());
    for line in fcntl {
        assert!(
            matches!(line.get("lock"), Some("F_RDLCK" | "F_WRLCK")),
            "{line:?}"
        );
    }
    let locks = driver_log(&[("DELAYSHIM_FCNTL", "locks")]);
    let locks = fcntl_lines(&locks);
    assert!(
        locks.iter().any(|l| l.get("lock") == Some("F_UNLCK"))
            && locks.iter().any(|l| l.get("lock") == Some("F_WRLCK"))
    );
    assert!(
        locks
            .iter()
            .all(|l| l.get("cmd").unwrap().starts_with("F_SETLK")),
        "only lock changes"
    );
    // SQLite also asks F_GETLK (is a lock held?): delayed by 'all' only,
    // and only when every call is, not just those other processes see.
    let all = driver_log(&[("DELAYSHIM_FCNTL", "all"), ("DELAYSHIM_CALLS", "all")]);
    assert!(
        fcntl_lines(&all)
            .iter()
            .any(|l| l.get("cmd") == Some("F_GETLK")),
        "'all' also delays other commands"
    );
}

#[test]
fn paths_restrict_delays_to_matching_files() {
    let log = driver_log(&[("DELAYSHIM_PATHS", "*/cache.db-wal")]);
    assert!(!log.is_empty());
    for line in &log {
        assert!(
            line.get("path").unwrap().ends_with("/cache.db-wal"),
            "{line:?}"
        );
    }
}

#[test]
fn funcs_selects_single_functions() {
    let log = driver_log(&[("DELAYSHIM_FUNCS", "pread64")]);
    assert!(!log.is_empty());
    assert!(log.iter().all(|line| line.get("fn") == Some("pread64")));
}

#[test]
fn max_caps_every_delay() {
    let log = driver_log(&[
        ("DELAYSHIM_DIST", "fixed"),
        ("DELAYSHIM_MEAN_US", "5000"),
        ("DELAYSHIM_MAX_US", "7"),
    ]);
    assert!(!log.is_empty());
    assert!(log.iter().all(|line| line.get("delay_us") == Some("7")));
}

fn probe_stats(settings: &[(&str, &str)], calls: &str) -> Vec<serde_json::Value> {
    let dir = tempdir();
    let stats = dir.path().join("stats");
    // The probe's F_GETFL on /dev/null: not a file, not an effect.
    let mut all = vec![
        ("DELAYSHIM_MEAN_US", "1"),
        ("DELAYSHIM_FDS", "all"),
        ("DELAYSHIM_CALLS", "all"),
        ("DELAYSHIM_STATS", stats.to_str().unwrap()),
    ];
    all.extend_from_slice(settings);
    let out = run(under_shim(PROBE, &all).args(["calls", calls]), LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    read_stats(&stats)
}

#[test]
fn probability_delays_that_share_of_calls() {
    let stats = probe_stats(
        &[("DELAYSHIM_PROB", "0.5"), ("DELAYSHIM_SEED", "3")],
        "4000",
    );
    let delayed = totals(&stats, "delayed")["fcntl64"];
    assert_eq!(totals(&stats, "calls")["fcntl64"], 4000);
    // Binomial(4000, 0.5): 1800..2200 is over six standard deviations wide.
    assert!((1800..=2200).contains(&delayed), "{delayed}");
    let none = probe_stats(&[("DELAYSHIM_PROB", "0")], "100");
    assert_eq!(totals(&none, "delayed").get("fcntl64"), None);
}

#[test]
fn enable_0_is_pure_pass_through_but_still_counts() {
    let stats = probe_stats(&[("DELAYSHIM_ENABLE", "0")], "100");
    assert_eq!(totals(&stats, "calls")["fcntl64"], 100);
    assert!(totals(&stats, "delayed").is_empty());
}

#[test]
fn stats_to_stderr_is_one_json_line() {
    let out = run(
        under_shim(
            PROBE,
            &[
                ("DELAYSHIM_STATS", "stderr"),
                ("DELAYSHIM_SEED", "9"),
                ("DELAYSHIM_FDS", "all"),
                ("DELAYSHIM_CALLS", "all"),
            ],
        )
        .args(["calls", "3"]),
        LIMIT,
    );
    let stderr = text(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), 2, "a start and an exit line: {stderr}");
    assert_eq!(lines[0]["event"], "start");
    let line = &lines[1];
    assert_eq!(line["event"], "exit");
    assert_eq!(line["seed"], 9);
    assert_eq!(line["delayed"]["fcntl64"], 3);
    assert!(line["delay_us"]["fcntl64"].as_u64().is_some());
}

#[test]
fn unseeded_runs_report_the_seed_they_chose() {
    let seeds: Vec<u64> = (0..2)
        .map(|_| probe_stats(&[], "1")[0]["seed"].as_u64().expect("a seed"))
        .collect();
    assert_ne!(seeds[0], seeds[1]);
}

#[test]
fn a_chosen_seed_is_printed_once_per_tree_and_only_on_a_terminal() {
    // Standard error is a pipe here: nothing is printed.
    let out = run(under_shim(PROBE, &[]).args(["calls", "1"]), LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    // On a terminal, a shell and the two programs it starts print one line.
    let script = "import os, pty, sys\n\
        pid, fd = pty.fork()\n\
        if pid == 0:\n\
        \x20   os.environ['LD_PRELOAD'] = sys.argv[2]\n\
        \x20   os.execvp('sh', ['sh', '-c', sys.argv[1] + ' calls 1; ' + sys.argv[1] + ' calls 1'])\n\
        out = b''\n\
        while True:\n\
        \x20   try:\n\
        \x20       chunk = os.read(fd, 4096)\n\
        \x20   except OSError:\n\
        \x20       break\n\
        \x20   if not chunk:\n\
        \x20       break\n\
        \x20   out += chunk\n\
        os.waitpid(pid, 0)\n\
        sys.stdout.write(out.decode())\n";
    let mut command = crate::util::clean_command("python3");
    command.args(["-c", script, PROBE]).arg(crate::util::shim());
    let out = run(&mut command, LIMIT);
    let printed = text(&out.stdout);
    let seeds: Vec<&str> = printed
        .lines()
        .filter_map(|line| line.strip_prefix("delayshim: DELAYSHIM_SEED="))
        .collect();
    assert_eq!(seeds.len(), 1, "{printed:?}");
    let seed = seeds[0].split_whitespace().next().unwrap();
    assert!(seed.parse::<u64>().is_ok(), "{seed}");
}
