"""Squeeze-Release on a ConvNeXt-style CNN, Fashion-MNIST.

    nice -n 10 python tools/reproduce_cnn.py --out tools/results/cnn.json --plot docs/results_cnn.png

The network (:class:`ConvNeXtFM`) has ConvNeXt-Tiny's design scaled to 28x28 grey images and two
CPU cores: patchify stem (2x2 conv, stride 2) + channels-first LayerNorm; residual stages of
ConvNeXt blocks (depthwise 7x7 conv, LayerNorm, inverted MLP Linear d→4d, GELU, Linear 4d→d,
layer scale, residual add); a LayerNorm + 2x2 stride-2 conv between stages; global average pool,
LayerNorm, Linear head. Defaults: dims (16, 32), depths (2, 2), about 27 k parameters.

The same three comparisons as ``reproduce_fc.py``: the dense model, Squeeze-Release cycles, a
single prune-and-shrink pass with the whole Squeeze-Release training budget, and a dense
network of the same family trained from scratch at each cycle's shape (stage widths and every
block's MLP width read from the minimized model).

What the exact rewrite can remove depends on the analysis: channels of the residual stream feed
LayerNorm; until LayerNorm channel removal (CompensatedLayerNorm) is wired into the analysis
they are kept, and only MLP hidden units (and what dies with them) are removed. Nothing here
assumes either way: rerun the script once it lands and the deployable sizes will follow.

A full run (all 60,000 training images, the defaults) is sized for about an hour on two cores;
``--train-limit`` and the epoch options give shorter runs.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reproduce_fc import machine, plot  # noqa: E402

from fxminimize import squeeze_release as sr  # noqa: E402
from fxminimize.data import TensorLoader, load_fashion_mnist  # noqa: E402

log = logging.getLogger("reproduce_cnn")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW tensor."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))
        self.dim, self.eps = dim, eps

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Block(nn.Module):
    """ConvNeXt block: dwconv7x7 → LN → Linear(d, h) → GELU → Linear(h, d) → layer scale → + x."""

    def __init__(self, dim: int, hidden: Optional[int] = None, layer_scale: float = 1e-1):
        super().__init__()
        hidden = hidden or 4 * dim
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1, self.pwconv2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXtFM(nn.Module):
    """ConvNeXt-style classifier for (B, 1, 28, 28). ``hidden``: MLP width of every block, in
    order (default 4 × the stage width)."""

    def __init__(self, dims: Sequence[int] = (32, 64), depths: Sequence[int] = (2, 2),
                 hidden: Optional[Sequence[int]] = None, num_classes: int = 10):
        super().__init__()
        hidden = list(hidden) if hidden is not None else [4 * d for d, n in zip(dims, depths) for _ in range(n)]
        self.stem = nn.Sequential(nn.Conv2d(1, dims[0], 2, stride=2), LayerNorm2d(dims[0]))
        self.downsample = nn.ModuleList(nn.Sequential(LayerNorm2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2))
                                        for i in range(len(dims) - 1))
        it = iter(hidden)
        self.stages = nn.ModuleList(nn.Sequential(*[Block(d, next(it)) for _ in range(n)]) for d, n in zip(dims, depths))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i:
                x = self.downsample[i - 1](x)
            x = stage(x)
        return self.head(self.norm(x.mean((2, 3))))


def family_config(shapes: dict, depths: Sequence[int]) -> dict:
    """Stage widths and block MLP widths of a (minimized) ConvNeXtFM, from its weight shapes."""
    dims = [shapes["stem.0.weight"][0]] + [shapes[f"downsample.{i}.1.weight"][0] for i in range(len(depths) - 1)]
    hidden = [shapes[f"stages.{s}.{b}.pwconv1.weight"][0] for s, n in enumerate(depths) for b in range(n)]
    return {"dims": dims, "depths": list(depths), "hidden": hidden}


def run_seed(seed: int, args, data) -> dict:
    xtr, ytr, xte, yte = data
    example = (xtr[:4],)
    depths = tuple(args.depths)

    def optimizer_fn(params):
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)

    loader = TensorLoader(xtr, ytr, args.batch, seed=seed)

    def train_fn(model, opt, epochs, info):
        sr.train_epochs(model, opt, loader, epochs, desc=f"seed {seed} {info.get('phase', '')} c{info.get('cycle', '')}",
                        progress=not args.no_progress)

    def eval_fn(model):
        return sr.accuracy(model, xte, yte, batch_size=500)

    out: dict = {"seed": seed}
    torch.manual_seed(seed)
    dense = ConvNeXtFM(args.dims, depths)
    t0 = time.perf_counter()
    train_fn(dense, optimizer_fn(dense.parameters()), args.dense_epochs, {"phase": "dense"})
    dense.eval()
    out["dense"] = {"params": sr.deployable_size(dense), "accuracy": eval_fn(dense), "epochs": args.dense_epochs,
                    "time_s": time.perf_counter() - t0, "onnx_bytes": sr.onnx_bytes(dense, example),
                    "config": {"dims": list(args.dims), "depths": list(depths)}}
    log.info("seed %d dense: %.2f%% (%d params, %.0fs)", seed, 100 * out["dense"]["accuracy"], out["dense"]["params"],
             out["dense"]["time_s"])

    t0 = time.perf_counter()
    cyc = sr.SqueezeRelease(copy.deepcopy(dense), example, train_fn, eval_fn, optimizer_fn=optimizer_fn,
                            schedule=sr.ShrinkTarget(args.shrink) if args.shrink else args.schedule,
                            finetune_epochs=args.ft_epochs, train_epochs=args.train_epochs,
                            release_scale=args.release_scale, max_cycles=args.max_cycles, accuracy_floor=args.floor,
                            checkpoint_dir=os.path.join(args.ckpt_dir, f"cnn_seed{seed}") if args.ckpt_dir else None,
                            seed=seed)
    res = cyc.run(resume=args.resume)
    hist = [asdict(r) for r in res.history]
    for rec in hist[1:]:
        if rec["checkpoint"]:
            rec["onnx_bytes"] = sr.onnx_bytes(sr.load_checkpoint(rec["checkpoint"]).eval(), example)
    out["squeeze_release"] = {"history": hist, "stop_reason": res.stop_reason, "time_s": time.perf_counter() - t0}
    for r in res.history:
        log.info("seed %d SR %s", seed, r.line())
    budget = res.history[-1].epochs_total

    out["single_pass"] = []
    for s in args.single_sparsities:
        t0 = time.perf_counter()
        small, rec = sr.single_pass(copy.deepcopy(dense), example, train_fn, eval_fn, optimizer_fn=optimizer_fn,
                                    sparsity=s, epochs=budget, params_unpruned=out["dense"]["params"])
        d = asdict(rec)
        d.update(sparsity=s, time_s=time.perf_counter() - t0)
        out["single_pass"].append(d)
        log.info("seed %d single pass %.3f: %d params (%.2fx) acc %.2f%%", seed, s, rec.params, rec.ratio,
                 100 * rec.accuracy)

    out["scratch"] = []
    for rec in res.history[1:]:
        cfg = family_config(rec.shapes, depths)
        torch.manual_seed(seed + 1000)
        net = ConvNeXtFM(cfg["dims"], cfg["depths"], cfg["hidden"])
        t0 = time.perf_counter()
        train_fn(net, optimizer_fn(net.parameters()), args.dense_epochs, {"phase": "scratch"})
        out["scratch"].append({"cycle": rec.cycle, "params": sr.deployable_size(net), "sr_params": rec.params,
                               "config": cfg, "accuracy": eval_fn(net), "epochs": args.dense_epochs,
                               "time_s": time.perf_counter() - t0})
        log.info("seed %d scratch %s: %d params acc %.2f%%", seed, cfg, out["scratch"][-1]["params"],
                 100 * out["scratch"][-1]["accuracy"])
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 2])
    ap.add_argument("--dense-epochs", type=int, default=6)
    ap.add_argument("--ft-epochs", type=int, default=1)
    ap.add_argument("--train-epochs", type=int, default=2)
    ap.add_argument("--schedule", type=float, default=0.9)
    ap.add_argument("--shrink", type=float, default=None,
                    help="size-targeted schedule: each cycle keeps about this share of the deployable size "
                         "(ShrinkTarget); overrides --schedule")
    ap.add_argument("--release-scale", type=float, default=0.05)
    ap.add_argument("--max-cycles", type=int, default=5)
    ap.add_argument("--floor", type=float, default=0.80)
    ap.add_argument("--single-sparsities", type=float, nargs="+", default=[0.9, 0.97])
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="tools/results/cnn.json")
    ap.add_argument("--plot", default=None)
    ap.add_argument("--ckpt-dir", default="tools/results/ckpt")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.plot_only:
        with open(args.out) as f:
            plot(json.load(f), args.plot, "ConvNeXt-style CNN, Fashion-MNIST")
        return
    torch.set_num_threads(args.threads)
    xtr, ytr = load_fashion_mnist("train", args.data_dir, limit=args.train_limit)
    xte, yte = load_fashion_mnist("test", args.data_dir)
    results = {"model": f"ConvNeXtFM dims {args.dims} depths {args.depths}", "dataset": "Fashion-MNIST",
               "command": " ".join([os.path.basename(sys.executable)] + sys.argv), "args": vars(args),
               "machine": machine(), "date": datetime.date.today().isoformat(), "runs": [],
               "markers": [[14.8, "14.8x (paper, CIFAR-10)"]]}
    t0 = time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for seed in args.seeds:
        results["runs"].append(run_seed(seed, args, (xtr, ytr, xte, yte)))
        results["time_s"] = time.perf_counter() - t0
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot, f"ConvNeXt-style CNN {args.dims}/{args.depths}, Fashion-MNIST ({results['date']})")
    log.info("done in %.0fs -> %s", time.perf_counter() - t0, args.out)


if __name__ == "__main__":
    main()
