//! `DELAYSHIM_REPLAY`: instead of drawing, each thread sleeps exactly the
//! delays (and injects exactly the faults) recorded for its calls, and
//! nothing else. The record is read and indexed at load; looking a call up
//! is a binary search, without allocating.

use std::sync::OnceLock;

use crate::decision::Decision;
use crate::faults::Fault;

/// (lineage, thread, index) and what to do.
type Entry = ((u64, u64, u64), Decision);

static TABLE: OnceLock<Vec<Entry>> = OnceLock::new();
/// The functions the recording intercepted, from its process lines.
static FUNCS: OnceLock<crate::table::FuncSet> = OnceLock::new();

/// The functions to intercept while replaying: those the recording did.
pub(crate) fn funcs() -> Option<crate::table::FuncSet> {
    FUNCS.get().copied()
}

pub(crate) fn active() -> bool {
    TABLE.get().is_some()
}

/// Reads and indexes a record file; the error is one line for the user.
pub(crate) fn load(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read(path)
        .map_err(|e| format!("cannot read DELAYSHIM_REPLAY file {}: {e}", path.display()))?;
    let (table, funcs) = parse(&text).map_err(|(number, why)| {
        format!(
            "DELAYSHIM_REPLAY file {}, line {number}: {why}",
            path.display()
        )
    })?;
    let _ = TABLE.set(table);
    if let Some(funcs) = funcs {
        let _ = FUNCS.set(funcs);
    }
    Ok(())
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
}

fn parse(text: &[u8]) -> Result<(Vec<Entry>, Option<crate::table::FuncSet>), (usize, String)> {
    let text = std::str::from_utf8(text).map_err(|_| (0, "not text".to_owned()))?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err((
            text.lines().count(),
            "the last line is cut short (truncated file?)".into(),
        ));
    }
    let mut table = Vec::new();
    let mut funcs: Option<crate::table::FuncSet> = None;
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        let bad = |why: &str| (number, why.to_owned());
        match line.split(' ').next() {
            Some("process") => {
                if let Some(names) = field(line, "funcs").filter(|n| !n.is_empty()) {
                    let set = crate::config::parse_funcs(names)
                        .ok_or_else(|| bad("an unknown function in funcs"))?;
                    funcs = Some(funcs.unwrap_or(0) | set);
                }
                continue;
            }
            Some("") => continue,
            Some("call") => {}
            _ => return Err(bad("neither a process nor a call line")),
        }
        let hex = |name| {
            field(line, name)
                .and_then(|v| v.strip_prefix("0x"))
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .ok_or_else(|| bad(&format!("no valid {name}")))
        };
        let number_of = |name| {
            field(line, name)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| bad(&format!("no valid {name}")))
        };
        let fault = match field(line, "fault") {
            None => None,
            Some("short") => Some(Fault::Short),
            Some(name) => Some(Fault::Errno(
                crate::faults::errno_named(name).ok_or_else(|| bad("an unknown fault"))?,
            )),
        };
        let key = (hex("proc")?, number_of("thread")?, number_of("index")?);
        let decision = Decision {
            turn: None,
            before_nanos: number_of("before_ns")?,
            after_nanos: number_of("after_ns")?,
            fault,
        };
        table.push((key, decision));
    }
    table.sort_by_key(|(key, _)| *key);
    Ok((table, funcs))
}

/// What was recorded for this call, if anything.
pub(crate) fn lookup(lineage: u64, thread: u64, index: u64) -> Decision {
    let Some(table) = TABLE.get() else {
        return Decision::default();
    };
    table
        .binary_search_by_key(&(lineage, thread, index), |(key, _)| *key)
        .map_or(Decision::default(), |at| table[at].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_lines_parse_and_sort() {
        let text = b"process proc=0x1 pid=5 ppid=1 funcs= cmdline=x\n\
            call proc=0x1 thread=0 index=9 fn=fsync before_ns=5 after_ns=0 site=/x+0x1 pid=5\n\
            call proc=0x1 thread=0 index=2 fn=write before_ns=0 after_ns=7 fault=EIO pid=5\n";
        let (table, funcs) = parse(text).unwrap();
        assert_eq!(funcs, None);
        assert_eq!(table[0].0, (1, 0, 2));
        assert_eq!(table[0].1.fault, Some(Fault::Errno(libc::EIO)));
        assert_eq!(table[1].1.before_nanos, 5);
    }

    #[test]
    fn bad_files_name_the_line() {
        assert_eq!(parse(b"call proc=0x1 thread=0\n").unwrap_err().0, 1);
        assert!(
            parse(b"call proc=0x1 thread=0 index=1 fn=x before_ns=1 after_ns=0")
                .unwrap_err()
                .1
                .contains("cut short")
        );
        assert!(parse(b"garbage\n").is_err());
    }
}
