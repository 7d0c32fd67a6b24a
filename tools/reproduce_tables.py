"""Tables and plots of docs/results.md from the JSON of tools/reproduce_fc.py / reproduce_cnn.py.

    python tools/reproduce_tables.py --fc tools/results/fc_matched.json --table fc
    python tools/reproduce_tables.py --cnn tools/results/cnn_matched.json --table cnn
    python tools/reproduce_tables.py --fc tools/results/fc_matched.json --plot docs/results_fc_matched.png
    python tools/reproduce_tables.py --levers tools/results/fc_lever_*.json --base tools/results/fc_matched.json
    python tools/reproduce_tables.py --cnn seed0.json seed1.json seed2.json --merge-out cnn.json --table cnn

Several JSON files (one per seed, from runs started separately with their own ``--out`` and
``--ckpt-dir``) are merged into one result (:func:`merge`) before anything is printed; the merge
refuses files whose options differ (other than the bookkeeping of :data:`PER_RUN_KEYS`), whose
split or model differ, or that hold the same seed twice. ``--merge-out`` writes the merged JSON.

One table per reported size (the ``report_cycles`` of each seed: the Squeeze-Release cycle nearest
each ``--report-ratios`` value by size). Rows: Squeeze-Release and each baseline at that cycle's
size and budget; columns: deployable ratio, **test** accuracy and the **validation** accuracy
beside it (mean ± sample sd over the seeds that have the row), epochs seen, seeds. A table is
labelled PARTIAL, naming what is missing, when a seed or a method is absent. The validation
figure is what every choice may read; the test figure is only reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics as st
import sys
from typing import Dict, List, Optional

METHODS = ("single_pass", "one_shot_release", "iterative_no_release", "scratch", "unstructured")
LABELS = {"squeeze_release": "Squeeze-Release", "single_pass": "single pass (prune once, no release)",
          "one_shot_release": "one-shot with release", "iterative_no_release": "iterative without release",
          "scratch": "same shape from scratch", "unstructured": "unstructured magnitude (never minimized; nonzeros)"}


# options that may differ between the per-seed files of one comparison: which seeds, where it wrote
PER_RUN_KEYS = frozenset({"seeds", "out", "ckpt_dir", "no_progress", "threads", "dense_from", "resume", "plot"})
# options added to the tools after some runs were made: a file without the key ran with this value
ADDED_LATER = {"distill": 0.0, "distill_temperature": 4.0, "dense_from": None, "unstructured_criterion": "magnitude"}


def merge(parts: List[dict], names: Optional[List[str]] = None) -> dict:
    """One result from the JSON of several runs of the same comparison (e.g. one process per
    seed): runs joined by seed, ``commands`` concatenated, ``dates`` and ``machine`` joined, and
    ``args["seeds"]`` the seeds present. Raises ``ValueError`` when the runs are not the same
    comparison: the model, data set or split differ, an option outside :data:`PER_RUN_KEYS`
    differs (an option missing from a file counts as its :data:`ADDED_LATER` default; any other
    missing option is refused), or two files hold the same seed."""
    names = names or [f"file {i}" for i in range(len(parts))]
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    for key in ("model", "dataset", "split"):
        for name, p in zip(names[1:], parts[1:]):
            if p.get(key) != first.get(key):
                raise ValueError(f"{name}: {key} {p.get(key)!r} differs from {names[0]}'s {first.get(key)!r}")
    keys = set().union(*(p.get("args", {}) for p in parts)) - PER_RUN_KEYS
    for k in sorted(keys):
        vals = []
        for name, p in zip(names, parts):
            a = p.get("args", {})
            if k in a:
                vals.append((name, a[k]))
            elif k in ADDED_LATER:
                vals.append((name, ADDED_LATER[k]))
            else:
                raise ValueError(f"{name} has no option {k!r} (the others do): cannot tell whether it ran the same way")
        if any(v != vals[0][1] for _, v in vals):
            raise ValueError(f"option {k!r} differs: " + ", ".join(f"{n}: {v!r}" for n, v in vals))
    runs, seen = [], {}
    for name, p in zip(names, parts):
        for r in p.get("runs", []):
            if r["seed"] in seen:
                raise ValueError(f"seed {r['seed']} is in both {seen[r['seed']]} and {name}")
            seen[r["seed"]] = name
            runs.append(r)
    out = dict(first)
    out["runs"] = sorted(runs, key=lambda r: r["seed"])
    out["args"] = dict(first.get("args", {}), seeds=sorted(seen))
    out["commands"] = [c for p in parts for c in p.get("commands", [])]
    out["dates"] = sorted({d for p in parts for d in p.get("dates", [])})
    machines = list(dict.fromkeys(p["machine"] for p in parts if p.get("machine")))
    out["machine"] = "; ".join(machines)
    out["merged_from"] = [f"{n}: seeds {sorted(r['seed'] for r in p.get('runs', []))}" for n, p in zip(names, parts)]
    return out


def load(paths: List[str]) -> dict:
    """The JSON of ``paths``, merged (:func:`merge`) when there are several."""
    parts = []
    for path in paths:
        with open(path) as f:
            parts.append(json.load(f))
    return merge(parts, [os.path.basename(p) for p in paths])


def _ms(xs: List[float], pct: bool = True, digits: int = 2) -> str:
    if not xs:
        return "—"
    k = 100 if pct else 1
    m = st.mean(xs) * k
    s = (st.stdev(xs) * k) if len(xs) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(xs) > 1 else f"{m:.{digits}f}"


def rows_at(results: dict, ratio_key: str) -> Dict[str, List[dict]]:
    """``{method: [record per seed]}`` at the cycle each seed reports for ``ratio_key``."""
    out: Dict[str, List[dict]] = {m: [] for m in ("squeeze_release",) + METHODS}
    for run in results["runs"]:
        c = run.get("report_cycles", {}).get(ratio_key)
        if c is None:
            continue
        hist = {h["cycle"]: h for h in run.get("squeeze_release", {}).get("history", [])}
        if c in hist:
            out["squeeze_release"].append(dict(hist[c], seed=run["seed"]))
        for m in METHODS:
            for r in run.get("baselines", {}).get(m, []):
                if r["cycle"] == c:
                    out[m].append(dict(r, seed=run["seed"]))
    return out


def table(results: dict, ratio_key: str, seeds_expected: Optional[List[int]] = None) -> str:
    rows = rows_at(results, ratio_key)
    seeds = seeds_expected or sorted({r["seed"] for r in results["runs"]})
    missing = []
    for m, recs in rows.items():
        have = {r["seed"] for r in recs}
        lack = [s for s in seeds if s not in have]
        if lack:
            missing.append(f"{LABELS[m]}: seed{'s' if len(lack) > 1 else ''} {', '.join(map(str, lack))}")
    title = f"#### About {float(ratio_key):g}x"
    if missing:
        title += " — PARTIAL (missing: " + "; ".join(missing) + ")"
    lines = [title, "", "| method | ratio | test accuracy (%) | validation accuracy (%) | epochs seen | seeds |",
             "|---|---|---|---|---|---|"]
    for m, recs in rows.items():
        if not recs:
            lines.append(f"| {LABELS[m]} | — | — | — | — | 0 |")
            continue
        ratios = [r["ratio"] for r in recs]
        ep = sorted({r["epochs_seen"] for r in recs})
        lines.append(f"| {LABELS[m]} | {_ms(ratios, pct=False)}x | {_ms([r['test_accuracy'] for r in recs])} "
                     f"| {_ms([r['accuracy'] for r in recs])} | {'/'.join(map(str, ep))} "
                     f"| {', '.join(str(r['seed']) for r in recs)} |")
    dense = [r["dense"] for r in results["runs"] if "dense" in r]
    if dense:
        lines.append(f"| (dense, unpruned: {dense[0]['params']:,} elements) | 1x | {_ms([d['test_accuracy'] for d in dense])} "
                     f"| {_ms([d['accuracy'] for d in dense])} | {dense[0]['epochs']} "
                     f"| {', '.join(str(r['seed']) for r in results['runs'] if 'dense' in r)} |")
    return "\n".join(lines)


def header(results: dict) -> str:
    a = results.get("args", {})
    split = results.get("split", {})
    budget = (f"dense {a.get('dense_epochs')} epochs; each cycle {a.get('ft_epochs')} masked + "
              f"{a.get('train_epochs')} after release")
    return (f"{results.get('model')} on {results.get('dataset')}. Machine: {results.get('machine')}. "
            f"Dates: {', '.join(results.get('dates', []))}. Split: train {split.get('train')}, validation "
            f"{split.get('validation')} ({split.get('validation_rule')}), test {split.get('test')}. Budget: {budget}. "
            f"Seeds asked: {a.get('seeds')}."
            + (f" Merged from: {'; '.join(results['merged_from'])}." if results.get("merged_from") else ""))


def cycles(results: dict) -> str:
    """Per seed, every Squeeze-Release cycle: size, ratio, validation and test accuracy, the
    squeeze's self-check (max abs error, checks), released zeros, epochs seen."""
    out = ["| seed | cycle | stored elements | ratio | val acc (%) | test acc (%) | check max err | checks "
           "| released | epochs seen |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        for h in run.get("squeeze_release", {}).get("history", []):
            err = "" if h.get("max_abs_error") is None else f"{h['max_abs_error']:.2g}"
            ta = "" if h.get("test_accuracy") is None else f"{100 * h['test_accuracy']:.2f}"
            out.append(f"| {run['seed']} | {h['cycle']} | {h['params']:,} | {h['ratio']:.2f}x | {100 * h['accuracy']:.2f} "
                       f"| {ta} | {err} | {h.get('verified_checks') or ''} | {h.get('released') or ''} "
                       f"| {h.get('epochs_seen', '')} |")
    return "\n".join(out)


def lever_name(results: dict) -> str:
    """What a run of tools/reproduce_levers.sh changed, read from its recorded options."""
    a = results.get("args", {})
    parts = [f"criterion {a.get('criterion')}", f"release scale {a.get('release_scale')}",
             f"{a.get('train_epochs')} epochs after release"]
    if a.get("distill"):
        parts.append(f"distillation from dense (alpha {a['distill']}, T {a.get('distill_temperature')})")
    return ", ".join(parts)


def levers(paths: List[str], base: str, seeds: Optional[List[int]] = None) -> str:
    """**Validation** accuracy only (levers are chosen on it) of Squeeze-Release and the
    same-shape scratch network under each lever, at each reported size: mean over the seeds that
    have both rows, and Squeeze-Release minus scratch. A lever run without its own scratch rows
    (one that cannot change the scratch network, e.g. the release scale) is compared with the
    base run's scratch rows, marked ``(base)``."""
    with open(base) as f:
        ref = json.load(f)
    runs = [(base, ref)]
    for p in paths:
        with open(p) as f:
            runs.append((p, json.load(f)))
    keys = [str(float(k)) for k in ref.get("args", {}).get("report_ratios") or []]
    if seeds is None:  # the seeds every run has: the base is averaged over the same ones as the levers
        have = [{r["seed"] for r in res["runs"] if r.get("squeeze_release", {}).get("done")} for _, res in runs]
        seeds = sorted(set.intersection(*have))
    out = ["| run | lever | " + " | ".join(f"~{float(k):g}x: SR / scratch / SR − scratch (val %)" for k in keys)
           + " | epochs seen | seeds |", "|---|---|" + "---|" * len(keys) + "---|---|"]
    for path, res in runs:
        cells, eps, used = [], set(), set()
        for k in keys:
            mine, theirs = rows_at(res, k), rows_at(ref, k)
            scr, mark = (mine["scratch"], "") if mine["scratch"] else (theirs["scratch"], " (base)")
            by_seed = {r["seed"]: r for r in scr}
            mine_sr = [r for r in mine["squeeze_release"] if seeds is None or r["seed"] in seeds]
            pairs = [(r, by_seed[r["seed"]]) for r in mine_sr
                     if r["seed"] in by_seed and r["epochs_seen"] == by_seed[r["seed"]]["epochs_seen"]]
            if len(pairs) < len(mine_sr):  # a run that stopped early (the floor) has no cycle of that size
                cells.append("stopped early: " + ", ".join(f"seed {r['seed']} {100 * r['accuracy']:.2f} at "
                                                           f"{r['ratio']:.1f}x" for r in mine_sr))
                continue
            if not pairs:
                cells.append("—")
                continue
            used |= {r["seed"] for r, _ in pairs}
            eps |= {r["epochs_seen"] for r, _ in pairs}
            a = st.mean(r["accuracy"] for r, _ in pairs) * 100
            b = st.mean(q["accuracy"] for _, q in pairs) * 100
            cells.append(f"{a:.2f} / {b:.2f}{mark} / {a - b:+.2f}")
        name = os.path.basename(path)
        out.append(f"| {name} | {lever_name(res)} | " + " | ".join(cells)
                   + f" | {'/'.join(map(str, sorted(eps)))} | {', '.join(map(str, sorted(used)))} |")
    return "\n".join(out)


def plot(results: dict, path: str, title: str) -> None:
    """Test accuracy against deployable ratio: every method, one marker per seed (SR: each cycle)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    colors = dict(zip(("squeeze_release",) + METHODS, ("tab:blue", "tab:orange", "tab:red", "tab:purple",
                                                         "tab:green", "tab:brown")))
    marks = dict(zip(("squeeze_release",) + METHODS, "osDv^x"))
    seen = set()
    for run in results["runs"]:
        h = run.get("squeeze_release", {}).get("history", [])
        pts = [(r["ratio"], r["test_accuracy"]) for r in h if r.get("test_accuracy") is not None]
        if pts:
            ax.plot(*zip(*[(x, 100 * y) for x, y in pts]), "o-", color=colors["squeeze_release"], ms=4, alpha=0.8,
                    label=None if "squeeze_release" in seen else LABELS["squeeze_release"] + " (every cycle)")
            seen.add("squeeze_release")
        for m in METHODS:
            for r in run.get("baselines", {}).get(m, []):
                ax.plot([r["ratio"]], [100 * r["test_accuracy"]], marks[m], color=colors[m], ms=7,
                        label=None if m in seen else LABELS[m] + " (same budget)")
                seen.add(m)
    ax.set_xscale("log")
    ax.set_xlabel("deployable compression (unpruned stored elements / stored elements; unstructured: / nonzeros)")
    ax.set_ylabel("test accuracy (%) — reported only, nothing chosen on it")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fc", nargs="+", default=None, metavar="JSON",
                    help="JSON of tools/reproduce_fc.py (several: one per seed, merged)")
    ap.add_argument("--cnn", nargs="+", default=None, metavar="JSON",
                    help="JSON of tools/reproduce_cnn.py (several: one per seed, merged)")
    ap.add_argument("--merge-out", default=None, metavar="JSON", help="write the merged JSON here")
    ap.add_argument("--table", choices=["fc", "cnn"], default=None, help="print this model's tables (markdown)")
    ap.add_argument("--cycles", action="store_true", help="also print every Squeeze-Release cycle")
    ap.add_argument("--plot", default=None, help="PNG of test accuracy against ratio, every method")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds a complete table has")
    ap.add_argument("--levers", nargs="+", default=None, metavar="JSON",
                    help="runs of tools/reproduce_levers.sh: print their validation table against --base")
    ap.add_argument("--base", default=None, help="with --levers: the run they start from (fc_matched.json)")
    args = ap.parse_args(argv)
    if args.levers:
        print(levers(args.levers, args.base))
        return
    paths = args.fc if (args.table or "fc") == "fc" and args.fc else args.cnn
    if not paths:
        ap.error("give --fc or --cnn (the one --table names)")
    try:
        results = load(paths)
    except ValueError as e:
        sys.exit(f"reproduce_tables.py: cannot merge {' '.join(paths)}: {e}")
    if args.merge_out:
        tmp = args.merge_out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.merge_out)
    if args.table:
        print(header(results) + "\n")
        for key in (results.get("args", {}).get("report_ratios") or []):
            print(table(results, str(float(key)), args.seeds) + "\n")
        if args.cycles:
            print(cycles(results))
    if args.plot:
        seeds = sorted(r["seed"] for r in results["runs"])
        plot(results, args.plot, f"{results.get('model', '')}: {lever_name(results)}; seeds {seeds}")


if __name__ == "__main__":
    main()
