"""The fuzzer's building blocks: small ``nn.Module`` blocks, the network a spec describes
(:class:`Net`), and :func:`build_model` / :func:`example_inputs` for a spec.

Block names and families are listed in :mod:`fxminimize.testing.fuzz`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

EXAMPLE_BATCH = 2

ACTS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "none": lambda x: x}

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
    from .fuzz_blocks_norm import EXTRA
    if t in EXTRA:
        return EXTRA[t](c, b)
    raise ValueError(f"unknown block type {t!r}")


# =========================================================================== models and inputs of a spec
def build_model(spec) -> nn.Module:
    """The unmasked model of ``spec`` (weights from ``spec['wseed']``), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["wseed"])
        m = Net(spec)
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)):
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
