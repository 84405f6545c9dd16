//! The shim never breaks its host, second round: each test is one way a
//! hostile but real program broke an earlier shim (descriptors held for
//! good, a private copy of standard error, SIGPIPE from the shim's own
//! line, sandboxes of the program's own, signal handlers that jump out of
//! the shim, many threads at once, environments built on purpose, small
//! alternate stacks, tiny transfers, and seeds taken from another run).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{
    assert_exit, c_program, clean_command, read_stats, read_stats_events, run, tempdir, text,
    totals, under_shim,
};

const LIMIT: Duration = Duration::from_secs(120);

fn hostile() -> PathBuf {
    c_program("hostile", &[])
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_owned()
}

#[test]
fn a_background_job_that_silences_itself_holds_no_copy_of_its_callers_stderr() {
    let dir = tempdir();
    let out = run(
        under_shim(
            hostile(),
            &[("DELAYSHIM_LOG", "stderr"), ("DELAYSHIM_STATS", "stderr")],
        )
        .args(["background-job", dir.path().to_str().unwrap()]),
        LIMIT,
    );
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("\"event\":\"start\""),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("held")).unwrap(),
        "0\n",
        "the child still holds a descriptor on its caller's pipe"
    );
}

/// A pipe whose reader is gone, as the program's standard error.
fn broken_pipe() -> std::fs::File {
    let mut ends = [0; 2];
    // SAFETY: pipe fills two descriptors, which become owned files.
    assert_eq!(
        unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    use std::os::fd::FromRawFd;
    // SAFETY: both descriptors were just made and are owned once each.
    let (read, write) = unsafe {
        (
            std::fs::File::from_raw_fd(ends[0]),
            std::fs::File::from_raw_fd(ends[1]),
        )
    };
    drop(read);
    write
}

#[test]
fn the_shims_lines_to_a_closed_pipe_never_kill_the_program() {
    let dir = tempdir();
    for settings in [
        vec![("DELAYSHIM_STATS", "stderr")],
        vec![("DELAYSHIM_LOG", "stderr"), ("DELAYSHIM_MEAN_US", "2")],
    ] {
        let status = under_shim(hostile(), &settings)
            .args(["some-writes", dir.path().to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(broken_pipe())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(0), "{settings:?}: {status:?}");
        assert_eq!(std::fs::read(dir.path().join("data")).unwrap().len(), 10);
    }
}

#[test]
fn a_program_that_sandboxes_itself_is_passed_through_not_killed() {
    for mode in ["strict-sandbox", "allow-list-sandbox"] {
        let dir = tempdir();
        let native = run(
            clean_command(hostile()).args([mode, dir.path().to_str().unwrap()]),
            LIMIT,
        );
        assert_exit(&native, 0);
        let stats = dir.path().join("stats");
        let log = dir.path().join("log");
        let shimmed = run(
            under_shim(
                hostile(),
                &[
                    ("DELAYSHIM_MEAN_US", "50"),
                    ("DELAYSHIM_STATS", stats.to_str().unwrap()),
                    ("DELAYSHIM_LOG", log.to_str().unwrap()),
                ],
            )
            .args([mode, dir.path().to_str().unwrap()]),
            LIMIT,
        );
        assert_exit(&shimmed, 0);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("data")).unwrap(),
            format!("before\n{}", "after\n".repeat(5)),
            "{mode}"
        );
        // Fuzzed until the sandbox, with its statistics written before it.
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(log.contains("fn=write"), "{mode}: {log}");
        let exits = read_stats(&stats);
        assert_eq!(exits.len(), 1, "{mode}");
        assert_eq!(exits[0]["calls"]["write"], 1, "{mode}: {exits:?}");
    }
}

#[test]
fn a_signal_handler_that_jumps_out_of_a_delayed_lock_leaks_no_descriptor() {
    let dir = tempdir();
    let shimmed = run(
        under_shim(
            hostile(),
            &[
                ("DELAYSHIM_FUNCS", "fcntl,fcntl64"),
                ("DELAYSHIM_DIST", "fixed"),
                ("DELAYSHIM_MEAN_US", "5000"),
            ],
        )
        .args(["lock-timeouts", dir.path().to_str().unwrap()]),
        LIMIT,
    );
    assert_exit(&shimmed, 0);
    let printed = text(&shimmed.stdout);
    let counts: Vec<i64> = printed
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(counts.len(), 2, "{printed}");
    assert!(
        counts[1] <= counts[0] + 1,
        "200 jumps out of a delayed lock leaked descriptors: {printed}"
    );
}

#[test]
fn a_thread_whose_signal_handler_jumps_out_of_the_shim_is_still_delayed() {
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let shimmed = run(
        under_shim(
            hostile(),
            &[
                ("DELAYSHIM_FUNCS", "write"),
                ("DELAYSHIM_DIST", "fixed"),
                ("DELAYSHIM_MEAN_US", "100"),
                ("DELAYSHIM_BUDGET", "1"),
                ("DELAYSHIM_STATS", stats.to_str().unwrap()),
            ],
        )
        .args(["writes-under-jumps", dir.path().to_str().unwrap()]),
        LIMIT,
    );
    assert_exit(&shimmed, 0);
    let exits = read_stats(&stats);
    let calls = totals(&exits, "calls")["write"];
    let delayed = totals(&exits, "delayed")["write"];
    // Only a jump between a call's count and its decision (a few
    // instructions) leaves a call undelayed.
    assert!(
        calls >= 1900 && delayed * 100 >= calls * 95,
        "{delayed} of {calls} writes delayed"
    );
}

#[test]
fn every_delay_of_many_threads_at_once_is_logged_recorded_and_matched() {
    let dir = tempdir();
    let (stats, log, record) = (
        dir.path().join("stats"),
        dir.path().join("log"),
        dir.path().join("record"),
    );
    let (threads, writes) = (48, 100);
    let shimmed = run(
        under_shim(
            hostile(),
            &[
                ("DELAYSHIM_FUNCS", "write"),
                ("DELAYSHIM_MEAN_US", "20"),
                ("DELAYSHIM_BUDGET", "1"),
                ("DELAYSHIM_PATHS", "*/data"),
                ("DELAYSHIM_STATS", stats.to_str().unwrap()),
                ("DELAYSHIM_LOG", log.to_str().unwrap()),
                ("DELAYSHIM_RECORD", record.to_str().unwrap()),
            ],
        )
        .args([
            "many-threads",
            dir.path().to_str().unwrap(),
            &threads.to_string(),
            &writes.to_string(),
        ]),
        LIMIT,
    );
    assert_exit(&shimmed, 0);
    let all = threads * writes;
    let delayed = totals(&read_stats(&stats), "delayed")["write"];
    assert_eq!(delayed, all, "every write to the matching path is delayed");
    let logged = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("fn=write"))
        .count();
    let recorded = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("call ") && l.contains("fn=write"))
        .count();
    assert_eq!((logged as u64, recorded as u64), (all, all));
}

#[test]
fn an_environment_built_on_purpose_gets_no_tree_entry() {
    let shimmed = run(under_shim("env", &[]).args(["-i", "printenv"]), LIMIT);
    assert_exit(&shimmed, 0);
    assert_eq!(text(&shimmed.stdout), "", "env -i must print nothing");
    let python = run(
        under_shim("python3", &[]).args([
            "-c",
            "import subprocess; print(subprocess.run(['/usr/bin/printenv'], env={'A': '1'}, capture_output=True, text=True).stdout, end='')",
        ]),
        LIMIT,
    );
    assert_exit(&python, 0);
    assert_eq!(text(&python.stdout), "A=1\n");
    // A child that is shimmed still gets its place in the tree.
    let inherited = run(
        under_shim("sh", &[]).args(["-c", "printenv DELAYSHIM_TREE"]),
        LIMIT,
    );
    assert_exit(&inherited, 0);
    assert!(!text(&inherited.stdout).trim().is_empty());
}

#[test]
fn a_crash_reporter_on_a_4_kb_alternate_stack_still_starts_programs() {
    // The last round's 8 KB crash reporter (tests/c/host.c), on half the
    // stack: posix_spawn and fork-then-execve from its SIGSEGV handler.
    let host = c_program("host", &[]);
    let dir = tempdir();
    let native = run(
        clean_command(&host).args(["report-on-crash", "4096"]),
        LIMIT,
    );
    assert_exit(&native, 42);
    let shimmed = run(
        under_shim(&host, &[("DELAYSHIM_STATS", &path(dir.path(), "stats"))])
            .args(["report-on-crash", "4096"]),
        LIMIT,
    );
    assert_exit(&shimmed, 42);
}

#[test]
fn short_faults_leave_transfers_of_0_and_1_byte_whole_and_uncounted() {
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let shimmed = run(
        under_shim(
            hostile(),
            &[
                ("DELAYSHIM_FAULTS", "write:short:1"),
                ("DELAYSHIM_STATS", stats.to_str().unwrap()),
            ],
        )
        .args(["small-writes", dir.path().to_str().unwrap()]),
        LIMIT,
    );
    assert_exit(&shimmed, 0);
    assert_eq!(text(&shimmed.stdout), "0 1 2\n");
    assert_eq!(totals(&read_stats(&stats), "faults")["write"], 1);
}

#[test]
fn a_seed_set_explicitly_ignores_a_tree_entry_from_another_run() {
    let dir = tempdir();
    let lineages: Vec<String> = [None, Some("7:1234"), Some("8:abcd")]
        .iter()
        .enumerate()
        .map(|(i, tree)| {
            let record = dir.path().join(format!("record-{i}"));
            let mut command = under_shim(
                hostile(),
                &[
                    ("DELAYSHIM_SEED", "7"),
                    ("DELAYSHIM_RECORD", record.to_str().unwrap()),
                ],
            );
            if let Some(tree) = tree {
                command.env("DELAYSHIM_TREE", tree);
            }
            let out = run(
                command.args(["some-writes", dir.path().to_str().unwrap()]),
                LIMIT,
            );
            assert_exit(&out, 0);
            let record = std::fs::read_to_string(&record).unwrap();
            let process = record.lines().find(|l| l.starts_with("process ")).unwrap();
            process.split_whitespace().nth(1).unwrap().to_owned()
        })
        .collect();
    // The seed 7 entry is this tree's own place (a nested program); the
    // seed 8 one is another run's, and is not taken.
    assert_eq!(lineages[0], "proc=0x5eed");
    assert_eq!(lineages[2], lineages[0], "{lineages:?}");
    assert_eq!(lineages[1], "proc=0x1234");
    // The command starts a tree of its own whatever it inherited.
    let log = dir.path().join("run-log");
    let out = run(
        crate::util::delayshim("run")
            .env("DELAYSHIM_TREE", "7:1234")
            .args(["--seed", "7", "--record"])
            .arg(&log)
            .args(["--", hostile().to_str().unwrap(), "some-writes"])
            .arg(dir.path()),
        LIMIT,
    );
    assert_exit(&out, 0);
    let record = std::fs::read_to_string(&log).unwrap();
    assert!(record.contains("process proc=0x5eed "), "{record}");
}

#[test]
fn the_shim_holds_no_descriptor_so_a_low_limit_is_the_programs_own() {
    let dir = tempdir();
    let opened = |shimmed: bool| {
        let mut command = if shimmed {
            under_shim(
                hostile(),
                &[
                    ("DELAYSHIM_STATS", &path(dir.path(), "stats")),
                    ("DELAYSHIM_LOG", &path(dir.path(), "log")),
                    ("DELAYSHIM_RECORD", &path(dir.path(), "record")),
                ],
            )
        } else {
            clean_command(hostile())
        };
        command.args(["open-until-full", dir.path().to_str().unwrap()]);
        // SAFETY: setrlimit only, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 16,
                    rlim_max: 16,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                Ok(())
            });
        }
        let out = run(&mut command, LIMIT);
        assert_exit(&out, 0);
        text(&out.stdout)
    };
    let native = opened(false);
    assert!(native.starts_with("opened 1"), "{native}");
    assert_eq!(opened(true), native);
    assert!(read_stats_events(&dir.path().join("stats")).len() >= 2);
}
