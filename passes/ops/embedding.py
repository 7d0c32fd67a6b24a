"""Embedding lookup: y[..., c] = E[ids, c]; the channel dim is the last one.

Output channel c is CONST(v) iff column c of E equals v in every row (ZERO when the column is
zero); the ids are not channels. Rewrite: kept channels K keep columns E[:, K] (every row: the
vocabulary and the positions are not channels). A removed column was CONST across rows, and
its consumers fold that constant (the analysis only removes what they absorb).
"""
from __future__ import annotations

import numpy as np
import torch

from fxminimize.ir import bind
from ..registry import register
from ..rule import Rule

aten = torch.ops.aten


@register(aten.embedding.default)
class EmbeddingRule(Rule):
    """Embedding lookup; the channel dim is the last one (see module docstring)."""

    kind = "embedding"

    def axis(self, cx, n):
        w = bind(n)["weight"]
        if cx.tensor(w) is None:
            cx.hint(n, "embedding table is not a constant tensor")
            return None
        return -1

    def value(self, cx, n):
        E = cx.tensor(bind(n)["weight"]).detach().to(device="cpu", dtype=torch.float64)
        uniform = (E == E[:1]).all(0).numpy() if E.shape[0] else np.ones(E.shape[1], bool)
        cx.set_value(n, uniform, E[0].numpy() if E.shape[0] else np.zeros(E.shape[1]))

    def require(self, cx, n, kept):
        return None  # reads only indices

    def weight_axes(self, cx, n):
        # rows (the vocabulary) are never sliced here: a tied reader that would slice them (an
        # LM head dropping a CONST logit) is pinned, so the shared table is not split in two
        w = bind(n)["weight"]
        return [(w, 0, None), (w, 1, n if cx.has_space(n) else None)]

    def rewrite(self, ctx, n) -> bool:
        if not ctx.plan.tracked(n.name) or not ctx.plan.shrinks(n):
            return False
        w = bind(n)["weight"]
        t = ctx.tensor(w).detach()
        ctx.replace_const(n, w, t[:, ctx.index(ctx.plan.kept(n), t)])
        return True
