"""A rare lost update among much correct traffic, through Python's sqlite3
module and Debian's libsqlite3: third-party code beneath the shim.

Processes take orders against a stock table. An order is one IMMEDIATE
transaction that decrements its item's stock in place (qty = qty - 1)
and records the order: correct. Each order then writes AUDIT audit rows,
each its own transaction. But one order in RACY_EVERY goes through an old
"reservation" path that reads the stock in one statement and writes the
new quantity in a later transaction: an order another process records in
between is overwritten, and the stock no longer matches the orders.
Which item each order is for comes from a fixed seed per process.

Exits 0 when every item's stock matches its orders, 1 when an update was
lost, 3 when a worker failed.

usage: inventory.py [DB] [--processes 2] [--orders 150] [--items 4]
                    [--audit 2] [--racy-every 100] [--window-ms 0]
"""
import argparse
import multiprocessing
import os
import random
import sqlite3
import sys
import tempfile
import time

STOCK = 1_000_000


def connect(path):
    con = sqlite3.connect(path, timeout=60, isolation_level=None)
    # No fsync per commit: the race window is SQLite's, not the disk's.
    con.execute("PRAGMA synchronous = NORMAL")
    return con


def order(con, item, worker):
    """The correct order: decrement and record in one transaction."""
    con.execute("BEGIN IMMEDIATE")
    con.execute("UPDATE stock SET qty = qty - 1 WHERE item = ?", (item,))
    con.execute("INSERT INTO orders (item, worker) VALUES (?, ?)", (item, worker))
    con.execute("COMMIT")


def order_reservation_path(con, item, worker, window_ms):
    """The old path: reads the stock, then writes the quantity it computed."""
    (qty,) = con.execute("SELECT qty FROM stock WHERE item = ?", (item,)).fetchone()
    if window_ms:
        time.sleep(window_ms / 1000)
    con.execute("BEGIN IMMEDIATE")
    con.execute("UPDATE stock SET qty = ? WHERE item = ?", (qty - 1, item))
    con.execute("INSERT INTO orders (item, worker) VALUES (?, ?)", (item, worker))
    con.execute("COMMIT")


def work(path, worker, args):
    con = connect(path)
    con.execute("SELECT COUNT(*) FROM stock").fetchone()
    rng = random.Random(0x1417 + worker)
    phase = (worker * 37 + 11) % args.racy_every
    for n in range(args.orders):
        item = rng.randrange(args.items)
        if n % args.racy_every == phase:
            order_reservation_path(con, item, worker, args.window_ms)
        else:
            order(con, item, worker)
        for step in range(args.audit):
            con.execute("INSERT INTO audit (worker, n, step) VALUES (?, ?, ?)", (worker, n, step))
    con.close()


def check(path, args):
    con = connect(path)
    wrong = []
    for item, qty, ordered in con.execute(
            "SELECT s.item, s.qty, (SELECT COUNT(*) FROM orders o WHERE o.item = s.item) FROM stock s ORDER BY s.item"):
        if qty != STOCK - ordered:
            wrong.append(f"item {item}: stock {qty}, expected {STOCK - ordered} after {ordered} orders")
    con.close()
    return wrong


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", nargs="?", help="database file (default: one in a temporary directory)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--orders", type=int, default=150, help="orders per process")
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--audit", type=int, default=2, help="audit rows per order, one transaction each")
    parser.add_argument("--racy-every", type=int, default=100, help="one order in this many takes the racy path")
    parser.add_argument("--window-ms", type=float, default=0.0,
                        help="sleep between the racy path's read and write: the window held open by hand")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inventory-") as tmp:
        path = args.db or os.path.join(tmp, "inventory.db")
        con = connect(path)
        con.execute("PRAGMA journal_mode = WAL")
        con.executescript(
            "DROP TABLE IF EXISTS stock; DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS audit;"
            "CREATE TABLE stock (item INTEGER PRIMARY KEY, qty INTEGER NOT NULL);"
            "CREATE TABLE orders (item INTEGER NOT NULL, worker INTEGER NOT NULL);"
            "CREATE TABLE audit (worker INTEGER NOT NULL, n INTEGER NOT NULL, step INTEGER NOT NULL);")
        con.executemany("INSERT INTO stock VALUES (?, ?)", [(i, STOCK) for i in range(args.items)])
        con.close()
        context = multiprocessing.get_context("fork")
        workers = [context.Process(target=work, args=(path, i, args)) for i in range(args.processes)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if any(worker.exitcode != 0 for worker in workers):
            print("FAIL: a worker failed")
            return 3
        wrong = check(path, args)
    if wrong:
        print("FAIL: lost update: " + "; ".join(wrong))
        return 1
    print(f"PASS: {args.processes * args.orders} orders, stock matches on {args.items} items")
    return 0


if __name__ == "__main__":
    sys.exit(main())
