//! The records `--tolerate-errors` keeps of what each thread tried: an
//! append-only text file per thread in `DIR/journal/`, one line per event.
//!
//! ```text
//! a KEY          an increment of KEY is about to be called
//! c KEY          it returned success
//! f KEY CLASS    it returned an error of CLASS
//! o CLASS        opening the cache failed with CLASS
//! ```
//!
//! A line is written before the call it announces returns to the thread's
//! next step, with one `write(2)` to a file opened `O_APPEND`: a worker
//! killed at any moment leaves every success it saw behind an `a` line,
//! and at worst an `a` line with no outcome. Whatever a kill cuts short is
//! a final line without its newline, which the reader ignores.
//!
//! The files are opened and written with raw system calls, beneath the
//! shim's libc wrappers: faults the shim injects must hit the cache, never
//! the bookkeeping that judges it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The journal directory inside the cache directory.
pub const DIR: &str = "journal";
/// The parent's description of the run: `keys=K shards=S ...`.
pub const RUN_FILE: &str = "run";
/// The parent's record of how each worker ended.
pub const OUTCOMES_FILE: &str = "outcomes";

/// Creates the directory `path` (its parent must exist) with a raw
/// `mkdirat` call; an existing directory is an error.
pub fn create_dir(path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `path` is a valid C string; mkdirat returns 0 or -1.
    let made = unsafe {
        libc::syscall(
            libc::SYS_mkdirat,
            libc::AT_FDCWD,
            path.as_ptr(),
            0o755 as libc::c_uint,
        )
    };
    if made == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An append-only file written with raw `openat`/`write`/`close` calls.
#[derive(Debug)]
pub struct Journal {
    fd: libc::c_int,
}

impl Journal {
    /// Creates `path`, which must not exist yet.
    pub fn create(path: &Path) -> io::Result<Journal> {
        let path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_APPEND | libc::O_CLOEXEC;
        loop {
            // SAFETY: `path` is a valid C string; openat returns a new fd or -1.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    flags,
                    0o644 as libc::c_uint,
                )
            };
            if fd >= 0 {
                return Ok(Journal {
                    fd: fd as libc::c_int,
                });
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    /// Appends `line` (which ends with a newline).
    pub fn append(&self, line: &str) -> io::Result<()> {
        let mut rest = line.as_bytes();
        while !rest.is_empty() {
            // SAFETY: writes from a live buffer of the length given.
            let written = unsafe {
                libc::syscall(
                    libc::SYS_write,
                    self.fd,
                    rest.as_ptr(),
                    rest.len() as libc::size_t,
                )
            };
            if written < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            rest = &rest[written as usize..];
        }
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // SAFETY: closes the fd this value owns, once.
        unsafe { libc::syscall(libc::SYS_close, self.fd) };
    }
}

/// What the journals of one run add up to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Per key: increments called (`a` lines).
    pub attempted: Vec<u64>,
    /// Per key: increments that returned success (`c` lines).
    pub confirmed: Vec<u64>,
    /// Increments that returned an error (`f` lines).
    pub failed: u64,
    /// Increments with no outcome: a kill cut the call short.
    pub unresolved: u64,
    /// Failed attempts to open the cache (`o` lines).
    pub failed_opens: u64,
    /// Errors by class, from increments and opens.
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn new(keys: usize) -> Tally {
        Tally {
            attempted: vec![0; keys],
            confirmed: vec![0; keys],
            ..Tally::default()
        }
    }

    /// Adds one thread's journal. Its complete lines must read as a
    /// sequence of attempts, each followed by its outcome but perhaps the
    /// last; a final line without its newline (cut by a kill) is ignored.
    pub fn add(&mut self, journal: &str) -> Result<(), String> {
        let complete = journal.rfind('\n').map_or("", |end| &journal[..end]);
        let mut pending = None;
        for line in complete.lines() {
            pending = self
                .add_line(line, pending)
                .ok_or_else(|| format!("unexpected journal line {line:?}"))?;
        }
        if pending.is_some() {
            self.unresolved += 1;
        }
        Ok(())
    }

    /// Adds one line given the attempt awaiting its outcome, if any;
    /// returns the attempt awaiting its outcome after it.
    fn add_line(&mut self, line: &str, pending: Option<usize>) -> Option<Option<usize>> {
        let fields: Vec<&str> = line.split(' ').collect();
        let key = |text: &str| {
            text.parse::<usize>()
                .ok()
                .filter(|&k| k < self.attempted.len())
        };
        match (fields.as_slice(), pending) {
            (&["o", class], None) => {
                self.failed_opens += 1;
                *self.errors.entry(class.to_owned()).or_default() += 1;
                Some(None)
            }
            (&["a", k], None) => {
                let k = key(k)?;
                self.attempted[k] += 1;
                Some(Some(k))
            }
            (&["c", k], Some(attempt)) if key(k) == Some(attempt) => {
                self.confirmed[attempt] += 1;
                Some(None)
            }
            (&["f", k, class], Some(attempt)) if key(k) == Some(attempt) => {
                self.failed += 1;
                *self.errors.entry(class.to_owned()).or_default() += 1;
                Some(None)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_outcomes_and_a_cut_last_line_are_counted() {
        let mut tally = Tally::new(3);
        tally
            .add("a 0\nc 0\na 1\nf 1 SQLITE_FULL\na 1\nc 1\na 2\nc 2\n")
            .unwrap();
        // Killed after announcing key 0, and again while writing an outcome.
        tally.add("a 0\n").unwrap();
        tally.add("o SQLITE_IOERR_READ\na 2\nc").unwrap();
        assert_eq!(tally.attempted, [2, 2, 2]);
        assert_eq!(tally.confirmed, [1, 1, 1]);
        assert_eq!(
            (tally.failed, tally.unresolved, tally.failed_opens),
            (1, 2, 1)
        );
        assert_eq!(
            tally.errors,
            BTreeMap::from([
                ("SQLITE_FULL".to_owned(), 1),
                ("SQLITE_IOERR_READ".to_owned(), 1)
            ])
        );
    }

    #[test]
    fn outcomes_without_their_attempt_are_rejected() {
        for journal in [
            "c 0\n",
            "a 0\nc 1\n",
            "a 0\na 1\n",
            "a 0\nc 0\nc 0\n",
            "a 3\n",
            "a -1\n",
            "f 0\n",
            "a 0\nx 0\n",
        ] {
            let mut tally = Tally::new(3);
            assert!(tally.add(journal).is_err(), "{journal:?}");
        }
    }

    #[test]
    fn a_directory_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        create_dir(&path).unwrap();
        assert!(path.is_dir());
        assert_eq!(
            create_dir(&path).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn appended_lines_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.0");
        let journal = Journal::create(&path).unwrap();
        journal.append("a 0\n").unwrap();
        journal.append("c 0\n").unwrap();
        assert!(Journal::create(&path).is_err(), "never reopens a journal");
        drop(journal);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 0\nc 0\n");
    }
}
