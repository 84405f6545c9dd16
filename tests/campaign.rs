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
    // --keep failures (the default): a passing run leaves its line in the
    // summary and runs.jsonl, and no directory.
    assert!(!out_dir.path().join("run-0").exists());
    assert_eq!(summary["runs"][0]["dir"], serde_json::Value::Null);
    assert_eq!(summary["runs"][0]["outcome"], "PASS");
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
        "--force",
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
    // The shim's view (auto would take the seccomp backend for `true`).
    let out = run_fuzz(&[
        "--backend",
        "preload",
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
    // run's group; the run itself exits at once, once the subshell that
    // forked the second has (else the campaign, which sees the run end at
    // once, may find that subshell still exiting and count it too). Two
    // runs at a time, so each run's leftovers must be told apart from the
    // other's.
    let program = "setsid sleep 53.25 & ( ( sleep 53.5 & ) & wait ); exit 0";
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
        // A static program is refused by the preload backend (auto takes
        // seccomp for it); set-ID programs by both.
        let out = run_fuzz(&[
            "--runs",
            "1",
            "--backend",
            "preload",
            "--",
            program.to_str().unwrap(),
        ]);
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
                "--keep",
                "all",
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
    // Under the shim (auto takes the seccomp backend for Go programs).
    let out = run_fuzz(&[
        "--backend",
        "preload",
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

/// Spawns `delayshim fuzz ARGS` in its own process group, its output piped.
fn spawn_fuzz(args: &[&str]) -> std::process::Child {
    use std::os::unix::process::CommandExt as _;
    delayshim("fuzz")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// Waits for `child` (killing its group and failing after `LIMIT`).
fn finish(mut child: std::process::Child) -> Output {
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > LIMIT {
            // SAFETY: kills the group of our own child.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            panic!("delayshim fuzz hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Waits until a process runs `command_line`.
fn wait_for(command_line: &str) {
    let start = std::time::Instant::now();
    while processes_running(command_line) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{command_line} never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn summary_of(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json"))
        .unwrap_or_else(|e| panic!("{}/summary.json: {e}", dir.display()));
    serde_json::from_str(&text).unwrap()
}

/// `delayshim report DIR` reads the directory (any status but 2).
fn assert_report_reads(dir: &Path) {
    let out = run(delayshim("report").arg(dir), LIMIT);
    assert_ne!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("# delayshim report"));
}

#[test]
fn confirm_replays_never_run_beside_the_next_run_with_one_job() {
    let out_dir = tempdir();
    let busy = out_dir.path().join("busy");
    let overlaps = out_dir.path().join("overlaps");
    // Each run and replay holds a directory for 0.2 s; a second one at
    // the same time cannot create it and says so.
    let program = format!(
        "mkdir {b} 2>/dev/null || echo overlap >> {o}; sleep 0.2; rmdir {b}; exit 1",
        b = busy.display(),
        o = overlaps.display()
    );
    let out = run_fuzz(&[
        "--runs",
        "3",
        "--jobs",
        "1",
        "--keep-going",
        "--confirm",
        "2",
        "--out",
        out_dir.path().join("out").to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &program,
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        stdout.matches("fails 2 of 2 replays").count(),
        3,
        "every failure replayed: {stdout}"
    );
    assert!(
        !overlaps.exists(),
        "a replay ran beside a run: {}",
        std::fs::read_to_string(&overlaps).unwrap_or_default()
    );
}

#[test]
fn replays_of_a_hang_leave_no_process_running() {
    let out_dir = tempdir();
    let out = run_fuzz(&[
        "--runs",
        "1",
        "--timeout",
        "0.5",
        "--confirm",
        "2",
        "--out",
        out_dir.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "setsid sleep 72.25 & sleep 72.5",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(" HANG ") && stdout.contains("fails 2 of 2 replays"),
        "{stdout}"
    );
    assert!(all_gone("sleep 72.25"), "the replays' daemons were killed");
    assert!(all_gone("sleep 72.5"));
}

#[test]
fn a_signal_at_any_moment_ends_the_campaign_with_its_status_and_a_summary() {
    // The calibration run of auto, a run, the replays that confirm a
    // failure: each moment is met by one of these, and each leaves no
    // process of the run tree and a directory that report reads.
    let program = "setsid sleep 73.25 & sleep 0.4; exit 1";
    for (moment, signal, status) in [
        ("calibration", libc::SIGINT, 130),
        ("a run", libc::SIGTERM, 143),
        ("the replays", libc::SIGINT, 130),
    ] {
        let out_dir = tempdir();
        let child = spawn_fuzz(&[
            "--runs",
            "4",
            "--keep-going",
            "--confirm",
            "20",
            "--strategy",
            "auto",
            "--out",
            out_dir.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            program,
        ]);
        // Calibration is the first run of the program; the first run with
        // delays writes run-0's directory; replays start when run-0 has
        // its result.json.
        match moment {
            "calibration" => wait_for("sleep 73.25"),
            "a run" => {
                while !out_dir.path().join("run-0/run.json").exists() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                wait_for("sleep 73.25");
            }
            _ => {
                // run-0 failed (0.4 s) and its 20 replays take 8 s.
                std::thread::sleep(Duration::from_millis(2500));
            }
        }
        // SAFETY: signals our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = finish(child);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(status),
            "{moment}: {stdout}{}",
            text(&out.stderr)
        );
        assert!(all_gone("sleep 73.25"), "{moment}: the daemons were killed");
        assert_eq!(summary_of(out_dir.path())["exit_code"], status, "{moment}");
        assert_report_reads(out_dir.path());
    }
}

/// Processes whose environment carries a run marker of campaign `pid`
/// (`_DELAYSHIM_RUN=PID.N`, see campaign/src/descendants.rs).
fn marked_processes(pid: u32) -> Vec<i32> {
    let wanted = format!("_DELAYSHIM_RUN={pid}.");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|process| {
            std::fs::read(format!("/proc/{process}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|entry| entry.starts_with(wanted.as_bytes()))
            })
        })
        .collect()
}

#[test]
fn a_campaign_killed_by_sigkill_leaves_no_process_of_its_runs() {
    // A daemon in a session of its own and a child in the run's group:
    // neither is the campaign's child, and SIGKILL lets it clean nothing.
    let out_dir = tempdir();
    let mut child = spawn_fuzz(&[
        "--runs",
        "2",
        "--jobs",
        "2",
        "--timeout",
        "60",
        "--out",
        out_dir.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "setsid sleep 74.25 & sleep 74.5",
    ]);
    wait_for("sleep 74.25");
    wait_for("sleep 74.5");
    let campaign = child.id();
    assert!(
        !marked_processes(campaign).is_empty(),
        "runs carry the marker"
    );
    // SAFETY: signals our own child, not its group.
    unsafe { libc::kill(campaign as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let start = std::time::Instant::now();
    let mut left = marked_processes(campaign);
    while !left.is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
        left = marked_processes(campaign);
    }
    for process in &left {
        // SAFETY: the leftovers of the campaign this test started.
        unsafe { libc::kill(*process, libc::SIGKILL) };
    }
    assert_eq!(
        left,
        Vec::<i32>::new(),
        "processes of the killed campaign's runs"
    );
    assert!(all_gone("sleep 74.25") && all_gone("sleep 74.5"));
}

/// A pipe whose reading end is closed: writes to it fail with EPIPE.
fn closed_pipe() -> std::process::Stdio {
    use std::os::fd::FromRawFd as _;
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the reading end is ours to close; the writing end becomes
    // the child's standard output.
    unsafe {
        libc::close(fds[0]);
        std::process::Stdio::from(std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    }
}

#[test]
fn a_closed_output_pipe_ends_printing_not_the_command() {
    let out_dir = tempdir();
    let child = delayshim("fuzz")
        .args([
            "--strategy",
            "every",
            "--runs",
            "2",
            "--keep-going",
            "--out",
        ])
        .arg(out_dir.path())
        .args(["--", "false"])
        .stdout(closed_pipe())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(summary_of(out_dir.path())["done"], 2);
    let child = delayshim("report")
        .arg(out_dir.path())
        .stdout(closed_pipe())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"));
}

#[test]
fn one_output_directory_holds_one_campaign() {
    let root = tempdir();
    let out = root.path().join("out");
    let fuzz = |extra: &[&str], seed: &str| {
        let mut args = vec!["--runs", "3", "--seed", seed, "--keep-going"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out.to_str().unwrap(), "--", "false"]);
        run_fuzz(&args)
    };
    assert_exit(&fuzz(&[], "5"), 1);
    // Again into the same directory: refused, nothing touched.
    let again = fuzz(&[], "6");
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("not empty") && text(&again.stderr).contains("--resume"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(summary_of(&out)["seed"], 5);
    // --resume of another campaign: refused, naming the difference.
    let other = fuzz(&["--resume"], "6");
    assert_eq!(other.status.code(), Some(2));
    assert!(
        text(&other.stderr).contains("seed 5 (now 6)"),
        "{}",
        text(&other.stderr)
    );
    // --resume of the same one: nothing left to run, the same summary.
    let resumed = fuzz(&["--resume"], "5");
    assert_eq!(resumed.status.code(), Some(1), "{}", text(&resumed.stderr));
    assert!(
        text(&resumed.stdout).contains("resuming: 3 done before, 0 to go"),
        "{}",
        text(&resumed.stdout)
    );
    assert_eq!(summary_of(&out)["done"], 3);
    // --force empties it.
    assert_exit(&fuzz(&["--force"], "6"), 1);
    assert_eq!(summary_of(&out)["seed"], 6);
    // A running campaign holds the directory's lock.
    let lock = std::fs::File::open(out.join(".lock")).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let locked = fuzz(&["--force"], "7");
    assert_eq!(locked.status.code(), Some(2));
    assert!(
        text(&locked.stderr).contains("another campaign is writing there now"),
        "{}",
        text(&locked.stderr)
    );
    drop(lock);
    // --out naming a file.
    let file = root.path().join("afile");
    std::fs::write(&file, "").unwrap();
    let out = run_fuzz(&[
        "--runs",
        "1",
        "--out",
        file.to_str().unwrap(),
        "--",
        "false",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("a file, not a directory"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn max_time_stops_a_campaign_and_resume_finishes_it() {
    let root = tempdir();
    let out = root.path().join("out");
    let fuzz = |extra: &[&str]| {
        let mut args = vec!["--runs", "8", "--seed", "8", "--keep-going"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out.to_str().unwrap(), "--", "sh", "-c"]);
        args.push("sleep 0.5; exit 1");
        run_fuzz(&args)
    };
    // Eight runs of at least 0.5 s each cannot all end within 3 s.
    let first = fuzz(&["--max-time", "3s", "--confirm", "0"]);
    let stdout = text(&first.stdout);
    assert_eq!(first.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("stopped at --max-time 3 s"), "{stdout}");
    let done_first: Vec<u64> = run_seeds(&stdout)
        .into_iter()
        .zip(stdout.lines().filter(|l| l.starts_with('[')))
        .filter(|(_, line)| !line.contains(" INTERRUPTED "))
        .map(|(seed, _)| seed)
        .collect();
    assert!(done_first.len() < 8, "not all runs: {stdout}");
    let second = fuzz(&["--confirm", "0", "--resume"]);
    let stdout = text(&second.stdout);
    assert_eq!(second.status.code(), Some(1), "{stdout}");
    let summary = summary_of(&out);
    assert_eq!(summary["done"], 8, "{stdout}");
    let seeds: BTreeSet<u64> = summary["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds.len(), 8, "each run once");
    for seed in done_first {
        assert!(seeds.contains(&seed));
    }
}

#[test]
fn fresh_dirs_setup_and_check_give_each_run_its_own_state_and_verdict() {
    let root = tempdir();
    // Each run counts itself in a file at a fixed (relative) path and in
    // {dir}: with a directory of its own, every run finds the setup's 0.
    let program = format!(
        "{PROBE} paired {{dir}} 5 1 && n=$(cat counter) && echo $((n + 1)) > counter && test \"$DELAYSHIM_RUN_DIR\" = \"$PWD\" && test -f {{dir}}/counter"
    );
    let out = root.path().join("out");
    let fuzz = |check: &str, out: &Path| {
        run_fuzz(&[
            "--runs",
            "4",
            "--jobs",
            "2",
            "--mean",
            "1",
            "--keep-going",
            "--fresh-dir",
            "--setup",
            "echo 0 > counter",
            "--check",
            check,
            "--out",
            out.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &program,
        ])
    };
    let passing = fuzz(
        "test \"$(cat counter)\" = 1 && test \"$DELAYSHIM_RUN_STATUS\" = 0",
        &out,
    );
    let stdout = text(&passing.stdout);
    assert_eq!(
        passing.status.code(),
        Some(0),
        "{stdout}{}",
        text(&passing.stderr)
    );
    assert_eq!(stdout.matches(" PASS ").count(), 4, "{stdout}");
    assert_eq!(
        std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("run-"))
            .count(),
        0,
        "passing runs' directories (fresh ones included) are not kept"
    );
    // A checker that finds the invariant broken: its own kind of failure,
    // the run's directory kept with what the program left and the checker said.
    let failing_out = root.path().join("failing");
    let failing = fuzz("echo counter is $(cat counter); exit 7", &failing_out);
    let stdout = text(&failing.stdout);
    assert_eq!(failing.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(" CHECK FAILED ") && stdout.contains("--check exited 7: counter is 1"),
        "{stdout}"
    );
    assert!(stdout.contains("4 CHECK FAILED"), "{stdout}");
    // Replays run the checker too: its verdict is confirmed like any failure.
    assert_eq!(
        stdout.matches("reproduce: fails 3 of 3 replays").count(),
        4,
        "{stdout}"
    );
    assert_eq!(summary_of(&failing_out)["by_outcome"]["CHECK FAILED"], 4);
    let run0 = failing_out.join("run-0");
    assert_eq!(
        std::fs::read_to_string(run0.join("work/counter")).unwrap(),
        "1\n"
    );
    assert_eq!(
        std::fs::read_to_string(run0.join("check.out")).unwrap(),
        "counter is 1\n"
    );
    // Its reproduce line makes a fresh directory too, and the program passes there.
    let reproduce = std::fs::read_to_string(run0.join("reproduce.sh")).unwrap();
    let again = run(clean_command("sh").arg(run0.join("reproduce.sh")), LIMIT);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{reproduce}{}",
        text(&again.stderr)
    );
}

#[test]
fn a_failing_setup_stops_the_campaign_and_still_writes_its_summary() {
    let out_dir = tempdir();
    let out = run_fuzz(&[
        "--runs",
        "3",
        "--fresh-dir",
        "--setup",
        "echo broken >&2; exit 4",
        "--out",
        out_dir.path().to_str().unwrap(),
        "--",
        "true",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--setup failed before run 0"), "{stderr}");
    let summary = summary_of(out_dir.path());
    assert_eq!(summary["exit_code"], 2);
    assert!(
        summary["stopped"]
            .as_str()
            .is_some_and(|why| why.contains("--setup failed")),
        "{summary}"
    );
    assert_report_reads(out_dir.path());
}

#[test]
fn locks_the_name_runs_print_is_a_strategy_fuzz_takes() {
    let out_dir = tempdir();
    let out = run_fuzz(&[
        "--strategy",
        "locks",
        "--runs",
        "1",
        "--out",
        out_dir.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "true",
    ]);
    assert_ne!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let settings = &summary_of(out_dir.path())["settings"];
    assert_eq!(settings["DELAYSHIM_FUNCS"], "fcntl,flock", "{settings}");
    assert_eq!(settings["DELAYSHIM_LOCKS"], "locks", "{settings}");
    let help = run(delayshim("fuzz").arg("--help"), LIMIT);
    let help = text(&help.stdout);
    assert!(
        help.contains("or auto: each run draws a strategy") && help.contains("default auto"),
        "{help}"
    );
}
