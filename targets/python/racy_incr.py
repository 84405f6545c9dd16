"""Race target: a read-then-write increment through Python's sqlite3 module
(Debian's libsqlite3), from several processes.

Each process reads the counter in one statement and writes value+1 in
another, each its own transaction: two processes that read the same value
lose an update. Process i starts i x STAGGER_MS after process 0, like
requests that arrive a little apart, so without help the first has long
finished when the next reads. Exits 1 when an update was lost, 0 when
none was, 3 on any other failure.

usage: racy_incr.py DB [--processes 2] [--increments 3] [--stagger-ms 1]
"""
import argparse
import multiprocessing
import sqlite3
import sys
import time


def connect(path):
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    # No fsync per commit: the window is SQLite's, not the disk's.
    con.execute("PRAGMA synchronous = NORMAL")
    return con


def work(path, index, increments, stagger_ms):
    con = connect(path)
    con.execute("SELECT n FROM counter").fetchone()
    time.sleep(index * stagger_ms / 1000)
    for _ in range(increments):
        (value,) = con.execute("SELECT n FROM counter").fetchone()
        con.execute("UPDATE counter SET n = ?", (value + 1,))
    con.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--increments", type=int, default=3)
    parser.add_argument("--stagger-ms", type=float, default=1.0)
    args = parser.parse_args()
    con = connect(args.db)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("DROP TABLE IF EXISTS counter")
    con.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
    con.execute("INSERT INTO counter VALUES (0)")
    con.close()
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=work, args=(args.db, i, args.increments, args.stagger_ms))
        for i in range(args.processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if any(worker.exitcode != 0 for worker in workers):
        print("FAIL: a worker failed")
        return 3
    (value,) = connect(args.db).execute("SELECT n FROM counter").fetchone()
    expected = args.processes * args.increments
    if value != expected:
        print(f"FAIL: counter = {value}, expected {expected}")
        return 1
    print(f"PASS: counter = {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
