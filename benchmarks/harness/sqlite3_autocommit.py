"""Python's sqlite3 module over the system's libsqlite3, in autocommit
mode (isolation_level=None): SELECT, then UPDATE with the value read, as
two statements outside a transaction: a lost update."""
import os
import sqlite3

from common import main

ROUNDS = 1


def connect(directory):
    db = sqlite3.connect(os.path.join(directory, "c.db"), timeout=30, isolation_level=None)
    return db


def setup(directory):
    db = connect(directory)
    db.execute("CREATE TABLE c (v INTEGER)")
    db.execute("INSERT INTO c VALUES (0)")
    db.close()


def work(directory, worker):
    db = connect(directory)
    for _ in range(ROUNDS):
        (value,) = db.execute("SELECT v FROM c").fetchone()
        db.execute("UPDATE c SET v = ?", (value + 1,))
    db.close()


def check(directory):
    (value,) = connect(directory).execute("SELECT v FROM c").fetchone()
    return value == 2 * ROUNDS, f"v = {value}, expected {2 * ROUNDS}"


if __name__ == "__main__":
    main(work, check, setup=setup)
