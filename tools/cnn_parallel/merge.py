"""Merge the CNN run: dense + Squeeze-Release from the main run (its .partial.json, written right
after the cycles), single-pass and scratch baselines from the other runs (lists concatenated)."""
import json, sys
main_partial, *parts = sys.argv[1:-1]
out = sys.argv[-1]
p = json.load(open(main_partial))
run = p["runs"][0]
docs = [json.load(open(f)) for f in parts]
run["single_pass"] = sorted([r for d in docs for r in d["runs"][0].get("single_pass", [])], key=lambda r: r["ratio"])
run["scratch"] = sorted([r for d in docs for r in d["runs"][0].get("scratch", [])], key=lambda r: r["cycle"])
full = next(d for d in docs if "machine" in d)
res = {k: v for k, v in full.items() if k != "runs"}
res["args"] = p["args"]
res["command"] = ("see docs/results.md (CNN): main run (dense + cycles, its .partial.json) + --resume runs "
                  "(single passes) + scratch runs in separate processes, merged")
res["baseline_args"] = [d["args"] for d in docs]
res["runs"] = [run]
json.dump(res, open(out, "w"), indent=1)
print("single", [(r["target_ratio"], r["params"], r["accuracy"]) for r in run["single_pass"]])
print("scratch", [(r["cycle"], r["params"], r["accuracy"]) for r in run["scratch"]])
