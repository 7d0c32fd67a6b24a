"""split/chunk on the channel dim: section i keeps |K ∩ [o_i, o_i + s_i)| channels, so the op
becomes ``split_with_sizes`` with those counts (chunk's equal sizes may no longer hold)."""
from __future__ import annotations

import numpy as np
import torch

from fxminimize.rules import lookup
from .base import nodes_of_kind, PassResult

aten = torch.ops.aten


def run(gm, plan) -> PassResult:
    changed = 0
    for n in nodes_of_kind(gm, plan, "split"):
        x = n.args[0]
        if not plan.tracked(x.name) or not plan.shrinks(x):
            continue
        dim, sections = lookup(n.target).sections(n)
        if plan.axis[x.name] != dim:
            continue
        keep = plan.kept(x)
        sizes = [int(np.count_nonzero((keep >= o) & (keep < o + s))) for o, s in sections]
        n.target = aten.split_with_sizes.default
        n.args = (x, sizes, dim)
        n.kwargs = {}
        changed += 1
    return PassResult(gm, changed > 0, {"splits_resized": changed})
