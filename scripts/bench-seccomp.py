#!/usr/bin/env python3
"""The seccomp backend's benchmarks, printed as Markdown for BENCHMARKS.md.

  scripts/bench-seccomp.py [--calls N] [--reps N] [--trials N] [--gap US]

1. Per-call cost of a held call with delays off (DELAYSHIM_MEAN_US=0: the
   call is held, described, decided and let through), against the preload
   shim with the same setting and `strace -f --seccomp-bpf` tracing the
   same call, all over `held writes FILE N` (N pwrite64 calls).
2. Time to detection of a JSON-file read-modify-write race in three
   programs the shim cannot enter (static C, stdio-only C, Go): `delayshim
   fuzz` with default settings (--confirm 0, stopping at the first
   failure), plain reruns, and strace's delay injection on the same calls.
Needs cc (static glibc), go and strace; builds with cargo --release.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target")
OUT = os.path.join(TARGET, "bench-seccomp")
DELAYSHIM = os.path.join(TARGET, "release", "delayshim")


def build():
    os.makedirs(OUT, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "delayshim", "-p", "delayshim-cli"],
                   cwd=ROOT, check=True)
    c = os.path.join(ROOT, "tests", "c")
    programs = {
        "held": ["cc", "-O2", "-pthread", "-o", f"{OUT}/held", f"{c}/held.c"],
        "static": ["cc", "-O2", "-static", "-o", f"{OUT}/jsonrace-static", f"{c}/jsonrace.c"],
        "stdio": ["cc", "-O2", "-DSTDIO_ONLY", "-o", f"{OUT}/jsonrace-stdio", f"{c}/jsonrace.c"],
    }
    for command in programs.values():
        subprocess.run(command, check=True)
    env = dict(os.environ, GOCACHE=f"{OUT}/gocache", GO111MODULE="off")
    subprocess.run(["go", "build", "-o", f"{OUT}/jsonrace-go", os.path.join(ROOT, "tests", "go", "jsonrace.go")],
                   env=env, check=True)


def timed(command, env=None):
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, done.returncode


def per_call(calls, reps):
    scratch = tempfile.mkdtemp(prefix="delayshim-bench-")
    file = os.path.join(scratch, "f")
    program = [f"{OUT}/held", "writes", file, str(calls)]
    shim = subprocess.run([DELAYSHIM, "shim-path"], capture_output=True, text=True, check=True).stdout.strip()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DELAYSHIM_") and k != "LD_PRELOAD"}
    off = dict(clean, DELAYSHIM_FUNCS="pwrite", DELAYSHIM_MEAN_US="0")
    configs = {
        "native": (program, clean),
        "preload shim": (program, dict(off, LD_PRELOAD=shim)),
        "seccomp backend": ([DELAYSHIM, "run", "--backend", "seccomp", "--"] + program, off),
        "strace --seccomp-bpf": (["strace", "-f", "--seccomp-bpf", "-e", "trace=pwrite64", "-o", "/dev/null"] + program, clean),
    }
    # Each configuration at N and 2N calls: the difference is N calls'
    # worth, without the start and end of the program and the supervisor.
    medians = {}
    for _ in range(reps):  # interleaved, so load drifts hit every config alike
        for name, (command, env) in configs.items():
            for n in (calls, 2 * calls):
                elapsed, status = timed(command[:-1] + [str(n)], env)
                assert status == 0, (name, status)
                medians.setdefault((name, n), []).append(elapsed)
    shutil.rmtree(scratch)
    medians = {k: statistics.median(v) for k, v in medians.items()}
    per = {name: (medians[(name, 2 * calls)] - medians[(name, calls)]) / calls * 1e9 for name in configs}
    print(f"Per-call cost of a 1-byte pwrite64 to a file: (median run time at {2 * calls} calls - at {calls}) / "
          f"{calls}, medians of {reps} interleaved runs each:\n")
    print("| configuration | per call | added per call |")
    print("| --- | --- | --- |")
    added = {}
    for name, value in per.items():
        added[name] = value - per["native"]
        cost = "-" if name == "native" else f"{added[name]:,.0f} ns"
        print(f"| {name} | {value:,.0f} ns | {cost} |")
    print(f"\nseccomp backend / strace: {added['seccomp backend'] / added['strace --seccomp-bpf']:.2f}x "
          f"strace's added cost per call (goal: at most 0.5x).\n")
    # Calls outside the filter: the kernel's per-filter action cache lets
    # a call whose answer depends on its number alone skip the program.
    n = calls * 50
    times = {}
    for _ in range(reps):
        for count in (n, 2 * n):
            other = [f"{OUT}/held", "other", str(count)]
            times.setdefault(("native", count), []).append(timed(other, clean)[0])
            times.setdefault(("held", count), []).append(
                timed([DELAYSHIM, "run", "--backend", "seccomp", "--"] + other, off)[0])
    m = {k: statistics.median(v) for k, v in times.items()}
    native = (m[("native", 2 * n)] - m[("native", n)]) / n * 1e9
    held = (m[("held", 2 * n)] - m[("held", n)]) / n * 1e9
    print(f"Calls outside the filter (getppid, the same difference of {2 * n} and {n} calls): native "
          f"{native:.1f} ns per call, beneath the filter {held:.1f} ns: {held - native:+.1f} ns.\n")


def until_failure(run_once, cap_runs, cap_seconds):
    """Runs until one fails; (seconds, runs) or None when capped."""
    start = time.perf_counter()
    for runs in range(1, cap_runs + 1):
        if run_once(runs) != 0:
            return time.perf_counter() - start, runs
        if time.perf_counter() - start > cap_seconds:
            break
    return None


def plain(label, program, env, cap_runs=1000, cap_seconds=60):
    """Plain reruns as one series: the failure rate, and the expected time
    to detection (time per run / rate), or a lower bound."""
    start, failures, runs = time.perf_counter(), 0, 0
    while runs < cap_runs and time.perf_counter() - start < cap_seconds:
        runs += 1
        failures += subprocess.run(program, env=env, stdout=subprocess.DEVNULL).returncode != 0
    spent = time.perf_counter() - start
    expected = f"{spent / failures:.2f} s (expected)" if failures else f"> {spent:.0f} s"
    print(f"| {label} | plain reruns | {failures}/{runs} runs failed | {expected} | "
          f"{f'{runs / failures:g} (expected)' if failures else f'> {runs}'} |")


def detection(trials, rounds, gap):
    # On tmpfs: fsync costs nothing, so natively the rounds are short and
    # the two workers rarely overlap.
    scratch = tempfile.mkdtemp(prefix="delayshim-bench-", dir="/dev/shm")
    json_file = os.path.join(scratch, "counter.json")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DELAYSHIM_") and k != "LD_PRELOAD"}
    targets = {
        "static C (gcc -static, open/read/write/flock)": [f"{OUT}/jsonrace-static", json_file, "raw", str(rounds), str(gap)],
        "stdio C (fopen/fscanf/fprintf, dynamic)": [f"{OUT}/jsonrace-stdio", json_file, "stdio", str(rounds), str(gap)],
        "Go (os.OpenFile, syscall.Flock)": [f"{OUT}/jsonrace-go", json_file, str(rounds), str(gap)],
    }
    calls = "write,openat,read,flock,fsync,ftruncate,close"
    print(f"Time to detection of the JSON read-modify-write race ({rounds} rounds per worker, the second "
          f"starting {gap} us after the first), "
          f"{trials} trials per configuration, each until the first failing run:\n")
    print("| program | method | detected | median time | median runs |")
    print("| --- | --- | --- | --- | --- |")
    for label, program in targets.items():
        out = os.path.join(scratch, "fuzz")

        def fuzz(trial):
            def one(_):
                shutil.rmtree(out, ignore_errors=True)
                return subprocess.run([DELAYSHIM, "fuzz", "--seed", str(trial + 1), "--runs", "100", "--confirm", "0",
                                       "--out", out, "--"] + program, env=clean,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            start = time.perf_counter()
            status = one(0)
            if status != 1:
                return None
            runs = sum(1 for d in os.listdir(out) if d.startswith("run-"))
            return time.perf_counter() - start, runs

        methods = {
            "delayshim fuzz (defaults)": fuzz,
            "plain reruns": None,
            "strace -f --seccomp-bpf inject delay_enter=200us": lambda _t: until_failure(
                lambda _r: subprocess.run(["strace", "-f", "--seccomp-bpf", "-o", "/dev/null", "-e", f"trace={calls}",
                                           "-e", f"inject={calls}:delay_enter=200"] + program, env=clean,
                                          stdout=subprocess.DEVNULL).returncode, 200, 20),
        }
        for method, measure in methods.items():
            if measure is None:
                plain(label, program, clean)
                continue
            results = [measure(t) for t in range(trials)]
            found = [r for r in results if r]
            if found:
                t = statistics.median(r[0] for r in found)
                n = statistics.median(r[1] for r in found)
                print(f"| {label} | {method} | {len(found)}/{trials} | {t:.2f} s | {n:g} |")
            else:
                print(f"| {label} | {method} | 0/{trials} | - | - |")
            sys.stdout.flush()
    shutil.rmtree(scratch)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--gap", type=int, default=20000)
    parser.add_argument("parts", nargs="*", default=["cost", "detection"])
    args = parser.parse_args()
    build()
    if "cost" in args.parts:
        per_call(args.calls, args.reps)
    if "detection" in args.parts:
        detection(args.trials, args.rounds, args.gap)


if __name__ == "__main__":
    main()
