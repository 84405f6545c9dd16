//! `--strategy auto` learns: on slow-window, which only blanket delays of
//! about 5 ms find, the runs move to those cells after the first failure;
//! a program without locks gets no lock-only run; `delayshim report`
//! shows what the campaign learned.

use std::time::Duration;

use crate::util::{artifacts, assert_exit, delayshim, run, tempdir, text};

const LIMIT: Duration = Duration::from_secs(600);

/// The check that campaign/src/auto/tests.rs simulates
/// (`passes_the_slow_window_check`): after the first failure, which comes
/// by run 50, the blanket 5 ms cells get at least a quarter of the runs
/// and no other cell more than they do. Simulated with the rates measured
/// on slow-window (blanket 5 ms failed 64 of 64 runs, sites at 5 ms 0 of
/// 20, victims at 5 ms 4 of 20), it failed 0 of 20,000 campaigns with
/// blanket 5 ms at p = 0.99 and 0 of 20,000 at p = 0.95 (the least 64 of
/// 64 allow at 95% confidence).
fn blanket_5ms_leads_after_the_first_failure(cells: &[(String, bool)]) -> Result<(), String> {
    let first = cells
        .iter()
        .position(|(_, failed)| *failed)
        .ok_or("no run failed")?;
    if first >= 50 {
        return Err(format!("the first failure came at run {}", first + 1));
    }
    let after = &cells[first + 1..];
    let blanket = |label: &str| label == "every@5ms" || label == "every-fixed@5ms";
    let mut by_cell = std::collections::BTreeMap::<&str, usize>::new();
    for (label, _) in after {
        *by_cell
            .entry(if blanket(label) { "5ms" } else { label })
            .or_default() += 1;
    }
    let ours = by_cell.get("5ms").copied().unwrap_or(0);
    if 4 * ours < after.len() || by_cell.iter().any(|(c, n)| *c != "5ms" && *n > ours) {
        return Err(format!("runs after the first failure: {by_cell:?}"));
    }
    Ok(())
}

#[test]
fn auto_moves_runs_to_blanket_5ms_on_slow_window_and_never_to_lock_cells() {
    let out_dir = tempdir();
    let out = run(
        delayshim("fuzz")
            .args([
                "--runs",
                "60",
                "--seed",
                "17",
                "--keep-going",
                "--confirm",
                "0",
                "--out",
            ])
            .arg(out_dir.path())
            .arg("--")
            .arg(artifacts().release.join("slow-window")),
        LIMIT,
    );
    let stdout = text(&out.stdout);
    assert_exit(&out, 1);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 60);
    let cells: Vec<(String, bool)> = runs
        .iter()
        .map(|run| {
            (
                run["strategy"].as_str().unwrap().to_owned(),
                run["outcome"] == "FAIL",
            )
        })
        .collect();
    if let Err(why) = blanket_5ms_leads_after_the_first_failure(&cells) {
        panic!("{why}\n{stdout}");
    }
    // A write+rename program: no lock-only arm, no run that selects only
    // lock calls, and no run that was not fuzzed at all.
    assert_eq!(summary["auto"]["profile"]["lock_calls"], 0, "{stdout}");
    for run in runs {
        assert!(
            !run["strategy"].as_str().unwrap().starts_with("locks@"),
            "{run}"
        );
        assert!(
            run["settings"]["DELAYSHIM_FUNCS"].is_null(),
            "selects only some families: {run}"
        );
        assert_ne!(run["outcome"], "NO INJECTION", "{run}");
    }
    // What it learned: in the summary, in the printed lines, in report.
    assert!(stdout.contains("auto: runs by cell: "), "{stdout}");
    assert!(
        stdout.contains("auto: shares moved: runs 1-15: "),
        "{stdout}"
    );
    assert!(stdout.contains("auto: first failure at run "), "{stdout}");
    let curve = summary["auto"]["novelty_curve"].as_array().unwrap();
    assert_eq!(curve.len(), 60);
    assert!(curve[0].as_u64().unwrap() > 0, "novelty before any failure");
    let report = run(delayshim("report").arg(out_dir.path()), LIMIT);
    let report_text = text(&report.stdout);
    assert!(
        report_text.contains("## What auto learned"),
        "{report_text}"
    );
    assert!(
        report_text
            .lines()
            .any(|l| l.starts_with("| every@5ms | ") || l.starts_with("| every-fixed@5ms | ")),
        "{report_text}"
    );
}

#[test]
fn bad_auto_options_are_refused_with_one_line() {
    let program = artifacts().release.join("slow-window");
    for (args, expected) in [
        (&["--auto-scales", "0"][..], "--auto-scales"),
        (&["--auto-scales", "2s"][..], "from 1us to 1s"),
        (&["--auto-scales", "1ms,,5ms"][..], "got \"\""),
        (&["--auto-arms", "every,chaos"][..], "got \"chaos\""),
        (
            &["--strategy", "sparse", "--auto-arms", "every"][..],
            "are for --strategy auto, not sparse",
        ),
    ] {
        let out = run(delayshim("fuzz").args(args).arg("--").arg(&program), LIMIT);
        assert_exit(&out, 2);
        let stderr = text(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].contains(expected), "{args:?}: {stderr}");
    }
}
