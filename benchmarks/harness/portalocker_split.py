"""portalocker: a JSON settings file read under one lock and written under
another (the lock released in between), a common way to keep the critical
section short. A save between the two loses the other's key."""
import json
import os

import portalocker

from common import main

KEYS = 1


def work(directory, worker):
    path = os.path.join(directory, "settings.json")
    for key in range(KEYS):
        with portalocker.Lock(path, "r", timeout=10) as f:
            settings = json.load(f)
        settings[f"w{worker}k{key}"] = key
        with portalocker.Lock(path, "r+", timeout=10) as f:
            f.seek(0)
            f.truncate()
            json.dump(settings, f)
            f.flush()
            os.fsync(f.fileno())


def setup(directory):
    with open(os.path.join(directory, "settings.json"), "w") as f:
        json.dump({}, f)


def check(directory):
    with open(os.path.join(directory, "settings.json")) as f:
        settings = json.load(f)
    return len(settings) == 2 * KEYS, f"{len(settings)} keys, expected {2 * KEYS}"


if __name__ == "__main__":
    main(work, check, setup=setup)
