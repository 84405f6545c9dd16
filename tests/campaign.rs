//! `delayshim fuzz` (and scripts/run-fuzz.sh, its wrapper): campaigns pass,
//! fail with a reproduce line, hang, kill what runs leave behind, refuse
//! programs the shim cannot enter, and split across machines.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::util::{
    artifacts, assert_exit, clean_command, delayshim, driver, run, shim_cache, target_dir, tempdir,
    text, PROBE,
};

const LIMIT: Duration = Duration::from_secs(300);

/// `scripts/run-fuzz.sh`, building into the tests' target directory.
fn run_fuzz_script() -> Command {
    artifacts();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/run-fuzz.sh");
    let mut command = clean_command(script);
    command
        .env("CARGO_TARGET_DIR", target_dir())
        .env("XDG_CACHE_HOME", shim_cache());
    command
}

/// Runs `delayshim fuzz ARGS` to completion, with the strategy of the
/// original delay fuzzer (every selected call) unless ARGS name one: these
/// tests are about the campaign, not about the portfolio of `auto`.
fn run_fuzz(args: &[&str]) -> Output {
    let mut command = delayshim("fuzz");
    if !args.contains(&"--strategy") {
        command.args(["--strategy", "every"]);
    }
    run(command.args(args), LIMIT)
}

/// The seeds of the runs a campaign reported, from its `[i/n] seed=S` lines.
fn run_seeds(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter(|line| line.starts_with('['))
        .map(|line| {
            let seed = line
                .split_whitespace()
                .nth(1)
                .and_then(|f| f.strip_prefix("seed="));
            seed.and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("run line {line:?}"))
        })
        .collect()
}

#[test]
fn a_short_driver_campaign_passes_and_reports_delays() {
    let out_dir = tempdir();
    let out = run_fuzz(&[
        "--runs",
        "2",
        "--jobs",
        "2",
        "--mean",
        "50",
        "--seed",
        "11",
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let runs: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(runs.len(), 2, "{stdout}");
    for line in runs {
        assert!(line.contains(" PASS "), "{line}");
        for name in ["pwrite64 ", "fcntl64 ", "fsync "] {
            assert!(line.contains(name), "{name} delayed: {line}");
        }
    }
    assert!(
        stdout.contains("2 of 2 runs done") && stdout.contains("2 passed"),
        "{stdout}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["runs"].as_array().unwrap().len(), 2);
    assert!(out_dir.path().join("run-0/stats.jsonl").exists());
}

#[test]
fn a_racy_program_fails_with_a_command_that_reproduces_it() {
    let out_dir = tempdir();
    let out = run_fuzz(&[
        "--runs",
        "3",
        "--seed",
        "3",
        "--out",
        out_dir.path().to_str().unwrap(),
        "--",
        driver().to_str().unwrap(),
        "--op",
        "get-set",
        "--keys",
        "10",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("[1/3] seed=") && stdout.contains(" FAIL "),
        "{stdout}"
    );
    assert!(stdout.contains("stopped at the first failure"), "{stdout}");
    assert_eq!(
        run_seeds(&stdout).len(),
        1,
        "no run starts after the first failure: {stdout}"
    );
    assert!(stdout.contains("failing seeds: "), "{stdout}");
    let reproduce = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("reproduce: "))
        .unwrap_or_else(|| panic!("a reproduce line: {stdout}"));
    assert!(
        reproduce.contains("LD_PRELOAD=") && reproduce.contains("DELAYSHIM_SEED="),
        "{reproduce}"
    );
    // The line is a working command: the race shows again (64 threads on
    // 10 keys lose updates in every run measured).
    let again = run(clean_command("sh").arg("-c").arg(reproduce), LIMIT);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stdout));
    assert!(text(&again.stdout).starts_with("FAIL: "));

    let out = run_fuzz(&[
        "--runs",
        "2",
        "--keep-going",
        "--out",
        out_dir.path().to_str().unwrap(),
        "--",
        "false",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("2 of 2 runs done") && stdout.contains("2 FAIL"),
        "{stdout}"
    );
}

#[test]
fn a_program_that_intercepts_nothing_is_no_injection() {
    let out_dir = tempdir();
    let out = run_fuzz(&[
        "--runs",
        "2",
        "--out",
        out_dir.path().to_str().unwrap(),
        "--",
        "true",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains(" NO INJECTION ") && stdout.contains("intercepted no calls"),
        "{stdout}"
    );
    assert!(!stdout.contains(" PASS "), "{stdout}");
}

fn processes_running(command_line: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| {
            String::from_utf8_lossy(cmdline).replace('\0', " ").trim() == command_line
        })
        .count()
}

/// Whether every process running `command_line` is gone within a few
/// seconds (an exiting process can linger in /proc for a moment).
fn all_gone(command_line: &str) -> bool {
    let start = std::time::Instant::now();
    while processes_running(command_line) > 0 {
        if start.elapsed() > Duration::from_secs(5) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_run_past_the_timeout_is_a_hang_and_its_group_is_killed() {
    let out_dir = tempdir();
    // The shell forks the sleep: killing only the shell would leave it behind.
    let out = run_fuzz(&[
        "--runs",
        "1",
        "--timeout",
        "1",
        "--out",
        out_dir.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "sleep 37.25; true",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(" HANG "), "{stdout}");
    assert!(
        stdout.contains("failing seeds: ") && stdout.contains("(HANG)"),
        "{stdout}"
    );
    assert!(
        all_gone("sleep 37.25"),
        "the hung run's whole process group was killed"
    );
}

#[test]
fn daemons_a_run_leaves_behind_are_killed_and_reported() {
    let out_dir = tempdir();
    // One daemon in a new session (setsid), one forked twice within the
    // run's group; the run itself exits at once. Two runs at a time, so
    // each run's leftovers must be told apart from the other's.
    let program = "setsid sleep 53.25 & ( ( sleep 53.5 & ) & ); exit 0";
    let out = run_fuzz(&[
        "--runs",
        "2",
        "--jobs",
        "2",
        "--keep-going",
        "--out",
        out_dir.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        program,
    ]);
    let stdout = text(&out.stdout);
    let runs: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(runs.len(), 2, "{stdout}{}", text(&out.stderr));
    for line in runs {
        assert!(line.contains("left 2 processes running: killed"), "{line}");
    }
    assert!(all_gone("sleep 53.25"), "the setsid daemons were killed");
    assert!(all_gone("sleep 53.5"), "the double-forked ones were killed");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["runs"][0]["left_running"], 2);
    assert_eq!(summary["left_running"], 4);
    assert!(
        stdout.contains("processes left running by runs: 4, all killed"),
        "{stdout}"
    );
}

#[test]
fn static_setuid_and_setgid_programs_are_refused() {
    let dir = tempdir();
    let source = dir.path().join("static.c");
    std::fs::write(&source, "int main(void) { return 0; }\n").unwrap();
    let static_program = dir.path().join("static");
    let cc = Command::new("cc")
        .arg("-static")
        .arg("-o")
        .arg(&static_program)
        .arg(&source)
        .output()
        .unwrap();
    assert!(cc.status.success(), "cc -static: {}", text(&cc.stderr));
    let true_program = Path::new("/bin/true");
    let mut cases = vec![(static_program, "statically linked")];
    for (mode, why) in [(0o4755, "set-user-ID"), (0o2755, "set-group-ID")] {
        let copy = dir.path().join(format!("true-{mode:o}"));
        std::fs::copy(true_program, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(mode)).unwrap();
        cases.push((copy, why));
    }
    for (program, why) in cases {
        let out = run_fuzz(&["--runs", "1", "--", program.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{program:?}: {stderr}");
        assert!(
            stderr.contains("refusing to fuzz") && stderr.contains(why),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out.stdout));
    }
}

#[test]
fn shards_split_the_seeds_with_no_overlap() {
    let out_dir = tempdir();
    let campaign = |shard: &str| -> Vec<u64> {
        let dir = out_dir.path().join(shard.replace('/', "-of-"));
        let out = run_fuzz(&[
            "--runs",
            "10",
            "--seed",
            "5",
            "--shard",
            shard,
            "--mean",
            "1",
            "--out",
            dir.to_str().unwrap(),
            "--",
            PROBE,
            "paired",
            out_dir.path().to_str().unwrap(),
            "5",
            "1",
        ]);
        assert_exit(&out, 0);
        run_seeds(&text(&out.stdout))
    };
    let whole: BTreeSet<u64> = campaign("1/1").into_iter().collect();
    assert_eq!(whole.len(), 10);
    let shards: Vec<Vec<u64>> = ["1/3", "2/3", "3/3"].map(campaign).into();
    assert_eq!(shards.iter().map(Vec::len).collect::<Vec<_>>(), [4, 3, 3]);
    let joined: BTreeSet<u64> = shards.iter().flatten().copied().collect();
    assert_eq!(joined.len(), 10, "no seed runs on two shards");
    assert_eq!(joined, whole, "the shards together are the whole campaign");
}

#[test]
fn bad_options_and_settings_are_usage_errors() {
    for (args, says) in [
        (&["--dist", "sometimes", "--", "true"][..], "DELAYSHIM_DIST"),
        (
            &["--stats", "s.jsonl", "--", "true"],
            "unexpected argument '--stats'",
        ),
        (&["--shard", "0/2"], "I/N"),
        (&["--runs", "0"], "--runs"),
        (&["--", "no-such-program-anywhere"], "not found in PATH"),
        (
            &["--shard", "2/2", "--runs", "1", "--", "true"],
            "has no runs",
        ),
        (&["--timeout", "1e300", "--", "true"], "at most 2592000"),
        (&["--mean", "1e308", "--", "true"], "from 0 to 60000000"),
        (&["--confirm", "1001", "--", "true"], "--confirm"),
        (
            &["--strategy", "random", "--", "true"],
            "DELAYSHIM_STRATEGY",
        ),
    ] {
        let out = run_fuzz(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let help = run(run_fuzz_script().arg("--help"), LIMIT);
    assert_exit(&help, 0);
    assert!(text(&help.stdout).contains("--shard <I/N>"));
    assert!(
        text(&help.stderr).contains("Finished"),
        "the script shows cargo's progress: {}",
        text(&help.stderr)
    );
}

#[test]
fn an_interrupt_stops_the_campaign_and_kills_the_running_group() {
    use std::io::{BufRead, BufReader, Read};
    let out_dir = tempdir();
    let mut child = run_fuzz_script()
        .args([
            "--runs",
            "3",
            "--strategy",
            "every",
            "--out",
            out_dir.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "sleep 41.5; true",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The script execs the runner, whose header line says the runs began.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    stdout.read_line(&mut header).unwrap();
    assert!(
        header.starts_with("delayshim fuzz: 3 runs of sh"),
        "{header}"
    );
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(
        rest.contains("INTERRUPTED") && rest.contains("1 of 3 runs done"),
        "{rest}"
    );
    assert!(all_gone("sleep 41.5"), "the running group was killed");
}

#[test]
fn log_keeps_each_runs_delays_in_its_own_directory() {
    let out_dir = tempdir();
    let stray = out_dir.path().join("inherited.log");
    let out = run(
        delayshim("fuzz")
            .args(["--strategy", "every"])
            .env("DELAYSHIM_LOG", &stray)
            .args([
                "--runs",
                "2",
                "--log",
                "--mean",
                "1",
                "--out",
                out_dir.path().to_str().unwrap(),
                "--",
            ])
            .args([PROBE, "paired", out_dir.path().to_str().unwrap(), "5", "1"]),
        LIMIT,
    );
    assert_exit(&out, 0);
    for run_dir in ["run-0", "run-1"] {
        let log = std::fs::read_to_string(out_dir.path().join(run_dir).join("delays.log")).unwrap();
        assert_eq!(
            log.lines().filter(|l| l.contains(" fn=pwrite64 ")).count(),
            5,
            "the probe's five pwrite64 calls through the shim (5 batches of 1): {log}"
        );
    }
    assert!(
        !stray.exists(),
        "no run wrote to the inherited DELAYSHIM_LOG"
    );
}

#[test]
fn a_go_program_is_warned_about_and_shows_as_not_fuzzed() {
    // /bin/true with Go's build-information marker appended: still a
    // dynamic executable, and it makes no call the shim delays.
    let dir = tempdir();
    let program = dir.path().join("go-like");
    let mut bytes = std::fs::read("/bin/true").unwrap();
    bytes.extend_from_slice(b"\xff Go buildinf:\x08\x02");
    std::fs::write(&program, bytes).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run_fuzz(&[
        "--runs",
        "1",
        "--out",
        dir.path().join("out").to_str().unwrap(),
        "--",
        program.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is a Go program") && stderr.contains("NO INJECTION"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(" NO INJECTION "));
}
