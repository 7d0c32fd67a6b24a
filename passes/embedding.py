"""Shrink embedding tables: output channels K keep columns E[:, K] (every row: the vocabulary
and the positions are not channels). A removed column was CONST across rows, and its
consumers fold that constant (the analysis only removes what they absorb)."""
from __future__ import annotations

from fxminimize.ir import bind
from .base import nodes_of_kind, PassResult, get_tensor, index, replace_const


def run(gm, plan) -> PassResult:
    changed = 0
    for n in nodes_of_kind(gm, plan, "embedding"):
        if not plan.tracked(n.name) or not plan.shrinks(n):
            continue
        w = bind(n)["weight"]
        replace_const(gm, n, w, get_tensor(gm, str(w.target)).detach()[:, index(plan.kept(n))])
        changed += 1
    return PassResult(gm, changed > 0, {"embedding_rewritten": changed})
