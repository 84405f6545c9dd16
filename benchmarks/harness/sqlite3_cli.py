"""The sqlite3 command-line tool: a shell-style counter, one sqlite3
process reads the value and another writes it plus one (the way scripts
use the CLI): a lost update when two scripts interleave."""
import os
import subprocess

from common import main

ROUNDS = 1


def sql(directory, statement):
    out = subprocess.run(["sqlite3", "-cmd", ".timeout 30000", os.path.join(directory, "c.db"), statement],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def setup(directory):
    sql(directory, "CREATE TABLE c (v INTEGER); INSERT INTO c VALUES (0);")


def work(directory, worker):
    for _ in range(ROUNDS):
        value = int(sql(directory, "SELECT v FROM c;"))
        sql(directory, f"UPDATE c SET v = {value + 1};")


def check(directory):
    value = int(sql(directory, "SELECT v FROM c;"))
    return value == 2 * ROUNDS, f"v = {value}, expected {2 * ROUNDS}"


if __name__ == "__main__":
    main(work, check, setup=setup, stagger_ms=(30.0, 60.0))
