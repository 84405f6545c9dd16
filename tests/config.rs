//! Every setting does what it says, and a bad one stops the program.

use std::time::Duration;

use crate::util::{
    driver, read_log, read_stats, run, tempdir, text, totals, under_shim, LogLine, PROBE,
};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_bad_setting_stops_the_program_before_main_with_one_line() {
    for (name, value) in [
        ("DELAYSHIM_MEAN_US", "10ms"),
        ("DELAYSHIM_DIST", "normal"),
        ("DELAYSHIM_MAX_US", "-5"),
        ("DELAYSHIM_PROB", "2"),
        ("DELAYSHIM_FUNCS", "pwrite,writes"),
        ("DELAYSHIM_STATS", "/nonexistent-dir/stats"),
        ("DELAYSHIM_MEAN_US", "1e308"),
        ("DELAYSHIM_STRATEGY", "random"),
        ("DELAYSHIM_WHEN", "during"),
        ("DELAYSHIM_FCNTL", "unlocks"),
        ("DELAYSHIM_PATHS", ""),
        ("DELAYSHIM_SEED", "abc"),
        ("DELAYSHIM_STATS", ""),
        ("DELAYSHIM_LOG", "/nonexistent-dir/log"),
        ("DELAYSHIM_ENABLE", "yes"),
        ("DELAYSHIM_MEAN", "100"),
    ] {
        let out = run(
            under_shim("sh", &[(name, value)]).args(["-c", "echo main ran"]),
            LIMIT,
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}={value}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}={value}: main must not run");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("delayshim: ") && stderr.contains(name),
            "{stderr}"
        );
        if !value.is_empty() {
            assert!(stderr.contains(value), "{stderr}");
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
