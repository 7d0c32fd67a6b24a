"""Shrink eval-mode BatchNorm: slice γ, β, running mean and running variance to the kept
channels. Per-channel affine maps commute with channel selection, so this is exact."""
from __future__ import annotations

import torch

from .base import nodes_of_kind, PassResult, get_tensor, index, replace_const

aten = torch.ops.aten


def run(gm, plan) -> PassResult:
    changed = 0
    for n in nodes_of_kind(gm, plan, "batchnorm"):
        out = n
        if n.target is aten._native_batch_norm_legit_no_training.default:
            items = [u for u in n.users if u.args[1] == 0]
            out = items[0] if items else None
        if out is None or not plan.tracked(out.name) or not plan.shrinks(out):
            continue
        keep = index(plan.kept(out))
        for attr in n.args[1:5]:
            if attr is not None:
                replace_const(gm, n, attr, get_tensor(gm, str(attr.target)).detach()[keep])
        changed += 1
    return PassResult(gm, changed > 0, {"batchnorm_rewritten": changed})
