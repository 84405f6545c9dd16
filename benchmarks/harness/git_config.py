"""git config: two processes each add values to one config file. git takes
FILE.lock with O_CREAT|O_EXCL and gives up at once if it exists ("could not
lock config file"), so a write that overlaps another's is lost."""
import os
import subprocess

from common import main

VALUES = 1


def work(directory, worker):
    path = os.path.join(directory, "cfg")
    for value in range(VALUES):
        # A refused write is the bug this harness looks for: not an error.
        subprocess.run(["git", "config", "--file", path, "--add", "bench.key", f"w{worker}v{value}"],
                       capture_output=True)


def check(directory):
    out = subprocess.run(["git", "config", "--file", os.path.join(directory, "cfg"), "--get-all", "bench.key"],
                         capture_output=True, text=True)
    values = out.stdout.split()
    return len(values) == 2 * VALUES, f"{len(values)} values, expected {2 * VALUES}"


if __name__ == "__main__":
    main(work, check)
