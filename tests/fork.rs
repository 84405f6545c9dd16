//! Streams across fork and exec: reproducible for a seed, different in
//! every child, and no hang when forking from a busy multi-threaded parent.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::util::{delays_by_pid_in, read_stats, run, tempdir, text, under_shim, PROBE};

const LIMIT: Duration = Duration::from_secs(120);

/// The delays each process drew, in order, by pid.
fn delays_by_pid(settings: &[(&str, &str)], args: &[&str]) -> BTreeMap<String, Vec<String>> {
    let dir = tempdir();
    let log = dir.path().join("log");
    // fcntl64 alone: a debug build's std also calls fcntl(F_GETFD) when it
    // closes a file, which is not the probe's own sequence.
    let mut all = vec![
        ("DELAYSHIM_FUNCS", "fcntl64"),
        // The probe's F_GETFL on /dev/null is neither a file nor an
        // effect other processes see: these tests are about streams.
        ("DELAYSHIM_FDS", "all"),
        ("DELAYSHIM_CALLS", "all"),
        ("DELAYSHIM_MEAN_US", "10"),
        ("DELAYSHIM_LOG", log.to_str().unwrap()),
    ];
    all.extend_from_slice(settings);
    let out = run(under_shim(PROBE, &all).args(args), LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    delays_by_pid_in(&log)
}

#[test]
fn the_same_seed_gives_the_same_delays_in_a_single_threaded_program() {
    let sequence = |seed: &str| -> Vec<String> {
        let by_pid = delays_by_pid(&[("DELAYSHIM_SEED", seed)], &["calls", "200"]);
        assert_eq!(by_pid.len(), 1);
        by_pid.into_values().next().unwrap()
    };
    let first = sequence("42");
    assert_eq!(first.len(), 200);
    assert_eq!(sequence("42"), first);
    assert_ne!(sequence("43"), first);
}

#[test]
fn fork_children_draw_different_delays() {
    let by_pid = delays_by_pid(&[("DELAYSHIM_SEED", "7")], &["fork-children", "8"]);
    assert_eq!(by_pid.len(), 9, "the parent and 8 children: {by_pid:?}");
    let children: Vec<&Vec<String>> = by_pid.values().filter(|delays| delays.len() == 5).collect();
    assert_eq!(children.len(), 8, "{by_pid:?}");
    for (i, a) in children.iter().enumerate() {
        for b in &children[i + 1..] {
            assert_ne!(a, b, "two children drew the same delays");
        }
    }
    // And the tree is reproducible: the same seed gives the same set.
    let again = delays_by_pid(&[("DELAYSHIM_SEED", "7")], &["fork-children", "8"]);
    let mut first: Vec<_> = by_pid.into_values().collect();
    let mut second: Vec<_> = again.into_values().collect();
    first.sort();
    second.sort();
    assert_eq!(first, second);
}

#[test]
fn forking_while_threads_sleep_inside_the_shim_does_not_hang() {
    let dir = tempdir();
    let out = run(
        under_shim(
            PROBE,
            &[
                ("DELAYSHIM_MEAN_US", "200"),
                ("DELAYSHIM_LOG", dir.path().join("log").to_str().unwrap()),
            ],
        )
        .arg("fork-under-load")
        .arg(dir.path())
        .arg("200"),
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "forked 200 children under load");
}

#[test]
fn each_child_counts_only_its_own_calls() {
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let out = run(
        under_shim(
            PROBE,
            &[
                ("DELAYSHIM_FUNCS", "fcntl"),
                ("DELAYSHIM_FDS", "all"),
                ("DELAYSHIM_CALLS", "all"),
                ("DELAYSHIM_MEAN_US", "1"),
                ("DELAYSHIM_STATS", stats.to_str().unwrap()),
            ],
        )
        .args(["fork-children", "4"]),
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats = read_stats(&stats);
    assert_eq!(stats.len(), 5);
    let parent = out_pid(&stats, |s| s["calls"]["fcntl64"] == 1);
    for child in stats.iter().filter(|s| s["pid"] != parent) {
        assert_eq!(child["calls"]["fcntl64"], 5, "{child}");
        assert_eq!(child["ppid"], parent, "{child}");
        assert_eq!(child["delayed"]["fcntl64"], 5, "{child}");
    }
}

fn out_pid(
    stats: &[serde_json::Value],
    is_parent: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let parents: Vec<_> = stats.iter().filter(|s| is_parent(s)).collect();
    assert_eq!(parents.len(), 1, "{stats:?}");
    parents[0]["pid"].clone()
}

#[test]
fn exec_children_inherit_the_shim_and_ld_preload_is_untouched() {
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let script = format!(
        "import os, subprocess; print(os.environ['LD_PRELOAD']); subprocess.run(['{PROBE}', 'calls', '3'], check=True)"
    );
    let out = run(
        under_shim("python3", &[("DELAYSHIM_STATS", stats.to_str().unwrap())])
            .arg("-c")
            .arg(script),
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        crate::util::shim().to_str().unwrap()
    );
    let stats = read_stats(&stats);
    let probe = stats
        .iter()
        .find(|s| s["exe"].as_str() == Some(PROBE))
        .unwrap_or_else(|| panic!("the exec'd probe wrote stats: {stats:?}"));
    assert_eq!(probe["calls"]["fcntl64"], 3);
}

#[test]
fn a_vfork_child_that_fails_to_exec_leaves_the_parents_statistics_alone() {
    // CPython's subprocess starts children with vfork; when exec fails the
    // child leaves through _exit while sharing its parent's memory.
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let script = "import os, subprocess\n\
                  try:\n    subprocess.run(['/nonexistent/program'])\n\
                  except FileNotFoundError:\n    pass\n\
                  print(os.getpid())";
    let out = run(
        under_shim("python3", &[("DELAYSHIM_STATS", stats.to_str().unwrap())])
            .arg("-c")
            .arg(script),
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid: u64 = text(&out.stdout).trim().parse().unwrap();
    let stats = read_stats(&stats);
    assert!(
        stats.iter().any(|s| s["pid"].as_u64() == Some(pid)),
        "python3 (pid {pid}) wrote its own line: {stats:?}"
    );
}
