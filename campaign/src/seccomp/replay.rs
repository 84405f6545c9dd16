//! `DELAYSHIM_REPLAY` for the supervisor: the record's `call` lines by
//! (lineage, thread, index), read as the shim reads them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::config::ERRNOS;
use super::decide::Decision;

/// What to do to each recorded call; calls not in it are let through.
#[derive(Debug, Default)]
pub struct Replay {
    calls: HashMap<(u64, u64, u64), Decision>,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
}

impl Replay {
    pub fn load(path: &Path) -> Result<Replay> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read DELAYSHIM_REPLAY file {}", path.display()))?;
        let mut calls = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            if !line.starts_with("call ") {
                continue;
            }
            let parsed = (|| {
                let lineage =
                    u64::from_str_radix(field(line, "proc")?.trim_start_matches("0x"), 16).ok()?;
                let thread = field(line, "thread")?.parse().ok()?;
                let index = field(line, "index")?.parse().ok()?;
                let before_nanos = field(line, "before_ns")?.parse().ok()?;
                let after_nanos = field(line, "after_ns")?.parse().ok()?;
                let fault = match field(line, "fault") {
                    None => None,
                    Some(name) => Some(ERRNOS.iter().find(|(n, _)| *n == name)?.1),
                };
                Some((
                    (lineage, thread, index),
                    Decision {
                        before_nanos,
                        after_nanos,
                        fault,
                    },
                ))
            })();
            let Some((key, decision)) = parsed else {
                bail!("DELAYSHIM_REPLAY file {}, line {}: not a call line the seccomp backend can replay", path.display(), number + 1);
            };
            calls.insert(key, decision);
        }
        Ok(Replay { calls })
    }

    pub fn lookup(&self, lineage: u64, thread: u64, index: u64) -> Decision {
        self.calls
            .get(&(lineage, thread, index))
            .copied()
            .unwrap_or_default()
    }
}
