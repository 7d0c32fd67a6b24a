#!/usr/bin/env python
"""Fuzz fxminimize.minimize with random architectures (fxminimize.testing.fuzz).

    python tools/fuzz.py --cases 10000 --seed 0 --out fuzz_out
    python tools/fuzz.py --replay tests/fuzz_cases/<file>.json      # rerun one saved case
    python tools/fuzz.py --seed 1234 --cases 1 -v                    # rerun case seed 1234

Case i uses seed S+i. Every failure (wrong answer, internal error, mutated model) is written
to DIR/case_<seed>.json (spec + outcome + a command that reproduces it); with --shrink
(default on) a smaller spec that fails the same way is searched first (blocks and dead-structure
ops removed one at a time) and saved as well, for the first failure of each kind (status +
message with numbers masked). A summary is printed at the end (and written to
DIR/summary.json, also every 100 cases and on Ctrl-C / SIGTERM): cases, passed, refused (with reasons),
failures, missed removals, invalid. Exit status 1 if any case failed.
See docs/fuzzing.md.
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import re
import sys
import time
import warnings


def _setup():
    import signal

    def _term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)   # kill <pid>: stop, write the summary of what ran
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import logging
    logging.disable(logging.WARNING)
    import torch
    torch.set_num_threads(1)


def run_spec(spec):
    from fxminimize.testing import fuzz
    try:
        model, ex, desc = fuzz.build_case(spec)
    except Exception as e:  # noqa: BLE001 - a broken (e.g. hand-shrunk) spec
        return fuzz.Outcome("invalid", f"spec does not build: {type(e).__name__}: {e}")
    return fuzz.check_case(model, ex, desc)


def _kind(outcome):
    """Failure signature used by the shrinker and for de-duplication: status + the specific part
    of the message (generic prefixes dropped, numbers masked)."""
    msg = outcome.message.splitlines()[0] if outcome.message else ""
    msg = re.sub(r"^.*?refusing to return it\. ", "", msg)
    msg = re.sub(r"^minimized model failed on [^:]*: ", "", msg)
    msg = re.sub(r"^MinimizationError: internal error while minimizing ", "", msg)
    msg = re.sub(r"[-+]?\d[\d.e+-]*", "#", msg)
    return outcome.status, msg[:80]


def shrink(spec, outcome, budget_s=120.0, log=print):
    """Greedy: drop dead ops, trailing/inner blocks, masks/sparsity/aux while the failure persists."""
    want = _kind(outcome)
    t0 = time.time()
    best = copy.deepcopy(spec)

    def same(s):
        o = run_spec(s)
        return o.failed and _kind(o) == want, o

    def attempt(s):
        nonlocal best
        if time.time() - t0 > budget_s:
            return False
        ok, _ = same(s)
        if ok:
            best = s
        return ok

    changed = True
    while changed and time.time() - t0 < budget_s:
        changed = False
        for key, val in (("via", "zero"), ("sparsity", 0.0)):
            if best.get(key) != val:
                s = copy.deepcopy(best)
                s[key] = val
                changed |= attempt(s)
        if best["out"].get("aux"):
            s = copy.deepcopy(best)
            s["out"]["aux"] = False
            changed |= attempt(s)
        # drop blocks that keep the width (then their params/ops are dropped and later ones renamed)
        i = len(best["blocks"]) - 1
        while i >= 0:
            s = _drop_block(best, i)
            if s is not None and attempt(s):
                changed = True
            i -= 1
        # drop dead ops one at a time
        i = len(best["dead"]) - 1
        while i >= 0:
            s = copy.deepcopy(best)
            del s["dead"][i]
            if attempt(s):
                changed = True
            i -= 1
        # shrink index lists of dead ops
        for j in range(len(best["dead"])):
            while j < len(best["dead"]) and len(best["dead"][j]["idx"]) > 1:
                s = copy.deepcopy(best)
                s["dead"][j]["idx"] = s["dead"][j]["idx"][:-1]
                if not attempt(s):
                    s = copy.deepcopy(best)
                    s["dead"][j]["idx"] = s["dead"][j]["idx"][1:]
                    if not attempt(s):
                        break
                changed = True
    log(f"  shrunk to {len(best['blocks'])} blocks, {len(best['dead'])} dead ops in {time.time() - t0:.0f}s")
    return best


def _drop_block(spec, i):
    b = spec["blocks"][i]
    if b["c_in"] != b["c_out"] or b["type"] in ("head", "tokpool", "pool") or b.get("stride", 1) != 1:
        return None
    if b["type"] == "conv" and b["k"] > 1 and b["pad"] != b["k"] // 2:
        return None
    s = copy.deepcopy(spec)
    del s["blocks"][i]
    dead = []
    for d in s["dead"]:
        m = re.match(r"b(\d+)\.(.*)", d["p"])
        if m:
            k = int(m.group(1))
            if k == i:
                continue
            if k > i:
                d = dict(d, p=f"b{k - 1}.{m.group(2)}")
        dead.append(d)
    s["dead"] = dead
    return s


def save_case(out_dir, name, spec, outcome, seed=None):
    os.makedirs(out_dir, exist_ok=True)
    from fxminimize.testing import fuzz
    path = os.path.join(out_dir, f"{name}.json")
    rec = {"seed": seed, "status": outcome.status, "message": outcome.message[:4000],
           "description": fuzz.describe(spec),
           "reproduce": f"python tools/fuzz.py --replay {path}",
           "spec": spec}
    with open(path, "w") as f:
        json.dump(rec, f, indent=1)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="first case seed (case i uses seed+i)")
    ap.add_argument("--out", default="fuzz_out", help="folder for failing cases and summary.json")
    ap.add_argument("--replay", nargs="*", help="rerun saved case files (JSON with 'spec') instead")
    ap.add_argument("--no-shrink", action="store_true", help="save failures without shrinking them")
    ap.add_argument("--shrink-budget", type=float, default=120.0, help="seconds per failure for shrinking")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = ap.parse_args(argv)
    _setup()
    from fxminimize.testing import fuzz
    from tqdm import tqdm

    if args.replay:
        bad = 0
        for path in args.replay:
            with open(path) as f:
                rec = json.load(f)
            spec = rec.get("spec", rec)
            o = run_spec(spec)
            print(f"{path}: {o.status} {o.message[:2000]}")
            print(f"  {fuzz.describe(spec)}")
            bad += o.failed
        return 1 if bad else 0

    counts = collections.Counter()
    judged = []     # passed cases in which an output passed only against float64 (ill-conditioned)
    refused = collections.Counter()
    missed = []
    failures = []
    shrunk_kinds = set()
    t0 = time.time()
    done = 0
    interrupted = False

    def summary():
        return {"cases": done, "requested": args.cases, "first_seed": args.seed, "interrupted": interrupted,
                "seconds": round(time.time() - t0, 1),
                "passed": counts["ok"], "refused": counts["refused"], "failures": len(failures),
                "wrong": counts["wrong"], "internal": counts["internal"], "mutated": counts["mutated"],
                "missed": counts["missed"], "invalid": counts["invalid"],
                "refused_reasons": dict(refused.most_common()), "failure_cases": failures,
                "missed_cases": missed[:200], "float64_judged": len(judged), "float64_judged_seeds": judged[:200]}

    def write_summary():
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary(), f, indent=1)

    bar = tqdm(range(args.seed, args.seed + args.cases), desc="fuzz", unit="case", dynamic_ncols=True,
               disable=args.verbose)
    try:
        for seed in bar:
            spec = fuzz.random_spec(seed)
            o = run_spec(spec)
            counts[o.status] += 1
            if args.verbose:
                print(f"seed {seed}: {o.status} {o.params_before}->{o.params_after} {o.message[:300]}\n"
                      f"  {fuzz.describe(spec)}")
            if o.extra.get("float64_judged"):
                judged.append(seed)
            if o.status == "refused":
                refused[o.message.splitlines()[0][:160]] += 1
            elif o.status == "missed":
                missed.append((seed, o.message[:300]))
            elif o.failed:
                path = save_case(args.out, f"case_{seed}", spec, o, seed)
                tqdm.write(f"FAIL seed {seed}: {o.status}: {o.message[:300]}\n  saved {path}")
                entry = {"seed": seed, "status": o.status, "message": o.message[:500], "file": path}
                sig = _kind(o)
                if not args.no_shrink and sig not in shrunk_kinds:   # shrink the first case of each kind
                    shrunk_kinds.add(sig)
                    small = shrink(spec, o, args.shrink_budget, log=tqdm.write)
                    so = run_spec(small)
                    entry["shrunk"] = save_case(args.out, f"case_{seed}_min", small, so, seed)
                    tqdm.write(f"  shrunk: {entry['shrunk']}")
                failures.append(entry)
            done += 1
            if done % 100 == 0:
                write_summary()
            bar.set_postfix(ok=counts["ok"], fail=len(failures), refused=counts["refused"], missed=counts["missed"])
    except KeyboardInterrupt:   # Ctrl-C / SIGINT: report what ran
        interrupted = True
        bar.close()
    write_summary()
    dt = time.time() - t0
    print(f"\ncases {done} of {args.cases} (seeds {args.seed}..{args.seed + done - 1}) in {dt:.0f}s"
          + (" [interrupted]" if interrupted else ""))
    print(f"  passed   {counts['ok']}" + (f" ({len(judged)} with an ill-conditioned output judged against "
                                            f"float64: seeds {judged[:10]})" if judged else ""))
    print(f"  refused  {counts['refused']} (MinimizationError with a clear reason)")
    for r, n in refused.most_common(10):
        print(f"    {n:6d}  {r}")
    print(f"  failures {len(failures)} (wrong {counts['wrong']}, internal {counts['internal']}, "
          f"mutated {counts['mutated']})")
    for fl in failures:
        print(f"    seed {fl['seed']}: {fl['status']}: {fl['message'][:200]}\n      python tools/fuzz.py --replay "
              f"{fl.get('shrunk', fl['file'])}")
    print(f"  missed   {counts['missed']} (obviously removable structure, no channel removed)")
    for s, m in missed[:10]:
        print(f"    seed {s}: {m[:200]}")
    print(f"  invalid  {counts['invalid']} (generated model unusable; not counted as failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
