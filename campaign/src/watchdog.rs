//! What kills a campaign's runs when the campaign itself is killed. A
//! process killed by SIGKILL cleans nothing up, and PR_SET_PDEATHSIG
//! reaches only direct children (and fires when the forking *thread*
//! ends), so the campaign forks a watchdog at its start: it holds the
//! other end of a socket that only the campaign holds open, learns each
//! run's process group as it starts and ends, and when the socket closes
//! with groups still running (the campaign died) kills those groups and
//! every process that carries one of this campaign's run markers.
//!
//! The watchdog is forked from a process that may have many threads, so
//! it does only what is safe after such a fork: raw system calls on
//! buffers it had before the fork; no allocation, no locks, no stdio.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::descendants::RUN_MARKER_VAR;

/// Run groups at once that the watchdog keeps; more (beyond any sane
/// `--jobs`) are still found by their marker.
const MAX_GROUPS: usize = 1024;
/// Rounds of killing after the campaign died, 10 ms apart: a dying run
/// may fork once more.
const KILL_ROUNDS: usize = 200;
/// `_DELAYSHIM_RUN=PID.`, the start of every run marker of this process.
const PATTERN_MAX: usize = 64;

/// The campaign's end of the watchdog's socket.
#[derive(Debug)]
pub struct Watchdog {
    socket: OwnedFd,
}

impl Watchdog {
    /// Forks the watchdog of this process's runs (markers `PID.*`).
    pub fn start() -> io::Result<Watchdog> {
        let mut pattern = [0u8; PATTERN_MAX];
        let prefix = format!("{RUN_MARKER_VAR}={}.", std::process::id());
        pattern[..prefix.len()].copy_from_slice(prefix.as_bytes());
        let pattern_len = prefix.len();
        let max_fd = max_descriptor();
        let mut fds = [0 as RawFd; 2];
        // SAFETY: socketpair fills two descriptors that we then own.
        let made = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if made != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are ours and open.
        let (mine, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child runs `watch` only: raw system calls on the
        // stack buffers above, nothing that allocates or locks.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => watch(theirs.as_raw_fd(), &pattern[..pattern_len], max_fd),
            _ => Ok(Watchdog { socket: mine }),
        }
    }

    /// A run's process group has started.
    pub fn started(&self, group: libc::pid_t) {
        self.send(group);
    }

    /// A run's process group has ended (its leader was waited for).
    pub fn ended(&self, group: libc::pid_t) {
        self.send(-group);
    }

    fn send(&self, message: i32) {
        let bytes = message.to_ne_bytes();
        // SAFETY: sends 4 bytes from a local buffer; MSG_NOSIGNAL: a dead
        // watchdog is no reason for SIGPIPE. A short or failed send only
        // leaves the marker scan to find the group's processes.
        unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
    }
}

/// The highest descriptor number the watchdog may have inherited.
fn max_descriptor() -> RawFd {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur.min(65536) as RawFd
}

/// The watchdog's life: after the fork, until the campaign's end closes.
fn watch(socket: RawFd, pattern: &[u8], max_fd: RawFd) -> ! {
    // SAFETY (whole function): raw system calls with buffers on this stack.
    unsafe {
        // Its own group, so that killing the campaign's group spares it;
        // interrupts are the campaign's to handle, not its own.
        libc::setpgid(0, 0);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(signal, libc::SIG_IGN);
        }
        // Nothing inherited stays open (an output pipe a reader waits on
        // to close, the --out directory's lock), only the socket.
        for fd in 0..=max_fd {
            if fd != socket {
                libc::close(fd);
            }
        }
    }
    let mut groups = [0 as libc::pid_t; MAX_GROUPS];
    let mut buffer = [0u8; 256];
    let mut filled = 0;
    loop {
        // SAFETY: reads into the unfilled tail of a local buffer.
        let n = unsafe {
            libc::read(
                socket,
                buffer[filled..].as_mut_ptr().cast(),
                buffer.len() - filled,
            )
        };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            break;
        }
        filled += n as usize;
        let whole = filled - filled % 4;
        for message in buffer[..whole].chunks_exact(4) {
            let group = i32::from_ne_bytes([message[0], message[1], message[2], message[3]]);
            learn(&mut groups, group);
        }
        buffer.copy_within(whole..filled, 0);
        filled -= whole;
    }
    // The campaign is gone. At its normal end no group is left and no
    // marked process lives: this finds nothing and exits at once.
    let mut quiet_rounds = 0;
    for _ in 0..KILL_ROUNDS {
        let mut killed = 0;
        for &group in groups.iter().filter(|&&g| g > 0) {
            // SAFETY: a negative pid signals that process group only.
            if unsafe { libc::kill(-group, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        killed += kill_marked(pattern);
        quiet_rounds = if killed == 0 { quiet_rounds + 1 } else { 0 };
        if quiet_rounds >= 2 {
            break;
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        // SAFETY: sleeps; the timespec is local.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
    // SAFETY: ends the watchdog without running the forked process's
    // atexit handlers or flushing its copy of stdio.
    unsafe { libc::_exit(0) }
}

/// A positive message adds a running group, a negative one removes it.
fn learn(groups: &mut [libc::pid_t], message: i32) {
    if message > 0 {
        if let Some(slot) = groups.iter_mut().find(|g| **g == 0) {
            *slot = message;
        }
    } else if let Some(slot) = groups.iter_mut().find(|g| **g == -message) {
        *slot = 0;
    }
}

/// Kills every live process whose environment holds an entry starting
/// with `pattern`; returns how many it signalled.
fn kill_marked(pattern: &[u8]) -> usize {
    let mut killed = 0;
    let me = std::process::id() as libc::pid_t;
    // SAFETY: opens a directory by a NUL-terminated literal.
    let proc_dir = unsafe {
        libc::open(
            c"/proc".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if proc_dir < 0 {
        return 0;
    }
    let mut entries = [0u8; 4096];
    loop {
        // SAFETY: getdents64 fills at most entries.len() bytes.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                proc_dir,
                entries.as_mut_ptr(),
                entries.len(),
            )
        };
        if n <= 0 {
            break;
        }
        let mut offset = 0;
        while offset + 19 < n as usize {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
            let reclen = u16::from_ne_bytes([entries[offset + 16], entries[offset + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &entries[offset + 19..(offset + reclen).min(n as usize)];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(pid) = parse_pid(name) {
                if pid != me && pid > 1 && environ_has(name, pattern) {
                    // SAFETY: kill signals one process.
                    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                        killed += 1;
                    }
                }
            }
            offset += reclen;
        }
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(proc_dir) };
    killed
}

fn parse_pid(name: &[u8]) -> Option<libc::pid_t> {
    if name.is_empty() || name.len() > 9 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        name.iter()
            .fold(0, |pid, &d| pid * 10 + libc::pid_t::from(d - b'0')),
    )
}

/// Whether /proc/PID/environ (PID given as its digits) has an entry that
/// starts with `pattern`. A zombie's environment reads empty.
fn environ_has(pid_digits: &[u8], pattern: &[u8]) -> bool {
    let mut path = [0u8; 32];
    let parts: [&[u8]; 3] = [b"/proc/", pid_digits, b"/environ\0"];
    let mut len = 0;
    for part in parts {
        path[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    // SAFETY: the path is NUL-terminated within its buffer.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    let mut matcher = EntryPrefix::new(pattern);
    let mut chunk = [0u8; 4096];
    let found = loop {
        // SAFETY: reads into a local buffer.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n <= 0 {
            break false;
        }
        if chunk[..n as usize].iter().any(|&b| matcher.feed(b)) {
            break true;
        }
    };
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    found
}

/// Finds, a byte at a time, a NUL-separated entry that starts with a
/// pattern: environ is read in chunks that may split an entry.
struct EntryPrefix<'a> {
    pattern: &'a [u8],
    /// How much of the pattern the current entry matched so far; `None`
    /// once it differs.
    matched: Option<usize>,
}

impl<'a> EntryPrefix<'a> {
    fn new(pattern: &'a [u8]) -> Self {
        EntryPrefix {
            pattern,
            matched: Some(0),
        }
    }

    fn feed(&mut self, byte: u8) -> bool {
        if byte == 0 {
            self.matched = Some(0);
            return false;
        }
        self.matched = match self.matched {
            Some(m) if m < self.pattern.len() && self.pattern[m] == byte => Some(m + 1),
            _ => None,
        };
        self.matched == Some(self.pattern.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_match_by_their_start_across_chunks() {
        let find = |environ: &[u8]| {
            let mut matcher = EntryPrefix::new(b"_M=12.");
            environ.iter().any(|&b| matcher.feed(b))
        };
        assert!(find(b"A=1\0_M=12.3\0"));
        assert!(find(b"_M=12.replay-0"));
        assert!(!find(b"X_M=12.3\0"));
        assert!(!find(b"_M=123.4\0"));
        assert!(!find(b"_M=1\0"));
    }

    #[test]
    fn groups_are_learned_and_forgotten() {
        let mut groups = [0; 3];
        learn(&mut groups, 7);
        learn(&mut groups, 9);
        learn(&mut groups, -7);
        assert_eq!(groups, [0, 9, 0]);
        assert_eq!(parse_pid(b"123"), Some(123));
        assert_eq!(parse_pid(b"self"), None);
    }
}
