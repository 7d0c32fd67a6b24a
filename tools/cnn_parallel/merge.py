"""Merge a CNN run made of separate processes into one reproduce_cnn.py JSON.

    python tools/cnn_parallel/merge.py --out tools/results/cnn.json \
        --seed-run MAIN.json BASELINE.json [BASELINE.json ...] [--seed-run MAIN.json BASELINE.json ...]

Per seed: dense + Squeeze-Release from MAIN (a run with ``--skip-single --scratch-cycles 99``, or
its ``.partial.json``), single-pass and scratch baselines from the BASELINE files (``--resume``
runs of the same seed; lists concatenated, sorted by ratio / cycle)."""
import argparse
import json

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--seed-run", nargs="+", action="append", required=True, metavar="JSON")
a = ap.parse_args()
runs, res = [], None
for main_file, *parts in a.seed_run:
    p = json.load(open(main_file))
    run = p["runs"][0]
    docs = [json.load(open(f)) for f in parts]
    for d in docs:
        if d["runs"][0]["seed"] != run["seed"]:
            raise SystemExit(f"seed mismatch: {main_file} has seed {run['seed']}, a baseline file another")
    run["single_pass"] = sorted([r for d in docs for r in d["runs"][0].get("single_pass", [])], key=lambda r: r["ratio"])
    run["scratch"] = sorted([r for d in docs for r in d["runs"][0].get("scratch", [])], key=lambda r: r["cycle"])
    runs.append(run)
    if res is None:
        full = next((d for d in [p] + docs if "machine" in d), p)
        res = {k: v for k, v in full.items() if k != "runs"}
        res["args"] = p["args"]
        res["command"] = ("see docs/results.md (CNN): per seed, a run of the dense model and the cycles, and "
                          "--resume runs (single passes, scratch) in separate processes, merged by "
                          "tools/cnn_parallel/merge.py")
        res["baseline_args"] = []
    res["baseline_args"] += [d["args"] for d in docs]
    print("seed", run["seed"], "single", [(r["target_ratio"], r["params"], r["accuracy"]) for r in run["single_pass"]])
    print("seed", run["seed"], "scratch", [(r["cycle"], r["params"], r["accuracy"]) for r in run["scratch"]])
res["runs"] = runs
json.dump(res, open(a.out, "w"), indent=1)
