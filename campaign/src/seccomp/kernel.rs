//! The kernel's seccomp user-notification interface: the structures and
//! ioctls of `<linux/seccomp.h>` (x86_64), and the filter program, which
//! sends the watched system calls to the supervisor and lets every other
//! call through inside the kernel.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::syscalls::Syscall;

/// `struct seccomp_data`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SeccompData {
    pub nr: i32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

/// `struct seccomp_notif`: `pid` is the calling thread's id.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Notif {
    pub id: u64,
    pub pid: u32,
    pub flags: u32,
    pub data: SeccompData,
}

/// `struct seccomp_notif_resp`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const fn iowr(nr: u64, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | ((b'!' as u64) << 8) | nr
}

const IOCTL_NOTIF_RECV: u64 = iowr(0, std::mem::size_of::<Notif>());
const IOCTL_NOTIF_SEND: u64 = iowr(1, std::mem::size_of::<NotifResp>());
const IOCTL_NOTIF_ID_VALID: u64 = (1 << 30) | (8 << 16) | ((b'!' as u64) << 8) | 2;
const IOCTL_NOTIF_SET_FLAGS: u64 = (1 << 30) | (8 << 16) | ((b'!' as u64) << 8) | 4;
/// Linux 6.6: the kernel wakes the supervisor and switches to it at once,
/// as a synchronous hand-off, instead of queueing the wake-up (what
/// gVisor asked for); a held call's round trip is then two switches.
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// Asks for synchronous wake-ups on `listener`; older kernels refuse,
/// and the hand-off is then only slower.
pub fn prefer_sync_wake_up(listener: BorrowedFd<'_>) {
    // SAFETY: the ioctl takes the flags by value.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            IOCTL_NOTIF_SET_FLAGS as _,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    };
}

const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_uint = 1 << 3;
/// Without it, installing a filter turns on the speculative-store-bypass
/// mitigation for the program, slowing all of it: a sandbox's concern,
/// not a fuzzer's, and a change to the timing being fuzzed.
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_uint = 1 << 2;
/// Linux 5.19: once the supervisor has received a notification, only a
/// fatal signal ends the wait. Without it every signal (Go's preemption
/// signal, many times a second) abandons the held call and restarts it.
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: libc::c_uint = 1 << 5;
const SECCOMP_USER_NOTIF_FLAG_CONTINUE: u32 = 1;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 system calls have this bit set; they pass.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Receives the next notification; `None` when the caller is already
/// gone (ENOENT) or a signal interrupted the wait.
pub fn receive(listener: BorrowedFd<'_>) -> io::Result<Option<Notif>> {
    let mut notif = Notif::default();
    // SAFETY: the ioctl fills a `struct seccomp_notif` we own.
    let r = unsafe { libc::ioctl(listener.as_raw_fd(), IOCTL_NOTIF_RECV as _, &mut notif) };
    if r == 0 {
        return Ok(Some(notif));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EINTR) => Ok(None),
        _ => Err(error),
    }
}

/// Whether notification `id` still waits for an answer: its thread has
/// not been killed or interrupted since. Checked after reading the
/// target's memory or descriptors, before acting on what was read.
pub fn still_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    // SAFETY: the ioctl reads one u64.
    unsafe { libc::ioctl(listener.as_raw_fd(), IOCTL_NOTIF_ID_VALID as _, &id) == 0 }
}

/// Lets the held call go on into the kernel, or fails it with `errno`.
/// A thread that has gone meanwhile (ENOENT) needs no answer.
pub fn answer(listener: BorrowedFd<'_>, id: u64, errno: Option<i32>) {
    let resp = match errno {
        None => NotifResp {
            id,
            flags: SECCOMP_USER_NOTIF_FLAG_CONTINUE,
            ..NotifResp::default()
        },
        Some(errno) => NotifResp {
            id,
            val: -1,
            error: -errno,
            flags: 0,
        },
    };
    // SAFETY: the ioctl reads a `struct seccomp_notif_resp` we own.
    unsafe { libc::ioctl(listener.as_raw_fd(), IOCTL_NOTIF_SEND as _, &resp) };
}

/// Where a filter instruction jumps.
#[derive(Debug, Clone, Copy)]
enum To {
    Next,
    Notify,
    Allow,
    /// Skip this many instructions (a block of argument checks).
    Skip(u8),
}

/// One instruction before the jump targets are resolved.
#[derive(Debug, Clone, Copy)]
enum Insn {
    Load(u32),
    Jeq(u32, To, To),
    Jset(u32, To, To),
    Jge(u32, To, To),
}

const fn offset_of_arg_low(arg: usize) -> u32 {
    // `args` starts at byte 16; the low half of a little-endian u64 first.
    16 + 8 * arg as u32
}

/// The fcntl commands that take or drop a record lock, or ask about one.
const LOCK_COMMANDS: [i32; 6] = [
    libc::F_SETLK,
    libc::F_SETLKW,
    libc::F_GETLK,
    libc::F_OFD_SETLK,
    libc::F_OFD_SETLKW,
    libc::F_OFD_GETLK,
];

/// What the filter sends to the supervisor.
#[derive(Debug, Clone)]
pub struct Watch {
    pub calls: Vec<&'static Syscall>,
    /// Opens without O_CREAT or O_TRUNC pass in the kernel: they create
    /// nothing another process can see.
    pub creating_opens_only: bool,
    /// fcntl commands other than locks pass in the kernel.
    pub lock_fcntl_only: bool,
}

/// The filter program for `watch`.
pub fn program(watch: &Watch) -> Vec<libc::sock_filter> {
    let mut insns = vec![
        Insn::Load(4),
        Insn::Jeq(AUDIT_ARCH_X86_64, To::Next, To::Allow),
        Insn::Load(0),
        Insn::Jge(X32_SYSCALL_BIT, To::Allow, To::Next),
    ];
    for call in &watch.calls {
        let nr = call.nr as u32;
        let flags_arg = call.open_flags.filter(|_| watch.creating_opens_only);
        if let Some(arg) = flags_arg {
            // This call? Test its flags; another? Skip the three-instruction block.
            let creating = (libc::O_CREAT | libc::O_TRUNC) as u32;
            insns.push(Insn::Jeq(nr, To::Next, To::Skip(3)));
            insns.push(Insn::Load(offset_of_arg_low(arg)));
            insns.push(Insn::Jset(creating, To::Notify, To::Allow));
            // The accumulator holds the flags now: reload the number.
            insns.push(Insn::Load(0));
        } else if call.nr == libc::SYS_fcntl && watch.lock_fcntl_only {
            let n = LOCK_COMMANDS.len() as u8;
            insns.push(Insn::Jeq(nr, To::Next, To::Skip(n + 2)));
            insns.push(Insn::Load(offset_of_arg_low(1)));
            for (i, cmd) in LOCK_COMMANDS.iter().enumerate() {
                let last = i + 1 == LOCK_COMMANDS.len();
                insns.push(Insn::Jeq(
                    *cmd as u32,
                    To::Notify,
                    if last { To::Allow } else { To::Next },
                ));
            }
            insns.push(Insn::Load(0));
        } else {
            insns.push(Insn::Jeq(nr, To::Notify, To::Next));
        }
    }
    // Two returns at the end: allow, then notify.
    let allow = insns.len();
    let notify = allow + 1;
    let target = |at: usize, to: To| -> u8 {
        let offset = match to {
            To::Next => 0,
            To::Skip(n) => n as usize,
            To::Allow => allow - at - 1,
            To::Notify => notify - at - 1,
        };
        u8::try_from(offset).expect("the filter is short enough for 8-bit jumps")
    };
    let mut program: Vec<libc::sock_filter> = insns
        .iter()
        .enumerate()
        .map(|(at, insn)| match *insn {
            Insn::Load(offset) => bpf(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, offset),
            Insn::Jeq(k, t, f) => bpf(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                target(at, t),
                target(at, f),
                k,
            ),
            Insn::Jset(k, t, f) => bpf(
                libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
                target(at, t),
                target(at, f),
                k,
            ),
            Insn::Jge(k, t, f) => bpf(
                libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
                target(at, t),
                target(at, f),
                k,
            ),
        })
        .collect();
    program.push(bpf(libc::BPF_RET | libc::BPF_K, 0, 0, SECCOMP_RET_ALLOW));
    program.push(bpf(
        libc::BPF_RET | libc::BPF_K,
        0,
        0,
        SECCOMP_RET_USER_NOTIF,
    ));
    program
}

fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Installs `program` in the calling thread (a freshly forked child,
/// single-threaded) and returns the listener's descriptor, or a negative
/// errno. Only raw system calls: it runs between fork and exec.
pub fn install(program: &[libc::sock_filter]) -> i32 {
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl and seccomp with valid arguments; the program outlives them.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return -*libc::__errno_location();
        }
        let mut flags = SECCOMP_FILTER_FLAG_NEW_LISTENER
            | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            | SECCOMP_FILTER_FLAG_SPEC_ALLOW;
        loop {
            let fd = libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
            if fd >= 0 {
                return fd as i32;
            }
            let errno = *libc::__errno_location();
            if errno == libc::EINVAL && flags & SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0 {
                // Before Linux 5.19.
                flags &= !SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
                continue;
            }
            return -errno;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structures_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<SeccompData>(), 64);
        assert_eq!(std::mem::size_of::<Notif>(), 80);
        assert_eq!(std::mem::size_of::<NotifResp>(), 24);
        assert_eq!(IOCTL_NOTIF_RECV, 0xc050_2100);
        assert_eq!(IOCTL_NOTIF_SEND, 0xc018_2101);
        assert_eq!(IOCTL_NOTIF_ID_VALID, 0x4008_2102);
    }
}
