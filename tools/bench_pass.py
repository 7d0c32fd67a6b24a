"""Speed of fxminimize's analysis against Torch-Pruning's dependency graph, side by side.

    .venv/bin/python tools/bench_pass.py [--repeats 5] [--models vit_b,convnext_tiny,vit_d48,vit_d96,vit_d192]
                                         [--json out.json]
    .venv/bin/python tools/bench_pass.py --minimize [--repeats 3] [--models convnext_tiny]

``--minimize``: the whole of ``fxminimize.minimize`` against Torch-Pruning, on the model with a
90 % global magnitude mask (every weight of two or more dims) on top of the dead MLP neurons
below. Per repeat, alternating: ``minimize(model, (x,))`` with its own timings (capture;
analysis, rewrite and verification: the work after capture), then Torch-Pruning's build plus
groups. Medians; the ratio compared is (analysis + rewrite + verification) / TP total.

Per model, in one process: fxminimize's ``capture`` (torch.export, timed once, it is the
slow part and not what is compared), then ``ChannelAnalysis(gm).run()`` and
``rewrite(gm, plan)``, and Torch-Pruning's ``DependencyGraph().build_dependency(model,
example_inputs=x)`` plus ``list(DG.get_all_groups())``, alternating within each repeat so
machine load hits both alike. Medians over ``--repeats``. A warm-up on a depth-2 tiny ViT runs
both tools once first, so one-off import and first-call costs are not charged to either.

Models (Hugging Face transformers from configs, random weights, HF_HUB_OFFLINE=1), wrapped to
return ``last_hidden_state`` (Torch-Pruning traces a tensor output):

* ``vit_b``: ``ViTConfig()`` = ViT-B/16, image 224, batch 1;
* ``convnext_tiny``: ``ConvNextConfig()`` = ConvNeXt-Tiny, image 224, batch 1;
* ``vit_d48/96/192``: ViT of width 64 (4 heads, MLP 128, image 32, patch 8), batch 2.

Every model gets the same structural "mask": the first half of the hidden neurons of each
MLP is zeroed (weights and bias), so the analysis and the rewrite have work to do.

Torch-Pruning (``pip install torch-pruning``, the ``bench`` extra) is optional; without it
only fxminimize's side is printed. Torch-Pruning's get_all_groups() walks the dependency graph
from every prunable layer and checks each new group against the layers already visited in a
list, so its enumeration grows quadratically with depth.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from fxminimize.analysis import ChannelAnalysis  # noqa: E402
from fxminimize.capture import capture  # noqa: E402
from fxminimize.rewrite import rewrite  # noqa: E402

try:
    import torch_pruning as tp
except ImportError:  # the bench extra is optional
    tp = None


def _tp_version():
    if tp is None:
        return None
    from importlib.metadata import version
    return version("torch-pruning")


class Hidden(nn.Module):
    """HF model → a tensor (last_hidden_state)."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(pixel_values=x).last_hidden_state


def tiny_vit(depth: int):
    from transformers import ViTConfig, ViTModel
    return ViTModel(ViTConfig(hidden_size=64, num_attention_heads=4, intermediate_size=128,
                              num_hidden_layers=depth, image_size=32, patch_size=8))


def build(name: str):
    from transformers import ConvNextConfig, ConvNextModel, ViTConfig, ViTModel
    torch.manual_seed(0)
    if name == "vit_b":
        m, x, desc = ViTModel(ViTConfig()), torch.randn(1, 3, 224, 224), "ViT-B/16 (ViTConfig()), 1x3x224x224"
    elif name == "convnext_tiny":
        m, x, desc = ConvNextModel(ConvNextConfig()), torch.randn(1, 3, 224, 224), \
            "ConvNeXt-Tiny (ConvNextConfig()), 1x3x224x224"
    elif name.startswith("vit_d"):
        d = int(name[5:])
        m, x, desc = tiny_vit(d), torch.randn(2, 3, 32, 32), f"ViT dim 64, depth {d}, 2x3x32x32"
    else:
        raise SystemExit(f"unknown model {name}")
    with torch.no_grad():  # structure for the pass: half of every MLP's hidden neurons dead
        for mod_name, mod in m.named_modules():
            if mod_name.endswith(("intermediate.dense", "mlp.fc1", "pwconv1")):
                h = mod.out_features
                mod.weight[: h // 2] = 0
                mod.bias[: h // 2] = 0
    return Hidden(m.eval()).eval(), x, desc


class _RuleCalls(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.msg = ""

    def emit(self, record):
        if "use analysis converged" in record.getMessage():
            self.msg = record.getMessage()


def timed(fn):
    gc.collect()
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def tp_groups(model, x):
    DG = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    t_build = time.perf_counter()
    groups = list(DG.get_all_groups())
    return DG, groups, t_build


def bench_model(name: str, repeats: int) -> dict:
    model, x, desc = build(name)
    t_cap, cap = timed(lambda: capture(model, (x,)))
    gm = cap.gm
    handler = _RuleCalls()
    alog = logging.getLogger("fxminimize.analysis")
    alog.addHandler(handler)
    old_level = alog.level
    alog.setLevel(logging.DEBUG)
    ana, rw, tpb, tpg = [], [], [], []
    plan = small = None
    ngroups_tp = None
    try:
        for _ in range(repeats):
            t, plan = timed(lambda: ChannelAnalysis(gm).run())
            ana.append(t)
            t, (small, _) = timed(lambda: rewrite(gm, plan))
            rw.append(t)
            if tp is not None:
                gc.collect()
                t0 = time.perf_counter()
                DG, groups, t1 = tp_groups(model, x)
                t2 = time.perf_counter()
                tpb.append(t1 - t0)
                tpg.append(t2 - t1)
                ngroups_tp = len(groups)
                del DG, groups
    finally:
        alog.removeHandler(handler)
        alog.setLevel(old_level)
    med = statistics.median
    n_params = sum(p.numel() for p in model.parameters())
    out = {
        "model": name, "desc": desc, "params": n_params,
        "graph_nodes": len(gm.graph.nodes),
        "fx_capture_s": t_cap, "fx_analysis_s": med(ana), "fx_rewrite_s": med(rw),
        "fx_analysis_all": ana, "fx_rewrite_all": rw,
        "fx_groups": len(plan.groups), "fx_rule_log": handler.msg,
        "params_after": sum(t.numel() for t in list(small.parameters()) + list(small.buffers())),
    }
    if tp is not None:
        out.update({"tp_build_s": med(tpb), "tp_groups_s": med(tpg),
                    "tp_total_s": med([a + b for a, b in zip(tpb, tpg)]),
                    "tp_build_all": tpb, "tp_groups_all": tpg, "tp_groups": ngroups_tp})
        out["tp_over_fx_analysis"] = out["tp_total_s"] / out["fx_analysis_s"]
    return out


def magnitude_mask(model: nn.Module, fraction: float = 0.9) -> None:
    """Zero the ``fraction`` of smallest-magnitude weights over all weights of two or more dims."""
    with torch.no_grad():
        ws = [p for p in model.parameters() if p.dim() > 1]
        mags = torch.cat([w.abs().flatten() for w in ws])
        thr = mags.kthvalue(max(1, int(fraction * mags.numel()))).values
        for w in ws:
            w.mul_((w.abs() > thr).to(w.dtype))


def bench_minimize(name: str, repeats: int) -> dict:
    """The whole of minimize (its own timings) against Torch-Pruning, alternating (module doc)."""
    import fxminimize
    model, x, desc = build(name)
    magnitude_mask(model)
    rows, tpt = [], []
    res = None
    for _ in range(repeats):
        gc.collect()
        res = fxminimize.minimize(model, (x,))
        t = dict(res.report.timings)
        t["after_capture"] = t["analysis"] + t["rewrite"] + t["verify"]
        rows.append(t)
        if tp is not None:
            gc.collect()
            t0 = time.perf_counter()
            tp_groups(model, x)
            tpt.append(time.perf_counter() - t0)
    med = statistics.median
    out = {"model": name, "desc": desc + ", 90 % magnitude mask + half of every MLP's neurons dead",
           "params": res.report.params_before, "params_after": res.report.params_after,
           "verified_checks": res.report.verified_checks, "max_abs_error": res.report.max_abs_error,
           **{f"fx_{k}_s": med([r[k] for r in rows]) for k in rows[0]}, "fx_all": rows}
    if tp is not None:
        out.update({"tp_total_s": med(tpt), "tp_all": tpt,
                    "after_capture_over_tp": out["fx_after_capture_s"] / med(tpt)})
    return out


def main_minimize(args) -> None:
    warm_up()
    rows = [bench_minimize(name, args.repeats) for name in args.models.split(",")]
    print(f"{'model':<14} {'capture':>8} {'analysis':>9} {'rewrite':>8} {'verify':>7} {'after cap':>10} "
          f"{'TP total':>9} {'after/TP':>9}  (medians of {args.repeats}; load {os.getloadavg()[0]:.1f})")
    for r in rows:
        tp_cols = f"{r['tp_total_s']:9.3f} {r['after_capture_over_tp']:8.2f}x" if "tp_total_s" in r else ""
        print(f"{r['model']:<14} {r['fx_capture_s']:8.2f} {r['fx_analysis_s']:9.3f} {r['fx_rewrite_s']:8.3f} "
              f"{r['fx_verify_s']:7.3f} {r['fx_after_capture_s']:10.3f} {tp_cols}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "repeats": args.repeats, "torch": torch.__version__,
                       "torch_pruning": _tp_version(), "cpus": os.cpu_count(),
                       "torch_threads": torch.get_num_threads(), "loadavg": os.getloadavg(),
                       "date": time.strftime("%Y-%m-%d %H:%M")}, f, indent=2)


def warm_up() -> None:
    m = Hidden(tiny_vit(2).eval()).eval()
    x = torch.randn(2, 3, 32, 32)
    gm = capture(m, (x,)).gm
    rewrite(gm, ChannelAnalysis(gm).run())
    if tp is not None:
        tp_groups(m, x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="vit_b,convnext_tiny,vit_d48,vit_d96,vit_d192")
    ap.add_argument("--json", default=None)
    ap.add_argument("--minimize", action="store_true",
                    help="time the whole of minimize (90 %% magnitude mask) against Torch-Pruning")
    args = ap.parse_args()
    if args.minimize:
        if args.models == ap.get_default("models"):
            args.models = "convnext_tiny"
        return main_minimize(args)
    warm_up()
    rows = []
    for name in args.models.split(","):
        r = bench_model(name, args.repeats)
        rows.append(r)
        print(f"{name}: " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                                         if not k.endswith("_all")}), file=sys.stderr, flush=True)
    hdr = f"{'model':<14} {'nodes':>6} {'capture':>8} {'analysis':>9} {'rewrite':>8} {'TP build':>9} " \
          f"{'TP groups':>10} {'TP total':>9} {'TP/analysis':>12}"
    print(hdr)
    for r in rows:
        tp_cols = (f"{r['tp_build_s']:9.3f} {r['tp_groups_s']:10.3f} {r['tp_total_s']:9.3f} "
                   f"{r['tp_over_fx_analysis']:11.1f}x") if "tp_total_s" in r else ""
        print(f"{r['model']:<14} {r['graph_nodes']:6d} {r['fx_capture_s']:8.2f} {r['fx_analysis_s']:9.3f} "
              f"{r['fx_rewrite_s']:8.3f} {tp_cols}")
    by = {r["model"]: r for r in rows}
    summary = {}
    if "vit_d48" in by and "vit_d192" in by:
        for k in ("fx_analysis_s", "fx_rewrite_s", "tp_total_s", "tp_groups_s"):
            if k in by["vit_d48"]:
                summary[f"{k} d192/d48"] = by["vit_d192"][k] / by["vit_d48"][k]
        print("depth 192 / depth 48: " + ", ".join(f"{k.split()[0]} {v:.2f}x" for k, v in summary.items()))
    if tp is not None:
        faster = all(r["fx_analysis_s"] < r["tp_total_s"] for r in rows)
        print(f"fxminimize analysis faster than Torch-Pruning build+groups on every model: {faster}")
    out = {"rows": rows, "summary": summary, "repeats": args.repeats, "torch": torch.__version__,
           "torch_pruning": _tp_version(), "machine": platform.machine(),
           "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
