"""Benchmark minimize() on a Hugging Face Llama (random weights) in graph mode and module mode.

The model is masked like issue 16's TinyLlama experiment: half of every MLP's hidden channels
dead (gate_proj rows zero) and one KV group per layer unread (o_proj columns of its query
heads zero). Each mode runs in its own subprocess (so peak memory is per mode) on one thread,
and prints capture, analysis, rewrite, verify times, the total over capture, and peak RSS growth
over the model's parameter bytes next to the target (minimized over original + 0.15). In module
mode "rewrite" includes building the resized copy and "verify" the graph-mode estimate.

    .venv/bin/python tools/bench_llm.py                       # small default (fits a busy 2-core machine)
    .venv/bin/python tools/bench_llm.py --size tinyllama      # TinyLlama-1.1B shape (22 layers, 2048 wide)
    .venv/bin/python tools/bench_llm.py --size medium        # 1024 wide, 8 layers (107M parameters)
    .venv/bin/python tools/bench_llm.py --hidden 512 --layers 4 --dtype bfloat16

A benchmark, not a test: timings on a shared machine are noisy; re-measure on a quiet one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

SIZES = {  # hidden, layers, heads, kv heads, intermediate, vocab
    "small": (256, 4, 8, 4, 704, 2048),
    "medium": (1024, 8, 16, 4, 2816, 8192),
    "tinyllama": (2048, 22, 32, 4, 5632, 32000),
}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(args) -> dict:
    import torch
    import transformers as T

    import fxminimize

    torch.set_num_threads(1)
    hidden, layers, heads, kv, inter, vocab = args.shape
    cfg = T.LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        num_key_value_heads=kv, intermediate_size=inter, vocab_size=vocab,
                        max_position_embeddings=256, use_cache=False)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    model = T.LlamaForCausalLM(cfg).to(dtype).eval()
    dh, rep = hidden // heads, heads // kv
    with torch.no_grad():
        for L in model.model.layers:
            L.mlp.gate_proj.weight[: inter // 2] = 0
            L.self_attn.o_proj.weight[:, : rep * dh] = 0       # query heads of kv group 0
    pbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    x = torch.randint(0, vocab, (1, args.seq))
    base = _rss()
    t0 = time.perf_counter()
    res = fxminimize.minimize(model, (x,), keep_modules=args.mode == "module")
    total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = dict(res.report.timings)
    return {"mode": args.mode, "params_before": res.report.params_before, "params_after": res.report.params_after,
            "param_bytes": pbytes, "timings": t, "total": total, "total_over_capture": total / t["capture"],
            "rewrite_over_capture": t["rewrite"] / t["capture"], "peak_growth_over_param_bytes": (peak - base) / pbytes,
            "max_abs_error": res.report.max_abs_error,
            # the bound, as growth over the original: minimized parameter bytes + 15 %
            "peak_target": res.report.params_after / res.report.params_before + 0.15,
            "beyond_module_mode": res.report.module_mode.get("beyond_module_mode")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--modes", default="graph,module")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    shape = list(SIZES[args.size])
    if args.hidden:
        shape[0], shape[4] = args.hidden, args.hidden * shape[4] // shape[0]
    if args.layers:
        shape[1] = args.layers
    args.shape = shape
    if args.child:
        args.mode = args.child
        json.dump(child(args), sys.stdout)
        return
    rows = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--child", mode, "--size", args.size, "--dtype", args.dtype,
               "--seq", str(args.seq)] + (["--hidden", str(args.hidden)] if args.hidden else []) + \
              (["--layers", str(args.layers)] if args.layers else [])
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"Llama {args.size} {shape} {args.dtype}, seq {args.seq}, 1 thread, {platform.node()}, "
          f"load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'mode':7} {'params':>21} {'capture':>8} {'analysis':>8} {'rewrite':>8} {'verify':>7} "
          f"{'total/capture':>13} {'rewrite/capture':>15} {'peak/params':>11} {'target':>7} {'max err':>8}")
    for r in rows:
        t = r["timings"]
        print(f"{r['mode']:7} {r['params_before']:>10,}->{r['params_after']:<10,} {t['capture']:8.2f} {t['analysis']:8.2f} "
              f"{t['rewrite']:8.2f} {t['verify']:7.2f} {r['total_over_capture']:13.2f} "
              f"{r['rewrite_over_capture']:15.2f} {r['peak_growth_over_param_bytes']:11.2f} "
              f"{r['peak_target']:7.2f} {r['max_abs_error']:8.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
