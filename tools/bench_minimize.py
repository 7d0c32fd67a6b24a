"""Benchmark minimize() on Hugging Face ConvNeXt-Tiny (default config, random weights) with a
90% global magnitude mask; time split into capture / analysis / rewrite / verify.

    .venv/bin/python tools/bench_minimize.py [--repeats 3] [--json out.json]

A benchmark, not a timed test: timings on a shared 2-core machine are noisy, so the script
reports the median over repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

import fxminimize  # noqa: E402
from fxminimize.testing.zoo import magnitude_masks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from transformers import ConvNextConfig, ConvNextModel

    torch.manual_seed(0)
    model = ConvNextModel(ConvNextConfig()).eval()
    masks = magnitude_masks(model, args.sparsity)
    x = torch.randn(2, 3, 224, 224)
    runs = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        res = fxminimize.minimize(model, (x,), masks=masks)
        total = time.perf_counter() - t
        runs.append(dict(res.report.timings, total=total))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out = {
        "model": "transformers ConvNextModel(ConvNextConfig()) = ConvNeXt-Tiny, random weights",
        "mask": f"{args.sparsity:.0%} global magnitude over Linear/Conv weights",
        "params_before": res.report.params_before, "params_after": res.report.params_after,
        "median_seconds": med, "analysis_plus_rewrite": med["analysis"] + med["rewrite"],
        "repeats": args.repeats, "torch": torch.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
