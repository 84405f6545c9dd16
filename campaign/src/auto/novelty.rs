//! A signal that exists before the first failure: what a run's record
//! shows that no earlier run's did. The record (`record.txt`) has one line
//! per delayed call, appended (O_APPEND) by every process of the run as it
//! decides, so its order is the order in which the processes reached their
//! delayed calls. Two kinds of keys come from it:
//!
//! - a delayed call: (process lineage, function, call site, lock type);
//! - a hand-off: two consecutive lines of different processes, the pair of
//!   their call keys: an order of two processes' calls, locks included.
//!
//! Lineages and sites (object + offset) are the same in every run of a
//! program, so keys compare across runs. A run's novelty is how many of
//! its keys no earlier run had.

use std::collections::HashSet;
use std::io::BufRead as _;
use std::path::Path;

/// Lines read from one record at most: a call-heavy run under blanket
/// delays records hundreds of thousands, and its first part says enough.
const MAX_LINES: usize = 200_000;

/// The keys of one record; a missing or unreadable record has none.
pub fn keys_of_record(path: &Path) -> Vec<u64> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    keys_of_lines(
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .take(MAX_LINES),
    )
}

pub fn keys_of_lines(lines: impl Iterator<Item = String>) -> Vec<u64> {
    let mut keys = HashSet::new();
    let mut previous: Option<(String, u64)> = None;
    for line in lines {
        let Some(fields) = line.strip_prefix("call ") else {
            continue;
        };
        let field = |name: &str| {
            fields
                .split(' ')
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or("")
        };
        let process = field("proc").to_owned();
        let call = fnv(
            FNV_OFFSET,
            [process.as_str(), field("fn"), field("site"), field("lock")],
        );
        keys.insert(call);
        if let Some((last_process, last_call)) = &previous {
            if *last_process != process {
                let pair = fnv(
                    fnv(FNV_OFFSET, ["hand-off"]),
                    [last_call.to_string().as_str(), call.to_string().as_str()],
                );
                keys.insert(pair);
            }
        }
        previous = Some((process, call));
    }
    let mut keys: Vec<u64> = keys.into_iter().collect();
    keys.sort_unstable();
    keys
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over the words, each ended by a separator: a hash that is the
/// same in every build, so a campaign's choices are too.
fn fnv<'a>(mut hash: u64, words: impl IntoIterator<Item = &'a str>) -> u64 {
    for word in words {
        for byte in word.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Every key seen so far in a campaign.
#[derive(Debug, Default)]
pub struct Seen(HashSet<u64>);

impl Seen {
    /// Adds a run's keys; how many were new.
    pub fn add(&mut self, keys: &[u64]) -> u64 {
        keys.iter().filter(|k| self.0.insert(**k)).count() as u64
    }

    pub fn len(&self) -> u64 {
        self.0.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lines: &[&str]) -> Vec<u64> {
        keys_of_lines(lines.iter().map(|l| l.to_string()))
    }

    #[test]
    fn calls_and_hand_offs_between_processes_are_keys() {
        let a = "call proc=1 thread=0 index=3 fn=fcntl64 before_ns=0 after_ns=9 site=/lib/x.so+0x10 cmd=F_SETLK lock=F_UNLCK pid=10";
        let b = "call proc=2 thread=0 index=1 fn=fcntl64 before_ns=0 after_ns=9 site=/lib/x.so+0x10 cmd=F_SETLK lock=F_WRLCK pid=11";
        let a_again = "call proc=1 thread=0 index=4 fn=fcntl64 before_ns=5 after_ns=0 site=/lib/x.so+0x10 cmd=F_SETLK lock=F_UNLCK pid=10";
        // Two calls, one hand-off (a then b).
        assert_eq!(keys(&[a, b]).len(), 3);
        // The same calls in the other order: a new hand-off, no new call.
        let mut seen = Seen::default();
        assert_eq!(seen.add(&keys(&[a, b])), 3);
        assert_eq!(seen.add(&keys(&[b, a])), 1);
        assert_eq!(
            seen.add(&keys(&[a, b, a_again])),
            0,
            "index and delays are not part of a key"
        );
        assert_eq!(seen.add(&keys(&["process proc=1 pid=10", "garbage"])), 0);
        assert_eq!(seen.len(), 4);
    }
}
