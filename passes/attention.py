"""Rewrite matched attention regions to the kept heads and dims.

The analysis (:mod:`fxminimize.rules.attention`) keeps a rectangle per region: query heads
H' (whole kv groups G'), one shared set S of qk dims and one set E of v dims. The projections
are sliced by the Linear/split passes like any channel space; this pass fixes the interior:
size arguments of the head split, repeat_kv and merge views (H → |H'|, kv heads → |G'|,
D → |S|, Dv → |E|), RoPE's half slices (D/2 → |S|/2: S is closed under d ↔ d + D/2 and
sorted, so its first half holds the low partners in the same order as the second), cos/sin
gathered by S, and sdpa's softmax scale pinned to the original 1/√D.
"""
from __future__ import annotations

import numpy as np
import torch

from fxminimize.ir import bind
from .base import PassResult, add_const

aten = torch.ops.aten


def _rect(keep: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(row set, column set) of a kept index set that must be a full rectangle."""
    r, c = np.unique(keep // cols), np.unique(keep % cols)
    if len(r) * len(c) != len(keep) or not np.array_equal(np.sort(keep), (r[:, None] * cols + c[None, :]).reshape(-1)):
        raise AssertionError("internal: attention keep set is not a rectangle of heads × dims")
    return r, c


def run(gm, plan) -> PassResult:
    nodes = {n.name: n for n in gm.graph.nodes}
    changed = 0
    for o_name, r in plan.regions.items():
        q, k, v = (plan.kept(r.src[s]) for s in ("q", "k", "v"))
        heads, E = _rect(plan.kept(o_name), r.Hq, r.Dv)
        _, S = _rect(q, r.Hq, r.D)
        groups, _ = _rect(k, r.Hkv, r.D)
        _rect(v, r.Hkv, r.Dv)
        if len(heads) == r.Hq and len(S) == r.D and len(E) == r.Dv:
            continue
        size = {"H": len(heads), "G": len(groups), "GR": len(groups) * r.rep, "D": len(S), "V": len(E),
                "HV": len(heads) * len(E)}
        for name, dims in r.views:
            n = nodes[name]
            i = 1  # the size list of view/reshape/expand
            arg = list(n.args[i])
            for d, role in dims.items():
                if not (isinstance(arg[d], int) and arg[d] == -1):
                    arg[d] = size[role]
            n.args = n.args[:i] + (arg,) + n.args[i + 1:]
        half = len(S) // 2
        for name, which in r.slices:
            n = nodes[name]
            args = list(n.args) + [None] * (4 - len(n.args))
            args[2], args[3] = (0, half) if which == "lo" else (half, args[3])
            n.args = tuple(args[:4]) + tuple(n.args[4:])
        idx = torch.from_numpy(S.astype(np.int64))
        for name, i, dim in r.posops:
            n = nodes[name]
            with gm.graph.inserting_before(n):
                ix = add_const(gm, n, "fxm_head_dims", idx.clone())
                g = gm.graph.call_function(aten.index_select.default, (n.args[i], dim, ix))
            args = list(n.args)
            args[i] = g
            n.args = tuple(args)
        if r.scale is not None:  # sdpa: pin the original 1/√D; hand-written attention has its own
            sd = nodes[r.sdpa]
            sd.kwargs = {**sd.kwargs, "scale": r.scale}
        changed += 1
    return PassResult(gm, changed > 0, {"attention_rewritten": changed})
