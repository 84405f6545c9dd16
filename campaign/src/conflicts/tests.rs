//! The analysis on hand-made event sequences: each kind of finding in a
//! racy and a fixed form.

use delayshim_settings::region::{
    path_hash, tail_into, Event, EventKind, LOCK_EXCLUSIVE, LOCK_FLOCK, LOCK_POSIX,
};

use super::*;

const DATA: (u64, u64) = (1, 100);
const LOCKFILE: (u64, u64) = (1, 200);

struct Script {
    events: Vec<Event>,
    time: u64,
}

impl Script {
    fn new() -> Script {
        Script {
            events: Vec::new(),
            time: 0,
        }
    }

    fn push(&mut self, pid: u32, kind: EventKind, f: impl FnOnce(&mut Event)) -> &mut Script {
        let mut event = Event::new(kind);
        event.pid = pid;
        event.tid = pid;
        self.time += 1000;
        event.time = self.time;
        event.site = self.events.len() as u64 * 16;
        tail_into(&mut event.object, b"prog");
        f(&mut event);
        self.events.push(event);
        self
    }

    fn start(&mut self, pid: u32, parent: u32, forked: bool) -> &mut Script {
        self.push(pid, EventKind::Start, |e| {
            e.aux = u64::from(parent);
            if forked {
                e.flags = STARTED_BY_FORK;
            }
        })
    }

    fn data(&mut self, pid: u32, kind: EventKind, start: u64, len: u64) -> &mut Script {
        self.push(pid, kind, |e| {
            (e.dev, e.ino) = DATA;
            e.start = start;
            e.len = len;
        })
    }

    fn lock(&mut self, pid: u32, kind: EventKind, family: u64) -> &mut Script {
        self.push(pid, kind, |e| {
            (e.dev, e.ino) = LOCKFILE;
            e.aux = family
                | if kind == EventKind::Acquire {
                    LOCK_EXCLUSIVE
                } else {
                    0
                };
            e.len = u64::MAX;
        })
    }

    fn name(&mut self, pid: u32, kind: EventKind, path: &str, inode: (u64, u64)) -> &mut Script {
        self.push(pid, kind, |e| {
            e.aux = path_hash(path.as_bytes());
            tail_into(&mut e.name, path.as_bytes());
            (e.dev, e.ino) = inode;
        })
    }

    fn analyse(&self) -> Analysis {
        analyse(&Events {
            events: self.events.clone(),
            full: false,
            capacity: 1000,
        })
    }
}

fn kinds(analysis: &Analysis) -> Vec<FindingKind> {
    analysis.findings.iter().map(|f| f.kind).collect()
}

/// Two forked workers of one parent, each incrementing a counter at
/// bytes 0..8, with or without a lock around the read and the write.
fn counter(locked: bool, family: u64) -> Analysis {
    let mut s = Script::new();
    s.start(1, 0, false);
    s.push(1, EventKind::Fork, |_| {});
    s.start(2, 1, true);
    s.push(1, EventKind::Fork, |_| {});
    s.start(3, 1, true);
    for pid in [2, 3, 2, 3] {
        // Interleaved read-modify-writes: 2 reads, 3 reads, 2 writes, 3 writes.
        let _ = pid;
    }
    let steps: [(u32, EventKind); 4] = [
        (2, EventKind::Read),
        (3, EventKind::Read),
        (2, EventKind::Write),
        (3, EventKind::Write),
    ];
    if locked {
        for pid in [2, 3] {
            s.lock(pid, EventKind::Acquire, family);
            s.data(pid, EventKind::Read, 0, 8);
            s.data(pid, EventKind::Write, 0, 8);
            s.lock(pid, EventKind::Release, family);
        }
    } else {
        for (pid, kind) in steps {
            s.data(pid, kind, 0, 8);
        }
    }
    s.push(2, EventKind::Exit, |_| {});
    s.push(3, EventKind::Exit, |_| {});
    // The parent checks the result after its children exited.
    s.data(1, EventKind::Read, 0, 8);
    s.analyse()
}

#[test]
fn unlocked_counter_conflicts_and_locked_one_does_not() {
    let racy = counter(false, LOCK_FLOCK);
    assert!(racy.races() >= 1, "{:?}", racy.findings);
    assert!(kinds(&racy).iter().all(|k| *k == FindingKind::Conflict));
    let conflict = &racy.findings[0];
    assert_ne!(conflict.first.pid, conflict.second.pid);
    assert_eq!(conflict.second.range, Some((0, 8)));
    for family in [LOCK_FLOCK, LOCK_POSIX] {
        let fixed = counter(true, family);
        assert_eq!(fixed.races(), 0, "{:?}", fixed.findings);
    }
}

#[test]
fn disjoint_ranges_and_reads_do_not_conflict() {
    let mut s = Script::new();
    s.start(1, 0, false);
    s.start(2, 0, false);
    s.data(1, EventKind::Write, 0, 8);
    s.data(2, EventKind::Write, 8, 8);
    s.data(1, EventKind::Read, 100, 8);
    s.data(2, EventKind::Read, 100, 8);
    assert_eq!(s.analyse().findings.len(), 0);
    s.data(2, EventKind::Write, 4, 2);
    assert_eq!(s.analyse().races(), 1);
}

#[test]
fn a_read_and_a_write_in_two_epochs_of_one_lock_is_a_lock_gap() {
    let gap = |reread: bool| {
        let mut s = Script::new();
        s.start(1, 0, false);
        s.lock(1, EventKind::Acquire, LOCK_POSIX);
        s.data(1, EventKind::Read, 0, 8);
        s.lock(1, EventKind::Release, LOCK_POSIX);
        s.lock(1, EventKind::Acquire, LOCK_POSIX);
        if reread {
            s.data(1, EventKind::Read, 0, 8);
        }
        s.data(1, EventKind::Write, 0, 8);
        s.lock(1, EventKind::Release, LOCK_POSIX);
        s.analyse()
    };
    assert_eq!(kinds(&gap(false)), vec![FindingKind::LockGap]);
    assert_eq!(gap(true).findings.len(), 0);
}

#[test]
fn rename_over_a_name_read_in_an_earlier_epoch_is_a_lock_gap() {
    // json-store: load under the lock, release, relock, rename over it.
    let mut s = Script::new();
    s.start(1, 0, false);
    s.lock(1, EventKind::Acquire, LOCK_FLOCK);
    s.name(1, EventKind::Open, "/d/store.json", (1, 7));
    s.lock(1, EventKind::Release, LOCK_FLOCK);
    s.lock(1, EventKind::Acquire, LOCK_FLOCK);
    s.name(1, EventKind::RenameTo, "/d/store.json", (1, 8));
    s.lock(1, EventKind::Release, LOCK_FLOCK);
    let analysis = s.analyse();
    assert_eq!(kinds(&analysis), vec![FindingKind::LockGap]);
    assert_eq!(analysis.findings[0].file, "/d/store.json");
}

#[test]
fn rename_publishes_and_lock_files_order_by_create_and_unlink() {
    // Writer: write a temporary file, rename it into place; the reader
    // opens the name afterwards and reads: ordered.
    let mut s = Script::new();
    s.start(1, 0, false);
    s.start(2, 0, false);
    s.data(1, EventKind::Write, 0, 8);
    s.name(1, EventKind::RenameTo, "/d/pub", DATA);
    s.name(2, EventKind::Open, "/d/pub", DATA);
    s.data(2, EventKind::Read, 0, 8);
    assert_eq!(s.analyse().races(), 0, "{:?}", s.analyse().findings);

    // A lock file: create with O_EXCL, write, unlink; the other creates
    // it next: ordered. Without the lock file: a conflict.
    for with_lock in [true, false] {
        let mut s = Script::new();
        s.start(1, 0, false);
        s.start(2, 0, false);
        for pid in [1, 2] {
            if with_lock {
                s.name(pid, EventKind::Create, "/d/lock", LOCKFILE);
            }
            s.data(pid, EventKind::Write, 0, 8);
            if with_lock {
                s.name(pid, EventKind::Unlink, "/d/lock", LOCKFILE);
            }
        }
        assert_eq!(s.analyse().races(), usize::from(!with_lock));
    }
}

#[test]
fn a_lock_on_an_unlinked_lock_file_is_stale() {
    let run = |unlink_before_unlock: bool| {
        let mut s = Script::new();
        s.start(1, 0, false);
        s.start(2, 0, false);
        s.name(1, EventKind::Open, "/d/lock", LOCKFILE);
        s.name(2, EventKind::Open, "/d/lock", LOCKFILE);
        s.lock(1, EventKind::Acquire, LOCK_FLOCK);
        if unlink_before_unlock {
            s.name(1, EventKind::Unlink, "/d/lock", LOCKFILE);
        }
        s.lock(1, EventKind::Release, LOCK_FLOCK);
        s.lock(2, EventKind::Acquire, LOCK_FLOCK);
        s.lock(2, EventKind::Release, LOCK_FLOCK);
        s.analyse()
    };
    let stale = run(true);
    assert!(
        kinds(&stale).contains(&FindingKind::StaleLock),
        "{:?}",
        stale.findings
    );
    assert_eq!(run(false).races(), 0);
}

#[test]
fn threads_of_one_process_are_not_visible_and_fork_orders() {
    let mut s = Script::new();
    s.start(1, 0, false);
    s.data(1, EventKind::Write, 0, 8);
    // A thread of process 1.
    s.push(1, EventKind::Read, |e| {
        e.tid = 11;
        (e.dev, e.ino) = DATA;
        e.len = 8;
    });
    s.data(1, EventKind::Write, 0, 8);
    s.push(1, EventKind::Read, |e| {
        e.tid = 11;
        (e.dev, e.ino) = DATA;
        e.len = 8;
    });
    // A fork child reads what its parent wrote before the fork.
    s.push(1, EventKind::Fork, |_| {});
    s.start(2, 1, true);
    s.data(2, EventKind::Read, 0, 8);
    let analysis = s.analyse();
    assert_eq!(analysis.races(), 0, "{:?}", analysis.findings);
    // The thread's second read against the parent's second write, and its
    // first read against that write (a write after a read): both threads
    // of one process.
    assert_eq!(kinds(&analysis), vec![FindingKind::NotVisible; 2]);
}

#[test]
fn a_finding_is_one_per_site_pair_with_the_nearest_times() {
    let mut s = Script::new();
    s.start(1, 0, false);
    s.start(2, 0, false);
    for _ in 0..3 {
        s.push(1, EventKind::Write, |e| {
            (e.dev, e.ino) = DATA;
            e.len = 8;
            e.site = 0x10;
        });
        s.push(2, EventKind::Write, |e| {
            (e.dev, e.ino) = DATA;
            e.len = 8;
            e.site = 0x20;
        });
    }
    let analysis = s.analyse();
    assert_eq!(analysis.races(), 1, "{:?}", analysis.findings);
    assert!(analysis.findings[0].count >= 3);
    assert_eq!(analysis.findings[0].apart, 1000);
    let text = render::text(&analysis);
    assert!(text.contains("potential races: 1 site pairs"), "{text}");
    assert!(
        text.contains("prog+0x10") && text.contains("prog+0x20"),
        "{text}"
    );
}

#[test]
fn a_reused_inode_number_is_a_new_file() {
    // store.json is inode 7; a rename replaces it by inode 8, freeing 7,
    // which a new temporary file then gets: not the file read before.
    let mut s = Script::new();
    s.start(1, 0, false);
    s.lock(1, EventKind::Acquire, LOCK_FLOCK);
    s.name(1, EventKind::Open, "/d/store.json", (1, 7));
    s.push(1, EventKind::Read, |e| {
        (e.dev, e.ino) = (1, 7);
        e.len = 10;
    });
    s.name(1, EventKind::RenameTo, "/d/store.json", (1, 8));
    s.lock(1, EventKind::Release, LOCK_FLOCK);
    s.lock(1, EventKind::Acquire, LOCK_FLOCK);
    s.name(1, EventKind::Open, "/d/store.json.tmp", (1, 7));
    s.push(1, EventKind::Write, |e| {
        (e.dev, e.ino) = (1, 7);
        e.len = 10;
    });
    s.lock(1, EventKind::Release, LOCK_FLOCK);
    let analysis = s.analyse();
    assert_eq!(analysis.findings.len(), 0, "{:?}", analysis.findings);
}

#[test]
fn an_unlocked_read_checked_again_under_a_lock_is_optimistic() {
    // SQLite reads its header without a lock when it opens a database,
    // and again under its lock before it trusts it.
    let run = |checks_again: bool| {
        let mut s = Script::new();
        s.start(1, 0, false);
        s.start(2, 0, false);
        s.lock(1, EventKind::Acquire, LOCK_POSIX);
        s.push(1, EventKind::Write, |e| {
            (e.dev, e.ino) = LOCKFILE;
            e.len = 4096;
        });
        s.push(2, EventKind::Read, |e| {
            (e.dev, e.ino) = LOCKFILE;
            e.len = 100;
        });
        s.lock(1, EventKind::Release, LOCK_POSIX);
        s.lock(2, EventKind::Acquire, LOCK_POSIX);
        if checks_again {
            s.push(2, EventKind::Read, |e| {
                (e.dev, e.ino) = LOCKFILE;
                e.start = 24;
                e.len = 16;
            });
        }
        s.lock(2, EventKind::Release, LOCK_POSIX);
        s.analyse()
    };
    assert_eq!(run(false).races(), 1);
    assert_eq!(run(true).races(), 0, "{:?}", run(true).findings);
}

#[test]
fn an_unlocked_read_checked_before_the_write_is_optimistic_too() {
    let mut s = Script::new();
    s.start(1, 0, false);
    s.start(2, 0, false);
    s.push(2, EventKind::Read, |e| {
        (e.dev, e.ino) = LOCKFILE;
        e.len = 100;
    });
    s.lock(2, EventKind::Acquire, LOCK_POSIX);
    s.push(2, EventKind::Read, |e| {
        (e.dev, e.ino) = LOCKFILE;
        e.start = 24;
        e.len = 16;
    });
    s.lock(2, EventKind::Release, LOCK_POSIX);
    s.lock(1, EventKind::Acquire, LOCK_POSIX);
    s.push(1, EventKind::Write, |e| {
        (e.dev, e.ino) = LOCKFILE;
        e.len = 4096;
    });
    s.lock(1, EventKind::Release, LOCK_POSIX);
    assert_eq!(s.analyse().races(), 0, "{:?}", s.analyse().findings);
}

#[test]
fn a_partial_unlock_keeps_the_rest_of_the_lock_held() {
    // Lock two ranges, unlock one, read and write: still one epoch, no gap.
    let mut s = Script::new();
    s.start(1, 0, false);
    for start in [0, 100] {
        s.push(1, EventKind::Acquire, |e| {
            (e.dev, e.ino) = LOCKFILE;
            e.aux = LOCK_POSIX | LOCK_EXCLUSIVE;
            e.start = start;
            e.len = 1;
        });
    }
    s.data(1, EventKind::Read, 0, 8);
    s.push(1, EventKind::Release, |e| {
        (e.dev, e.ino) = LOCKFILE;
        e.aux = LOCK_POSIX;
        e.start = 100;
        e.len = 1;
    });
    s.push(1, EventKind::Acquire, |e| {
        (e.dev, e.ino) = LOCKFILE;
        e.aux = LOCK_POSIX | LOCK_EXCLUSIVE;
        e.start = 100;
        e.len = 1;
    });
    s.data(1, EventKind::Write, 0, 8);
    assert_eq!(s.analyse().findings.len(), 0, "{:?}", s.analyse().findings);
}
