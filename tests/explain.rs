//! `--strategy auto` names each run's strategy and reproduces it; a
//! failing run's recording is confirmed by replay; `delayshim minimize`
//! shrinks a failing run to the delays the bug needs and names their call
//! sites by function.

use std::time::Duration;

use crate::util::{artifacts, assert_exit, delayshim, run, tempdir, text};

const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn auto_gives_each_run_a_strategy_its_reproduce_line_states() {
    let out_dir = tempdir();
    let lock_gap = artifacts().release.join("lock-gap");
    let out = run(
        delayshim("fuzz")
            .args([
                "--runs",
                "16",
                "--seed",
                "3",
                "--keep-going",
                "--confirm",
                "2",
                "--out",
            ])
            .arg(out_dir.path())
            .arg("--")
            .arg(&lock_gap),
        LIMIT,
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("calibration run (1 us delays)"), "{stdout}");
    assert!(stdout.contains("strategy auto"), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    // lock-gap makes lock and effect calls: every arm applies, at three
    // scales and the gap between its lock calls.
    let offered: Vec<&str> = summary["auto"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cell| cell["cell"].as_str().unwrap())
        .collect();
    assert!(offered.len() >= 21, "{offered:?}");
    let learned: Vec<&str> = summary["auto"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["cell"].as_str().unwrap())
        .collect();
    assert_eq!(learned.len(), 16, "{}", summary["auto"]);
    for (position, run) in summary["runs"].as_array().unwrap().iter().enumerate() {
        // Cells are ARM@SCALE; with one job runs end in order.
        let strategy = run["strategy"].as_str().unwrap();
        assert_eq!(learned[position], strategy);
        assert!(offered.contains(&strategy), "{strategy}: {offered:?}");
        let (arm, _scale) = strategy.split_once('@').unwrap();
        assert!(
            [
                "every",
                "every-fixed",
                "locks",
                "sparse",
                "victims",
                "sites",
                "pct"
            ]
            .contains(&arm),
            "{run}"
        );
        // every-fixed and locks (releases held open) are the shim's every.
        let shim_strategy = match arm {
            "every-fixed" | "locks" => "every",
            arm => arm,
        };
        assert_eq!(
            run["settings"]["DELAYSHIM_STRATEGY"], shim_strategy,
            "{run}"
        );
        assert!(
            stdout.contains(&format!("seed={} strategy={strategy} ", run["seed"])),
            "{stdout}"
        );
        if let Some(reproduce) = run["reproduce"].as_str() {
            for (name, value) in run["settings"].as_object().unwrap() {
                assert!(
                    reproduce.contains(&format!("{name}={}", value.as_str().unwrap())),
                    "{reproduce}"
                );
            }
            if run["outcome"] == "FAIL" {
                let confirmed = &run["confirmed"];
                assert_eq!(confirmed["replays"], 2, "{run}");
                assert!(
                    stdout.contains(&format!(
                        "reproduce: fails {} of 2 replays of its recorded delays",
                        confirmed["failures"]
                    )),
                    "{stdout}"
                );
            }
        }
    }
    // A fixed-seed campaign: its runs' seeds are the same again; their
    // cells follow the calibration run and what earlier runs reported,
    // which the unit tests of campaign::auto show to be a function of the
    // seed and the reports.
    let again = tempdir();
    let out = run(
        delayshim("fuzz")
            .args([
                "--runs",
                "16",
                "--seed",
                "3",
                "--keep-going",
                "--confirm",
                "0",
                "--out",
            ])
            .arg(again.path())
            .arg("--")
            .arg(&lock_gap),
        LIMIT,
    );
    let second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(again.path().join("summary.json")).unwrap())
            .unwrap();
    let seeds = |summary: &serde_json::Value| -> Vec<u64> {
        summary["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|run| run["seed"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seeds(&second), seeds(&summary), "{}", text(&out.stdout));
}

#[test]
fn minimize_keeps_the_delays_lock_gap_needs_and_names_their_function() {
    // Fixed 1 ms delays bridge lock-gap's 1 ms stagger: its runs fail.
    let out_dir = tempdir();
    let lock_gap = artifacts().release.join("lock-gap");
    let out = run(
        delayshim("fuzz")
            .args([
                "--runs",
                "5",
                "--seed",
                "1",
                "--strategy",
                "every",
                "--dist",
                "fixed",
                "--mean",
                "1000",
                "--funcs",
                "fcntl,pwrite",
                "--out",
            ])
            .arg(out_dir.path())
            .arg("--")
            .arg(&lock_gap),
        LIMIT,
    );
    assert_exit(&out, 1);
    let failing = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|dir| dir.join("reproduce.sh").exists())
        .expect("a failing run");
    // The failure block: the calls around the lost update, in a lane per
    // process (the one with the lock gap and the one that wrote in it),
    // sites by function and line, and where the whole timeline is.
    let block = text(&out.stdout);
    assert!(
        block.contains("nearest potential race, #1 lock gap on "),
        "{block}"
    );
    let lanes: Vec<&str> = block
        .lines()
        .filter(|l| l.starts_with("      pid ") && l.contains("lock-gap"))
        .collect();
    assert_eq!(lanes.len(), 2, "{block}");
    for site in ["at lock_gap::read_counter", "at lock_gap::write_counter"] {
        assert!(block.contains(site), "{site}: {block}");
    }
    assert!(block.contains("(bin/lock-gap.rs:"), "{block}");
    let timeline = failing.join("timeline.md");
    assert!(
        block.contains(&format!("full timeline: {}", timeline.display())),
        "{block}"
    );
    let recorded = std::fs::read_to_string(failing.join("record.txt")).unwrap();
    let recorded = recorded.lines().filter(|l| l.starts_with("call ")).count();
    let out = run(delayshim("minimize").arg(&failing), LIMIT);
    let explanation = std::fs::read_to_string(failing.join("explanation.md")).unwrap();
    // The whole timeline, a column per process, before the delays kept.
    let (timeline, delays) = explanation
        .split_once("## The delays that make it fail")
        .unwrap_or_else(|| panic!("{explanation}"));
    assert!(
        timeline.contains("## Timeline of the run's potential races"),
        "{explanation}"
    );
    let header = timeline
        .lines()
        .find(|l| l.starts_with("| ms |"))
        .unwrap_or_else(|| panic!("{explanation}"));
    assert_eq!(header.matches("| pid ").count(), 2, "{header}");
    for site in ["lock_gap::read_counter", "lock_gap::write_counter"] {
        assert!(
            timeline
                .lines()
                .any(|l| l.starts_with("| ") && l.contains(site) && l.contains("lock gap (")),
            "{site} marked: {explanation}"
        );
    }
    assert!(delays.contains("- `"), "{explanation}");
    assert_eq!(text(&out.stdout).lines().next(), explanation.lines().next());
    let kept: Vec<&str> = explanation
        .lines()
        .filter(|l| l.starts_with("- `"))
        .collect();
    assert!(
        !kept.is_empty() && kept.len() <= 3 && kept.len() < recorded,
        "{explanation}"
    );
    assert!(
        kept.iter().any(|line| line.contains("(F_SETLKW, F_WRLCK)`")
            || line.contains("F_UNLCK")
            || line.contains("pwrite64")),
        "a delay around the lock gap: {explanation}"
    );
    assert!(
        kept.iter()
            .all(|line| line.contains("called from lock_gap::")),
        "call sites named by function: {explanation}"
    );
    let rate = |label: &str| -> u32 {
        let row = explanation
            .lines()
            .find(|l| l.starts_with(&format!("| {label}")))
            .unwrap_or_else(|| panic!("{label}: {explanation}"));
        row.split('|')
            .nth(2)
            .unwrap()
            .trim()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // Plain lock-gap lost no update in 500 measured runs; the kept set
    // failed at least 3 of 6 replays, so it fails about half the time or
    // more: fewer than 4 of 20 has a chance near 1 in 1000 even at one half,
    // and measured here it failed 19 or 20 of 20.
    assert!(rate("no delays") <= 6, "{explanation}");
    assert!(rate("the minimal set") >= 4, "{explanation}");
    // Below the threshold (10 of 20) the explanation says so and the
    // status is 1; measured, the set failed 9 to 20 of 20.
    let reliable = rate("the minimal set") >= 10;
    assert_exit(&out, if reliable { 0 } else { 1 });
    assert_eq!(
        explanation.contains("still make the program fail"),
        reliable,
        "{explanation}"
    );
    // The replay command in the explanation is a working command.
    let command = explanation
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .unwrap();
    let mut failures = 0;
    for _ in 0..5 {
        let out = run(
            crate::util::clean_command("sh").arg("-c").arg(command),
            LIMIT,
        );
        failures += u32::from(out.status.code() == Some(1));
    }
    assert!(failures >= 1, "{command}");
}

#[test]
fn minimize_refuses_a_directory_that_is_not_a_run() {
    let dir = tempdir();
    let out = run(delayshim("minimize").arg(dir.path()), LIMIT);
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("not the directory of a run"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn minimize_refuses_a_passing_run() {
    let out_dir = tempdir();
    let out = run(
        delayshim("fuzz")
            .args(["--runs", "1", "--strategy", "every", "--mean", "1"])
            .args(["--keep", "all", "--out"])
            .arg(out_dir.path().join("out"))
            .arg("--")
            .arg(crate::util::PROBE)
            .args(["paired"])
            .arg(out_dir.path())
            .args(["5", "1"]),
        LIMIT,
    );
    assert_exit(&out, 0);
    let out = run(
        delayshim("minimize").arg(out_dir.path().join("out/run-0")),
        LIMIT,
    );
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("the run's outcome was PASS, not a failure"),
        "{}",
        text(&out.stderr)
    );
    assert!(!out_dir.path().join("out/run-0/explanation.md").exists());
}

#[test]
#[ignore = "flaky: in one full-suite run of 2026-12-04 the resumed minimize kept 0 of 17 delays and exited 0; cause not found yet"]
fn minimize_says_when_its_set_fails_below_the_threshold_and_resumes_after_an_interrupt() {
    // Fails (slowly) in the campaign and every replay but the minimal set's.
    let out_dir = tempdir();
    let program = format!(
        "{} paired {} 5 1 && sleep 0.2; case \"$DELAYSHIM_REPLAY\" in *minimal.txt) exit 0;; esac; exit 1",
        crate::util::PROBE,
        out_dir.path().display()
    );
    let out = run(
        delayshim("fuzz")
            .args(["--runs", "1", "--strategy", "every", "--mean", "1"])
            .args(["--confirm", "0", "--out"])
            .arg(out_dir.path().join("out"))
            .args(["--", "sh", "-c", &program]),
        LIMIT,
    );
    assert_exit(&out, 1);
    let run_dir = out_dir.path().join("out/run-0");
    let minimize = || {
        let mut command = delayshim("minimize");
        command
            .arg(&run_dir)
            .args(["--tries", "4", "--rate-tries", "3", "--jobs", "2"]);
        command
    };
    // Interrupted once a verdict is saved: 130, and a rerun starts from it.
    let mut child = minimize()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let progress = run_dir.join("minimize/progress.jsonl");
    while std::fs::metadata(&progress).map_or(true, |m| m.len() == 0) {
        assert!(child.try_wait().unwrap().is_none(), "minimize ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let interrupted = child.wait_with_output().unwrap();
    assert_eq!(
        interrupted.status.code(),
        Some(130),
        "{}",
        text(&interrupted.stderr)
    );
    assert!(text(&interrupted.stderr).contains("the same command again resumes"));
    let out = run(&mut minimize(), LIMIT);
    let stderr = text(&out.stderr);
    assert_exit(&out, 1);
    assert!(stderr.contains("resuming from "), "{stderr}");
    assert!(
        stderr.contains("the minimal set failed 0 of 3 replays, below --threshold 0.5"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains("in only 0 of 3 replays, below the threshold of 50%"),
        "{}",
        text(&out.stdout)
    );
}
