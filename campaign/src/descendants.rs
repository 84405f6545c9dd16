//! Every process a run started, wherever it went. Killing the run's
//! process group misses a daemon that called `setsid` or forked twice, so
//! each run carries a marker variable that its descendants inherit, the
//! runner becomes a child subreaper (orphans are reparented to it, not to
//! init), and when a run ends every live process of its group or with its
//! marker is killed and the orphans are reaped. If the runner itself is
//! killed, its [`crate::watchdog`] does that.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::watchdog::Watchdog;

/// Set in each run's environment to `CAMPAIGN_PID.RUN_INDEX`. Not a
/// `DELAYSHIM_*` name: the shim refuses variables it does not know.
pub const RUN_MARKER_VAR: &str = "_DELAYSHIM_RUN";

/// The value of [`RUN_MARKER_VAR`] for run `index` of this process's campaign.
pub fn run_marker(index: u64) -> String {
    format!("{}.{index}", std::process::id())
}

/// A marker of its own for each replay of a recorded run, so that what a
/// replay leaves running (a daemon of a HANG) is found and killed too.
pub fn replay_marker() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}.replay-{n}", std::process::id())
}

/// Spawns runs and reaps the orphans they leave. A child subreaper gets
/// every orphaned descendant as its child, so it must wait for them, but
/// never for a run's own process, which its thread waits for.
#[derive(Debug)]
pub struct Reaper {
    /// Run processes that their threads will wait for.
    leaders: Mutex<HashSet<libc::pid_t>>,
    /// Kills the runs' groups and marked processes if this process dies
    /// without doing it itself (SIGKILL).
    watchdog: Watchdog,
}

impl Reaper {
    /// Makes this process the subreaper of everything it starts from now on.
    pub fn new() -> io::Result<Reaper> {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes an int flag and nothing else.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Reaper {
            leaders: Mutex::default(),
            watchdog: Watchdog::start()?,
        })
    }

    /// The one reaper of this process. A second one would reap the first
    /// one's run processes as orphans, so campaigns, confirm replays and
    /// minimize's replays all share this one.
    pub fn shared() -> io::Result<&'static Reaper> {
        static SHARED: std::sync::OnceLock<Reaper> = std::sync::OnceLock::new();
        if let Some(reaper) = SHARED.get() {
            return Ok(reaper);
        }
        let reaper = Reaper::new()?;
        Ok(SHARED.get_or_init(|| reaper))
    }

    /// Spawns a run's process, registered before it can exit and become a
    /// zombie that [`Reaper::reap_orphans`] would take.
    pub fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        let mut leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        let child = command.spawn()?;
        leaders.insert(child.id() as libc::pid_t);
        self.watchdog.started(child.id() as libc::pid_t);
        Ok(child)
    }

    /// The run's process has been waited for.
    pub fn release(&self, child: &Child) {
        let mut leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        leaders.remove(&(child.id() as libc::pid_t));
        self.watchdog.ended(child.id() as libc::pid_t);
    }

    /// Waits for every zombie child that is not a run's own process.
    pub fn reap_orphans(&self) {
        let leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        let me = std::process::id() as libc::pid_t;
        for process in processes() {
            if process.ppid == me && process.zombie && !leaders.contains(&process.pid) {
                let mut status = 0;
                // SAFETY: waits for one specific child of ours, without blocking.
                unsafe { libc::waitpid(process.pid, &mut status, libc::WNOHANG) };
            }
        }
    }

    /// Kills every live process of `group` or carrying `marker`, until none
    /// is left (a dying process may fork once more) or two seconds pass.
    /// Returns how many distinct processes were killed.
    pub fn kill_leftovers(&self, group: libc::pid_t, marker: &str) -> usize {
        let mut killed = BTreeSet::new();
        let mut settled = false;
        let start = Instant::now();
        loop {
            self.reap_orphans();
            let alive: Vec<libc::pid_t> = processes()
                .filter(|p| !p.zombie && (p.pgrp == group || has_marker(p.pid, marker)))
                .map(|p| p.pid)
                .collect();
            if alive.is_empty() && !killed.is_empty() && !settled {
                // A run that left processes may still be forking more (a
                // shell's background chain): look once more a little later.
                settled = true;
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            if alive.is_empty() || start.elapsed() > Duration::from_secs(2) {
                // What died since the reaping above is a zombie now.
                self.reap_orphans();
                return killed.len();
            }
            settled = false;
            for pid in alive {
                // SAFETY: kill signals one process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed.insert(pid);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills `group` and waits, up to a second, until none of its members
    /// is alive: a killed run's processes must be gone when it is reported.
    pub fn kill_group(&self, group: libc::pid_t) {
        let start = Instant::now();
        loop {
            // SAFETY: kill with a negative pid signals that process group only.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            self.reap_orphans();
            let alive = processes().any(|p| !p.zombie && p.pgrp == group);
            if !alive || start.elapsed() > Duration::from_secs(1) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// What /proc/PID/stat says about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessInfo {
    pid: libc::pid_t,
    ppid: libc::pid_t,
    pgrp: libc::pid_t,
    zombie: bool,
}

/// The processes a run may have left: as a child subreaper this process
/// has every one of them in its subtree, which `/proc/PID/task/TID/children`
/// walks without reading every process of the machine (a scan of a few
/// hundred processes took tens of milliseconds, after every run). Where
/// the kernel lacks those files (CONFIG_PROC_CHILDREN), every process.
fn processes() -> impl Iterator<Item = ProcessInfo> {
    let me = std::process::id() as libc::pid_t;
    let pids = subtree(me).unwrap_or_else(every_pid);
    pids.into_iter().filter_map(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(pid, &stat)
    })
}

/// The descendants of `root` (not `root`), or `None` if the kernel has no
/// children files. A process that forks or exits during the walk may be
/// missed: callers look again until nothing is left.
fn subtree(root: libc::pid_t) -> Option<Vec<libc::pid_t>> {
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            let children = match std::fs::read_to_string(&path) {
                Ok(children) => children,
                Err(e) if e.kind() == io::ErrorKind::NotFound && pid == root => return None,
                Err(_) => continue,
            };
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                next.push(child);
            }
        }
    }
    Some(found)
}

fn every_pid() -> Vec<libc::pid_t> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Blocks until `child` exits or `most` passes: on a pidfd (Linux 5.3),
/// so a run's end is seen at once, not at a polling loop's next turn;
/// where the kernel has none, a short sleep.
pub fn wait_for_exit(child: &Child, most: Duration) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1. The child is not waited for yet, so its pid is still its own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
    if fd < 0 {
        std::thread::sleep(most.min(Duration::from_millis(5)));
        return;
    }
    let mut watched = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = most.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: polls one descriptor this function owns.
    unsafe { libc::poll(&mut watched, 1, millis) };
    // SAFETY: closes the descriptor opened above, once.
    unsafe { libc::close(fd) };
}

/// `PID (COMM) STATE PPID PGRP ...`; COMM may hold spaces and parentheses.
fn parse_stat(pid: libc::pid_t, stat: &str) -> Option<ProcessInfo> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcessInfo {
        pid,
        ppid,
        pgrp,
        zombie: state == "Z" || state == "X",
    })
}

/// Whether the process's environment (as it was at exec) holds the marker.
fn has_marker(pid: libc::pid_t, marker: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{RUN_MARKER_VAR}={marker}");
    environ
        .split(|&b| b == 0)
        .any(|entry| entry == wanted.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let info = parse_stat(42, "42 (a) b (c)) S 7 42 42 0 -1").unwrap();
        assert_eq!((info.ppid, info.pgrp, info.zombie), (7, 42, false));
        assert!(parse_stat(9, "9 (x) Z 1 9 9").unwrap().zombie);
        assert_eq!(parse_stat(9, "garbage"), None);
    }

    fn reaper() -> &'static Reaper {
        Reaper::shared().expect("becoming a subreaper")
    }

    #[test]
    fn a_marked_process_is_found_and_killed() {
        let reaper = reaper();
        let marker = format!("test.{}", std::process::id());
        let mut child = reaper
            .spawn(
                Command::new("sleep")
                    .arg("30")
                    .env(RUN_MARKER_VAR, &marker)
                    .process_group(0),
            )
            .unwrap();
        // Wait until exec has replaced the environment we can read.
        let start = Instant::now();
        while !has_marker(child.id() as i32, &marker) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "marker never seen"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!has_marker(child.id() as i32, "other"));
        assert_eq!(reaper.kill_leftovers(-1, &marker), 1);
        assert!(child.wait().unwrap().code().is_none(), "killed by a signal");
        reaper.release(&child);
    }

    #[test]
    fn a_daemon_is_killed_and_reaped_by_the_subreaper() {
        let reaper = reaper();
        let marker = format!("daemon.{}", std::process::id());
        let mut child = reaper
            .spawn(
                Command::new("sh")
                    .args(["-c", "setsid tail -f /dev/null & exit 0"])
                    .env(RUN_MARKER_VAR, &marker)
                    .process_group(0),
            )
            .unwrap();
        child.wait().unwrap();
        reaper.release(&child);
        let start = Instant::now();
        // Until the daemon is tail itself: a process caught between fork and
        // exec may not show its environment for a moment.
        let is_tail = |p: &ProcessInfo| {
            std::fs::read_to_string(format!("/proc/{}/comm", p.pid))
                .is_ok_and(|c| c.trim() == "tail")
        };
        while !processes().any(|p| !p.zombie && is_tail(&p) && has_marker(p.pid, &marker)) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the daemon never started"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(reaper.kill_leftovers(child.id() as libc::pid_t, &marker), 1);
        let me = std::process::id() as libc::pid_t;
        let zombie_tails = processes().filter(|p| {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid)).unwrap_or_default();
            p.ppid == me && p.zombie && comm.trim() == "tail"
        });
        assert_eq!(zombie_tails.count(), 0, "the orphan was reaped");
    }

    use std::os::unix::process::CommandExt as _;
}
