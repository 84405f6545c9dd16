//! The supervisor: starts the program beneath the filter, then receives
//! each held call, describes it from outside, decides as the shim does,
//! and answers: at once, or from the sleeper thread when its delay is up,
//! so one held call never holds up another.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::config::{errno_name, Config, LockFilter};
use super::decide::{combine, decide, hash_bytes, now_nanos, Decision, ThreadState, ROOT_LINEAGE};
use super::kernel::{self, Notif, Watch};
use super::output::{exit_line, process_line, start_line, CallText, Identity, ProcessCounts, Sink};
use super::replay::Replay;
use super::sleeper::Sleeper;
use super::syscalls::{Args, Syscall, SYSCALLS};
use super::target;

/// How a supervised program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// One process of the tree.
#[derive(Debug)]
struct Process {
    lineage: u64,
    next_child: u64,
    next_thread: u64,
    threads: HashMap<u32, ThreadState>,
    counts: ProcessCounts,
    who: Identity,
    /// Readable when the process has exited.
    pidfd: OwnedFd,
    /// It took a lock, so a close may now release one.
    took_lock: bool,
}

/// The supervisor's state between notifications.
struct Supervisor {
    config: Config,
    seed: u64,
    root: u32,
    root_lineage: u64,
    processes: HashMap<u32, Process>,
    thread_process: HashMap<u32, u32>,
    stats: Option<Sink>,
    log: Option<Sink>,
    record: Option<Sink>,
    replay: Option<Replay>,
    /// `when=after` delays drawn for a thread's last call, slept before its
    /// next held call.
    pending_after: HashMap<u32, u64>,
    /// Function names the filter holds, for the record's process lines.
    funcs: Vec<&'static str>,
}

/// The environment of the program: the caller's, with every `DELAYSHIM_*`
/// setting removed (but `DELAYSHIM_RUN_DIR`, the program's own) and
/// `DELAYSHIM_ENABLE=0`, so that a shim loaded
/// anyway (an `LD_PRELOAD` of the user's, or a program that sets one)
/// passes every call through: no call is delayed twice.
pub fn program_env(env: impl Iterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = env
        .filter(|(k, _)| {
            !k.as_encoded_bytes().starts_with(b"DELAYSHIM_") || k == delayshim_settings::RUN_DIR_VAR
        })
        .collect();
    env.push(("DELAYSHIM_ENABLE".into(), "0".into()));
    env
}

/// Runs `program` (a path; `argv` includes its name) beneath the filter
/// until it and everything it started has ended.
pub fn supervise(
    config: Config,
    program: &Path,
    argv: &[OsString],
    env: &[(OsString, OsString)],
) -> Result<Ended> {
    let open = |path: &Option<PathBuf>, name: &str| -> Result<Option<Sink>> {
        path.as_deref()
            .map(|p| Sink::open(p).with_context(|| format!("{name}: {}", p.display())))
            .transpose()
    };
    let stats = open(&config.stats, "DELAYSHIM_STATS")?;
    let log = open(&config.log, "DELAYSHIM_LOG")?;
    let record = open(&config.record, "DELAYSHIM_RECORD")?;
    let replay = config.replay.as_deref().map(Replay::load).transpose()?;
    let seed = match (config.seed, config.tree) {
        (Some(seed), _) => seed,
        (None, Some((seed, _))) => seed,
        (None, None) => {
            let seed = crate::plan::random_seed();
            if config.enabled && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!("delayshim: DELAYSHIM_SEED={seed} (chosen at random; set it to draw these delays again)");
            }
            seed
        }
    };
    let calls = config.watched();
    let fault_on = |func: &str| {
        config
            .faults
            .iter()
            .any(|r| r.calls.iter().any(|&i| SYSCALLS[i].family().name == func))
    };
    let watch = Watch {
        creating_opens_only: config.effects_only && !fault_on("open") && replay.is_none(),
        lock_fcntl_only: config.effects_only && !fault_on("fcntl") && replay.is_none(),
        calls: calls.clone(),
    };
    let filter = kernel::program(&watch);
    // Orphans of the tree come to the supervisor, which reaps them: a
    // zombie would keep the filter, and so the run, alive.
    // SAFETY: prctl with plain integers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let started = super::launch::start(program, argv, env, &filter)
        .with_context(|| format!("cannot start {}", program.display()))?;
    let listener = Arc::new(started.listener);
    let sleeper = Sleeper::start(listener.clone());
    let supervisor = Supervisor {
        seed,
        root: started.pid as u32,
        root_lineage: config.tree.map_or(ROOT_LINEAGE, |(_, lineage)| lineage),
        funcs: calls.iter().map(|c| c.func).collect(),
        config,
        processes: HashMap::new(),
        thread_process: HashMap::new(),
        stats,
        log,
        record,
        replay,
        pending_after: HashMap::new(),
    };
    let supervisor = Arc::new(Mutex::new(supervisor));
    let sleeper = Arc::new(sleeper);
    // Notifications are received on a thread of their own, blocked in the
    // kernel between them (no poll per call); this thread watches the
    // tree's processes end. The receiver is left blocked at the end: the
    // process exits after the program.
    {
        let (supervisor, listener, sleeper) =
            (supervisor.clone(), listener.clone(), sleeper.clone());
        std::thread::spawn(move || loop {
            match kernel::receive(listener.as_fd()) {
                Ok(Some(notif)) => lock(&supervisor).handle(listener.as_fd(), &sleeper, &notif),
                Ok(None) => {}
                Err(_) => return,
            }
        });
    }
    let ended = watch_tree(&supervisor, listener.as_fd());
    let mut supervisor = lock(&supervisor);
    sleeper.stop();
    for (_, process) in std::mem::take(&mut supervisor.processes) {
        supervisor.exit_line(&process);
    }
    Ok(ended)
}

fn lock(supervisor: &Mutex<Supervisor>) -> std::sync::MutexGuard<'_, Supervisor> {
    supervisor.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes each process's exit line when it ends, reaps the supervisor's
/// children, and returns how the program ended once the tree is gone.
fn watch_tree(supervisor: &Mutex<Supervisor>, listener: std::os::fd::BorrowedFd<'_>) -> Ended {
    let mut ended: Option<Ended> = None;
    let mut cleanup_deadline: Option<Instant> = None;
    loop {
        // Only hang-up is asked of the listener: the receiver takes its input.
        let mut fds = vec![libc::pollfd {
            fd: listener.as_raw_fd(),
            events: 0,
            revents: 0,
        }];
        let pids: Vec<u32> = {
            let supervisor = lock(supervisor);
            let pids: Vec<u32> = supervisor.processes.keys().copied().collect();
            fds.extend(pids.iter().map(|pid| libc::pollfd {
                fd: supervisor.processes[pid].pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }));
            pids
        };
        // Short timeouts: processes met meanwhile join the next round, and
        // orphans need reaping before the listener can hang up.
        let timeout = if ended.is_some() { 20 } else { 50 };
        // SAFETY: a valid array of pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        {
            let mut supervisor = lock(supervisor);
            for (pid, fd) in pids.iter().zip(&fds[1..]) {
                if fd.revents & libc::POLLIN != 0 {
                    if let Some(process) = supervisor.processes.remove(pid) {
                        supervisor.thread_process.retain(|_, p| p != pid);
                        supervisor.exit_line(&process);
                    }
                }
            }
            if let Some(status) = supervisor.reap() {
                ended = Some(status);
            }
        }
        if ended.is_some() && cleanup_deadline.is_none() {
            // The program is done: what it left running goes, as a
            // campaign's run ends (and its held calls need no answer).
            lock(supervisor).kill_leftovers();
            cleanup_deadline = Some(Instant::now() + Duration::from_secs(2));
        }
        let hung_up = fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0;
        if let Some(ended) = ended {
            if hung_up || cleanup_deadline.is_some_and(|d| Instant::now() > d) {
                return ended;
            }
            lock(supervisor).kill_leftovers();
        }
    }
}

impl Supervisor {
    /// Reaps every child that has ended; returns the program's status if
    /// it was one of them.
    fn reap(&mut self) -> Option<Ended> {
        let mut ended = None;
        loop {
            let mut status = 0;
            // SAFETY: reaping our own children.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
            if pid <= 0 {
                return ended;
            }
            if pid as u32 == self.root {
                ended = Some(if libc::WIFEXITED(status) {
                    Ended::Exited(libc::WEXITSTATUS(status))
                } else {
                    Ended::Signaled(libc::WTERMSIG(status))
                });
            }
        }
    }

    /// Kills the supervisor's remaining children (the tree's orphans come
    /// to it as their subreaper) and every process it knows.
    fn kill_leftovers(&self) {
        let me = std::process::id();
        let mut pids: Vec<u32> = self.processes.keys().copied().collect();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if target::process_of(pid).is_some_and(|(_, ppid)| ppid == me) {
                    pids.push(pid);
                }
            }
        }
        for pid in pids {
            // SAFETY: signalling a process of the tree.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    fn exit_line(&mut self, process: &Process) {
        let strategy = self.config.strategy.name();
        if let Some(stats) = &mut self.stats {
            stats.line(exit_line(
                &process.who,
                self.seed,
                strategy,
                &process.counts,
            ));
        }
    }

    /// The process of thread `tid`, met for the first time if need be.
    fn process_of(&mut self, tid: u32) -> Option<u32> {
        if let Some(&pid) = self.thread_process.get(&tid) {
            return Some(pid);
        }
        let (pid, ppid) = target::process_of(tid)?;
        self.ensure_process(pid, ppid, 0)?;
        self.thread_process.insert(tid, pid);
        Some(pid)
    }

    /// Registers process `pid` (and, first, its unregistered ancestors in
    /// the tree), with its lineage: the root's, or its parent's combined
    /// with the parent's next ticket, as a fork child's in the shim.
    fn ensure_process(&mut self, pid: u32, ppid: u32, depth: u32) -> Option<()> {
        if self.processes.contains_key(&pid) {
            return Some(());
        }
        let lineage = if pid == self.root {
            self.root_lineage
        } else if depth < 64 && ppid != std::process::id() && ppid > 1 {
            if !self.processes.contains_key(&ppid) {
                let (_, grandparent) = target::process_of(ppid).unwrap_or((ppid, 0));
                self.ensure_process(ppid, grandparent, depth + 1);
            }
            match self.processes.get_mut(&ppid) {
                Some(parent) => {
                    parent.next_child += 1;
                    combine(parent.lineage, parent.next_child - 1)
                }
                None => combine(ROOT_LINEAGE, u64::from(pid) << 32),
            }
        } else {
            // An orphan, reparented before it made a call: no place in the
            // tree to inherit.
            combine(ROOT_LINEAGE, u64::from(pid) << 32)
        };
        // SAFETY: pidfd_open with plain integers; the descriptor is ours.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if pidfd < 0 {
            return None;
        }
        let who = Identity {
            pid,
            ppid,
            exe: target::exe(pid),
        };
        if let Some(stats) = &mut self.stats {
            stats.line(start_line(&who));
        }
        if let Some(record) = &mut self.record {
            record.line(process_line(
                lineage,
                &who,
                &self.funcs,
                &target::cmdline(pid),
            ));
        }
        self.processes.insert(
            pid,
            Process {
                lineage,
                next_child: 0,
                next_thread: 0,
                threads: HashMap::new(),
                counts: ProcessCounts::default(),
                who,
                // SAFETY: a new descriptor, ours.
                pidfd: unsafe { OwnedFd::from_raw_fd(pidfd as i32) },
                took_lock: false,
            },
        );
        Some(())
    }

    /// One held call: describe, filter, decide, output, answer.
    fn handle(&mut self, listener: std::os::fd::BorrowedFd<'_>, sleeper: &Sleeper, notif: &Notif) {
        let decision = self.decide(listener, notif).unwrap_or_default();
        let owed = self.pending_after.remove(&notif.pid).unwrap_or(0);
        if decision.after_nanos > 0 {
            self.pending_after.insert(notif.pid, decision.after_nanos);
        }
        match owed + decision.before_nanos {
            0 => kernel::answer(listener, notif.id, decision.fault),
            nanos => sleeper.answer_at(now_nanos() + nanos, notif.id, decision.fault),
        }
    }

    fn decide(&mut self, listener: std::os::fd::BorrowedFd<'_>, notif: &Notif) -> Option<Decision> {
        let call = Syscall::by_nr(notif.data.nr.into())?;
        let tid = notif.pid;
        let pid = self.process_of(tid)?;
        let args = notif.data.args;
        let func = call.func;
        self.processes
            .get_mut(&pid)?
            .counts
            .calls
            .entry(func)
            .and_modify(|n| *n += 1)
            .or_insert(1);
        if !self.config.enabled {
            return None;
        }

        // Describe the call, from outside.
        let family = call.family().name;
        let fd = matches!(call.args, Args::Fd).then_some(args[0] as i32 as i64);
        let (mut path, mut other) = (None, None);
        let read_path = |dirfd: Option<usize>, at: usize| {
            let raw = target::read_string(tid, args[at])?;
            target::absolute(pid, tid, dirfd.map(|d| args[d] as i32 as i64), &raw)
        };
        match call.args {
            Args::Path { path: p, other: o } => {
                path = read_path(None, p);
                other = o.and_then(|o| read_path(None, o));
            }
            Args::At {
                dirfd,
                path: p,
                other: o,
            } => {
                path = read_path(Some(dirfd), p);
                other = o.and_then(|(d, o)| read_path(Some(d), o));
            }
            Args::Fd | Args::Neither => {}
        }
        // A descriptor's path is read now only for --paths; for the log and
        // the record, once a call is altered.
        if let (Some(fd), false) = (fd, self.config.paths.is_empty()) {
            path = target::fd_path(pid, fd);
        }
        let (cmd, lock, lock_kind, blocks) = describe_lock(call, tid, &args);
        let on_file = match (fd, &path) {
            (Some(fd), _) => target::fd_is_file(pid, fd),
            (None, Some(path)) if !matches!(call.args, Args::Fd) => target::path_is_file(path),
            _ => true,
        };
        // What was read is about this call only if it still waits.
        if !kernel::still_valid(listener, notif.id) {
            return None;
        }

        // The shim's filters, in its order.
        if let Some(kind) = lock_kind {
            let admitted = match self.config.locks {
                LockFilter::All => true,
                LockFilter::Acquire => kind == Kind::Acquire,
                LockFilter::Release => kind == Kind::Release,
                LockFilter::Locks => kind != Kind::Other,
            };
            if !admitted {
                return None;
            }
        }
        if self.config.files_only && !on_file {
            return None;
        }
        if matches!(call.args, Args::Path { .. } | Args::At { .. }) && path.is_none() {
            // The kernel will answer EFAULT or ENAMETOOLONG itself.
            return None;
        }
        if !self.config.paths.is_empty() {
            let matches = |p: &Option<PathBuf>| {
                p.as_ref().is_some_and(|p| {
                    self.config
                        .paths
                        .iter()
                        .any(|g| target::glob_match(g.as_bytes(), p.as_os_str().as_encoded_bytes()))
                })
            };
            if !matches(&path) && !matches(&other) {
                return None;
            }
        }
        let process = self.processes.get_mut(&pid)?;
        let kind = match family {
            "write" | "pwrite" | "truncate" => Kind::Write,
            "fsync" => Kind::Sync,
            "fcntl" | "flock" => lock_kind.unwrap_or(Kind::Other),
            "open" => {
                let flags = match call.open_flags {
                    Some(arg) => args[arg] as i32,
                    None => libc::O_CREAT | libc::O_TRUNC, // creat
                };
                if flags & (libc::O_CREAT | libc::O_TRUNC) != 0 {
                    Kind::Namespace
                } else {
                    Kind::Read
                }
            }
            "close" if process.took_lock => Kind::Release,
            "close" => Kind::Other,
            "read" | "pread" => Kind::Read,
            _ => Kind::Namespace,
        };
        if kind == Kind::Acquire {
            process.took_lock = true;
        }
        let reorders = !matches!(kind, Kind::Read | Kind::Other);
        let visible = reorders || matches!(family, "read" | "pread");
        let index_in_table = call.index();
        let delayed = self.config.enabled
            && self.config.delayed[index_in_table]
            && (visible || !self.config.effects_only);
        let now = now_nanos();
        let (seed, lineage) = (self.seed, process.lineage);
        let config = &self.config;
        let next_thread = &mut process.next_thread;
        let thread = process.threads.entry(tid).or_insert_with(|| {
            *next_thread += 1;
            ThreadState::new(config, seed, combine(seed, lineage), *next_thread - 1, now)
        });
        let (ordinal, index) = (thread.ordinal, thread.calls);
        let mut decision = match &self.replay {
            Some(replay) => {
                thread.calls += 1;
                replay.lookup(lineage, ordinal, index)
            }
            None => {
                let site = || site_key(call, notif.data.instruction_pointer, pid, cmd, lock);
                decide(config, thread, index_in_table, delayed, site, now)
            }
        };
        if decision.fault == Some(libc::EINTR) && matches!(family, "fcntl" | "flock") && !blocks {
            decision.fault = None;
        }
        if decision.is_nothing() {
            return None;
        }
        let counts = &mut process.counts;
        for nanos in [decision.before_nanos, decision.after_nanos] {
            if nanos > 0 {
                *counts.delayed.entry(func).or_default() += 1;
                *counts.delay_nanos.entry(func).or_default() += nanos;
                if on_file && reorders {
                    counts.injected += 1;
                }
            }
        }
        if decision.fault.is_some() {
            *counts.faults.entry(func).or_default() += 1;
        }
        if let (Some(fd), None, true) = (fd, &path, self.log.is_some() || self.record.is_some()) {
            path = target::fd_path(pid, fd);
        }
        let text = CallText {
            func,
            pid,
            tid,
            fd,
            path: path.as_ref().map(|p| p.as_os_str().as_encoded_bytes()),
            other: other.as_ref().map(|p| p.as_os_str().as_encoded_bytes()),
            cmd,
            lock,
        };
        if let Some(log) = &mut self.log {
            for (when, nanos) in [
                ("before", decision.before_nanos),
                ("after", decision.after_nanos),
            ] {
                if nanos > 0 {
                    log.line(
                        text.log_line(&format!(" when={when} delay_us={}", nanos.div_ceil(1000))),
                    );
                }
            }
            if let Some(fault) = decision.fault {
                log.line(text.log_line(&format!(" when=fault fault={}", errno_name(fault))));
            }
        }
        if let Some(record) = &mut self.record {
            record.line(text.record_line(
                lineage,
                ordinal,
                index,
                &decision,
                decision.fault.map(errno_name),
            ));
        }
        Some(decision)
    }
}

/// The effect a call can have on other processes (the shim's `call::Kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Acquire,
    Release,
    Write,
    Sync,
    Namespace,
    Read,
    Other,
}

/// A locking call's command and lock names, its kind, and whether it
/// waits for another process.
fn describe_lock(
    call: &Syscall,
    tid: u32,
    args: &[u64; 6],
) -> (
    Option<&'static str>,
    Option<&'static str>,
    Option<Kind>,
    bool,
) {
    match call.nr {
        libc::SYS_flock => {
            let operation = args[1] as i32;
            let (kind, name) = match (operation & !libc::LOCK_NB, operation & libc::LOCK_NB != 0) {
                (libc::LOCK_SH, false) => (Kind::Acquire, "LOCK_SH"),
                (libc::LOCK_SH, true) => (Kind::Acquire, "LOCK_SH|LOCK_NB"),
                (libc::LOCK_EX, false) => (Kind::Acquire, "LOCK_EX"),
                (libc::LOCK_EX, true) => (Kind::Acquire, "LOCK_EX|LOCK_NB"),
                (libc::LOCK_UN, _) => (Kind::Release, "LOCK_UN"),
                _ => (Kind::Other, "?"),
            };
            let blocks = kind == Kind::Acquire && operation & libc::LOCK_NB == 0;
            (Some(name), None, Some(kind), blocks)
        }
        libc::SYS_fcntl => {
            let cmd = args[1] as i32;
            let cmd_name = match cmd {
                libc::F_GETLK => Some("F_GETLK"),
                libc::F_SETLK => Some("F_SETLK"),
                libc::F_SETLKW => Some("F_SETLKW"),
                libc::F_OFD_GETLK => Some("F_OFD_GETLK"),
                libc::F_OFD_SETLK => Some("F_OFD_SETLK"),
                libc::F_OFD_SETLKW => Some("F_OFD_SETLKW"),
                libc::F_GETFL => Some("F_GETFL"),
                libc::F_SETFL => Some("F_SETFL"),
                libc::F_GETFD => Some("F_GETFD"),
                libc::F_SETFD => Some("F_SETFD"),
                libc::F_DUPFD => Some("F_DUPFD"),
                libc::F_DUPFD_CLOEXEC => Some("F_DUPFD_CLOEXEC"),
                _ => None,
            };
            let is_lock = matches!(
                cmd,
                libc::F_GETLK
                    | libc::F_SETLK
                    | libc::F_SETLKW
                    | libc::F_OFD_GETLK
                    | libc::F_OFD_SETLK
                    | libc::F_OFD_SETLKW
            );
            if !is_lock {
                return (cmd_name, None, Some(Kind::Other), false);
            }
            let mut l_type = [0u8; 2];
            let lock_type = target::read_memory(tid, args[2], &mut l_type)
                .map(|_| i16::from_ne_bytes(l_type) as i32);
            let sets = matches!(
                cmd,
                libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_SETLK | libc::F_OFD_SETLKW
            );
            let (kind, lock) = match lock_type {
                Some(libc::F_UNLCK) => (
                    if sets { Kind::Release } else { Kind::Other },
                    Some("F_UNLCK"),
                ),
                Some(libc::F_RDLCK) => (
                    if sets { Kind::Acquire } else { Kind::Other },
                    Some("F_RDLCK"),
                ),
                Some(libc::F_WRLCK) => (
                    if sets { Kind::Acquire } else { Kind::Other },
                    Some("F_WRLCK"),
                ),
                _ => (Kind::Other, None),
            };
            let blocks =
                matches!(cmd, libc::F_SETLKW | libc::F_OFD_SETLKW) && kind == Kind::Acquire;
            (cmd_name, lock, Some(kind), blocks)
        }
        _ => (None, None, None, false),
    }
}

/// A call site for the sites strategy: the system call instruction's place
/// in its object file (so the same across runs, whatever the address
/// layout), the call and the lock command.
fn site_key(call: &Syscall, ip: u64, pid: u32, cmd: Option<&str>, lock: Option<&str>) -> u64 {
    let place = object_offset(pid, ip).unwrap_or(0);
    let command = hash_bytes(cmd.unwrap_or("").as_bytes())
        ^ hash_bytes(lock.unwrap_or("").as_bytes()).rotate_left(17);
    combine(combine(place, call.nr as u64), command)
}

/// `ip`'s object file and offset in it, hashed, from `/proc/PID/maps`.
fn object_offset(pid: u32, ip: u64) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let (start, end) = words.next()?.split_once('-')?;
        let (start, end) = (
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        );
        if !(start..end).contains(&ip) {
            return None;
        }
        let offset = u64::from_str_radix(words.nth(1)?, 16).ok()?;
        let object = words.nth(2).unwrap_or("");
        Some(combine(hash_bytes(object.as_bytes()), ip - start + offset))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_keeps_its_environment_but_the_settings() {
        let env = program_env(
            [
                ("PATH", "/bin"),
                ("DELAYSHIM_MEAN_US", "5"),
                ("DELAYSHIM_RUN_DIR", "/r"),
                ("LD_PRELOAD", "x.so"),
            ]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into())),
        );
        let names: Vec<&str> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "DELAYSHIM_RUN_DIR",
                "LD_PRELOAD",
                "DELAYSHIM_ENABLE"
            ]
        );
    }
}
