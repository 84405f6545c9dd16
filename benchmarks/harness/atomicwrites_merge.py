"""atomicwrites 1.4.1: a JSON file updated with atomic_write (temporary
file, fsync, rename over the target): crash-safe, but two processes that
read before either renames each write their own version, and one key is
lost. No lock anywhere: lock-only arms select nothing here."""
import json
import os

from atomicwrites import atomic_write

from common import main

KEYS = 1


def work(directory, worker):
    path = os.path.join(directory, "store.json")
    for key in range(KEYS):
        with open(path) as f:
            store = json.load(f)
        store[f"w{worker}k{key}"] = key
        with atomic_write(path, overwrite=True) as f:
            json.dump(store, f)


def setup(directory):
    with open(os.path.join(directory, "store.json"), "w") as f:
        json.dump({}, f)


def check(directory):
    with open(os.path.join(directory, "store.json")) as f:
        store = json.load(f)
    return len(store) == 2 * KEYS, f"{len(store)} keys, expected {2 * KEYS}"


if __name__ == "__main__":
    main(work, check, setup=setup, stagger_ms=(15.0, 30.0))
