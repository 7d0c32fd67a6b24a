"""Swap LayerNorm for CompensatedLayerNorm where CONST channels leave its input.

For kept channels K and removed CONST channels R (values v_r), the analysis guarantees every
removed input is CONST. The node ``layer_norm(x, [C], γ, β, ε)`` becomes
``compensated_layer_norm(x_K, C, s1, s2, γ_K, β_K, ε)`` with s1 = Σ_R v_r, s2 = Σ_R v_r²
(float64), which computes μ and σ² of the full width exactly
(derivation in :mod:`fxminimize.compensated`). LayerNorms that lose nothing are left alone.

A ``compensated_layer_norm(x_K, C, s1, s2, …)`` node (from an earlier run) that loses more
CONST channels R' keeps its C and its dim and accumulates them: s1 + Σ_R' v_r, s2 + Σ_R' v_r².
"""
from __future__ import annotations

import numpy as np

from fxminimize.compensated import COMPENSATED_LAYER_NORM
from fxminimize.ir import bind
from .base import nodes_of_kind, PassResult, get_tensor, index, plan_name, replace_const


def run(gm, plan) -> PassResult:
    changed = 0
    renamed = gm.meta.setdefault("fxminimize_renamed", {})  # new node -> the name the plan knows
    for n in nodes_of_kind(gm, plan, "layernorm"):
        x = n.args[0]
        xname = plan_name(gm, x)
        if not plan.tracked(n.name) or not plan.tracked(xname) or not plan.shrinks(xname):
            continue
        rem = plan.removed(xname)
        cm, cv = plan.const_mask[xname][rem], plan.const_val[xname][rem]
        if not cm.all():
            raise AssertionError(f"internal: LIVE channel removed from the input of {n.name}")
        if not np.array_equal(plan.kept(n), plan.kept(xname)):
            raise AssertionError(f"internal: {n.name} keeps other channels than its input")
        p = bind(n)
        keep = index(plan.kept(xname))
        w, b = p["weight"], p["bias"]
        if w is not None:
            w = replace_const(gm, n, w, get_tensor(gm, str(w.target)).detach()[keep])
        if b is not None:
            b = replace_const(gm, n, b, get_tensor(gm, str(b.target)).detach()[keep])
        s1, s2 = float(cv.sum()), float((cv * cv).sum())
        if n.target is COMPENSATED_LAYER_NORM:  # already compensated: the removed set grows
            count, s1, s2, dim = int(p["count"]), float(p["s1"]) + s1, float(p["s2"]) + s2, int(p["dim"])
        else:
            count, dim = plan.size[xname], -1
        with gm.graph.inserting_after(n):
            new = gm.graph.call_function(COMPENSATED_LAYER_NORM, (x, count, s1, s2, w, b, float(p["eps"]), dim))
        new.meta = dict(n.meta)
        renamed[new] = n.name
        n.replace_all_uses_with(new)
        gm.graph.erase_node(n)
        changed += 1
    return PassResult(gm, changed > 0, {"layernorm_compensated": changed})
