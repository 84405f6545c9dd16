"""TinyDB 4.9.0: a JSON document database without locking; each insert
reads the whole file and writes it back, so concurrent inserts lose
documents."""
import os

from tinydb import TinyDB

from common import main

DOCS = 1


def work(directory, worker):
    db = TinyDB(os.path.join(directory, "db.json"))
    for doc in range(DOCS):
        try:
            db.insert({"worker": worker, "doc": doc})
        except ValueError as error:
            # Two inserts picked the same document id: the lost update, seen early.
            print(f"worker {worker}: {error}")
            raise SystemExit(1)
    db.close()


def check(directory):
    db = TinyDB(os.path.join(directory, "db.json"))
    n = len(db.all())
    return n == 2 * DOCS, f"{n} documents, expected {2 * DOCS}"


if __name__ == "__main__":
    main(work, check)
