"""A JSON store that three forked processes update under one flock held
across load and save (write a temporary file, fsync, rename): correct.
Exits 1 on a lost key. For `delayshim run --conflicts` precision."""
import fcntl, json, os, sys, time
d = sys.argv[1]
store, lock = os.path.join(d, "store.json"), os.path.join(d, "store.lock")
def save(m, tag):
    tmp = store + ".tmp" + tag
    with open(tmp, "w") as f:
        json.dump(m, f); f.flush(); os.fsync(f.fileno())
    os.rename(tmp, store)
save({}, "init")
pids = []
for w in range(3):
    pid = os.fork()
    if pid == 0:
        with open(lock, "a+") as l:
            for s in range(5):
                fcntl.flock(l, fcntl.LOCK_EX)
                with open(store) as f: m = json.load(f)
                m[f"w{w}s{s}"] = s
                save(m, str(w))
                fcntl.flock(l, fcntl.LOCK_UN)
        os._exit(0)
    pids.append(pid)
for p in pids: os.waitpid(p, 0)
with open(store) as f: m = json.load(f)
print("keys", len(m)); sys.exit(0 if len(m) == 15 else 1)
