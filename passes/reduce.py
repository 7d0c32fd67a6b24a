"""Compensate mean/sum over the channel dim for the CONST channels that left (RMSNorm's Σx²).

With N elements reduced per channel, kept channels K of C and removed CONST channels R:
sum = sum_K + N·Σ_R v_r, mean = mean_K · |K|/C + Σ_R v_r / C. The reduce node keeps its
arguments and is followed by the affine correction (skipped when it is the identity).
"""
from __future__ import annotations

import math

import torch

from fxminimize.ir import shape
from fxminimize.rules import lookup
from .base import nodes_of_kind, PassResult, plan_name

aten = torch.ops.aten


def run(gm, plan) -> PassResult:
    changed = 0
    for n in nodes_of_kind(gm, plan, "reduce"):
        x = n.args[0]
        xname = plan_name(gm, x)
        if plan.tracked(n.name) or not plan.tracked(xname) or not plan.shrinks(xname):
            continue
        ax = plan.axis[xname]
        dims, _ = lookup(n.target).dims(n)  # the rule's reading of dim/keepdim
        if ax not in dims:
            continue
        rem = plan.removed(xname)
        cm, cv = plan.const_mask[xname][rem], plan.const_val[xname][rem]
        if not cm.all():
            raise AssertionError(f"internal: LIVE channel removed from the input of {n.name}")
        C, K = plan.size[xname], len(plan.kept(xname))
        per_channel = math.prod(int(shape(x)[d]) for d in dims if d != ax)
        if n.target is aten.mean.dim:
            scale, shift = K / C, float(cv.sum()) / C
        else:
            scale, shift = 1.0, per_channel * float(cv.sum())
        users = list(n.users)
        out = n
        for op, c in ((aten.mul.Tensor, scale), (aten.add.Tensor, shift)):
            if c != (1.0 if op is aten.mul.Tensor else 0.0):
                with gm.graph.inserting_after(out):
                    out = gm.graph.call_function(op, (out, c))
                out.meta = dict(n.meta)
        for u in users:
            u.replace_input_with(n, out)
        changed += 1
    return PassResult(gm, changed > 0, {"reduce_compensated": changed})
