"""Increment latency in python-diskcache, the workload of its
tests/benchmark_incr.py: PROCESSES processes each call Cache.incr on one
key INCREMENTS times; every call is timed.

usage: diskcache_incr_latency.py DIR [PROCESSES] [INCREMENTS]
Prints one JSON line with p50/p90/p99/max in microseconds.
"""
import json
import math
import multiprocessing
import sys
import time

import diskcache


def work(directory, increments, queue):
    cache = diskcache.Cache(directory)
    timings = []
    for _ in range(increments):
        start = time.perf_counter_ns()
        cache.incr(b"key")
        timings.append(time.perf_counter_ns() - start)
    queue.put(timings)


def percentile(ordered, p):
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def main():
    directory = sys.argv[1]
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    increments = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    diskcache.Cache(directory).clear()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    start = time.perf_counter()
    workers = [context.Process(target=work, args=(directory, increments, queue)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    timings = sorted(t for _ in workers for t in queue.get())
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    us = lambda p: round(percentile(timings, p) / 1000, 1)
    print(json.dumps({
        "processes": processes, "increments": increments, "count": len(timings),
        "p50_us": us(50), "p90_us": us(90), "p99_us": us(99), "max_us": round(timings[-1] / 1000, 1),
        "final": diskcache.Cache(directory)[b"key"], "wall_s": round(wall, 3),
    }))


if __name__ == "__main__":
    main()
