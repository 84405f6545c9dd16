#!/usr/bin/env python3
"""How `auto`'s choice of cells would do on the real-program suite, from
the suite's own measurements (benchmarks/results.json, part `suite`): each
harness's single cells as Bernoulli programs with their measured failure
rate and mean run time. Each harness's prior is the mean rate of the OTHER
eleven (leave one out), so the figures estimate what the priors in
campaign/src/auto/arms.rs do on a program the suite did not contain.

Prints, per policy, the expected time to the first failure in native runs
(calibration run counted) per harness, the median over the suite, and the
ratio to the best single cell in hindsight (its mean run time over its
rate). Policies: `round` (the earlier auto: every cell once, cheapest
first, then Thompson sampling from a flat pessimistic prior, cost^0.25),
and `prior w=W` (auto now: the best posterior mean per second, one run in
ten by Thompson sampling, prior weight W runs).

    scripts/simulate_auto.py [--reps 400]
"""
import argparse
import json
import random
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results.json"
CALIBRATION = 1.0  # one native run
MAX_RUNS = 60


def load():
    harnesses = json.loads(RESULTS.read_text())["suite"]["harnesses"]
    programs = {}
    for name, h in harnesses.items():
        native = h["native_median_s"]
        programs[name] = {config[len("shim, "):]: (row["found"] / row["runs"], row["mean_s"] / native)
                          for config, row in h["rows"].items() if config.startswith("shim, ")}
    return programs


def prior_of(programs, held_out, weight):
    cells = programs[held_out]
    others = [p for p in programs if p != held_out]
    prior = {}
    for cell in cells:
        mean = statistics.fmean(programs[p][cell][0] for p in others)
        mean = min(max(mean, 0.01), 0.99)
        prior[cell] = (mean * weight, (1 - mean) * weight)
    return prior


def policy_prior(weight, explore=0.1):
    def choose(programs, name, seen, rng):
        prior = prior_of(programs, name, weight)
        thompson = rng.random() < explore
        best = None
        for cell, (cost_runs, (a, b)) in ((c, (programs[name][c][1], prior[c])) for c in prior):
            failed, passed = seen[cell]
            if thompson:
                score = rng.betavariate(a + failed, b + passed) / cost_runs
            else:
                score = (a + failed) / (a + b + failed + passed) / cost_runs
            if best is None or score > best[0]:
                best = (score, cell)
        return best[1]
    return choose


def policy_round(programs, name, seen, rng):
    cells = programs[name]
    untried = [c for c in cells if sum(seen[c]) == 0]
    if untried:
        return min(untried, key=lambda c: cells[c][1])
    return max(cells, key=lambda c: rng.betavariate(0.05 + seen[c][0], 1.0 + seen[c][1]) / cells[c][1] ** 0.25)


def time_to_first_failure(programs, name, choose, rng):
    seen = {cell: [0, 0] for cell in programs[name]}
    spent = CALIBRATION
    for _ in range(MAX_RUNS):
        cell = choose(programs, name, seen, rng)
        rate, cost_runs = programs[name][cell]
        spent += cost_runs
        if rng.random() < rate:
            return spent
        seen[cell][1] += 1
    return spent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400)
    args = parser.parse_args()
    programs = load()
    best = {n: min((c / r for r, c in cells.values() if r > 0), default=None) for n, cells in programs.items()}
    policies = [("round", policy_round)] + [(f"prior w={w}", policy_prior(w)) for w in (1, 2, 4, 8)]
    print("policy        median  ratio to best (median, max)  per harness")
    for label, choose in policies:
        rng = random.Random(1)
        ttd = {n: statistics.fmean(time_to_first_failure(programs, n, choose, rng) for _ in range(args.reps))
               for n in programs}
        ratios = [ttd[n] / best[n] for n in programs if best[n]]
        print(f"{label:12s} {statistics.median(ttd.values()):6.1f}  {statistics.median(ratios):5.2f} {max(ratios):6.2f}"
              "                 " + " ".join(f"{n}={t:.1f}" for n, t in ttd.items()))


if __name__ == "__main__":
    main()
