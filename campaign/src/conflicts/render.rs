//! The conflicts report as text (for `delayshim run --conflicts`), as
//! Markdown (for `delayshim report`) and as JSON (`conflicts.json`).

use std::fmt::Write as _;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use delayshim_settings::region::{Event, EventKind, FLAG_DELAYED};
use serde_json::{json, Value};

use super::{function_name, op_name, text as bytes_text, Access, Analysis, Finding, FindingKind};

fn millis(nanos: u64) -> String {
    format!("{:.3} ms", nanos as f64 / 1e6)
}

fn range(access: &Access) -> String {
    match access.range {
        Some((start, end)) if end == u64::MAX || end.wrapping_sub(start) > 1 << 62 => {
            format!(" bytes {start}..end")
        }
        Some((start, end)) => format!(" bytes {start}..{end}"),
        None => String::new(),
    }
}

fn side(analysis: &Analysis, access: &Access) -> String {
    let command = analysis
        .processes
        .get(&access.pid)
        .map(|p| p.command.as_str())
        .filter(|c| !c.is_empty())
        .unwrap_or("?");
    let thread = if access.tid != access.pid {
        format!(" thread {}", access.tid)
    } else {
        String::new()
    };
    let what = if access.call == access.op || access.call == "-" {
        access.op.to_owned()
    } else {
        format!("{} ({})", access.op, access.call)
    };
    format!(
        "{}{} at {} by pid {}{} ({}), {} after start{}",
        what,
        range(access),
        access.site,
        access.pid,
        thread,
        command,
        millis(access.time),
        if access.delayed { ", delayed" } else { "" }
    )
}

fn what(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::Conflict => "unordered accesses, at least one a change",
        FindingKind::LockGap => "read under one lock epoch, written in a later one",
        FindingKind::StaleLock => "a lock taken on an inode its path no longer names",
        FindingKind::NotVisible => "unordered as far as the shim sees",
    }
}

/// One finding, as lines of text.
pub fn finding_text(analysis: &Analysis, finding: &Finding) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} ({}; {} apart, seen {} time{})",
        finding.kind.name(),
        finding.file,
        what(finding.kind),
        millis(finding.apart),
        finding.count,
        if finding.count == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "  first:  {}", side(analysis, &finding.first));
    let _ = writeln!(out, "  second: {}", side(analysis, &finding.second));
    if let Some(note) = &finding.note {
        let _ = writeln!(out, "  why not a report: {note}");
    }
    out
}

/// The whole report for one run, as `delayshim run --conflicts` prints it.
pub fn text(analysis: &Analysis) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "delayshim conflicts: {} events from {} processes; potential races: {} site pairs",
        analysis.events,
        analysis.processes.len(),
        analysis.races()
    );
    if analysis.full {
        let _ = writeln!(
            out,
            "delayshim conflicts: the region filled up after {} events: later accesses were not seen",
            analysis.capacity
        );
    }
    for finding in &analysis.findings {
        out.push_str(&finding_text(analysis, finding));
    }
    out
}

/// A Markdown section for `delayshim report`, over several runs' analyses.
pub fn markdown(runs: &[(String, Analysis)]) -> String {
    let mut out = String::from("## Conflicts\n\n");
    let races: usize = runs.iter().map(|(_, a)| a.races()).sum();
    let full = runs.iter().filter(|(_, a)| a.full).count();
    let _ = writeln!(
        out,
        "{} runs analysed; potential races: {} site pairs{}.\n",
        runs.len(),
        races,
        if full > 0 {
            format!(" ({full} runs filled their region: later accesses not seen)")
        } else {
            String::new()
        }
    );
    for (run, analysis) in runs {
        for finding in &analysis.findings {
            let _ = writeln!(
                out,
                "- run {run}, **{}** on `{}` ({} apart, {}x)",
                finding.kind.name(),
                finding.file,
                millis(finding.apart),
                finding.count
            );
            let _ = writeln!(out, "  - {}", side(analysis, &finding.first));
            let _ = writeln!(out, "  - {}", side(analysis, &finding.second));
            if let Some(note) = &finding.note {
                let _ = writeln!(out, "  - not a report: {note}");
            }
        }
    }
    out
}

fn access_json(analysis: &Analysis, access: &Access) -> Value {
    json!({
        "pid": access.pid,
        "tid": access.tid,
        "command": analysis.processes.get(&access.pid).map(|p| p.command.clone()),
        "op": access.op,
        "call": access.call,
        "site": access.site,
        "time_ns": access.time,
        "delayed": access.delayed,
        "range": access.range.map(|(start, end)| json!([start, end])),
    })
}

/// The analysis as JSON.
pub fn json(analysis: &Analysis) -> Value {
    json!({
        "events": analysis.events,
        "full": analysis.full,
        "potential_races": analysis.races(),
        "findings": analysis.findings.iter().map(|f| json!({
            "kind": f.kind.name(),
            "file": f.file,
            "apart_ns": f.apart,
            "count": f.count,
            "note": f.note,
            "first": access_json(analysis, &f.first),
            "second": access_json(analysis, &f.second),
        })).collect::<Vec<_>>(),
    })
}

/// A Markdown timeline of the calls of the processes in `analysis`'s
/// findings, on the files of those findings and their locks: one column
/// per process, one row per call (time from the run's start, call, file,
/// bytes, locks the process holds after it, and whether the shim delayed
/// it). At most `limit` rows, the last ones before the last finding.
pub fn timeline(events: &[Event], analysis: &Analysis, limit: usize) -> String {
    let findings: Vec<&Finding> = analysis
        .findings
        .iter()
        .filter(|f| f.kind != FindingKind::NotVisible)
        .collect();
    if findings.is_empty() {
        return String::new();
    }
    let pids: BTreeSet<u32> = findings
        .iter()
        .flat_map(|f| [f.first.pid, f.second.pid])
        .collect();
    let files: BTreeSet<&str> = findings.iter().map(|f| f.file.as_str()).collect();
    let t0 = events.iter().map(|e| e.time).min().unwrap_or(0);
    let last = findings
        .iter()
        .map(|f| f.first.time.max(f.second.time))
        .max()
        .unwrap_or(0);
    // The name each inode was last opened by, as events go.
    let mut names: HashMap<(u64, u64), String> = HashMap::new();
    let mut held: HashMap<u32, BTreeSet<(u64, u64)>> = HashMap::new();
    let mut rows: Vec<(u64, u32, String)> = Vec::new();
    for event in events {
        let path = bytes_text(event.name_bytes());
        if matches!(
            event.kind,
            EventKind::Open | EventKind::Create | EventKind::RenameTo
        ) {
            names.insert((event.dev, event.ino), path.clone());
        }
        let locks = held.entry(event.pid).or_default();
        match event.kind {
            EventKind::Acquire => {
                locks.insert((event.dev, event.ino));
            }
            EventKind::Release | EventKind::ReleaseAll => {
                locks.remove(&(event.dev, event.ino));
            }
            EventKind::Exit => locks.clear(),
            _ => {}
        }
        let lock_count = locks.len();
        if !pids.contains(&event.pid) || event.time.saturating_sub(t0) > last {
            continue;
        }
        let file = match event.kind {
            EventKind::Open | EventKind::Create | EventKind::RenameTo | EventKind::Unlink => path,
            _ => names
                .get(&(event.dev, event.ino))
                .cloned()
                .unwrap_or_default(),
        };
        let is_lock = matches!(
            event.kind,
            EventKind::Acquire | EventKind::Release | EventKind::ReleaseAll
        );
        let on_file = files
            .iter()
            .any(|f| f.ends_with(&file) || file.ends_with(f.trim_start_matches("...")));
        if file.is_empty() || !(on_file || is_lock) {
            continue;
        }
        let short = file.rsplit('/').next().unwrap_or(&file).to_owned();
        let bytes = match event.kind {
            EventKind::Read | EventKind::Write if event.len > 1 << 62 => {
                format!(" {}..end", event.start)
            }
            EventKind::Read | EventKind::Write => {
                format!(
                    " {}..{}",
                    event.start,
                    event.start.saturating_add(event.len)
                )
            }
            _ => String::new(),
        };
        let mut cell = format!(
            "{} `{}` {}{}",
            op_name(event),
            function_name(event.func),
            short,
            bytes
        );
        if lock_count > 0 {
            let _ = write!(
                cell,
                " (holds {lock_count} lock{})",
                if lock_count == 1 { "" } else { "s" }
            );
        }
        if event.flags & FLAG_DELAYED != 0 {
            cell.push_str(" **delayed**");
        }
        rows.push((event.time.saturating_sub(t0), event.pid, cell));
    }
    let skip = rows.len().saturating_sub(limit);
    let columns: Vec<u32> = pids.into_iter().collect();
    let mut out = String::from("| ms |");
    for pid in &columns {
        let command = analysis
            .processes
            .get(pid)
            .map(|p| p.command.as_str())
            .unwrap_or("");
        let _ = write!(out, " pid {pid} `{}` |", command.replace('|', "/"));
    }
    out.push_str("\n| ---: |");
    out.push_str(&" --- |".repeat(columns.len()));
    out.push('\n');
    if skip > 0 {
        let _ = writeln!(
            out,
            "| ... | {skip} earlier calls left out |{}",
            " |".repeat(columns.len() - 1)
        );
    }
    let column: BTreeMap<u32, usize> = columns.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    for (time, pid, cell) in rows.into_iter().skip(skip) {
        let mut cells = vec![String::new(); columns.len()];
        cells[column[&pid]] = cell;
        let _ = writeln!(out, "| {:.3} | {} |", time as f64 / 1e6, cells.join(" | "));
    }
    out
}
