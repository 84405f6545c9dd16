//! Explaining a failure: shrink a failing run's recorded delays to the few
//! that still make it fail, by delta debugging over the record, and say
//! which calls, processes, threads and call sites they are.
//!
//! Scheduling is not deterministic, so a candidate set "fails" when at
//! least `threshold` of `tries` replays fail. Replays stop early once the
//! verdict is certain either way.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::symbols::Symbolizer;

/// How minimizing decides that a set of delays still fails.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Replays of each candidate.
    pub tries: u32,
    /// The share of them that must fail.
    pub threshold: f64,
    /// Replays of each of the three sets whose rates the explanation gives.
    pub rate_tries: u32,
}

impl Default for Options {
    /// 5 of 10 replays: a set that fails half the time passes this test
    /// three times in five, one that fails a fifth of the time once in
    /// thirty, one that never fails, never. The rates are measured over 20
    /// replays each.
    fn default() -> Options {
        Options {
            tries: 10,
            threshold: 0.5,
            rate_tries: 20,
        }
    }
}

/// A failing run's record, split into its lines.
#[derive(Debug, Clone)]
pub struct Record {
    /// `process ...` lines: every candidate keeps them.
    pub processes: Vec<String>,
    /// `call ...` lines: the delays and faults to minimize.
    pub calls: Vec<String>,
}

impl Record {
    pub fn read(path: &Path) -> Result<Record> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the run's record {}", path.display()))?;
        let mut record = Record {
            processes: Vec::new(),
            calls: Vec::new(),
        };
        for line in text.lines() {
            match line.split(' ').next() {
                Some("process") => record.processes.push(line.to_owned()),
                Some("call") => record.calls.push(line.to_owned()),
                _ => {}
            }
        }
        Ok(record)
    }

    /// Writes the process lines and the chosen calls as a replay file.
    pub fn write_subset(&self, calls: &[usize], path: &Path) -> Result<()> {
        let mut text = String::new();
        for line in self
            .processes
            .iter()
            .chain(calls.iter().map(|&i| &self.calls[i]))
        {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// Replays a candidate file and says whether the program failed; replays
/// run on several threads at once.
pub trait Replayer: Sync {
    /// Runs the program once with `DELAYSHIM_REPLAY=replay` (or with
    /// delays off when `replay` is `None`); true if it failed.
    fn fails(&self, replay: Option<&Path>) -> Result<bool>;
}

/// What minimizing found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Indices into [`Record::calls`].
    pub kept: Vec<usize>,
    pub recorded: usize,
    pub replays: u64,
    /// Failures out of `rate_tries` with no delays, the whole record, the kept set.
    pub rates: [u32; 3],
    pub rate_tries: u32,
    /// The share of replays a set must fail.
    pub threshold: f64,
    /// The replay file holding the kept set.
    pub minimal: PathBuf,
}

impl Outcome {
    /// Whether the kept set's measured rate reaches the threshold: below
    /// it, the set is not an explanation to trust.
    pub fn reliable(&self) -> bool {
        f64::from(self.rates[2]) >= self.threshold * f64::from(self.rate_tries)
    }
}

/// The verdicts reached so far, one JSON line each in
/// `DIR/progress.jsonl`: a rerun after an interrupt skips them.
#[derive(Debug, Serialize, Deserialize)]
struct Verdict {
    tries: u32,
    threshold: f64,
    calls: Vec<usize>,
    fails: bool,
}

/// Replays `replay` up to `tries` times, `jobs` at a time, stopping once
/// `stop(failures, done)` holds; returns the failures and replays made.
fn replay_batch(
    replayer: &dyn Replayer,
    replay: Option<&Path>,
    tries: u32,
    jobs: usize,
    stop: &(dyn Fn(u32, u32) -> bool + Sync),
) -> Result<(u32, u32)> {
    use std::sync::atomic::{AtomicU32, Ordering};
    let started = AtomicU32::new(0);
    let done = AtomicU32::new(0);
    let failures = AtomicU32::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        // Decided by the replays finished, counting the
                        // ones still running as passes: never more than
                        // needed are started.
                        let failed = failures.load(Ordering::SeqCst);
                        let begun = started.load(Ordering::SeqCst);
                        if begun >= tries || stop(failed, begun) {
                            return Ok(());
                        }
                        if started
                            .compare_exchange(begun, begun + 1, Ordering::SeqCst, Ordering::SeqCst)
                            .is_err()
                        {
                            continue;
                        }
                        if replayer.fails(replay)? {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a replay thread panicked")?;
        }
        Ok(())
    })?;
    Ok((failures.into_inner(), done.into_inner()))
}

/// Shrinks `record` to a small set of calls that still fails, replaying
/// `jobs` at a time; the verdicts go to `dir/progress.jsonl` as they are
/// reached, and a rerun over the same `dir` starts from them.
pub fn minimize(
    record: &Record,
    dir: &Path,
    replayer: &dyn Replayer,
    options: Options,
    jobs: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let candidate = dir.join("candidate.txt");
    let progress_path = dir.join("progress.jsonl");
    let mut known: HashMap<Vec<usize>, bool> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(&progress_path) {
        for line in text.lines() {
            if let Ok(verdict) = serde_json::from_str::<Verdict>(line) {
                if verdict.tries == options.tries && verdict.threshold == options.threshold {
                    known.insert(verdict.calls, verdict.fails);
                }
            }
        }
    }
    let resumed = known.len();
    let mut saved = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&progress_path)
        .with_context(|| format!("opening {}", progress_path.display()))?;
    let needed = (f64::from(options.tries) * options.threshold)
        .ceil()
        .max(1.0) as u32;
    let tries = options.tries;
    let mut replays = 0u64;
    // One batch of replays; a candidate smaller than the whole record must
    // pass two, so that a set which rarely fails is not kept by luck (with
    // the defaults, one failing a tenth of the time passes once in 400,000).
    let mut still_fails = |calls: &[usize], replays: &mut u64| -> Result<bool> {
        if let Some(&fails) = known.get(calls) {
            return Ok(fails);
        }
        record.write_subset(calls, &candidate)?;
        let batches = if calls.len() < record.calls.len() {
            2
        } else {
            1
        };
        let mut fails = true;
        for _ in 0..batches {
            let decided = |failures: u32, begun: u32| {
                failures >= needed || failures + (tries - begun) < needed
            };
            let (failures, made) = replay_batch(replayer, Some(&candidate), tries, jobs, &decided)?;
            *replays += u64::from(made);
            if failures < needed {
                fails = false;
                break;
            }
        }
        let verdict = Verdict {
            tries,
            threshold: options.threshold,
            calls: calls.to_vec(),
            fails,
        };
        writeln!(saved, "{}", serde_json::to_string(&verdict)?)
            .with_context(|| format!("writing {}", progress_path.display()))?;
        known.insert(calls.to_vec(), fails);
        Ok(fails)
    };
    let all: Vec<usize> = (0..record.calls.len()).collect();
    if resumed > 0 {
        progress(&format!(
            "resuming from {resumed} verdicts in {}",
            progress_path.display()
        ));
    }
    progress(&format!(
        "checking that the whole record ({} delays) fails again",
        all.len()
    ));
    if !still_fails(&all, &mut replays)? {
        bail!(
            "the whole record fails fewer than {needed} of {} replays: nothing to minimize (try more --tries, or a run that fails more reliably)",
            options.tries
        );
    }
    let kept = ddmin(all, |subset| {
        progress(&format!(
            "trying {} of {} delays ({replays} replays so far)",
            subset.len(),
            record.calls.len()
        ));
        still_fails(subset, &mut replays)
    })?;
    let minimal = dir.join("minimal.txt");
    record.write_subset(&kept, &minimal)?;
    let full = dir.join("full.txt");
    record.write_subset(&(0..record.calls.len()).collect::<Vec<_>>(), &full)?;
    let mut rates = [0u32; 3];
    for (slot, replay) in [
        (0, None),
        (1, Some(full.as_path())),
        (2, Some(minimal.as_path())),
    ] {
        progress(&format!(
            "measuring the failure rate of {} over {} replays",
            ["no delays", "the whole record", "the minimal set"][slot],
            options.rate_tries
        ));
        let (failures, made) =
            replay_batch(replayer, replay, options.rate_tries, jobs, &|_, _| false)?;
        rates[slot] = failures;
        replays += u64::from(made);
    }
    let _ = std::fs::remove_file(&candidate);
    Ok(Outcome {
        kept,
        recorded: record.calls.len(),
        replays,
        rates,
        rate_tries: options.rate_tries,
        threshold: options.threshold,
        minimal,
    })
}

/// Zeller's delta debugging: the smallest subset (1-minimal) of `items`
/// for which `fails` holds, given that it holds for all of them.
pub fn ddmin<T: Clone>(
    mut items: Vec<T>,
    mut fails: impl FnMut(&[T]) -> Result<bool>,
) -> Result<Vec<T>> {
    let mut n = 2usize;
    while items.len() >= 2 {
        let chunk = items.len().div_ceil(n);
        let chunks: Vec<Vec<T>> = items.chunks(chunk).map(<[T]>::to_vec).collect();
        let mut reduced = false;
        for part in &chunks {
            if fails(part)? {
                items = part.clone();
                n = 2;
                reduced = true;
                break;
            }
        }
        if !reduced && chunks.len() > 2 {
            for skip in 0..chunks.len() {
                let complement: Vec<T> = chunks
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .flat_map(|(_, c)| c.iter().cloned())
                    .collect();
                if fails(&complement)? {
                    items = complement;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if n >= items.len() {
                break;
            }
            n = (2 * n).min(items.len());
        }
    }
    if items.len() == 1 && fails(&[])? {
        items.clear();
    }
    Ok(items)
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
}

/// Undoes the shim's `\xNN` escapes.
pub fn unescape(word: &str) -> Vec<u8> {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            if let Some(value) = bytes
                .get(i + 2..i + 4)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// A record line as a person reads it.
pub fn describe_call(line: &str, record: &Record, symbols: &mut Symbolizer) -> String {
    let proc = field(line, "proc").unwrap_or("?");
    let command = record
        .processes
        .iter()
        .find(|p| field(p, "proc") == Some(proc))
        .and_then(|p| field(p, "cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&unescape(c))
                .split('\0')
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "?".into());
    let function = field(line, "fn").unwrap_or("?");
    let mut args: Vec<String> = Vec::new();
    if let Some(cmd) = field(line, "cmd") {
        args.push(cmd.replace('|', " | "));
    }
    if let Some(lock) = field(line, "lock") {
        args.push(lock.to_owned());
    }
    let mut text = format!("`{function}({})`", args.join(", "));
    if let Some(path) = field(line, "path") {
        let _ = write!(text, " on `{}`", String::from_utf8_lossy(&unescape(path)));
    }
    if let Some(other) = field(line, "other") {
        let _ = write!(text, " and `{}`", String::from_utf8_lossy(&unescape(other)));
    }
    // By pid (the lineage hash, which names the process across replays,
    // means nothing to a reader); thread 0 is the process's first.
    let pid = field(line, "pid")
        .or_else(|| {
            record
                .processes
                .iter()
                .find(|p| field(p, "proc") == Some(proc))
                .and_then(|p| field(p, "pid"))
        })
        .unwrap_or("?");
    let thread = match field(line, "thread") {
        Some("0") | None => String::new(),
        Some(thread) => format!(", thread {thread}"),
    };
    let _ = write!(text, " by pid {pid}{thread} `{command}`");
    if let Some(site) = field(line, "site") {
        let site = String::from_utf8_lossy(&unescape(site)).into_owned();
        let named = site.rsplit_once("+0x").and_then(|(object, offset)| {
            let offset = u64::from_str_radix(offset, 16).ok()?;
            let name = symbols.locate(Path::new(object), offset)?;
            Some(format!("{name} in {object}"))
        });
        let _ = write!(text, ", called from {}", named.unwrap_or(site));
    }
    let micros = |name| {
        field(line, name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1000
    };
    let (before, after) = (micros("before_ns"), micros("after_ns"));
    if before > 0 {
        let _ = write!(text, ": sleep {before} us before the call");
    }
    if after > 0 {
        let _ = write!(
            text,
            "{} {after} us after it",
            if before > 0 { ", and" } else { ": sleep" }
        );
    }
    if let Some(fault) = field(line, "fault") {
        let _ = write!(text, "; injected fault {fault}");
    }
    text
}

/// The explanation, as Markdown: the failing run's `timeline` (its
/// potential races' calls, where it had some), then the delays kept.
pub fn explanation(
    record: &Record,
    outcome: &Outcome,
    replay_command: &str,
    timeline: Option<&str>,
) -> String {
    let mut symbols = Symbolizer::new();
    let mut text = String::from("# Why this run failed\n\n");
    if let Some(timeline) = timeline {
        text.push_str(timeline.trim_end());
        text.push_str("\n\n## The delays that make it fail\n\n");
    }
    let kept = match outcome.kept.len() {
        1 => "this one".to_owned(),
        n => format!("these {n}"),
    };
    let measured = format!("{} of {} replays", outcome.rates[2], outcome.rate_tries);
    if outcome.reliable() {
        let _ = writeln!(
            text,
            "Of the {} delays recorded, {kept} still make the program fail ({measured}):\n",
            outcome.recorded
        );
    } else {
        let _ = writeln!(
            text,
            "Of the {} delays recorded, {kept} made the program fail in only {measured}, below the threshold of {:.0}%: not an explanation to trust (more --tries or --rate-tries may find a better one):\n",
            outcome.recorded,
            100.0 * outcome.threshold
        );
    }
    for &index in &outcome.kept {
        let _ = writeln!(
            text,
            "- {}",
            describe_call(&record.calls[index], record, &mut symbols)
        );
    }
    let rate = |n: u32| format!("{n} of {}", outcome.rate_tries);
    let _ = writeln!(
        text,
        "\n| replayed | fails |\n| --- | --- |\n| no delays | {} |\n| the whole record ({} delays) | {} |\n| the minimal set ({} delay{}) | {} |\n",
        rate(outcome.rates[0]),
        outcome.recorded,
        rate(outcome.rates[1]),
        outcome.kept.len(),
        if outcome.kept.len() == 1 { "" } else { "s" },
        rate(outcome.rates[2]),
    );
    let _ = writeln!(
        text,
        "Minimizing took {} replays. Replay the minimal set:\n\n```sh\n{replay_command}\n```",
        outcome.replays
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddmin_finds_the_pair_that_matters() {
        let items: Vec<u32> = (0..100).collect();
        let mut tests = 0;
        let kept = ddmin(items, |subset| {
            tests += 1;
            Ok(subset.contains(&17) && subset.contains(&83))
        })
        .unwrap();
        assert_eq!(kept, [17, 83]);
        assert!(tests <= 80, "{tests} tests");
    }

    #[test]
    fn ddmin_of_a_single_needed_item() {
        let kept = ddmin((0..37).collect(), |s: &[u32]| Ok(s.contains(&36))).unwrap();
        assert_eq!(kept, [36]);
    }

    /// A program that fails (in every replay) when delays 3 and 7 are there.
    struct Fake {
        replays: std::sync::atomic::AtomicU64,
    }

    impl Replayer for Fake {
        fn fails(&self, replay: Option<&Path>) -> Result<bool> {
            self.replays
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(replay) = replay else {
                return Ok(false);
            };
            let text = std::fs::read_to_string(replay)?;
            Ok(text.contains("index=3 ") && text.contains("index=7 "))
        }
    }

    #[test]
    fn minimize_keeps_what_the_failure_needs_and_measures_rates() {
        let dir = std::env::temp_dir().join(format!("minimize-test-{}", std::process::id()));
        let record = Record {
            processes: vec!["process proc=0x1 pid=1 ppid=0 funcs=write cmdline=prog\\x00arg".into()],
            calls: (0..10)
                .map(|i| {
                    format!("call proc=0x1 thread=0 index={i} fn=fcntl64 before_ns=2000000 after_ns=0 cmd=F_SETLK lock=F_UNLCK path=/tmp/a\\x20b pid=1")
                })
                .collect(),
        };
        let fake = Fake {
            replays: Default::default(),
        };
        let outcome = minimize(&record, &dir, &fake, Options::default(), 3, &mut |_| {}).unwrap();
        assert_eq!(outcome.kept, [3, 7]);
        assert_eq!(outcome.rates, [0, 20, 20]);
        assert!(outcome.reliable());
        // A rerun over the same directory (after an interrupt) replays only
        // the three rates: every verdict is in progress.jsonl.
        let before = fake.replays.load(std::sync::atomic::Ordering::Relaxed);
        let again = minimize(&record, &dir, &fake, Options::default(), 3, &mut |_| {}).unwrap();
        assert_eq!(again.kept, [3, 7]);
        assert_eq!(
            fake.replays.load(std::sync::atomic::Ordering::Relaxed) - before,
            60
        );
        let text = explanation(&record, &outcome, "replay it", None);
        assert!(
            text.contains("`fcntl64(F_SETLK, F_UNLCK)` on `/tmp/a b` by pid 1 `prog arg`"),
            "{text}"
        );
        assert!(text.contains("sleep 2000 us before the call"), "{text}");
        assert!(
            text.contains("| the minimal set (2 delays) | 20 of 20 |"),
            "{text}"
        );
        let unreliable = Outcome {
            rates: [0, 20, 9],
            ..outcome.clone()
        };
        assert!(!unreliable.reliable(), "9 of 20 is below one half");
        let text = explanation(&record, &unreliable, "replay it", None);
        assert!(!text.contains("## The delays"), "no timeline, no sections");
        let with_timeline = explanation(
            &record,
            &outcome,
            "replay it",
            Some("## Timeline\n\n| ms |\n"),
        );
        assert!(
            with_timeline.starts_with("# Why this run failed\n\n## Timeline\n\n| ms |\n\n## The delays that make it fail\n\nOf the 10 delays"),
            "{with_timeline}"
        );
        assert!(
            text.contains("in only 9 of 20 replays, below the threshold of 50%"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Fails in every replay, each taking a while: parallel replays finish
    /// sooner, and no more are started than the verdict needs.
    struct Slow(std::sync::atomic::AtomicU32);

    impl Replayer for Slow {
        fn fails(&self, _: Option<&Path>) -> Result<bool> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(true)
        }
    }

    #[test]
    fn replays_run_jobs_at_a_time_and_stop_when_decided() {
        let slow = Slow(Default::default());
        let (failures, made) = replay_batch(&slow, None, 10, 4, &|f, _| f >= 5).unwrap();
        assert!((5..=8).contains(&failures), "{failures}");
        assert_eq!(made, failures);
        assert_eq!(slow.0.load(std::sync::atomic::Ordering::SeqCst), made);
        let (failures, made) = replay_batch(&slow, None, 7, 3, &|_, _| false).unwrap();
        assert_eq!((failures, made), (7, 7));
    }
}
