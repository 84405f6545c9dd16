"""filelock 3.20.4: UnixFileLock._release() unlinks the lock file and then
unlocks it (tox-dev/filelock#574, since 3.20.4). A process blocked in
flock() on the old file gets the lock on a deleted inode while the next
one creates and locks a new file under the same name: two holders, and
the counter they increment under the lock loses an update. The race
needs a holder to come back for the lock while the other holds the
deleted inode: three rounds each (the suite's first measurement, with
one round, could not show it).
Needs filelock==3.20.4."""
import os

import filelock

from common import main, read_int

ROUNDS = 3


def work(directory, worker):
    lock = filelock.FileLock(os.path.join(directory, "counter.lock"))
    path = os.path.join(directory, "counter")
    for _ in range(ROUNDS):
        with lock:
            value = read_int(path)
            with open(path, "w") as f:
                f.write(str(value + 1))


def check(directory):
    value = read_int(os.path.join(directory, "counter"))
    return value == 2 * ROUNDS, f"counter {value}, expected {2 * ROUNDS}"


if __name__ == "__main__":
    main(work, check)
