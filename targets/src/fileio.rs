//! File I/O through libc's own symbols (open, read, write, flock, rename,
//! unlink, close), so that a preloaded library interposes every call the
//! targets make, and a small fixed-seed random source.

use std::ffi::CString;
use std::io::{Error, ErrorKind, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `path` as a C string.
pub fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// Retries `call` while it fails with EINTR; `Err` holds errno otherwise.
pub fn retry(mut call: impl FnMut() -> libc::c_long) -> Result<libc::c_long> {
    loop {
        let value = call();
        if value != -1 {
            return Ok(value);
        }
        let error = Error::last_os_error();
        if error.kind() != ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// An open descriptor, closed (with libc's `close`) when dropped.
#[derive(Debug)]
pub struct Fd(pub libc::c_int);

impl Fd {
    /// `open(path, flags, mode)`.
    pub fn open(path: &Path, flags: libc::c_int, mode: libc::mode_t) -> Result<Fd> {
        let name = c_path(path)?;
        // SAFETY: a NUL-terminated path.
        let fd =
            retry(|| unsafe { libc::open(name.as_ptr(), flags | libc::O_CLOEXEC, mode) }.into())?;
        Ok(Fd(fd as libc::c_int))
    }

    /// Reads from the current offset to the end of the file.
    pub fn read_to_end(&self) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            // SAFETY: `buffer` is writable for its length.
            let n = retry(
                || unsafe { libc::read(self.0, buffer.as_mut_ptr().cast(), buffer.len()) } as _,
            )?;
            if n == 0 {
                return Ok(data);
            }
            data.extend_from_slice(&buffer[..n as usize]);
        }
    }

    /// Writes all of `bytes` at the current offset.
    pub fn write_all(&self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            // SAFETY: `bytes` is readable for its length.
            let n =
                retry(|| unsafe { libc::write(self.0, bytes.as_ptr().cast(), bytes.len()) } as _)?;
            if n == 0 {
                return Err(Error::new(ErrorKind::WriteZero, "write returned 0"));
            }
            bytes = &bytes[n as usize..];
        }
        Ok(())
    }

    /// Reads 8 bytes at `offset` as a little-endian counter.
    pub fn pread_u64(&self, offset: u64) -> Result<u64> {
        let mut bytes = [0u8; 8];
        // SAFETY: `bytes` is writable for its length.
        let n =
            retry(
                || unsafe { libc::pread64(self.0, bytes.as_mut_ptr().cast(), 8, offset as i64) }
                    as _,
            )?;
        if n != 8 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                format!("pread returned {n}"),
            ));
        }
        Ok(u64::from_le_bytes(bytes))
    }

    /// Writes `value` at `offset` as 8 little-endian bytes.
    pub fn pwrite_u64(&self, offset: u64, value: u64) -> Result<()> {
        let bytes = value.to_le_bytes();
        // SAFETY: `bytes` is readable for its length.
        let n = retry(
            || unsafe { libc::pwrite64(self.0, bytes.as_ptr().cast(), 8, offset as i64) } as _,
        )?;
        if n != 8 {
            return Err(Error::new(
                ErrorKind::WriteZero,
                format!("pwrite returned {n}"),
            ));
        }
        Ok(())
    }

    /// `flock(fd, operation)`.
    pub fn flock(&self, operation: libc::c_int) -> Result<()> {
        // SAFETY: plain integers.
        retry(|| unsafe { libc::flock(self.0, operation) }.into()).map(drop)
    }

    pub fn fsync(&self) -> Result<()> {
        // SAFETY: plain integer.
        retry(|| unsafe { libc::fsync(self.0) }.into()).map(drop)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: this descriptor is ours, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// The whole file at `path`.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    Fd::open(path, libc::O_RDONLY, 0)?.read_to_end()
}

/// `rename(from, to)`.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: NUL-terminated paths.
    retry(|| unsafe { libc::rename(from.as_ptr(), to.as_ptr()) }.into()).map(drop)
}

/// `unlink(path)`.
pub fn unlink(path: &Path) -> Result<()> {
    let name = c_path(path)?;
    // SAFETY: a NUL-terminated path.
    retry(|| unsafe { libc::unlink(name.as_ptr()) }.into()).map(drop)
}

/// Appends one line with a single `write` to a file opened with O_APPEND,
/// so lines from several processes never interleave.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let fd = Fd::open(path, libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT, 0o644)?;
    fd.write_all(format!("{line}\n").as_bytes())
}

/// SplitMix64: the targets' choices (which slot, which queue) come from a
/// fixed seed per process, so a run's work does not depend on the clock.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (> 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Sleeps `micros` (nanosleep, which no shim delays): the `--window-us`
/// option of the targets, holding a race window open by hand.
pub fn pause_us(micros: u64) {
    if micros > 0 {
        std::thread::sleep(std::time::Duration::from_micros(micros));
    }
}
