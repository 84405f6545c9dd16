"""sqlitedict 2.1.0 with autocommit: d["n"] = d.get("n", 0) + 1 from two
processes: each statement commits on its own, so increments are lost."""
import os

from sqlitedict import SqliteDict

from common import main

ROUNDS = 1


def work(directory, worker):
    with SqliteDict(os.path.join(directory, "d.sqlite"), autocommit=True, timeout=30) as d:
        for _ in range(ROUNDS):
            d["n"] = d.get("n", 0) + 1


def check(directory):
    with SqliteDict(os.path.join(directory, "d.sqlite")) as d:
        value = d.get("n", 0)
    return value == 2 * ROUNDS, f"n = {value}, expected {2 * ROUNDS}"


if __name__ == "__main__":
    main(work, check)
