//! The shim never breaks its host: `_exit` from a signal handler while
//! another thread allocates, intercepted calls from timer handlers and on
//! the smallest alternate stack, long and hostile paths, a host that reuses
//! the shim's descriptor numbers, symlinked output paths, EINTR from a
//! blocked lock, and processes that leave by quick_exit.

use std::time::Duration;

use crate::util::{
    assert_exit, c_program, clean_command, read_stats, read_stats_events, run, shim, tempdir, text,
    under_shim,
};

const LIMIT: Duration = Duration::from_secs(120);

fn host() -> std::path::PathBuf {
    c_program("host", &[])
}

/// Runs the host's `mode` in `dir` under 2 us delays, logged to `log`.
fn logged_host(mode: &str, dir: &std::path::Path, log: &std::path::Path) -> std::process::Output {
    run(
        under_shim(
            host(),
            &[
                ("DELAYSHIM_MEAN_US", "2"),
                ("DELAYSHIM_LOG", log.to_str().unwrap()),
            ],
        )
        .arg(mode)
        .arg(dir),
        LIMIT,
    )
}

#[test]
fn exit_from_a_signal_handler_while_another_thread_allocates_never_hangs() {
    // The old shim formatted the statistics line with the heap in _exit and
    // hung in about two runs of three.
    let dir = tempdir();
    let stats = dir.path().join("stats");
    for _ in 0..60 {
        let out = run(
            under_shim(host(), &[("DELAYSHIM_STATS", stats.to_str().unwrap())])
                .arg("exit-in-handler"),
            Duration::from_secs(20),
        );
        assert_exit(&out, 0);
    }
    assert_eq!(read_stats(&stats).len(), 60, "every run wrote its line");
}

#[test]
fn timer_handlers_calling_intercepted_functions_do_not_corrupt_the_heap() {
    let dir = tempdir();
    let log = dir.path().join("log");
    let out = run(
        under_shim(
            host(),
            &[
                ("DELAYSHIM_MEAN_US", "50"),
                ("DELAYSHIM_LOG", log.to_str().unwrap()),
                ("DELAYSHIM_PATHS", "*.db"),
            ],
        )
        .args(["handler-io", dir.path().to_str().unwrap()]),
        LIMIT,
    );
    assert_exit(&out, 0);
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(
        lines.lines().count() > 50,
        "the handler's calls were delayed and logged"
    );
}

#[test]
fn a_handler_on_the_smallest_alternate_stack_survives_a_delayed_logged_call() {
    let dir = tempdir();
    let out = run(
        under_shim(
            host(),
            &[
                ("DELAYSHIM_MEAN_US", "20"),
                ("DELAYSHIM_LOG", dir.path().join("log").to_str().unwrap()),
                (
                    "DELAYSHIM_RECORD",
                    dir.path().join("record").to_str().unwrap(),
                ),
                ("DELAYSHIM_PATHS", "*.db"),
            ],
        )
        .args(["altstack", dir.path().to_str().unwrap()]),
        LIMIT,
    );
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("handler ran 20 times"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn long_paths_are_cut_and_marked_and_newlines_cannot_forge_lines() {
    let dir = tempdir();
    let log = dir.path().join("log");
    let out = logged_host("long-path", dir.path(), &log);
    assert_exit(&out, 0);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.lines().any(|line| line.ends_with(" ...truncated")),
        "{log}"
    );
    for line in log.lines() {
        assert!(
            line.starts_with("delayshim pid="),
            "a forged or broken line: {line:?}"
        );
    }
    assert!(log.contains("new\\x0aline\\x20delayshim"), "{log}");
}

#[test]
fn a_host_that_reuses_the_shims_descriptor_numbers_never_gets_its_lines() {
    let dir = tempdir();
    let log = dir.path().join("log");
    let out = logged_host("reuse-fds", dir.path(), &log);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("host-data")).unwrap(),
        "host\n".repeat(10)
    );
    assert!(std::fs::read_to_string(&log).unwrap().lines().count() >= 20);

    // bash's `exec 3>file` under a low descriptor limit.
    let out = run(
        under_shim(
            "bash",
            &[("DELAYSHIM_MEAN_US", "2"), ("DELAYSHIM_LOG", log.to_str().unwrap())],
        )
        .current_dir(dir.path())
        // The inner bash loads the shim under the low limit, so the shim's
        // own descriptor lies among the numbers the loop takes over.
        .args([
            "-c",
            "ulimit -n 256; exec bash -c 'for fd in $(seq 3 200); do eval \"exec $fd>out-$fd.txt\"; done; echo data >&3; echo data >&199'",
        ]),
        LIMIT,
    );
    assert_exit(&out, 0);
    for fd in 3..=200 {
        let written = std::fs::read_to_string(dir.path().join(format!("out-{fd}.txt"))).unwrap();
        assert!(!written.contains("delayshim"), "fd {fd}: {written}");
    }
}

#[test]
fn output_files_are_private_and_never_followed_through_a_symlink() {
    let dir = tempdir();
    let real = dir.path().join("victim");
    std::fs::write(&real, "").unwrap();
    let link = dir.path().join("stats");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    for name in ["DELAYSHIM_STATS", "DELAYSHIM_LOG", "DELAYSHIM_RECORD"] {
        let out = run(
            &mut under_shim("true", &[(name, link.to_str().unwrap())]),
            LIMIT,
        );
        assert_exit(&out, 64);
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(name) && stderr.contains("symbolic link"),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "");
    let fresh = dir.path().join("fresh");
    assert_exit(
        &run(
            &mut under_shim("true", &[("DELAYSHIM_STATS", fresh.to_str().unwrap())]),
            LIMIT,
        ),
        0,
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// F_SETLKW under a long fixed delay, with a SIGALRM at 100 ms.
fn setlkw(mode: &str, shimmed: bool) -> String {
    let dir = tempdir();
    let mut command = if shimmed {
        under_shim(
            host(),
            &[("DELAYSHIM_DIST", "fixed"), ("DELAYSHIM_MEAN_US", "300000")],
        )
    } else {
        clean_command(host())
    };
    let out = run(
        command.args(["setlkw", dir.path().to_str().unwrap(), mode]),
        LIMIT,
    );
    assert_exit(&out, 0);
    text(&out.stdout)
}

#[test]
fn a_signal_interrupts_a_delayed_blocking_lock_exactly_as_it_would_natively() {
    // Held by another process, handler without SA_RESTART: EINTR.
    assert_eq!(setlkw("norestart", false), "F_SETLKW -1 EINTR\n");
    assert_eq!(setlkw("norestart", true), "F_SETLKW -1 EINTR\n");
    // With SA_RESTART: waits for the holder, then succeeds.
    assert_eq!(setlkw("restart", false), "F_SETLKW 0 -\n");
    assert_eq!(setlkw("restart", true), "F_SETLKW 0 -\n");
    // Not held: natively it returns at once, so the signal that cut the
    // delay short must not turn it into EINTR or a wait.
    assert_eq!(setlkw("free", false), "F_SETLKW 0 -\n");
    assert_eq!(setlkw("free", true), "F_SETLKW 0 -\n");
}

#[test]
fn quick_exit_writes_statistics_and_a_killed_process_is_seen_missing() {
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let out = run(
        under_shim(host(), &[("DELAYSHIM_STATS", stats.to_str().unwrap())])
            .args(["quick-exit", dir.path().to_str().unwrap()]),
        LIMIT,
    );
    assert_exit(&out, 0);
    let lines = read_stats(&stats);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["delayed"]["fsync"], 1);
    // A process killed by a signal leaves a start line and no exit line.
    let killed = dir.path().join("killed");
    let out = run(
        under_shim("sh", &[("DELAYSHIM_STATS", killed.to_str().unwrap())])
            .args(["-c", "kill -9 $$"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), None);
    let events = read_stats_events(&killed);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "start");
}

#[test]
fn the_shim_takes_almost_nothing_from_every_threads_stack() {
    // Its thread-locals come out of each thread's stack: a 16 KB thread
    // could not start when they held the shim's buffers.
    let out = run(under_shim(host(), &[]).arg("small-stack"), LIMIT);
    assert_exit(&out, 0);
}

#[test]
fn bad_path_pointers_fail_with_efault_as_natively() {
    let native = run(clean_command(host()).arg("bad-pointer"), LIMIT);
    assert_exit(&native, 0);
    let dir = tempdir();
    let shimmed = run(
        under_shim(
            host(),
            &[
                ("DELAYSHIM_FUNCS", "open,rename"),
                ("DELAYSHIM_PATHS", "/tmp/*"),
                ("DELAYSHIM_LOG", dir.path().join("log").to_str().unwrap()),
            ],
        )
        .arg("bad-pointer"),
        LIMIT,
    );
    assert_exit(&shimmed, 0);
    assert_eq!(text(&shimmed.stdout), text(&native.stdout));
    assert_eq!(
        text(&native.stdout).matches("EFAULT").count(),
        4,
        "{}",
        text(&native.stdout)
    );
}

#[test]
fn a_host_that_reopens_standard_error_never_gets_the_shims_lines() {
    let dir = tempdir();
    let out = run(
        under_shim(
            host(),
            &[("DELAYSHIM_LOG", "stderr"), ("DELAYSHIM_MEAN_US", "2")],
        )
        .args(["stderr-reuse", dir.path().to_str().unwrap()]),
        LIMIT,
    );
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data")).unwrap(),
        "DATA\n"
    );
    // The shim keeps no copy of standard error (forked children would
    // hold their caller's pipe with it): lines after the host took the
    // number over are dropped, not written into the host's file.
    assert!(
        !text(&out.stderr).contains("fn=write"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_injected_close_error_still_closes() {
    let dir = tempdir();
    let out = run(
        under_shim(host(), &[("DELAYSHIM_FAULTS", "close:EIO:1")])
            .args(["close-fault", dir.path().to_str().unwrap()]),
        LIMIT,
    );
    assert_exit(&out, 0);
    assert_eq!(text(&out.stdout), "close -1 EIO, then F_GETFD -1 EBADF\n");
}

#[test]
fn a_crash_reporter_on_an_8_kb_alternate_stack_still_starts_programs() {
    // posix_spawn with the process's environment and fork-then-execve with
    // one of its own, from a SIGSEGV handler on glibc's classic SIGSTKSZ.
    let native = run(clean_command(host()).arg("report-on-crash"), LIMIT);
    assert_exit(&native, 42);
    let dir = tempdir();
    let shimmed = run(
        under_shim(
            host(),
            &[(
                "DELAYSHIM_STATS",
                dir.path().join("stats").to_str().unwrap(),
            )],
        )
        .arg("report-on-crash"),
        LIMIT,
    );
    assert_exit(&shimmed, 42);
}

#[test]
fn a_seccomp_sandbox_that_kills_on_process_vm_readv_runs_as_natively() {
    // The filter installed with prctl, or with syscall(SYS_seccomp) as
    // libseccomp does; the checks run in the program, then in one it
    // executes (the shim learns of the filter at load there).
    for mode in ["sandboxed", "sandboxed-syscall"] {
        let dir = tempdir();
        let native = run(
            clean_command(host()).args([mode, dir.path().to_str().unwrap()]),
            LIMIT,
        );
        assert_exit(&native, 0);
        let log = dir.path().join("log");
        let shimmed = run(
            under_shim(
                host(),
                &[
                    ("DELAYSHIM_MEAN_US", "2"),
                    ("DELAYSHIM_LOG", log.to_str().unwrap()),
                ],
            )
            .args([mode, dir.path().to_str().unwrap()]),
            LIMIT,
        );
        assert_exit(&shimmed, 0);
        assert_eq!(text(&shimmed.stdout), text(&native.stdout), "{mode}");
        assert_eq!(
            text(&native.stdout),
            "execve -1 ENOENT\nlock 0, spawned 0 0\n".repeat(2)
        );
        let log = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            log.matches("cmd=F_SETLK lock=F_WRLCK").count(),
            2,
            "{mode}: the lock, read without the kernel's reader, is still delayed: {log}"
        );
    }
}

#[test]
fn a_program_that_dlopens_and_dlcloses_the_shim_keeps_working() {
    // The shim's environment entry and fork handlers point into it: it
    // must stay mapped.
    let out = run(
        clean_command(host())
            .args(["dlclose", shim().to_str().unwrap()])
            .env("DELAYSHIM_SEED", "3"),
        LIMIT,
    );
    assert_exit(&out, 0);
    assert_eq!(text(&out.stdout), "environment read, child 0\n");
}
