//! Increment latency under contention, as python-diskcache's
//! `tests/benchmark_incr.py` measures it: PROCESSES processes each
//! increment one key INCREMENTS times in one `Cache`; every call is timed.
//!
//! `cargo bench -p delayshim-cache --bench incr_latency [-- PROCESSES INCREMENTS]`
//! prints one JSON line: the count, p50/p90/p99/max in microseconds, the
//! final value and the wall time.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::time::Instant;

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    // `cargo bench` passes --bench; numbers are ours.
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let processes = numbers.first().copied().unwrap_or(8);
    let increments = numbers.get(1).copied().unwrap_or(1000);
    let dir = tempfile::tempdir().expect("tempdir");
    cache::Cache::open(dir.path()).expect("creating the cache");

    let start = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..processes {
        let mut fds = [0; 2];
        // SAFETY: pipe fills two descriptors; the child only works and exits.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            match libc::fork() {
                0 => {
                    libc::close(fds[0]);
                    let cache = cache::Cache::open(dir.path()).expect("opening the cache");
                    let mut nanos = Vec::with_capacity(increments * 8);
                    for _ in 0..increments {
                        let call = Instant::now();
                        cache.incr("key", 1, Some(0)).expect("incr");
                        nanos.extend_from_slice(&(call.elapsed().as_nanos() as u64).to_le_bytes());
                    }
                    let mut pipe = std::fs::File::from(std::os::fd::OwnedFd::from_raw_fd(fds[1]));
                    pipe.write_all(&nanos).expect("writing latencies");
                    drop(pipe);
                    libc::_exit(0);
                }
                -1 => panic!("fork failed"),
                _ => {
                    libc::close(fds[1]);
                    readers.push(std::fs::File::from(std::os::fd::OwnedFd::from_raw_fd(
                        fds[0],
                    )));
                }
            }
        }
    }
    let mut latencies = Vec::new();
    for mut reader in readers {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).expect("reading latencies");
        latencies.extend(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
        );
    }
    // SAFETY: reaps the children.
    while unsafe { libc::wait(std::ptr::null_mut()) } > 0 {}
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(
        latencies.len(),
        processes * increments,
        "every child reported"
    );
    latencies.sort_unstable();
    let value = cache::Cache::open(dir.path()).unwrap().get("key").unwrap();
    let us = |p: f64| percentile(&latencies, p) as f64 / 1000.0;
    println!(
        "{{\"processes\":{processes},\"increments\":{increments},\"count\":{},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1},\"final\":{},\"wall_s\":{wall:.3}}}",
        latencies.len(),
        us(50.0),
        us(90.0),
        us(99.0),
        *latencies.last().unwrap() as f64 / 1000.0,
        value.and_then(|v| v.as_int()).unwrap_or(-1),
    );
}
