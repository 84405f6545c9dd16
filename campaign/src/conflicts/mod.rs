//! Conflicts: a race detector for files across processes, run offline on
//! the events the shim left in a run's region ([`crate::region`]).
//!
//! Events are taken in the order their slots were claimed: a thread's own
//! order, and, because the shim claims a release's slot before the real
//! call and an acquisition's after it, an order in which every lock
//! hand-off goes from the release to the acquisition. Happens-before is
//! kept with one vector clock per task (a thread of a process), as
//! FastTrack does, with each access stored as its task's epoch.
//!
//! What orders (an edge from the first to the second):
//! - a lock release (unlock, close of a descriptor of the inode, exit) to
//!   every later acquisition of a lock of the same kind on the same inode
//!   (fcntl and OFD locks together, flock apart), whatever the ranges;
//! - the removal or replacement of a name (unlink, rename onto it) and an
//!   `O_EXCL` creation to a later creation or open of the same path (lock
//!   files, and rename publication);
//! - (not an edge, but no conflict either) opening a name and renaming a
//!   file onto it: rename replaces atomically, the opener gets one file
//!   or the other, whole;
//! - a fork (or a spawn) to the child's start; a process's start to its
//!   new threads' first events; a child's exit to its parent's later
//!   events (the shim does not see `wait`, so the exit stands for it).
//!
//! What does not: anything through memory, which the shim does not see:
//! mutexes between threads of one process, shared mappings (SQLite's WAL
//! index in its `-shm` file), pipes and sockets. Pairs whose processes
//! share a mapped file, and pairs of threads of one process, are listed
//! apart as "ordering not visible", not as races.

pub mod campaign;
pub mod render;
pub mod timeline;

use std::collections::{BTreeMap, HashMap, HashSet};

use delayshim_settings::region::{
    Event, EventKind, DETAIL_ARGV, DETAIL_EXECUTABLE, DETAIL_OBJECT, FLAG_DELAYED, LOCK_FLOCK,
    NAME_BYTES,
};

use crate::region::Events;

/// Flags of a Start event in a fork child (the shim's `STARTED_BY_FORK`).
const STARTED_BY_FORK: u16 = 0x100;
/// A range this long or longer is kept apart from the interval index.
const HUGE: u64 = 1 << 24;

/// A conflict with an unlocked read, not yet reported.
#[derive(Debug, Clone, Copy)]
struct Optimistic {
    /// The reader, and the bytes it read.
    task: usize,
    object: Object,
    start: u64,
    end: u64,
    earlier: usize,
    other: usize,
    later: usize,
    me: usize,
}

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// Unordered accesses of two tasks, at least one a write or a name change.
    Conflict,
    /// A read under one epoch of a lock, a write of it in a later epoch.
    LockGap,
    /// A lock taken on an inode its path no longer names.
    StaleLock,
    /// A conflict whose tasks may be ordered through what the shim cannot see.
    NotVisible,
}

impl FindingKind {
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::Conflict => "conflict",
            FindingKind::LockGap => "lock gap",
            FindingKind::StaleLock => "stale lock",
            FindingKind::NotVisible => "ordering not visible",
        }
    }
}

/// One process of the run.
#[derive(Debug, Clone, Default)]
pub struct Process {
    pub pid: u32,
    pub parent: u32,
    /// Its command line, arguments joined by spaces (the first 56 bytes
    /// where the shim wrote no details).
    pub command: String,
    /// The executable's path, where the shim wrote it at load.
    pub executable: Option<String>,
    /// Its arguments, where the shim wrote them at load.
    pub argv: Vec<String>,
    /// Paths of the objects mapped executable at load (for symbolizing).
    pub objects: Vec<String>,
}

impl Process {
    /// The path of the object whose file name ends in `tail` (what a
    /// site carries), among those this process had mapped at load.
    pub fn object(&self, tail: &str) -> Option<&str> {
        if tail.is_empty() {
            return None;
        }
        self.objects
            .iter()
            .map(String::as_str)
            .find(|path| path.rsplit('/').next().is_some_and(|n| n.ends_with(tail)))
    }
}

/// One side of a finding: an access or lock call.
#[derive(Debug, Clone)]
pub struct Access {
    pub pid: u32,
    pub tid: u32,
    /// `read`, `write`, `open`, `rename to`, `lock` ...
    pub op: &'static str,
    /// The interposed function.
    pub call: String,
    /// `object+0xoffset` of the caller.
    pub site: String,
    /// Nanoseconds since the run's first event.
    pub time: u64,
    /// Its event's index in the run's events.
    pub event: usize,
    /// The site as function and file:line, once [`Analysis::name_sites`] ran.
    pub function: Option<String>,
    pub delayed: bool,
    /// The byte range, where the access has one.
    pub range: Option<(u64, u64)>,
}

/// One finding, deduplicated by its pair of sites.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: FindingKind,
    /// The file (its path, where some event named it; else dev:ino).
    pub file: String,
    pub first: Access,
    pub second: Access,
    /// Nanoseconds between the two calls (the nearest of the pair's occurrences).
    pub apart: u64,
    /// How many times the pair occurred.
    pub count: u64,
    /// For ordering not visible: why.
    pub note: Option<String>,
}

/// Everything the analysis of one run found.
#[derive(Debug, Default)]
pub struct Analysis {
    pub findings: Vec<Finding>,
    pub processes: BTreeMap<u32, Process>,
    pub events: usize,
    /// The region filled up: events after that were not seen.
    pub full: bool,
    pub capacity: u64,
}

impl Analysis {
    /// Site pairs that are potential races (conflicts, lock gaps, stale
    /// locks; not the pairs whose ordering the shim cannot see).
    pub fn races(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.kind != FindingKind::NotVisible)
            .count()
    }

    pub fn of_kind(&self, kind: FindingKind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.kind == kind)
    }

    /// The path of the object a site of `pid` lies in: among its own
    /// objects, else those of any process of the run (one it dlopen'ed
    /// after load may have been loaded by another at its start).
    pub fn object_path(&self, pid: u32, tail: &str) -> Option<&str> {
        self.processes
            .get(&pid)
            .and_then(|p| p.object(tail))
            .or_else(|| self.processes.values().find_map(|p| p.object(tail)))
    }

    /// The site of `event` by function and file:line, where its object
    /// can be found and read.
    pub fn site_name(
        &self,
        event: &Event,
        symbols: &mut crate::symbols::Symbolizer,
    ) -> Option<String> {
        let tail = text(event.object_bytes());
        let path = self.object_path(event.pid, &tail)?;
        symbols.locate(std::path::Path::new(path), event.site)
    }

    /// Names both sites of every finding by function (and file:line).
    pub fn name_sites(&mut self, events: &[Event], symbols: &mut crate::symbols::Symbolizer) {
        let mut findings = std::mem::take(&mut self.findings);
        for finding in &mut findings {
            for access in [&mut finding.first, &mut finding.second] {
                if let Some(event) = events.get(access.event) {
                    access.function = self.site_name(event, symbols);
                }
            }
        }
        self.findings = findings;
    }
}

/// A command line as one line: arguments joined by spaces, each quoted
/// where a shell would need it.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

type Clock = Vec<u32>;

fn join(into: &mut Clock, from: &Clock) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, &b) in into.iter_mut().zip(from) {
        *a = (*a).max(b);
    }
}

fn component(clock: &Clock, task: usize) -> u32 {
    clock.get(task).copied().unwrap_or(0)
}

#[derive(Debug)]
struct Task {
    pid: u32,
    clock: Clock,
    /// How many exited children's clocks of its process it has joined.
    joined_exits: usize,
    /// Locks held: lock object -> this task's epoch number of it, and the
    /// byte ranges held (an epoch lasts while any range is held).
    held: HashMap<LockKey, (u64, Vec<(u64, u64)>)>,
    /// Epochs started so far, per lock object.
    epochs: HashMap<LockKey, u64>,
    /// Last read of an object (inode or name) per lock epoch held then:
    /// object -> (lock, epoch, event index).
    reads: HashMap<Object, Vec<LockedRead>>,
}

/// A read made under an epoch of a lock, for lock gaps.
#[derive(Debug, Clone, Copy)]
struct LockedRead {
    lock: LockKey,
    epoch: u64,
    start: u64,
    end: u64,
    event: usize,
}

/// An earlier access that conflicts with the current one; with the
/// reader and bytes when the read side was made without a lock.
#[derive(Debug, Clone, Copy)]
struct Hit {
    earlier: usize,
    other: usize,
    unlocked_read: Option<(usize, u64, u64)>,
}

#[derive(Debug, Default)]
struct ProcessState {
    tasks: Vec<usize>,
    exited: bool,
    /// Clocks of exited children, joined by its tasks at their next event.
    child_exits: Vec<Clock>,
    /// Shared-writable mappings are not seen by the shim; lock objects it
    /// acquired, for its exit.
    locks: HashSet<LockKey>,
}

/// A lock: an inode and its kind (fcntl/OFD or flock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LockKey {
    dev: u64,
    ino: u64,
    flock: bool,
}

/// What an access touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Object {
    Inode(u64, u64),
    Name(u64),
}

/// One remembered access in the shadow of an object.
#[derive(Debug, Clone, Copy)]
struct Shadow {
    task: usize,
    epoch: u32,
    end: u64,
    write: bool,
    event: usize,
    /// A read made without a lock on the file.
    unlocked: bool,
}

#[derive(Debug, Default)]
struct ShadowMap {
    /// start -> accesses starting there (latest per task, kind and site).
    by_start: BTreeMap<u64, Vec<Shadow>>,
    huge: Vec<(u64, Shadow)>,
    widest: u64,
}

impl ShadowMap {
    fn overlapping(&self, start: u64, end: u64, mut f: impl FnMut(u64, &Shadow)) {
        let from = start.saturating_sub(self.widest);
        for (&s, list) in self.by_start.range(from..end.max(from)) {
            for shadow in list {
                if shadow.end > start && s < end {
                    f(s, shadow);
                }
            }
        }
        for (s, shadow) in &self.huge {
            if shadow.end > start && *s < end {
                f(*s, shadow);
            }
        }
    }

    /// Drops `task`'s unlocked reads that overlap `start..end`.
    fn forget_unlocked_reads(&mut self, task: usize, start: u64, end: u64) {
        let stale = |s: u64, sh: &Shadow| {
            sh.task == task && sh.unlocked && !sh.write && sh.end > start && s < end
        };
        let from = start.saturating_sub(self.widest);
        for (&s, list) in self.by_start.range_mut(from..end.max(from)) {
            list.retain(|sh| !stale(s, sh));
        }
        self.huge.retain(|(s, sh)| !stale(*s, sh));
    }

    fn insert(&mut self, start: u64, shadow: Shadow, site: &dyn Fn(usize) -> u64) {
        let len = shadow.end.saturating_sub(start);
        let list = if len >= HUGE {
            // Kept as (start, shadow) pairs; replaced like the others.
            if let Some(old) = self.huge.iter_mut().find(|(s, old)| {
                *s == start
                    && old.task == shadow.task
                    && old.write == shadow.write
                    && old.end == shadow.end
                    && site(old.event) == site(shadow.event)
            }) {
                old.1 = shadow;
            } else {
                self.huge.push((start, shadow));
            }
            return;
        } else {
            self.widest = self.widest.max(len);
            self.by_start.entry(start).or_default()
        };
        if let Some(old) = list.iter_mut().find(|old| {
            old.task == shadow.task
                && old.write == shadow.write
                && old.end == shadow.end
                && site(old.event) == site(shadow.event)
        }) {
            *old = shadow;
        } else {
            list.push(shadow);
        }
    }
}

/// The interposed functions' names, in the shim's table order.
pub(crate) fn function_name(func: u16) -> String {
    delayshim_settings::FAMILIES
        .iter()
        .flat_map(|family| family.functions.iter())
        .nth(usize::from(func))
        .map_or_else(|| "-".to_owned(), |name| (*name).to_owned())
}

fn site_key(event: &Event) -> u64 {
    delayshim_settings::region::path_hash(event.object_bytes())
        ^ event.site.rotate_left(20)
        ^ u64::from(event.func).rotate_left(50)
}

pub(crate) fn op_name(event: &Event) -> &'static str {
    match event.kind {
        EventKind::Read => "read",
        EventKind::Write => "write",
        EventKind::Acquire if event.aux & delayshim_settings::region::LOCK_SHARED != 0 => {
            "lock (shared)"
        }
        EventKind::Acquire => "lock",
        EventKind::Release => "unlock",
        EventKind::ReleaseAll => "close",
        EventKind::Sync => "sync",
        EventKind::Open => "open",
        EventKind::Create => "create",
        EventKind::Unlink => "unlink",
        EventKind::RenameTo => "rename to",
        EventKind::Start => "start",
        EventKind::Fork => "fork",
        EventKind::Exit => "exit",
        EventKind::Wait => "wait",
        EventKind::Map => "map",
        EventKind::Detail => "detail",
    }
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Analyses one run's events.
pub fn analyse(read: &Events) -> Analysis {
    Analyzer::new(&read.events).run(read)
}

struct Analyzer<'a> {
    events: &'a [Event],
    t0: u64,
    tasks: Vec<Task>,
    by_thread: HashMap<(u32, u32), usize>,
    processes: HashMap<u32, ProcessState>,
    info: BTreeMap<u32, Process>,
    lock_clocks: HashMap<LockKey, Clock>,
    /// Each process's clock at its latest fork, for the child's start.
    fork_clocks: HashMap<u32, Clock>,
    name_clocks: HashMap<u64, Clock>,
    shadows: HashMap<Object, ShadowMap>,
    /// name hash -> the inode it names now (None: removed).
    bindings: HashMap<u64, (Option<(u64, u64)>, usize)>,
    /// (pid, inode) -> the name the process last opened it by.
    opened_as: HashMap<(u32, u64, u64), u64>,
    paths: HashMap<u64, String>,
    inode_paths: HashMap<(u64, u64), String>,
    /// Conflicts whose read was made without a lock, kept until the reader
    /// reads the bytes again under a lock (then they were optimistic).
    optimistic: Vec<Optimistic>,
    /// Names that point at each inode now, as far as events tell.
    names: HashMap<(u64, u64), u32>,
    /// The directory (hash) each inode was last named in, and each name's.
    inode_dirs: HashMap<(u64, u64), u64>,
    name_dirs: HashMap<u64, u64>,
    /// Per process (with its ancestors'): the directories in which it maps
    /// a file shared and writable, with that file's path.
    mapped: HashMap<u32, Vec<(u64, String)>>,
    found: HashMap<(FindingKind, u64, u64), Finding>,
    /// Detail texts of each process's current image: (pid, number) ->
    /// (which text, its bytes).
    details: BTreeMap<(u32, u64), (u64, Vec<u8>)>,
}

impl<'a> Analyzer<'a> {
    fn new(events: &'a [Event]) -> Analyzer<'a> {
        Analyzer {
            events,
            t0: events.iter().map(|e| e.time).min().unwrap_or(0),
            tasks: Vec::new(),
            by_thread: HashMap::new(),
            processes: HashMap::new(),
            info: BTreeMap::new(),
            lock_clocks: HashMap::new(),
            fork_clocks: HashMap::new(),
            name_clocks: HashMap::new(),
            shadows: HashMap::new(),
            bindings: HashMap::new(),
            opened_as: HashMap::new(),
            paths: HashMap::new(),
            inode_paths: HashMap::new(),
            names: HashMap::new(),
            optimistic: Vec::new(),
            inode_dirs: HashMap::new(),
            name_dirs: HashMap::new(),
            mapped: HashMap::new(),
            found: HashMap::new(),
            details: BTreeMap::new(),
        }
    }

    fn run(mut self, read: &Events) -> Analysis {
        // Names first: a finding names its file by any event's path.
        for event in self.events {
            if matches!(
                event.kind,
                EventKind::Open | EventKind::Create | EventKind::RenameTo | EventKind::Unlink
            ) && !event.name_bytes().is_empty()
            {
                let path = text(event.name_bytes());
                let shown = if event.name_bytes().len() == NAME_BYTES {
                    format!("...{path}")
                } else {
                    path
                };
                self.paths.entry(event.aux).or_insert_with(|| shown.clone());
                if event.ino != 0 {
                    self.inode_paths
                        .entry((event.dev, event.ino))
                        .or_insert(shown);
                }
            }
        }
        self.collect_mappings();
        for index in 0..self.events.len() {
            self.step(index);
        }
        for o in std::mem::take(&mut self.optimistic) {
            self.report_conflict(o.object, o.earlier, o.other, o.later, o.me);
        }
        self.apply_details();
        let mut findings: Vec<Finding> = self.found.into_values().collect();
        findings.sort_by_key(|f| (f.kind, f.apart, f.first.time));
        Analysis {
            findings,
            processes: self.info,
            events: self.events.len(),
            full: read.full,
            capacity: read.capacity,
        }
    }

    /// The task of an event, made on first sight (a new process, a new
    /// thread, or a pid used again after its process exited).
    fn task_of(&mut self, event: &Event) -> usize {
        let key = (event.pid, event.tid);
        let fresh_process = event.kind == EventKind::Start
            && (event.flags & STARTED_BY_FORK != 0
                || self.processes.get(&event.pid).is_none_or(|p| p.exited));
        if !fresh_process {
            if let Some(&task) = self.by_thread.get(&key) {
                return task;
            }
        }
        let index = self.tasks.len();
        let mut clock = Clock::new();
        if fresh_process {
            // A new process: ordered after everything its parent did so far.
            let parent = event.aux as u32;
            let forked = event.flags & STARTED_BY_FORK != 0;
            match self.fork_clocks.get(&parent) {
                // A fork child: after what the forking thread did before fork.
                Some(at_fork) if forked => clock = at_fork.clone(),
                _ => {
                    let parent_tasks = self.processes.get(&parent).map(|p| p.tasks.clone());
                    for t in parent_tasks.unwrap_or_default() {
                        // Spawned with vfork (no fork event), the child comes
                        // before its parent's next event: the parent's waits
                        // so far count already.
                        self.absorb_exits(t);
                        join(&mut clock, &self.tasks[t].clock);
                    }
                }
            }
            self.processes.insert(event.pid, ProcessState::default());
            // A fork child runs its parent's program until it executes another.
            let command = match text(event.name_bytes()).trim() {
                "" => self
                    .info
                    .get(&parent)
                    .map(|p| p.command.clone())
                    .unwrap_or_default(),
                command => command.to_owned(),
            };
            self.info.insert(
                event.pid,
                Process {
                    pid: event.pid,
                    parent,
                    command,
                    ..Process::default()
                },
            );
        } else {
            // A new thread: after what its process's main thread did so
            // far (threads are mostly made there; pthread_create is not seen).
            if let Some(process) = self.processes.get(&event.pid) {
                let main = process
                    .tasks
                    .iter()
                    .copied()
                    .find(|&t| self.by_thread.get(&(event.pid, event.pid)) == Some(&t));
                for t in main.map_or_else(|| process.tasks.clone(), |t| vec![t]) {
                    join(&mut clock, &self.tasks[t].clock);
                }
            }
            self.info.entry(event.pid).or_insert_with(|| Process {
                pid: event.pid,
                ..Process::default()
            });
        }
        clock.resize(index + 1, 0);
        self.tasks.push(Task {
            pid: event.pid,
            clock,
            joined_exits: 0,
            held: HashMap::new(),
            epochs: HashMap::new(),
            reads: HashMap::new(),
        });
        self.by_thread.insert(key, index);
        self.processes
            .entry(event.pid)
            .or_default()
            .tasks
            .push(index);
        index
    }

    /// A child's exit stands for its parent's wait: the parent's tasks
    /// take the exited children's clocks at their next event.
    fn absorb_exits(&mut self, task: usize) {
        let Some(process) = self.processes.get(&self.tasks[task].pid) else {
            return;
        };
        let exits = &process.child_exits;
        let seen = self.tasks[task].joined_exits;
        if seen < exits.len() {
            let mut clock = std::mem::take(&mut self.tasks[task].clock);
            for exit in &exits[seen..] {
                join(&mut clock, exit);
            }
            self.tasks[task].clock = clock;
            self.tasks[task].joined_exits = exits.len();
        }
    }

    /// A detail piece: into its text, which the process's image keeps.
    fn detail(&mut self, event: &Event) {
        let (_, text) = self
            .details
            .entry((event.pid, event.site))
            .or_insert_with(|| (event.aux, Vec::new()));
        let len = usize::try_from(event.len.min(64 * 1024)).unwrap_or(0);
        text.resize(len, 0);
        // By length, not up to a NUL: argv's pieces hold NUL separators.
        let at = usize::try_from(event.start).unwrap_or(usize::MAX);
        let piece = &event.name[..len.saturating_sub(at).min(NAME_BYTES)];
        if let Some(end) = at.checked_add(piece.len()).filter(|&end| end <= len) {
            text[at..end].copy_from_slice(piece);
        }
    }

    /// Each process's details into its entry; a fork child without its
    /// own takes its parent's (it runs the same image).
    fn apply_details(&mut self) {
        for (&(pid, _), (what, bytes)) in &self.details {
            let Some(info) = self.info.get_mut(&pid) else {
                continue;
            };
            let value = text(bytes);
            match *what {
                DETAIL_EXECUTABLE => info.executable = Some(value),
                DETAIL_ARGV => {
                    info.argv = bytes.split(|&b| b == 0).map(text).collect();
                    info.command = shell_line(&info.argv);
                }
                DETAIL_OBJECT => info.objects.push(value),
                _ => {}
            }
        }
        let pids: Vec<u32> = self.info.keys().copied().collect();
        for pid in pids {
            let (mut at, mut hops) = (pid, 0);
            while hops < 64 {
                let Some(info) = self.info.get(&at) else {
                    break;
                };
                if info.executable.is_some() || !info.argv.is_empty() {
                    if at != pid {
                        let from = info.clone();
                        let child = self.info.get_mut(&pid).expect("listed");
                        child.executable = from.executable;
                        child.argv = from.argv;
                        child.objects = from.objects;
                    }
                    break;
                }
                at = info.parent;
                hops += 1;
            }
        }
    }

    fn step(&mut self, index: usize) {
        let event = self.events[index];
        if event.kind == EventKind::Detail {
            self.detail(&event);
            return;
        }
        let task = self.task_of(&event);
        self.absorb_exits(task);
        let me = task;
        self.tasks[me].clock[me] += 1;
        let lock_key = LockKey {
            dev: event.dev,
            ino: event.ino,
            flock: event.aux & LOCK_FLOCK != 0,
        };
        match event.kind {
            EventKind::Start => {
                if event.flags & STARTED_BY_FORK == 0 {
                    if let Some(info) = self.info.get_mut(&event.pid) {
                        info.command = text(event.name_bytes()).trim().to_owned();
                    }
                    // A new image: the details of the one before are gone.
                    let pid = event.pid;
                    self.details.retain(|&(p, _), _| p != pid);
                }
            }
            EventKind::Fork => {
                let clock = self.tasks[me].clock.clone();
                self.fork_clocks.insert(event.pid, clock);
            }
            EventKind::Wait | EventKind::Map | EventKind::Sync | EventKind::Detail => {}
            EventKind::Exit => {
                let pid = event.pid;
                let Some(process) = self.processes.get_mut(&pid) else {
                    return;
                };
                process.exited = true;
                let locks: Vec<LockKey> = process.locks.iter().copied().collect();
                let mut clock = Clock::new();
                for &t in &process.tasks.clone() {
                    join(&mut clock, &self.tasks[t].clock);
                }
                for key in locks {
                    join(self.lock_clocks.entry(key).or_default(), &clock);
                }
                let parent = self.info.get(&pid).map_or(0, |p| p.parent);
                if let Some(parent) = self.processes.get_mut(&parent) {
                    parent.child_exits.push(clock);
                }
            }
            EventKind::Acquire => {
                if let Some(released) = self.lock_clocks.get(&lock_key) {
                    let released = released.clone();
                    join(&mut self.tasks[me].clock, &released);
                }
                self.processes
                    .entry(event.pid)
                    .or_default()
                    .locks
                    .insert(lock_key);
                self.stale_check(index, &event);
                let range = (event.start, event.start.saturating_add(event.len));
                let t = &mut self.tasks[me];
                match t.held.get_mut(&lock_key) {
                    Some((_, ranges)) => {
                        if !ranges.contains(&range) {
                            ranges.push(range);
                        }
                    }
                    None => {
                        let epoch = t.epochs.entry(lock_key).or_insert(0);
                        *epoch += 1;
                        t.held.insert(lock_key, (*epoch, vec![range]));
                    }
                }
            }
            EventKind::Release | EventKind::ReleaseAll => {
                let clock = self.tasks[me].clock.clone();
                let keys: Vec<LockKey> = if event.kind == EventKind::ReleaseAll {
                    vec![
                        LockKey {
                            flock: false,
                            ..lock_key
                        },
                        LockKey {
                            flock: true,
                            ..lock_key
                        },
                    ]
                } else {
                    vec![lock_key]
                };
                for key in keys {
                    join(self.lock_clocks.entry(key).or_default(), &clock);
                    // An epoch ends when no range is held any more: SQLite
                    // unlocks its PENDING byte while it keeps SHARED.
                    let released = if event.kind == EventKind::ReleaseAll {
                        (0, u64::MAX)
                    } else {
                        (event.start, event.start.saturating_add(event.len))
                    };
                    let pid = event.pid;
                    let siblings = if key.flock {
                        vec![me]
                    } else {
                        self.processes
                            .get(&pid)
                            .map_or(vec![me], |p| p.tasks.clone())
                    };
                    for t in siblings {
                        let held = &mut self.tasks[t].held;
                        if let Some((_, ranges)) = held.get_mut(&key) {
                            ranges.retain(|&(s, e)| !(s < released.1 && released.0 < e));
                            if ranges.is_empty() {
                                held.remove(&key);
                            }
                        }
                    }
                }
            }
            EventKind::Read | EventKind::Write => {
                let object = Object::Inode(event.dev, event.ino);
                let end = event.start.saturating_add(event.len.max(1));
                self.access(
                    index,
                    me,
                    object,
                    event.start,
                    end,
                    event.kind == EventKind::Write,
                );
            }
            EventKind::Open | EventKind::Create | EventKind::RenameTo | EventKind::Unlink => {
                let name = event.aux;
                // Removing or replacing a name publishes; opening or
                // creating it exclusively takes what was published.
                if matches!(event.kind, EventKind::Open | EventKind::Create) {
                    if let Some(clock) = self.name_clocks.get(&name) {
                        let clock = clock.clone();
                        join(&mut self.tasks[me].clock, &clock);
                    }
                }
                let write = event.kind != EventKind::Open;
                self.access(index, me, Object::Name(name), 0, 1, write);
                if write {
                    let clock = self.tasks[me].clock.clone();
                    join(self.name_clocks.entry(name).or_default(), &clock);
                }
                let inode = (event.ino != 0).then_some((event.dev, event.ino));
                let bound = match event.kind {
                    EventKind::Unlink => None,
                    _ => inode,
                };
                let before = self.bindings.get(&name).and_then(|(b, _)| *b);
                if before != bound {
                    if let Some(old) = before {
                        if let Some(count) = self.names.get_mut(&old) {
                            *count = count.saturating_sub(1);
                        }
                    }
                    if let Some(new) = bound {
                        // An inode that had lost its every name and gets
                        // one again is a new file under a reused number.
                        if self.names.get(&new) == Some(&0) {
                            self.new_file(new);
                        }
                        *self.names.entry(new).or_insert(0) += 1;
                    }
                }
                self.bindings.insert(name, (bound, index));
                self.name_dirs.insert(name, event.start);
                if let Some((dev, ino)) = bound {
                    self.inode_dirs.insert((dev, ino), event.start);
                    self.opened_as.insert((event.pid, dev, ino), name);
                    if let Some(path) = self.paths.get(&name) {
                        self.inode_paths.insert((dev, ino), path.clone());
                    }
                }
            }
        }
    }

    /// Which directories each process maps a file in (shared, writable),
    /// its ancestors' mappings included (a fork child inherits them).
    fn collect_mappings(&mut self) {
        let mut own: HashMap<u32, Vec<(u64, String)>> = HashMap::new();
        let mut parents: HashMap<u32, u32> = HashMap::new();
        for event in self.events {
            match event.kind {
                EventKind::Map => own
                    .entry(event.pid)
                    .or_default()
                    .push((event.start, text(event.name_bytes()))),
                EventKind::Start if event.flags & STARTED_BY_FORK != 0 => {
                    parents.insert(event.pid, event.aux as u32);
                }
                _ => {}
            }
        }
        let pids: HashSet<u32> = self.events.iter().map(|e| e.pid).collect();
        for pid in pids {
            let mut all = Vec::new();
            let (mut at, mut hops) = (Some(pid), 0);
            while let (Some(p), true) = (at, hops < 64) {
                all.extend(own.get(&p).into_iter().flatten().cloned());
                at = parents.get(&p).copied();
                hops += 1;
            }
            all.sort();
            all.dedup();
            if !all.is_empty() {
                self.mapped.insert(pid, all);
            }
        }
    }

    /// The shared mapping beside `object` that both processes have, if any:
    /// they may have ordered their accesses through it.
    fn shared_mapping(&self, object: Object, pids: &[u32]) -> Option<String> {
        let dir = match object {
            Object::Inode(dev, ino) => self.inode_dirs.get(&(dev, ino)),
            Object::Name(name) => self.name_dirs.get(&name),
        }?;
        let first = self.mapped.get(pids.first()?)?;
        first
            .iter()
            .find(|(d, path)| {
                d == dir
                    && pids[1..].iter().all(|pid| {
                        self.mapped
                            .get(pid)
                            .is_some_and(|m| m.iter().any(|(_, p)| p == path))
                    })
            })
            .map(|(_, path)| path.clone())
    }

    /// Forgets what was seen of an inode number now used by another file.
    fn new_file(&mut self, (dev, ino): (u64, u64)) {
        let object = Object::Inode(dev, ino);
        self.shadows.remove(&object);
        for task in &mut self.tasks {
            task.reads.remove(&object);
        }
    }

    /// Checks an access against the shadow of its object, then lock gaps,
    /// then remembers it.
    fn access(
        &mut self,
        index: usize,
        me: usize,
        object: Object,
        start: u64,
        end: u64,
        write: bool,
    ) {
        let clock = self.tasks[me].clock.clone();
        let locked = match object {
            Object::Inode(dev, ino) => self.tasks[me]
                .held
                .keys()
                .any(|k| (k.dev, k.ino) == (dev, ino)),
            Object::Name(_) => true,
        };
        if !write && locked {
            // Read again under a lock: the task's earlier unlocked reads
            // of these bytes were optimistic, and this one checks them.
            self.optimistic.retain(|o| {
                !(o.task == me && o.object == object && o.start < end && start < o.end)
            });
            if let Some(shadow) = self.shadows.get_mut(&object) {
                shadow.forget_unlocked_reads(me, start, end);
            }
        }
        let mut hits: Vec<Hit> = Vec::new();
        let events = self.events;
        let kind = events[index].kind;
        // Opening a name while another process renames a file onto it is
        // not a race: rename replaces atomically, so the opener gets the
        // old file or the new, each whole (git's refs and index, every
        // write-a-temporary-and-rename save).
        let publication = |old: &Shadow| {
            let pair = [kind, events[old.event].kind];
            matches!(object, Object::Name(_))
                && pair.contains(&EventKind::Open)
                && pair.contains(&EventKind::RenameTo)
        };
        if let Some(shadow) = self.shadows.get(&object) {
            shadow.overlapping(start, end, |s, old| {
                if old.task != me
                    && (old.write || write)
                    && old.epoch > component(&clock, old.task)
                    && !publication(old)
                {
                    let unlocked_read = if !old.write && old.unlocked {
                        Some((old.task, s, old.end))
                    } else if !write && !locked {
                        Some((me, start, end))
                    } else {
                        None
                    };
                    hits.push(Hit {
                        earlier: old.event,
                        other: old.task,
                        unlocked_read,
                    });
                }
            });
        }
        for Hit {
            earlier,
            other,
            unlocked_read,
        } in hits
        {
            match unlocked_read {
                Some((task, start, end)) => self.optimistic.push(Optimistic {
                    task,
                    object,
                    start,
                    end,
                    earlier,
                    other,
                    later: index,
                    me,
                }),
                None => self.report_conflict(object, earlier, other, index, me),
            }
        }
        self.lock_gap(index, me, object, (start, end), write);
        let shadow = Shadow {
            task: me,
            epoch: component(&clock, me),
            end,
            write,
            event: index,
            unlocked: !locked,
        };
        self.shadows
            .entry(object)
            .or_default()
            .insert(start, shadow, &|i| site_key(&events[i]));
    }

    /// A read under a lock epoch remembered; a write checked against the
    /// reads of earlier epochs of a lock it holds now.
    fn lock_gap(
        &mut self,
        index: usize,
        me: usize,
        object: Object,
        range: (u64, u64),
        write: bool,
    ) {
        let (start, end) = range;
        let overlaps = |s: u64, e: u64| s < end && start < e;
        let held: Vec<(LockKey, u64)> = self.tasks[me]
            .held
            .iter()
            .map(|(k, (e, _))| (*k, *e))
            .collect();
        if held.is_empty() {
            return;
        }
        if !write {
            let reads = self.tasks[me].reads.entry(object).or_default();
            for (key, epoch) in held {
                let entry = LockedRead {
                    lock: key,
                    epoch,
                    start,
                    end,
                    event: index,
                };
                match reads
                    .iter_mut()
                    .find(|r| r.lock == key && (r.start, r.end) == (start, end))
                {
                    Some(slot) => *slot = entry,
                    None => reads.push(entry),
                }
            }
            return;
        }
        let Some(reads) = self.tasks[me].reads.get(&object) else {
            return;
        };
        let gap = held.iter().find_map(|(key, epoch)| {
            reads
                .iter()
                .find(|r| r.lock == *key && r.epoch < *epoch && overlaps(r.start, r.end))
                .map(|r| r.event)
        });
        // A read of the file in the write's own epoch means the task
        // looked again (SQLite rereads its change counter, not the page).
        let reread = held
            .iter()
            .any(|(key, epoch)| reads.iter().any(|r| r.lock == *key && r.epoch == *epoch));
        if let (Some(read), false) = (gap, reread) {
            let pid = self.tasks[me].pid;
            match self.shared_mapping(object, &[pid]) {
                Some(path) => {
                    let note = format!(
                        "pid {pid} maps {path} shared: it may have checked through it that its read still held"
                    );
                    self.record(FindingKind::NotVisible, object, read, index, Some(note));
                }
                None => self.record(FindingKind::LockGap, object, read, index, None),
            }
        }
    }

    fn stale_check(&mut self, index: usize, event: &Event) {
        let Some(&name) = self.opened_as.get(&(event.pid, event.dev, event.ino)) else {
            return;
        };
        let Some(&(bound, rebound)) = self.bindings.get(&name) else {
            return;
        };
        if bound != Some((event.dev, event.ino)) {
            self.record(
                FindingKind::StaleLock,
                Object::Name(name),
                rebound,
                index,
                None,
            );
        }
    }

    fn report_conflict(
        &mut self,
        object: Object,
        earlier: usize,
        other: usize,
        later: usize,
        me: usize,
    ) {
        let (a, b) = (&self.events[earlier], &self.events[later]);
        let note = if let Some(path) = self.shared_mapping(object, &[a.pid, b.pid]) {
            Some(format!(
                "pids {} and {} both map {path} shared: they may be ordered through it",
                a.pid, b.pid
            ))
        } else if self.tasks[other].pid == self.tasks[me].pid {
            Some(format!(
                "threads of one process (pid {}): their mutexes are not seen",
                a.pid
            ))
        } else {
            None
        };
        let kind = if note.is_some() {
            FindingKind::NotVisible
        } else {
            FindingKind::Conflict
        };
        self.record(kind, object, earlier, later, note);
    }

    fn record(
        &mut self,
        kind: FindingKind,
        object: Object,
        first: usize,
        second: usize,
        note: Option<String>,
    ) {
        let (a, b) = (&self.events[first], &self.events[second]);
        let (ka, kb) = (site_key(a), site_key(b));
        let key = (kind, ka.min(kb), ka.max(kb));
        let apart = b.time.abs_diff(a.time);
        let file = match object {
            Object::Inode(dev, ino) => self
                .inode_paths
                .get(&(dev, ino))
                .cloned()
                .unwrap_or_else(|| format!("inode {dev}:{ino}")),
            Object::Name(hash) => self.paths.get(&hash).cloned().unwrap_or_default(),
        };
        let t0 = self.t0;
        let index_of = |e: &Event| if std::ptr::eq(e, a) { first } else { second };
        let describe = |e: &Event| Access {
            pid: e.pid,
            tid: e.tid,
            op: op_name(e),
            call: function_name(e.func),
            site: format!("{}+{:#x}", text(e.object_bytes()), e.site),
            time: e.time.saturating_sub(t0),
            event: index_of(e),
            function: None,
            delayed: e.flags & FLAG_DELAYED != 0,
            range: matches!(e.kind, EventKind::Read | EventKind::Write)
                .then(|| (e.start, e.start.saturating_add(e.len))),
        };
        let finding = Finding {
            kind,
            file,
            first: describe(a),
            second: describe(b),
            apart,
            count: 1,
            note,
        };
        self.found
            .entry(key)
            .and_modify(|old| {
                old.count += 1;
                if apart < old.apart {
                    let count = old.count;
                    *old = finding.clone();
                    old.count = count;
                }
            })
            .or_insert(finding);
    }
}

#[cfg(test)]
mod tests;
