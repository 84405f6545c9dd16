"""Increments one counter from several processes through Python's sqlite3
module (Debian's libsqlite3), each increment one BEGIN IMMEDIATE transaction.
Exits 0 if no increment was lost, 1 otherwise.

usage: sqlite_incr.py DB PROCESSES INCREMENTS [--racy]
--racy reads and writes in separate transactions: a lost-update race.
"""
import multiprocessing
import sqlite3
import sys


def work(path, increments, racy):
    con = sqlite3.connect(path, timeout=60, isolation_level=None)
    for _ in range(increments):
        if racy:
            (value,) = con.execute("SELECT n FROM counter").fetchone()
            con.execute("UPDATE counter SET n = ?", (value + 1,))
        else:
            con.execute("BEGIN IMMEDIATE")
            (value,) = con.execute("SELECT n FROM counter").fetchone()
            con.execute("UPDATE counter SET n = ?", (value + 1,))
            con.execute("COMMIT")
    con.close()


def main():
    path, processes, increments = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    racy = "--racy" in sys.argv[4:]
    con = sqlite3.connect(path, timeout=60, isolation_level=None)
    con.execute("CREATE TABLE IF NOT EXISTS counter (n INTEGER NOT NULL)")
    con.execute("DELETE FROM counter")
    con.execute("INSERT INTO counter VALUES (0)")
    con.close()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=work, args=(path, increments, racy)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if any(worker.exitcode != 0 for worker in workers):
        print("FAIL: a worker failed")
        return 3
    con = sqlite3.connect(path)
    (value,) = con.execute("SELECT n FROM counter").fetchone()
    expected = processes * increments
    if value != expected:
        print(f"FAIL: counter = {value}, expected {expected}")
        return 1
    print(f"PASS: counter = {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
