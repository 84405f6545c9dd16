"""The python-diskcache delay-fuzzer experiment in its original form, for
comparison with `driver`: 8 processes x 8 threads each increment keys
0..99 of a FanoutCache, then every counter must be 64.

usage: diskcache_experiment.py DIR [--fuzz]
--fuzz wraps Cache.incr in the case study's sys.settrace delay fuzzer:
a sleep of expovariate(100) seconds (mean 10 ms) on every traced line.
Prints one line: PASS or FAIL and the wall time; exits 0 or 1.
"""
import multiprocessing
import random
import sys
import threading
import time

import diskcache

PROCESSES, THREADS, KEYS = 8, 8, 100


def delay_fuzzer(function):
    code = function.__code__

    def sleeper(frame, event, arg):
        time.sleep(random.expovariate(100))
        return sleeper

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code is code:
            return sleeper
        return None

    def wrapper(*args, **kwargs):
        sys.settrace(tracer)
        return function(*args, **kwargs)

    return wrapper


def task(cache):
    for key in range(KEYS):
        cache.incr(key, retry=True)


def worker(directory, fuzz):
    if fuzz:
        diskcache.Cache.incr = delay_fuzzer(diskcache.Cache.incr)
    cache = diskcache.FanoutCache(directory)
    threads = [threading.Thread(target=task, args=(cache,)) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main():
    directory = sys.argv[1]
    fuzz = "--fuzz" in sys.argv[2:]
    start = time.perf_counter()
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=worker, args=(directory, fuzz)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    cache = diskcache.FanoutCache(directory)
    ok = sorted(cache) == list(range(KEYS)) and all(cache[key] == PROCESSES * THREADS for key in cache)
    elapsed = time.perf_counter() - start
    print(f"{'PASS' if ok else 'FAIL'} {elapsed:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
