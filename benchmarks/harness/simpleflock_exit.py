"""simpleflock 0.0.3: SimpleFlock.__exit__ unlocks the lock file and then
unlinks it (derpston/python-simpleflock#2, open): a process that opened
the file before the unlink locks the deleted inode while a third creates
a new one. Three processes increment a counter under the lock.
Needs simpleflock==0.0.3."""
import os

import simpleflock

from common import main, read_int

ROUNDS = 1
PROCESSES = 3


def work(directory, worker):
    path = os.path.join(directory, "counter")
    for _ in range(ROUNDS):
        with simpleflock.SimpleFlock(os.path.join(directory, "counter.lock"), timeout=10):
            value = read_int(path)
            with open(path, "w") as f:
                f.write(str(value + 1))


def check(directory):
    value = read_int(os.path.join(directory, "counter"))
    expected = PROCESSES * ROUNDS
    return value == expected, f"counter {value}, expected {expected}"


if __name__ == "__main__":
    main(work, check, processes=PROCESSES)
