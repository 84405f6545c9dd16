//! Conflicts in campaigns: every run gets a region of its own
//! ([`attach`]), its findings go to the run's `conflicts.json` and to
//! `OUT/conflicts/RUN.json`, which outlives the run's directory (removed
//! when it passes, with `--keep failures`) ([`finish`]), and the
//! campaign's `conflicts.json` holds them all, one entry per pair of sites
//! ([`collect`]), for the summary line and for `delayshim report`'s
//! section ([`markdown`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use std::sync::{Mutex, PoisonError};

use delayshim_settings::region::Event;

use super::{analyse, render, timeline};
use crate::region::{Region, DEFAULT_EVENTS};
use crate::symbols::Symbolizer;

/// A run's or a campaign's conflicts file.
pub const CONFLICTS: &str = "conflicts.json";
/// The directory of a campaign's per-run findings, one `RUN.json` each.
pub const PER_RUN: &str = "conflicts";

/// Gives the run's processes a region of their own. `None` when none can
/// be made (the run then goes on untracked, and its report says nothing).
pub fn attach(command: &mut Command) -> Option<Region> {
    let region = Region::create(DEFAULT_EVENTS).ok()?;
    let (var, path) = region.env();
    command.env(var, path);
    Some(region)
}

/// Analyses the run's events into `dir/conflicts.json` (sites named by
/// function where they can be), writes the timeline of its potential
/// races to `dir/timeline.md`, and removes the region. Returns the lines
/// a failure block shows: the few calls around the nearest race and the
/// full timeline's path (none without a race). Best effort: a run's
/// result never depends on it.
pub fn finish(region: Option<Region>, dir: &Path) -> Vec<String> {
    let Some(region) = region else {
        return Vec::new();
    };
    let Ok(events) = region.read() else {
        return Vec::new();
    };
    drop(region);
    let mut analysis = analyse(&events);
    // One symbolizer for the whole campaign: each object's tables and
    // DWARF are read once, not once per run.
    static SYMBOLS: Mutex<Option<Symbolizer>> = Mutex::new(None);
    let timeline = {
        let mut guard = SYMBOLS.lock().unwrap_or_else(PoisonError::into_inner);
        let symbols = guard.get_or_insert_with(Symbolizer::new);
        analysis.name_sites(&events.events, symbols);
        let mut site = |event: &Event| {
            analysis
                .site_name(event, symbols)
                .unwrap_or_else(|| raw_site(event))
        };
        timeline::build(&events.events, &analysis, &mut site, TIMELINE_ROWS)
    };
    let json = format!("{:#}\n", render::json(&analysis));
    let _ = fs::write(dir.join(CONFLICTS), &json);
    if let (Some(out), Some(name)) = (dir.parent(), dir.file_name()) {
        let per_run = out.join(PER_RUN);
        let mut file = name.to_os_string();
        file.push(".json");
        let _ = fs::create_dir_all(&per_run).and_then(|()| fs::write(per_run.join(file), &json));
    }
    if timeline.is_empty() {
        return Vec::new();
    }
    let page = format!(
        "# Timeline of the potential races\n\n{}\n{}\n",
        render::text(&analysis).replace('\n', "  \n"),
        timeline.markdown().join("\n")
    );
    let path = dir.join(TIMELINE);
    if fs::write(&path, page).is_err() {
        return Vec::new();
    }
    let mut lines = timeline.excerpt(EXCERPT_CONTEXT, EXCERPT_WIDTH);
    lines.push(format!("full timeline: {}", path.display()));
    lines
}

/// A site as the shim recorded it: the tail of its object's file name
/// and the offset in it.
fn raw_site(event: &Event) -> String {
    format!(
        "{}+{:#x}",
        String::from_utf8_lossy(event.object_bytes()),
        event.site
    )
}

/// The timeline a run's finish wrote, as a section of a failure's
/// explanation (`delayshim minimize`), if the run had a potential race.
pub fn explanation_section(dir: &Path) -> Option<String> {
    let page = fs::read_to_string(dir.join(TIMELINE)).ok()?;
    let body = page.strip_prefix("# Timeline of the potential races\n")?;
    Some(format!(
        "## Timeline of the run's potential races\n\nThe conflicting and lock calls of the processes involved, as the failing run made them (time from its start):\n{body}"
    ))
}

/// A run's timeline of the calls behind its potential races.
pub const TIMELINE: &str = "timeline.md";
/// Rows a timeline shows at most.
const TIMELINE_ROWS: usize = 2000;
/// Rows around each call of the nearest race in a failure block, and the
/// width of a process's column there.
const EXCERPT_CONTEXT: usize = 1;
const EXCERPT_WIDTH: usize = 52;

/// A finding's identity across runs: its kind and its two sites.
fn pair_key(finding: &Value) -> String {
    let side = |name: &str| {
        let access = &finding[name];
        format!(
            "{} {} {}",
            access["op"].as_str().unwrap_or(""),
            access["call"].as_str().unwrap_or(""),
            access["site"].as_str().unwrap_or("")
        )
    };
    let (mut a, mut b) = (side("first"), side("second"));
    if a > b {
        std::mem::swap(&mut a, &mut b);
    }
    format!("{} | {a} | {b}", finding["kind"].as_str().unwrap_or(""))
}

/// Merges the runs' findings under `out` (`out/conflicts/run-*.json`)
/// into `out/conflicts.json`: one entry per site pair, with the runs it
/// was seen in and its nearest occurrence. Returns the site pairs that
/// are potential races (not those whose ordering the shim cannot see).
pub fn collect(out: &Path) -> Result<usize> {
    let mut pairs: BTreeMap<String, Value> = BTreeMap::new();
    let mut runs = 0;
    let mut full = Vec::new();
    let mut files: Vec<_> = match fs::read_dir(out.join(PER_RUN)) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort_by_key(|e| e.file_name());
    for entry in files {
        let Ok(bytes) = fs::read(entry.path()) else {
            continue;
        };
        let Ok(run) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        runs += 1;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let name = file_name.trim_end_matches(".json").to_owned();
        if run["full"].as_bool() == Some(true) {
            full.push(name.clone());
        }
        for finding in run["findings"].as_array().into_iter().flatten() {
            let key = pair_key(finding);
            let apart = finding["apart_ns"].as_u64().unwrap_or(u64::MAX);
            let entry = pairs.entry(key).or_insert_with(|| {
                let mut first = finding.clone();
                first["runs"] = json!([]);
                first
            });
            if let Some(list) = entry["runs"].as_array_mut() {
                list.push(json!(name));
            }
            if apart < entry["apart_ns"].as_u64().unwrap_or(u64::MAX) {
                let runs_seen = entry["runs"].clone();
                *entry = finding.clone();
                entry["runs"] = runs_seen;
            }
        }
    }
    let mut findings: Vec<Value> = pairs.into_values().collect();
    findings.sort_by_key(|f| {
        (
            f["kind"] == "ordering not visible",
            f["apart_ns"].as_u64().unwrap_or(u64::MAX),
        )
    });
    let races = findings
        .iter()
        .filter(|f| f["kind"] != "ordering not visible")
        .count();
    let merged = json!({
        "runs": runs,
        "potential_races": races,
        "runs_whose_region_filled_up": full,
        "findings": findings,
    });
    fs::write(out.join(CONFLICTS), format!("{merged:#}\n"))
        .with_context(|| format!("writing {}", out.join(CONFLICTS).display()))?;
    Ok(races)
}

/// The summary's line: how many site pairs are potential races.
pub fn summary_line(out: &Path) -> String {
    match collect(out) {
        Ok(races) => format!(
            "potential races: {races} site pairs (conflicting file accesses, lock gaps, stale locks; {})\n",
            out.join(CONFLICTS).display()
        ),
        Err(error) => format!("potential races: unknown ({error:#})\n"),
    }
}

fn side_text(access: &Value) -> String {
    let range = match access["range"]
        .as_array()
        .map(|r| (r[0].as_u64(), r[1].as_u64()))
    {
        Some((Some(start), Some(end))) if end > 1 << 62 => format!(" bytes {start}..end"),
        Some((Some(start), Some(end))) => format!(" bytes {start}..{end}"),
        _ => String::new(),
    };
    format!(
        "{} `{}`{} at `{}` by pid {} (`{}`)",
        access["op"].as_str().unwrap_or(""),
        access["call"].as_str().unwrap_or(""),
        range,
        access["site"].as_str().unwrap_or(""),
        access["pid"],
        access["command"].as_str().unwrap_or("?")
    )
}

/// `delayshim report`'s Markdown section over the campaigns in `dirs`.
pub fn markdown(dirs: &[impl AsRef<Path>]) -> String {
    let mut out = String::from("\n## Conflicts\n\n");
    let mut any = false;
    for dir in dirs {
        let dir = dir.as_ref();
        let Ok(bytes) = fs::read(dir.join(CONFLICTS)) else {
            continue;
        };
        let Ok(merged) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        any = true;
        let _ = writeln!(
            out,
            "`{}`: {} runs analysed, potential races: {} site pairs.\n",
            dir.display(),
            merged["runs"],
            merged["potential_races"]
        );
        for finding in merged["findings"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "- **{}** on `{}`: {:.3} ms apart at the nearest, in {} runs",
                finding["kind"].as_str().unwrap_or(""),
                finding["file"].as_str().unwrap_or(""),
                finding["apart_ns"].as_u64().unwrap_or(0) as f64 / 1e6,
                finding["runs"].as_array().map_or(0, Vec::len)
            );
            let _ = writeln!(out, "  - {}", side_text(&finding["first"]));
            let _ = writeln!(out, "  - {}", side_text(&finding["second"]));
            if let Some(note) = finding["note"].as_str() {
                let _ = writeln!(out, "  - not counted: {note}");
            }
        }
        if let Some(full) = merged["runs_whose_region_filled_up"]
            .as_array()
            .filter(|f| !f.is_empty())
        {
            let _ = writeln!(
                out,
                "\n{} runs filled their region: accesses after that were not seen.",
                full.len()
            );
        }
    }
    if any {
        out
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_by_site_pair_keeping_the_nearest() {
        let out = tempfile::tempdir().unwrap();
        let finding = |apart: u64, first: &str| {
            json!({"kind": "conflict", "file": "/f", "apart_ns": apart, "count": 1,
                   "first": {"op": "write", "call": "pwrite", "site": first, "pid": 1},
                   "second": {"op": "read", "call": "pread", "site": "p+0x2", "pid": 2}})
        };
        fs::create_dir(out.path().join(PER_RUN)).unwrap();
        for (run, apart, site) in [
            ("run-0", 500, "p+0x1"),
            ("run-1", 100, "p+0x1"),
            ("run-2", 50, "p+0x3"),
        ] {
            let run_json = json!({"full": run == "run-2", "findings": [finding(apart, site)]});
            let file = out.path().join(PER_RUN).join(format!("{run}.json"));
            fs::write(file, run_json.to_string()).unwrap();
        }
        assert_eq!(collect(out.path()).unwrap(), 2);
        let merged: Value =
            serde_json::from_slice(&fs::read(out.path().join(CONFLICTS)).unwrap()).unwrap();
        assert_eq!(merged["findings"][0]["apart_ns"], 50);
        assert_eq!(merged["findings"][1]["apart_ns"], 100);
        assert_eq!(merged["findings"][1]["runs"], json!(["run-0", "run-1"]));
        assert_eq!(merged["runs_whose_region_filled_up"], json!(["run-2"]));
        let section = markdown(&[out.path()]);
        assert!(
            section.contains("potential races: 2 site pairs"),
            "{section}"
        );
        assert!(
            section.contains("in 2 runs") && section.contains("`p+0x3`"),
            "{section}"
        );
    }
}
