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
import shutil
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
PARTS = ["overhead", "driver", "incr", "detection", "chart", "diskcache"]
# `report` measures nothing: it rewrites BENCHMARKS.md from results.json.
REPORT_ONLY = "report"

# The shim's default mean, used for strace's fixed delay too.
DEFAULT_MEAN_US = 200
# strace names the system calls, not the libc aliases.
STRACE_CALLS = "pwrite64,pwritev,pwritev2,fcntl,fsync,fdatasync"


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
    # The probe makes five rounds of `calls` and keeps the best: 10^7 calls
    # of each function per run.
    calls = 4 * 10**5 if quick else 2 * 10**6
    rounds = 3 if quick else 5
    configs = [
        ("native", clean_env()),
        ("shim, delays off (DELAYSHIM_ENABLE=0)", shim_env({"DELAYSHIM_ENABLE": "0"})),
        ("shim, function not selected (DELAYSHIM_FUNCS=fsync)", shim_env({"DELAYSHIM_FUNCS": "fsync"})),
    ]
    samples = {name: {"fcntl64_getfl_ns": [], "pwrite64_ns": []} for name, _ in configs}
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        # Rounds interleave the configurations, so a slow spell of the
        # machine falls on all of them alike.
        for _ in range(rounds):
            for name, env in configs:
                status, _, stdout = timed([str(RELEASE / "probe"), "passthrough", tmp, str(calls)], env)
                assert status == 0, stdout
                for field in stdout.split():
                    key, value = field.split("=")
                    samples[name][key].append(float(value))
    rows = [{"config": name, **{k: spread(v) for k, v in samples[name].items()}} for name, _ in configs]
    for row in rows:
        log(f"overhead: {row}")
    return {"calls": calls, "rounds": rounds, "rows": rows,
            "command": f"probe passthrough /dev/shm/DIR {calls}"}


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

def targets():
    """name -> (command, tuned settings, note). Each exits 1 when its bug shows."""
    py_db = "{tmp}/racy.db"
    return {
        "driver get-set": (
            [str(RELEASE / "driver"), "--op", "get-set", "--workers", "2", "--threads", "1", "--keys", "10",
             "--shards", "1", "--stagger-us", "1000"],
            {"DELAYSHIM_FCNTL": "unlock", "DELAYSHIM_WHEN": "after", "DELAYSHIM_MEAN_US": "1000"},
            "2 workers x 1 thread x 10 keys on one shard, the second worker 1 ms later"),
        "check-then-insert": (
            [str(RELEASE / "check-then-insert")],
            {"DELAYSHIM_MEAN_US": "20"},
            "2 processes x 5 keys over SQLite, the second process 2 ms later"),
        "lock-gap": (
            [str(RELEASE / "lock-gap")],
            {"DELAYSHIM_DIST": "fixed", "DELAYSHIM_MEAN_US": "1000"},
            "2 processes x 1 increment, fcntl locks + pread/pwrite, no SQLite, the second 1 ms later"),
        "python sqlite3": (
            ["python3", str(ROOT / "targets" / "python" / "sqlite_incr.py"), py_db, "--racy", "--stagger-ms", "1"],
            {"DELAYSHIM_MEAN_US": "20"},
            "python3 + Debian's libsqlite3, 2 processes x 3 increments, the second 1 ms later"),
    }


def detect(command, env, runs, prefix=(), seed_base=None):
    """Runs command `runs` times; returns detections and wall times."""
    found, times, errors = 0, [], 0
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            run_env = dict(env)
            if seed_base is not None:
                run_env["DELAYSHIM_SEED"] = str(seed_base + i)
            argv = list(prefix) + [part.replace("{tmp}", tmp) for part in command]
            status, seconds, _ = timed(argv, run_env, timeout=300)
        times.append(seconds)
        if status == 1:
            found += 1
        elif status != 0:
            errors += 1
    mean = statistics.fmean(times)
    rate = found / runs
    return {"runs": runs, "found": found, "errors": errors, "rate": rate, "mean_s": mean,
            "seconds": spread(times), "ttd_s": mean / rate if found else None,
            "ttd_lower_bound_s": None if found else runs * mean}


def strace_prefix(mean_us):
    # --seccomp-bpf stops only at the traced calls: strace at its fastest.
    return ["strace", "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", f"trace={STRACE_CALLS}",
            "-e", f"inject={STRACE_CALLS}:delay_enter={mean_us}"]


def part_detection(quick):
    fuzzed_runs = 10 if quick else 50
    plain_runs = 50 if quick else 400
    result = {}
    for name, (command, tuned, note) in targets().items():
        tuning = " ".join(f"{k}={v}" for k, v in tuned.items())
        rows = {
            "plain reruns": detect(command, clean_env(), plain_runs),
            "shim, defaults": detect(command, shim_env(), fuzzed_runs, seed_base=1000),
            f"shim, tuned ({tuning})": detect(command, shim_env(tuned), fuzzed_runs, seed_base=2000),
            f"strace inject delay_enter={DEFAULT_MEAN_US} us": detect(
                command, clean_env(), fuzzed_runs, prefix=strace_prefix(DEFAULT_MEAN_US)),
        }
        tuned_mean = int(tuned.get("DELAYSHIM_MEAN_US", DEFAULT_MEAN_US))
        if tuned_mean != DEFAULT_MEAN_US:
            rows[f"strace inject delay_enter={tuned_mean} us"] = detect(
                command, clean_env(), fuzzed_runs, prefix=strace_prefix(tuned_mean))
        result[name] = {"command": " ".join(command), "note": note, "rows": rows}
        for config, row in rows.items():
            log(f"detection: {name}: {config}: {row['found']}/{row['runs']} in {row['mean_s']:.3f} s/run")
    return result


def part_chart(quick):
    runs = 6 if quick else 20
    means = [20, 50, 100, 200, 500, 1000, 2000]
    result = {"runs": runs, "means_us": means, "targets": {}}
    for name, (command, _, _) in targets().items():
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
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
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


def write_report(results):
    out = ["# Benchmarks", "",
           f"Measured with `scripts/bench.sh` ({results.get('updated', '?')}) on {results.get('machine', '?')}. "
           "A shared 2-core machine is noisy: figures are medians of repeated runs, and ratios are taken "
           "between figures measured in the same run of the script. `scripts/bench.sh PART...` runs parts "
           f"alone ({', '.join(PARTS)}); `--quick` uses fewer runs.", ""]
    det = results.get("detection")
    if det:
        out += ["## Time to detection", "",
                "Each target has a real concurrency bug and exits 1 when it shows. Expected time to detection "
                "= mean wall time per run / detection rate; where no run found the bug, the time spent is a "
                "lower bound (shown with >). strace (with --seccomp-bpf, its fastest mode) injects a fixed delay "
                "before every pwrite, fcntl and fsync system call: at the shim's default mean, and at the tuned "
                "configuration's mean where that differs.", ""]
        headline = []
        for name, target in det.items():
            command = target["command"].replace(f"{RELEASE}/", "target/release/").replace(f"{ROOT}/", "")
            out += [f"### {name}", "", f"`{command}`: {target['note']}.", "",
                    "| configuration | runs | found | rate | wall per run (min / median / max) | expected time to detection |",
                    "| --- | ---: | ---: | ---: | --- | ---: |"]
            rows = target["rows"]
            for config, row in rows.items():
                s = row["seconds"]
                ttd = fmt_s(row["ttd_s"]) if row["ttd_s"] else f"> {fmt_s(row['ttd_lower_bound_s'])}"
                errors = f" ({row['errors']} errors)" if row["errors"] else ""
                out.append(f"| {config} | {row['runs']} | {row['found']}{errors} | {row['rate']:.1%} | "
                           f"{fmt_s(s['min'])} / {fmt_s(s['median'])} / {fmt_s(s['max'])} | {ttd} |")
            shim_best = min((r["ttd_s"] for c, r in rows.items() if c.startswith("shim") and r["ttd_s"]),
                            default=None)
            ratios = []
            for config, row in rows.items():
                if config.startswith("shim") or shim_best is None:
                    continue
                other = row["ttd_s"] or row["ttd_lower_bound_s"]
                sign = "" if row["ttd_s"] else ">"
                ratio = other / shim_best
                if ratio >= 1:
                    ratios.append(f"{sign}{ratio:.1f}x faster than {config}")
                else:
                    ratios.append(f"{1 / ratio:.1f}x slower than {config}")
            if shim_best:
                line = f"Best shim configuration: {', '.join(ratios)}."
                out += ["", line]
                headline.append(f"{name}: {', '.join(ratios)}")
            out.append("")
        results["headline"] = headline
        out += ["### Reading these figures", "",
                "The goal was an expected time to detection at least 10x shorter than plain reruns and than "
                "strace's injection on every target. Against plain reruns the margin depends on how rare the "
                "bug is without help: plain detection rates of a few in 400 carry wide error, so the ratios "
                "move between runs of the script. Against strace it is met only where strace's fixed delay misses "
                "the window altogether (lock-gap at 200 us), and the reason is structural: each target makes only a few dozen pwrite/fcntl/fsync calls, so strace with "
                "--seccomp-bpf (which stops only at those calls) adds little overhead, and a fixed delay bridges "
                "a fixed 1 ms stagger as well as or better than an exponential one with the same mean "
                "(lock-gap). The shim's lead is in programs that make many calls, where strace's stops dominate: "
                "the 8x8x100 experiment below runs 6-7x slower under strace --seccomp-bpf and about 60x slower "
                "under plain strace before any delay is injected, against 1.02x under the shim. What strace "
                "cannot do at all: random delays per thread from a seed, lock versus unlock selection, "
                "per-path filtering, delays after the call.", ""]
    chart = results.get("chart")
    if chart:
        out += ["## Detection rate against mean delay", "",
                f"![detection rate against mean delay](benchmarks/detection-vs-mean.svg)", "",
                f"{chart['runs']} runs per point, every other setting at its default. Where lines overlap "
                "(at 100%), the table gives each value.", "",
                "| target | " + " | ".join(f"{m} us" for m in chart["means_us"]) + " |",
                "| --- |" + " ---: |" * len(chart["means_us"])]
        for name, rates in chart["targets"].items():
            out.append(f"| {name} | " + " | ".join(f"{r:.0%}" for r in rates) + " |")
        out.append("")
    ov = results.get("overhead")
    if ov:
        out += ["## Pass-through cost per call", "",
                f"`{ov['command']}` (a tmpfs file): five rounds of {ov['calls']:,} calls of each function per run, "
                "of which the probe reports the fastest; runs of the configurations alternate.", "",
                "| configuration | runs | fcntl64(F_GETFL) ns (min / median / max) | 1-byte pwrite64 ns (min / median / max) |",
                "| --- | ---: | --- | --- |"]
        native = ov["rows"][0]
        for row in ov["rows"]:
            f, p = row["fcntl64_getfl_ns"], row["pwrite64_ns"]
            extra = ""
            if row is not native:
                extra = (f" ({f['median'] - native['fcntl64_getfl_ns']['median']:+.1f} / "
                         f"{p['median'] - native['pwrite64_ns']['median']:+.1f} ns)")
            out.append(f"| {row['config']}{extra} | {f['n']} | {f['min']:.1f} / {f['median']:.1f} / {f['max']:.1f} | "
                       f"{p['min']:.1f} / {p['median']:.1f} / {p['max']:.1f} |")
        out.append("")
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
    out += ["## Commands", "", "```sh", "scripts/bench.sh            # everything (about 25 minutes)",
            "scripts/bench.sh --quick    # fewer runs", "scripts/bench.sh detection  # one part", "```", ""]
    REPORT.write_text("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", help=f"parts to run: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer runs")
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
