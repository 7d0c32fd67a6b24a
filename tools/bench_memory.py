"""Peak memory of fxminimize.minimize() on Hugging Face ConvNeXt-Tiny, against the model's
own parameter bytes.

    .venv/bin/python tools/bench_memory.py [--repeats 3] [--mask dead|magnitude|none]
                                           [--batch 2] [--phases] [--no-warmup] [--preload what_if.py]
                                           [--json out.json]

Method (Linux only): every measurement runs in a fresh child process. The child builds the
model, the masks and the input, runs a warm-up minimize() on a tiny ConvNeXt (so one-off
imports and lazily built tables of torch.export are not charged to the big run; --no-warmup
turns it off), calls ``gc.collect()``, then resets the kernel's resident-set high-water mark
(``echo 5 > /proc/self/clear_refs``, which sets VmHWM to the current VmRSS) and reads VmRSS.
After minimize() returns it reads VmHWM again. "Peak extra" = VmHWM after − VmRSS before:
every byte the call touched at its worst moment, torch allocations included (tracemalloc
does not see those), plus allocator slack. "Retained" = VmRSS after − VmRSS before, with the
result still alive. The figure the acceptance asks for is peak extra / parameter bytes
(fp32 parameters of ConvNeXt-Tiny: 28.6 M × 4 bytes).

``--phases`` wraps the steps minimize() calls (masked_copy, capture, analyze, rewrite,
verify, report) and resets the high-water mark before each, printing per step the peak
above the RSS at the start of minimize() and what the step left behind. It is a separate
run because the per-step resets hide the overall peak.

The parent prints the median over ``--repeats`` children (and every child's figures).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

MB = 1024 * 1024


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1)) * 1024


def rss() -> int:
    return _status("VmRSS")


def hwm() -> int:
    return _status("VmHWM")


def reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def build(mask: str, seed: int = 0):
    import torch
    from transformers import ConvNextConfig, ConvNextModel

    from fxminimize.testing.zoo import magnitude_masks

    torch.manual_seed(seed)
    model = ConvNextModel(ConvNextConfig()).eval()
    masks = None
    if mask == "dead":
        # structural: half of the MLP hidden neurons of every block are exactly zero
        with torch.no_grad():
            for name, m in model.named_modules():
                if name.endswith("pwconv1"):
                    h = m.out_features
                    m.weight[: h // 2] = 0
                    m.bias[: h // 2] = 0
    elif mask == "magnitude":
        masks = magnitude_masks(model, 0.9)
    return model, masks


def child(args) -> dict:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    import fxminimize
    import fxminimize.api as api

    if args.preload:
        import runpy
        runpy.run_path(args.preload)

    if not args.no_warmup:
        from transformers import ConvNextConfig, ConvNextModel

        tiny = ConvNextModel(ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64])).eval()
        fxminimize.minimize(tiny, (torch.randn(2, 3, 32, 32),))
        del tiny
    model, masks = build(args.mask)
    x = torch.randn(args.batch, 3, 224, 224)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    phases: list = []
    if args.phases:
        def wrap(name, fn):
            def inner(*a, **k):
                before = rss()
                reset_hwm()
                t = time.perf_counter()
                out = fn(*a, **k)
                phases.append({"phase": name, "seconds": round(time.perf_counter() - t, 3),
                               "rss_before_MB": (before - base[0]) / MB, "peak_MB": (hwm() - base[0]) / MB,
                               "rss_after_MB": (rss() - base[0]) / MB})
                return out
            return inner
        base = [0]
        for name in ("masked_copy", "capture", "analyze", "rewrite", "verify", "describe_graph"):
            setattr(api, name, wrap(name, getattr(api, name)))
    gc.collect()
    reset_hwm()
    r0 = rss()
    if args.phases:
        base[0] = r0
    t = time.perf_counter()
    res = fxminimize.minimize(model, (x,), masks=masks)
    seconds = time.perf_counter() - t
    peak = hwm() - r0
    kept = rss() - r0
    return {"param_bytes": param_bytes, "buffer_bytes": buffer_bytes,
            "params_before": res.report.params_before, "params_after": res.report.params_after,
            "rss_before_MB": r0 / MB, "peak_extra_MB": peak / MB, "retained_MB": kept / MB,
            "peak_over_params": peak / param_bytes, "retained_over_params": kept / param_bytes,
            "seconds": seconds, "phases": phases}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mask", choices=("dead", "magnitude", "none"), default="dead")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--phases", action="store_true")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--preload", default=None, metavar="FILE",
                    help="run this Python file in each child first (what-if experiments: patch, then measure)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return
    runs = []
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--mask", args.mask, "--batch", str(args.batch)]
    cmd += ["--phases"] * args.phases + ["--no-warmup"] * args.no_warmup
    cmd += ["--preload", os.path.abspath(args.preload)] if args.preload else []
    for i in range(args.repeats):
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode or not line:
            sys.exit(f"child failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
        r = json.loads(line[-1][7:])
        runs.append(r)
        print(f"run {i}: peak extra {r['peak_extra_MB']:.1f} MB = {r['peak_over_params']:.2f}x params, "
              f"retained {r['retained_MB']:.1f} MB, {r['seconds']:.1f} s", file=sys.stderr)
        for p in r["phases"]:
            print(f"    {p['phase']:<15} {p['seconds']:6.2f} s  rss before {p['rss_before_MB']:7.1f}  "
                  f"peak {p['peak_MB']:7.1f}  after {p['rss_after_MB']:7.1f} MB (above start)", file=sys.stderr)
    med = {k: statistics.median(r[k] for r in runs)
           for k in ("peak_extra_MB", "retained_MB", "peak_over_params", "retained_over_params", "seconds")}
    out = {
        "model": "transformers ConvNextModel(ConvNextConfig()) = ConvNeXt-Tiny, random weights",
        "mask": {"dead": "half of every block's MLP hidden neurons zero (weights exact zeros)",
                 "magnitude": "90% global magnitude masks dict", "none": "no mask"}[args.mask],
        "input": f"{args.batch}x3x224x224", "warmup": not args.no_warmup, "preload": args.preload,
        "param_MB": runs[0]["param_bytes"] / MB, "buffer_MB": runs[0]["buffer_bytes"] / MB,
        "params_before": runs[0]["params_before"], "params_after": runs[0]["params_after"],
        "median": med, "runs": runs, "repeats": args.repeats,
        "method": "fresh child process; VmHWM reset via /proc/self/clear_refs just before minimize(); "
                  "peak extra = VmHWM after - VmRSS before",
        "torch": __import__("torch").__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.phases:
        out["phases_median_run"] = sorted(runs, key=lambda r: r["peak_extra_MB"])[len(runs) // 2]["phases"]
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
