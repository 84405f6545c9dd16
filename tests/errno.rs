//! The shim returns exactly what the real call returns, errno included.

use std::time::Duration;

use crate::util::{clean_command, run, tempdir, text, under_shim, PROBE};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn results_and_errno_match_the_real_calls() {
    let dir = tempdir();
    let plain = run(clean_command(PROBE).arg("errno").arg(dir.path()), LIMIT);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let plain = text(&plain.stdout);
    // The probe's expectations of libc itself, so the comparison means something.
    for line in [
        "pwrite64 EBADF: ret=-1 errno=9",
        "pwrite64 pipe ESPIPE: ret=-1 errno=29",
        "fcntl64 F_SETLK conflict: ret=-1 errno=11",
        "fcntl64 F_OFD_SETLK conflict: ret=-1 errno=11",
        "fcntl64 F_SETLK bad pointer EFAULT: ret=-1 errno=14",
        "fcntl64 F_DUPFD >= 100: ret=1 errno=0",
        "F_GETLK fills: l_type=1 l_pid is the child: true",
        "errno after successful calls: 12345",
    ] {
        assert!(
            plain.contains(line),
            "without the shim: {line:?} missing from\n{plain}"
        );
    }
    for settings in [
        &[("DELAYSHIM_WHEN", "both")][..],
        &[("DELAYSHIM_FCNTL", "locks"), ("DELAYSHIM_LOG", "stderr")],
        &[
            ("DELAYSHIM_PATHS", "*/errno-probe"),
            ("DELAYSHIM_DIST", "uniform"),
        ],
        &[("DELAYSHIM_ENABLE", "0")],
    ] {
        let mut all = vec![
            ("DELAYSHIM_FUNCS", "all"),
            ("DELAYSHIM_PROB", "1"),
            ("DELAYSHIM_MEAN_US", "30"),
        ];
        all.extend_from_slice(settings);
        let shimmed = run(under_shim(PROBE, &all).arg("errno").arg(dir.path()), LIMIT);
        assert!(shimmed.status.success(), "{}", text(&shimmed.stderr));
        assert_eq!(text(&shimmed.stdout), plain, "under the shim with {all:?}");
    }
}

#[test]
fn a_delay_outlasts_signals_and_their_handlers_run() {
    let dir = tempdir();
    // A fixed 30 ms delay on fsync, interrupted every millisecond by SIGALRM.
    let out = run(
        under_shim(
            PROBE,
            &[("DELAYSHIM_DIST", "fixed"), ("DELAYSHIM_MEAN_US", "30000")],
        )
        .arg("signals")
        .arg(dir.path()),
        LIMIT,
    );
    let stdout = text(&out.stdout);
    let field = |name: &str| -> u64 {
        stdout
            .split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {stdout:?}"))
    };
    assert_eq!(field("ret="), 0);
    assert!(
        field("elapsed_us=") >= 30_000,
        "the whole delay is slept: {stdout}"
    );
    assert!(
        field("handler_runs=") > 0,
        "handlers ran during the delay: {stdout}"
    );
}
