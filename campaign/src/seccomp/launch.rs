//! Starting the program beneath the filter: fork; in the child ask to be
//! killed with the supervisor, set no_new_privs, install the filter, pass
//! the listener to the parent over a socket pair (SCM_RIGHTS), and exec,
//! which closes the child's copy (close-on-exec): the program never holds
//! its own listener, so the supervisor's death fails the held calls
//! instead of leaving them hung.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// The started program: its pid and the listener of its filter.
#[derive(Debug)]
pub struct Started {
    pub pid: libc::pid_t,
    pub listener: OwnedFd,
}

/// Exit status of a child that could not install the filter or exec.
pub const EXIT_CANNOT_START: i32 = 126;

fn cstring(s: &std::ffi::OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument"))
}

/// Forks and execs `program` (a path) with `args` and `env` beneath
/// `filter`. Call while the process has one thread.
pub fn start(
    program: &std::path::Path,
    args: &[OsString],
    env: &[(OsString, OsString)],
    filter: &[libc::sock_filter],
) -> io::Result<Started> {
    // Everything the child needs, allocated before fork.
    let path = cstring(program.as_os_str())?;
    let argv: Vec<CString> = args.iter().map(|a| cstring(a)).collect::<io::Result<_>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut pair = k.clone();
            pair.push("=");
            pair.push(v);
            cstring(&pair)
        })
        .collect::<io::Result<_>>()?;
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let mut pair = [0 as RawFd; 2];
    // SAFETY: socketpair fills two descriptors.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are ours.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the child runs only async-signal-safe raw calls until exec.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        use std::os::fd::AsRawFd;
        // SAFETY: in the child, raw calls on memory prepared above.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(EXIT_CANNOT_START);
            }
            let listener = super::kernel::install(filter);
            let sent = listener >= 0 && send_fd(theirs.as_raw_fd(), listener);
            if !sent {
                let errno = if listener < 0 {
                    -listener
                } else {
                    *libc::__errno_location()
                };
                let mut message = *b"delayshim: cannot install the seccomp filter (errno    )\n";
                let digits = errno.to_string();
                let at = message.len() - 6;
                message[at..at + digits.len().min(4)]
                    .copy_from_slice(&digits.as_bytes()[..digits.len().min(4)]);
                libc::write(2, message.as_ptr().cast(), message.len());
                libc::_exit(EXIT_CANNOT_START);
            }
            // The listener is close-on-exec (as the kernel makes it): exec
            // drops it without a close the filter would hold.
            libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            let message = b"delayshim: cannot execute the program\n";
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(EXIT_CANNOT_START);
        }
    }
    drop(theirs);
    let listener = receive_fd(&ours).inspect_err(|_| {
        // The child failed before passing its listener; it said why.
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    })?;
    super::kernel::prefer_sync_wake_up(std::os::fd::AsFd::as_fd(&listener));
    Ok(Started { pid, listener })
}

/// Room for one descriptor's control message.
#[repr(C)]
union ControlBuffer {
    bytes: [u8; 64],
    _align: libc::cmsghdr,
}

fn send_fd(socket: RawFd, fd: RawFd) -> bool {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = ControlBuffer { bytes: [0; 64] };
    // SAFETY: a message with one SCM_RIGHTS control message in our buffer.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.bytes.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        libc::sendmsg(socket, &msg, 0) == 1
    }
}

fn receive_fd(socket: &OwnedFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = ControlBuffer { bytes: [0; 64] };
    // SAFETY: receives into our buffers; the descriptor found is new and ours.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.bytes.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of::<ControlBuffer>();
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n == 0 || cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other(
                "the program's side ended before passing the filter's listener",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
