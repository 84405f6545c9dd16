//! What every interposed function does around its real call.

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use rand::Rng;

use crate::config::Config;
use crate::delay::{sleep_nanos, Sampler};
use crate::families::{Family, Func, FuncSet, FUNCS};
use crate::fcntl::FcntlCall;
use crate::guard::Guard;
use crate::log::{log_delay, log_enabled, DelayRecord};

/// Bit of [`ACTIVE`] that asks for calls to be counted.
const COUNT_CALLS: u64 = 1 << 63;

/// The functions that get delays, plus [`COUNT_CALLS`]. Zero until the
/// shim is configured: every call before that is a pass-through.
static ACTIVE: AtomicU64 = AtomicU64::new(0);

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Installs the configuration and turns interception on.
pub(crate) fn activate(config: Config) {
    let delayed: FuncSet = config.delayed_funcs();
    let count = if config.stats.is_some() {
        COUNT_CALLS
    } else {
        0
    };
    if CONFIG.set(config).is_ok() {
        ACTIVE.store(delayed | count, Relaxed);
    }
}

pub(crate) fn config() -> Option<&'static Config> {
    CONFIG.get()
}

/// Whether a call to `func` goes straight to the real function: neither
/// delayed nor counted. One load and one test.
#[inline(always)]
pub fn passes_through(func: Func) -> bool {
    ACTIVE.load(Relaxed) & (1 << func as usize | COUNT_CALLS) == 0
}

/// Calls `call` (the real function), counting it and sleeping around it
/// when `func` is selected. The real call's result and errno reach the
/// caller untouched.
#[inline(never)]
pub fn intercept_slow<R>(
    func: Func,
    fd: c_int,
    describe: impl FnOnce() -> Option<FcntlCall>,
    call: impl FnOnce() -> R,
) -> R {
    let active = ACTIVE.load(Relaxed);
    if active & COUNT_CALLS != 0 {
        crate::stats::count_call(func);
    }
    if active & (1 << func as usize) == 0 {
        return call();
    }
    let Some(_guard) = Guard::enter() else {
        return call();
    };
    // A panic in the shim's own code must not unwind into C: the call then
    // goes through undelayed. Planning reads /proc, which may set errno.
    let plan = {
        let _errno = crate::errno::SavedErrno::save();
        catch_unwind(AssertUnwindSafe(|| plan(func, fd, describe))).unwrap_or(None)
    };
    let Some(plan) = plan else {
        return call();
    };
    plan.sleep(false);
    let result = call();
    plan.sleep(true);
    result
}

/// The delays decided for one call, and what the log says about it.
struct Plan {
    func: Func,
    fd: c_int,
    fcntl: Option<FcntlCall>,
    path: Option<Vec<u8>>,
    before_nanos: u64,
    after_nanos: u64,
}

impl Plan {
    fn sleep(&self, after: bool) {
        let nanos = if after {
            self.after_nanos
        } else {
            self.before_nanos
        };
        if nanos == 0 {
            return;
        }
        log_delay(&DelayRecord {
            func: self.func,
            fd: self.fd,
            path: self.path.as_deref(),
            fcntl: self.fcntl,
            after,
            nanos,
        });
        crate::stats::count_delay(self.func, nanos);
        sleep_nanos(nanos);
    }
}

/// Decides whether and how long to delay this call, drawing from the
/// thread's stream in a fixed order: the probability, then each delay.
fn plan(func: Func, fd: c_int, describe: impl FnOnce() -> Option<FcntlCall>) -> Option<Plan> {
    let config = config()?;
    let is_fcntl = FUNCS[func as usize].family == Family::Fcntl;
    let fcntl = if is_fcntl && (config.fcntl != crate::config::FcntlFilter::All || log_enabled()) {
        describe()
    } else {
        None
    };
    if is_fcntl
        && !config
            .fcntl
            .admits(fcntl.map_or(crate::fcntl::FcntlKind::Other, |c| c.kind()))
    {
        return None;
    }
    let path = if !config.paths.is_empty() || log_enabled() {
        fd_path(fd)
    } else {
        None
    };
    if !config.paths.is_empty()
        && !path
            .as_deref()
            .is_some_and(|p| matches_any(&config.paths, p))
    {
        return None;
    }
    let sampler = Sampler {
        dist: config.dist,
        mean_us: config.mean_us,
        max_us: config.max_us,
    };
    let (before_nanos, after_nanos) = crate::process::with_rng(|rng| {
        if config.prob < 1.0 && rng.random::<f64>() >= config.prob {
            return (0, 0);
        }
        let before = if config.when.before() {
            sampler.draw(rng)
        } else {
            0
        };
        let after = if config.when.after() {
            sampler.draw(rng)
        } else {
            0
        };
        (before, after)
    })?;
    if before_nanos == 0 && after_nanos == 0 {
        return None;
    }
    Some(Plan {
        func,
        fd,
        fcntl,
        path,
        before_nanos,
        after_nanos,
    })
}

/// The path `fd` refers to now (looked up on every call, so a closed and
/// reused descriptor number is never mistaken for its old file).
fn fd_path(fd: c_int) -> Option<Vec<u8>> {
    let link = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    let mut target = [0u8; libc::PATH_MAX as usize];
    // SAFETY: NUL-terminated link name; target is writable for its length.
    let n = unsafe { libc::readlink(link.as_ptr(), target.as_mut_ptr().cast(), target.len()) };
    (n >= 0).then(|| target[..n as usize].to_vec())
}

fn matches_any(globs: &[std::ffi::CString], path: &[u8]) -> bool {
    let Ok(path) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: both are NUL-terminated strings.
    globs
        .iter()
        .any(|glob| unsafe { libc::fnmatch(glob.as_ptr(), path.as_ptr(), 0) } == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_paths() {
        let globs = vec![
            std::ffi::CString::new("*/cache.db").unwrap(),
            std::ffi::CString::new("/tmp/x?").unwrap(),
        ];
        assert!(matches_any(&globs, b"/a/b/cache.db"));
        assert!(matches_any(&globs, b"/tmp/x1"));
        assert!(!matches_any(&globs, b"/a/b/cache.db-wal"));
        assert!(!matches_any(&globs, b"/tmp/x12"));
    }

    #[test]
    fn fd_path_follows_the_descriptor() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsRawFd;
        let path = fd_path(file.as_raw_fd()).unwrap();
        assert!(
            path.starts_with(b"/proc/") && path.ends_with(b"/status"),
            "{path:?}"
        );
        assert_eq!(fd_path(-1), None);
    }
}
