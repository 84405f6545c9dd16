//! The `delayshim` command as a user meets it: installed with the README's
//! command, run from elsewhere, and refusing bad input with one clear line
//! and the documented status.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::util::{
    artifacts, assert_exit, clean_command, delayshim, read_stats, run, target_dir, tempdir, text,
    totals, PROBE,
};

const LIMIT: Duration = Duration::from_secs(600);

/// The README's install command: the first line of a ```sh block that
/// starts with `cargo install`.
fn readme_install_command() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|line| line.starts_with("cargo install "))
        .expect("the README says how to install");
    line.split_whitespace().map(str::to_owned).collect()
}

/// A program built with `cc -static`.
fn static_program(dir: &Path) -> PathBuf {
    let source = dir.join("static.c");
    std::fs::write(&source, "int main(void) { return 0; }\n").unwrap();
    let program = dir.join("static");
    let cc = Command::new("cc")
        .arg("-static")
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .output()
        .unwrap();
    assert!(cc.status.success(), "cc -static: {}", text(&cc.stderr));
    program
}

/// The lines of `check`'s report that start with `prefix`.
fn report_line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
}

/// The family names `check` lists, and those it marks as delayed.
fn families(out: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let rows = out
        .lines()
        .skip_while(|l| !l.starts_with("imports by family"))
        .skip(1)
        .take_while(|l| l.starts_with("  "));
    let mut all = BTreeSet::new();
    let mut delayed = BTreeSet::new();
    for row in rows {
        let marked = row.starts_with("  *");
        let name = row[3..].split_whitespace().next().unwrap().to_owned();
        if marked {
            delayed.insert(name.clone());
        }
        all.insert(name);
    }
    (all, delayed)
}

#[test]
fn installed_with_the_readme_command_it_works_from_any_directory() {
    artifacts();
    let root = tempdir();
    let install_root = root.path().join("install");
    let home = root.path().join("home");
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();

    // Reusing the workspace's target directory keeps this to a relink.
    let words = readme_install_command();
    let out = run(
        clean_command(&words[0])
            .args(&words[1..])
            .arg("--root")
            .arg(&install_root)
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        LIMIT,
    );
    assert_exit(&out, 0);
    let installed = install_root.join("bin/delayshim");
    let bin_files: Vec<_> = std::fs::read_dir(install_root.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(bin_files, ["delayshim"], "one file is installed");

    // A fresh user: no cache yet, and no shim beside the command.
    let command = |subcommand: &str| {
        let mut command = clean_command(&installed);
        command
            .arg(subcommand)
            .env("HOME", &home)
            .env_remove("XDG_CACHE_HOME")
            .current_dir(&elsewhere);
        command
    };
    let sqlite_db = elsewhere.join("t.db");
    let out = run(
        command("run")
            .args(["--mean", "100us", "--stats", "stats.jsonl", "--", "sqlite3"])
            .arg(&sqlite_db)
            .arg("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);"),
        LIMIT,
    );
    assert_exit(&out, 0);
    let stats = read_stats(&elsewhere.join("stats.jsonl"));
    assert_eq!(stats.len(), 1, "one sqlite3 process, no preflight line");
    let delayed: u64 = totals(&stats, "delayed").values().sum();
    assert!(delayed > 0, "sqlite3's calls were delayed: {stats:?}");
    let cache = home.join(".cache/delayshim");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the shim's cache is private");
    let cached: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(cached.len(), 1, "one shim, under its content hash");

    // check: a dynamic program with many families, Python (following a
    // pyenv-style #! wrapper if PATH has one), and a static binary.
    let git = run(command("check").arg("git"), LIMIT);
    assert_exit(&git, 0);
    let git_out = text(&git.stdout);
    assert!(
        report_line(&git_out, "linking:").starts_with("linking: dynamic"),
        "{git_out}"
    );
    assert!(
        report_line(&git_out, "verdict:").starts_with("verdict: works: "),
        "{git_out}"
    );
    let (all, delayed) = families(&git_out);
    for family in ["write", "fcntl", "open", "rename", "unlink", "read"] {
        assert!(all.contains(family), "git imports {family}: {git_out}");
    }
    assert!(
        delayed.contains("fcntl") && !delayed.contains("read"),
        "{git_out}"
    );
    let only_fsync = run(command("check").args(["--funcs", "fsync", "git"]), LIMIT);
    assert_eq!(
        families(&text(&only_fsync.stdout)).1,
        BTreeSet::from(["fsync".to_owned()])
    );

    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let python = run(command("check").arg(python), LIMIT);
    assert_exit(&python, 0);
    let python_out = text(&python.stdout);
    assert!(
        report_line(&python_out, "go:").starts_with("go: no"),
        "{python_out}"
    );
    let (all, _) = families(&python_out);
    assert!(
        all.contains("pwrite") && all.contains("fsync"),
        "{python_out}"
    );

    // A static program: the shim is refused, the seccomp backend takes it.
    let static_out = run(command("check").arg(static_program(root.path())), LIMIT);
    assert_exit(&static_out, 0);
    let static_out = text(&static_out.stdout);
    assert_eq!(report_line(&static_out, "linking:"), "linking: static");
    assert!(
        report_line(&static_out, "verdict:")
            .starts_with("verdict: works under the seccomp backend")
            && report_line(&static_out, "verdict:").contains("statically linked")
            && report_line(&static_out, "backend (auto):").starts_with("backend (auto): seccomp"),
        "{static_out}"
    );

    // fuzz on the driver, then stats over what it wrote.
    let driver = artifacts().driver.clone();
    let out = run(
        command("fuzz")
            .args([
                "--runs", "2", "--mean", "50", "--seed", "4", "--keep", "all", "--out", "campaign",
                "--",
            ])
            .arg(&driver)
            .args(["--keys", "10"]),
        LIMIT,
    );
    assert_exit(&out, 0);
    let run_stats: Vec<PathBuf> = ["run-0", "run-1"]
        .iter()
        .map(|r| elsewhere.join("campaign").join(r).join("stats.jsonl"))
        .collect();
    let out = run(command("stats").arg("--json").args(&run_stats), LIMIT);
    assert_exit(&out, 0);
    let summed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = run_stats.iter().flat_map(|p| read_stats(p)).collect();
    assert!(!lines.is_empty());
    assert_eq!(summed["total"]["processes"], lines.len());
    for field in ["calls", "delayed", "delay_us"] {
        let expected = totals(&lines, field);
        let total = &summed["total"][field];
        for (function, n) in &expected {
            assert_eq!(total[function], *n, "{field} {function}");
        }
        assert_eq!(total.as_object().unwrap().len(), expected.len(), "{field}");
    }
    let fcntl_family: u64 = totals(&lines, "delayed")
        .iter()
        .filter(|(function, _)| {
            delayshim_settings::family_of(function).is_some_and(|f| f.name == "fcntl")
        })
        .map(|(_, n)| n)
        .sum();
    assert!(fcntl_family > 0);
    assert_eq!(
        summed["total"]["families"]["fcntl"]["delayed"],
        fcntl_family
    );

    // report over the two shards of one campaign.
    let mut shard_dirs = Vec::new();
    for shard in ["1/2", "2/2"] {
        let dir = format!("shard-{}", &shard[..1]);
        let out = run(
            command("fuzz")
                .args([
                    "--runs", "5", "--seed", "8", "--mean", "1", "--fds", "all", "--calls", "all",
                    "--shard", shard, "--out", &dir, "--",
                ])
                .arg(PROBE)
                .args(["paired", ".", "5", "1"]),
            LIMIT,
        );
        assert_exit(&out, 0);
        shard_dirs.push(dir);
    }
    let out = run(
        command("report")
            .arg("--json")
            .args(&shard_dirs)
            .arg(&shard_dirs[0]),
        LIMIT,
    );
    assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seeds: Vec<u64> = report["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    let unique: BTreeSet<u64> = seeds.iter().copied().collect();
    assert_eq!(seeds.len(), 5, "every run of the campaign once: {report:#}");
    assert_eq!(unique.len(), 5);
    assert_eq!(
        report["duplicates"], 3,
        "shard 1/2 (runs 0, 2, 4) given twice counts once"
    );
    let markdown = run(command("report").args(&shard_dirs), LIMIT);
    assert!(
        text(&markdown.stdout).contains("| PASS | 5 |"),
        "{}",
        text(&markdown.stdout)
    );
}

/// Asserts one line on standard error containing `says`, and `status`.
fn assert_refused(out: &Output, status: i32, says: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(status),
        "{stderr}{}",
        text(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(says), "{says:?} in {stderr}");
}

#[test]
fn bad_input_is_one_clear_line_and_the_documented_status() {
    let limit = Duration::from_secs(120);
    let not_output = tempdir();
    let cases: Vec<(Command, i32, &str)> = vec![
        (
            {
                let mut c = delayshim("run");
                c.args(["--bogus", "--", "true"]);
                c
            },
            125,
            "unexpected argument '--bogus'",
        ),
        (
            {
                let mut c = delayshim("fuzz");
                c.args(["--bogus"]);
                c
            },
            2,
            "unexpected argument '--bogus'",
        ),
        (
            {
                let mut c = delayshim("run");
                c.args(["--dist", "sometimes", "--", "sh", "-c", "true"]);
                c
            },
            125,
            "DELAYSHIM_DIST",
        ),
        (
            {
                let mut c = delayshim("run");
                c.args(["--", "no-such-program-anywhere"]);
                c
            },
            127,
            "not found in PATH",
        ),
        (
            {
                let mut c = delayshim("check");
                c.arg("no-such-program-anywhere");
                c
            },
            2,
            "not found in PATH",
        ),
        (
            {
                let mut c = delayshim("fuzz");
                c.args(["--", "/no/such/program"]);
                c
            },
            2,
            "no such file",
        ),
        (
            {
                let mut c = delayshim("report");
                c.arg(not_output.path());
                c
            },
            2,
            "is not a campaign's output directory",
        ),
        (
            {
                let mut c = delayshim("stats");
                c.arg(not_output.path().join("missing.jsonl"));
                c
            },
            2,
            "missing.jsonl",
        ),
        (
            {
                let mut c = delayshim("minimize");
                c.arg(not_output.path());
                c
            },
            2,
            "not the directory of a run of delayshim fuzz",
        ),
        (
            {
                let mut c = delayshim("fuzz");
                c.args(["--rnus", "3"]);
                c
            },
            2,
            "a similar argument exists: '--runs'",
        ),
        (
            {
                let mut c = delayshim("run");
                c.args(["sh", "-c", "true"]);
                c
            },
            125,
            "the program goes after --: delayshim run [OPTIONS] -- PROGRAM [ARGS]",
        ),
        (
            {
                let mut c = delayshim("run");
                c.args(["--funcs", "write,fsycn", "--", "sh", "-c", "true"]);
                c
            },
            125,
            "no family or function named \"fsycn\" (did you mean fsync?)",
        ),
        (
            {
                let mut c = delayshim("fuzz");
                c.args(["--strategy", "evry", "--", "sh", "-c", "true"]);
                c
            },
            2,
            "(did you mean every?): expected auto (the default), every,",
        ),
        (
            {
                let mut c = delayshim("fuzz");
                c.arg("--out")
                    .arg(not_output.path().join("afile"))
                    .args(["--", "sh", "-c", "true"]);
                c
            },
            2,
            "a file, not a directory",
        ),
    ];
    std::fs::write(not_output.path().join("afile"), "").unwrap();
    for (mut command, status, says) in cases {
        let out = run(&mut command, limit);
        assert_refused(&out, status, says);
        assert!(
            out.stdout.is_empty(),
            "{command:?} printed {}",
            text(&out.stdout)
        );
    }
    // run exits with the program's own status, and shows the seed it drew.
    let out = run(delayshim("run").args(["--", "sh", "-c", "exit 7"]), limit);
    assert_exit(&out, 7);
    let stderr = text(&out.stderr);
    let seed = stderr
        .strip_prefix("delayshim run: seed ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("the seed: {stderr}"));
    assert!(
        stderr.contains(&format!("(--seed {seed} repeats these delays)")),
        "{stderr}"
    );
    // `--log -` and `--log /dev/stderr` are standard error, not files.
    let dir = crate::util::tempdir();
    for log in ["-", "/dev/stderr"] {
        let out = run(
            delayshim("run")
                .args(["--seed", "1", "--log", log, "--", "sh", "-c", "echo x > f"])
                .current_dir(dir.path()),
            limit,
        );
        assert_exit(&out, 0);
        assert!(
            text(&out.stderr).contains(" fn=write "),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!dir.path().join("-").exists(), "no file named -");
    // An unwritable HOME: the shim goes to a private temporary directory.
    let out = run(
        delayshim("run")
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", "/dev/null")
            .args(["--", "sh", "-c", "exit 0"]),
        limit,
    );
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("no cache directory for the shim"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    let limit = Duration::from_secs(60);
    let bash = run(delayshim("completions").arg("bash"), limit);
    assert_exit(&bash, 0);
    assert!(
        text(&bash.stdout).contains("--victim-prob"),
        "setting options are completed"
    );
    let man = run(&mut delayshim("manpage"), limit);
    assert_exit(&man, 0);
    assert!(
        text(&man.stdout).starts_with(".ie"),
        "roff: {}",
        text(&man.stdout)
    );
    assert!(text(&man.stdout).contains("delayshim"));
    // A page per subcommand, as the top page's SEE ALSO names them.
    let pages = crate::util::tempdir();
    let out = run(delayshim("manpage").arg("--dir").arg(pages.path()), limit);
    assert_exit(&out, 0);
    for name in [
        "delayshim",
        "delayshim-run",
        "delayshim-fuzz",
        "delayshim-minimize",
    ] {
        let page = std::fs::read_to_string(pages.path().join(format!("{name}.1"))).unwrap();
        assert!(page.contains(".SH ENVIRONMENT"), "{name}");
    }
    let fuzz = run(delayshim("manpage").arg("fuzz"), limit);
    assert_exit(&fuzz, 0);
    assert!(text(&fuzz.stdout).contains(".TH delayshim-fuzz 1"));
}

#[test]
fn a_program_with_nothing_to_delay_is_warned_about() {
    let limit = Duration::from_secs(60);
    // auto takes the seccomp backend (libc-internal and raw calls reach
    // only the system-call boundary); the shim alone would delay nothing.
    let check = run(delayshim("check").arg("true"), limit);
    assert_exit(&check, 0);
    let verdict = text(&check.stdout);
    assert!(
        report_line(&verdict, "verdict:").contains("the preload shim would delay nothing"),
        "{verdict}"
    );
    let out = run(
        delayshim("run").args(["--backend", "preload", "--", "true"]),
        limit,
    );
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("import no function the shim interposes"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn on_a_terminal_fuzz_shows_progress_instead_of_passing_runs() {
    // python3's pty module gives the campaign a terminal for its output.
    let out_dir = tempdir();
    let out = run(
        clean_command("python3")
            .args([
                "-c",
                "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)",
            ])
            .arg(&artifacts().delayshim)
            .args(["fuzz", "--runs", "2", "--mean", "1", "--out"])
            .arg(out_dir.path())
            .arg("--")
            .arg(PROBE)
            .args(["paired", ".", "5", "1"])
            .env("XDG_CACHE_HOME", crate::util::shim_cache())
            .current_dir(out_dir.path()),
        Duration::from_secs(120),
    );
    assert_exit(&out, 0);
    let screen = text(&out.stdout);
    assert!(
        screen.contains("\r\x1b[Kdelayshim fuzz: 2/2 runs done, 0 failed"),
        "{screen:?}"
    );
    assert!(
        !screen.contains("] seed="),
        "passing runs are not listed: {screen:?}"
    );
    assert!(screen.contains("2 of 2 runs done"), "{screen:?}");
}

/// The numbers in `text`, as a set.
fn numbers(text: &str) -> BTreeSet<u32> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|word| word.parse().ok())
        .collect()
}

#[test]
fn help_and_readme_document_the_same_exit_statuses() {
    let help = run(&mut delayshim("--help"), Duration::from_secs(60));
    let help = text(&help.stdout);
    // `  run        the program's own ...` and its indented continuation lines.
    let mut by_command: Vec<(String, String)> = Vec::new();
    for line in help.lines().skip_while(|l| *l != "Exit statuses:").skip(1) {
        match line.strip_prefix("  ") {
            Some(rest) if !rest.starts_with(' ') => {
                let (name, text) = rest.split_once(' ').unwrap();
                by_command.push((name.to_owned(), text.to_owned()));
            }
            Some(rest) => by_command.last_mut().unwrap().1.push_str(rest),
            None => break,
        }
    }
    assert_eq!(by_command.len(), 6, "{help}");
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for (name, statuses) in by_command {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `delayshim {name}`")))
            .unwrap_or_else(|| panic!("README's exit-status table has no delayshim {name}"));
        assert_eq!(
            numbers(row),
            numbers(&statuses),
            "delayshim {name}:\n{row}\n{statuses}"
        );
    }
}

#[test]
fn check_names_why_the_loader_would_ignore_the_shim() {
    let dir = tempdir();
    let setuid = dir.path().join("setuid-true");
    std::fs::copy("/bin/true", &setuid).unwrap();
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let out = run(delayshim("check").arg(&setuid), Duration::from_secs(60));
    assert_exit(&out, 1);
    let report = text(&out.stdout);
    assert_eq!(
        report_line(&report, "secure mode:"),
        "secure mode: yes: setuid-true is set-user-ID"
    );
    assert!(
        report_line(&report, "verdict:").starts_with("verdict: refused: "),
        "{report}"
    );
}

#[test]
fn the_shims_statistics_lines_parse_into_the_one_type_the_command_reads() {
    use delayshim_campaign::stats::{read_lines, StatsEvent, StatsField};
    let dir = tempdir();
    let stats = dir.path().join("stats.jsonl");
    let settings = [
        ("DELAYSHIM_STATS", stats.to_str().unwrap()),
        ("DELAYSHIM_MEAN_US", "1"),
    ];
    let out = run(
        crate::util::under_shim(crate::util::PROBE, &settings).args([
            "paired",
            dir.path().to_str().unwrap(),
            "5",
            "1",
        ]),
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = read_lines(&stats, false).unwrap();
    let starts = lines
        .iter()
        .filter(|l| l.event == Some(StatsEvent::Start))
        .count();
    let exits: Vec<_> = lines
        .iter()
        .filter(|l| l.event == Some(StatsEvent::Exit))
        .collect();
    assert!(starts >= 1 && exits.len() == starts, "{lines:?}");
    for exit in &exits {
        assert!(exit.pid.is_some() && exit.ppid.is_some() && exit.seed.is_some());
        assert_eq!(exit.strategy.as_deref(), Some("every"));
        assert!(exit.exe.as_deref().is_some_and(|e| e.ends_with("/probe")));
        for field in ["calls", "delayed", "delay_us", "faults"] {
            assert!(exit.by_function(field).is_some(), "{field}: {exit:?}");
        }
        assert!(matches!(
            exit.fields.get("injected"),
            Some(StatsField::Count(_))
        ));
        // Every field the shim writes has its typed place.
        assert!(
            !exit
                .fields
                .values()
                .any(|f| matches!(f, StatsField::Other(_))),
            "{exit:?}"
        );
    }
    let delayed: u64 = exits
        .iter()
        .map(|e| e.by_function("delayed").unwrap().values().sum::<u64>())
        .sum();
    assert!(delayed > 0);
}
