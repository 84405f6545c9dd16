"""What every harness shares: fork N workers, each starting a few random
milliseconds after the one before, run each worker's part, then check the
invariant. Exit 1 when it broke, 0 when it held, 3 when the harness itself
failed (a worker raised, or the check could not run).

usage: HARNESS.py [DIR]   (a fresh, empty working directory; default: a
new temporary one, removed at the end)
"""
import os
import random
import shutil
import sys
import tempfile
import traceback

EXIT_HELD, EXIT_BROKE, EXIT_ERROR = 0, 1, 3


def main(work, check, processes=2, stagger_ms=(2.0, 6.0), setup=None):
    """work(dir, worker) in each forked worker; check(dir) -> (held, message)."""
    if len(sys.argv) > 1:
        directory = sys.argv[1]
    else:
        directory = tempfile.mkdtemp(prefix="delayshim-harness-")
        import atexit
        atexit.register(shutil.rmtree, directory, True)
    if setup:
        setup(directory)
    children = []
    for worker in range(processes):
        pause = random.uniform(*stagger_ms) / 1000 if worker else 0.0
        pid = os.fork()
        if pid == 0:
            code = EXIT_HELD
            try:
                import time
                time.sleep(pause * worker)
                work(directory, worker)
            except SystemExit as exit_:
                code = int(exit_.code or 0)
            except BaseException:
                traceback.print_exc()
                code = EXIT_ERROR
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        children.append(pid)
    errors = broke = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        # A worker that saw the invariant break itself exits 1.
        broke += int(code == EXIT_BROKE)
        errors += int(code not in (EXIT_HELD, EXIT_BROKE))
    try:
        held, message = check(directory)
    except BaseException:
        traceback.print_exc()
        sys.exit(EXIT_ERROR)
    if broke:
        print(f"FAIL: {broke} worker(s) saw the invariant break; {message}")
        sys.exit(EXIT_BROKE)
    if not held:
        print(f"FAIL: {message}")
        sys.exit(EXIT_BROKE)
    if errors:
        print(f"ERROR: {errors} worker(s) failed; invariant held: {message}")
        sys.exit(EXIT_ERROR)
    print(f"PASS: {message}")
    sys.exit(EXIT_HELD)


def read_int(path, default=0):
    try:
        with open(path) as f:
            return int(f.read().strip() or default)
    except FileNotFoundError:
        return default
