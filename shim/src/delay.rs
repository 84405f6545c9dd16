//! Drawing a delay and sleeping it.

pub use delayshim_decide::sampler::{Dist, Sampler};

/// The monotonic clock, in nanoseconds.
pub fn now_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn timespec(nanos: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

/// Sleeps `nanos` on the monotonic clock, to the end even when signals
/// interrupt it (their handlers run in between), as a write to a regular
/// file would not be interrupted either. Leaves errno as it was.
pub fn sleep_nanos(nanos: u64) {
    let _errno = crate::errno::SavedErrno::save();
    let deadline = timespec(now_nanos() + nanos);
    // SAFETY: a valid timespec.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &deadline,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}

thread_local! {
    // Const-initialised, without a destructor: safe in signal handlers.
    /// The timerfd of this thread's sleep in progress, and where on the
    /// stack that sleep began; `(-1, 0)` when none.
    static SLEEPING: std::cell::Cell<(libc::c_int, usize)> =
        const { std::cell::Cell::new((-1, 0)) };
}

/// Sleeps `nanos` the way a blocking lock call waits: a signal whose
/// handler was installed with `SA_RESTART` runs and the sleep goes on; one
/// without it ends the sleep. Returns false when a signal ended it.
///
/// A read from a timerfd is restarted by the kernel exactly when a blocked
/// `fcntl(F_SETLKW)` or `flock` would be, which no sleep call is (they
/// never restart). Without a descriptor to spare, it sleeps to the end.
///
/// A handler may `siglongjmp` out of the read (the lock-with-timeout
/// idiom), leaving the timerfd open. The next sleep of the thread closes
/// it, unless that sleep is itself inside a handler that interrupted the
/// first (deeper on the same stack, or on the alternate signal stack).
/// When a later sleep only looks nested, the one descriptor stays until a
/// sleep from a shallower place: at most one per thread, never a growing
/// number.
pub fn sleep_interruptible(nanos: u64) -> bool {
    let _errno = crate::errno::SavedErrno::save();
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    let outer = SLEEPING.try_with(std::cell::Cell::get).unwrap_or((-1, 0));
    let outer = if outer.0 >= 0 && abandoned(outer.1, here) {
        close_if_timerfd(outer.0);
        (-1, 0)
    } else {
        outer
    };
    // SAFETY: timerfd_create is not interposed; its descriptor is ours.
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
    if fd < 0 {
        let _ = SLEEPING.try_with(|s| s.set(outer));
        sleep_nanos(nanos);
        return true;
    }
    let _ = SLEEPING.try_with(|s| s.set((fd, here)));
    let spec = libc::itimerspec {
        it_interval: timespec(0),
        it_value: timespec(now_nanos() + nanos.max(1)),
    };
    let mut expirations = [0u8; 8];
    // SAFETY: a valid itimerspec; the raw read bypasses the shim's own read.
    let completed = unsafe {
        libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) != 0
            || libc::syscall(libc::SYS_read, fd, expirations.as_mut_ptr(), 8) == 8
            || crate::errno::get() != libc::EINTR
    };
    crate::output::raw_close(fd);
    let _ = SLEEPING.try_with(|s| s.set(outer));
    completed
}

/// Whether the sleep that began at stack address `began` was jumped out
/// of, seen from a sleep beginning at `here` on the same thread.
fn abandoned(began: usize, here: usize) -> bool {
    let alternate = alternate_stack();
    let on_alternate = |address: usize| {
        alternate.is_some_and(|(base, size)| address >= base && address - base < size)
    };
    match (on_alternate(began), on_alternate(here)) {
        // It began in a handler on the alternate stack, which was left.
        (true, false) => true,
        // A handler on the alternate stack interrupted it.
        (false, true) => false,
        // One stack: a handler that interrupted it runs deeper (lower).
        _ => here >= began,
    }
}

/// The thread's alternate signal stack, if it has one.
fn alternate_stack() -> Option<(usize, usize)> {
    // SAFETY: stack_t is plain old data; the kernel only writes it.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel only writes the stack_t.
    let ok = unsafe {
        libc::syscall(
            libc::SYS_sigaltstack,
            std::ptr::null::<libc::stack_t>(),
            &mut current as *mut libc::stack_t,
        )
    } == 0;
    (ok && current.ss_flags & libc::SS_DISABLE == 0)
        .then_some((current.ss_sp as usize, current.ss_size))
}

/// Closes an abandoned sleep's descriptor if the number still holds a
/// timerfd (the host may have closed it and reused the number).
fn close_if_timerfd(fd: libc::c_int) {
    // SAFETY: itimerspec is plain old data; gettime only reads the timer.
    let mut current: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel only writes the itimerspec.
    if unsafe { libc::timerfd_gettime(fd, &mut current) } == 0 {
        crate::output::raw_close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_last_and_keep_errno() {
        crate::errno::set(libc::EAGAIN);
        let start = std::time::Instant::now();
        sleep_nanos(2_000_000);
        assert!(start.elapsed() >= std::time::Duration::from_millis(2));
        assert!(sleep_interruptible(2_000_000));
        assert!(start.elapsed() >= std::time::Duration::from_millis(4));
        assert_eq!(crate::errno::get(), libc::EAGAIN);
    }
}
