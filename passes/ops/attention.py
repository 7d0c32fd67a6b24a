"""Attention, part 2: the region's rule and its rewrite (matching: :mod:`.attention_match`,
whose docstring has the mathematics).

The analysis keeps a rectangle per region: query heads H' (whole kv groups G'), one shared set
S of qk dims and one set E of v dims. The projections are sliced by the Linear rewrite like any
channel space; this rewrite fixes the interior: size arguments of the head split, repeat_kv
and merge views (H → |H'|, kv heads → |G'|, D → |S|, Dv → |E|), RoPE's half slices (D/2 → |S|/2:
S is closed under d ↔ d + D/2 and sorted, so its first half holds the low partners in the same
order as the second), cos/sin gathered by S, and sdpa's softmax scale pinned to the original
1/√D.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.fx as fx

from ..rule import Rule
from .attention_match import SDPA, Region, is_candidate, match

aten = torch.ops.aten


def claim(cx, sdpa: fx.Node) -> Optional[tuple[Region, list, fx.Node, Rule]]:
    """Match the attention region around ``sdpa``: (region, interior nodes, o_in, o_in's rule),
    or None (the reason is hinted). Interior nodes get :data:`INTERIOR` (no channel space)."""
    res = match(cx, sdpa)
    if res is None:
        return None
    region, claimed, o_in = res
    by_name = {n.name: n for n in sdpa.graph.nodes}
    operands = [by_name[m].args[i] for m, i, _ in region.posops]
    out = AttentionOut(region, {k: by_name[v] for k, v in region.src}, operands)
    return region, claimed, o_in, out


def _rect(keep: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(row set, column set) of a kept index set that must be a full rectangle."""
    r, c = np.unique(keep // cols), np.unique(keep % cols)
    if len(r) * len(c) != len(keep) or not np.array_equal(np.sort(keep), (r[:, None] * cols + c[None, :]).reshape(-1)):
        raise AssertionError("internal: attention keep set is not a rectangle of heads × dims")
    return r, c


class Interior(Rule):
    """A node inside a matched attention region: no channel space; the region decides."""

    kind = "attention"

    def require(self, cx, n, kept):
        return None


class AttentionOut(Rule):
    """o_in, the merged attention output: the region's channel space (see module docstring)."""

    kind = "attention_out"

    def __init__(self, region: Region, nodes: dict, operands: list):
        self.region = region
        self.q, self.k, self.v = nodes["q"], nodes["k"], nodes["v"]
        self.operands = operands  # cos/sin and other per-dim operands: read whole

    def axis(self, cx, n):
        return 2

    def kept_deps(self, cx, n):
        return (self.q, self.k, self.v)

    def value(self, cx, n):
        r = self.region
        m, v = cx.const_of(self.v)
        m = m.reshape(r.Hkv, r.Dv)
        v = v.reshape(r.Hkv, r.Dv)
        g = np.arange(r.Hq) // r.rep
        cx.set_value(n, m[g].reshape(-1), v[g].reshape(-1))

    def require(self, cx, n, kept):
        r = self.region
        g_of = np.arange(r.Hq) // r.rep
        Ko = cx.kept(n).reshape(r.Hq, r.Dv) if kept is None else kept.reshape(r.Hq, r.Dv)
        Kq = cx.kept(self.q).reshape(r.Hq, r.D)
        Kk = cx.kept(self.k).reshape(r.Hkv, r.D)
        Kv = cx.kept(self.v).reshape(r.Hkv, r.Dv)
        for x in self.operands:
            cx.need(x, None, n)
        groups = np.zeros(r.Hkv, bool)
        groups[g_of[Ko.any(1) | Kq.any(1)]] = True
        groups |= Kk.any(1) | Kv.any(1)
        if not groups.any():
            return
        heads = groups[g_of]
        E = Ko[heads].any(0) | Kv[groups].any(0)
        if not E.any():
            E[0] = True
        qm, qv = cx.const_of(self.q)
        km, kv = cx.const_of(self.k)
        qzero = (qm & (qv == 0)).reshape(r.Hq, r.D)
        kgone = (km & (kv == 0)) if r.rope else km
        kgone = kgone.reshape(r.Hkv, r.D)[g_of]
        need = ~qzero & ~kgone
        if r.rope:
            h = r.D // 2
            pair = need[:, :h] | need[:, h:]
            need = np.concatenate([pair, pair], 1)
        S = need[heads].any(0) | Kq[heads].any(0) | Kk[groups].any(0)
        if r.rope:
            h = r.D // 2
            S = np.concatenate([S[:h] | S[h:]] * 2)
        if not S.any():
            S[0] = True
            if r.rope:
                S[r.D // 2] = True
        cx.need(self.q, np.outer(heads, S).reshape(-1), n)
        cx.need(self.k, np.outer(groups, S).reshape(-1), n)
        cx.need(self.v, np.outer(groups, E).reshape(-1), n)
        cx.need(n, np.outer(heads, E).reshape(-1), n)

    def rewrite(self, ctx, n) -> bool:
        plan, gm, r = ctx.plan, ctx.gm, self.region
        nodes = {m.name: m for m in gm.graph.nodes}
        q, k, v = (plan.kept(r.source(s)) for s in ("q", "k", "v"))
        heads, E = _rect(plan.kept(r.o_in), r.Hq, r.Dv)
        _, S = _rect(q, r.Hq, r.D)
        groups, _ = _rect(k, r.Hkv, r.D)
        _rect(v, r.Hkv, r.Dv)
        if len(heads) == r.Hq and len(S) == r.D and len(E) == r.Dv:
            return False
        size = {"H": len(heads), "G": len(groups), "GR": len(groups) * r.rep, "D": len(S), "V": len(E),
                "HV": len(heads) * len(E)}
        for name, dims in r.views:
            m = nodes[name]
            arg = list(m.args[1])  # the size list of view/reshape/expand
            for d, role in dims:
                if not (isinstance(arg[d], int) and arg[d] == -1):
                    arg[d] = size[role]
            m.args = m.args[:1] + (arg,) + m.args[2:]
        half = len(S) // 2
        for name, which in r.slices:
            m = nodes[name]
            args = list(m.args) + [None] * (4 - len(m.args))
            args[2], args[3] = (0, half) if which == "lo" else (half, args[3])
            m.args = tuple(args[:4]) + tuple(m.args[4:])
        for name, i, dim in (r.posops if len(S) < r.D else ()):  # all dims kept: nothing to gather
            m = nodes[name]
            val = getattr(m.args[i], "meta", {}).get("val")
            idx = ctx.index(S)
            if isinstance(val, torch.Tensor) and val.device.type not in ("cpu", "meta"):
                idx = idx.to(val.device)  # the cos/sin operand's device
            ix = ctx.add_const(m, "fxm_head_dims", idx)
            with gm.graph.inserting_before(m):
                g = gm.graph.call_function(aten.index_select.default, (m.args[i], dim, ix))
            args = list(m.args)
            args[i] = g
            m.args = tuple(args)
        if r.scale is not None:  # sdpa: pin the original 1/√D; hand-written attention has its own
            sd = nodes[r.sdpa]
            sd.kwargs = {**sd.kwargs, "scale": r.scale}
        return True


INTERIOR = Interior()
