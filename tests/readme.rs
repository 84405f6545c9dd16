//! README.md stays true: every ```sh block runs as written, from the
//! repository's root, and exits as it says (`# expect exit N`, else 0); the
//! sample outputs (```text KIND blocks) have the shape of what the tools
//! print now; the settings table names every variable. The one ```bash
//! block is the test command itself, which CI runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use crate::util::{
    artifacts, assert_exit, clean_command, delayshim, run, shim_cache, target_dir, tempdir, text,
};

const LIMIT: Duration = Duration::from_secs(300);

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The README's blocks fenced with "```" followed by `info`, in order.
fn blocks(readme: &str, info: &str) -> Vec<String> {
    let opening = format!("```{info}");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, line) if line == opening => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn sh_blocks(readme: &str) -> Vec<String> {
    blocks(readme, "sh")
}

fn expected_exit(block: &str) -> i32 {
    block
        .lines()
        .find_map(|line| line.trim().strip_prefix("# expect exit "))
        .map_or(0, |code| {
            code.parse().expect("a status after '# expect exit'")
        })
}

fn release() -> PathBuf {
    target_dir().join("release")
}

/// A README block as the tests run it: the default target directory
/// replaced by the tests' own, `delayshim` found there (the install
/// command itself is tested in cli::), the shim cached apart.
fn runnable(block: &str) -> std::process::Command {
    let script = block
        .replace("cargo install --locked --path cli", ":")
        .replace("$PWD/target/release/", "target/release/")
        .replace("target/release/", &format!("{}/", release().display()));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(release()).chain(std::env::split_paths(&path)))
        .unwrap();
    let mut command = clean_command("bash");
    command
        .args(["-eo", "pipefail", "-c", &script])
        .env("CARGO_TARGET_DIR", target_dir())
        .env("XDG_CACHE_HOME", shim_cache())
        .env("PATH", path)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

#[test]
fn every_sh_block_in_the_readme_runs() {
    artifacts();
    let blocks = sh_blocks(&readme());
    assert!(blocks.len() >= 6, "found {} blocks", blocks.len());
    // The blocks' /tmp/delayshim-* paths, in a directory of this test run's
    // own: a campaign refuses an --out that another run of the suite (or
    // another user of the machine) left or is writing.
    let scratch = crate::util::tempdir();
    for block in blocks {
        let block = block.replace(
            "/tmp/delayshim-",
            &format!("{}/delayshim-", scratch.path().display()),
        );
        let out = run(&mut runnable(&block), LIMIT);
        assert_eq!(
            out.status.code(),
            Some(expected_exit(&block)),
            "README block:\n{block}\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn blocks_are_found_and_annotated() {
    let readme = "text\n```sh\necho a\n# expect exit 1\n```\n```bash\nno\n```\n```sh\nb\n```\n```text fuzz\nx\n```\n";
    let blocks = sh_blocks(readme);
    assert_eq!(blocks, ["echo a\n# expect exit 1\n", "b\n"]);
    assert_eq!(expected_exit(&blocks[0]), 1);
    assert_eq!(expected_exit(&blocks[1]), 0);
    assert_eq!(self::blocks(readme, "text fuzz"), ["x\n"]);
}

#[test]
fn the_settings_table_names_every_variable() {
    let readme = readme();
    let start = readme.find("## Settings").expect("a Settings section");
    let table: Vec<&str> = readme[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .collect();
    for setting in delayshim_settings::SETTINGS {
        let row = table
            .iter()
            .find(|row| row.starts_with(&format!("| `{}` |", setting.var)))
            .unwrap_or_else(|| panic!("{} has no row in the README's settings table", setting.var));
        if let Some(option) = setting.option {
            assert!(row.contains(&format!("`--{option}`")), "{row}");
        }
    }
}

#[test]
fn the_families_table_lists_every_family_and_function() {
    let readme = readme();
    for family in delayshim_settings::FAMILIES {
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| `{}` | ", family.name)))
            .unwrap_or_else(|| panic!("the README's families table has no {}", family.name));
        let on = if family.default_on {
            "| yes |"
        } else {
            "| no |"
        };
        assert!(row.contains(on), "{row}");
        let listed: Vec<&str> = row
            .rsplit('|')
            .nth(1)
            .unwrap()
            .split(',')
            .map(|f| f.trim().trim_matches('`'))
            .collect();
        assert_eq!(listed, family.functions, "{row}");
    }
}

/// A line's shape: paths, numbers and lists of `name count` pairs
/// replaced, spaces collapsed, and a run's own output reduced to its label.
fn shape(line: &str) -> String {
    static RULES: std::sync::OnceLock<Vec<(Regex, &str)>> = std::sync::OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [
            // Which of auto's cells a campaign's runs went to follows the
            // calibration's timing: the sample's are as good as any.
            (
                r"\b(?:every-fixed|every|locks|sites|sparse|pct|victims)@\d+(?:\.\d+)?(?:us|ms)",
                "CELL",
            ),
            (
                r"CELL \d+/\d+( failing)? in \d+(?:\.\d+)? s(?:, CELL \d+/\d+(?: failing)? in \d+(?:\.\d+)? s)*",
                "CELLS$1",
            ),
            (
                r"(runs \d+-\d+: )(?:every-fixed|every|locks|sites|sparse|pct|victims) \d+%?(?:,? (?:every-fixed|every|locks|sites|sparse|pct|victims) \d+%?)*",
                "${1}ARMS",
            ),
            // What the program under test printed is its own business.
            (r"^(\s+(?:stdout|stderr):).*", "$1"),
            // A word with a slash is a path (after `NAME=` or a backquote).
            (r"(^|[\s=`(])[^\s=`(\[]*/[^\s`,;)]*", "${1}PATH"),
            // `fcntl64 12, fsync 3` ending a line or before `)` or `,`.
            (
                r"[A-Za-z_][A-Za-z0-9_]* \d+(?:, [A-Za-z_][A-Za-z0-9_]* \d+)*([,)]|$)",
                "COUNTS$1",
            ),
            (r"\d+(?:\.\d+)?", "N"),
            (r"\s+", " "),
        ]
        .into_iter()
        .map(|(pattern, replacement)| (Regex::new(pattern).unwrap(), replacement))
        .collect()
    });
    let mut shape = line.trim_end().to_owned();
    for (pattern, replacement) in rules {
        shape = pattern.replace_all(&shape, *replacement).into_owned();
    }
    shape
}

/// Every line of every README block of `kind` has the shape of a line in
/// `real`, the output of the same command run now.
fn assert_samples_match(kind: &str, real: &str) {
    let real_shapes: BTreeSet<String> = real.lines().map(shape).collect();
    let samples = blocks(&readme(), &format!("text {kind}"));
    assert!(!samples.is_empty(), "README has no ```text {kind} block");
    for sample in samples {
        for line in sample.lines().filter(|l| l.trim() != "...") {
            assert!(
                real_shapes.contains(&shape(line)),
                "README's {kind} line\n  {line}\nhas the shape\n  {}\nwhich no line printed now has:\n{}",
                shape(line),
                real_shapes.iter().cloned().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

#[test]
fn line_shapes_tell_formats_apart() {
    assert_eq!(
        shape("[1/5] seed=719 PASS 2.1 s  delays: fcntl64 153683, pwrite64 13231"),
        "[N/N] seed=N PASS N s delays: COUNTS"
    );
    assert_eq!(
        shape("    reproduce: cd /w && LD_PRELOAD=/x/lib.so DELAYSHIM_SEED=1 target/release/driver --keys 10"),
        " reproduce: cd PATH && LD_PRELOAD=PATH DELAYSHIM_SEED=N PATH --COUNTS"
    );
    assert_eq!(shape("    stdout: FAIL: 3/10 wrong"), " stdout:");
    assert_ne!(
        shape("[1/5] seed=1 PASS 2.1 s"),
        shape("[1/5] seed=1 2.1 s PASS")
    );
}

#[test]
fn sample_campaign_output_has_the_current_format() {
    artifacts();
    let out_dir = tempdir();
    // The README's passing campaign: the default program, the driver.
    let passing = run(
        delayshim("fuzz")
            .args(["--runs", "2", "--seed", "7", "--mean", "50", "--out"])
            .arg(out_dir.path().join("pass")),
        LIMIT,
    );
    assert_exit(&passing, 0);
    // And its failing one (64 threads on 10 keys lose updates every time).
    let failing = run(
        delayshim("fuzz")
            .args([
                "--runs",
                "3",
                "--seed",
                "2",
                "--auto-arms",
                "locks",
                "--out",
            ])
            .arg(out_dir.path().join("fail"))
            .arg("--")
            .arg(release().join("driver"))
            .args(["--op", "get-set", "--keys", "10"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        LIMIT,
    );
    assert_exit(&failing, 1);
    let real = text(&passing.stdout) + &text(&failing.stdout);
    assert_samples_match("fuzz", &real);
}

#[test]
fn sample_check_stats_and_report_output_has_the_current_format() {
    artifacts();
    let check = run(delayshim("check").arg("sqlite3"), LIMIT);
    assert_exit(&check, 0);
    assert_samples_match("check", &text(&check.stdout));

    // The README's own blocks, with their /tmp files moved to a temporary
    // directory: the pipeline whose statistics `delayshim stats` sums, and
    // the two shards that `delayshim report` merges.
    let dir = tempdir();
    let readme = readme();
    let moved =
        |block: &str| block.replace("/tmp/delayshim-", &format!("{}/", dir.path().display()));
    let find = |needle: &str| {
        sh_blocks(&readme)
            .into_iter()
            .find(|b| b.contains(needle))
            .unwrap_or_else(|| panic!("a README sh block with {needle}"))
    };
    let stats_block = moved(&find("delayshim stats "));
    let stats = run(&mut runnable(&stats_block), LIMIT);
    assert_exit(&stats, 0);
    assert_samples_match("stats", &text(&stats.stdout));

    let report_block = moved(&find("delayshim report "));
    let report = run(&mut runnable(&report_block), LIMIT);
    assert_exit(&report, 0);
    assert_samples_match("report", &text(&report.stdout));

    // The shim's own lines: the same fields, of the same kinds.
    let stats_file = dir.path().join("cli.jsonl");
    let real_line = std::fs::read_to_string(&stats_file).unwrap();
    let exit_line = real_line
        .lines()
        .find(|l| l.contains(r#""event":"exit""#))
        .expect("an exit line");
    let real: serde_json::Value = serde_json::from_str(exit_line).unwrap();
    for sample in blocks(&readme, "text stats-line") {
        let sample: serde_json::Value = serde_json::from_str(sample.trim()).unwrap();
        let kinds = |v: &serde_json::Value| -> Vec<(String, &'static str)> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let kind = match v {
                        serde_json::Value::Object(_) => "object",
                        serde_json::Value::Number(_) => "number",
                        serde_json::Value::String(_) => "string",
                        _ => "other",
                    };
                    (k.clone(), kind)
                })
                .collect()
        };
        assert_eq!(
            kinds(&sample),
            kinds(&real),
            "README's statistics line vs the shim's"
        );
    }
    let log = dir.path().join("delays.log");
    let driver = run(
        delayshim("run")
            .arg("--log")
            .arg(&log)
            .args(["--locks", "release", "--when", "after", "--"])
            .arg(release().join("driver"))
            .args(["--workers", "2", "--threads", "2", "--keys", "5"]),
        LIMIT,
    );
    assert_exit(&driver, 0);
    let log = std::fs::read_to_string(&log).unwrap();
    let keys = |line: &str| -> Vec<String> {
        line.split(' ')
            .skip(1)
            .map(|field| field.split('=').next().unwrap().to_owned())
            .collect()
    };
    // Lines of different calls name different fields (a lock's `cmd`).
    let real_keys: BTreeSet<Vec<String>> = log.lines().map(keys).collect();
    for sample in blocks(&readme, "text log-line") {
        assert!(
            real_keys.contains(&keys(sample.trim())),
            "README's log line {sample} has fields no line has now: {real_keys:?}"
        );
        assert!(sample.starts_with("delayshim "));
    }
}
