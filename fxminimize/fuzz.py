"""Random architectures with random dead structure, for fuzzing :func:`fxminimize.minimize`.

A *case* is a JSON-able ``spec`` (architecture + weight seed + dead structure + how it is
masked). :func:`build_case` turns a spec into ``(model, example_inputs, description)``; the
same spec always gives the same model, so a spec saved to a file reproduces a failure even
after the generator changes.

Two ways to draw specs, sharing one code path (:func:`draw_spec`):

- :func:`random_case(seed)` / :func:`random_spec(seed)`: a plain ``random.Random`` (no
  hypothesis needed at run time);
- :func:`specs` / :func:`cases`: hypothesis strategies (shrinkable).

:func:`check_case` runs ``minimize`` on a case and classifies the outcome (see
``docs/fuzzing.md``): ``ok``, ``refused`` (a MinimizationError with a clear reason),
``missed`` (an obviously removable structure and no channel removed), ``wrong`` (the
minimized model differs from the masked original on fresh inputs: a silent wrong answer),
``internal`` (anything else raised, or MinimizationError "internal error" / "does not match
the original"), ``mutated`` (the user's model was modified), ``invalid`` (the generated model
itself is unusable, e.g. non-finite outputs: a generator problem, not a minimize failure).

Families and blocks (names used in specs):

- ``vec`` (B, C) and ``seq`` (B, T, C), channels last: ``lin`` (Linear + act), ``mlp``
  (residual MLP, optional pre-LayerNorm and layer scale), ``ln``, ``cat`` (x ++ act(W x)),
  ``split`` (chunk/split: GLU, a+b, Linear on one part), ``gate`` (SE-style sigmoid gate),
  ``act``; ``seq`` only: ``attn`` (``sdpa`` with a view/transpose head split, hand-written
  ``softmax(q kᵀ/√d) v``, ``nn.MultiheadAttention(need_weights=False)``), ``tokpool``
  (mean over tokens or token 0, to ``vec``). ``seq`` inputs are float features or token ids
  (``nn.Embedding``).
- ``img`` (B, C, H, W): ``conv`` (plain / depthwise / grouped, BN, padding, stride, act),
  ``resconv`` (conv-BN-act-conv-BN + x), ``dense`` (cat with a conv), ``split``, ``se``,
  ``convnext`` (dwconv, permute, LayerNorm, pointwise MLP, layer scale, permute, + x),
  ``cfln`` (channels-first LayerNorm via permute), ``pool`` (max/avg 2x2), ``head`` (mean,
  adaptive pool or flatten, to ``vec``).

Dead structure (``spec["dead"]``, each ``{"p": param, "dim": d, "idx": [...], "why": ...}``,
applied as exact zeros, a ``masks`` dict or ``torch.nn.utils.prune``): zero rows (with or
without the bias), zero columns, zero bias entries, residual-stream channels zeroed in every
writer, MLP/SE hidden units, whole attention heads (zero output-projection columns), q dims
(zero rows and bias), k dims (zero rows, bias kept: constant), v dims, layer-scale entries,
LayerNorm/BatchNorm gamma/beta entries, conv filters, input channels and whole groups, plus
random unstructured sparsity.
"""
from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils import _pytree as pytree

__all__ = ["random_case", "random_spec", "build_case", "build_model", "draw_spec", "check_case",
           "Outcome", "Description", "specs", "cases", "RTOL", "ATOL", "CHECK_BATCHES"]

RTOL, ATOL = 1e-4, 1e-5
CHECK_BATCHES = (1, 5)          # fresh random inputs at these batch sizes (example batch: 2)
EXAMPLE_BATCH = 2

ACTS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "none": lambda x: x}


# =========================================================================== choosers
class RandomChooser:
    """Draws from ``random.Random(seed)``."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def choice(self, seq):
        return seq[self.r.randrange(len(seq))]

    def p(self, prob: float) -> bool:
        return self.r.random() < prob

    def subset(self, n: int, lo: int = 1, hi: Optional[int] = None) -> List[int]:
        hi = n if hi is None else min(hi, n)
        k = self.int(min(lo, hi), hi)
        return sorted(self.r.sample(range(n), k))


class HypothesisChooser:
    """Draws through a hypothesis ``draw`` function (so hypothesis can shrink the case)."""

    def __init__(self, draw) -> None:
        from hypothesis import strategies as st
        self.draw, self.st = draw, st

    def int(self, lo: int, hi: int) -> int:
        return self.draw(self.st.integers(lo, hi))

    def choice(self, seq):
        return seq[self.draw(self.st.integers(0, len(seq) - 1))]

    def p(self, prob: float) -> bool:
        # shrinks towards False; probability is only approximate under hypothesis
        return self.draw(self.st.integers(0, 999)) >= int(1000 * (1 - prob))

    def subset(self, n: int, lo: int = 1, hi: Optional[int] = None) -> List[int]:
        hi = n if hi is None else min(hi, n)
        k = self.int(min(lo, hi), hi)
        s = self.draw(self.st.lists(self.st.integers(0, n - 1), min_size=k, max_size=k, unique=True))
        return sorted(s)


# =========================================================================== blocks
def _ln(c: int) -> nn.LayerNorm:
    return nn.LayerNorm(c)


class Lin(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.fc = nn.Linear(c, s["out"], bias=s["bias"])
        self.act = s["act"]

    def forward(self, x):
        return ACTS[self.act](self.fc(x))


class Mlp(nn.Module):
    """x + [ls *] fc2(act(fc1([ln](x))))"""

    def __init__(self, c, s):
        super().__init__()
        self.ln = _ln(c) if s["ln"] else None
        self.fc1 = nn.Linear(c, s["hidden"], bias=s["bias"])
        self.fc2 = nn.Linear(s["hidden"], c, bias=s["bias"])
        self.ls = nn.Parameter(0.5 + torch.rand(c)) if s["ls"] else None
        self.act = s["act"]

    def forward(self, x):
        y = self.ln(x) if self.ln is not None else x
        y = self.fc2(ACTS[self.act](self.fc1(y)))
        if self.ls is not None:
            y = self.ls * y
        return x + y


class LN(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.ln = _ln(c)

    def forward(self, x):
        return self.ln(x)


class Act(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.act = s["act"]

    def forward(self, x):
        return ACTS[self.act](x)


class Cat(nn.Module):
    """cat([x, act(f(x))]) on the channel dim (Linear for channels-last, conv for images)."""

    def __init__(self, c, s, img=False):
        super().__init__()
        self.img = img
        self.fc = nn.Conv2d(c, s["out"], s.get("k", 1), padding=s.get("k", 1) // 2) if img else nn.Linear(c, s["out"])
        self.act = s["act"]

    def forward(self, x):
        return torch.cat([x, ACTS[self.act](self.fc(x))], 1 if self.img else -1)


class Split(nn.Module):
    """glu: a * sigmoid(b); add: a + b (chunk(2)); lin: cat([f(a), b]) with split sizes; swap: cat([b, a])."""

    def __init__(self, c, s, img=False):
        super().__init__()
        self.mode, self.img, self.first = s["mode"], img, s.get("first", c // 2)
        self.dim = 1 if img else -1
        if self.mode == "lin":
            self.fc = nn.Conv2d(self.first, s["out"], 1) if img else nn.Linear(self.first, s["out"])

    def forward(self, x):
        if self.mode in ("glu", "add"):
            a, b = x.chunk(2, self.dim)
            return a * torch.sigmoid(b) if self.mode == "glu" else a + b
        a, b = torch.split(x, [self.first, x.shape[self.dim] - self.first], self.dim)
        if self.mode == "swap":
            return torch.cat([b, a], self.dim)
        return torch.cat([self.fc(a), b], self.dim)


class Gate(nn.Module):
    """SE-style: x * sigmoid(fc2(relu(fc1(pool(x))))) (pool: tokens for seq, H, W for img)."""

    def __init__(self, c, s, img=False, seq=False):
        super().__init__()
        self.img, self.seq = img, seq
        r = s["hidden"]
        if img:
            self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)
        else:
            self.fc1, self.fc2 = nn.Linear(c, r), nn.Linear(r, c)

    def forward(self, x):
        if self.img:
            p = F.adaptive_avg_pool2d(x, 1)
        elif self.seq:
            p = x.mean(1, keepdim=True)
        else:
            p = x
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(p))))


class Attn(nn.Module):
    """x + [ls *] out(attention([ln](x))); impl sdpa | manual | mha."""

    def __init__(self, c, s):
        super().__init__()
        self.impl, self.h, self.dh, self.causal = s["impl"], s["heads"], s["dh"], s.get("causal", False)
        self.view_m1 = s.get("view_m1", False)
        self.ln = _ln(c) if s["ln"] else None
        if self.impl == "mha":
            self.mha = nn.MultiheadAttention(c, self.h, bias=s["bias"], batch_first=True)
        else:
            hd = self.h * self.dh
            self.q = nn.Linear(c, hd, bias=s["bias"])
            self.k = nn.Linear(c, hd, bias=s["bias"])
            self.v = nn.Linear(c, hd, bias=s["bias"])
            self.o = nn.Linear(hd, c, bias=s["bias"])
        self.ls = nn.Parameter(0.5 + torch.rand(c)) if s["ls"] else None

    def _heads(self, t, B, T):
        t = t.view(B, T, self.h, -1) if self.view_m1 else t.view(B, T, self.h, self.dh)
        return t.transpose(1, 2)

    def forward(self, x):
        y = self.ln(x) if self.ln is not None else x
        if self.impl == "mha":
            y = self.mha(y, y, y, need_weights=False)[0]
        else:
            B, T, _ = y.shape
            q, k, v = (self._heads(f(y), B, T) for f in (self.q, self.k, self.v))
            if self.impl == "sdpa":
                a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
            else:
                a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.dh), dim=-1) @ v
            y = self.o(a.transpose(1, 2).reshape(B, T, self.h * self.dh))
        if self.ls is not None:
            y = self.ls * y
        return x + y


class TokPool(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.mode = s["mode"]

    def forward(self, x):
        return x.mean(1) if self.mode == "mean" else x[:, 0]


class Conv(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        g = {"1": 1, "dw": c}.get(str(s["groups"]), s["groups"])
        self.conv = nn.Conv2d(c, s["out"], s["k"], stride=s["stride"], padding=s["pad"], groups=g, bias=s["bias"])
        self.bn = nn.BatchNorm2d(s["out"]) if s["bn"] else None
        self.act = s["act"]

    def forward(self, x):
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        return ACTS[self.act](y)


class ResConv(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        g = c if s["dw"] else 1
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, groups=g, bias=not s["bn"])
        self.bn1 = nn.BatchNorm2d(c) if s["bn"] else None
        self.conv2 = nn.Conv2d(c, c, 1, bias=not s["bn"])
        self.bn2 = nn.BatchNorm2d(c) if s["bn"] else None
        self.act = s["act"]

    def forward(self, x):
        y = self.conv1(x)
        if self.bn1 is not None:
            y = self.bn1(y)
        y = self.conv2(ACTS[self.act](y))
        if self.bn2 is not None:
            y = self.bn2(y)
        return x + y


class ConvNeXt(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.ln = _ln(c)
        self.fc1 = nn.Linear(c, s["hidden"])
        self.fc2 = nn.Linear(s["hidden"], c)
        self.gamma = nn.Parameter(0.5 + torch.rand(c)) if s["ls"] else None

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.ln(y))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + y.permute(0, 3, 1, 2)


class CFLN(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.ln = _ln(c)

    def forward(self, x):
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Pool(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.mode = s["mode"]

    def forward(self, x):
        return F.max_pool2d(x, 2) if self.mode == "max" else F.avg_pool2d(x, 2)


class Head(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.mode = s["mode"]

    def forward(self, x):
        if self.mode == "mean":
            return x.mean((2, 3))
        if self.mode == "adaptive":
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return torch.flatten(x, 1)


class Net(nn.Module):
    """Input stem (optional), blocks ``b0, b1, ...``, optional output Linear ``out``."""

    def __init__(self, spec):
        super().__init__()
        self.family = spec["family"]
        st = spec["stem"]
        self.emb = nn.Embedding(st["vocab"], st["c"]) if st.get("tokens") else None
        self.nblocks = len(spec["blocks"])
        c = spec["stem"]["c"]
        for i, b in enumerate(spec["blocks"]):
            setattr(self, f"b{i}", _make_block(b, c, spec["family"]))
            c = b["c_out"]
        self.out = nn.Linear(c, spec["out"]["n"], bias=spec["out"]["bias"]) if spec["out"]["n"] else None
        self.aux = spec["out"].get("aux", False)

    def forward(self, x):
        if self.emb is not None:
            x = self.emb(x)
        for i in range(self.nblocks):
            x = getattr(self, f"b{i}")(x)
        if self.out is None:
            return x
        y = self.out(x)
        return (y, x) if self.aux else y


def _make_block(b, c, family):
    t = b["type"]
    img = b.get("img", False)
    if t == "lin":
        return Lin(c, b)
    if t == "mlp":
        return Mlp(c, b)
    if t == "ln":
        return LN(c, b)
    if t == "act":
        return Act(c, b)
    if t in ("cat", "dense"):
        return Cat(c, b, img=img)
    if t == "split":
        return Split(c, b, img=img)
    if t in ("gate", "se"):
        return Gate(c, b, img=img, seq=b.get("seq", False))
    if t == "attn":
        return Attn(c, b)
    if t == "tokpool":
        return TokPool(c, b)
    if t == "conv":
        return Conv(c, b)
    if t == "resconv":
        return ResConv(c, b)
    if t == "convnext":
        return ConvNeXt(c, b)
    if t == "cfln":
        return CFLN(c, b)
    if t == "pool":
        return Pool(c, b)
    if t == "head":
        return Head(c, b)
    raise ValueError(f"unknown block type {t!r}")


# =========================================================================== drawing specs
WIDTHS = (4, 6, 8, 12)


def _draw_blocks(ch, family: str, c: int, hw: int) -> Tuple[List[dict], int]:
    """Draw the block list. Returns (blocks, final channel count); each block has c_in/c_out."""
    blocks: List[dict] = []
    nblocks = ch.int(1, 4)
    state = family  # vec | seq | img
    for _ in range(nblocks):
        b: Dict[str, Any]
        if state == "img":
            t = ch.choice(["conv", "conv", "resconv", "dense", "split", "se", "convnext", "cfln", "pool", "head"])
            if t == "pool" and hw < 4:
                t = "conv"
            if t == "conv":
                gk = ch.choice(["1", "1", "dw", "g"])
                k = ch.choice([1, 3, 3])
                pad = ch.choice([0, k // 2]) if k > 1 and hw > 3 else k // 2
                stride = 2 if (hw >= 6 and ch.p(0.15)) else 1
                if gk == "dw":
                    out, groups = c * ch.choice([1, 1, 2]), "dw"
                elif gk == "g":
                    g = ch.choice([d for d in (2, 3, 4) if c % d == 0] or [1])
                    out, groups = g * ch.int(1, 3), g
                else:
                    out, groups = ch.choice(WIDTHS), "1"
                b = dict(type="conv", out=out, k=k, pad=pad, stride=stride, groups=groups,
                         bias=ch.p(0.6), bn=ch.p(0.5), act=ch.choice(["relu", "gelu", "silu", "none"]))
                hw = (hw + 2 * pad - k) // stride + 1
                c_out = out
            elif t == "resconv":
                b = dict(type="resconv", dw=ch.p(0.4), bn=ch.p(0.6), act=ch.choice(["relu", "silu"]))
                c_out = c
            elif t == "dense":
                b = dict(type="dense", img=True, out=ch.choice([2, 4]), k=ch.choice([1, 3]),
                         act=ch.choice(["relu", "none"]))
                c_out = c + b["out"]
            elif t == "split":
                mode = ch.choice(["glu", "add", "lin", "swap"] if c % 2 == 0 else ["lin", "swap"])
                b = dict(type="split", img=True, mode=mode)
                if mode in ("lin", "swap"):
                    b["first"] = ch.int(1, c - 1)
                if mode == "lin":
                    b["out"] = ch.choice([2, 4])
                c_out = {"glu": c // 2, "add": c // 2, "swap": c}.get(mode, c - b.get("first", 0) + b.get("out", 0))
            elif t == "se":
                b = dict(type="se", img=True, hidden=ch.choice([2, 3, 4]))
                c_out = c
            elif t == "convnext":
                b = dict(type="convnext", hidden=c * ch.choice([1, 2]), ls=ch.p(0.6))
                c_out = c
            elif t == "cfln":
                b = dict(type="cfln")
                c_out = c
            elif t == "pool":
                b = dict(type="pool", mode=ch.choice(["max", "avg"]))
                hw //= 2
                c_out = c
            else:  # head
                b = dict(type="head", mode=ch.choice(["mean", "adaptive", "flatten"]))
                c_out = c * hw * hw if b["mode"] == "flatten" else c
                state = "vec"
        else:
            opts = ["lin", "mlp", "mlp", "ln", "cat", "split", "gate", "act"]
            if state == "seq":
                opts += ["attn", "attn", "attn", "tokpool"]
            t = ch.choice(opts)
            if t == "lin":
                b = dict(type="lin", out=ch.choice(WIDTHS), bias=ch.p(0.7), act=ch.choice(["relu", "gelu", "silu", "none"]))
                c_out = b["out"]
            elif t == "mlp":
                b = dict(type="mlp", hidden=ch.choice([4, 8, 12]), bias=ch.p(0.8), ln=ch.p(0.4), ls=ch.p(0.4),
                         act=ch.choice(["relu", "gelu", "silu"]))
                c_out = c
            elif t == "ln":
                b = dict(type="ln")
                c_out = c
            elif t == "act":
                b = dict(type="act", act=ch.choice(["relu", "gelu", "silu"]))
                c_out = c
            elif t == "cat":
                b = dict(type="cat", out=ch.choice([2, 4]), act=ch.choice(["relu", "none"]))
                c_out = c + b["out"]
            elif t == "split":
                mode = ch.choice(["glu", "add", "lin", "swap"] if c % 2 == 0 else ["lin", "swap"])
                b = dict(type="split", mode=mode)
                if mode in ("lin", "swap"):
                    b["first"] = ch.int(1, c - 1)
                if mode == "lin":
                    b["out"] = ch.choice([2, 4])
                c_out = {"glu": c // 2, "add": c // 2, "swap": c}.get(mode, c - b.get("first", 0) + b.get("out", 0))
            elif t == "gate":
                b = dict(type="gate", hidden=ch.choice([2, 3, 4]), seq=state == "seq")
                c_out = c
            elif t == "attn":
                impl = ch.choice(["sdpa", "manual", "mha"])
                if impl == "mha":
                    heads = ch.choice([h for h in (1, 2, 4) if c % h == 0])
                    dh = c // heads
                else:
                    heads, dh = ch.int(1, 3), ch.choice([2, 4])
                b = dict(type="attn", impl=impl, heads=heads, dh=dh, bias=ch.p(0.7), ln=ch.p(0.5), ls=ch.p(0.3),
                         causal=impl == "sdpa" and ch.p(0.3), view_m1=ch.p(0.3))
                c_out = c
            else:  # tokpool
                b = dict(type="tokpool", mode=ch.choice(["mean", "first"]))
                c_out = c
                state = "vec"
        b["c_in"], b["c_out"] = c, c_out
        blocks.append(b)
        c = c_out
        if c < 2 and state != "img":
            break
    return blocks, c, state


def _segments_and_dead(ch, spec, model) -> List[dict]:
    """Draw dead structure. Returns a list of zeroing ops."""
    dead: List[dict] = []

    def op(p, dim, idx, why, expect=False):
        idx = sorted(set(int(i) for i in idx))
        if idx:
            d = {"p": p, "dim": dim, "idx": idx, "why": why}
            if expect:
                d["expect"] = True
            dead.append(d)

    params = dict(model.named_parameters())

    def rows(p, n=None, lo=1, hi=None):
        n = params[p].shape[0] if n is None else n
        return ch.subset(n, lo, hi if hi is not None else max(1, n - 1))

    # residual-stream segments: list of writers (param, dim, offset, size, kind)
    segments: List[dict] = []
    fam = spec["family"]
    st = spec["stem"]
    if st.get("tokens"):
        cur = {"c": st["c"], "writers": [("emb.weight", 1, 0, st["c"], "w")]}
    else:
        cur = {"c": st["c"], "writers": []}
    segments.append(cur)

    def new_seg(c, writers):
        nonlocal cur
        cur = {"c": c, "writers": writers}
        segments.append(cur)

    intensity = ch.choice([0.2, 0.4, 0.7])
    for i, b in enumerate(spec["blocks"]):
        P = f"b{i}."
        t, c = b["type"], b["c_in"]
        if t == "lin":
            w = P + "fc.weight"
            if ch.p(intensity):
                r = rows(w)
                op(w, 0, r, "lin: zero rows")
                if b["bias"] and ch.p(0.6):
                    op(P + "fc.bias", 0, r, "lin: zero bias of zero rows")
            if ch.p(intensity / 2):
                op(w, 1, rows(w, c), "lin: zero columns")
            if b["bias"] and ch.p(intensity / 3):
                op(P + "fc.bias", 0, rows(w), "lin: zero bias entries")
            wr = [(w, 0, 0, b["out"], "w")] + ([(P + "fc.bias", 0, 0, b["out"], "b")] if b["bias"] else [])
            new_seg(b["out"], wr if b["act"] in ("relu", "gelu", "silu", "none") else [])
        elif t == "mlp":
            h = b["hidden"]
            if ch.p(intensity):
                r = rows(P + "fc1.weight")
                zb = (not b["bias"]) or ch.p(0.7)
                op(P + "fc1.weight", 0, r, "mlp: hidden units (fc1 rows)", expect=True)
                if b["bias"] and zb:
                    op(P + "fc1.bias", 0, r, "mlp: hidden units (fc1 bias)")
            if ch.p(intensity / 2):
                op(P + "fc2.weight", 1, rows(P + "fc2.weight", h), "mlp: hidden units unused (fc2 cols)", expect=True)
            if ch.p(intensity / 3):
                op(P + "fc1.weight", 1, rows(P + "fc1.weight", c), "mlp: fc1 input columns")
            if b["ls"] and ch.p(intensity / 2):
                op(P + "ls", 0, rows(P + "ls"), "mlp: layer-scale entries")
            if b["ln"] and ch.p(intensity / 2):
                r = rows(P + "ln.weight")
                op(P + "ln.weight", 0, r, "mlp: LayerNorm gamma entries")
                if ch.p(0.5):
                    op(P + "ln.bias", 0, r, "mlp: LayerNorm beta entries")
            if b["ls"] and ch.p(0.5):
                cur["writers"].append((P + "ls", 0, 0, c, "w"))
            else:
                cur["writers"] += [(P + "fc2.weight", 0, 0, c, "w")] + (
                    [(P + "fc2.bias", 0, 0, c, "b")] if b["bias"] else [])
        elif t == "ln":
            if ch.p(intensity / 2):
                r = rows(P + "ln.weight")
                op(P + "ln.weight", 0, r, "ln: gamma entries")
                if ch.p(0.5):
                    op(P + "ln.bias", 0, r, "ln: beta entries")
            new_seg(c, [(P + "ln.weight", 0, 0, c, "w"), (P + "ln.bias", 0, 0, c, "b")])
        elif t == "act":
            pass
        elif t in ("cat", "dense"):
            w = P + "fc.weight"
            if ch.p(intensity):
                r = rows(w, lo=1, hi=b["out"])
                op(w, 0, r, f"{t}: zero rows of the concatenated part")
                if ch.p(0.6):
                    op(P + "fc.bias", 0, r, f"{t}: zero bias of zero rows")
            old = [wr for wr in cur["writers"]]
            new_seg(b["c_out"], old + [(w, 0, c, b["out"], "w"), (P + "fc.bias", 0, c, b["out"], "b")])
        elif t == "split":
            if b["mode"] == "lin":
                w = P + "fc.weight"
                if ch.p(intensity):
                    r = rows(w, lo=1, hi=b["out"])
                    op(w, 0, r, "split: zero rows of the Linear on the first part")
                    if ch.p(0.6):
                        op(P + "fc.bias", 0, r, "split: zero bias")
            new_seg(b["c_out"], [])
        elif t in ("gate", "se"):
            if ch.p(intensity):
                r = rows(P + "fc1.weight")
                op(P + "fc1.weight", 0, r, f"{t}: hidden units (fc1 rows)", expect=True)
                op(P + "fc1.bias", 0, r, f"{t}: hidden units (fc1 bias)")
            new_seg(c, [])
        elif t == "attn":
            H, D = b["heads"], b["dh"]
            hd = H * D
            if b["impl"] == "mha":
                qw = kw = vw = P + "mha.in_proj_weight"
                qb = kb = vb = P + "mha.in_proj_bias"
                qo, ko, vo = 0, hd, 2 * hd
                ow, ob = P + "mha.out_proj.weight", P + "mha.out_proj.bias"
            else:
                qw, kw, vw, ow = P + "q.weight", P + "k.weight", P + "v.weight", P + "o.weight"
                qb, kb, vb, ob = P + "q.bias", P + "k.bias", P + "v.bias", P + "o.bias"
                qo = ko = vo = 0

            def head_dims(same):
                if same:
                    ds = ch.subset(D, 1, max(1, D - 1))
                    return [h * D + d for h in range(H) for d in ds]
                return [h * D + d for h in range(H) for d in ch.subset(D, 0, D)]

            if H > 1 and ch.p(intensity):
                heads = ch.subset(H, 1, H - 1)
                op(ow, 1, [h * D + d for h in heads for d in range(D)], "attn: whole heads (out-proj columns)",
                   expect=True)
            if ch.p(intensity / 2):
                r = head_dims(ch.p(0.6))
                op(qw, 0, [qo + i for i in r], "attn: q dims zero")
                if b["bias"]:
                    op(qb, 0, [qo + i for i in r], "attn: q bias zero")
            if ch.p(intensity / 2):
                r = head_dims(ch.p(0.6))
                op(kw, 0, [ko + i for i in r], "attn: k dims zero weight (bias kept: constant)")
                if b["bias"] and ch.p(0.3):
                    op(kb, 0, [ko + i for i in r], "attn: k bias zero")
            if ch.p(intensity / 2):
                r = head_dims(ch.p(0.6))
                op(vw, 0, [vo + i for i in r], "attn: v dims zero weight")
                if b["bias"] and ch.p(0.5):
                    op(vb, 0, [vo + i for i in r], "attn: v bias zero")
            if ch.p(intensity / 4):
                op(qw, 1, rows(qw, c), "attn: q input columns")
            if b["ls"] and ch.p(intensity / 2):
                op(P + "ls", 0, rows(P + "ls"), "attn: layer-scale entries")
            if b["ln"] and ch.p(intensity / 2):
                r = rows(P + "ln.weight")
                op(P + "ln.weight", 0, r, "attn: LayerNorm gamma entries")
                if ch.p(0.5):
                    op(P + "ln.bias", 0, r, "attn: LayerNorm beta entries")
            if b["ls"] and ch.p(0.5):
                cur["writers"].append((P + "ls", 0, 0, c, "w"))
            else:
                cur["writers"] += [(ow, 0, 0, c, "w")] + ([(ob, 0, 0, c, "b")] if b["bias"] else [])
        elif t == "tokpool":
            pass
        elif t == "conv":
            w = P + "conv.weight"
            out = b["out"]
            g = {"1": 1, "dw": c}.get(str(b["groups"]), b["groups"])
            if ch.p(intensity):
                if g > 1 and ch.p(0.5):
                    per = out // g
                    gs = ch.subset(g, 1, max(1, g - 1))
                    r = [gi * per + j for gi in gs for j in range(per)]
                    op(w, 0, r, "conv: whole groups (filters)")
                else:
                    r = rows(w)
                    op(w, 0, r, "conv: zero filters")
                if b["bias"] and ch.p(0.6):
                    op(P + "conv.bias", 0, r, "conv: zero bias of zero filters")
            if ch.p(intensity / 3) and c // g > 1:
                op(w, 1, rows(w, c // g), "conv: zero input channels (per group)")
            if b["bn"] and ch.p(intensity / 2):
                r = rows(P + "bn.weight")
                op(P + "bn.weight", 0, r, "conv: BatchNorm gamma zero")
                if ch.p(0.5):
                    op(P + "bn.bias", 0, r, "conv: BatchNorm beta zero")
            if b["bn"]:
                wr = [(P + "bn.weight", 0, 0, out, "w"), (P + "bn.bias", 0, 0, out, "b")]
            else:
                wr = [(w, 0, 0, out, "w")] + ([(P + "conv.bias", 0, 0, out, "b")] if b["bias"] else [])
            new_seg(out, wr)
        elif t == "resconv":
            if ch.p(intensity):
                r = rows(P + "conv1.weight")
                op(P + "conv1.weight", 0, r, "resconv: conv1 filters")
                if not b["bn"] and ch.p(0.6):
                    op(P + "conv1.bias", 0, r, "resconv: conv1 bias")
            if b["bn"] and ch.p(intensity / 2):
                r = rows(P + "bn1.weight")
                op(P + "bn1.weight", 0, r, "resconv: bn1 gamma")
                op(P + "bn1.bias", 0, r, "resconv: bn1 beta")
            if b["bn"]:
                cur["writers"] += [(P + "bn2.weight", 0, 0, c, "w"), (P + "bn2.bias", 0, 0, c, "b")]
            else:
                cur["writers"] += [(P + "conv2.weight", 0, 0, c, "w"), (P + "conv2.bias", 0, 0, c, "b")]
        elif t == "convnext":
            if ch.p(intensity):
                r = rows(P + "fc1.weight")
                op(P + "fc1.weight", 0, r, "convnext: hidden units (fc1 rows)", expect=True)
                op(P + "fc1.bias", 0, r, "convnext: hidden units (fc1 bias)")
            if ch.p(intensity / 2):
                r = rows(P + "ln.weight")
                op(P + "ln.weight", 0, r, "convnext: LayerNorm gamma")
                if ch.p(0.5):
                    op(P + "ln.bias", 0, r, "convnext: LayerNorm beta")
            if ch.p(intensity / 3):
                op(P + "dw.weight", 0, rows(P + "dw.weight"), "convnext: depthwise filters")
            if b["ls"] and ch.p(intensity / 2):
                op(P + "gamma", 0, rows(P + "gamma"), "convnext: layer-scale entries")
            if b["ls"] and ch.p(0.5):
                cur["writers"].append((P + "gamma", 0, 0, c, "w"))
            else:
                cur["writers"] += [(P + "fc2.weight", 0, 0, c, "w"), (P + "fc2.bias", 0, 0, c, "b")]
        elif t == "cfln":
            if ch.p(intensity / 2):
                r = rows(P + "ln.weight")
                op(P + "ln.weight", 0, r, "cfln: gamma entries")
                if ch.p(0.5):
                    op(P + "ln.bias", 0, r, "cfln: beta entries")
            new_seg(c, [(P + "ln.weight", 0, 0, c, "w"), (P + "ln.bias", 0, 0, c, "b")])
        elif t == "pool":
            pass
        elif t == "head":
            if b["mode"] == "flatten":
                new_seg(b["c_out"], [])
    # output layer
    if spec["out"]["n"]:
        w = "out.weight"
        if ch.p(intensity / 2):
            op(w, 1, rows(w, spec["out"]["c_in"]), "out: zero columns")
        if ch.p(intensity / 3) and spec["out"]["n"] > 1:
            op(w, 0, rows(w), "out: zero rows")
    # residual-stream channels zeroed in every writer
    for seg in segments:
        ws = [w for w in seg["writers"] if w[0] in params]
        if not ws or seg["c"] < 2 or not ch.p(intensity):
            continue
        S = ch.subset(seg["c"], 1, max(1, seg["c"] - 1))
        zero_bias = ch.p(0.7)
        for (p, dim, off, size, kind) in ws:
            if kind == "b" and not zero_bias:
                continue
            op(p, dim, [s - off for s in S if off <= s < off + size], f"stream channels {S} zeroed in every writer")
    return dead


def draw_spec(ch) -> dict:
    """Draw one case spec with a chooser (RandomChooser or HypothesisChooser)."""
    family = ch.choice(["vec", "seq", "img"])
    stem: Dict[str, Any] = {"c": ch.choice(WIDTHS)}
    if family == "img":
        stem["hw"] = ch.choice([4, 5, 6])
    if family == "seq":
        stem["t"] = ch.choice([3, 5])
        if ch.p(0.25):
            stem["tokens"] = True
            stem["vocab"] = 11
    blocks, c, state = _draw_blocks(ch, family, stem["c"], stem.get("hw", 0))
    n_out = ch.choice([0, 3, 5, 5]) if state != "img" else ch.choice([0, 0, 3])
    if state == "img" and n_out:
        n_out = 0  # an image state feeds no Linear head
    out = {"n": n_out, "bias": ch.p(0.7), "c_in": c, "aux": bool(n_out) and ch.p(0.1)}
    spec = {"family": family, "stem": stem, "blocks": blocks, "out": out, "wseed": ch.int(0, 2 ** 31 - 1)}
    model = build_model(spec)
    spec["dead"] = _segments_and_dead(ch, spec, model)
    spec["via"] = ch.choice(["zero", "zero", "zero", "masks", "prune"])
    spec["sparsity"] = ch.choice([0.0, 0.0, 0.0, 0.3, 0.7])
    spec["mseed"] = ch.int(0, 2 ** 31 - 1)
    return spec


def random_spec(seed: int) -> dict:
    return draw_spec(RandomChooser(seed))


# =========================================================================== building cases
def build_model(spec) -> nn.Module:
    """The unmasked model of ``spec`` (weights from ``spec['wseed']``), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["wseed"])
        m = Net(spec)
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, (nn.LayerNorm, nn.BatchNorm2d)):
                    mod.weight.copy_(1 + 0.3 * torch.randn_like(mod.weight))
                    mod.bias.copy_(0.3 * torch.randn_like(mod.bias))
                if isinstance(mod, nn.BatchNorm2d):
                    mod.running_mean.copy_(0.2 * torch.randn_like(mod.running_mean))
                    mod.running_var.copy_(0.5 + torch.rand_like(mod.running_var))
                if isinstance(mod, nn.MultiheadAttention) and mod.in_proj_bias is not None:
                    mod.in_proj_bias.copy_(0.2 * torch.randn_like(mod.in_proj_bias))
                    mod.out_proj.bias.copy_(0.2 * torch.randn_like(mod.out_proj.bias))
    return m.eval()


def example_inputs(spec, batch: int = EXAMPLE_BATCH, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    st = spec["stem"]
    if spec["family"] == "vec":
        return (torch.randn(batch, st["c"], generator=g),)
    if spec["family"] == "seq":
        if st.get("tokens"):
            x = torch.randint(0, st["vocab"], (batch, st["t"]), generator=g)
            x[0, 0], x[-1, -1] = 0, st["vocab"] - 1   # full range: verify draws ids in [min, max]
            return (x,)
        return (torch.randn(batch, st["t"], st["c"], generator=g),)
    return (torch.randn(batch, st["c"], st["hw"], st["hw"], generator=g),)


@dataclass
class Description:
    """What ``random_case`` returns as its third item: the spec plus how the model is masked."""

    spec: dict
    masks: Optional[Dict[str, torch.Tensor]] = None
    text: str = ""
    all_masks: Dict[str, torch.Tensor] = field(default_factory=dict)  # every zeroing, for the reference

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> str:
        return json.dumps(self.spec, sort_keys=True)


def describe(spec) -> str:
    parts = []
    for b in spec["blocks"]:
        extra = {k: v for k, v in b.items() if k not in ("type", "c_in", "c_out")}
        parts.append(f"{b['type']}({b['c_in']}->{b['c_out']}{', ' if extra else ''}"
                     + ", ".join(f"{k}={v}" for k, v in extra.items()) + ")")
    head = f" -> out({spec['out']['n']})" if spec["out"]["n"] else ""
    whys = sorted({d["why"].split(" [")[0] for d in spec.get("dead", [])})
    return (f"{spec['family']} stem={spec['stem']} | " + " -> ".join(parts) + head
            + f" | via={spec.get('via')} sparsity={spec.get('sparsity')} | dead: " + "; ".join(whys))


def _zero_mask(p: torch.Tensor, dim: int, idx) -> torch.Tensor:
    m = torch.ones(p.shape, dtype=torch.bool)
    m.index_fill_(dim, torch.as_tensor(idx, dtype=torch.long), False)
    return m


def build_case(spec) -> Tuple[nn.Module, tuple, Description]:
    """``(model, example_inputs, description)`` for a spec; ``description.masks`` is the masks
    dict to pass to ``minimize`` (None unless ``spec['via'] == 'masks'``)."""
    model = build_model(spec)
    params = dict(model.named_parameters())
    masks: Dict[str, torch.Tensor] = {}
    for d in spec.get("dead", []):
        m = _zero_mask(params[d["p"]], d["dim"], d["idx"])
        masks[d["p"]] = masks[d["p"]] & m if d["p"] in masks else m
    if spec.get("sparsity"):
        g = torch.Generator().manual_seed(spec.get("mseed", 0))
        for name, p in params.items():
            if name.endswith("weight") and p.dim() >= 2 and torch.rand(1, generator=g).item() < 0.5:
                m = torch.rand(p.shape, generator=g) >= spec["sparsity"]
                masks[name] = masks[name] & m if name in masks else m
    via = spec.get("via", "zero")
    out_masks = None
    if via == "masks":
        out_masks = masks
    else:
        import torch.nn.utils.prune as prune
        mods = dict(model.named_modules())
        for name, m in masks.items():
            mod_name, _, attr = name.rpartition(".")
            mod = mods[mod_name]
            if via == "prune" and isinstance(mod, (nn.Linear, nn.Conv2d, nn.Embedding)) and attr in ("weight", "bias"):
                prune.custom_from_mask(mod, attr, m)
            else:
                with torch.no_grad():
                    params[name].mul_(m.to(params[name].dtype))
    return model, example_inputs(spec), Description(spec, out_masks, describe(spec), masks)


def random_case(seed: int) -> Tuple[nn.Module, tuple, Description]:
    """A reproducible random case: ``(model, example_inputs, description)`` (no hypothesis needed)."""
    return build_case(random_spec(seed))


# =========================================================================== checking
@dataclass
class Outcome:
    status: str                  # ok | refused | missed | wrong | internal | mutated | invalid
    message: str = ""
    params_before: int = 0
    params_after: int = 0
    max_err: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("wrong", "internal", "mutated")


def _reference(spec, masks):
    """The masked original, built independently of fxminimize: fresh weights times the masks."""
    ref = build_model(spec)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name in masks:
                p.mul_(masks[name].to(p.dtype))
    return ref


def _close(ref_out, got_out) -> Tuple[bool, float, str]:
    r_leaves, g_leaves = pytree.tree_leaves(ref_out), pytree.tree_leaves(got_out)
    if len(r_leaves) != len(g_leaves):
        return False, float("inf"), f"{len(g_leaves)} outputs, expected {len(r_leaves)}"
    worst = 0.0
    for k, (r, g) in enumerate(zip(r_leaves, g_leaves)):
        if not isinstance(r, torch.Tensor):
            continue
        if not isinstance(g, torch.Tensor) or g.shape != r.shape:
            return False, float("inf"), f"output {k}: shape {getattr(g, 'shape', type(g))} != {tuple(r.shape)}"
        scale = max(1.0, float(r.abs().max())) if r.numel() else 1.0
        err = float((g.float() - r.float()).abs().max()) if r.numel() else 0.0
        worst = max(worst, err)
        try:
            torch.testing.assert_close(g, r, rtol=RTOL, atol=ATOL * scale, equal_nan=True)
        except AssertionError as e:
            return False, worst, f"output {k}: " + str(e).splitlines()[0] + f" (max abs err {err:.3g})"
    return True, worst, ""


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_case(model, example, description: Description, *, seed: int = 12345) -> Outcome:
    """Minimize one case and classify the outcome (see module docstring)."""
    import fxminimize
    from fxminimize import MinimizationError

    masks = description.masks
    ref = _reference(description.spec, description.all_masks)
    g = torch.Generator().manual_seed(seed)
    spec = description.spec
    inputs = []
    for bsz in CHECK_BATCHES:
        x = example_inputs(spec, bsz, seed=int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g)))
        inputs.append(x)
    with torch.no_grad():
        try:
            refs = [ref(*x) for x in inputs] + [ref(*example)]
        except Exception as e:  # noqa: BLE001
            return Outcome("invalid", f"reference model fails: {type(e).__name__}: {e}")
    if not all(bool(torch.isfinite(t).all()) for o in refs for t in pytree.tree_leaves(o)):
        return Outcome("invalid", "reference outputs are not finite")
    before = _state(model)
    try:
        res = fxminimize.minimize(model, example, masks=masks)
    except MinimizationError as e:
        msg = str(e)
        if "internal error" in msg or "does not match the original" in msg:
            return Outcome("internal", f"MinimizationError: {msg}")
        return Outcome("refused", msg)
    except Exception as e:  # noqa: BLE001
        return Outcome("internal", f"{type(e).__name__} (not MinimizationError): {e}")
    after = model.state_dict()
    if set(after) != set(before) or any(not torch.equal(after[k], before[k]) for k in before):
        return Outcome("mutated", "minimize() modified the user's model")
    rep = res.report
    worst = 0.0
    with torch.no_grad():
        for x, r in zip(inputs, refs):
            try:
                got = res.module(*x)
            except Exception as e:  # noqa: BLE001
                return Outcome("wrong", f"minimized model raises at batch {x[0].shape[0]}: {type(e).__name__}: {e}",
                               rep.params_before, rep.params_after)
            ok, err, why = _close(r, got)
            worst = max(worst, err)
            if not ok:
                return Outcome("wrong", f"batch {x[0].shape[0]}: {why}", rep.params_before, rep.params_after, worst)
    expect = [d["why"] for d in spec.get("dead", []) if d.get("expect")]
    # "missed": no channel removed anywhere. (Comparing parameter counts is not enough: restoring
    # CONST model-output channels adds index buffers, which can outweigh a removed hidden unit.)
    if expect and not rep.removed:
        return Outcome("missed", "nothing removed although: " + "; ".join(expect),
                       rep.params_before, rep.params_after, worst)
    return Outcome("ok", "", rep.params_before, rep.params_after, worst)


# =========================================================================== hypothesis
def specs():
    """Hypothesis strategy of case specs (shrinkable)."""
    from hypothesis import strategies as st

    @st.composite
    def _spec(draw):
        return draw_spec(HypothesisChooser(draw))

    return _spec()


def cases():
    """Hypothesis strategy of ``(model, example_inputs, description)``."""
    return specs().map(build_case)
