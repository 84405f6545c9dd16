//! The conflicts report as text (for `delayshim run --conflicts`), as
//! Markdown (for `delayshim report`) and as JSON (`conflicts.json`).

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::{Access, Analysis, Finding, FindingKind};

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
    let site = match &access.function {
        Some(function) => format!("{function} [{}]", access.site),
        None => access.site.clone(),
    };
    format!(
        "{}{} at {} by pid {}{} ({}), {} after start{}",
        what,
        range(access),
        site,
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
        "function": access.function,
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
