//! Record and replay: a recording replays a single-threaded program's
//! delays and faults exactly, whatever the seed; bad record and replay
//! files stop the program before `main`; faults fail calls as the rules
//! say and are counted.

use std::time::Duration;

use crate::util::{assert_exit, read_log, read_stats, run, tempdir, text, under_shim, PROBE};

const LIMIT: Duration = Duration::from_secs(120);

fn delays(log: &std::path::Path) -> Vec<(String, String, String)> {
    read_log(log)
        .iter()
        .map(|l| {
            (
                l.get("fn").unwrap().to_owned(),
                l.get("when").unwrap().to_owned(),
                l.get("delay_us").unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_recording_replays_exactly_whatever_the_seed() {
    for strategy in ["every", "sparse", "sites"] {
        let dir = tempdir();
        let (record, first, second) = (
            dir.path().join("record"),
            dir.path().join("log1"),
            dir.path().join("log2"),
        );
        let probe = |settings: &[(&str, &str)]| {
            let work = tempdir();
            let out = run(
                under_shim(PROBE, settings)
                    .arg("writes")
                    .arg(work.path())
                    .arg("300"),
                LIMIT,
            );
            assert_exit(&out, 0);
        };
        probe(&[
            ("DELAYSHIM_STRATEGY", strategy),
            ("DELAYSHIM_SITE_PROB", "1"),
            ("DELAYSHIM_SEED", "1"),
            ("DELAYSHIM_MEAN_US", "3"),
            ("DELAYSHIM_WHEN", "both"),
            ("DELAYSHIM_RECORD", record.to_str().unwrap()),
            ("DELAYSHIM_LOG", first.to_str().unwrap()),
        ]);
        probe(&[
            ("DELAYSHIM_SEED", "2"),
            ("DELAYSHIM_REPLAY", record.to_str().unwrap()),
            ("DELAYSHIM_LOG", second.to_str().unwrap()),
        ]);
        let recorded = delays(&first);
        assert!(!recorded.is_empty(), "{strategy}");
        assert_eq!(delays(&second), recorded, "{strategy}");
        let text = std::fs::read_to_string(&record).unwrap();
        assert!(text.starts_with("process proc=0x"), "{text}");
        assert!(
            text.contains(" site=") && text.contains("/probe+0x"),
            "{text}"
        );
    }
}

#[test]
fn bad_record_and_replay_files_stop_the_program_with_one_line() {
    let dir = tempdir();
    let truncated = dir.path().join("truncated");
    std::fs::write(
        &truncated,
        "call proc=0x1 thread=0 index=0 fn=write before_ns=5 after_ns=0",
    )
    .unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "hello\n").unwrap();
    for (name, value, expected) in [
        ("DELAYSHIM_REPLAY", truncated.to_str().unwrap(), "cut short"),
        ("DELAYSHIM_REPLAY", garbage.to_str().unwrap(), "line 1"),
        ("DELAYSHIM_REPLAY", "/nonexistent/record", "cannot read"),
        ("DELAYSHIM_RECORD", "/nonexistent-dir/record", "cannot open"),
        (
            "DELAYSHIM_RECORD",
            dir.path().to_str().unwrap(),
            "DELAYSHIM_RECORD",
        ),
        ("DELAYSHIM_RECORD", "/dev/full", "not a regular file"),
        ("DELAYSHIM_STATS", "/dev/full", "not a regular file"),
    ] {
        let out = run(&mut under_shim("true", &[(name, value)]), LIMIT);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}={value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains(name),
            "{stderr}"
        );
    }
}

fn python(script: &str, settings: &[(&str, &str)]) -> std::process::Output {
    run(under_shim("python3", settings).args(["-c", script]), LIMIT)
}

#[test]
fn faults_fail_calls_as_the_rules_say_and_are_counted_and_replayed() {
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let record = dir.path().join("record");
    let file = dir.path().join("data");
    let script = format!(
        "import os\nfd = os.open({:?}, os.O_WRONLY | os.O_CREAT)\nprint(os.write(fd, b'0123456789'))\ntry:\n    os.fsync(fd)\n    print('synced')\nexcept OSError as e:\n    print(e.strerror)\n",
        file.to_str().unwrap()
    );
    let out = python(
        &script,
        &[
            ("DELAYSHIM_FAULTS", "write:short:1,fsync:EIO:1"),
            ("DELAYSHIM_ENABLE", "1"),
            ("DELAYSHIM_FUNCS", "rename"),
            ("DELAYSHIM_STATS", stats.to_str().unwrap()),
            ("DELAYSHIM_RECORD", record.to_str().unwrap()),
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(text(&out.stdout), "5\nInput/output error\n");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "01234");
    let python_line = read_stats(&stats)
        .into_iter()
        .find(|l| l["exe"].as_str().unwrap_or("").contains("python"))
        .unwrap();
    assert_eq!(python_line["faults"]["write"], 1, "{python_line}");
    assert_eq!(python_line["faults"]["fsync"], 1, "{python_line}");
    // Replayed without any rule, the faults come back.
    std::fs::remove_file(&file).unwrap();
    let out = python(&script, &[("DELAYSHIM_REPLAY", record.to_str().unwrap())]);
    assert_exit(&out, 0);
    assert_eq!(text(&out.stdout), "5\nInput/output error\n");
    // A rule a function cannot meet is refused, naming it.
    let out = python("pass", &[("DELAYSHIM_FAULTS", "fsync:EEXIST:0.5")]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("fsync:EEXIST:0.5"),
        "{}",
        text(&out.stderr)
    );
}
