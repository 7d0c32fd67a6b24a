"""Squeeze-Release on a ConvNeXt-style CNN, Fashion-MNIST.

    nice -n 19 python tools/reproduce_cnn.py --seeds 0 1 2 --out tools/results/cnn_matched.json --ckpt-dir /tmp/cnn_ckpt

The network (:class:`ConvNeXtFM`) has ConvNeXt-Tiny's design scaled to 28x28 grey images and two
CPU cores: patchify stem (2x2 conv, stride 2) + channels-first LayerNorm; residual stages of
ConvNeXt blocks (depthwise 7x7 conv, LayerNorm, inverted MLP Linear d→4d, GELU, Linear 4d→d,
layer scale, residual add); a LayerNorm + 2x2 stride-2 conv between stages; global average pool,
LayerNorm, Linear head. Defaults: dims (24, 48), depths (2, 2), 59,890 parameters.

The same comparison as ``reproduce_fc.py`` (:func:`fxminimize.training.comparison.run_comparison`):
the dense model, Squeeze-Release, and at the cycles nearest ``--report-ratios`` (default 15x and
25x) the five budget-matched baselines of ``--methods`` (the scratch network: this family at the
cycle's stage and MLP widths). Training on the first 50,000 training images; every figure a run
reads is **validation** accuracy (the last 10,000); test accuracy is only recorded.

Residual-stream channels (the stem/downsampling outputs every block of a stage adds into) are
removed only when they are CONST in every writer and every reader folds them: with plain
magnitude pruning of >= 2-D tensors that never happens, because the stem LayerNorm's weight and
the layer scales (1-D) are never pruned, and a whole channel would have to die in the stem, in
every block and in the next downsampling at once.

``--criterion channel`` (the default, :class:`ChannelScores`) is structured: each cycle it reads
the units of the *current* model (:func:`channel_units`: every stream channel of a stage with all
its writer and reader slices, every block's MLP hidden unit), scores them by relative RMS, and
zeroes whole units, lowest first, until the model is ``--keep`` of its size (per-cycle caps per
stage / block, never the last unit), plus ``--extra`` (default 0.2) unstructured zeros inside
the kept tensors (never a whole row or column) for the release to give back: the release step is
in play (``--extra 0`` makes the cycle iterative structured pruning, nothing to release). The squeeze then
removes exactly those units, so every reader stays aligned with the stream cycle after cycle
(checked: :func:`channel_units` raises otherwise). Stream channels leave through LayerNorms:
``minimize`` writes those as exact compensated LayerNorms (the operator
``fxminimize::compensated_layer_norm``), and the next cycle's ``minimize`` removes further
channels through them, so every cycle works on the exact output of the previous one. (Until
2026-11-27 it could not, and the script restarted every later cycle from an inexact rebuild.)

``--criterion stream`` (:func:`stream_scores`, the earlier joint entry-level criterion with its
``max_drop`` / ``tensor_keep`` safeguards) and ``--criterion magnitude`` (plain ``|w|``) are kept
for comparison.

A full run (all 60,000 training images, the defaults) is sized for about an hour on two cores;
``--train-limit`` and the epoch options give shorter runs.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reproduce_fc import add_common_args, dense_teacher, reuse_dense, run_seeds, unstructured_prune  # noqa: E402

from fxminimize import training as sr  # noqa: E402
from fxminimize.training.comparison import run_comparison  # noqa: E402
from fxminimize.training.data import TensorLoader, load_fashion_mnist_splits  # noqa: E402

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


def stream_groups(depths: Sequence[int]) -> list:
    """For each stage, the tensor slices that touch one channel ``c`` of its residual stream:
    ``(name, kind)`` with kind ``"row"`` (``W[c]``), ``"col"`` (``W[:, c]``) or ``"vec"`` (``v[c]``).

    Writers: the stem conv and the stem LayerNorm's weight (stage 0) or the downsampling conv
    (later stages), and every block's layer scale ``gamma``; readers: every block's depthwise
    conv, its LayerNorm weight and ``pwconv1`` column, ``pwconv2`` row, and the next LayerNorm
    weight and conv column (downsampling, or the final norm and head). With all of them zero the
    channel is CONST in every writer (the LayerNorm/conv biases are constants) and every reader
    of it is constant-foldable, so the squeeze removes it (CompensatedLayerNorm keeps the norms
    exact)."""
    groups = []
    for s, n in enumerate(depths):
        g = [("stem.0.weight", "row"), ("stem.1.weight", "vec")] if s == 0 else [(f"downsample.{s - 1}.1.weight", "row")]
        for b in range(n):
            pre = f"stages.{s}.{b}."
            g += [(pre + "gamma", "vec"), (pre + "dwconv.weight", "row"), (pre + "norm.weight", "vec"),
                  (pre + "pwconv1.weight", "col"), (pre + "pwconv2.weight", "row")]
        if s < len(depths) - 1:
            g += [(f"downsample.{s}.0.weight", "vec"), (f"downsample.{s}.1.weight", "col")]
        else:
            g += [("norm.weight", "vec"), ("head.weight", "col")]
        groups.append(g)
    return groups


def stream_prunable(depths: Sequence[int]):
    """``prunable`` for SqueezeRelease: every tensor with >= 2 dims plus the 1-D tensors of
    :func:`stream_groups` (norm weights, layer scales)."""
    vec = {name for g in stream_groups(depths) for name, kind in g if kind == "vec"}

    def prunable(model):
        return {n: p for n, p in model.named_parameters() if p.is_floating_point() and (p.dim() >= 2 or n in vec)}
    return prunable


def stream_scores(depths: Sequence[int], weight: float = 1.0, max_drop: float = 0.5, tensor_keep: float = 0.0):
    """Criterion scoring the residual-stream channels jointly across all their writers and readers.

    Channel ``c`` of a stage gets ``s_c = weight · mean |w|`` over its entries in the >= 2-D
    tensors of :func:`stream_groups`; each of those entries scores ``min(|w|, s_c)`` and its 1-D
    entries score ``s_c``. Entries still prune one by one by magnitude, but once the global
    threshold passes ``s_c`` every slice of the channel goes at once, which is what makes it
    removable. At most ``max_drop`` of a stage's stream channels can go in one cycle: the others
    (highest ``s_c``) score plain ``|w|`` and their 1-D entries are never pruned (without this
    cap a prune fraction that shrinks the model by half can empty a whole stage's stream, and
    the network collapses to chance). Every other entry scores ``|w|`` (plain magnitude: MLP
    hidden units die as before). ``tensor_keep`` > 0: in every >= 2-D tensor the top
    ``tensor_keep`` share of entries (by the scores above) is never pruned, so a high global
    fraction cannot empty a tensor (which makes the network constant).
    """
    import math

    groups = stream_groups(depths)

    def _slice(t, kind, c):
        return t[c] if kind in ("row", "vec") else t[:, c]

    def criterion(model, params):
        scores = {n: p.detach().abs().float() for n, p in params.items()}
        for g in groups:
            g = [(n, k) for n, k in g if n in params]
            if not g:
                continue
            width = params[g[0][0]].shape[0] if g[0][1] != "col" else params[g[0][0]].shape[1]
            # a reader may already have lost some of the channels (e.g. a pwconv1 column that was
            # all zero is removed while the stream channel stays): its indices no longer line up
            # with the writer's, so it is left to plain magnitude. The channel can still die when
            # the remaining slices (its LayerNorm weight among them) are zero.
            g = [(n, k) for n, k in g if params[n].shape[1 if k == "col" else 0] == width]
            s = []
            for c in range(width):
                mats = [_slice(scores[n], k, c).reshape(-1) for n, k in g if k != "vec"]
                s.append(weight * float(torch.cat(mats).mean()))
            n_protect = max(1, width - math.floor(max_drop * width))
            protected = set(sorted(range(width), key=lambda c: -s[c])[:n_protect])
            for c in range(width):
                for n, k in g:
                    sl = _slice(scores[n], k, c)
                    if c in protected:
                        if k == "vec":
                            sl.fill_(math.inf)
                    else:
                        sl.copy_(torch.full_like(sl, s[c]) if k == "vec" else sl.clamp(max=s[c]))
        if tensor_keep > 0:
            for n, t in scores.items():
                if t.dim() >= 2:
                    k = max(1, math.ceil(tensor_keep * t.numel()))
                    flat = t.reshape(-1)
                    flat[torch.topk(flat, k).indices] = math.inf
        return scores

    criterion.__name__ = f"stream_scores(weight={weight}, max_drop={max_drop}, tensor_keep={tensor_keep})"
    return criterion


def _width_of(t: torch.Tensor, kind: str) -> int:
    return t.shape[1] if kind == "col" else t.shape[0]


def _sl(t: torch.Tensor, kind: str, c: int) -> torch.Tensor:
    return t[:, c] if kind == "col" else t[c]


def channel_units(model: nn.Module, depths: Sequence[int]) -> list:
    """The removable units of a (possibly minimized) :class:`ConvNeXtFM`, read from its current
    parameter names and shapes: ``(group, index, slices)`` with ``slices`` a list of
    ``(name, kind)`` (:func:`stream_groups` kinds). Groups: ``("stream", s)``, one per stage (the
    residual-stream channels, all writers and readers together) and ``("hidden", s, b)``, one per
    block (MLP hidden unit ``j``: ``pwconv1`` row ``j`` and ``pwconv2`` column ``j``).

    Raises if a slice does not line up with its group's width (a reader that lost input
    columns while the stream channel stayed): the structured criterion never makes one, so this
    is a check that every cycle removed exactly whole units."""
    params = dict(model.named_parameters())
    groups = []
    for s, g in enumerate(stream_groups(depths)):
        g = [(n, k) for n, k in g if n in params]
        widths = {n: _width_of(params[n], k) for n, k in g}
        if len(set(widths.values())) != 1:
            raise RuntimeError(f"stage {s}: stream slices no longer line up: {widths}")
        groups.append((("stream", s), next(iter(widths.values())), g))
    for s, n_blocks in enumerate(depths):
        for b in range(n_blocks):
            pre = f"stages.{s}.{b}."
            g = [(pre + "pwconv1.weight", "row"), (pre + "pwconv2.weight", "col")]
            widths = {n: _width_of(params[n], k) for n, k in g}
            if len(set(widths.values())) != 1:
                raise RuntimeError(f"block {s}.{b}: MLP slices no longer line up: {widths}")
            groups.append((("hidden", s, b), next(iter(widths.values())), g))
    return groups


def family_size(widths: dict, depths: Sequence[int], num_classes: int = 10) -> int:
    """Parameters of a :class:`ConvNeXtFM` with the widths ``{("stream", s): d, ("hidden", s, b): h}``."""
    d = [widths[("stream", s)] for s in range(len(depths))]
    n = 4 * d[0] + d[0] + 2 * d[0]  # stem conv + LayerNorm
    for s, nb in enumerate(depths):
        for b in range(nb):
            h = widths[("hidden", s, b)]
            n += 54 * d[s] + 2 * h * d[s] + h  # dwconv 7x7 + bias, LN, gamma, pwconv2 bias; pwconv1/2
        if s + 1 < len(depths):
            n += 2 * d[s] + 4 * d[s] * d[s + 1] + d[s + 1]
    return n + 2 * d[-1] + num_classes * d[-1] + num_classes


class ChannelScores:
    """Structured criterion: whole residual-stream channels and whole MLP hidden units.

    Each cycle, every unit of the *current* model (:func:`channel_units`) gets a score: the mean
    over its slices of the slice's RMS relative to its tensor's RMS (1-D entries: ``|v_c| /
    RMS(v)``), times ``stream_weight`` for stream channels. Units go lowest score first, over all
    groups together, until the model's parameter count (:func:`family_size` of the widths left)
    is ``keep`` of what it was, with at most ``max_drop_stream`` (``max_drop_hidden``) of a group's current units per cycle and never the
    last ``min_units`` of a group. Every slice of a chosen unit is zeroed (stream channel: the
    stem conv row and LayerNorm weight or downsampling conv row, every block's layer scale,
    depthwise filter, LayerNorm weight, ``pwconv1`` column and ``pwconv2`` row, the next
    LayerNorm weight and conv / head column; hidden unit: ``pwconv1`` row, ``pwconv2`` column),
    so the squeeze removes exactly those units and the model stays aligned cycle after cycle.

    ``extra`` > 0: in addition, that share of the entries of every >= 2-D tensor of the kept
    units (lowest ``|w|`` first, per tensor) is zeroed, always keeping the largest entry of every
    row and every column, so no further unit dies by accident: these are the zeros the release
    step gives back.

    The criterion decides the whole mask: chosen entries score 0, the rest ``+inf``; use it with
    the fixed schedule 1.0 (``global_prune_masks`` then drops exactly the finite-score entries).
    ``last`` holds the chosen units of the last call."""

    def __init__(self, depths: Sequence[int], keep: float = 0.6, max_drop_stream: float = 0.35,
                 max_drop_hidden: float = 0.6, min_units: int = 1, stream_weight: float = 1.0, extra: float = 0.0):
        self.depths, self.keep = tuple(depths), keep
        self.max_drop_stream, self.max_drop_hidden, self.min_units = max_drop_stream, max_drop_hidden, min_units
        self.stream_weight, self.extra = stream_weight, extra
        self.last: dict = {}
        self.__name__ = (f"ChannelScores(keep={keep}, max_drop_stream={max_drop_stream}, "
                         f"max_drop_hidden={max_drop_hidden}, stream_weight={stream_weight}, extra={extra})")

    def select(self, model: nn.Module) -> dict:
        """``{group: [unit indices to drop]}`` for ``model``."""
        import math

        params = {n: p.detach().float() for n, p in model.named_parameters()}
        rms = {n: float(t.pow(2).mean().sqrt().clamp_min(1e-12)) for n, t in params.items()}
        cand = []  # (score, group, index)
        caps, widths = {}, {}
        for gid, width, slices in channel_units(model, self.depths):
            widths[gid] = width
            w = self.stream_weight if gid[0] == "stream" else 1.0
            md = self.max_drop_stream if gid[0] == "stream" else self.max_drop_hidden
            caps[gid] = max(0, min(math.floor(md * width), width - self.min_units))
            for c in range(width):
                sc = [float(_sl(params[n], k, c).pow(2).mean().sqrt()) / rms[n] for n, k in slices]
                cand.append((w * sum(sc) / len(sc), gid, c))
        cand.sort(key=lambda t: t[0])
        target = self.keep * family_size(widths, self.depths)
        drop = {}
        for score, gid, c in cand:
            if family_size(widths, self.depths) <= target:
                break
            if len(drop.get(gid, [])) >= caps[gid]:
                continue
            drop.setdefault(gid, []).append(c)
            widths[gid] -= 1
        return drop

    def __call__(self, model: nn.Module, params: dict) -> dict:
        import math

        drop = self.select(model)
        units = {gid: slices for gid, _, slices in channel_units(model, self.depths)}
        dead = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in params.items()}
        for gid, idx in drop.items():
            for n, k in units[gid]:
                if n not in dead:
                    raise KeyError(f"{n} is not prunable: use stream_prunable() as SqueezeRelease's prunable")
                for c in idx:
                    _sl(dead[n], k, c).fill_(True)
        if self.extra > 0:
            for n, p in params.items():
                if p.dim() < 2 or n == "head.weight":
                    continue
                a = p.detach().abs().float().masked_fill(dead[n], math.inf)  # dead entries: already zeroed
                live = int((~dead[n]).sum())
                k = int(self.extra * live)
                if k <= 0:
                    continue
                protect = torch.zeros_like(dead[n])
                flat2 = a.reshape(a.shape[0], a.shape[1], -1)
                # the largest entry of every row and every column is never an extra zero
                pr = flat2.reshape(a.shape[0], -1).masked_fill(dead[n].reshape(a.shape[0], -1), -1).argmax(1)
                protect.reshape(a.shape[0], -1)[torch.arange(a.shape[0]), pr] = True
                colview = flat2.transpose(0, 1).reshape(a.shape[1], -1)
                pc = colview.masked_fill(dead[n].reshape(a.shape[0], a.shape[1], -1).transpose(0, 1)
                                         .reshape(a.shape[1], -1), -1).argmax(1)
                pmask = torch.zeros(a.shape[1], colview.shape[1], dtype=torch.bool)
                pmask[torch.arange(a.shape[1]), pc] = True
                protect |= pmask.reshape(a.shape[1], a.shape[0], -1).transpose(0, 1).reshape(a.shape)
                a = a.masked_fill(protect, math.inf)
                k = min(k, int(torch.isfinite(a).sum()))
                if k > 0:
                    dead[n].reshape(-1)[torch.topk(a.reshape(-1), k, largest=False).indices] = True
        self.last = {("/".join(map(str, g))): len(i) for g, i in drop.items()}
        log.info("channel criterion drops %s", self.last)
        return {n: torch.where(d, torch.zeros(d.shape), torch.full(d.shape, math.inf)) for n, d in dead.items()}


def family_config(shapes: dict, depths: Sequence[int]) -> dict:
    """Stage widths and block MLP widths of a (minimized) ConvNeXtFM, from its weight shapes."""
    dims = [shapes["stem.0.weight"][0]] + [shapes[f"downsample.{i}.1.weight"][0] for i in range(len(depths) - 1)]
    hidden = [shapes[f"stages.{s}.{b}.pwconv1.weight"][0] for s, n in enumerate(depths) for b in range(n)]
    return {"dims": dims, "depths": list(depths), "hidden": hidden}


def run_seed(seed: int, args, data, state: dict, save) -> dict:
    """One seed of the budget-matched comparison (see reproduce_fc.py): validation for every
    figure a run reads, test only recorded."""
    (xtr, ytr), (xva, yva), (xte, yte) = data
    example = (xtr[:4].clone(),)  # a copy: a view would make every checkpoint store the whole training set
    depths = tuple(args.depths)

    def optimizer_fn(params):
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)

    loader = TensorLoader(xtr, ytr, args.batch, seed=seed)
    ckpt_dir = os.path.join(args.ckpt_dir, f"cnn_seed{seed}")
    reuse_dense(args, seed, state, ckpt_dir, f"cnn_seed{seed}")
    if "dense" in state:  # reused or resumed: the batches that follow are the ones a run from scratch draws next
        loader.epoch = args.dense_epochs
    teacher = dense_teacher(args, ckpt_dir, lambda: ConvNeXtFM(args.dims, depths))

    def train_fn(model, opt, epochs, info):
        # label smoothing (if asked) for everything after the dense model: cycles and every baseline
        ls = args.label_smoothing if info.get("phase") != "dense" else 0.0
        sr.train_epochs(model, opt, loader, epochs, desc=f"seed {seed} {info.get('phase', '')} c{info.get('cycle', '')}",
                        progress=not args.no_progress, lr_schedule=args.lr_schedule,
                        loss_fn=functools.partial(F.cross_entropy, label_smoothing=ls), **teacher(info.get("phase")))

    def eval_fn(model):   # validation: the only figure any choice may read
        return sr.accuracy(model, xva, yva, batch_size=500)

    def test_fn(model):   # recorded for the final tables, never read back by the run
        return sr.accuracy(model, xte, yte, batch_size=500)

    if args.criterion == "channel":
        crit = dict(criterion=ChannelScores(depths, args.keep, args.max_drop_stream, args.max_drop_hidden,
                                            stream_weight=args.stream_weight, extra=args.extra),
                    prunable=stream_prunable(depths))
        # the criterion picks whole units for a size target itself and scores the rest +inf: a
        # fixed fraction 1.0 drops exactly its choice
        schedule = 1.0
    elif args.criterion == "stream":
        crit = dict(criterion=stream_scores(depths, args.stream_weight, args.stream_max_drop, args.tensor_keep),
                    prunable=stream_prunable(depths))
        schedule = sr.ShrinkTarget(args.shrink) if args.shrink else args.schedule
    else:
        crit = dict(criterion=sr.magnitude_scores)
        schedule = sr.ShrinkTarget(args.shrink) if args.shrink else args.schedule

    def make_dense():
        torch.manual_seed(seed)
        return ConvNeXtFM(args.dims, depths)

    n0 = sr.deployable_size(ConvNeXtFM(args.dims, depths))
    sr_kwargs = dict(schedule=schedule, finetune_epochs=args.ft_epochs,
                     train_epochs=args.train_epochs[0] if len(args.train_epochs) == 1 else args.train_epochs,
                     release_scale=args.release_scale, max_cycles=args.max_cycles, accuracy_floor=args.floor,
                     target_ratio=args.target_ratio, seed=seed, carry_checkpoint=True, **crit)

    def target_prune(params: int, method: str) -> dict:
        if args.criterion == "channel":
            # one structured cut to `params` of the dense size (a cycle's caps do not apply); the
            # one-shot run with release gets the same --extra zeros to release as every cycle
            extra = args.extra if method == "one_shot_release" else 0.0
            return dict(crit, schedule=1.0, criterion=ChannelScores(depths, params / n0, args.single_max_drop,
                                                                    args.single_max_drop,
                                                                    stream_weight=args.stream_weight, extra=extra))
        return dict(crit, schedule=sr.ShrinkTarget(0.5, lo=0.0, steps=16, sizes=[params]))

    def build_same_shape(rec: dict, module: nn.Module) -> nn.Module:
        cfg = family_config(rec["shapes"], depths)
        torch.manual_seed(seed + 1000)
        return ConvNeXtFM(cfg["dims"], cfg["depths"], cfg["hidden"])

    state.setdefault("seed", seed)
    state.setdefault("config", {"dims": list(args.dims), "depths": list(depths)})
    return run_comparison(state, save, make_dense=make_dense, dense_epochs=args.dense_epochs, example_inputs=example,
                          train_fn=train_fn, eval_fn=eval_fn, test_fn=test_fn, optimizer_fn=optimizer_fn,
                          sr_kwargs=sr_kwargs, report_ratios=args.report_ratios, methods=args.methods,
                          target_prune=target_prune, build_same_shape=build_same_shape, ckpt_dir=ckpt_dir,
                          unstructured_prune=unstructured_prune(args))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    ap.set_defaults(report_ratios=[15.0, 25.0], threads=1)
    ap.add_argument("--dims", type=int, nargs="+", default=[24, 48])
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 2])
    ap.add_argument("--dense-epochs", type=int, default=6)
    ap.add_argument("--ft-epochs", type=int, default=1)
    ap.add_argument("--train-epochs", type=int, nargs="+", default=[4],
                    help="epochs after each release; several values: cycle k uses the k-th (the last repeating)")
    ap.add_argument("--schedule", type=float, default=0.9)
    ap.add_argument("--shrink", type=float, default=None,
                    help="size-targeted schedule: each cycle keeps about this share of the deployable size "
                         "(ShrinkTarget); overrides --schedule")
    ap.add_argument("--max-cycles", type=int, default=6)
    ap.add_argument("--floor", type=float, default=0.80, help="stop below this validation accuracy")
    ap.add_argument("--criterion", choices=["magnitude", "stream", "channel"], default="channel",
                    help="channel: whole stream channels and MLP hidden units (ChannelScores) of the current "
                         "model; stream: residual-stream channels scored jointly across "
                         "writers and readers entry by entry (stream_scores); magnitude: plain |w| on >= 2-D tensors")
    ap.add_argument("--keep", type=float, default=0.58,
                    help="channel criterion: each cycle keeps about this share of the deployable size")
    ap.add_argument("--max-drop-stream", type=float, default=0.35,
                    help="channel criterion: at most this share of a stage's stream channels per cycle")
    ap.add_argument("--max-drop-hidden", type=float, default=0.6,
                    help="channel criterion: at most this share of a block's MLP hidden units per cycle")
    ap.add_argument("--extra", type=float, default=0.2,
                    help="channel criterion: also zero this share of every kept >= 2-D tensor's entries "
                         "(never a whole row or column): the zeros the release step gives back (0: no release "
                         "in play, the cycle is then iterative structured pruning)")
    ap.add_argument("--single-max-drop", type=float, default=0.95,
                    help="channel criterion, one-shot baselines: at most this share of any group's units")
    ap.add_argument("--stream-weight", type=float, default=1.0)
    ap.add_argument("--stream-max-drop", type=float, default=0.5,
                    help="at most this share of a stage's stream channels is pruned per cycle")
    ap.add_argument("--tensor-keep", type=float, default=0.1,
                    help="the top share of every >= 2-D tensor's entries is never pruned (stream criterion)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    data = load_fashion_mnist_splits(args.data_dir, val_size=args.val_size)
    if args.train_limit:
        data = data._replace(train=(data.train[0][:args.train_limit], data.train[1][:args.train_limit]))
    run_seeds(args, data, run_seed, {"model": f"ConvNeXtFM dims {args.dims} depths {args.depths}",
                                     "dataset": "Fashion-MNIST"})


if __name__ == "__main__":
    main()
