"""Increments one counter from several processes through Python's sqlite3
module (Debian's libsqlite3), then checks that no increment was lost.

By default each increment is one BEGIN IMMEDIATE transaction: correct.
With --racy the read and the write are separate statements, each its own
transaction: two processes that read the same value lose an update, the
race target of scripts/bench.sh. Process i starts i x STAGGER_MS after
process 0, like requests that arrive a little apart.

Exits 0 when the counter is right, 1 when an update was lost, 3 when a
worker failed.

usage: sqlite_incr.py DB [--processes 2] [--increments 3] [--racy] [--stagger-ms 0]
"""
import argparse
import multiprocessing
import sqlite3
import sys
import time


def connect(path):
    con = sqlite3.connect(path, timeout=60, isolation_level=None)
    # No fsync per commit: the race window is SQLite's, not the disk's.
    con.execute("PRAGMA synchronous = NORMAL")
    return con


def work(path, index, args):
    con = connect(path)
    con.execute("SELECT n FROM counter").fetchone()
    time.sleep(index * args.stagger_ms / 1000)
    for _ in range(args.increments):
        if not args.racy:
            con.execute("BEGIN IMMEDIATE")
        (value,) = con.execute("SELECT n FROM counter").fetchone()
        con.execute("UPDATE counter SET n = ?", (value + 1,))
        if not args.racy:
            con.execute("COMMIT")
    con.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--increments", type=int, default=3)
    parser.add_argument("--racy", action="store_true", help="read and write in separate transactions")
    parser.add_argument("--stagger-ms", type=float, default=0.0, help="delay between the processes' starts")
    args = parser.parse_args()
    con = connect(args.db)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("DROP TABLE IF EXISTS counter")
    con.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
    con.execute("INSERT INTO counter VALUES (0)")
    con.close()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=work, args=(args.db, i, args)) for i in range(args.processes)]
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
