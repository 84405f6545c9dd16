//! The sleeper: answers held calls when their delay is up, earliest
//! first, on a thread of its own, so that the supervisor keeps receiving
//! (and other threads of the program keep running) meanwhile.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::decide::now_nanos;
use super::kernel;

/// (deadline, notification id, errno to fail with).
type Due = Reverse<(u64, u64, Option<i32>)>;

#[derive(Debug, Default)]
struct Queue {
    due: BinaryHeap<Due>,
    stopping: bool,
}

#[derive(Debug)]
pub struct Sleeper {
    shared: Arc<(Mutex<Queue>, Condvar)>,
}

impl Sleeper {
    pub fn start(listener: Arc<OwnedFd>) -> Sleeper {
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let theirs = shared.clone();
        std::thread::spawn(move || {
            let (queue, wake) = &*theirs;
            let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let now = now_nanos();
                while let Some(&Reverse((deadline, id, errno))) = queue.due.peek() {
                    if deadline > now {
                        break;
                    }
                    queue.due.pop();
                    kernel::answer(listener.as_fd(), id, errno);
                }
                if queue.stopping {
                    return;
                }
                let wait = queue
                    .due
                    .peek()
                    .map_or(Duration::from_secs(3600), |Reverse((d, _, _))| {
                        Duration::from_nanos(d.saturating_sub(now))
                    });
                queue = wake
                    .wait_timeout(queue, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        });
        Sleeper { shared }
    }

    /// Answers notification `id` at `deadline` (monotonic nanoseconds).
    pub fn answer_at(&self, deadline: u64, id: u64, errno: Option<i32>) {
        let (queue, wake) = &*self.shared;
        queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .due
            .push(Reverse((deadline, id, errno)));
        wake.notify_one();
    }

    /// Answers whatever is still held (now) and ends the thread.
    pub fn stop(&self) {
        let (queue, wake) = &*self.shared;
        {
            let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.stopping = true;
            let held: Vec<Due> = queue.due.drain().collect();
            queue.due.extend(
                held.into_iter()
                    .map(|Reverse((_, id, errno))| Reverse((0, id, errno))),
            );
        }
        wake.notify_one();
    }
}
