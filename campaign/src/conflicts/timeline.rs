//! A run's potential races as a timeline: the conflicting and lock calls
//! of the processes involved, one column per process, one row per call
//! (time from the run's start, call, file, bytes, the locks the process
//! holds on that file after it, the call site, and whether the shim
//! delayed it), the calls of each finding marked.
//!
//! [`build`] is a pure function of the run's events and their analysis
//! (sites are named by the caller's function); [`Timeline::markdown`] is
//! the whole of it, [`Timeline::excerpt`] the few rows around the nearest
//! race, for a terminal.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use delayshim_settings::region::{Event, EventKind, FLAG_DELAYED, LOCK_FLOCK, LOCK_SHARED};

use super::{function_name, op_name, text, Analysis, FindingKind};

/// Processes an excerpt shows at most.
const EXCERPT_COLUMNS: usize = 3;
/// Rows between a race's two calls an excerpt shows all of.
const BETWEEN: usize = 12;

/// Rows a timeline shows after its last race's calls.
const AFTER: usize = 8;

/// One process of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub pid: u32,
    /// The executable's path, where known.
    pub executable: Option<String>,
    /// The command line, as one line.
    pub command: String,
}

impl Column {
    /// `pid N: EXECUTABLE: COMMAND` (the executable where it says more
    /// than the command's first word).
    pub fn label(&self) -> String {
        let first = self.command.split(' ').next().unwrap_or("");
        match &self.executable {
            Some(exe) if !exe.ends_with(first) || first.is_empty() => {
                format!("pid {} ({exe}): {}", self.pid, self.command)
            }
            _ => format!("pid {}: {}", self.pid, self.command),
        }
    }
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Nanoseconds from the run's first event.
    pub time: u64,
    /// Index into [`Timeline::columns`].
    pub column: usize,
    /// The thread, where it is not the process's main one.
    pub thread: Option<u32>,
    /// `read`, `write`, `lock`, `unlock`, `create` ...
    pub op: &'static str,
    /// The interposed function (`pwrite64`, `fcntl` ...).
    pub call: String,
    /// The file's name (its last component).
    pub file: String,
    /// Bytes `start..end` (`end` u64::MAX: to the end of the file).
    pub range: Option<(u64, u64)>,
    /// The locks the process holds on this file after the call.
    pub locks: String,
    pub delayed: bool,
    /// The call site, by function where it could be named.
    pub site: String,
    /// The findings this call is a side of: `#1 conflict` ...
    pub marks: Vec<String>,
}

/// The timeline of one run's potential races.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    /// Rows left out before the first shown (over the limit).
    pub left_out: usize,
    /// The nearest race: its two rows' indices, and its heading.
    pub nearest: Option<(usize, usize, String)>,
}

/// A lock a process holds: an inode and its family.
type Held = BTreeMap<(u64, u64, bool), Vec<(u64, u64, bool)>>;

fn lock_text(held: &Held, dev: u64, ino: u64) -> String {
    let mut parts = Vec::new();
    for flock in [false, true] {
        for &(start, end, exclusive) in held.get(&(dev, ino, flock)).into_iter().flatten() {
            let kind = if exclusive { "excl" } else { "shared" };
            let family = if flock { "flock" } else { "fcntl" };
            parts.push(if flock {
                format!("{kind} {family}")
            } else {
                format!("{kind} {family} {}", bytes(start, end))
            });
        }
    }
    if parts.is_empty() {
        "no lock".to_owned()
    } else {
        format!("holds {}", parts.join(", "))
    }
}

fn bytes(start: u64, end: u64) -> String {
    if end == u64::MAX || end.wrapping_sub(start) > 1 << 62 {
        format!("{start}..end")
    } else {
        format!("{start}..{end}")
    }
}

fn last_component(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// The timeline of `analysis`'s potential races (not the pairs whose
/// ordering the shim cannot see), from the run's `events`: calls of the
/// processes of those races (and of those that wrote or locked a lock
/// gap's file inside it) on the races' files and names, their lock
/// calls, their start and exit. `site` names an event's call site. At
/// most `limit` rows, the last ones up to a few after the last race.
pub fn build(
    events: &[Event],
    analysis: &Analysis,
    site: &mut dyn FnMut(&Event) -> String,
    limit: usize,
) -> Timeline {
    let races: Vec<_> = analysis
        .findings
        .iter()
        .filter(|f| f.kind != FindingKind::NotVisible)
        .collect();
    if races.is_empty() {
        return Timeline::default();
    }
    let mut pids: BTreeSet<u32> = races
        .iter()
        .flat_map(|f| [f.first.pid, f.second.pid])
        .collect();
    // A lock gap's two calls are one process's: the processes that wrote
    // or locked its file between them are the other side of the race.
    for finding in &races {
        let (a, b) = (finding.first.event, finding.second.event);
        let (Some(first), Some(second)) = (events.get(a), events.get(b)) else {
            continue;
        };
        let files = [(first.dev, first.ino), (second.dev, second.ino)];
        for event in &events[a.min(b)..a.max(b)] {
            let touches = matches!(event.kind, EventKind::Write | EventKind::Acquire)
                && event.ino != 0
                && files.contains(&(event.dev, event.ino));
            if touches {
                pids.insert(event.pid);
            }
        }
    }
    let columns: Vec<Column> = pids
        .iter()
        .map(|&pid| {
            let process = analysis.processes.get(&pid);
            Column {
                pid,
                executable: process.and_then(|p| p.executable.clone()),
                command: process.map(|p| p.command.clone()).unwrap_or_default(),
            }
        })
        .collect();
    let column_of: HashMap<u32, usize> = pids.iter().enumerate().map(|(i, &p)| (p, i)).collect();
    // The races' files: their inodes and names.
    let mut inodes = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut marks: HashMap<usize, Vec<String>> = HashMap::new();
    for (number, finding) in races.iter().enumerate() {
        for (access, side) in [(&finding.first, "first"), (&finding.second, "second")] {
            let Some(event) = events.get(access.event) else {
                continue;
            };
            if event.ino != 0 {
                inodes.insert((event.dev, event.ino));
            }
            if is_name(event.kind) {
                names.insert(event.aux);
            }
            marks.entry(access.event).or_default().push(format!(
                "#{} {} ({side})",
                number + 1,
                finding.kind.name()
            ));
        }
    }
    let last = races
        .iter()
        .map(|f| f.first.event.max(f.second.event))
        .max()
        .unwrap_or(0);
    let t0 = events.iter().map(|e| e.time).min().unwrap_or(0);
    let mut paths: HashMap<(u64, u64), String> = HashMap::new();
    let mut held: HashMap<u32, Held> = HashMap::new();
    let mut rows = Vec::new();
    let mut row_of: HashMap<usize, usize> = HashMap::new();
    let mut rows_at_last = usize::MAX - AFTER;
    for (index, event) in events.iter().enumerate() {
        if index > last && rows.len() >= rows_at_last + AFTER {
            break;
        }
        if index == last + 1 {
            rows_at_last = rows.len();
        }
        if is_name(event.kind) && event.ino != 0 && event.kind != EventKind::Unlink {
            paths.insert((event.dev, event.ino), text(event.name_bytes()));
        }
        let locks = held.entry(event.pid).or_default();
        let key = (event.dev, event.ino, event.aux & LOCK_FLOCK != 0);
        let mut released_some = false;
        match event.kind {
            EventKind::Acquire => {
                let range = (
                    event.start,
                    event.start.saturating_add(event.len),
                    event.aux & LOCK_SHARED == 0,
                );
                let ranges = locks.entry(key).or_default();
                ranges.retain(|&(s, e, _)| !(s < range.1 && range.0 < e));
                ranges.push(range);
            }
            EventKind::Release => {
                let (start, end) = (event.start, event.start.saturating_add(event.len));
                if let Some(ranges) = locks.get_mut(&key) {
                    let before = ranges.len();
                    ranges.retain(|&(s, e, _)| !(s < end && start < e));
                    released_some = ranges.len() < before;
                    if ranges.is_empty() {
                        locks.remove(&key);
                    }
                }
            }
            EventKind::ReleaseAll => {
                for flock in [false, true] {
                    released_some |= locks.remove(&(event.dev, event.ino, flock)).is_some();
                }
            }
            EventKind::Exit => locks.clear(),
            _ => {}
        }
        let Some(&column) = column_of.get(&event.pid) else {
            continue;
        };
        let marked = marks.get(&index);
        let shown = marked.is_some()
            || match event.kind {
                EventKind::Read | EventKind::Write | EventKind::Sync => {
                    inodes.contains(&(event.dev, event.ino))
                }
                EventKind::Open | EventKind::Create | EventKind::Unlink | EventKind::RenameTo => {
                    names.contains(&event.aux) || inodes.contains(&(event.dev, event.ino))
                }
                EventKind::Acquire | EventKind::Release => true,
                // A close is a lock call only where it let a lock go.
                EventKind::ReleaseAll => released_some,
                EventKind::Start | EventKind::Exit => true,
                EventKind::Fork | EventKind::Wait | EventKind::Map | EventKind::Detail => false,
            };
        if !shown {
            continue;
        }
        let file = if is_name(event.kind) {
            text(event.name_bytes())
        } else {
            paths
                .get(&(event.dev, event.ino))
                .cloned()
                .unwrap_or_default()
        };
        let lock_bearing = event.ino != 0
            && !matches!(
                event.kind,
                EventKind::Start | EventKind::Exit | EventKind::Unlink
            );
        let range = match event.kind {
            EventKind::Read | EventKind::Write | EventKind::Acquire | EventKind::Release => {
                Some((event.start, event.start.saturating_add(event.len.max(1))))
            }
            _ => None,
        };
        let call = match event.func {
            u16::MAX => String::new(),
            func => function_name(func),
        };
        row_of.insert(index, rows.len());
        rows.push(Row {
            time: event.time.saturating_sub(t0),
            column,
            thread: (event.tid != event.pid && event.tid != 0).then_some(event.tid),
            op: op_name(event),
            call,
            file: last_component(&file),
            range,
            locks: if lock_bearing {
                lock_text(locks, event.dev, event.ino)
            } else {
                String::new()
            },
            delayed: event.flags & FLAG_DELAYED != 0,
            site: if event.object_bytes().is_empty() {
                String::new()
            } else {
                site(event)
            },
            marks: marked.cloned().unwrap_or_default(),
        });
    }
    let left_out = rows.len().saturating_sub(limit);
    rows.drain(..left_out);
    let nearest = races.first().and_then(|f| {
        let a = row_of.get(&f.first.event)?.checked_sub(left_out)?;
        let b = row_of.get(&f.second.event)?.checked_sub(left_out)?;
        Some((a, b, format!("#1 {} on {}", f.kind.name(), f.file)))
    });
    Timeline {
        columns,
        rows,
        left_out,
        nearest,
    }
}

fn is_name(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Open | EventKind::Create | EventKind::Unlink | EventKind::RenameTo
    )
}

impl Row {
    /// What was called, on what: `write pwrite64 store.json 0..120`.
    fn call_text(&self) -> String {
        let mut out = self.op.to_owned();
        if !self.call.is_empty() && self.call != self.op {
            out.push(' ');
            out.push_str(&self.call);
        }
        if !self.file.is_empty() {
            out.push(' ');
            out.push_str(&self.file);
        }
        if let Some((start, end)) = self.range {
            out.push(' ');
            out.push_str(&bytes(start, end));
        }
        if let Some(thread) = self.thread {
            out.push_str(&format!(" [thread {thread}]"));
        }
        out
    }

    /// Lock state and delay: `no lock, DELAYED`.
    fn state_text(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.locks.is_empty() {
            parts.push(self.locks.clone());
        }
        if self.delayed {
            parts.push("DELAYED".into());
        }
        parts.join(", ")
    }

    /// The findings it is a side of: `<- #1 conflict (first)`.
    fn marks_text(&self) -> String {
        if self.marks.is_empty() {
            String::new()
        } else {
            format!("<- {}", self.marks.join(", "))
        }
    }
}

fn millis(nanos: u64) -> String {
    format!("{:.3}", nanos as f64 / 1e6)
}

impl Timeline {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The whole timeline as Markdown lines: who each column is, then a
    /// table with one column per process.
    pub fn markdown(&self) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut out = vec!["Processes:".to_owned(), String::new()];
        for column in &self.columns {
            let tick = |text: &str| format!("`{}`", text.replace('`', "'"));
            out.push(match &column.executable {
                Some(exe) => format!(
                    "- pid {} ({}): {}",
                    column.pid,
                    tick(exe),
                    tick(&column.command)
                ),
                None => format!("- pid {}: {}", column.pid, tick(&column.command)),
            });
        }
        out.push(String::new());
        let mut header = "| ms |".to_owned();
        for column in &self.columns {
            header.push_str(&format!(" pid {} |", column.pid));
        }
        out.push(header);
        out.push(format!("| ---: |{}", " --- |".repeat(self.columns.len())));
        if self.left_out > 0 {
            out.push(format!(
                "| ... | {} earlier calls left out |{}",
                self.left_out,
                " |".repeat(self.columns.len().saturating_sub(1))
            ));
        }
        for row in &self.rows {
            let mut cell = format!("`{}`", row.call_text());
            if !row.site.is_empty() {
                cell.push_str(&format!(" at `{}`", row.site));
            }
            let state = row.state_text();
            if !state.is_empty() {
                cell.push_str(&format!(": {}", state.replace("DELAYED", "**delayed**")));
            }
            if !row.marks.is_empty() {
                cell.push_str(&format!(" **{}**", row.marks_text()));
            }
            let cell = cell.replace('|', "\\|");
            let mut cells = vec![String::new(); self.columns.len()];
            cells[row.column] = cell;
            out.push(format!("| {} | {} |", millis(row.time), cells.join(" | ")));
        }
        out
    }

    /// The rows within `context` rows of the nearest race's two calls,
    /// of its two processes only, as text in columns `width` wide (a
    /// row's call, its site, its state, one line each), for a terminal.
    pub fn excerpt(&self, context: usize, width: usize) -> Vec<String> {
        let Some((a, b, heading)) = &self.nearest else {
            return Vec::new();
        };
        // The race's processes, and those that called between its two
        // calls (a lock gap's other side), three at most.
        let (lo, hi) = (*a.min(b), *a.max(b));
        let mut shown = vec![self.rows[*a].column];
        for row in std::iter::once(&self.rows[*b]).chain(&self.rows[lo..=hi]) {
            if !shown.contains(&row.column) && shown.len() < EXCERPT_COLUMNS {
                shown.push(row.column);
            }
        }
        shown.sort_unstable();
        // Rows of those processes, with the indices of the race's two.
        let rows: Vec<(usize, &Row)> = self
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| shown.contains(&r.column))
            .collect();
        let at = |index: usize| rows.iter().position(|(i, _)| *i == index).unwrap_or(0);
        let (first, second) = (at(*a), at(*b));
        // Everything between the two calls when that is short, else the
        // rows around each.
        let (lo, hi) = (first.min(second), first.max(second));
        let near = |i: usize| {
            i.abs_diff(first) <= context
                || i.abs_diff(second) <= context
                || (hi - lo <= BETWEEN && lo <= i && i <= hi)
        };
        // A text in lines of its lane's width, the later ones indented,
        // broken at a space where there is one.
        let wrap = |text: &str| -> Vec<String> {
            let chars: Vec<char> = text.chars().collect();
            let mut lines = Vec::new();
            let mut at = 0;
            while at < chars.len() || lines.is_empty() {
                let indent = if lines.is_empty() { 0 } else { 4 };
                let take = width.saturating_sub(indent).max(1);
                let mut end = (at + take).min(chars.len());
                if end < chars.len() {
                    if let Some(space) = chars[at..end].iter().rposition(|&c| c == ' ') {
                        if space > 0 {
                            end = at + space + 1;
                        }
                    }
                }
                let piece: String = chars[at..end].iter().collect();
                let piece = piece.trim_end();
                lines.push(format!("{}{piece:<take$}", " ".repeat(indent)));
                at = end;
            }
            lines
        };
        let mut out = vec![format!("nearest potential race, {heading}:")];
        for &column in &shown {
            out.push(format!("  {}", self.columns[column].label()));
        }
        let mut header = format!("{:>10}", "ms");
        for &column in &shown {
            header.push_str(&format!(
                "  {:<width$}",
                format!("pid {}", self.columns[column].pid)
            ));
        }
        out.push(header.trim_end().to_owned());
        let mut skipped = false;
        for (i, (_, row)) in rows.iter().enumerate() {
            if !near(i) {
                skipped = true;
                continue;
            }
            if skipped {
                out.push(format!("{:>10}", "..."));
                skipped = false;
            }
            let lane = shown.iter().position(|&c| c == row.column).unwrap_or(0);
            let mut texts = vec![row.call_text()];
            if !row.site.is_empty() {
                texts.push(format!("  at {}", row.site));
            }
            for more in [row.state_text(), row.marks_text()] {
                if !more.is_empty() {
                    texts.push(format!("  {more}"));
                }
            }
            let texts: Vec<String> = texts.iter().flat_map(|t| wrap(t)).collect();
            for (n, text) in texts.iter().enumerate() {
                let mut line = if n == 0 {
                    format!("{:>10}", millis(row.time))
                } else {
                    " ".repeat(10)
                };
                for l in 0..shown.len() {
                    line.push_str("  ");
                    if l == lane {
                        line.push_str(text);
                    } else {
                        line.push_str(&" ".repeat(width));
                    }
                }
                out.push(line.trim_end().to_owned());
            }
        }
        if skipped {
            out.push(format!("{:>10}", "..."));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conflicts::{Access, Finding, Process};
    use delayshim_settings::region::{tail_into, LOCK_EXCLUSIVE, LOCK_POSIX};

    fn event(kind: EventKind, pid: u32, time: u64) -> Event {
        let mut e = Event::new(kind);
        e.pid = pid;
        e.tid = pid;
        e.time = time;
        e
    }

    fn on(mut e: Event, ino: u64, start: u64, len: u64, site: u64) -> Event {
        e.dev = 1;
        e.ino = ino;
        e.start = start;
        e.len = len;
        e.site = site;
        tail_into(&mut e.object, b"store");
        e
    }

    fn access(events: &[Event], index: usize, op: &'static str) -> Access {
        let e = &events[index];
        Access {
            pid: e.pid,
            tid: e.tid,
            op,
            call: "-".into(),
            site: String::new(),
            time: e.time,
            event: index,
            function: None,
            delayed: false,
            range: None,
        }
    }

    /// Two processes append to one file: the second's write under no
    /// lock, its reads under fcntl locks; a third process does unrelated
    /// work on another file.
    fn run() -> (Vec<Event>, Analysis) {
        let mut open_a = event(EventKind::Open, 10, 1_000);
        open_a.dev = 1;
        open_a.ino = 7;
        tail_into(&mut open_a.name, b"/tmp/x/store.json");
        let mut lock = on(event(EventKind::Acquire, 10, 2_000), 7, 0, u64::MAX, 0x10);
        lock.aux = LOCK_EXCLUSIVE | LOCK_POSIX;
        lock.func = u16::MAX;
        let read_a = on(event(EventKind::Read, 10, 3_000), 7, 0, 100, 0x20);
        let mut write_b = on(event(EventKind::Write, 11, 3_500), 7, 50, 10, 0x30);
        write_b.flags = FLAG_DELAYED;
        let mut unlock = lock;
        unlock.kind = EventKind::Release;
        unlock.time = 4_000;
        let other = on(event(EventKind::Write, 12, 4_500), 99, 0, 1, 0x40);
        let events = vec![open_a, lock, read_a, write_b, unlock, other];
        let mut analysis = Analysis::default();
        for (pid, command) in [(10, "store add a"), (11, "store add b"), (12, "other")] {
            analysis.processes.insert(
                pid,
                Process {
                    pid,
                    command: command.into(),
                    executable: Some("/usr/bin/store".into()),
                    ..Process::default()
                },
            );
        }
        analysis.findings.push(Finding {
            kind: FindingKind::Conflict,
            file: "/tmp/x/store.json".into(),
            first: access(&events, 2, "read"),
            second: access(&events, 3, "write"),
            apart: 500,
            count: 1,
            note: None,
        });
        (events, analysis)
    }

    fn named(e: &Event) -> String {
        format!("fn_{:x}", e.site)
    }

    #[test]
    fn a_timeline_has_a_column_per_process_of_the_race_and_marks_its_calls() {
        let (events, analysis) = run();
        let timeline = build(&events, &analysis, &mut named, 100);
        assert_eq!(
            timeline.columns.iter().map(|c| c.pid).collect::<Vec<_>>(),
            [10, 11],
            "only the race's processes"
        );
        let ops: Vec<_> = timeline.rows.iter().map(|r| (r.column, r.op)).collect();
        assert_eq!(
            ops,
            [
                (0, "open"),
                (0, "lock"),
                (0, "read"),
                (1, "write"),
                (0, "unlock")
            ],
            "the third process's write is on another file"
        );
        let read = &timeline.rows[2];
        assert_eq!(read.file, "store.json");
        assert_eq!(read.range, Some((0, 100)));
        assert_eq!(read.locks, "holds excl fcntl 0..end");
        assert_eq!(read.site, "fn_20");
        assert_eq!(read.time, 2_000, "from the run's first event");
        assert_eq!(read.marks, ["#1 conflict (first)"]);
        let write = &timeline.rows[3];
        assert!(write.delayed);
        assert_eq!(write.locks, "no lock");
        assert_eq!(write.marks, ["#1 conflict (second)"]);
        assert_eq!(timeline.rows[4].locks, "no lock", "after the unlock");
        assert_eq!(
            timeline.nearest,
            Some((2, 3, "#1 conflict on /tmp/x/store.json".into()))
        );
    }

    #[test]
    fn markdown_is_a_table_with_one_column_per_process() {
        let (events, analysis) = run();
        let lines = build(&events, &analysis, &mut named, 100).markdown();
        assert!(
            lines.contains(&"- pid 10 (`/usr/bin/store`): `store add a`".to_owned()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"| ms | pid 10 | pid 11 |".to_owned()),
            "{lines:#?}"
        );
        let write = lines
            .iter()
            .find(|l| l.contains("`write store.json 50..60`"))
            .expect("the write's row");
        assert_eq!(
            write,
            "| 0.003 |  | `write store.json 50..60` at `fn_30`: no lock, **delayed** **<- #1 conflict (second)** |"
        );
    }

    #[test]
    fn a_limit_keeps_the_last_rows_and_says_how_many_went() {
        let (events, analysis) = run();
        let timeline = build(&events, &analysis, &mut named, 3);
        assert_eq!(timeline.left_out, 2);
        assert_eq!(timeline.rows[0].op, "read");
        assert_eq!(timeline.nearest.as_ref().map(|n| (n.0, n.1)), Some((0, 1)));
        assert_eq!(timeline.rows.len(), 3);
        assert!(timeline
            .markdown()
            .iter()
            .any(|l| l.contains("2 earlier calls left out")));
    }

    #[test]
    fn the_excerpt_shows_rows_near_the_race_in_lanes() {
        let (events, analysis) = run();
        let timeline = build(&events, &analysis, &mut named, 100);
        let lines = timeline.excerpt(1, 30);
        assert_eq!(
            lines[..4],
            [
                "nearest potential race, #1 conflict on /tmp/x/store.json:",
                "  pid 10: store add a",
                "  pid 11: store add b",
                "        ms  pid 10                          pid 11",
            ]
        );
        // lock, read, write, unlock are within one row of the race; open is not.
        assert_eq!(lines[4].trim(), "...");
        assert_eq!(lines[5], "     0.001  lock store.json 0..end");
        let write = lines
            .iter()
            .position(|l| l.contains("write store.json 50..60"))
            .unwrap();
        // The second process's lane starts after the time and one lane.
        assert_eq!(lines[write].find("write"), Some(10 + 2 + 30 + 2));
        assert_eq!(lines[write + 1].trim(), "at fn_30");
        assert_eq!(lines[write + 2].trim(), "no lock, DELAYED");
        assert_eq!(lines[write + 3].trim(), "<- #1 conflict (second)");
        assert!(lines.iter().all(|l| l.chars().count() <= 10 + 2 * 32));
        // A long text wraps in its lane rather than running into the next.
        let narrow = timeline.excerpt(0, 12);
        let read = narrow
            .iter()
            .position(|l| l.starts_with("     0.002"))
            .unwrap();
        assert_eq!(narrow[read], "     0.002  read");
        assert_eq!(narrow[read + 1], "                store.js");
        assert_eq!(narrow[read + 2], "                on");
        assert_eq!(narrow[read + 3], "                0..100");
    }

    #[test]
    fn a_lock_gap_shows_the_process_that_wrote_inside_it() {
        let (mut events, mut analysis) = run();
        // Process 10 read under its lock (event 2) and writes in a later
        // epoch (event 5, was the unrelated write); 11 wrote between.
        events[5] = on(event(EventKind::Write, 10, 4_500), 7, 0, 8, 0x50);
        analysis.findings[0] = Finding {
            kind: FindingKind::LockGap,
            second: access(&events, 5, "write"),
            ..analysis.findings[0].clone()
        };
        let timeline = build(&events, &analysis, &mut named, 100);
        assert_eq!(
            timeline.columns.iter().map(|c| c.pid).collect::<Vec<_>>(),
            [10, 11]
        );
        assert_eq!(
            timeline.rows.last().unwrap().marks,
            ["#1 lock gap (second)"]
        );
        // The excerpt shows the writer in between in its own lane.
        let lines = timeline.excerpt(0, 30);
        assert!(lines[3].ends_with("pid 10                          pid 11"));
        assert!(
            lines.iter().any(|l| l.starts_with(&format!(
                "{:>10}  {:30}  write store.json 50..60",
                "0.003", ""
            ))),
            "{lines:#?}"
        );
    }

    #[test]
    fn no_race_no_timeline() {
        let (events, mut analysis) = run();
        analysis.findings[0].kind = FindingKind::NotVisible;
        let timeline = build(&events, &analysis, &mut named, 100);
        assert!(timeline.is_empty());
        assert!(timeline.markdown().is_empty() && timeline.excerpt(3, 30).is_empty());
    }
}
