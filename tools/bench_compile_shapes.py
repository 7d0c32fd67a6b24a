"""The compile backend at every sequence length: which graph ran at each call, and its speed.

    .venv/bin/python tools/bench_compile_shapes.py [--then inductor] [--lengths 128,64,96,128,200,64]
                                                   [--batch 8] [--repeats 5] [--json out.json]

Model: a GPT-2 LM (width 256, 4 layers, 8 heads, MLP 1024, vocab 1000, 256 positions, random
weights) with half of its residual-stream channels, half of its heads and half of its MLP
channels zeroed (``prune_gpt2`` of tools/bench_inference.py, plus its 50 % unstructured mask).
``torch.compile(model, backend=fxminimize.compile_backend.backend, options={"then": THEN})``
is called under ``torch.no_grad()`` at each length in turn (batch ``--batch``). Per call: the
time (the first call at a length includes dynamo's and the backend's compiling), which graph ran
(``GraphRecord.calls``: "minimized" or "original"), and the max abs error against eager. Then,
compiled: per length, the median of ``--repeats`` calls, interleaved with eager calls.
A benchmark, not a test: on a shared machine timings are noisy; compare ratios from one run.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from fxminimize import compile_backend as cb  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_inference import prune_gpt2  # noqa: E402


def build():
    import transformers
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_embd=256, n_layer=4, n_head=8, vocab_size=1000, n_positions=256,
                                  use_cache=False, bos_token_id=0, eos_token_id=0)
    m = transformers.GPT2LMHeadModel(cfg).eval()
    prune_gpt2(m.transformer, 0.5)
    return m


def _counts():
    """Calls so far that ran a minimized graph, and that fell back to an original one."""
    return sum(r.minimized_calls for r in cb.history()), sum(r.fallbacks for r in cb.history())


def _timed(fn, x):
    t = time.perf_counter()
    y = fn(x)
    return time.perf_counter() - t, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--then", default="inductor", help="backend after fxminimize ('none': eager)")
    ap.add_argument("--lengths", default="128,64,96,128,200,64")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    lengths = [int(v) for v in args.lengths.split(",")]
    then = None if args.then == "none" else args.then
    model = build()
    compiled = torch.compile(model, backend=cb.backend, options={"then": then} if then else None)
    logits = lambda f: (lambda x: f(x).logits)  # noqa: E731
    rows = []
    with torch.no_grad():
        for L in lengths:
            x = torch.randint(0, 1000, (args.batch, L))
            m0, f0 = _counts()
            t, y = _timed(logits(compiled), x)
            m1, f1 = _counts()
            which = "original" if f1 > f0 else "minimized" if m1 > m0 else "pass-through"
            te, ye = _timed(logits(model), x)
            rows.append({"length": L, "first_call_s": t, "eager_s": te, "ran": which,
                         "max_abs_error": float((y - ye).abs().max())})
            print(f"length {L:4d}: first call {t:7.2f} s, ran {which:9s}, eager {te * 1e3:7.1f} ms, "
                  f"max abs error {rows[-1]['max_abs_error']:.2g}", flush=True)
        steady = []
        for L in sorted(set(lengths)):
            x = torch.randint(0, 1000, (args.batch, L))
            tc, te = [], []
            for _ in range(args.repeats):
                tc.append(_timed(logits(compiled), x)[0])
                te.append(_timed(logits(model), x)[0])
            steady.append({"length": L, "compiled_ms": statistics.median(tc) * 1e3,
                           "eager_ms": statistics.median(te) * 1e3})
    print(f"\nsteady state, medians of {args.repeats} interleaved calls (load {os.getloadavg()[0]:.1f}):")
    print(f"{'length':>6} {'compiled ms':>12} {'eager ms':>9} {'eager/compiled':>15}")
    for s in steady:
        print(f"{s['length']:6d} {s['compiled_ms']:12.1f} {s['eager_ms']:9.1f} {s['eager_ms'] / s['compiled_ms']:14.2f}x")
    for r in cb.history():
        print(f"{r}; calls: minimized {r.minimized_calls}, original {r.fallbacks}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"calls": rows, "steady": steady, "then": args.then, "batch": args.batch,
                       "graphs": [str(r) for r in cb.history()], "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "loadavg": os.getloadavg(),
                       "date": time.strftime("%Y-%m-%d %H:%M")}, f, indent=2)


if __name__ == "__main__":
    main()
