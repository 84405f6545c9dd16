//! Small programs the integration tests and benchmarks run under the shim.
//! Each subcommand makes the calls it names straight through libc's
//! dynamic symbols, as any C program would.

use std::ffi::{c_int, c_void};
use std::os::fd::AsRawFd;
use std::time::Instant;

use anyhow::{bail, Context, Result};

// Declared here rather than taken from the libc crate, so the probe
// imports exactly these names (some have no libc-crate binding).
extern "C" {
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn fcntl64(fd: c_int, cmd: c_int, ...) -> c_int;
    fn __fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn pwrite(fd: c_int, buf: *const c_void, n: usize, offset: i64) -> isize;
    fn pwrite64(fd: c_int, buf: *const c_void, n: usize, offset: i64) -> isize;
    fn pwritev(fd: c_int, iov: *const libc::iovec, count: c_int, offset: i64) -> isize;
    fn pwritev2(
        fd: c_int,
        iov: *const libc::iovec,
        count: c_int,
        offset: i64,
        flags: c_int,
    ) -> isize;
    fn pread64(fd: c_int, buf: *mut c_void, n: usize, offset: i64) -> isize;
    fn preadv2(
        fd: c_int,
        iov: *const libc::iovec,
        count: c_int,
        offset: i64,
        flags: c_int,
    ) -> isize;
    fn fsync(fd: c_int) -> c_int;
    fn fdatasync(fd: c_int) -> c_int;
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(value: c_int) {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() = value };
}

/// Prints one call's outcome: the return value and, on failure, errno.
fn outcome(case: &str, ret: i64) {
    let errno = if ret < 0 { errno() } else { 0 };
    println!("{case}: ret={ret} errno={errno}");
}

fn flock(lock_type: c_int) -> libc::flock {
    // SAFETY: flock is plain old data.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = lock_type as i16;
    lock.l_whence = libc::SEEK_SET as i16;
    lock
}

/// Every error path of every family, and the success values callers rely on.
fn errno_cases(dir: &str) -> Result<()> {
    let path = format!("{dir}/errno-probe");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let fd = file.as_raw_fd();
    let read_only = std::fs::File::open(&path)?;
    let ro = read_only.as_raw_fd();
    let mut pipe = [0; 2];
    // SAFETY: pipe fills two descriptors.
    unsafe { libc::pipe(pipe.as_mut_ptr()) };
    let byte = b"x";
    let iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut c_void,
        iov_len: 1,
    };
    let mut buf = [0u8; 8];
    let riov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: each call gets valid or deliberately invalid arguments whose
    // failure is the point.
    unsafe {
        outcome(
            "pwrite64 ok",
            pwrite64(fd, byte.as_ptr().cast(), 1, 0) as i64,
        );
        outcome(
            "pwrite ok at 10",
            pwrite(fd, byte.as_ptr().cast(), 1, 10) as i64,
        );
        outcome(
            "pwrite64 EBADF",
            pwrite64(-1, byte.as_ptr().cast(), 1, 0) as i64,
        );
        outcome(
            "pwrite64 read-only EBADF",
            pwrite64(ro, byte.as_ptr().cast(), 1, 0) as i64,
        );
        outcome(
            "pwrite64 pipe ESPIPE",
            pwrite64(pipe[1], byte.as_ptr().cast(), 1, 0) as i64,
        );
        outcome(
            "pwrite64 negative offset EINVAL",
            pwrite64(fd, byte.as_ptr().cast(), 1, -1) as i64,
        );
        outcome("pwritev ok", pwritev(fd, &iov, 1, 2) as i64);
        outcome(
            "pwritev2 bad flags",
            pwritev2(fd, &iov, 1, 0, 0x7fff_0000) as i64,
        );
        outcome(
            "pread64 ok",
            pread64(fd, buf.as_mut_ptr().cast(), 8, 0) as i64,
        );
        outcome(
            "pread64 EBADF",
            pread64(-1, buf.as_mut_ptr().cast(), 8, 0) as i64,
        );
        outcome("preadv2 ok", preadv2(fd, &riov, 1, 0, 0) as i64);
        outcome("fsync ok", i64::from(fsync(fd)));
        outcome("fsync EBADF", i64::from(fsync(-1)));
        outcome("fdatasync pipe EINVAL", i64::from(fdatasync(pipe[0])));
        outcome("fcntl64 F_GETFL", i64::from(fcntl64(fd, libc::F_GETFL)));
        outcome("fcntl F_GETFD", i64::from(fcntl(fd, libc::F_GETFD)));
        outcome("__fcntl EBADF", i64::from(__fcntl(-1, libc::F_GETFL)));
        outcome(
            "fcntl64 bad command EINVAL",
            i64::from(fcntl64(fd, 0x7fff_ffff)),
        );
        let dup = fcntl64(fd, libc::F_DUPFD, 100);
        outcome("fcntl64 F_DUPFD >= 100", i64::from(dup >= 100));
        libc::close(dup);
        outcome(
            "fcntl64 F_SETLK bad pointer EFAULT",
            i64::from(fcntl64(fd, libc::F_SETLK, 8usize)),
        );

        // Open-file-description locks conflict between two opens in one process.
        let other = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        let mut lock = flock(libc::F_WRLCK);
        outcome(
            "fcntl64 F_OFD_SETLK ok",
            i64::from(fcntl64(fd, libc::F_OFD_SETLK, &mut lock)),
        );
        let mut lock = flock(libc::F_WRLCK);
        outcome(
            "fcntl64 F_OFD_SETLK conflict",
            i64::from(fcntl64(other.as_raw_fd(), libc::F_OFD_SETLK, &mut lock)),
        );
        let mut query = flock(libc::F_WRLCK);
        outcome(
            "fcntl64 F_OFD_GETLK",
            i64::from(fcntl64(other.as_raw_fd(), libc::F_OFD_GETLK, &mut query)),
        );
        println!(
            "F_OFD_GETLK fills: l_type={} l_pid={}",
            query.l_type, query.l_pid
        );
        let mut unlock = flock(libc::F_UNLCK);
        outcome(
            "fcntl64 F_OFD_SETLK unlock",
            i64::from(fcntl64(fd, libc::F_OFD_SETLK, &mut unlock)),
        );

        // Classic POSIX locks conflict between processes.
        let mut ready = [0; 2];
        libc::pipe(ready.as_mut_ptr());
        let child = libc::fork();
        if child == 0 {
            let mut lock = flock(libc::F_WRLCK);
            fcntl64(fd, libc::F_SETLKW, &mut lock);
            libc::write(ready[1], byte.as_ptr().cast(), 1);
            // Hold the lock until the parent closes its end of the pipe.
            libc::close(ready[1]);
            libc::close(pipe[1]);
            libc::read(pipe[0], buf.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
        libc::close(ready[1]);
        libc::read(ready[0], buf.as_mut_ptr().cast(), 1);
        let mut lock = flock(libc::F_WRLCK);
        outcome(
            "fcntl64 F_SETLK conflict",
            i64::from(fcntl64(fd, libc::F_SETLK, &mut lock)),
        );
        let mut query = flock(libc::F_RDLCK);
        outcome(
            "fcntl64 F_GETLK",
            i64::from(fcntl64(fd, libc::F_GETLK, &mut query)),
        );
        println!(
            "F_GETLK fills: l_type={} l_pid is the child: {}",
            query.l_type,
            query.l_pid == child
        );
        libc::close(pipe[1]);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);

        // A successful call leaves errno alone.
        set_errno(12345);
        fsync(fd);
        fcntl64(fd, libc::F_GETFL);
        pwrite64(fd, byte.as_ptr().cast(), 1, 0);
        println!("errno after successful calls: {}", errno());
    }
    Ok(())
}

/// `n` calls of fcntl64(F_GETFL): a single-threaded program whose delays
/// depend only on the seed.
fn calls(n: u64) -> Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    for _ in 0..n {
        // SAFETY: a valid descriptor.
        unsafe { fcntl64(null.as_raw_fd(), libc::F_GETFL) };
    }
    Ok(())
}

/// `n` one-byte pwrite64 calls on a regular file in `dir`, from `threads`
/// threads (each its own `n`): calls whose effect other processes see, for
/// the strategy, replay and budget tests.
fn writes(dir: &str, n: u64, threads: u64) -> Result<()> {
    let file = std::fs::File::create(format!("{dir}/writes"))?;
    let fd = file.as_raw_fd();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for i in 0..n {
                    // SAFETY: a valid descriptor and buffer.
                    unsafe { pwrite64(fd, b"x".as_ptr().cast(), 1, i as i64) };
                }
            });
        }
    });
    Ok(())
}

/// Forks `n` children that each make five fcntl64 calls.
fn fork_children(n: u64) -> Result<()> {
    calls(1)?;
    let mut children = Vec::new();
    for _ in 0..n {
        // SAFETY: single-threaded; the child only calls and exits.
        match unsafe { libc::fork() } {
            0 => {
                let _ = calls(5);
                std::process::exit(0);
            }
            -1 => bail!("fork: {}", std::io::Error::last_os_error()),
            child => children.push(child),
        }
    }
    wait_all(&children)
}

fn wait_all(children: &[libc::pid_t]) -> Result<()> {
    for &child in children {
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            bail!("child {child} ended with wait status {status}");
        }
    }
    Ok(())
}

/// Forks `n` children while four threads keep calling into the shim (and
/// sleep inside it): a shim lock held at fork would hang a child.
fn fork_under_load(dir: &str, n: u64) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let file = std::fs::File::create(format!("{dir}/fork-under-load"))?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: a valid descriptor.
                    unsafe {
                        fcntl64(file.as_raw_fd(), libc::F_GETFL);
                        pwrite64(file.as_raw_fd(), b"x".as_ptr().cast(), 1, 0);
                        fsync(file.as_raw_fd());
                    }
                }
            });
        }
        let result = (|| {
            let mut children = Vec::new();
            for _ in 0..n {
                // SAFETY: the child makes async-signal-safe calls and exits.
                match unsafe { libc::fork() } {
                    0 => unsafe {
                        fcntl64(file.as_raw_fd(), libc::F_GETFL);
                        pwrite64(file.as_raw_fd(), b"y".as_ptr().cast(), 1, 1);
                        fsync(file.as_raw_fd());
                        libc::_exit(0);
                    },
                    -1 => bail!("fork: {}", std::io::Error::last_os_error()),
                    child => children.push(child),
                }
            }
            wait_all(&children)
        })();
        stop.store(true, Ordering::Relaxed);
        result
    })?;
    println!("forked {n} children under load");
    Ok(())
}

/// Nanoseconds per call of fcntl64(F_GETFL) and of a 1-byte pwrite64 to a
/// file in `dir` (a tmpfs for the benchmark), best of five rounds.
/// libc's own definition of `name`, bypassing any preloaded library.
fn libc_function(name: &std::ffi::CStr) -> Result<*mut c_void> {
    // SAFETY: valid NUL-terminated names; RTLD_NOLOAD only finds the libc
    // already loaded.
    let address = unsafe {
        let libc_handle = libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if libc_handle.is_null() {
            bail!("libc.so.6 is not loaded");
        }
        libc::dlsym(libc_handle, name.as_ptr())
    };
    if address.is_null() {
        bail!("libc has no {name:?}");
    }
    Ok(address)
}

/// What a preloaded shim adds to a call, measured in one process: batches
/// of `per_batch` calls through the interposed symbol (the shim's, when it
/// is preloaded) alternate with batches straight to libc's definition, and
/// the median of the per-batch differences is the shim's cost. Pairing the
/// batches cancels the slow drifts of a shared machine, which separate
/// processes do not see alike. Without a shim both sides are libc's, and
/// the difference shows the method's own error.
fn paired(dir: &str, batches: u64, per_batch: u64) -> Result<()> {
    type Fcntl = unsafe extern "C" fn(c_int, c_int, ...) -> c_int;
    type Pwrite = unsafe extern "C" fn(c_int, *const c_void, usize, i64) -> isize;
    type Write = unsafe extern "C" fn(c_int, *const c_void, usize) -> isize;
    type Flock = unsafe extern "C" fn(c_int, c_int) -> c_int;
    let file = std::fs::File::create(format!("{dir}/paired"))?;
    let fd = file.as_raw_fd();
    // SAFETY: libc's definitions of these names, with their C prototypes.
    let (direct_fcntl64, direct_pwrite64, direct_write, direct_flock) = unsafe {
        (
            std::mem::transmute::<*mut c_void, Fcntl>(libc_function(c"fcntl64")?),
            std::mem::transmute::<*mut c_void, Pwrite>(libc_function(c"pwrite64")?),
            std::mem::transmute::<*mut c_void, Write>(libc_function(c"write")?),
            std::mem::transmute::<*mut c_void, Flock>(libc_function(c"flock")?),
        )
    };
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        start.elapsed().as_nanos() as f64 / per_batch as f64
    };
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let mut fields = Vec::new();
    let mut pair = |name: &str, interposed: &dyn Fn(), direct: &dyn Fn()| {
        let (mut through, mut straight, mut extra) = (Vec::new(), Vec::new(), Vec::new());
        for batch in 0..batches {
            // Alternate which goes first, so neither always follows the other.
            let (a, b) = if batch % 2 == 0 {
                let a = time(interposed);
                (a, time(direct))
            } else {
                let b = time(direct);
                (time(interposed), b)
            };
            through.push(a);
            straight.push(b);
            extra.push(a - b);
        }
        fields.push(format!(
            "{name}_ns={:.2} {name}_direct_ns={:.2} {name}_extra_ns={:.2}",
            median(through),
            median(straight),
            median(extra)
        ));
    };
    // SAFETY (each closure): a valid descriptor and buffer.
    pair(
        "fcntl64_getfl",
        &|| unsafe {
            std::hint::black_box(fcntl64(fd, libc::F_GETFL));
        },
        &|| unsafe {
            std::hint::black_box(direct_fcntl64(fd, libc::F_GETFL));
        },
    );
    pair(
        "pwrite64",
        &|| unsafe {
            std::hint::black_box(pwrite64(fd, b"x".as_ptr().cast(), 1, 0));
        },
        &|| unsafe {
            std::hint::black_box(direct_pwrite64(fd, b"x".as_ptr().cast(), 1, 0));
        },
    );
    pair(
        "write",
        &|| unsafe {
            std::hint::black_box(libc::write(fd, b"x".as_ptr().cast(), 1));
        },
        &|| unsafe {
            std::hint::black_box(direct_write(fd, b"x".as_ptr().cast(), 1));
        },
    );
    pair(
        "flock_un",
        &|| unsafe {
            std::hint::black_box(libc::flock(fd, libc::LOCK_UN));
        },
        &|| unsafe {
            std::hint::black_box(direct_flock(fd, libc::LOCK_UN));
        },
    );
    println!("{}", fields.join(" "));
    Ok(())
}

static SIGNALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn count_signal(_: c_int) {
    SIGNALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// One fsync while a 1 ms interval timer keeps interrupting the process:
/// prints how often the handler ran, how long the call took and its result.
fn signals(dir: &str) -> Result<()> {
    let file = std::fs::File::create(format!("{dir}/signals"))?;
    // SAFETY: a handler that only touches an atomic; a valid itimerval.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_signal as extern "C" fn(c_int) as usize;
        libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut());
        let tick = libc::timeval {
            tv_sec: 0,
            tv_usec: 1000,
        };
        let timer = libc::itimerval {
            it_interval: tick,
            it_value: tick,
        };
        libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut());
    }
    let start = Instant::now();
    // SAFETY: a valid descriptor.
    let ret = unsafe { fsync(file.as_raw_fd()) };
    let elapsed = start.elapsed();
    let off = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    // SAFETY: a valid itimerval.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &off, std::ptr::null_mut()) };
    println!(
        "ret={ret} handler_runs={} elapsed_us={}",
        SIGNALS.load(std::sync::atomic::Ordering::Relaxed),
        elapsed.as_micros()
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).context("missing argument");
    let number = |i: usize| -> Result<u64> { Ok(arg(i)?.parse()?) };
    match arg(1)? {
        "errno" => errno_cases(arg(2)?),
        "calls" => calls(number(2)?),
        "writes" => writes(arg(2)?, number(3)?, number(4).unwrap_or(1)),
        "fork-children" => fork_children(number(2)?),
        "fork-under-load" => fork_under_load(arg(2)?, number(3)?),
        "paired" => paired(arg(2)?, number(3)?, number(4)?),
        "signals" => signals(arg(2)?),
        other => bail!(
            "unknown subcommand {other}; use errno DIR | calls N | writes DIR N [THREADS] | fork-children N | \
             fork-under-load DIR N | paired DIR BATCHES PER_BATCH | signals DIR"
        ),
    }
}
