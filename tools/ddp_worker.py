"""One short Squeeze-Release cycle under ``torchrun`` with DDP (gloo, CPU).

    python -m torch.distributed.run --nproc_per_node 2 tools/ddp_worker.py OUT_DIR [--cycles N] [--keep-modules]

Every rank builds the same small MLP and trains on its own shard of a synthetic task; the
cycle wraps the model in ``DistributedDataParallel`` and rebuilds the optimizer after each
shrink. Rank 0 writes ``OUT_DIR/ddp_result.json``: the history, the world size, whether the
train step saw a DDP model in every phase, and a checksum of the final weights per rank
(they must be equal).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from fxminimize import training as sr


def make_data(n: int = 512, d: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x[:, d // 2:] *= 0.05            # half the inputs carry little signal
    w = torch.randn(d, 4, generator=g)
    y = (x @ w).argmax(-1)
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--cycles", type=int, default=1)
    ap.add_argument("--keep-modules", action="store_true", help="squeeze in module mode (the model stays nn.Sequential)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)              # same initial model on every rank
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    x, y = make_data()
    xs, ys = x[rank::world], y[rank::world]
    seen = []

    def train_fn(m, opt, epochs, info):
        seen.append((info["phase"], isinstance(m, nn.parallel.DistributedDataParallel)))
        m.train()
        for _ in range(epochs):
            for i in range(0, xs.shape[0], 64):
                opt.zero_grad()
                F.cross_entropy(m(xs[i:i + 64]), ys[i:i + 64]).backward()
                opt.step()

    def eval_fn(m):
        return sr.accuracy(m, x, y)

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_fn(nn.parallel.DistributedDataParallel(model), opt, 3, {"phase": "dense"})
    cyc = sr.SqueezeRelease(model, (x[:8],), train_fn, eval_fn, optimizer_fn=lambda p: torch.optim.Adam(p, lr=1e-2),
                            schedule=0.9, finetune_epochs=1, train_epochs=1, max_cycles=args.cycles,
                            checkpoint_dir=os.path.join(args.out, "ckpt"), keep_modules=args.keep_modules)
    res = cyc.run()
    flat = torch.cat([p.detach().reshape(-1) for p in res.module.parameters()])
    sums = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
    dist.all_gather(sums, flat.double().sum().reshape(1))
    if rank == 0:
        with open(os.path.join(args.out, "ddp_result.json"), "w") as f:
            json.dump({"world_size": world, "seen": seen, "checksums": [float(s) for s in sums],
                       "module_class": type(res.module).__name__,
                       "stop_reason": res.stop_reason,
                       "history": [{"cycle": r.cycle, "params": r.params, "accuracy": r.accuracy} for r in res.history]},
                      f, indent=1)
    dist.barrier()
    dist.destroy_process_group()
    # Leave without interpreter finalization: once, in CI (2026-11-30), rank 0 aborted after all its
    # work ("terminate called without an active exception"), most likely while finalization tore
    # down gloo/DDP objects still referenced after destroy_process_group (pytorch/pytorch PR 179291
    # describes gloo threads crashing at exit). Every result is written above; flush and leave.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
