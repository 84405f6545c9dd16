//! The shim's statistics lines, summed. A process that exits writes
//! `{"event":"exit","pid":..,"exe":"..","calls":{FN:N},"delayed":{FN:N},...}`
//! (older shims write the same without `event`); each program also writes
//! a `{"event":"start",...}` line when it starts. [`StatsLine`] is the one
//! definition of a line: every field whose value is an object of counts is
//! summed by function, and every other whole-number field except the
//! process's identity is summed as a count, so fields the shim adds later
//! are summed without changes here.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// One line of a statistics file, as the shim writes it
/// (shim/src/stats.rs): the one definition every reader here parses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StatsLine {
    /// `start` or `exit`; older shims wrote exit lines without it.
    #[serde(default)]
    pub event: Option<StatsEvent>,
    #[serde(default)]
    pub pid: Option<i64>,
    #[serde(default)]
    pub ppid: Option<i64>,
    /// The process's executable.
    #[serde(default)]
    pub exe: Option<String>,
    /// The process's seed and strategy (exit lines).
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub strategy: Option<String>,
    /// Every other field: counts by function (`calls`, `delayed`,
    /// `delay_us`, `faults`) or one count (`injected`), by name, so that
    /// fields the shim adds later are summed with no change here.
    #[serde(flatten)]
    pub fields: BTreeMap<String, StatsField>,
}

/// What a line says about its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatsEvent {
    Start,
    Exit,
    /// An event a newer shim writes: not summed.
    #[serde(other)]
    Other,
}

/// A field of [`StatsLine::fields`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StatsField {
    ByFunction(BTreeMap<String, u64>),
    Count(u64),
    /// Anything else (a name, a negative number): not summed.
    Other(Value),
}

impl StatsLine {
    /// One per-function field (empty when the line does not have it).
    pub fn by_function(&self, name: &str) -> Option<&BTreeMap<String, u64>> {
        match self.fields.get(name) {
            Some(StatsField::ByFunction(counts)) => Some(counts),
            _ => None,
        }
    }
}

/// Statistics summed over processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Exit lines (processes) summed.
    pub processes: u64,
    /// Start lines: programs the shim was loaded into.
    pub started: u64,
    /// Per-function fields (`calls`, `delayed`, `delay_us`, `faults`, ...),
    /// each by function name.
    pub by_function: BTreeMap<String, BTreeMap<String, u64>>,
    /// Plain count fields (`injected`, ...).
    pub scalars: BTreeMap<String, u64>,
}

impl Counts {
    /// Adds one statistics line, parsed.
    pub fn add_line(&mut self, line: &StatsLine) {
        match line.event {
            Some(StatsEvent::Start) => {
                self.started += 1;
                return;
            }
            Some(StatsEvent::Other) => return,
            Some(StatsEvent::Exit) | None => self.processes += 1,
        }
        for (field, value) in &line.fields {
            match value {
                StatsField::ByFunction(counts) => {
                    let totals = self.by_function.entry(field.clone()).or_default();
                    for (function, n) in counts {
                        *totals.entry(function.clone()).or_default() += n;
                    }
                }
                StatsField::Count(n) => {
                    *self.scalars.entry(field.clone()).or_default() += n;
                }
                StatsField::Other(_) => {}
            }
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        self.processes += other.processes;
        self.started += other.started;
        for (field, counts) in &other.by_function {
            let totals = self.by_function.entry(field.clone()).or_default();
            for (function, n) in counts {
                *totals.entry(function.clone()).or_default() += n;
            }
        }
        for (field, n) in &other.scalars {
            *self.scalars.entry(field.clone()).or_default() += n;
        }
    }

    /// One per-function field (empty when no line had it).
    pub fn field(&self, name: &str) -> &BTreeMap<String, u64> {
        static EMPTY: BTreeMap<String, u64> = BTreeMap::new();
        self.by_function.get(name).unwrap_or(&EMPTY)
    }

    /// The sum of a per-function field over every function.
    pub fn total(&self, name: &str) -> u64 {
        self.field(name).values().sum()
    }

    /// Delays that can reorder something between processes: the shim's
    /// `injected` count, or every delay for a shim that does not report it.
    pub fn injected(&self) -> u64 {
        match self.scalars.get("injected") {
            Some(n) => *n,
            None => self.total("delayed"),
        }
    }

    /// Reads a statistics file of a run: a missing file is no process.
    pub fn read(path: &Path) -> Result<Counts> {
        let mut counts = Counts::default();
        for line in read_lines(path, true)? {
            counts.add_line(&line);
        }
        Ok(counts)
    }
}

/// The lines of a statistics file. A missing file is empty when
/// `missing_ok`; a line that is not a statistics line is an error.
pub fn read_lines(path: &Path, missing_ok: bool) -> Result<Vec<StatsLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(parsed) = serde_json::from_str::<StatsLine>(line) else {
            bail!(
                "{}:{}: not a delayshim statistics line: {line:.80}",
                path.display(),
                number + 1
            );
        };
        lines.push(parsed);
    }
    Ok(lines)
}

/// Statistics of many files, by executable and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsTable {
    pub by_exe: BTreeMap<String, Counts>,
    pub total: Counts,
}

impl StatsTable {
    /// Sums every line of `paths`; a missing file or a bad line is an error.
    pub fn read(paths: &[impl AsRef<Path>]) -> Result<StatsTable> {
        let mut table = StatsTable::default();
        for path in paths {
            for line in read_lines(path.as_ref(), false)? {
                let exe = line.exe.clone().unwrap_or_else(|| "(unknown)".into());
                table.by_exe.entry(exe).or_default().add_line(&line);
                table.total.add_line(&line);
            }
        }
        Ok(table)
    }

    /// The per-function fields any line had, in the shim's order where known.
    pub fn columns(&self) -> Vec<String> {
        let known = ["calls", "delayed", "delay_us", "faults"];
        let mut columns: Vec<String> = known
            .iter()
            .filter(|k| self.total.by_function.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        columns.extend(
            self.total
                .by_function
                .keys()
                .filter(|k| !known.contains(&k.as_str()))
                .cloned(),
        );
        columns
    }

    /// A text table per executable and in total: one row per function,
    /// under a row per family.
    pub fn text(&self) -> String {
        let columns = self.columns();
        let mut out = String::new();
        // With one executable its section would repeat the total's.
        let total_name = match self.by_exe.keys().next() {
            Some(exe) if self.by_exe.len() == 1 => format!("total ({exe})"),
            _ => "total".to_owned(),
        };
        let per_exe = self.by_exe.iter().filter(|_| self.by_exe.len() > 1);
        let sections = per_exe
            .map(|(exe, c)| (exe.as_str(), c))
            .chain(std::iter::once((total_name.as_str(), &self.total)));
        for (name, counts) in sections {
            let mut rows: Vec<Vec<String>> = Vec::new();
            let mut header = vec!["family / function".to_owned()];
            header.extend(columns.iter().cloned());
            rows.push(header);
            for (family, functions) in group_by_family(counts) {
                let mut row = vec![family.to_owned()];
                row.extend(columns.iter().map(|c| {
                    let sum: u64 = functions
                        .iter()
                        .map(|f| counts.field(c).get(*f).copied().unwrap_or(0))
                        .sum();
                    sum.to_string()
                }));
                rows.push(row);
                for function in functions {
                    let mut row = vec![format!("  {function}")];
                    row.extend(columns.iter().map(|c| {
                        counts
                            .field(c)
                            .get(function)
                            .copied()
                            .unwrap_or(0)
                            .to_string()
                    }));
                    rows.push(row);
                }
            }
            let scalars: Vec<String> = counts
                .scalars
                .iter()
                .map(|(k, v)| format!(", {k} {v}"))
                .collect();
            // Start lines are per program, exit lines per process: a
            // program without an exit line was killed (or left raw).
            let started = if counts.started > 0 {
                format!(", {} started", counts.started)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "{name}: {} process{} exited{started}{}\n",
                counts.processes,
                if counts.processes == 1 { "" } else { "es" },
                scalars.concat()
            ));
            if rows.len() == 1 {
                out.push_str("no intercepted calls\n\n");
                continue;
            }
            out.push_str(&align(&rows));
            out.push('\n');
        }
        out
    }

    pub fn json(&self) -> Value {
        let counts_json = |c: &Counts| {
            let mut map = serde_json::Map::new();
            map.insert("processes".into(), c.processes.into());
            map.insert("started".into(), c.started.into());
            for (field, counts) in &c.by_function {
                map.insert(field.clone(), serde_json::json!(counts));
            }
            for (field, n) in &c.scalars {
                map.insert(field.clone(), (*n).into());
            }
            let families: BTreeMap<&str, BTreeMap<&String, u64>> = group_by_family(c)
                .into_iter()
                .map(|(family, functions)| {
                    let sums = c
                        .by_function
                        .iter()
                        .map(|(field, counts)| {
                            (
                                field,
                                functions
                                    .iter()
                                    .map(|f| counts.get(*f).copied().unwrap_or(0))
                                    .sum(),
                            )
                        })
                        .collect();
                    (family, sums)
                })
                .collect();
            map.insert("families".into(), serde_json::json!(families));
            Value::Object(map)
        };
        serde_json::json!({
            "total": counts_json(&self.total),
            "by_exe": self.by_exe.iter().map(|(exe, c)| (exe.clone(), counts_json(c))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// Every function any field names, grouped under its family (`other` for
/// names outside the settings' table), families in the table's order.
fn group_by_family(counts: &Counts) -> Vec<(&'static str, Vec<&str>)> {
    let mut functions: Vec<&str> = counts
        .by_function
        .values()
        .flat_map(|c| c.keys().map(String::as_str))
        .collect();
    functions.sort_unstable();
    functions.dedup();
    let mut groups: Vec<(&'static str, Vec<&str>)> = delayshim_settings::FAMILIES
        .iter()
        .map(|f| (f.name, Vec::new()))
        .chain(std::iter::once(("other", Vec::new())))
        .collect();
    for function in functions {
        let family = delayshim_settings::family_of(function).map_or("other", |f| f.name);
        if let Some((_, members)) = groups.iter_mut().find(|(name, _)| *name == family) {
            members.push(function);
        }
    }
    groups.retain(|(_, members)| !members.is_empty());
    groups
}

/// Left-aligns the first column and right-aligns the others.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == 0 {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> StatsLine {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn every_count_field_is_summed_and_identity_is_not() {
        let mut counts = Counts::default();
        counts.add_line(&line(r#"{"pid":7,"ppid":1,"seed":9,"exe":"/a","calls":{"fcntl64":3},"delayed":{"fcntl64":2},"injected":2,"new_map":{"x":1}}"#));
        counts.add_line(&line(r#"{"event":"start","pid":8,"ppid":7,"exe":"/a"}"#));
        counts.add_line(&line(r#"{"event":"exit","pid":8,"ppid":7,"seed":9,"exe":"/a","calls":{"fcntl64":1,"fsync":4},"delayed":{"fcntl64":1},"injected":0,"new_map":{"x":5}}"#));
        assert_eq!(
            counts.processes, 2,
            "exit lines, and lines of shims without events"
        );
        assert_eq!(counts.started, 1);
        assert_eq!(counts.field("calls")["fcntl64"], 4);
        assert_eq!(counts.total("calls"), 8);
        assert_eq!(
            counts.field("new_map")["x"],
            6,
            "unknown fields are summed too"
        );
        assert_eq!(counts.scalars.get("pid"), None);
        assert_eq!(counts.injected(), 2);
        let mut old_shim = Counts::default();
        old_shim.add_line(&line(
            r#"{"pid":1,"calls":{"fsync":2},"delayed":{"fsync":2}}"#,
        ));
        assert_eq!(old_shim.injected(), 2, "falls back to delayed");
    }

    #[test]
    fn a_table_groups_functions_by_family_per_exe_and_in_total() {
        let dir = std::env::temp_dir().join(format!("stats-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"pid":1,"exe":"/bin/a","calls":{"pwrite64":2,"pwrite":1},"delayed":{"pwrite64":2},"delay_us":{"pwrite64":30}}"#,
                "\n",
                r#"{"event":"start","pid":2,"exe":"/bin/b"}"#,
                "\n",
                r#"{"event":"exit","pid":2,"exe":"/bin/b","calls":{"fsync":5},"delayed":{"fsync":1},"delay_us":{"fsync":7}}"#,
                "\n"
            ),
        )
        .unwrap();
        let table = StatsTable::read(&[&path]).unwrap();
        assert_eq!(table.columns(), ["calls", "delayed", "delay_us"]);
        let text = table.text();
        assert!(text.contains("/bin/a: 1 process exited\n"), "{text}");
        assert!(
            text.contains("/bin/b: 1 process exited, 1 started\n"),
            "{text}"
        );
        assert!(
            text.contains("total: 2 processes exited, 1 started\n"),
            "{text}"
        );
        let pwrite_row = text.lines().find(|l| l.starts_with("pwrite ")).unwrap();
        assert_eq!(
            pwrite_row.split_whitespace().collect::<Vec<_>>(),
            ["pwrite", "3", "2", "30"]
        );
        let json = table.json();
        assert_eq!(json["total"]["families"]["fsync"]["delay_us"], 7);
        assert_eq!(json["by_exe"]["/bin/a"]["calls"]["pwrite"], 1);
        let mut alone = table.clone();
        alone.by_exe.remove("/bin/b");
        assert!(alone
            .text()
            .starts_with("total (/bin/a): 2 processes exited, 1 started\n"));
        let mut idle = Counts::default();
        idle.add_line(&line(r#"{"pid":3,"exe":"/bin/c","calls":{},"delayed":{}}"#));
        let idle = StatsTable {
            by_exe: [("/bin/c".to_owned(), idle.clone())].into(),
            total: idle,
        };
        assert_eq!(
            idle.text(),
            "total (/bin/c): 1 process exited\nno intercepted calls\n\n"
        );
        std::fs::write(&path, "{\"pid\":1}\nnot json\n").unwrap();
        let error = StatsTable::read(&[&path]).unwrap_err().to_string();
        assert!(
            error.contains("s.jsonl:2: not a delayshim statistics line"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
