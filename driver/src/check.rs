//! The check after a `--tolerate-errors` run: every shard passes
//! `PRAGMA integrity_check`, and every counter lies between the increments
//! that returned success and those attempted.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cache::{CacheOptions, FanoutCache, Key, Value};

use crate::journal::{self, Tally};
use crate::{Args, EXIT_CORRUPT, EXIT_PASS, EXIT_RACE_FOUND, EXIT_WORKER_FAILED};

/// The shape of the run, from the journal's `run` file.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    keys: u32,
    shards: u32,
    workers: u32,
    threads: u32,
}

impl Run {
    fn parse(text: &str) -> Option<Run> {
        let fields: BTreeMap<&str, &str> = text
            .split_whitespace()
            .filter_map(|field| field.split_once('='))
            .collect();
        let number = |name: &str| fields.get(name)?.parse().ok();
        Some(Run {
            keys: number("keys")?,
            shards: number("shards").filter(|&n| n > 0)?,
            workers: number("workers")?,
            threads: number("threads")?,
        })
    }
}

/// How the workers ended, from the parent's `outcomes` file.
#[derive(Debug, Default, PartialEq)]
struct Outcomes {
    /// Workers killed by SIGKILL: the crashes the run is meant to survive.
    killed: u32,
    /// Workers that exited with a non-zero status or died of another signal.
    failures: Vec<String>,
    elapsed_s: Option<f64>,
}

impl Outcomes {
    fn parse(text: &str) -> Option<Outcomes> {
        let mut outcomes = Outcomes::default();
        for line in text.lines() {
            match line.split(' ').collect::<Vec<_>>()[..] {
                ["worker", _, _, "exited", "0"] => {}
                ["worker", _, _, "killed", signal] if signal == libc::SIGKILL.to_string() => {
                    outcomes.killed += 1
                }
                ["worker", worker, pid, how, code] => outcomes.failures.push(format!(
                    "worker {worker} (pid {pid}) {}",
                    match how {
                        "exited" => format!("exited with status {code}"),
                        _ => format!("was killed by signal {code}"),
                    }
                )),
                ["elapsed", seconds] => outcomes.elapsed_s = seconds.parse().ok(),
                _ => return None,
            }
        }
        Some(outcomes)
    }
}

/// `--check-only`: judges the journals and shards in `--dir`, prints the
/// summary line and returns the exit status.
pub fn run(args: &Args) -> Result<u8> {
    let dir = args.dir.as_deref().context("--check-only needs --dir")?;
    let code = check(args, dir)?;
    // A failed check keeps the driver's own directory for inspection.
    if args.keep || (args.remove_dir && code != EXIT_PASS) {
        println!("cache directory: {}", dir.display());
    } else if args.remove_dir {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(code)
}

fn check(args: &Args, dir: &Path) -> Result<u8> {
    let journals = dir.join(journal::DIR);
    let read = |name: &str| {
        let path = journals.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let run = Run::parse(&read(journal::RUN_FILE)?)
        .with_context(|| format!("{} is no --tolerate-errors run", journals.display()))?;
    // A driver killed before its workers ended left no outcomes.
    let outcomes = match read(journal::OUTCOMES_FILE) {
        Ok(text) => Outcomes::parse(&text).context("unreadable outcomes file")?,
        Err(_) => Outcomes::default(),
    };
    let mut tally = Tally::new(run.keys as usize);
    for entry in std::fs::read_dir(&journals)? {
        let name = entry?.file_name();
        if name != journal::RUN_FILE && name != journal::OUTCOMES_FILE {
            let name = name.to_string_lossy();
            tally
                .add(&read(&name)?)
                .map_err(|error| anyhow::anyhow!("journal {name}: {error}"))?;
        }
    }

    let cache = match FanoutCache::open_with(
        dir,
        run.shards as usize,
        CacheOptions::default().timeout(args.lock_timeout),
    ) {
        Ok(cache) => cache,
        Err(error) => {
            println!("CORRUPT: cannot open the cache: {error}");
            return Ok(EXIT_CORRUPT);
        }
    };
    let mut corrupt: Vec<String> = Vec::new();
    for shard in cache.shards() {
        let problems = shard
            .integrity_check()
            .unwrap_or_else(|error| vec![error.to_string()]);
        if let Some(first) = problems.first() {
            corrupt.push(format!("{}: {first}", shard.db_path().display()));
        }
    }
    if !corrupt.is_empty() {
        println!(
            "CORRUPT: {} of {} shards fail integrity_check: {}",
            corrupt.len(),
            run.shards,
            corrupt.join("; ")
        );
    }
    let mut unreadable = false;
    let (counters, out_of_bounds) = match counters(&cache, run.keys) {
        Ok(values) => {
            let out_of_bounds = out_of_bounds(&tally, &values);
            let line = format!(
                "{}/{} counters within bounds (confirmed <= value <= attempted){}",
                run.keys as usize - out_of_bounds.len().min(run.keys as usize),
                run.keys,
                first_few(&out_of_bounds),
            );
            (line, out_of_bounds.len())
        }
        Err(error) => {
            unreadable = true;
            (format!("counters unreadable ({error:#})"), 0)
        }
    };
    println!(
        "{}: {counters}, {}/{} shards pass integrity_check; {}",
        if out_of_bounds == 0 && corrupt.is_empty() && !unreadable {
            "PASS"
        } else {
            "FAIL"
        },
        run.shards as usize - corrupt.len().min(run.shards as usize),
        run.shards,
        figures(&run, &tally, &outcomes),
    );
    for failure in &outcomes.failures {
        eprintln!("FAIL: {failure}");
    }
    Ok(if !corrupt.is_empty() || unreadable {
        EXIT_CORRUPT
    } else if out_of_bounds > 0 {
        EXIT_RACE_FOUND
    } else if !outcomes.failures.is_empty() {
        EXIT_WORKER_FAILED
    } else {
        EXIT_PASS
    })
}

/// Every key's value: 0 for 0..keys when absent, and any other key found.
fn counters(cache: &FanoutCache, keys: u32) -> Result<BTreeMap<Key, Value>> {
    let mut values: BTreeMap<Key, Value> = (0..i64::from(keys))
        .map(|key| (Key::Int(key), Value::Int(0)))
        .collect();
    for key in cache.iter()? {
        match cache.get(key.clone())? {
            Some(value) => values.insert(key, value),
            None => bail!("key {key} vanished while the cache was idle"),
        };
    }
    Ok(values)
}

/// A line for each key whose value is not within its journal's bounds.
fn out_of_bounds(tally: &Tally, values: &BTreeMap<Key, Value>) -> Vec<String> {
    values
        .iter()
        .filter_map(|(key, value)| {
            let index = match key {
                Key::Int(i) => usize::try_from(*i)
                    .ok()
                    .filter(|&i| i < tally.attempted.len()),
                _ => None,
            };
            let Some(index) = index else {
                return Some(format!("key {key} = {value:?} is no counter of the run"));
            };
            let (confirmed, attempted) = (tally.confirmed[index], tally.attempted[index]);
            match value {
                Value::Int(v)
                    if (confirmed as i128..=attempted as i128).contains(&(*v as i128)) =>
                {
                    None
                }
                Value::Int(v) => Some(format!(
                    "key {key} = {v}, confirmed {confirmed}, attempted {attempted}"
                )),
                other => Some(format!("key {key} = {other:?}, not a counter")),
            }
        })
        .collect()
}

fn first_few(problems: &[String]) -> String {
    if problems.is_empty() {
        return String::new();
    }
    let more = problems.len().saturating_sub(5);
    format!(
        ": {}{}",
        problems[..problems.len() - more].join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// The run's figures: increments by outcome, errors by class, kills.
fn figures(run: &Run, tally: &Tally, outcomes: &Outcomes) -> String {
    let attempted: u64 = tally.attempted.iter().sum();
    let confirmed: u64 = tally.confirmed.iter().sum();
    let errors = if tally.errors.is_empty() {
        "none".to_owned()
    } else {
        let classes: Vec<String> = tally
            .errors
            .iter()
            .map(|(class, n)| format!("{class} {n}"))
            .collect();
        classes.join(", ")
    };
    let elapsed = outcomes
        .elapsed_s
        .map_or(String::new(), |s| format!(" in {s:.2} s"));
    format!(
        "{attempted} increments attempted: {confirmed} confirmed, {} failed, {} cut short; \
         {} failed opens; errors: {errors}; {} workers killed \
         ({} workers x {} threads){elapsed}",
        tally.failed,
        tally.unresolved,
        tally.failed_opens,
        outcomes.killed,
        run.workers,
        run.threads,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_and_outcomes_files_parse() {
        assert_eq!(
            Run::parse("keys=5 shards=2 workers=3 threads=4 attempts=3 op=incr\n"),
            Some(Run {
                keys: 5,
                shards: 2,
                workers: 3,
                threads: 4
            })
        );
        assert_eq!(Run::parse("keys=5 shards=0 workers=3 threads=4"), None);
        let outcomes = Outcomes::parse(
            "worker 0 10 exited 0\nworker 1 11 killed 9\nworker 2 12 exited 3\n\
             worker 3 13 killed 11\nelapsed 1.5\n",
        )
        .unwrap();
        assert_eq!(outcomes.killed, 1);
        assert_eq!(
            outcomes.failures,
            [
                "worker 2 (pid 12) exited with status 3",
                "worker 3 (pid 13) was killed by signal 11"
            ]
        );
        assert_eq!(outcomes.elapsed_s, Some(1.5));
        assert_eq!(Outcomes::parse("worker 0 exited\n"), None);
    }

    #[test]
    fn values_outside_confirmed_and_attempted_are_reported() {
        let mut tally = Tally::new(3);
        tally
            .add("a 0\nc 0\na 1\nf 1 SQLITE_FULL\na 2\nc 2\na 2\nc 2\n")
            .unwrap();
        let values = |v: [i64; 3]| -> BTreeMap<Key, Value> {
            (0..3)
                .map(|k| (Key::Int(k), Value::Int(v[k as usize])))
                .collect()
        };
        assert!(out_of_bounds(&tally, &values([1, 0, 2])).is_empty());
        assert!(out_of_bounds(&tally, &values([1, 1, 2])).is_empty());
        assert_eq!(
            out_of_bounds(&tally, &values([0, 2, 3])),
            [
                "key 0 = 0, confirmed 1, attempted 1",
                "key 1 = 2, confirmed 0, attempted 1",
                "key 2 = 3, confirmed 2, attempted 2"
            ]
        );
        let mut phantom = values([1, 0, 2]);
        phantom.insert(Key::Int(7), Value::Int(1));
        phantom.insert(Key::from("x"), Value::Int(0));
        phantom.insert(Key::Int(1), Value::from("text"));
        assert_eq!(
            out_of_bounds(&tally, &phantom),
            [
                "key 1 = Text(\"text\"), not a counter",
                "key 7 = Int(1) is no counter of the run",
                "key \"x\" = Int(0) is no counter of the run"
            ]
        );
    }
}
