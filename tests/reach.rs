//! The shim reaches every call through which real programs race: each
//! family in C programs built both ways (plain, and 64-bit fortified), in
//! git, and in Python's flock and atomic save; only on files by default;
//! one seed per process tree.

use std::path::Path;
use std::time::Duration;

use delayshim_settings::family_of;

use crate::util::{
    assert_exit, c_program, clean_command, delays_by_pid_in, imports, read_log, read_stats,
    read_stats_events, run, shim, tempdir, text, totals, under_shim, PROBE,
};

const LIMIT: Duration = Duration::from_secs(120);

fn every_family_in(flags: &[&str]) {
    let program = c_program("families", flags);
    let other_fs = tempfile::Builder::new()
        .prefix("delayshim-other-fs-")
        .tempdir_in("/dev/shm")
        .expect("a directory on /dev/shm (tmpfs), for EXDEV");
    let run_in = |settings: &[(&str, &str)], shimmed: bool| {
        let dir = tempdir();
        let mut command = if shimmed {
            under_shim(&program, settings)
        } else {
            clean_command(&program)
        };
        let out = run(command.arg(dir.path()).arg(other_fs.path()), LIMIT);
        assert_exit(&out, 0);
        let _ = std::fs::remove_file(other_fs.path().join("moved"));
        text(&out.stdout)
    };
    let native = run_in(&[], false);
    let dir = tempdir();
    let log = dir.path().join("log");
    let shimmed = run_in(
        &[
            ("DELAYSHIM_FUNCS", "all"),
            ("DELAYSHIM_FDS", "all"),
            ("DELAYSHIM_CALLS", "all"),
            ("DELAYSHIM_MEAN_US", "2"),
            ("DELAYSHIM_LOG", log.to_str().unwrap()),
        ],
        true,
    );
    assert_eq!(shimmed, native, "results and errno under the shim");
    for case in ["EBADF", "ENOENT", "EEXIST", "EXDEV", "EAGAIN", "EINVAL"] {
        assert!(
            native.contains(case),
            "the probe exercises {case}: {native}"
        );
    }
    let delayed: Vec<String> = read_log(&log)
        .iter()
        .map(|line| line.get("fn").unwrap().to_owned())
        .collect();
    let interposed: Vec<String> = imports(&program)
        .into_iter()
        .filter(|symbol| family_of(symbol).is_some())
        .collect();
    assert!(interposed.len() >= 30, "{interposed:?}");
    for symbol in &interposed {
        assert!(
            delayed.contains(symbol),
            "{symbol} is imported but was never delayed ({flags:?})"
        );
    }
}

#[test]
fn every_family_plain_symbols() {
    every_family_in(&[]);
}

#[test]
fn every_family_64_bit_fortified_symbols() {
    let program = c_program(
        "families",
        &["-D_FILE_OFFSET_BITS=64", "-D_FORTIFY_SOURCE=2"],
    );
    let symbols = imports(&program);
    for fortified in [
        "__open64_2",
        "__openat64_2",
        "lockf64",
        "ftruncate64",
        "open64",
    ] {
        assert!(
            symbols.iter().any(|s| s == fortified),
            "{fortified}: {symbols:?}"
        );
    }
    every_family_in(&["-D_FILE_OFFSET_BITS=64", "-D_FORTIFY_SOURCE=2"]);
}

fn git(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut command = clean_command("git");
    command
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    command
}

#[test]
fn two_concurrent_git_commits_are_delayed_inside_git() {
    let dir = tempdir();
    let repo = dir.path();
    assert_exit(&run(&mut git(repo, &["init", "-q"]), LIMIT), 0);
    std::fs::write(repo.join("a"), "a").unwrap();
    std::fs::write(repo.join("b"), "b").unwrap();
    // Both staged first, so each commit has something to commit.
    assert_exit(&run(&mut git(repo, &["add", "a", "b"]), LIMIT), 0);
    let stats = repo.join(".stats.jsonl");
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|file| {
            let mut command = git(repo, &[]);
            command
                .args(["-c", "core.fsync=all"])
                .args(["commit", "-q", "-m", file, "--", file])
                .env("LD_PRELOAD", shim())
                .env("DELAYSHIM_STATS", &stats)
                .env("DELAYSHIM_SEED", "11")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            command.spawn().unwrap()
        })
        .collect();
    for mut child in children {
        // One commit may lose the race for index.lock: that is git's
        // correct behaviour, not the shim's doing.
        let _ = child.wait().unwrap();
    }
    let git_lines: Vec<_> = read_stats(&stats)
        .into_iter()
        .filter(|line| line["exe"].as_str().unwrap_or("").ends_with("/git"))
        .collect();
    assert!(!git_lines.is_empty());
    let delayed = totals(&git_lines, "delayed");
    for family in ["open", "rename", "write"] {
        let count: u64 = delayed
            .iter()
            .filter(|(name, _)| family_of(name).is_some_and(|f| f.name == family))
            .map(|(_, n)| n)
            .sum();
        assert!(count > 0, "{family} delayed inside git: {delayed:?}");
    }
    assert!(git_lines
        .iter()
        .all(|line| line["injected"].as_u64().unwrap() > 0));
}

fn python(script: &str, settings: &[(&str, &str)]) -> std::process::Output {
    let out = run(under_shim("python3", settings).args(["-c", script]), LIMIT);
    assert_exit(&out, 0);
    out
}

#[test]
fn python_flock_with_locks_release_delays_exactly_the_unlocks() {
    let dir = tempdir();
    let log = dir.path().join("log");
    let script = format!(
        "import fcntl\nf = open({:?}, 'w')\nfor _ in range(5):\n    fcntl.flock(f, fcntl.LOCK_EX)\n    f.write('x'); f.flush()\n    fcntl.flock(f, fcntl.LOCK_UN)\n",
        dir.path().join("counter").to_str().unwrap()
    );
    python(
        &script,
        &[
            ("DELAYSHIM_FUNCS", "flock"),
            ("DELAYSHIM_LOCKS", "release"),
            ("DELAYSHIM_MEAN_US", "10"),
            ("DELAYSHIM_LOG", log.to_str().unwrap()),
        ],
    );
    let log = read_log(&log);
    assert_eq!(log.len(), 5, "{log:?}");
    assert!(log
        .iter()
        .all(|line| line.get("fn") == Some("flock") && line.get("cmd") == Some("LOCK_UN")));
}

#[test]
fn an_atomic_save_is_delayed_in_rename() {
    let dir = tempdir();
    let log = dir.path().join("log");
    let target = dir.path().join("store.json");
    let script = format!(
        "import os\nwith open({tmp:?}, 'w') as f:\n    f.write('{{}}')\nos.replace({tmp:?}, {target:?})\n",
        tmp = dir.path().join("store.json.tmp").to_str().unwrap(),
        target = target.to_str().unwrap()
    );
    python(
        &script,
        &[
            ("DELAYSHIM_MEAN_US", "10"),
            ("DELAYSHIM_LOG", log.to_str().unwrap()),
        ],
    );
    let renames: Vec<_> = read_log(&log)
        .into_iter()
        .filter(|line| line.get("fn") == Some("rename"))
        .collect();
    assert_eq!(renames.len(), 1, "{renames:?}");
    assert!(
        renames[0].get("other").unwrap().ends_with("/store.json"),
        "{renames:?}"
    );
}

#[test]
fn writes_to_pipes_pass_but_writes_to_files_are_delayed() {
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let file = dir.path().join("out");
    let script = format!(
        "import os\nos.write(1, b'to the pipe')\nfd = os.open({:?}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'to the file')\n",
        file.to_str().unwrap()
    );
    let out = python(
        &script,
        &[
            ("DELAYSHIM_FUNCS", "write"),
            ("DELAYSHIM_STATS", stats.to_str().unwrap()),
        ],
    );
    assert_eq!(text(&out.stdout), "to the pipe");
    let python_line = read_stats(&stats)
        .into_iter()
        .find(|line| line["exe"].as_str().unwrap_or("").contains("python"))
        .expect("python's own line");
    assert_eq!(python_line["calls"]["write"], 2, "{python_line}");
    assert_eq!(python_line["delayed"]["write"], 1, "{python_line}");
    assert_eq!(python_line["injected"], 1, "{python_line}");
}

#[test]
fn programs_that_change_nothing_inject_nothing() {
    for command in [
        vec!["python3", "-c", "pass"],
        vec!["bash", "-c", "cat </dev/null >/dev/null"],
        vec!["ls", "-l", "/"],
    ] {
        let dir = tempdir();
        let stats = dir.path().join("stats");
        let out = run(
            under_shim(command[0], &[("DELAYSHIM_STATS", stats.to_str().unwrap())])
                .args(&command[1..]),
            LIMIT,
        );
        assert_exit(&out, 0);
        let lines = read_stats(&stats);
        assert!(!lines.is_empty());
        let injected: u64 = lines.iter().map(|l| l["injected"].as_u64().unwrap()).sum();
        assert_eq!(injected, 0, "{command:?}: {lines:?}");
    }
}

#[test]
fn a_tree_shares_one_seed_and_exec_siblings_draw_different_delays() {
    let dir = tempdir();
    let stats = dir.path().join("stats");
    let log = dir.path().join("log");
    let script = format!("{PROBE} calls 20; {PROBE} calls 20");
    let settings = [
        ("DELAYSHIM_FUNCS", "fcntl64"),
        ("DELAYSHIM_FDS", "all"),
        ("DELAYSHIM_CALLS", "all"),
        ("DELAYSHIM_MEAN_US", "5"),
        ("DELAYSHIM_STATS", stats.to_str().unwrap()),
        ("DELAYSHIM_LOG", log.to_str().unwrap()),
    ];
    let out = run(under_shim("sh", &settings).args(["-c", &script]), LIMIT);
    assert_exit(&out, 0);
    assert!(
        out.stderr.is_empty(),
        "no seed line on a pipe: {}",
        text(&out.stderr)
    );
    let lines = read_stats(&stats);
    assert_eq!(lines.len(), 3, "sh and two probes: {lines:?}");
    let seed = &lines[0]["seed"];
    assert!(lines.iter().all(|line| &line["seed"] == seed), "{lines:?}");
    let by_pid = delays_by_pid_in(&log);
    let draws: Vec<_> = by_pid.values().collect();
    assert_eq!(draws.len(), 2, "{by_pid:?}");
    assert_eq!(draws[0].len(), 20);
    assert_ne!(
        draws[0], draws[1],
        "siblings with one command line drew the same delays"
    );
    // With a seed set, the whole tree draws the same again.
    let again = dir.path().join("again");
    let out = run(
        under_shim(
            "sh",
            &[
                ("DELAYSHIM_FUNCS", "fcntl64"),
                ("DELAYSHIM_FDS", "all"),
                ("DELAYSHIM_CALLS", "all"),
                ("DELAYSHIM_MEAN_US", "5"),
                ("DELAYSHIM_SEED", &seed.to_string()),
                ("DELAYSHIM_LOG", again.to_str().unwrap()),
            ],
        )
        .args(["-c", &script]),
        LIMIT,
    );
    assert_exit(&out, 0);
    let delays = |path: &Path| -> Vec<String> {
        read_log(path)
            .iter()
            .map(|l| l.get("delay_us").unwrap().to_owned())
            .collect()
    };
    assert_eq!(delays(&again), delays(&log));
    assert_eq!(
        read_stats_events(&stats).len(),
        6,
        "a start and an exit line each"
    );
}

#[test]
fn children_started_where_the_shim_cannot_see_still_draw_their_own_delays() {
    // system(), popen() and fork-then-execl() give the child the process's
    // own environment, unchanged by any wrapper; posix_spawn with 300 more
    // entries takes the mapped copy, and a vfork child a larger stack copy;
    // system() after the environment was rebuilt from copies finds a copy
    // of the shim's entry there; four threads spawn with the process's
    // environment at once; six live threads vfork in turn with a large
    // environment.
    let spawner = c_program("spawner", &[]);
    let dir = tempdir();
    let draws_under = |seed: Option<&str>, name: &str| {
        let stats = dir.path().join(format!("{name}.stats"));
        let log = dir.path().join(format!("{name}.log"));
        let mut settings = vec![
            ("DELAYSHIM_FUNCS", "fcntl64"),
            ("DELAYSHIM_FDS", "all"),
            ("DELAYSHIM_CALLS", "all"),
            ("DELAYSHIM_MEAN_US", "5"),
            ("DELAYSHIM_STATS", stats.to_str().unwrap()),
            ("DELAYSHIM_LOG", log.to_str().unwrap()),
        ];
        if let Some(seed) = seed {
            settings.push(("DELAYSHIM_SEED", seed));
        }
        let out = run(
            under_shim(spawner.to_str().unwrap(), &settings).arg(PROBE),
            LIMIT,
        );
        assert_exit(&out, 0);
        let lines = read_stats(&stats);
        let seeds: Vec<_> = lines.iter().map(|l| l["seed"].to_string()).collect();
        assert!(
            seeds.iter().all(|s| s == &seeds[0]),
            "one seed for the whole tree: {lines:?}"
        );
        let probes: Vec<String> = lines
            .iter()
            .filter(|l| l["exe"].as_str().unwrap().ends_with("/probe"))
            .map(|l| l["pid"].to_string())
            .collect();
        assert_eq!(probes.len(), 37, "{lines:?}");
        let by_pid = delays_by_pid_in(&log);
        let mut draws: Vec<Vec<String>> = probes.iter().map(|pid| by_pid[pid].clone()).collect();
        assert!(draws.iter().all(|d| d.len() == 10), "{draws:?}");
        draws.sort();
        (seeds[0].clone(), draws)
    };
    let (seed, draws) = draws_under(None, "first");
    for pair in draws.windows(2) {
        // 10 delays of mean 5 us drawn alike by chance: about 1 in 10^10.
        assert_ne!(
            pair[0], pair[1],
            "two children drew the same delays: {draws:?}"
        );
    }
    let (_, again) = draws_under(Some(&seed), "again");
    assert_eq!(again, draws, "the seed reproduces every child's delays");
}
