"""Squeeze-Release on LeNet-300-100 (784-300-100-10), Fashion-MNIST.

    nice -n 10 python tools/reproduce_fc.py --seeds 0 1 2 --out tools/results/fc.json --plot docs/results_fc.png

Per seed (defaults: each cycle keeps ~60% of the deployable size, see ``--shrink``):
  * dense: LeNet-300-100 trained ``--dense-epochs`` epochs (AdamW, lr 1e-3, ``--wd``, batch 128);
  * Squeeze-Release from that dense model (global magnitude pruning; the fraction per cycle is
    found by ``ShrinkTarget(--shrink)``, or fixed by ``--schedule`` when ``--shrink 0``;
    ``--ft-epochs`` masked fine-tuning + ``--train-epochs`` after release per cycle), stopping
    when a cycle removes no unit, below ``--floor`` accuracy, or after ``--max-cycles``;
  * single pass: from the same dense model, prune once to each of ``--single-sparsities``,
    fine-tune with the masks held for as many epochs as the whole Squeeze-Release run used,
    minimize;
  * dense from scratch: for every Squeeze-Release cycle, an MLP of exactly that cycle's deployable
    shape (the kept input pixels gathered, hidden widths h1, h2) trained from scratch for
    ``--dense-epochs`` epochs.

All accuracies are on the 10,000 test images. Deployable size = stored parameters and buffers
of the minimized dense model (zeros and the int64 index of kept pixels included). One JSON
file (``--out``) holds everything; ``--plot`` draws accuracy against deployable size.
"""
from __future__ import annotations

import argparse
import copy
import functools
from dataclasses import asdict
import datetime
import json
import logging
import os
import platform
import sys
import time
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fxminimize import training as sr
from fxminimize.training.data import TensorLoader, load_fashion_mnist
from fxminimize.testing.zoo import LeNet300100

log = logging.getLogger("reproduce_fc")
CRITERIA = {"magnitude": sr.magnitude_scores, "lamp": sr.lamp_scores, "unit": sr.unit_scores}


class GatherMLP(nn.Module):
    """784 → (index_select kept pixels) → h1 → h2 → 10: the shape family of a minimized LeNet."""

    def __init__(self, keep: torch.Tensor, h1: int, h2: int):
        super().__init__()
        self.register_buffer("keep", keep.clone().long())
        self.fc1, self.fc2, self.fc3 = nn.Linear(len(keep), h1), nn.Linear(h1, h2), nn.Linear(h2, 10)

    def forward(self, x):
        x = x.index_select(1, self.keep)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def keep_index(module: nn.Module, n_in: int) -> torch.Tensor:
    """The input pixels a minimized LeNet reads: the composition of its chained input gathers
    (``index_select`` on the input, then on that, ... — one per cycle that removed pixels)."""
    import operator

    idx = torch.arange(n_in)
    graph = getattr(module, "graph", None)
    if graph is None:
        return idx
    chain = {n for n in graph.nodes if n.op == "placeholder"}
    for n in graph.nodes:
        if n.op == "call_function" and n.target is operator.getitem and n.args[0] in chain:
            chain.add(n)
        elif (n.op == "call_function" and "index_select" in str(n.target) and n.args[0] in chain
              and n.args[2].op == "get_attr"):
            idx = idx[getattr(module, n.args[2].target)]
            chain.add(n)
    return idx


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def run_seed(seed: int, args, data) -> dict:
    xtr, ytr, xte, yte = data
    example = (xtr[:16].clone(),)  # a copy: a view would make every checkpoint store the whole training set

    def dense_optimizer_fn(params):
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)

    def optimizer_fn(params):
        # everything after the dense model (Squeeze-Release, single pass, scratch) uses --small-wd
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd if args.small_wd is None else args.small_wd)

    loader = TensorLoader(xtr, ytr, args.batch, seed=seed)

    teacher: list = []  # the trained dense model, once there is one (knowledge distillation, --distill)

    def train_fn(model, opt, epochs, info):
        kd = teacher[0] if teacher and info.get("phase") != "scratch" else None  # teacher: only with --distill
        sr.train_epochs(model, opt, loader, epochs, desc=f"seed {seed} {info.get('phase', '')} c{info.get('cycle', '')}",
                        progress=not args.no_progress, lr_schedule=args.lr_schedule, teacher=kd,
                        loss_fn=functools.partial(F.cross_entropy, label_smoothing=args.label_smoothing
                                                  if info.get("phase") != "dense" or args.dense_label_smoothing else 0.0),
                        distill_alpha=args.distill, distill_temperature=args.distill_t)

    def eval_fn(model):
        return sr.accuracy(model, xte, yte)

    out: dict = {"seed": seed}
    # dense baseline
    torch.manual_seed(seed)
    dense = LeNet300100()
    t0 = time.perf_counter()
    train_fn(dense, dense_optimizer_fn(dense.parameters()), args.dense_epochs, {"phase": "dense"})
    out["dense"] = {"params": sr.deployable_size(dense), "accuracy": eval_fn(dense), "epochs": args.dense_epochs,
                    "time_s": time.perf_counter() - t0}
    if seed == args.seeds[0]:
        out["dense"]["onnx_bytes"] = sr.onnx_bytes(dense.eval(), example)
    log.info("seed %d dense: %.2f%% (%d params)", seed, 100 * out["dense"]["accuracy"], out["dense"]["params"])
    if args.label_smoothing > 0 and not args.dense_label_smoothing:
        # reference only: the same dense network trained with the recipe used after it (label smoothing), so a
        # reader can see what that recipe alone does to the unpruned model
        torch.manual_seed(seed)
        ref = LeNet300100()
        t0 = time.perf_counter()
        train_fn(ref, dense_optimizer_fn(ref.parameters()), args.dense_epochs, {"phase": "dense_same_recipe"})
        out["dense_same_recipe"] = {"params": sr.deployable_size(ref), "accuracy": eval_fn(ref),
                                    "epochs": args.dense_epochs, "label_smoothing": args.label_smoothing,
                                    "time_s": time.perf_counter() - t0}
        log.info("seed %d dense with label smoothing %.2f: %.2f%%", seed, args.label_smoothing,
                 100 * out["dense_same_recipe"]["accuracy"])
        del ref
    if args.distill > 0:
        teacher.append(copy.deepcopy(dense).eval().requires_grad_(False))

    # Squeeze-Release
    t0 = time.perf_counter()
    cyc = sr.SqueezeRelease(copy.deepcopy(dense), example, train_fn, eval_fn, optimizer_fn=optimizer_fn,
                            schedule=(sr.ShrinkTarget(args.shrink, steps=args.shrink_steps,
                                                     sizes=[round(out["dense"]["params"] / r) for r in args.cycle_ratios]
                                                     if args.cycle_ratios else None)
                                      if args.shrink else args.schedule),
                            finetune_epochs=args.ft_epochs, train_epochs=args.train_epochs,
                            release_scale=args.release_scale, max_cycles=args.max_cycles, accuracy_floor=args.floor,
                            criterion=CRITERIA[args.criterion], target_ratio=args.target_ratio,
                            checkpoint_dir=os.path.join(args.ckpt_dir, f"fc_seed{seed}") if args.ckpt_dir else None,
                            seed=seed)
    res = cyc.run(resume=args.resume)
    out["squeeze_release"] = {"history": [asdict(r) for r in res.history], "stop_reason": res.stop_reason,
                              "time_s": time.perf_counter() - t0}
    budget = res.history[-1].epochs_total
    for r in res.history:
        log.info("seed %d SR %s", seed, r.line())
    if seed == args.seeds[0] and res.history[-1].checkpoint:
        # ONNX bytes of every cycle's deployable model (read back from the checkpoints)
        for rec in out["squeeze_release"]["history"][1:]:
            if rec["checkpoint"]:
                rec["onnx_bytes"] = sr.onnx_bytes(sr.load_checkpoint(rec["checkpoint"]).eval(), example)

    # single prune-and-shrink pass with the same training budget
    out["single_pass"] = []
    out["scratch"] = []
    if args.sr_only:
        return out
    targets = [(None, s) for s in args.single_sparsities]
    if args.single_ratios:
        # the sparsity whose minimized model has the target deployable size (bisection on the dense model)
        targets = []
        for ratio in args.single_ratios:
            probe = copy.deepcopy(dense)
            score_fn = dict(criterion=CRITERIA[args.criterion])
            pr = score_fn.get("prunable", sr.prunable_parameters)
            scores = score_fn["criterion"](probe, pr(probe))
            targets.append((ratio, sr.ShrinkTarget(1.0 / ratio, lo=0.3, steps=16).search(probe, scores, example)))
    for ratio_target, s in targets:
        t0 = time.perf_counter()
        small, rec = sr.single_pass(copy.deepcopy(dense), example, train_fn, eval_fn, optimizer_fn=optimizer_fn,
                                    sparsity=s, epochs=budget, params_unpruned=out["dense"]["params"],
                                    criterion=CRITERIA[args.criterion])
        d = asdict(rec)
        d.update(sparsity=s, target_ratio=ratio_target, time_s=time.perf_counter() - t0)
        out["single_pass"].append(d)
        log.info("seed %d single pass %.3f: %d params (%.1fx) acc %.2f%%", seed, s, rec.params, rec.ratio,
                 100 * rec.accuracy)

    # dense from scratch at each Squeeze-Release size (same shape)
    for rec in res.history[1:]:
        m = sr.load_checkpoint(rec.checkpoint) if rec.checkpoint else None
        shapes = rec.shapes
        h1, h2 = shapes["fc1.weight"][0], shapes["fc2.weight"][0]
        keep = keep_index(m, 784) if m is not None else torch.arange(shapes["fc1.weight"][1])
        assert len(keep) == shapes["fc1.weight"][1], (len(keep), shapes["fc1.weight"])
        # "scratch": the recipe after the dense model; "scratch_kd" (with --distill): distilled from it as well
        for phase in ("scratch", "scratch_kd") if args.distill > 0 else ("scratch",):
            torch.manual_seed(seed + 1000)
            net = GatherMLP(keep, h1, h2)
            t0 = time.perf_counter()
            train_fn(net, optimizer_fn(net.parameters()), args.dense_epochs, {"phase": phase})
            out.setdefault(phase, []).append(
                {"cycle": rec.cycle, "params": sr.deployable_size(net), "sr_params": rec.params,
                 "shape": [len(keep), h1, h2, 10], "accuracy": eval_fn(net), "epochs": args.dense_epochs,
                 "time_s": time.perf_counter() - t0})
            log.info("seed %d %s %s: %d params acc %.2f%%", seed, phase, out[phase][-1]["shape"],
                     out[phase][-1]["params"], 100 * out[phase][-1]["accuracy"])
    return out


def plot(results: dict, path: str, title: str) -> None:
    """Accuracy against deployable compression: one colour per method, one line per seed
    (Squeeze-Release points numbered by cycle), each seed's dense accuracy and dense − 1 pt."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    styles = ["-", "--", ":", "-."]
    c_sr, c_sp, c_sc, c_d = "tab:blue", "tab:orange", "tab:green", "grey"
    for i, run in enumerate(results["runs"]):
        seed, ls = run["seed"], styles[i % len(styles)]
        first = i == 0
        h = run["squeeze_release"]["history"]
        ax.plot([r["ratio"] for r in h], [100 * r["accuracy"] for r in h], "o" + ls, color=c_sr, ms=4,
                label="Squeeze-Release, cycle by cycle" if first else None)
        for r in h[1:]:
            ax.annotate(str(r["cycle"]), (r["ratio"], 100 * r["accuracy"]), fontsize=6, color=c_sr,
                        textcoords="offset points", xytext=(2, 3))
        sp = sorted(run["single_pass"], key=lambda r: r["ratio"])
        if sp:
            ax.plot([r["ratio"] for r in sp], [100 * r["accuracy"] for r in sp], "s" + ls, color=c_sp, ms=4,
                    label="single prune-and-shrink pass, same epochs" if first else None)
        sc = sorted(run["scratch"], key=lambda r: -r["params"])
        dense_params = run["dense"]["params"]
        if sc:
            ax.plot([dense_params / r["params"] for r in sc], [100 * r["accuracy"] for r in sc], "^" + ls, color=c_sc,
                    ms=4, label="dense from scratch, same shape and size" if first else None)
        d = 100 * run["dense"]["accuracy"]
        ax.axhline(d, color=c_d, lw=0.7, ls=ls, label="dense (unpruned) accuracy" if first else None)
        ax.axhline(d - 1, color="red", lw=0.7, ls=ls, alpha=0.6, label="dense − 1.0 pt" if first else None)
        if "dense_same_recipe" in run:
            ax.axhline(100 * run["dense_same_recipe"]["accuracy"], color="purple", lw=0.7, ls=ls, alpha=0.7,
                       label="dense trained with label smoothing (reference)" if first else None)
    for x, lab in results.get("markers", []):
        ax.axvline(x, color="black", lw=0.8, ls="--", alpha=0.6)
        ax.text(x, 0.02, f" {lab}", fontsize=8, color="black", va="bottom", transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    ax.set_xlabel("deployable compression (unpruned stored params / minimized stored params, log)")
    ax.set_ylabel("test accuracy (%)")
    seeds = ", ".join(str(r["seed"]) for r in results["runs"])
    ax.set_title(f"{title}\nseeds {seeds} (line styles: one per seed)", fontsize=10)
    for x, y, lab in results.get("target_points", []):
        ax.plot([x], [y], "*", color="red", ms=12, label=lab)
    lo = min(100 * r["accuracy"] for run in results["runs"]
             for r in run["squeeze_release"]["history"] + run["single_pass"] + run["scratch"])
    ax.set_ylim(max(lo - 1.5, 0), None)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _interp_acc(points, ratio):
    """Accuracy at ``ratio`` interpolated in log(ratio) between the two nearest points, or None."""
    import math
    pts = sorted(points)
    for (r0, a0), (r1, a1) in zip(pts, pts[1:]):
        if r0 <= ratio <= r1:
            t = (math.log(ratio) - math.log(r0)) / (math.log(r1) - math.log(r0)) if r1 > r0 else 0.0
            return a0 + t * (a1 - a0)
    return None


def _crossing(points, level):
    """The compression at which accuracy (interpolated in log ratio between measured points, in
    order of ratio) first falls below ``level``; the last ratio if it never does."""
    import math
    pts = sorted(points)
    for (r0, a0), (r1, a1) in zip(pts, pts[1:]):
        if a0 >= level > a1:
            t = (a0 - level) / (a0 - a1)
            return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
    return pts[-1][0] if pts and pts[-1][1] >= level else (pts[0][0] if pts else 1.0)


def summarize(results: dict, drop: float = 0.01, at_ratio: Optional[float] = None, reference: str = "dense") -> str:
    """Markdown: per seed, the largest compression within ``drop`` of the dense accuracy for each
    method, and the accuracy interpolated at ``at_ratio``; then mean and spread over seeds.
    ``reference="dense_same_recipe"`` measures the drop from the dense network trained with the
    recipe used after it (label smoothing) instead of the dense model the run started from."""
    import statistics as st

    rows, best = [], {"sr": [], "sp": [], "sc": [], "dense": [], "at": [], "at_sp": [], "at_sc": [], "x_sr": [],
                      "x_sp": [], "x_sc": []}
    for run in results["runs"]:
        d = dict(run["dense"], accuracy=run.get(reference, run["dense"])["accuracy"])
        floor = d["accuracy"] - drop
        sr_pts = [(r["ratio"], r["accuracy"]) for r in run["squeeze_release"]["history"]]
        sp_pts = [(1.0, d["accuracy"])] + [(r["ratio"], r["accuracy"]) for r in run["single_pass"]]
        sc_pts = [(1.0, d["accuracy"])] + [(d["params"] / r["params"], r["accuracy"]) for r in run["scratch"]]
        b = [max([r for r, a in pts if a >= floor], default=1.0) for pts in (sr_pts, sp_pts, sc_pts)]
        x = [_crossing(pts, floor) for pts in (sr_pts, sp_pts, sc_pts)]
        for k, v in zip(("x_sr", "x_sp", "x_sc"), x):
            best[k].append(v)
        best["dense"].append(d["accuracy"])
        for k, v in zip(("sr", "sp", "sc"), b):
            best[k].append(v)
        at = [None, None, None]
        if at_ratio:
            at = [_interp_acc(pts, at_ratio) for pts in (sr_pts, sp_pts, sc_pts)]
            for k, v in zip(("at", "at_sp", "at_sc"), at):
                best[k].append(v)
        fmt = lambda a: "not reached" if a is None else f"{100 * a:.2f}%"  # noqa: E731
        rows.append(f"| {run['seed']} | {100 * d['accuracy']:.2f}% | {b[0]:.1f}x | {b[1]:.1f}x | {b[2]:.1f}x"
                    f" | {x[0]:.1f}x | {x[1]:.1f}x | {x[2]:.1f}x"
                    + (f" | {fmt(at[0])} | {fmt(at[1])} | {fmt(at[2])} |" if at_ratio else " |"))

    def ms(xs, pct=False):
        xs = [x for x in xs if x is not None]
        if not xs:
            return "n/a"
        m = st.mean(xs) * (100 if pct else 1)
        s = (st.stdev(xs) if len(xs) > 1 else 0.0) * (100 if pct else 1)
        return f"{m:.2f}{'%' if pct else 'x'} ± {s:.2f}"

    head = ("| seed | dense acc | SR: max ratio within {p:g} pt (measured cycle) | single pass | scratch, same shape"
            " | SR: ratio where the curve crosses dense − {p:g} pt (log-interpolated) | single pass | scratch"
            .format(p=100 * drop))
    head += (f" | SR acc at {at_ratio}x | single pass at {at_ratio}x | scratch at {at_ratio}x |" if at_ratio else " |")
    sep = "|" + "---|" * (head.count("|") - 1)
    mean = (f"| mean ± sd | {ms(best['dense'], True)} | {ms(best['sr'])} | {ms(best['sp'])} | {ms(best['sc'])}"
            f" | {ms(best['x_sr'])} | {ms(best['x_sp'])} | {ms(best['x_sc'])}"
            + (f" | {ms(best['at'], True)} | {ms(best['at_sp'], True)} | {ms(best['at_sc'], True)} |" if at_ratio else " |"))
    return "\n".join([head, sep] + rows + [mean])


def fc_shape(shapes: dict) -> str:
    """``pixels-h1-h2-10`` of a minimized LeNet from its weight shapes."""
    return f"{shapes['fc1.weight'][1]}-{shapes['fc1.weight'][0]}-{shapes['fc2.weight'][0]}-10" if "fc1.weight" in shapes else ""


def cycle_tables(results: dict, shape_of: Callable[[dict], str] = fc_shape) -> str:
    """Markdown, per seed: every Squeeze-Release cycle (size, ratio, shape — ``shape_of`` of the
    weight shapes —, accuracy after release and training, accuracy of the squeezed model before
    release, ONNX bytes, the same-shape scratch network with its epochs) and the single-pass
    runs (with their shapes when recorded)."""
    out = []
    for run in results["runs"]:
        d = run["dense"]
        ref = run.get("dense_same_recipe")
        extra = f"; dense trained with label smoothing {ref['label_smoothing']:g}: {100 * ref['accuracy']:.2f} %" if ref else ""
        onnx = f", ONNX {d['onnx_bytes']:,} bytes" if d.get("onnx_bytes") else ""
        out.append(f"**seed {run['seed']}** — dense {100 * d['accuracy']:.2f} % ({d['params']:,} params{onnx}){extra}\n")
        out.append("| cycle | deployable params | ratio | shape | accuracy | pruned (before release) | ONNX bytes "
                   "| scratch, same shape |")
        out.append("|---|---|---|---|---|---|---|---|")
        scratch = {r["cycle"]: r for r in run["scratch"]}
        for r in run["squeeze_release"]["history"]:
            shape = shape_of(r["shapes"])
            sc = scratch.get(r["cycle"])
            pruned = f"{100 * r['accuracy_pruned']:.2f} %" if r.get("accuracy_pruned") is not None else ""
            ob = f"{r['onnx_bytes']:,}" if r.get("onnx_bytes") else ""
            sct = f"{100 * sc['accuracy']:.2f} % ({sc['params']:,}, {sc['epochs']} ep)" if sc else ""
            out.append(f"| {r['cycle']} | {r['params']:,} | {r['ratio']:.2f}x | {shape} | {100 * r['accuracy']:.2f} % "
                       f"| {pruned} | {ob} | {sct} |")
        out.append("\n| single pass: target ratio | sparsity | deployable params | ratio | shape | accuracy | epochs |")
        out.append("|---|---|---|---|---|---|---|")
        for r in sorted(run["single_pass"], key=lambda r: r["ratio"]):
            shape = shape_of(r["shapes"]) if r.get("shapes") else ""
            out.append(f"| {r.get('target_ratio') or ''} | {r['sparsity']:.5f} | {r['params']:,} | {r['ratio']:.2f}x "
                       f"| {shape} | {100 * r['accuracy']:.2f} % | {r['epochs_total']} |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dense-epochs", type=int, default=15)
    ap.add_argument("--ft-epochs", type=int, default=2)
    ap.add_argument("--train-epochs", type=int, default=3)
    ap.add_argument("--schedule", type=float, default=0.98)
    ap.add_argument("--shrink", type=float, default=0.6,
                    help="size-targeted schedule: each cycle keeps about this share of the deployable size "
                         "(ShrinkTarget); overrides --schedule")
    ap.add_argument("--cycle-ratios", type=float, nargs="+", default=None, metavar="R",
                    help="with --shrink: cycle k aims at compression R_k (deployable size dense/R_k), e.g. "
                         "1.45 2.1 3 4.4 6.5 10 14 20 28 39; cycles after the list shrink by --shrink")
    ap.add_argument("--shrink-steps", type=int, default=7, help="bisection steps of ShrinkTarget per cycle")
    ap.add_argument("--release-scale", type=float, default=0.05)
    ap.add_argument("--max-cycles", type=int, default=9)
    ap.add_argument("--floor", type=float, default=0.80)
    ap.add_argument("--single-sparsities", type=float, nargs="+", default=[0.98, 0.99, 0.995, 0.997, 0.998, 0.999])
    ap.add_argument("--criterion", choices=sorted(CRITERIA), default="magnitude")
    ap.add_argument("--single-ratios", type=float, nargs="+", default=None,
                    help="single pass at these compressions instead of --single-sparsities (the sparsity is found by "
                         "bisection so that the minimized model has 1/ratio of the dense deployable size)")
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                    help="learning rate within every training call (dense, each phase of a cycle, baselines)")
    ap.add_argument("--target-ratio", type=float, default=None, help="stop Squeeze-Release at this compression")
    ap.add_argument("--sr-only", action="store_true", help="skip both baselines (exploration runs)")
    ap.add_argument("--distill", type=float, default=0.0, metavar="ALPHA",
                    help="knowledge distillation from the seed's dense model in every training call after it "
                         "(Squeeze-Release and single pass; the scratch baseline is trained both without and "
                         "with it): loss = (1-ALPHA) CE + ALPHA T^2 KL; 0 = off")
    ap.add_argument("--label-smoothing", type=float, default=0.0,
                    help="label smoothing of the cross-entropy in every training call after the dense model")
    ap.add_argument("--dense-label-smoothing", action="store_true",
                    help="train the dense model with --label-smoothing too (by default only what follows it)")
    ap.add_argument("--distill-t", type=float, default=4.0, help="distillation temperature T")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--small-wd", type=float, default=None,
                    help="AdamW weight decay for every training call after the dense model (Squeeze-Release, "
                         "single pass, scratch); default: --wd")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="tools/results/fc.json")
    ap.add_argument("--plot", default=None)
    ap.add_argument("--ckpt-dir", default="tools/results/ckpt")
    ap.add_argument("--resume", action="store_true", help="resume Squeeze-Release runs from --ckpt-dir")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--plot-only", action="store_true", help="redraw --plot from --out")
    ap.add_argument("--summary", action="store_true", help="print the markdown summary of --out")
    ap.add_argument("--onnx-only", action="store_true",
                    help="re-measure the ONNX bytes in --out from the run's checkpoints (they must still exist)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="combine the runs of these result files (one seed each, run in parallel) into --out")
    args = ap.parse_args(argv)
    if args.merge:
        parts = [json.load(open(p)) for p in args.merge]
        merged = dict(parts[0])
        merged["runs"] = sorted((r for p in parts for r in p["runs"]), key=lambda r: r["seed"])
        merged["commands"] = [p["command"] for p in parts]
        merged["time_s"] = {str(p["runs"][0]["seed"]): p.get("time_s") for p in parts}
        merged.setdefault("target_points", [[39, 86.0, "target: 86 % at 39x"]])
        with open(args.out, "w") as f:
            json.dump(merged, f, indent=1)
        if args.plot:
            plot(merged, args.plot, f"LeNet-300-100, Fashion-MNIST ({merged['date']})")
        return
    if args.onnx_only:
        # re-measure ONNX bytes from the checkpoints a finished run wrote (they must still exist)
        with open(args.out) as f:
            res = json.load(f)
        example = (torch.randn(16, 784),)
        for run in res["runs"]:
            hist = run["squeeze_release"]["history"]
            for rec in hist:
                if rec.get("checkpoint") and os.path.exists(rec["checkpoint"]):
                    rec["onnx_bytes"] = sr.onnx_bytes(sr.load_checkpoint(rec["checkpoint"]).eval(), example)
            if hist[0].get("onnx_bytes"):
                run["dense"]["onnx_bytes"] = hist[0].pop("onnx_bytes")
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
        return
    if args.summary:
        with open(args.out) as f:
            res = json.load(f)
        for drop in (0.01, 0.02):
            print(summarize(res, drop, at_ratio=39.0 if drop == 0.01 else 10.0) + "\n")
        if all("dense_same_recipe" in r for r in res["runs"]):
            print("Against the dense network trained with the same recipe (label smoothing):\n")
            print(summarize(res, 0.01, at_ratio=10.0, reference="dense_same_recipe") + "\n")
        print(cycle_tables(res))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.plot_only:
        with open(args.out) as f:
            plot(json.load(f), args.plot, "LeNet-300-100, Fashion-MNIST")
        return
    torch.set_num_threads(args.threads)
    xtr, ytr = load_fashion_mnist("train", args.data_dir, flatten=True, limit=args.train_limit)
    xte, yte = load_fashion_mnist("test", args.data_dir, flatten=True)
    run_seeds(args, (xtr, ytr, xte, yte), run_seed, "LeNet-300-100, Fashion-MNIST",
              {"model": "LeNet-300-100 (784-300-100-10)", "dataset": "Fashion-MNIST",
               "markers": [[10, "10x"], [39, "39x (paper, MNIST)"]],
               "target_points": [[39, 86.0, "target: 86 % at 39x"]]})


def run_seeds(args, data, run_seed, title: str, header: dict) -> dict:
    """``run_seed(seed, args, data)`` for every seed of ``args.seeds``; ``--out`` is rewritten after
    each seed (an interrupted run keeps the seeds it finished), ``--plot`` drawn at the end.
    ``header``: what the JSON says of the model (shared by reproduce_fc.py and reproduce_cnn.py)."""
    results = dict(header, command=" ".join([os.path.basename(sys.executable)] + sys.argv), args=vars(args),
                   machine=machine(), date=datetime.date.today().isoformat(), runs=[])
    t0 = time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for seed in args.seeds:
        results["runs"].append(run_seed(seed, args, data))
        results["time_s"] = time.perf_counter() - t0
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot, f"{title} ({results['date']})")
    log.info("done in %.0fs -> %s", time.perf_counter() - t0, args.out)
    return results


if __name__ == "__main__":
    main()
