"""More fuzz blocks (issue 13): norms as users prune them, tied weights, parameter-only subgraphs.

- ``gnblock`` (img): PoolFormer-style mixer with a GroupNorm of ``groups`` groups (1, 2 or C):
  x + ls₁·(pool(gn₁(x)) − gn₁(x)); x + conv2(act(conv1(gn₂(x)))).
- ``grn`` (img): ConvNeXt-V2 block: dwconv, permute, LayerNorm, Linear, GELU, GRN
  (‖·‖₂ over H, W; divided by its channel mean), Linear, permute, + x.
- ``tied`` (vec/seq): x + fc2(act(fc1(x))) with ``fc2.weight is fc1.weight`` (square, C×C).
- ``wstd`` (img): a conv whose weight is standardized per filter in ``forward`` (timm StdConv2d:
  a parameter-only subgraph) then BatchNorm-free act.
- ``scale1p`` (vec/seq/img): x·(1 + s) with s a per-channel parameter (Gemma-style), computed in
  ``forward``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fuzz_blocks import ACTS


class GNBlock(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        g = c if s["groups"] == "c" else s["groups"]
        self.gn1, self.gn2 = nn.GroupNorm(g, c), nn.GroupNorm(g, c)
        self.conv1, self.conv2 = nn.Conv2d(c, s["hidden"], 1), nn.Conv2d(s["hidden"], c, 1)
        self.ls = nn.Parameter(0.5 + torch.rand(c)) if s["ls"] else None
        self.act = s["act"]

    def forward(self, x):
        y = self.gn1(x)
        y = F.avg_pool2d(y, 3, 1, 1, count_include_pad=False) - y
        x = x + (self.ls[:, None, None] * y if self.ls is not None else y)
        return x + self.conv2(ACTS[self.act](self.conv1(self.gn2(x))))


class GRN(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(0.5 * torch.randn(1, 1, 1, dim))
        self.bias = nn.Parameter(0.1 * torch.randn(1, 1, 1, dim))

    def forward(self, x):
        g = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return self.weight * (x * n) + self.bias + x


class GRNBlock(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.ln = nn.LayerNorm(c, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(c, s["hidden"]), nn.Linear(s["hidden"], c)
        self.grn = GRN(s["hidden"])

    def forward(self, x):
        y = self.ln(self.dw(x).permute(0, 2, 3, 1))
        y = self.fc2(self.grn(F.gelu(self.fc1(y))))
        return x + y.permute(0, 3, 1, 2)


class Tied(nn.Module):
    """One weight W read by two Linears (plain parameters, so ``prune`` leaves the tie alone)."""

    def __init__(self, c, s):
        super().__init__()
        self.w = nn.Parameter(torch.randn(c, c) / c ** 0.5)
        self.b1, self.b2 = nn.Parameter(0.1 * torch.randn(c)), nn.Parameter(0.1 * torch.randn(c))
        self.act = s["act"]

    def forward(self, x):
        return x + F.linear(ACTS[self.act](F.linear(x, self.w, self.b1)), self.w, self.b2)


class WStdConv(nn.Module):
    """Weight standardization in ``forward`` (a parameter-only subgraph before the conv)."""

    def __init__(self, c, s):
        super().__init__()
        k = s["k"]
        self.weight = nn.Parameter(torch.randn(s["out"], c, k, k) / (c * k * k) ** 0.5)
        self.bias = nn.Parameter(0.1 * torch.randn(s["out"])) if s["bias"] else None
        self.pad, self.act = k // 2, s["act"]

    def forward(self, x):
        w = self.weight
        m = w.mean((1, 2, 3), keepdim=True)
        v = ((w - m) ** 2).mean((1, 2, 3), keepdim=True)
        w = (w - m) / torch.sqrt(v + 1e-5)
        return ACTS[self.act](F.conv2d(x, w, self.bias, padding=self.pad))


class Scale1p(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.s = nn.Parameter(0.2 * torch.randn(c))
        self.img = s.get("img", False)

    def forward(self, x):
        s = 1 + self.s
        return x * (s[:, None, None] if self.img else s)


EXTRA = {"gnblock": GNBlock, "grn": GRNBlock, "tied": Tied, "wstd": WStdConv, "scale1p": Scale1p}


def draw_extra(ch, t, c, hw):
    """(block spec without c_in/c_out, c_out, hw) for an EXTRA block type ``t``."""
    if t == "gnblock":
        groups = ch.choice([1, 1, "c"] + ([2] if c % 2 == 0 else []))
        return dict(type=t, groups=groups, hidden=c * ch.choice([1, 2]), ls=ch.p(0.6),
                    act=ch.choice(["gelu", "relu"])), c, hw
    if t == "grn":
        return dict(type=t, hidden=c * ch.choice([1, 2])), c, hw
    if t == "tied":
        return dict(type=t, act=ch.choice(["relu", "gelu", "none"])), c, hw
    if t == "wstd":
        k = ch.choice([1, 3])
        return dict(type=t, out=ch.choice([4, 6, 8]), k=k, bias=ch.p(0.6), act=ch.choice(["relu", "none"])), None, hw
    if t == "scale1p":
        return dict(type=t, img=hw > 0), c, hw
    raise ValueError(t)


def extra_dead(ch, b, P, c, op, rows, intensity):
    """Dead structure of an EXTRA block; returns the stream writers it adds, or None when the
    block starts a new segment (``("new", writers)``)."""
    t = b["type"]
    if t == "gnblock":
        g = c if b["groups"] == "c" else b["groups"]
        for name in ("gn1", "gn2"):
            if ch.p(intensity / 2):
                if g > 1 and ch.p(0.4):  # a whole group: its statistics are unused
                    per = c // g
                    r = [gi * per + j for gi in ch.subset(g, 1, max(1, g - 1)) for j in range(per)]
                else:
                    r = rows(P + name + ".weight")
                op(P + name + ".weight", 0, r, "gnblock: GroupNorm gamma")
                if ch.p(0.6):
                    op(P + name + ".bias", 0, r, "gnblock: GroupNorm beta")
        if ch.p(intensity):
            r = rows(P + "conv1.weight")
            op(P + "conv1.weight", 0, r, "gnblock: hidden units (conv1 rows)", expect=True)
            op(P + "conv1.bias", 0, r, "gnblock: hidden units (conv1 bias)")
        if b["ls"] and ch.p(intensity / 2):
            op(P + "ls", 0, rows(P + "ls"), "gnblock: layer-scale entries")
        return [(P + "conv2.weight", 0, 0, c, "w"), (P + "conv2.bias", 0, 0, c, "b")]
    if t == "grn":
        if ch.p(intensity):
            r = rows(P + "fc1.weight")
            op(P + "fc1.weight", 0, r, "grn: hidden units (fc1 rows)", expect=True)
            op(P + "fc1.bias", 0, r, "grn: hidden units (fc1 bias)")
        if ch.p(intensity / 2):
            op(P + "grn.weight", 3, ch.subset(b["hidden"], 1, max(1, b["hidden"] - 1)), "grn: GRN weight entries")
        if ch.p(intensity / 2):
            r = rows(P + "ln.weight")
            op(P + "ln.weight", 0, r, "grn: LayerNorm gamma")
            if ch.p(0.5):
                op(P + "ln.bias", 0, r, "grn: LayerNorm beta")
        return [(P + "fc2.weight", 0, 0, c, "w"), (P + "fc2.bias", 0, 0, c, "b")]
    if t == "tied":
        if ch.p(intensity):
            op(P + "w", 0, rows(P + "w"), "tied: zero rows of the shared weight")
        if ch.p(intensity / 2):
            op(P + "w", 1, rows(P + "w"), "tied: zero columns of the shared weight")
        if ch.p(intensity / 2):
            op(P + "b1", 0, rows(P + "b1"), "tied: zero bias entries")
        return [(P + "w", 0, 0, c, "w"), (P + "b2", 0, 0, c, "b")]
    if t == "wstd":
        if ch.p(intensity):
            r = rows(P + "weight")
            op(P + "weight", 0, r, "wstd: zero filters (standardized: still zero)")
            if b["bias"] and ch.p(0.6):
                op(P + "bias", 0, r, "wstd: zero bias of zero filters")
        return ("new", [])
    if t == "scale1p":
        if ch.p(intensity / 2):
            op(P + "s", 0, rows(P + "s"), "scale1p: zero entries (scale 1)")
        return []
    raise ValueError(t)
