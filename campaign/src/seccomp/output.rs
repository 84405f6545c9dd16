//! The supervisor's output, in the shim's formats so that every reader
//! (`delayshim stats`, the campaign, replay, minimize) takes either
//! backend's: statistics lines (JSON, one per process at start and exit),
//! the delay log and the record. Each line is written whole with one
//! `write` to a file opened for appending, as the shim writes them.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::decide::Decision;

/// A file the shim's lines go to (or standard error).
#[derive(Debug)]
pub struct Sink(File);

impl Sink {
    pub fn open(path: &Path) -> std::io::Result<Sink> {
        if path == Path::new("/dev/stderr") {
            // SAFETY: duplicating our own standard error.
            let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: the new descriptor is ours.
            return Ok(Sink(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }));
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags_0600()
            .open(path)?;
        Ok(Sink(file))
    }

    pub fn line(&mut self, mut line: Vec<u8>) {
        line.push(b'\n');
        let _ = self.0.write_all(&line);
    }
}

trait Mode0600 {
    fn custom_flags_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    fn custom_flags_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600).custom_flags(libc::O_CLOEXEC)
    }
}

/// One process's counts, by function name.
#[derive(Debug, Default)]
pub struct ProcessCounts {
    pub calls: BTreeMap<&'static str, u64>,
    pub delayed: BTreeMap<&'static str, u64>,
    pub delay_nanos: BTreeMap<&'static str, u64>,
    pub faults: BTreeMap<&'static str, u64>,
    pub injected: u64,
}

/// Who a process is, as each statistics line starts.
#[derive(Debug, Clone)]
pub struct Identity {
    pub pid: u32,
    pub ppid: u32,
    pub exe: PathBuf,
}

fn identity(event: &str, who: &Identity) -> Map<String, Value> {
    let mut line = Map::new();
    line.insert("event".into(), json!(event));
    line.insert("pid".into(), json!(who.pid));
    line.insert("ppid".into(), json!(who.ppid));
    line.insert("exe".into(), json!(who.exe.to_string_lossy()));
    line
}

pub fn start_line(who: &Identity) -> Vec<u8> {
    serde_json::to_vec(&Value::Object(identity("start", who))).expect("JSON")
}

pub fn exit_line(who: &Identity, seed: u64, strategy: &str, counts: &ProcessCounts) -> Vec<u8> {
    let mut line = identity("exit", who);
    line.insert("seed".into(), json!(seed));
    line.insert("strategy".into(), json!(strategy));
    line.insert("backend".into(), json!("seccomp"));
    let object = |map: &BTreeMap<&'static str, u64>, scale: u64| {
        Value::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), json!(v / scale)))
                .collect(),
        )
    };
    line.insert("calls".into(), object(&counts.calls, 1));
    line.insert("delayed".into(), object(&counts.delayed, 1));
    line.insert("delay_us".into(), object(&counts.delay_nanos, 1000));
    line.insert("faults".into(), object(&counts.faults, 1));
    line.insert("injected".into(), json!(counts.injected));
    serde_json::to_vec(&Value::Object(line)).expect("JSON")
}

/// A path or other free text as one word: the shim's `Line::word`.
pub fn word(out: &mut Vec<u8>, data: &[u8]) {
    for &b in data {
        if b.is_ascii_graphic() && b != b'\\' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
}

/// What the log and the record say about one call.
#[derive(Debug, Default)]
pub struct CallText<'a> {
    pub func: &'static str,
    pub pid: u32,
    pub tid: u32,
    pub fd: Option<i64>,
    pub path: Option<&'a [u8]>,
    pub other: Option<&'a [u8]>,
    pub cmd: Option<&'static str>,
    pub lock: Option<&'static str>,
}

impl CallText<'_> {
    fn paths_and_command(&self, line: &mut Vec<u8>, command_first: bool) {
        let command = |line: &mut Vec<u8>| {
            if let Some(cmd) = self.cmd {
                line.extend_from_slice(format!(" cmd={cmd}").as_bytes());
            }
            if let Some(lock) = self.lock {
                line.extend_from_slice(format!(" lock={lock}").as_bytes());
            }
        };
        if command_first {
            command(line);
        }
        for (name, path) in [(" path=", self.path), (" other=", self.other)] {
            if let Some(path) = path.filter(|p| !p.is_empty()) {
                line.extend_from_slice(name.as_bytes());
                word(line, path);
            }
        }
        if !command_first {
            command(line);
        }
    }

    /// A delay-log line: `delayshim pid= tid= fn= [fd=] [path=] [other=] [cmd=] [lock=] when=...`.
    pub fn log_line(&self, when: &str) -> Vec<u8> {
        let mut line = format!(
            "delayshim pid={} tid={} fn={}",
            self.pid, self.tid, self.func
        )
        .into_bytes();
        if let Some(fd) = self.fd {
            line.extend_from_slice(format!(" fd={fd}").as_bytes());
        }
        self.paths_and_command(&mut line, false);
        line.extend_from_slice(when.as_bytes());
        line
    }

    /// A record line: `call proc= thread= index= fn= before_ns= after_ns= [fault=] ... pid=`.
    pub fn record_line(
        &self,
        lineage: u64,
        thread: u64,
        index: u64,
        decision: &Decision,
        fault: Option<&str>,
    ) -> Vec<u8> {
        let mut line = format!(
            "call proc={lineage:#x} thread={thread} index={index} fn={} before_ns={} after_ns={}",
            self.func, decision.before_nanos, decision.after_nanos
        )
        .into_bytes();
        if let Some(fault) = fault {
            line.extend_from_slice(format!(" fault={fault}").as_bytes());
        }
        self.paths_and_command(&mut line, true);
        line.extend_from_slice(format!(" pid={}", self.pid).as_bytes());
        line
    }
}

/// A record's process line: `process proc= pid= ppid= funcs= cmdline=`.
pub fn process_line(lineage: u64, who: &Identity, funcs: &[&str], cmdline: &[u8]) -> Vec<u8> {
    let mut line = format!(
        "process proc={lineage:#x} pid={} ppid={} funcs={} cmdline=",
        who.pid,
        who.ppid,
        funcs.join(",")
    )
    .into_bytes();
    word(&mut line, cmdline.strip_suffix(b"\0").unwrap_or(cmdline));
    line
}
