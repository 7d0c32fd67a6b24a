"""Issue 14: the CNN recipe re-tune's table (tools/tune_cnn_recipe.sh), validation accuracy only.

For every variant and exploration seed: the validation accuracy of the cycles nearest 15x and 25x
(in log ratio, as the comparison picks its reported cycles: ``comparison.report_cycles``), and the
accuracy at exactly 15x and 25x, interpolated linearly in log ratio between the two cycles that bracket each
size (variants land at slightly different sizes, and a smaller model is less accurate: the interpolated figure
compares them at the same size). The ranking (the selection rule) is the interpolated mean over both sizes and
every seed present. Test accuracy is never read.

    python tools/tune_summary.py OUTDIR        # OUTDIR/s<SEED>/cnn_<variant>.json, as the tune script writes them
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import statistics

from fxminimize.training.comparison import report_cycles

SIZES = (15.0, 25.0)


def at_size(history: list[dict], target: float) -> float:
    """Validation accuracy at ``target`` compression, interpolated in log ratio between bracketing cycles."""
    lo = max((h for h in history if h["ratio"] <= target), key=lambda h: h["ratio"])
    above = [h for h in history if h["ratio"] > target]
    if not above:
        return float("nan")
    hi = min(above, key=lambda h: h["ratio"])
    t = (math.log(target) - math.log(lo["ratio"])) / (math.log(hi["ratio"]) - math.log(lo["ratio"]))
    return lo["accuracy"] + t * (hi["accuracy"] - lo["accuracy"])


def collect(folder: str) -> dict:
    rows: dict = {}
    for path in sorted(glob.glob(os.path.join(folder, "s*", "cnn_*.json"))):
        name = os.path.basename(path)[len("cnn_"):-len(".json")]
        with open(path) as f:
            d = json.load(f)
        for run in d["runs"]:
            if run.get("done"):
                rows.setdefault(name, {})[run["seed"]] = run["squeeze_release"]["history"]
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--info", nargs="*", default=[], metavar="VARIANT",
                    help="variants that change something the rule holds fixed (the budget): shown, never ranked")
    args = ap.parse_args(argv)
    rows = collect(args.folder)
    print("| variant | seed | nearest 15x: val % @ ratio | nearest 25x: val % @ ratio | at 15x | at 25x | mean |")
    print("|---|---|---|---|---|---|---|")
    ranking = []
    for name, seeds in sorted(rows.items()):
        means = []
        for seed, hist in sorted(seeds.items()):
            by_cycle = {h["cycle"]: h for h in hist}
            near = [by_cycle[c] for c in report_cycles(hist, SIZES)]
            exact = [at_size(hist, s) for s in SIZES]
            means.append(50 * sum(exact))
            print(f"| {name} | {seed} | " + " | ".join(f"{h['accuracy'] * 100:.2f} @ {h['ratio']:.2f}x" for h in near)
                  + " | " + " | ".join(f"{a * 100:.2f}" for a in exact) + f" | {means[-1]:.2f} |")
        ranking.append((statistics.mean(means), name, sorted(seeds)))
    info = [r for r in ranking if r[1] in args.info]
    ranking = [r for r in ranking if r[1] not in args.info]
    print()
    print("| rank | variant | seeds | validation % at 15x and 25x, mean |")
    print("|---|---|---|---|")
    for i, (m, name, seeds) in enumerate(sorted(ranking, reverse=True), 1):
        print(f"| {i} | {name} | {', '.join(map(str, seeds))} | {m:.2f} |")
    for m, name, seeds in info:
        print(f"| (not ranked) | {name} | {', '.join(map(str, seeds))} | {m:.2f} |")


if __name__ == "__main__":
    main()
