"""Print the worked example of docs/transformers.md: the masked Hugging Face models of
tests/test_transformers.py, minimized, with parameter counts, the shapes of a few weights and
the maximum error against the original (float32).

    HF_HUB_OFFLINE=1 .venv/bin/python tools/transformers_example.py
"""
from __future__ import annotations

import os
import platform
import sys
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import fxminimize  # noqa: E402
import test_transformers as tt  # noqa: E402


def main() -> None:
    print(f"# {platform.machine()} {platform.processor() or ''} torch {torch.__version__} "
          f"{time.strftime('%Y-%m-%d')}")
    print("| model | params before | params after | ratio | max abs error | minimize s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, build in tt.MODELS.items():
        torch.manual_seed(0)
        model, x, shapes = build()
        t0 = time.perf_counter()
        r = fxminimize.minimize(model, (x,))
        dt = time.perf_counter() - t0
        rep = r.report
        print(f"| {name} | {rep.params_before:,} | {rep.params_after:,} | {rep.ratio:.3f} | "
              f"{rep.max_abs_error:.2g} | {dt:.1f} |")
        sd = r.module.state_dict()
        orig = model.state_dict()
        for k in shapes:
            print(f"|   {k} | {tuple(orig[k].shape)} | {tuple(sd[k].shape)} | | | |")


if __name__ == "__main__":
    main()
