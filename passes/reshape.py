"""Fix the size arguments of view/reshape/unflatten after channels leave.

The analysis matched the tracked dim to output dim b (merge or split, see the reshape rule);
the kept elements along b are exactly the output's kept channels, so the new size of dim b is
their count. A ``-1`` stays ``-1``; flatten needs no change.
"""
from __future__ import annotations

import torch

from .base import nodes_of_kind, PassResult

aten = torch.ops.aten


def run(gm, plan) -> PassResult:
    changed = 0
    for n in nodes_of_kind(gm, plan, "reshape"):
        if not plan.tracked(n.name) or not plan.shrinks(n):
            continue
        b = plan.axis[n.name]
        new = len(plan.kept(n))
        if n.target in (aten.view.default, aten.reshape.default, aten._unsafe_view.default):
            sizes = list(n.args[1])
            if sizes[b] != -1:
                sizes[b] = new
                n.args = (n.args[0], sizes) + tuple(n.args[2:])
                changed += 1
        elif n.target is aten.unflatten.int:
            dim = int(n.args[1]) % len(n.args[0].meta["val"].shape)
            sizes = list(n.args[2])
            if not dim <= b < dim + len(sizes):
                continue  # the channel dim is not one of the unflattened dims: sizes unchanged
            if sizes[b - dim] != -1:
                sizes[b - dim] = new
                n.args = (n.args[0], n.args[1], sizes)
                changed += 1
    return PassResult(gm, changed > 0, {"reshapes_fixed": changed})
