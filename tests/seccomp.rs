//! The seccomp backend: every family held at the system-call boundary in
//! a static program with results and errno unchanged, the same delays as
//! the shim for one seed, process trees, a Go program, a program with its
//! own filter, and what a held call sees when its process or the
//! supervisor goes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{
    assert_exit, c_program, clean_command, delayshim, read_log, read_stats, run, target_dir,
    tempdir, text, totals, under_shim,
};

const LIMIT: Duration = Duration::from_secs(120);

fn seccomp_run(settings: &[&str]) -> Command {
    let mut command = delayshim("run");
    command.args(["--backend", "seccomp"]).args(settings);
    command
}

#[test]
fn every_family_in_a_static_program_with_results_and_errno_unchanged() {
    let program = c_program("families", &["-static"]);
    let other_fs = tempfile::Builder::new()
        .prefix("delayshim-other-fs-")
        .tempdir_in("/dev/shm")
        .expect("a directory on /dev/shm (tmpfs), for EXDEV");
    let log_dir = tempdir();
    let log = log_dir.path().join("log");
    let run_in = |command: &mut Command| {
        let dir = tempdir();
        let out = run(command.arg(dir.path()).arg(other_fs.path()), LIMIT);
        assert_exit(&out, 0);
        let _ = std::fs::remove_file(other_fs.path().join("moved"));
        text(&out.stdout)
    };
    let native = run_in(&mut clean_command(&program));
    let held = run_in(
        seccomp_run(&[
            "--funcs", "all", "--fds", "all", "--calls", "all", "--mean", "2",
        ])
        .arg("--log")
        .arg(&log)
        .arg("--")
        .arg(&program),
    );
    assert_eq!(held, native, "results and errno under the seccomp backend");
    let delayed: Vec<String> = read_log(&log)
        .iter()
        .map(|line| line.get("fn").unwrap().to_owned())
        .collect();
    for call in [
        "write",
        "writev",
        "pwrite64",
        "fsync",
        "fdatasync",
        "sync_file_range",
        "syncfs",
        "msync",
        "openat",
        "close",
        "flock",
        "fcntl",
        "ftruncate",
        "truncate",
        "fallocate",
        "rename",
        "renameat",
        "renameat2",
        "unlink",
        "unlinkat",
        "link",
        "linkat",
        "symlink",
        "mkdir",
        "rmdir",
        "read",
        "pread64",
    ] {
        assert!(
            delayed.iter().any(|d| d == call),
            "{call} never delayed: {delayed:?}"
        );
    }
}

#[test]
fn one_seed_draws_the_same_delays_under_either_backend() {
    let program = c_program("held", &[]);
    let delays = |mut command: Command| {
        let dir = tempdir();
        let log = dir.path().join("log");
        let out = run(
            command
                .env("DELAYSHIM_LOG", &log)
                .arg(dir.path().join("file"))
                .arg("40"),
            LIMIT,
        );
        assert_exit(&out, 0);
        read_log(&log)
            .iter()
            .map(|l| l.get("delay_us").unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // Small delays: the budget, which follows the clock, stays out.
    let settings = [
        ("DELAYSHIM_SEED", "77"),
        ("DELAYSHIM_FUNCS", "pwrite"),
        ("DELAYSHIM_MEAN_US", "20"),
    ];
    let mut preload = under_shim(&program, &settings);
    preload.arg("writes");
    let mut held = seccomp_run(&[]);
    held.envs(settings).arg("--").arg(&program).arg("writes");
    let (shim, supervisor) = (delays(preload), delays(held));
    assert_eq!(shim.len(), 40, "{shim:?}");
    assert_eq!(supervisor, shim, "the same seed, the same delays");
}

#[test]
fn a_tree_of_forks_and_execs_is_held_whole() {
    let program = c_program("held", &["-static"]);
    let dir = tempdir();
    let (log, stats) = (dir.path().join("log"), dir.path().join("stats"));
    let p = program.display();
    let d = dir.path().display();
    let script = format!("{p} writes {d}/a 3 & {p} writes {d}/b 3; wait");
    let out = run(
        seccomp_run(&["--funcs", "pwrite", "--mean", "1", "--seed", "5"])
            .arg("--log")
            .arg(&log)
            .arg("--stats")
            .arg(&stats)
            .args(["--", "sh", "-c", &script]),
        LIMIT,
    );
    assert_exit(&out, 0);
    let pids: std::collections::BTreeSet<String> = read_log(&log)
        .iter()
        .map(|l| l.get("pid").unwrap().to_owned())
        .collect();
    assert_eq!(pids.len(), 2, "both exec'd children delayed: {pids:?}");
    let stats = read_stats(&stats);
    assert_eq!(totals(&stats, "delayed")["pwrite64"], 6);
    assert!(stats
        .iter()
        .all(|s| s["seed"] == 5 && s["backend"] == "seccomp"));
}

#[test]
fn a_process_that_exits_while_its_call_is_held_ends_the_run() {
    let program = c_program("held", &["-static"]);
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let out = run(
        seccomp_run(&["--funcs", "pwrite", "--mean", "60s", "--dist", "fixed"])
            .arg("--stats")
            .arg(&stats)
            .arg("--")
            .arg(&program)
            .arg("exit")
            .arg(dir.path().join("file")),
        // Far below the held call's minute.
        Duration::from_secs(30),
    );
    assert_exit(&out, 3);
    assert_eq!(totals(&read_stats(&stats), "delayed")["pwrite64"], 1);
}

#[test]
fn a_held_call_fails_with_enosys_when_the_supervisor_is_killed() {
    let program = c_program("held", &["-static"]);
    let dir = tempdir();
    let socket_path = dir.path().join("socket");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let log = dir.path().join("log");
    let mut supervisor = seccomp_run(&["--funcs", "pwrite", "--mean", "60s", "--dist", "fixed"])
        .arg("--log")
        .arg(&log)
        .arg("--")
        .arg(&program)
        .arg("orphan")
        .arg(dir.path().join("file"))
        .arg(&socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The log line is written when the call is decided, before it is held.
    let start = Instant::now();
    while std::fs::read_to_string(&log).map_or(true, |l| l.is_empty()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the call was never held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    supervisor.kill().unwrap();
    supervisor.wait().unwrap();
    let mut message = [0u8; 64];
    let n = socket
        .recv(&mut message)
        .expect("the held child reports, not hangs");
    assert_eq!(
        std::str::from_utf8(&message[..n]).unwrap(),
        format!("ret -1 errno {}", libc::ENOSYS)
    );
}

#[test]
fn a_program_with_its_own_seccomp_filter_keeps_it() {
    let program = c_program("held", &["-static"]);
    let outputs = |command: &mut Command| {
        let dir = tempdir();
        let out = run(command.arg("filter").arg(dir.path()), LIMIT);
        assert_exit(&out, 0);
        text(&out.stdout)
    };
    let native = outputs(&mut clean_command(&program));
    let dir = tempdir();
    let log = dir.path().join("log");
    let held = outputs(
        seccomp_run(&["--mean", "1"])
            .arg("--log")
            .arg(&log)
            .arg("--")
            .arg(&program),
    );
    assert_eq!(held, native);
    assert!(native.contains("mkdir -1 EPERM"), "{native}");
    let delayed: Vec<String> = read_log(&log)
        .iter()
        .map(|l| l.get("fn").unwrap().to_owned())
        .collect();
    assert!(
        delayed.contains(&"pwrite64".to_owned()) && delayed.contains(&"fsync".to_owned()),
        "{delayed:?}"
    );
}

/// `tests/go/NAME.go`, built once into the target directory.
fn go_program(name: &str) -> PathBuf {
    let dir = target_dir().join("go-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/go")
        .join(format!("{name}.go"));
    let status = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .env("GOCACHE", dir.join("cache"))
        .env("GO111MODULE", "off")
        .status()
        .expect("go (golang-go; see .ci/run)");
    assert!(status.success(), "go build {}", source.display());
    out
}

#[test]
fn a_multithreaded_go_program_is_delayed_on_each_thread() {
    let program = go_program("writers");
    let check = run(delayshim("check").arg(&program), LIMIT);
    assert_exit(&check, 0);
    assert!(
        text(&check.stdout).contains("backend (auto): seccomp"),
        "{}",
        text(&check.stdout)
    );
    let dir = tempdir();
    let log = dir.path().join("log");
    let out = run(
        delayshim("run")
            .args(["--mean", "50", "--log"])
            .arg(&log)
            .arg("--")
            .arg(&program)
            .arg(dir.path()),
        LIMIT,
    );
    assert_exit(&out, 0);
    assert_eq!(text(&out.stdout), "ok\n");
    let lines = read_log(&log);
    let threads: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l.get("tid").unwrap()).collect();
    assert!(threads.len() >= 2, "{threads:?}");
    assert!(lines.iter().any(|l| l.get("fn") == Some("fsync")));
}

#[test]
fn fuzz_finds_a_static_programs_json_race_and_reproduces_it_under_the_supervisor() {
    let program = c_program("jsonrace", &["-static"]);
    let scratch = tempfile::Builder::new()
        .prefix("delayshim-jsonrace-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let out_dir = tempdir();
    // 20 rounds each, the second worker 20 ms after the first: natively
    // they rarely overlap; delays on their calls make them.
    let out = run(
        delayshim("fuzz")
            .args(["--runs", "30", "--seed", "3", "--confirm", "1", "--out"])
            .arg(out_dir.path())
            .arg("--")
            .arg(&program)
            .arg(scratch.path().join("counter.json"))
            .args(["raw", "20", "20000"]),
        Duration::from_secs(600),
    );
    let stdout = text(&out.stdout);
    assert_exit(&out, 1);
    assert!(
        text(&out.stderr).contains("backend seccomp"),
        "{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("lost updates"), "{stdout}");
    assert!(
        stdout.contains("run --backend seccomp -- ")
            && stdout.contains("replays of its recorded delays"),
        "{stdout}"
    );
}
