//! Reading what a held call touches, from outside the program: its
//! descriptor through `/proc/PID/fd`, its path arguments and lock
//! structures from its memory (`process_vm_readv`), its working directory.
//! Every read may find the thread gone; the caller then checks the
//! notification is still valid before acting on what it read.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A thread's process and that process's parent, from `/proc/TID/status`.
pub fn process_of(tid: u32) -> Option<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    Some((field("Tgid:")?, field("PPid:")?))
}

fn is_file_mode(mode: u32) -> bool {
    matches!(
        mode & libc::S_IFMT,
        libc::S_IFREG | libc::S_IFDIR | libc::S_IFLNK
    )
}

/// Whether descriptor `fd` of process `pid` is a regular file, directory
/// or link (what `--fds files` admits), as the shim's `fstat` would say.
/// Through `/proc`, not a `pidfd_getfd` copy: a copy, however brief, keeps
/// the open file alive, so a close the program makes meanwhile would not
/// drop its flock or end a pipe when it should.
pub fn fd_is_file(pid: u32, fd: i64) -> bool {
    std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|m| is_file_mode(m.mode()))
}

/// The path descriptor `fd` of process `pid` names.
pub fn fd_path(pid: u32, fd: i64) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

/// Reads `len` bytes at `addr` of process `pid`.
pub fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> Option<usize> {
    if addr == 0 {
        return None;
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: writes at most buf.len() bytes into buf.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    (n > 0).then_some(n as usize)
}

/// A NUL-terminated string at `addr` of process `pid`, up to PATH_MAX.
/// Read page by page: a string near the end of a mapping must not fail
/// because the next page is not there.
pub fn read_string(pid: u32, addr: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < libc::PATH_MAX as usize {
        let room = 4096 - (at % 4096) as usize;
        let mut chunk = vec![0u8; room];
        let n = read_memory(pid, at, &mut chunk)?;
        if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return Some(out);
        }
        out.extend_from_slice(&chunk[..n]);
        at += n as u64;
    }
    None
}

/// `path` (from thread `tid` of process `pid`) made absolute: relative to
/// directory descriptor `dirfd`, or to the thread's working directory.
pub fn absolute(pid: u32, tid: u32, dirfd: Option<i64>, path: &[u8]) -> Option<PathBuf> {
    let path = Path::new(OsStr::from_bytes(path));
    if path.is_absolute() {
        return Some(path.to_owned());
    }
    let base = match dirfd {
        Some(fd) if fd as i32 != libc::AT_FDCWD => fd_path(pid, fd)?,
        _ => std::fs::read_link(format!("/proc/{tid}/cwd")).ok()?,
    };
    Some(base.join(path))
}

/// Whether a path call's path is on a file: it is one, or does not exist
/// yet (the shim's `place_is_file`).
pub fn path_is_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).map_or(true, |m| is_file_mode(m.mode()))
}

/// The program process `pid` runs.
pub fn exe(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default()
}

/// Process `pid`'s command line, arguments separated by NUL.
pub fn cmdline(pid: u32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

pub use delayshim_decide::glob::glob_match;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = std::process::id();
        assert_eq!(process_of(me).map(|(tgid, _)| tgid), Some(me));
        let text = b"hello\0world";
        let got = read_string(me, text.as_ptr() as u64).unwrap();
        assert_eq!(got, b"hello");
        let file = tempfile_in_tmp();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        assert!(fd_is_file(me, fd.into()));
        assert!(!fd_is_file(me, 1_000_000));
        assert!(glob_match(b"*.db", b"/tmp/x.db") && !glob_match(b"/a/[!x]", b"/a/x"));
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let path = std::env::temp_dir().join(format!("delayshim-target-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }
}
