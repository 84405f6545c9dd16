//! Shared helpers: building and finding the release shim and driver,
//! running programs under the shim, reading its statistics and log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const PROBE: &str = env!("CARGO_BIN_EXE_probe");

/// The workspace's target directory, from this test binary's own path
/// (`TARGET/PROFILE/deps/tests-HASH`), so CARGO_TARGET_DIR is honoured.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("TARGET/PROFILE/deps/EXE")
        .to_owned()
}

pub struct Artifacts {
    pub shim: PathBuf,
    pub driver: PathBuf,
    /// The `delayshim` command.
    pub delayshim: PathBuf,
    /// The release directory, where the race targets are.
    pub release: PathBuf,
}

/// Builds the release shim, driver, delayshim command and race targets once
/// per test run: the shim is
/// measured as users load it, and the driver's bundled SQLite is only
/// optimised in release.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let target = target_dir();
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "delayshim",
                "-p",
                "driver",
                "-p",
                "delayshim-cli",
                "-p",
                "delayshim-targets",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build");
        assert!(
            status.success(),
            "cargo build of the release artifacts failed"
        );
        let release = target.join("release");
        Artifacts {
            shim: release.join("libdelayshim.so"),
            driver: release.join("driver"),
            delayshim: release.join("delayshim"),
            release,
        }
    })
}

pub fn shim() -> &'static Path {
    &artifacts().shim
}

pub fn driver() -> &'static Path {
    &artifacts().driver
}

/// Where the tests' `delayshim` commands keep the shim they carry, instead
/// of the user's cache directory.
pub fn shim_cache() -> PathBuf {
    target_dir().join("test-shim-cache")
}

/// `delayshim SUBCOMMAND` with no inherited `DELAYSHIM_*` or `LD_PRELOAD`.
pub fn delayshim(subcommand: &str) -> Command {
    let mut command = clean_command(&artifacts().delayshim);
    command.arg(subcommand).env("XDG_CACHE_HOME", shim_cache());
    command
}

/// A command with no inherited `DELAYSHIM_*` or `LD_PRELOAD`.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DELAYSHIM_") {
            command.env_remove(&name);
        }
    }
    command.env_remove("LD_PRELOAD");
    command
}

/// A command that runs `program` under the shim with `settings`.
pub fn under_shim(program: impl AsRef<std::ffi::OsStr>, settings: &[(&str, &str)]) -> Command {
    let mut command = clean_command(program);
    command.env("LD_PRELOAD", shim());
    command.envs(settings.iter().copied());
    command
}

/// Runs `command` to completion, failing the test (instead of hanging the
/// suite) if it is still running after `limit`.
pub fn run(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawning");
    // Read while it runs: a program that prints more than a pipe holds
    // (64 KiB) would otherwise block on its next write and look hung.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        if start.elapsed() > limit {
            // SAFETY: kill takes a process group id.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("{command:?} still running after {limit:?}: hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("reading stdout"),
        stderr: stderr.join().expect("reading stderr"),
    }
}

use std::os::unix::process::CommandExt as _;

/// Asserts a finished program's exit status, showing what it printed if not.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every line the shim appended to a statistics file: a start line per
/// program and an exit line per process.
pub fn read_stats_events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad stats line {line:?}: {e}"))
        })
        .collect()
}

/// The statistics lines the shim appended to `path`, one per process
/// that exited.
pub fn read_stats(path: &Path) -> Vec<serde_json::Value> {
    read_stats_events(path)
        .into_iter()
        .filter(|line| line["event"] == "exit")
        .collect()
}

/// The sum over processes of one statistics field (`calls`, `delayed`,
/// `delay_us`), by function name.
pub fn totals(stats: &[serde_json::Value], field: &str) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for process in stats {
        for (name, count) in process[field].as_object().expect("an object") {
            *totals.entry(name.clone()).or_default() += count.as_u64().expect("a count");
        }
    }
    totals
}

/// One parsed line of the delay log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub fields: BTreeMap<String, String>,
}

impl LogLine {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Each process's delays (`delay_us`) in a log, in order, by pid.
pub fn delays_by_pid_in(path: &Path) -> BTreeMap<String, Vec<String>> {
    let mut by_pid: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in read_log(path) {
        by_pid
            .entry(line.get("pid").unwrap().to_owned())
            .or_default()
            .push(line.get("delay_us").unwrap().to_owned());
    }
    by_pid
}

pub fn read_log(path: &Path) -> Vec<LogLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let rest = line
                .strip_prefix("delayshim ")
                .unwrap_or_else(|| panic!("log line {line:?}"));
            LogLine {
                fields: rest
                    .split(' ')
                    .filter_map(|field| field.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            }
        })
        .collect()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("delayshim-test-")
        .tempdir()
        .expect("tempdir")
}

/// Builds `tests/c/NAME.c` with `flags` once per test run, into the
/// target directory; returns the program's path.
pub fn c_program(name: &str, flags: &[&str]) -> PathBuf {
    static BUILT: std::sync::Mutex<BTreeMap<String, PathBuf>> =
        std::sync::Mutex::new(BTreeMap::new());
    let key = format!("{name} {}", flags.join(" "));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let dir = target_dir().join("c-tests");
    std::fs::create_dir_all(&dir).expect("creating target/c-tests");
    let variant: String = flags
        .iter()
        .flat_map(|f| f.chars())
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let out = dir.join(format!("{name}-{variant}"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.c"));
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-pthread"])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .status()
        .expect("running cc");
    assert!(status.success(), "cc {} failed", source.display());
    built.insert(key, out.clone());
    out
}

/// The dynamic symbols `program` imports.
pub fn imports(program: &Path) -> Vec<String> {
    let out = Command::new("nm")
        .args(["-D", "--undefined-only"])
        .arg(program)
        .output()
        .expect("running nm");
    text(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .map(|symbol| symbol.split('@').next().unwrap_or(symbol).to_owned())
        .collect()
}

/// The number before `label` in the driver's summary line.
pub fn figure(summary: &str, label: &str) -> u64 {
    let before = &summary[..summary
        .find(label)
        .unwrap_or_else(|| panic!("{label}: {summary}"))];
    let number = before.trim_end().rsplit(' ').next().unwrap();
    number
        .parse()
        .unwrap_or_else(|_| panic!("{label}: {summary}"))
}
