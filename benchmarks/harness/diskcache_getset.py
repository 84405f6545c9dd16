"""diskcache 5.6.3: a counter kept with get() then set() (instead of the
atomic incr()): each call is its own SQLite transaction, so two processes
can read the same value and one increment is lost."""
import diskcache

from common import main

ROUNDS = 1


def work(directory, worker):
    cache = diskcache.Cache(directory)
    for _ in range(ROUNDS):
        cache.set("n", cache.get("n", 0) + 1)
    cache.close()


def check(directory):
    with diskcache.Cache(directory) as cache:
        value = cache.get("n", 0)
    return value == 2 * ROUNDS, f"n = {value}, expected {2 * ROUNDS}"


if __name__ == "__main__":
    main(work, check, stagger_ms=(5.0, 10.0))
