#!/usr/bin/env python3
"""delayshim's benchmarks: pass-through overhead, the driver's run time,
increment latency, and each race target's time to detection under plain
reruns, the shim and strace's delay injection. Called by scripts/bench.sh,
which builds everything first.

Each part stores its figures in benchmarks/results.json; BENCHMARKS.md and
benchmarks/detection-vs-mean.svg are rewritten from all stored parts, so a
part can be run again alone.
"""
import argparse
import datetime
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve()
RELEASE = TARGET / "release"
SHIM = RELEASE / "libdelayshim.so"
RESULTS = ROOT / "benchmarks" / "results.json"
CHART = ROOT / "benchmarks" / "detection-vs-mean.svg"
REPORT = ROOT / "BENCHMARKS.md"
VENV = TARGET / "bench-venv"
DISKCACHE = "diskcache==5.6.3"
PARTS = ["overhead", "driver", "incr", "detection", "chart", "diskcache", "minimize", "campaign", "conflicts", "suite", "auto",
         "memory"]
# `report` measures nothing: it rewrites BENCHMARKS.md from results.json.
REPORT_ONLY = "report"

# The shim's default mean, used for strace's fixed delay too.
DEFAULT_MEAN_US = 200
# The system calls beneath the shim's default families (every one but read
# and pread): strace names the system calls, not the libc aliases. strace
# cannot leave pipes and terminals alone as the shim does by default.
STRACE_CALLS = ",".join([
    "write", "writev", "pwrite64", "pwritev", "pwritev2",
    "fcntl", "flock",
    "fsync", "fdatasync", "sync_file_range", "syncfs", "msync",
    "open", "openat", "creat", "close",
    "rename", "renameat", "renameat2", "unlink", "unlinkat",
    "link", "linkat", "symlink", "symlinkat", "mkdir", "mkdirat", "rmdir",
    "ftruncate", "truncate", "fallocate",
])


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DELAYSHIM_") and k != "LD_PRELOAD"}
    env.update(extra or {})
    return env


def shim_env(settings=None):
    env = {"LD_PRELOAD": str(SHIM)}
    env.update(settings or {})
    return clean_env(env)


def timed(command, env, timeout=600, cwd=None):
    """Runs command; returns (exit status, wall seconds, stdout)."""
    start = time.perf_counter()
    out = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=timeout, text=True)
    return out.returncode, time.perf_counter() - start, out.stdout


def spread(values):
    return {"n": len(values), "min": min(values), "median": statistics.median(values), "max": max(values)}


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- overhead

def part_overhead(quick):
    # Each run of `probe paired` alternates batches of calls through the
    # interposed symbol with batches straight to libc's definition, in one
    # process, and reports the median per-batch difference: what the shim
    # adds. Runs of the configurations alternate too.
    batches, per_batch = (100, 1000) if quick else (300, 2000)
    runs = 3 if quick else 7
    stats = os.path.join(tempfile.gettempdir(), f"delayshim-bench-stats-{os.getpid()}.jsonl")
    configs = [
        ("no shim (the method's own error)", clean_env()),
        ("shim, delays off (DELAYSHIM_ENABLE=0)", shim_env({"DELAYSHIM_ENABLE": "0"})),
        ("shim, function not selected (DELAYSHIM_FUNCS=fsync)", shim_env({"DELAYSHIM_FUNCS": "fsync"})),
        ("shim, counted only (DELAYSHIM_ENABLE=0, DELAYSHIM_STATS)",
         shim_env({"DELAYSHIM_ENABLE": "0", "DELAYSHIM_STATS": stats})),
        # Conflicts tracking: `delayshim run --conflicts` makes the region
        # (room for every event of the run, so no call finds it full).
        ("shim, tracked (delayshim run --conflicts --enable 0)", clean_env()),
        # The same with a region that is full after 1000 events: each call
        # still does all its tracking work but writes no event, so the
        # difference to the row above is the region's memory (first writes
        # to its pages), not the shim's work.
        ("shim, tracked, region full (--conflicts-events 1000)", clean_env()),
    ]
    tracked_events = 4 * batches * per_batch + 1000

    def tracked(events):
        return [str(RELEASE / "delayshim"), "run", "--conflicts", "--enable", "0",
                "--conflicts-events", str(events), "--"]
    samples = {name: {} for name, _ in configs}
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        for _ in range(runs):
            for name, env in configs:
                command = [str(RELEASE / "probe"), "paired", tmp, str(batches), str(per_batch)]
                if "region full" in name:
                    command = tracked(1000) + command
                elif "tracked" in name:
                    command = tracked(tracked_events) + command
                status, _, stdout = timed(command, env)
                assert status == 0, stdout
                for field in stdout.split():
                    key, value = field.split("=")
                    samples[name].setdefault(key, []).append(float(value))
    if os.path.exists(stats):
        os.remove(stats)
    rows = [{"config": name, **{k: spread(v) for k, v in samples[name].items()}} for name, _ in configs]
    for row in rows:
        log(f"overhead: {row}")
    return {"batches": batches, "per_batch": per_batch, "runs": runs, "rows": rows,
            "command": f"probe paired /dev/shm/DIR {batches} {per_batch}"}


# --------------------------------------------------------------- conflicts

# (name, command, kind of report expected or None for a correct program,
# file it names)
CONFLICT_PROGRAMS = [
    ("driver 8x8x100", [str(RELEASE / "driver")], None, None),
    ("sqlite3 CLI, .timeout", [str(ROOT / "benchmarks/conflicts/sqlite_cli.sh")], None, None),
    ("flock-correct JSON store (python)", ["python3", str(ROOT / "benchmarks/conflicts/flock_store.py")],
     None, None),
    ("concurrent git commits", [str(ROOT / "benchmarks/conflicts/git_commits.sh")], None, None),
    ("json-store", [str(RELEASE / "json-store")], "lock gap", "store.json"),
    ("lock-gap", [str(RELEASE / "lock-gap")], "lock gap", "counter"),
    ("flock-counter", [str(RELEASE / "flock-counter")], "lock gap", "counters"),
    ("lockfile", [str(RELEASE / "lockfile")], "conflict", "app.lock"),
]


def part_conflicts(quick):
    # `delayshim run --conflicts` with the shim's default delays, each run
    # with its own seed: how many runs report a potential race, and, for
    # the racy targets, the expected kind on the expected file.
    runs = 5 if quick else 20
    rows = {}
    for name, command, kind, file in CONFLICT_PROGRAMS:
        row = {"runs": 0, "passed": 0, "reported": 0, "reported_passing": 0, "expected": 0,
               "expected_passing": 0, "full": 0}
        for seed in range(1, runs + 1):
            with tempfile.TemporaryDirectory() as tmp:
                args = [tmp] if name.endswith("(python)") else []
                full = [str(RELEASE / "delayshim"), "run", "--conflicts", "--seed", str(seed), "--"]
                out = subprocess.run(full + command + args, env=clean_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, timeout=600)
            report = out.stderr
            races = int(report.split("potential races: ")[1].split()[0]) if "potential races: " in report else -1
            expected = kind is not None and any(
                line.startswith(kind + ": ") and file in line for line in report.splitlines())
            passed = out.returncode == 0
            row["runs"] += 1
            row["passed"] += passed
            row["reported"] += races > 0
            row["reported_passing"] += races > 0 and passed
            row["expected"] += expected
            row["expected_passing"] += expected and passed
            row["full"] += "region filled up" in report
        rows[name] = {**row, "expect": kind or "none"}
        log(f"conflicts: {name}: {row}")
    return {"runs": runs, "rows": rows,
            "command": "delayshim run --conflicts --seed I -- PROGRAM (default delays)"}


# ------------------------------------------------------------------ driver

def part_driver(quick):
    runs = 5 if quick else 15
    driver = str(RELEASE / "driver")
    configs = [
        ("native", clean_env(), runs),
        ("shim, delays off (DELAYSHIM_ENABLE=0)", shim_env({"DELAYSHIM_ENABLE": "0"}), runs),
        ("shim, defaults (mean 200 us)", shim_env(), 3 if quick else 7),
    ]
    rows = []
    for name, env, n in configs:
        times = []
        for _ in range(n):
            status, seconds, stdout = timed([driver], env)
            assert status == 0, stdout
            times.append(seconds)
        rows.append({"config": name, "seconds": spread(times)})
        log(f"driver: {name}: {rows[-1]}")
    # The original, in the same run, for a ratio the machine's mood cancels out of.
    python, script = venv_python(), str(ROOT / "benches" / "diskcache_experiment.py")
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            status, seconds, stdout = timed([python, script, tmp], clean_env())
        assert status == 0, stdout
        times.append(seconds)
    original = {"config": "python-diskcache 5.6.3, same experiment", "seconds": spread(times)}
    log(f"driver: {original}")
    return {"rows": rows, "original": original, "command": "driver (8 workers x 8 threads x 100 keys)"}


def venv_python():
    python = VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {VENV} with {DISKCACHE}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", DISKCACHE], check=True)
    return str(python)


def part_diskcache(quick):
    python = venv_python()
    script = str(ROOT / "benches" / "diskcache_experiment.py")
    traced = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={STRACE_CALLS}"]
    configs = [
        ("python-diskcache 5.6.3, plain", [], [], 3 if quick else 9),
        ("python-diskcache under strace (ptrace, no injection)", traced, [], 1 if quick else 3),
        ("python-diskcache under strace --seccomp-bpf (no injection)", traced[:2] + ["--seccomp-bpf"] + traced[2:], [],
         1 if quick else 3),
    ]
    if not quick:
        configs.append(("python-diskcache with the sys.settrace delay fuzzer (mean 10 ms per line)", [], ["--fuzz"], 1))
    rows = []
    for name, prefix, flags, n in configs:
        times, passed = [], 0
        for _ in range(n):
            with tempfile.TemporaryDirectory() as tmp:
                status, seconds, _ = timed(prefix + [python, script, tmp] + flags, clean_env(), timeout=3600)
            passed += status == 0
            times.append(seconds)
        rows.append({"config": name, "seconds": spread(times), "passed": passed})
        log(f"diskcache: {name}: {rows[-1]}")
    return {"rows": rows}


# -------------------------------------------------------------------- incr

def part_incr(quick):
    runs = 3 if quick else 5
    python = venv_python()
    results = {"ours": [], "diskcache": [], "ours_tmpfs": [], "diskcache_tmpfs": []}
    for _ in range(runs):
        for suffix, parent in [("", None), ("_tmpfs", "/dev/shm")]:
            bench = ["cargo", "bench", "-q", "-p", "delayshim-cache", "--bench", "incr_latency", "--", "8", "1000"]
            env = clean_env({"TMPDIR": parent} if parent else {})
            status, _, stdout = timed(bench, env, cwd=ROOT)
            assert status == 0, stdout
            results["ours" + suffix].append(json.loads(stdout.strip().splitlines()[-1]))
            with tempfile.TemporaryDirectory(dir=parent) as tmp:
                status, _, stdout = timed(
                    [python, str(ROOT / "benches" / "diskcache_incr_latency.py"), tmp, "8", "1000"], clean_env())
            assert status == 0, stdout
            results["diskcache" + suffix].append(json.loads(stdout.strip().splitlines()[-1]))
    summarize = lambda runs_: {k: spread([r[k] for r in runs_])
                               for k in ["p50_us", "p90_us", "p99_us", "max_us", "wall_s"]}
    result = {"runs": runs, **{name: summarize(r) for name, r in results.items()}}
    log(f"incr: {result}")
    return result


# --------------------------------------------------------------- detection

# The shim's strategies, each with its defaults.
STRATEGIES = ["every", "sparse", "victims", "sites"]
PLAIN = "plain reruns"
AUTO = "shim, --strategy auto"
STRACE_ROWS = [200, 1000]


def strategy_row(strategy):
    return f"shim, {strategy}" + (" (defaults)" if strategy == "every" else "")


def strace_row(mean_us):
    return f"strace inject delay_enter={mean_us} us"


def targets():
    """name -> target. Each exits 1 when its bug shows. `heavy`: a call-heavy
    target of issue 9, whose goal is 10x over plain reruns and strace;
    `tuned`: settings tuned for it by hand, shown beside the strategies."""
    py_db = "{tmp}/racy.db"
    bin_ = lambda name: str(RELEASE / name)
    python = lambda script: ["python3", str(ROOT / "targets" / "python" / script)]
    return {
        "driver get-set": {
            "command": [bin_("driver"), "--op", "get-set", "--workers", "2", "--threads", "1", "--keys", "10",
                        "--shards", "1", "--stagger-us", "1000"],
            "tuned": {"DELAYSHIM_FCNTL": "unlock", "DELAYSHIM_WHEN": "after", "DELAYSHIM_MEAN_US": "1000"},
            "note": "2 workers x 1 thread x 10 keys on one shard, the second worker 1 ms later"},
        "check-then-insert": {
            "command": [bin_("check-then-insert")],
            "tuned": {"DELAYSHIM_MEAN_US": "20"},
            "note": "2 processes x 5 keys over SQLite, the second process 2 ms later"},
        "lock-gap": {
            "command": [bin_("lock-gap")],
            "tuned": {"DELAYSHIM_DIST": "fixed", "DELAYSHIM_MEAN_US": "1000"},
            "note": "2 processes x 1 increment, fcntl locks + pread/pwrite, no SQLite, the second 1 ms later"},
        "python sqlite3": {
            "command": python("sqlite_incr.py") + [py_db, "--racy", "--stagger-ms", "1"],
            "tuned": {"DELAYSHIM_MEAN_US": "20"},
            "note": "python3 + Debian's libsqlite3, 2 processes x 3 increments, the second 1 ms later"},
        "json-store": {
            "command": [bin_("json-store")],
            "note": "2 processes x 2 saves of a JSON store (flock, read, unlock, flock, write temp, fsync, "
                    "rename), the second 2 ms later"},
        "lockfile": {
            "command": [bin_("lockfile")],
            "note": "2 processes x 2 turns at an O_EXCL lock file that starts stale; breaking it is "
                    "check, log, then unlink; the second 0.3 ms later"},
        "flock-counter": {
            "command": [bin_("flock-counter")], "heavy": True,
            "note": "2 processes x 300 flock'd increments over 4 slots, 8 journal writes each; one in 100 "
                    "unlocks between read and write"},
        "job-queue": {
            "command": [bin_("job-queue")], "heavy": True,
            "note": "2 processes claim 200 SQLite jobs (rusqlite) from 4 queues, 3 result transactions per job; "
                    "one claim in 100 reads and takes in separate transactions"},
        "python inventory": {
            "command": python("inventory.py"), "heavy": True,
            "note": "python3's sqlite3 + Debian's libsqlite3, 2 processes x 150 orders over 4 items, 2 audit "
                    "transactions each; one order in 100 reads and writes the stock separately"},
    }


def detect(command, env, runs, prefix=(), seed_base=None, budget_s=None, min_runs=2, settings_for=None):
    """Runs command up to `runs` times (fewer once `budget_s` seconds are
    spent and `min_runs` are done); returns detections and wall times.
    `settings_for(seed)` adds settings per run (the auto portfolio)."""
    found, times, errors, strategies = 0, [], 0, {}
    start = time.perf_counter()
    for i in range(runs):
        if budget_s is not None and i >= min_runs and time.perf_counter() - start > budget_s:
            break
        with tempfile.TemporaryDirectory() as tmp:
            run_env = dict(env)
            if seed_base is not None:
                run_env["DELAYSHIM_SEED"] = str(seed_base + i)
                if settings_for:
                    extra = settings_for(seed_base + i)
                    run_env.update(extra)
                    name = extra.get("DELAYSHIM_STRATEGY", "every")
                    strategies[name] = strategies.get(name, 0) + 1
            argv = list(prefix) + [part.replace("{tmp}", tmp) for part in command]
            status, seconds, _ = timed(argv, run_env, timeout=300)
        times.append(seconds)
        if status == 1:
            found += 1
        elif status != 0:
            errors += 1
    return summarize_runs(found, errors, times, strategies)


def summarize_runs(found, errors, times, strategies=None):
    runs = len(times)
    mean = statistics.fmean(times)
    rate = found / runs
    row = {"runs": runs, "found": found, "errors": errors, "rate": rate, "mean_s": mean,
           "seconds": spread(times), "ttd_s": mean / rate if found else None,
           "ttd_lower_bound_s": None if found else runs * mean}
    if strategies:
        row["strategies"] = strategies
    return row


def strace_prefix(mean_us):
    # --seccomp-bpf stops only at the traced calls: strace at its fastest.
    return ["strace", "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", f"trace={STRACE_CALLS}",
            "-e", f"inject={STRACE_CALLS}:delay_enter={mean_us}"]


def shim_accepts(settings):
    """Whether the shim takes these settings (it stops a program whose
    settings it refuses): strategies arrive in the shim one by one."""
    return subprocess.run(["true"], env=shim_env(settings), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def emulated_auto_settings(seed):
    # EMULATION: must match the campaign's `--strategy auto` portfolio
    # (campaign/src), which picks a strategy and its parameters from each
    # run's seed. Until the campaign has one, run r with seed s uses
    # STRATEGIES[s % 4] with that strategy's defaults. The lead reconciles.
    return {"DELAYSHIM_STRATEGY": STRATEGIES[seed % len(STRATEGIES)]}


def campaign_has_auto():
    """Whether the delayshim command's campaign (`delayshim fuzz`) takes
    `--strategy auto`."""
    delayshim = RELEASE / "delayshim"
    if not delayshim.exists():
        return False
    help_text = subprocess.run([str(delayshim), "fuzz", "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=campaign_env()).stdout
    return "--strategy" in help_text and "auto" in help_text


def campaign_env():
    # The delayshim command unpacks the shim it carries into a cache
    # directory: the target directory's, not the user's.
    return clean_env({"XDG_CACHE_HOME": str(TARGET / "bench-shim-cache")})


def detect_auto_by_campaign(command, runs, seed):
    """`--strategy auto` as the campaign runs it: one `delayshim fuzz`
    campaign of `runs` runs (after its calibration run), each with the
    strategy and parameters the campaign's portfolio picks from its seed;
    counts and wall times from its summary.json. No replays of failures."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [str(RELEASE / "delayshim"), "fuzz", "--strategy", "auto", "--runs", str(runs), "--seed", str(seed),
                "--keep-going", "--confirm", "0", "--timeout", "300", "--out", f"{tmp}/out", "--"]
        # The campaign reruns one command: its {tmp} is one directory for all runs.
        os.mkdir(f"{tmp}/work")
        argv += [part.replace("{tmp}", f"{tmp}/work") for part in command]
        start = time.perf_counter()
        subprocess.run(argv, env=campaign_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=7200)
        campaign_s = time.perf_counter() - start
        summary = json.loads(Path(f"{tmp}/out/summary.json").read_text())
    times = [run["seconds"] for run in summary["runs"]]
    # FAIL is any exit status but 0: a target's errors (3) count as found.
    found = sum(run["outcome"] == "FAIL" for run in summary["runs"])
    errors = sum(run["outcome"] in ("CRASH", "HANG") for run in summary["runs"])
    strategies = {}
    for run in summary["runs"]:
        name = (run.get("settings") or {}).get("DELAYSHIM_STRATEGY") or run.get("strategy") or "every"
        strategies[name] = strategies.get(name, 0) + 1
    row = summarize_runs(found, errors, times, strategies)
    row["by"] = "campaign"
    # The whole campaign's time, its calibration run included.
    row["campaign_s"] = campaign_s
    return row


def count_calls(command):
    """Intercepted calls in one run of command under the shim with delays
    off, by function."""
    with tempfile.TemporaryDirectory() as tmp:
        stats = f"{tmp}/stats.jsonl"
        os.mkdir(f"{tmp}/work")
        argv = [part.replace("{tmp}", f"{tmp}/work") for part in command]
        timed(argv, shim_env({"DELAYSHIM_ENABLE": "0", "DELAYSHIM_STATS": stats}))
        totals = {}
        for line in Path(stats).read_text().splitlines() if Path(stats).exists() else []:
            # Lines without calls mark a process's start.
            for name, n in json.loads(line).get("calls", {}).items():
                totals[name] = totals.get(name, 0) + n
    return totals


def detection_settings(args):
    quick = args.quick
    return {
        "plain_runs": args.plain_runs or (60 if quick else 300),
        "runs": args.runs or (10 if quick else 30),
        # A configuration stops starting runs once this much time is spent.
        "budget_s": args.config_seconds or (20 if quick else 120),
    }


def part_detection(args):
    settings = detection_settings(args)
    runs, budget = settings["runs"], settings["budget_s"]
    # `every` is the shim's default: measured with no DELAYSHIM_STRATEGY at all.
    supported = ["every"] + [s for s in STRATEGIES[1:] if shim_accepts({"DELAYSHIM_STRATEGY": s})]
    by_campaign = campaign_has_auto()
    log(f"detection: {settings}; strategies the shim takes: {', '.join(supported) or 'none'}; "
        f"auto {'from the campaign' if by_campaign else 'emulated in bench.py'}")
    result = {"settings": settings, "strategies": supported,
              "auto": "campaign" if by_campaign else "emulated: STRATEGIES[seed % 4], defaults",
              "strace_calls": STRACE_CALLS, "targets": {}}
    only = set(args.targets or [])
    for t_index, (name, target) in enumerate(targets().items()):
        if only and name not in only:
            continue
        command = target["command"]
        calls = count_calls(command)
        log(f"detection: {name}: {sum(calls.values())} intercepted calls per run")
        rows = {PLAIN: detect(command, clean_env(), settings["plain_runs"], budget_s=budget * 2, min_runs=20)}
        for mean in STRACE_ROWS:
            rows[strace_row(mean)] = detect(command, clean_env(), runs, prefix=strace_prefix(mean), budget_s=budget)
        seed_base = 10_000 * (t_index + 1)
        for i, strategy in enumerate(STRATEGIES):
            if strategy in supported:
                env = shim_env({} if strategy == "every" else {"DELAYSHIM_STRATEGY": strategy})
                rows[strategy_row(strategy)] = detect(command, env, runs, seed_base=seed_base + 1000 * i,
                                                      budget_s=budget)
        if by_campaign:
            rows[AUTO] = detect_auto_by_campaign(command, runs, seed_base + 5000)
        elif set(supported) == set(STRATEGIES):
            rows[AUTO] = detect(command, shim_env(), runs, seed_base=seed_base + 5000, budget_s=budget,
                                settings_for=emulated_auto_settings)
        if target.get("tuned"):
            tuning = " ".join(f"{k}={v}" for k, v in target["tuned"].items())
            rows[f"shim, tuned ({tuning})"] = detect(command, shim_env(target["tuned"]), runs,
                                                     seed_base=seed_base + 6000, budget_s=budget)
        result["targets"][name] = {"command": " ".join(command), "note": target["note"],
                                   "heavy": bool(target.get("heavy")), "calls": calls, "rows": rows}
        for config, row in rows.items():
            log(f"detection: {name}: {config}: {row['found']}/{row['runs']} in {row['mean_s']:.3f} s/run")
        result["targets"][name]["goal"] = goal(result["targets"][name])
        log(f"detection: {name}: {result['targets'][name]['goal']}")
    return result


def ttd(row):
    """(expected time to detection or its lower bound, whether a bound)."""
    if row["ttd_s"]:
        return row["ttd_s"], False
    return row["ttd_lower_bound_s"], True


def goal(target):
    """Issue 9's goal for `auto`: at least 10x faster to detection than
    plain reruns and than the better strace configuration on a call-heavy
    target, and never more than 1.5x slower than the best single strategy."""
    rows = target["rows"]
    auto = rows.get(AUTO)
    if auto is None:
        return {"status": "not measured (the shim has no strategies yet)"}
    auto_ttd, auto_bound = ttd(auto)
    out = {}
    singles = {c: r for c, r in rows.items() if c.startswith("shim, ") and c != AUTO and "tuned" not in c}
    found = {c: r for c, r in singles.items() if r["ttd_s"]}
    if found:
        best = min(found, key=lambda c: found[c]["ttd_s"])
        out["best_single"] = best
        out["vs_best_single"] = found[best]["ttd_s"] / auto_ttd  # > 1: auto faster
        out["vs_best_single_bound"] = auto_bound
        out["within_1_5x"] = (not auto_bound) and auto_ttd <= 1.5 * found[best]["ttd_s"]
    stracers = [rows[strace_row(m)] for m in STRACE_ROWS if strace_row(m) in rows]
    best_strace = min(stracers, key=lambda r: ttd(r)[0]) if stracers else None
    for label, other in [("plain", rows.get(PLAIN)), ("strace", best_strace)]:
        if other is None:
            continue
        other_ttd, other_bound = ttd(other)
        out[f"vs_{label}"] = other_ttd / auto_ttd
        # With auto's figure a bound nothing is shown; with the other's a
        # bound the ratio is a lower bound.
        out[f"vs_{label}_kind"] = "unknown" if auto_bound else (">=" if other_bound else "=")
    if target.get("heavy"):
        out["10x"] = all(out.get(f"vs_{k}", 0) >= 10 and out.get(f"vs_{k}_kind") != "unknown"
                         for k in ["plain", "strace"])
    return out


def part_minimize(quick):
    """For each target: a campaign (auto, seed 7) until its first failure,
    then `delayshim minimize` of that run, timed from outside."""
    rows = {}
    delayshim = str(RELEASE / "delayshim")
    for name, target in targets().items():
        with tempfile.TemporaryDirectory() as tmp:
            command = [c.replace("{tmp}", tmp) for c in target["command"]]
            out = os.path.join(tmp, "campaign")
            status, fuzz_seconds, _ = timed([delayshim, "fuzz", "--runs", "100" if quick else "200", "--seed", "7",
                                             "--confirm", "0", "--out", out, "--"] + command,
                                            clean_env(), timeout=1800)
            failing = sorted(d for d in os.listdir(out) if os.path.exists(os.path.join(out, d, "reproduce.sh")))
            if not failing:
                rows[name] = {"found": False}
                log(f"minimize: {name}: no failure")
                continue
            run_dir = os.path.join(out, failing[0])
            recorded = sum(1 for line in open(os.path.join(run_dir, "record.txt")) if line.startswith("call "))
            status, seconds, stdout = timed([delayshim, "minimize", run_dir], clean_env(), timeout=1800)
            row = {"found": True, "run": failing[0], "recorded": recorded, "seconds": seconds,
                   "minimized": status == 0, "campaign_seconds": fuzz_seconds}
            if status == 0:
                text = open(os.path.join(run_dir, "explanation.md")).read()
                row["kept"] = sum(1 for line in text.splitlines() if line.startswith("- `"))
                row["replays"] = int(text.split("Minimizing took ")[1].split(" ")[0])
                rates = {}
                for line in text.splitlines():
                    for label, key in (("| no delays |", "none"), ("| the whole record", "whole"),
                                       ("| the minimal set", "minimal")):
                        if line.startswith(label):
                            rates[key] = line.split("|")[2].strip()
                row["rates"] = rates
                row["example"] = next((l for l in text.splitlines() if l.startswith("- `")), "")
            rows[name] = row
            log(f"minimize: {name}: {row}")
    return {"rows": rows, "command": "delayshim fuzz --runs 200 --seed 7 --confirm 0 -- TARGET; "
                                     "delayshim minimize FIRST_FAILING_RUN"}


# ---------------------------------------------------------------- campaign

def disk_bytes(path):
    """Apparent size of every file under path, and the blocks they take."""
    apparent = blocks = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            apparent += st.st_size if name in filenames else 0
            blocks += st.st_blocks * 512
    return apparent, blocks


def live_processes(command_line):
    found = 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().replace(b"\0", b" ").strip() == command_line.encode():
                    with open(f"/proc/{pid}/stat") as stat:
                        if stat.read().rsplit(")", 1)[1].split()[0] not in "ZX":
                            found += 1
        except OSError:
            pass
    return found


def part_campaign(quick):
    """Disk and memory per passing run (--keep failures and all), and
    campaigns interrupted at random moments: what they leave."""
    delayshim = str(RELEASE / "delayshim")
    probe = str(RELEASE / "probe")
    result = {"disk": {}, "interrupts": {}}
    small, large = (10, 60) if quick else (20, 200)
    for keep in ("failures", "all"):
        figures = {}
        for runs in (small, large):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "out")
                command = [delayshim, "fuzz", "--runs", str(runs), "--seed", "1", "--strategy", "every",
                           "--mean", "1", "--keep", keep, "--out", out, "--", probe, "paired", tmp, "5", "1"]
                start = time.perf_counter()
                child = subprocess.Popen(command, env=clean_env(), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                # The campaign's own peak (VmHWM), read until it exits.
                peak_kb = None
                while child.poll() is None:
                    try:
                        with open(f"/proc/{child.pid}/status") as status_file:
                            for line in status_file:
                                if line.startswith("VmHWM:"):
                                    peak_kb = int(line.split()[1])
                    except OSError:
                        pass
                    time.sleep(0.05)
                status, seconds = child.returncode, time.perf_counter() - start
                apparent, blocks = disk_bytes(out)
                figures[runs] = {"status": status, "seconds": seconds, "apparent": apparent, "blocks": blocks,
                                 "max_rss_kb": peak_kb}
                log(f"campaign: keep {keep}, {runs} runs: {figures[runs]}")
        per_run = lambda field: (figures[large][field] - figures[small][field]) / (large - small)
        result["disk"][keep] = {"runs": [small, large], "figures": {str(k): v for k, v in figures.items()},
                                "apparent_per_run": per_run("apparent"), "blocks_per_run": per_run("blocks")}
    result["disk_command"] = (f"delayshim fuzz --runs N --seed 1 --strategy every --mean 1 --keep KEEP --out OUT "
                              f"-- probe paired TMP 5 1, N = {small} and {large}; bytes of OUT")
    trials = 6 if quick else 12
    rng = random.Random(20)
    rows = []
    program = "setsid sleep 97.25 & sleep 0.3; exit 1"
    for trial in range(trials):
        signal_number = [signal.SIGINT, signal.SIGTERM][trial % 2]
        moment = rng.uniform(0.0, 4.0)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "out")
            child = subprocess.Popen([delayshim, "fuzz", "--runs", "6", "--seed", str(trial), "--keep-going",
                                      "--confirm", "3", "--out", out, "--", "sh", "-c", program],
                                     env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
            time.sleep(moment)
            child.send_signal(signal_number)
            status = child.wait(timeout=120)
            left = live_processes("sleep 97.25")
            report = subprocess.run([delayshim, "report", out], env=clean_env(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL).returncode
            rows.append({"signal": signal.Signals(signal_number).name, "moment_s": round(moment, 2),
                         "status": status, "left_running": left,
                         "summary": os.path.exists(os.path.join(out, "summary.json")), "report_status": report})
            log(f"campaign: interrupt {rows[-1]}")
            if left:
                subprocess.run(["pkill", "-KILL", "-f", "^sleep 97.25$"])
    result["interrupts"] = {"rows": rows, "command": (
        "delayshim fuzz --runs 6 --keep-going --confirm 3 --out OUT -- sh -c '" + program + "', "
        "SIGINT or SIGTERM (in turn) after a uniform random 0-4 s (random.Random(20)); then "
        "processes running `sleep 97.25`, OUT/summary.json, and `delayshim report OUT`'s status")}
    return result


def peak_rss_of(command):
    """Runs command; its status, seconds and own peak RSS (VmHWM, read
    every 50 ms until it exits: a child's RSS is not in it)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_kb = None
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as status_file:
                for line in status_file:
                    if line.startswith("VmHWM:"):
                        peak_kb = int(line.split()[1])
        except OSError:
            pass
        time.sleep(0.05)
    return child.returncode, time.perf_counter() - start, peak_kb


def part_memory(quick):
    """The campaign's peak RSS at a few and at many quick passing runs:
    what each run adds to it. BENCH_BASELINE_DELAYSHIM=PATH measures
    another build of the command in the same run, for a comparison
    (BENCH_BASELINE_NAME names it in the table)."""
    small, large = (20, 500) if quick else (20, 2000)
    probe = str(RELEASE / "probe")
    builds = {"this build": str(RELEASE / "delayshim")}
    if os.environ.get("BENCH_BASELINE_DELAYSHIM"):
        builds[os.environ.get("BENCH_BASELINE_NAME", "baseline")] = os.environ["BENCH_BASELINE_DELAYSHIM"]
    rows = []
    for name, delayshim in builds.items():
        figures = {}
        for runs in (small, large):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "out")
                status, seconds, peak_kb = peak_rss_of(
                    [delayshim, "fuzz", "--runs", str(runs), "--jobs", "2", "--seed", "1", "--strategy", "every",
                     "--mean", "1", "--out", out, "--", probe, "paired", tmp, "5", "1"])
                with open(os.path.join(out, "summary.json")) as f:
                    listed = len(json.load(f)["runs"])
                figures[str(runs)] = {"status": status, "seconds": seconds, "max_rss_kb": peak_kb,
                                      "summary_runs": listed}
                log(f"memory: {name}, {runs} runs: {figures[str(runs)]}")
        per_run = (figures[str(large)]["max_rss_kb"] - figures[str(small)]["max_rss_kb"]) * 1024 / (large - small)
        rows.append({"build": name, "path": delayshim, "figures": figures, "bytes_per_run": per_run})
    return {"runs": [small, large], "rows": rows, "command": (
        f"delayshim fuzz --runs N --jobs 2 --seed 1 --strategy every --mean 1 --out OUT -- probe paired TMP 5 1, "
        f"N = {small} and {large}; the campaign's peak RSS (VmHWM)")}


def part_chart(args):
    runs = 6 if args.quick else 20
    means = [20, 50, 100, 200, 500, 1000, 2000]
    result = {"runs": runs, "means_us": means, "targets": {}}
    # The call-heavy targets take seconds a run at the larger means: the
    # detection part's strategy chart covers them.
    for name, target in targets().items():
        if target.get("heavy") or (args.targets and name not in args.targets):
            continue
        command = target["command"]
        rates = []
        for mean in means:
            row = detect(command, shim_env({"DELAYSHIM_MEAN_US": str(mean)}), runs, seed_base=3000)
            rates.append(row["rate"])
            log(f"chart: {name}: mean {mean} us: {row['found']}/{runs}")
        result["targets"][name] = rates
    return result


# ------------------------------------------------------------------ report

def fmt_s(seconds):
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def fmt_spread(s, unit=fmt_s):
    return f"{s['n']} | {unit(s['min'])} | {unit(s['median'])} | {unit(s['max'])}"


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    rustc = subprocess.run(["rustc", "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    return f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, {rustc}"


def write_chart(chart):
    width, height, left, bottom, top, right = 640, 360, 60, 50, 20, 170
    plot_w, plot_h = width - left - right, height - top - bottom
    means = chart["means_us"]
    lo, hi = math.log10(means[0]), math.log10(means[-1])
    x = lambda mean: left + (math.log10(mean) - lo) / (hi - lo) * plot_w
    y = lambda rate: top + (1 - rate) * plot_h
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for rate in [0, 0.25, 0.5, 0.75, 1]:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(rate):.1f}" y2="{y(rate):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y(rate) + 4:.1f}" text-anchor="end">{rate:.0%}</text>')
    for mean in means:
        parts.append(f'<line x1="{x(mean):.1f}" x2="{x(mean):.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eee"/>')
        parts.append(f'<text x="{x(mean):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{mean}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">'
                 f'DELAYSHIM_MEAN_US (log scale), other settings default</text>')
    parts.append(f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + plot_h / 2})">runs that found the bug</text>')
    count = len(chart["targets"])
    for i, (name, rates) in enumerate(chart["targets"].items()):
        color = colors[i % len(colors)]
        points = " ".join(f"{x(m):.1f},{y(r):.1f}" for m, r in zip(means, rates))
        # Lines drawn first are wider, so one that another covers still shows at its edges.
        width = 2 + 2.5 * (count - 1 - i)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="{width}" '
                     f'stroke-opacity="0.85"/>')
        parts.extend(f'<circle cx="{x(m):.1f}" cy="{y(r):.1f}" r="3" fill="{color}"/>' for m, r in zip(means, rates))
        ly = top + 10 + i * 20
        parts.append(f'<line x1="{left + plot_w + 15}" x2="{left + plot_w + 35}" y1="{ly}" y2="{ly}" '
                     f'stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{left + plot_w + 40}" y="{ly + 4}">{name}</text>')
    parts.append("</svg>")
    CHART.write_text("\n".join(parts) + "\n")


def upgrade_detection(det):
    """Detection results in the current shape (before the strategies, the
    part stored only the targets)."""
    if "targets" in det:
        return det
    return {"settings": {}, "strategies": None, "strace_calls": "pwrite64,pwritev,pwritev2,fcntl,fsync,fdatasync",
            "targets": det}


def sum_time(row):
    return row["mean_s"] * row["runs"]


def ratio_text(ratio, kind):
    if kind == "unknown" or ratio is None:
        return "-"
    sign = ">= " if kind == ">=" else ""
    if ratio >= 1:
        return f"{sign}{ratio:.1f}x faster"
    return f"{sign}{1 / ratio:.1f}x slower"


def detection_report(det, results):
    settings = det.get("settings", {})
    out = ["## Time to detection", "",
           "Each target has a real concurrency bug and exits 1 when it shows. Expected time to detection "
           "= mean wall time per run / detection rate; where no run found the bug, the time spent is a "
           "lower bound (shown with >). strace (with --seccomp-bpf, its fastest mode) injects a fixed delay "
           "before every system call beneath the shim's default families "
           f"({det.get('strace_calls', STRACE_CALLS).replace(',', ', ')}), at 200 us and at 1000 us; unlike the "
           "shim it delays writes to pipes too. The shim rows are each strategy alone with its defaults "
           "(`every` is the shim's default), and `--strategy auto`, the campaign's portfolio, which picks a "
           "strategy and its parameters from each run's seed with no per-target settings"
           + (" (here emulated by scripts/bench.py: strategy = [every, sparse, victims, sites][seed % 4], "
              "defaults)" if str(det.get("auto", "")).startswith("emulated") else
              " (here one `delayshim fuzz --strategy auto --keep-going --confirm 0` campaign per target: equal "
              "shares of the strategies, each with a parameter from a small menu, after a calibration run that "
              "sizes sparse's horizon; the calibration run's time is not counted)")
           + ". Intercepted calls: one run under the shim with delays off (DELAYSHIM_ENABLE=0).", ""]
    if settings:
        out += [f"Runs per configuration: {settings['plain_runs']} plain, {settings['runs']} for the others, "
                f"fewer where a configuration had spent {settings['budget_s']:.0f} s ({2 * settings['budget_s']:.0f} s "
                "for plain reruns) after two runs: the runs column says how many were made.", ""]
    missing = [s for s in STRATEGIES if s not in (det.get("strategies") or STRATEGIES)]
    if missing and det["targets"]:
        out += [f"The shim measured here did not yet take DELAYSHIM_STRATEGY={', '.join(missing)}: those rows"
                " and `auto` are missing.", ""]
    goals = []
    for name, target in det["targets"].items():
        # Paths as from the checkout's root, wherever the figures were measured.
        command = re.sub(r"\S*/target/release/", "target/release/", target["command"])
        command = re.sub(r"\S*/(targets/python/)", r"\1", command)
        out += [f"### {name}", "", f"`{command}`: {target['note']}."]
        calls = target.get("calls")
        if calls:
            top = ", ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:6])
            out[-1] += f" {sum(calls.values()):,} intercepted calls per run ({top})."
        out += ["", "| configuration | runs | found | rate | wall per run (min / median / max) | expected time to detection |",
                "| --- | ---: | ---: | ---: | --- | ---: |"]
        rows = target["rows"]
        for config, row in rows.items():
            s = row["seconds"]
            shown = fmt_s(row["ttd_s"]) if row["ttd_s"] else f"> {fmt_s(row['ttd_lower_bound_s'])}"
            errors = f" ({row['errors']} errors)" if row["errors"] else ""
            mix = ""
            if row.get("strategies"):
                mix = " (" + ", ".join(f"{k} {v}" for k, v in sorted(row["strategies"].items())) + ")"
            out.append(f"| {config}{mix} | {row['runs']} | {row['found']}{errors} | {row['rate']:.1%} | "
                       f"{fmt_s(s['min'])} / {fmt_s(s['median'])} / {fmt_s(s['max'])} | {shown} |")
        g = target.get("goal") or {}
        auto = rows.get(AUTO)
        if auto is not None and not auto["found"]:
            out += ["", f"`auto` found nothing in {auto['runs']} runs ({fmt_s(sum_time(auto))}): no ratio."]
            goals.append((name, target, g))
        elif "vs_plain" in g:
            line = (f"`auto`: {ratio_text(g.get('vs_plain'), g.get('vs_plain_kind'))} than plain reruns, "
                    f"{ratio_text(g.get('vs_strace'), g.get('vs_strace_kind'))} than the better strace "
                    "configuration")
            if "best_single" in g:
                line += (f", {ratio_text(g['vs_best_single'], '-' if not g['vs_best_single_bound'] else 'unknown')} "
                         f"than the best single strategy ({g['best_single']})")
            out += ["", line + "."]
            goals.append((name, target, g))
        out.append("")
    if goals:
        out += ["### The goal", "",
                "`auto`, with no per-target settings: at least 10x faster to detection than plain reruns and than "
                "the better strace configuration on every call-heavy target, and never more than 1.5x slower than "
                "the best single strategy on any target.", "",
                "| target | call-heavy | vs plain | vs better strace | vs best single strategy | met |",
                "| --- | --- | ---: | ---: | ---: | --- |"]
        for name, target, g in goals:
            heavy = target.get("heavy")
            met = g.get("within_1_5x", False) and (g.get("10x", True) if heavy else True)
            best = "-" if "best_single" not in g else ratio_text(
                g["vs_best_single"], "unknown" if g["vs_best_single_bound"] else "=")
            if not target["rows"][AUTO]["found"]:
                out.append(f"| {name} | {'yes' if heavy else 'no'} | auto found none | | | no |")
                continue
            out.append(f"| {name} | {'yes' if heavy else 'no'} | {ratio_text(g.get('vs_plain'), g.get('vs_plain_kind'))} | "
                       f"{ratio_text(g.get('vs_strace'), g.get('vs_strace_kind'))} | {best} | "
                       f"{'yes' if met else 'no'} |")
        out.append("")
    if det["targets"]:
        out += [f"![detection rate per strategy](benchmarks/{STRATEGY_CHART.name})", ""]
    out += ["### Reading these figures", "",
            "Plain detection rates of a few in 300 carry wide error, and a run of the script takes 10 to 20 runs "
            "per fuzzed configuration, so ratios move between runs of the script; where a configuration found "
            "nothing its time is a lower bound (>), and a ratio against it is one too (>=). Where `auto` found "
            "nothing no ratio is shown. Plain rates also follow the machine's load: preemption opens the same "
            "windows the delays do, so on a busy machine the staggered small targets fail more often "
            "unaided.", "",
            "The small targets (issue 8's json-store and lockfile among them) make a few dozen to a few hundred "
            "intercepted calls: strace --seccomp-bpf adds little overhead there and its fixed delay bridges a "
            "fixed stagger about as well as the shim's `every`, which is the best single strategy on most of them.",
            "",
            "The call-heavy targets (flock-counter, job-queue, python inventory) make thousands of intercepted "
            "calls a run (counted under each), of which the racy path's are a handful. Plain reruns of them are cheap (5 to 90 ms) and "
            "find the bug in a few runs in 300, so being 10x faster than plain reruns needs runs that cost little "
            "more than a plain one and find the bug about ten times as often. A delay on every call (strace, and the shim's `every`) makes each run 100 to 400 times "
            "longer and keeps the processes' relative timing much as it was, so it finds the racy path hardly "
            "more often per second than plain reruns do. The strategies that keep runs cheap seldom put a delay "
            "where it matters: `sparse` makes a handful of long delays per thread among thousands of calls; "
            "`sites` switches a given call site on for one seed in four, and then fires one call in four there "
            "(flock-counter's slow path has flock call sites of its own, so `sites` finds it sometimes), and "
            "cannot tell the racy path from the correct one at all where both go through the same call sites "
            "inside libsqlite3 or the Python interpreter (job-queue, python inventory); `victims` slows whole "
            "processes for the run, so the racy gap stretches together with everything around it. `auto` "
            "draws each run's strategy and parameters from fixed shares, so its time to detection is the time "
            "of all its runs over all their detections: it pays for the arms that do not fit a target, and is "
            "within 1.5x of the best single strategy only where no one strategy does much better than its "
            "mix.", ""]
    return out


STRATEGY_CHART = ROOT / "benchmarks" / "detection-by-strategy.svg"


def write_strategy_chart(det):
    """Grouped bars: each target's detection rate under each configuration."""
    configs = [PLAIN, strace_row(200), strace_row(1000)] + [strategy_row(s) for s in STRATEGIES] + [AUTO]
    labels = ["plain", "strace 200 us", "strace 1000 us"] + [f"shim {s}" for s in STRATEGIES] + ["shim auto"]
    colors = ["#7f7f7f", "#bcbd22", "#8c564b", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#d62728"]
    names = list(det["targets"])
    if not names:
        return
    left, top, bottom, right = 60, 20, 110, 150
    group = 14 * len(configs) + 16
    width = left + right + group * len(names)
    height = 340
    plot_h = height - top - bottom
    y = lambda rate: top + (1 - rate) * plot_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>']
    for rate in [0, 0.25, 0.5, 0.75, 1]:
        parts.append(f'<line x1="{left}" x2="{left + group * len(names)}" y1="{y(rate):.1f}" y2="{y(rate):.1f}" '
                     f'stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y(rate) + 4:.1f}" text-anchor="end">{rate:.0%}</text>')
    parts.append(f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + plot_h / 2})">runs that found the bug</text>')
    for g, name in enumerate(names):
        rows = det["targets"][name]["rows"]
        x0 = left + g * group + 8
        for c, config in enumerate(configs):
            row = rows.get(config)
            x = x0 + 14 * c
            if row is None:
                parts.append(f'<text x="{x + 6}" y="{y(0) - 3:.1f}" text-anchor="middle" font-size="9" '
                             f'fill="#999">-</text>')
                continue
            h = row["rate"] * plot_h
            parts.append(f'<rect x="{x}" y="{y(row["rate"]):.1f}" width="12" height="{max(h, 1):.1f}" '
                         f'fill="{colors[c]}"><title>{name}, {config}: {row["found"]}/{row["runs"]}</title></rect>')
        cx = x0 + 7 * len(configs)
        parts.append(f'<text x="{cx}" y="{y(0) + 14:.1f}" text-anchor="end" '
                     f'transform="rotate(-35 {cx} {y(0) + 14:.1f})">{name}</text>')
    for c, label in enumerate(labels):
        ly = top + 10 + c * 18
        lx = left + group * len(names) + 15
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="12" height="12" fill="{colors[c]}"/>')
        parts.append(f'<text x="{lx + 18}" y="{ly + 1}">{label}</text>')
    parts.append("</svg>")
    STRATEGY_CHART.write_text("\n".join(parts) + "\n")


def write_report(results):
    out = ["# Benchmarks", "",
           f"Measured with `scripts/bench.sh` ({results.get('updated', '?')}) on {results.get('machine', '?')}. "
           "A shared 2-core machine is noisy: figures are medians of repeated runs, and ratios are taken "
           "between figures measured in the same run of the script. `scripts/bench.sh PART...` runs parts "
           f"alone ({', '.join(PARTS)}); `--quick` uses fewer runs.", ""]
    det = results.get("detection")
    if det:
        det = upgrade_detection(det)
        out += detection_report(det, results)
        write_strategy_chart(det)
    chart = results.get("chart")
    if chart:
        out += ["## Detection rate against mean delay", "",
                f"![detection rate against mean delay](benchmarks/detection-vs-mean.svg)", "",
                f"{chart['runs']} runs per point, every other setting at its default. Where lines overlap "
                "(at 100%), the table gives each value. The call-heavy targets are left out: at the larger "
                "means a run of them takes seconds (the detection part shows them per strategy).", "",
                "| target | " + " | ".join(f"{m} us" for m in chart["means_us"]) + " |",
                "| --- |" + " ---: |" * len(chart["means_us"])]
        for name, rates in chart["targets"].items():
            out.append(f"| {name} | " + " | ".join(f"{r:.0%}" for r in rates) + " |")
        out.append("")
    ov = results.get("overhead")
    if ov and "per_batch" in ov:
        out += ["## What the shim adds to a call", "",
                f"`{ov['command']}` (a tmpfs file): in one process, {ov['batches']} batches of "
                f"{ov['per_batch']:,} calls through the interposed symbol alternate with as many straight to "
                "libc's definition, and the probe reports the median per-batch difference. Pairing the batches "
                "in one process cancels most of a shared machine's drift, which separate processes do not see "
                f"alike. {ov['runs']} runs per configuration, the configurations alternating. Goal: within 5 ns "
                "of a direct call, for pass-through and for a call that is only counted.", "",
                "Median over the runs of the added ns per call, the runs' range in brackets; the first row, "
                "with no shim loaded, compares libc with itself.", ""]
        calls = [("fcntl64_getfl", "fcntl64(F_GETFL)"), ("pwrite64", "1-byte pwrite64"),
                 ("write", "1-byte write"), ("flock_un", "flock(LOCK_UN)")]
        out += ["| configuration | runs | " + " | ".join(label for _, label in calls) + " |",
                "| --- | ---: |" + " ---: |" * len(calls)]
        for row in ov["rows"]:
            cells = [f"{row[k + '_extra_ns']['median']:+.1f} [{row[k + '_extra_ns']['min']:+.1f}, "
                     f"{row[k + '_extra_ns']['max']:+.1f}]" for k, _ in calls]
            out.append(f"| {row['config']} | {row[calls[0][0] + '_extra_ns']['n']} | " + " | ".join(cells) + " |")
        native = ov["rows"][0]
        out += ["", "The calls themselves (libc's, median ns): " + ", ".join(
            f"{label} {native[k + '_direct_ns']['median']:.0f}" for k, label in calls) + ".", ""]
        if any("tracked" in row["config"] for row in ov["rows"]):
            out += ["The tracked rows are `delayshim run --conflicts --enable 0` around the same probe: with a "
                    "region large enough for every event, and with one full after 1,000 events (each call does "
                    "all its tracking work, writes no event). Goal for tracking: at most 150 ns added to a "
                    "tracked call. A tracked call on a descriptor finds its file (device, inode, whether it is "
                    "a regular file) in the process's descriptor cache, filled by an `fstat` at open or at the "
                    "first tracked call and forgotten at every close or replacement the shim sees, so it makes "
                    "no `fstat` of its own (before the cache, that `fstat` was most of a tracked call's cost); "
                    "`read`/`write`/`readv`/`writev` still make an `lseek` (the offset they moved from, which "
                    "another process sharing the open file may have moved), a system call as costly as the "
                    "call measured. The difference between the two tracked rows is the region's memory: the "
                    "first write to each 4 KiB page of the shared mapping faults, 25 events a page. Rows "
                    "above them are unchanged by tracking: without `DELAYSHIM_REGION` the pass-through test is "
                    "the same one load and one test (the tracking bit shares the word). fcntl(F_GETFL) is not "
                    "an event, and pays only the slow path.", ""]
    cf = results.get("conflicts")
    if cf:
        out += ["## Conflicts: precision and recall", "",
                f"`{cf['command']}`, seeds 1 to {cf['runs']} per program. Correct programs should report no "
                "potential race in any run; racy targets should report the expected kind on the expected file "
                "(goal: in at least 90% of the runs that pass, and in failing runs too).", "",
                "| program | expected | runs | passed | runs reporting a race | expected report (all runs) "
                "| expected report (passing runs) | region full |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in cf["rows"].items():
            expected = "-" if r["expect"] == "none" else f"{r['expected']}/{r['runs']}"
            passing = "-" if r["expect"] == "none" else f"{r['expected_passing']}/{r['passed']}"
            out.append(f"| {name} | {r['expect']} | {r['runs']} | {r['passed']} | {r['reported']} | {expected} | "
                       f"{passing} | {r['full']} |")
        out += ["", "The lock gaps (json-store, lock-gap, flock-counter) are one task's read-modify-write split "
                "across two epochs of a lock: reported in every run that takes that path, failing or not. "
                "lockfile's race (breaking a stale lock) is a conflict between two processes inside the "
                "check-then-unlink at once: with the default delays they overlap in every run; a run where "
                "they never overlap (no delays, `--enable 0`) orders every access through the lock file's "
                "create and unlink, and has nothing unordered to report. Tracking makes each tracked call "
                "slower (see the overhead part), which changes how often the targets fail.", "",
                """Concurrent git commits (`benchmarks/conflicts/git_commits.sh`: three shells each commit three times into one repository, retrying while another holds `index.lock`) report in every run; judged by hand: the pairs on the work-tree files (file1..3, 20 of 20 runs) are real unordered accesses, one shell writing its file while another worker's `git add` or `git commit` reads it (git's racy-clean check hashes work-tree files whose mtime is not older than the index; it tolerates the torn read by comparing again later), so the benchmark's own work-tree edits race with git, not git with itself. The pairs on `.git/index.lock` (3 of 20 runs: one process's O_EXCL create before another's rename of its lock away, which O_EXCL makes impossible) are not explained: they are ours (an event out of order, perhaps around a delayed call), not fixed. Opening `.git/index` or a ref while another process renames its new version onto it was reported before (2 pairs per run) and is no longer: rename replaces atomically.""", ""]
    mn = results.get("minimize")
    if mn:
        out += ["## Explaining a failure: minimize", "",
                f"`{mn['command']}`, per target (the defaults: each candidate replayed 10 times and kept when "
                "5 fail, twice over; each rate over 20 replays). Goal: at most 3 delays that fail at least half "
                "of the replays while no delays fail under 5%, within 5 minutes.", "",
                "| target | delays recorded | kept | replays | wall | fails: no delays | whole record | minimal set |",
                "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |"]
        for name, row in mn["rows"].items():
            if not row.get("found"):
                out.append(f"| {name} | no failure in the campaign | | | | | | |")
            elif not row.get("minimized"):
                out.append(f"| {name} | {row['recorded']} | (the whole record failed under half of its replays) | "
                           f" | {row['seconds']:.1f} s | | | |")
            else:
                r = row["rates"]
                out.append(f"| {name} | {row['recorded']} | {row['kept']} | {row['replays']} | {row['seconds']:.1f} s "
                           f"| {r.get('none', '')} | {r.get('whole', '')} | {r.get('minimal', '')} |")
        out.append("")
    cp = results.get("campaign")
    if cp:
        out += ["## Campaign disk and interrupts", "",
                f"`{cp['disk_command']}`. Per passing run: the difference between the two campaigns' "
                "output directories over the difference in runs, so the fixed part (campaign.json, the lock) "
                "cancels. Goal: under 1 KB per passing run with `--keep failures`, the default.", "",
                "| --keep | bytes per passing run (file sizes) | on disk (blocks) | campaign's peak RSS, small / large |",
                "| --- | ---: | ---: | --- |"]
        for keep, row in cp["disk"].items():
            small, large = (str(n) for n in row["runs"])
            rss = " / ".join(f"{row['figures'][n]['max_rss_kb'] or '?'} KB" for n in (small, large))
            out.append(f"| {keep} | {row['apparent_per_run']:.0f} | {row['blocks_per_run']:.0f} | {rss} |")
        rows = cp["interrupts"]["rows"]
        clean = sum(1 for r in rows if r["left_running"] == 0 and r["summary"] and r["report_status"] != 2
                    and r["status"] == (130 if r["signal"] == "SIGINT" else 143))
        out += ["", f"Interrupted at random moments: `{cp['interrupts']['command']}`. {clean} of {len(rows)} "
                "campaigns ended with 130 (SIGINT) or 143 (SIGTERM), left no process running and a summary.json "
                "that `delayshim report` read.", "",
                "| signal | after | status | left running | summary.json | report's status |",
                "| --- | ---: | ---: | ---: | --- | ---: |"]
        for r in rows:
            out.append(f"| {r['signal']} | {r['moment_s']} s | {r['status']} | {r['left_running']} | "
                       f"{'yes' if r['summary'] else 'no'} | {r['report_status']} |")
        out += ["", "Peak RSS is the campaign process's own (VmHWM, read every 50 ms until it exits). Not "
                "measured here: SIGKILL of the campaign (its watchdog then kills the runs' groups and marked "
                "processes, which tests/campaign.rs checks; `report` reads what it wrote in runs.jsonl).", ""]
    mem = results.get("memory")
    if mem:
        small, large = (str(n) for n in mem["runs"])
        out += ["## Campaign memory", "",
                f"`{mem['command']}`. Per run: the difference between the two peaks over the difference in runs. "
                "A campaign keeps counts and sums, not every run's record: summary.json's `runs` are streamed "
                "from runs.jsonl at the end (an offset per run in memory); and of each run's conflicts region "
                "(40 MiB, mostly untouched) it reads the claimed events only, where main at 82c135a read all of it for "
                "every run (about 41 MB per job at the peak, and most of main's time here).", "",
                f"| build | peak RSS, {small} runs | peak RSS, {large} runs | bytes per run | seconds, {large} runs "
                "| runs in summary.json |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for row in mem["rows"]:
            f_small, f_large = row["figures"][small], row["figures"][large]
            out.append(f"| {row['build']} | {f_small['max_rss_kb']} KB | {f_large['max_rss_kb']} KB | "
                       f"{row['bytes_per_run']:.0f} | {f_large['seconds']:.1f} | {f_large['summary_runs']} |")
        out += ["", "Not measured: a resumed campaign, which reads the records of the runs done before once "
                "(then keeps only their sums); memory of `report`, which reads every record; 2000 runs of both "
                "builds in one run of the part (main's take about 4.5 minutes on this machine; `--quick` makes "
                "500).", ""]
    drv = results.get("driver")
    dc = results.get("diskcache")
    if drv or dc:
        out += ["## The 8x8x100 experiment", "",
                "Whole runs, fork, open and check included, timed from outside.", "",
                "| configuration | runs | min | median | max |", "| --- | ---: | ---: | ---: | ---: |"]
        for row in (drv or {}).get("rows", []):
            out.append(f"| driver, {row['config']} | {fmt_spread(row['seconds'])} |")
        if drv and "original" in drv:
            out.append(f"| {drv['original']['config']} (with the driver rows) | "
                       f"{fmt_spread(drv['original']['seconds'])} |")
        for row in (dc or {}).get("rows", []):
            passed = f" ({row['passed']}/{row['seconds']['n']} passed)"
            out.append(f"| {row['config']}{passed} | {fmt_spread(row['seconds'])} |")
        out.append("")
        if drv:
            med = {r["config"]: r["seconds"]["median"] for r in drv["rows"]}
            native = med["native"]
            off = med["shim, delays off (DELAYSHIM_ENABLE=0)"]
            line = f"The shim loaded with delays off takes {off / native:.2f}x native time."
            if "original" in drv:
                original = drv["original"]["seconds"]["median"]
                line += (f" The driver runs the experiment {original / native:.1f}x faster than python-diskcache "
                         f"({fmt_s(native)} against {fmt_s(original)}, medians of {drv['original']['seconds']['n']} "
                         "runs each, measured in turn in one run of the script).")
            if dc:
                plain = dc["rows"][0]["seconds"]["median"]
                for row in dc["rows"][1:]:
                    line += f" {row['config'].replace('python-diskcache ', '').capitalize()}: {row['seconds']['median'] / plain:.1f}x its plain time."
            out += [line, ""]
    incr = results.get("incr")
    if incr:
        out += ["## Increment latency", "",
                f"8 processes x 1000 increments of one key, {incr['runs']} runs; each cell is the median over "
                "runs (min - max).", "",
                "| implementation | p50 | p90 | p99 | max | wall |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        implementations = [("delayshim-cache (Rust)", "ours"), ("python-diskcache 5.6.3", "diskcache"),
                           ("delayshim-cache, on tmpfs", "ours_tmpfs"), ("python-diskcache, on tmpfs", "diskcache_tmpfs")]
        for name, key in [(n, k) for n, k in implementations if k in incr]:
            cells = []
            for field in ["p50_us", "p90_us", "p99_us", "max_us"]:
                s = incr[key][field]
                cells.append(f"{s['median']:.0f} us ({s['min']:.0f} - {s['max']:.0f})")
            w = incr[key]["wall_s"]
            cells.append(f"{w['median']:.3f} s")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out += ["", "On disk, part of the tail is the WAL checkpoint: every 1000 pages one writer copies the log "
                "into the database and fsyncs it (synchronous=NORMAL, diskcache's setting too) while holding the "
                "write lock; the tmpfs rows, where fsync costs nothing, show how much. The rest is contention: the "
                "Rust cache pushes two to three times as many increments a second through the same lock (the "
                "wall column), so more writers queue behind each checkpoint or preempted lock holder (8 "
                "processes on 2 cores), polling every 10-500 us. diskcache waits in SQLite's busy handler, "
                "which sleeps in steps of up to 100 ms: hence its far larger max.", ""]
    if results.get("suite"):
        import bench_suite
        out += bench_suite.report(results["suite"])
    if results.get("suite_auto"):
        import bench_suite
        out += bench_suite.report_auto(results["suite_auto"])
    # The seccomp backend's section, measured by scripts/bench-seccomp.py.
    seccomp = ROOT / "benchmarks" / "seccomp.md"
    if seccomp.exists():
        out += [seccomp.read_text().rstrip(), ""]
    out += ["## Commands", "", "```sh", "scripts/bench.sh            # everything (about 25 minutes)",
            "scripts/bench.sh --quick    # fewer runs", "scripts/bench.sh detection  # one part", "```", ""]
    REPORT.write_text("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", help=f"parts to run: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--runs", type=int, help="detection: runs per fuzzed configuration (default 30, quick 10)")
    parser.add_argument("--plain-runs", type=int, help="detection: plain reruns per target (default 300, quick 60)")
    parser.add_argument("--config-seconds", type=float,
                        help="detection: a configuration starts no more runs after this many seconds "
                             "(default 120, quick 20; plain reruns get twice this)")
    parser.add_argument("--target", dest="targets", action="append",
                        help="detection and chart: only this target (repeatable); others' stored figures stay")
    args = parser.parse_args()
    parts = args.parts or PARTS
    if parts == [REPORT_ONLY]:
        parts = []
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part {', '.join(sorted(unknown))}; the parts are {', '.join(PARTS)}")
    if shutil.which("strace") is None and ({"detection", "diskcache"} & set(parts)):
        sys.exit("bench: strace is needed (apt-get install strace)")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.parent.mkdir(exist_ok=True)
    for part in parts:
        log(f"running {part}")
        if part == "suite":
            import bench_suite
            for measured in bench_suite.part_suite(args, sys.modules[__name__]):
                old = results.get("suite", {}).get("harnesses", {})
                measured = dict(measured, harnesses={**old, **measured["harnesses"]})
                results["suite"] = measured
                results["updated"] = datetime.date.today().isoformat()
                results["machine"] = machine()
                RESULTS.write_text(json.dumps(results, indent=1) + "\n")
                write_report(results)
            continue
        if part == "auto":
            import bench_suite
            for measured in bench_suite.part_auto(args, sys.modules[__name__], results["suite"]):
                old = results.get("suite_auto", {}).get("harnesses", {})
                results["suite_auto"] = dict(measured, harnesses={**old, **measured["harnesses"]})
                results["updated"] = datetime.date.today().isoformat()
                RESULTS.write_text(json.dumps(results, indent=1) + "\n")
                write_report(results)
            continue
        if part in ("detection", "chart"):
            measured = globals()[f"part_{part}"](args)
            if args.targets and part in results:
                # Only some targets were measured: keep the others' figures.
                old = upgrade_detection(results[part]) if part == "detection" else results[part]
                measured["targets"] = {**old["targets"], **measured["targets"]}
            results[part] = measured
        else:
            results[part] = globals()[f"part_{part}"](args.quick)
        results["updated"] = datetime.date.today().isoformat()
        results["machine"] = machine()
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    if "chart" in results:
        write_chart(results["chart"])
    write_report(results)
    log(f"wrote {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
