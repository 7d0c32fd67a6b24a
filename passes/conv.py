"""Shrink convolutions (1d/2d/3d; stride, dilation, padding, groups, depthwise).

groups = 1: W' = W[R][:, K] with bias folding b'_R = b_R + Σ_{i removed CONST} v_i·ΣW[R, i]
(ΣW sums the kernel window; the analysis only lets a nonzero CONST go when padding is 0, so the
folded constant is exact at every output position).
groups = g > 1: whole groups leave (a group is one unit), so W' = W[R] with the per-group
input slice unchanged and groups' = |R| / (O/g); no folding is needed because a removed group's
inputs only feed that group's outputs.
"""
from __future__ import annotations

from fxminimize.ir import bind, set_arg
from .base import nodes_of_kind, PassResult, add_fold, fold_vector, get_tensor, index, write_weight_and_bias


def run(gm, plan) -> PassResult:
    changed = 0
    for n in nodes_of_kind(gm, plan, "conv"):
        if not plan.tracked(n.name):
            continue
        p = bind(n)
        x, w, b = p["input"], p["weight"], p["bias"]
        g = int(p.get("groups") or 1)
        x_ok = plan.tracked(x.name) and plan.axis[x.name] == 1
        x_shrinks = x_ok and plan.shrinks(x)
        if not plan.shrinks(n) and not x_shrinks:
            continue
        W = get_tensor(gm, str(w.target)).detach()
        rows = index(plan.kept(n))
        Wr = W[rows]
        bias = get_tensor(gm, str(b.target)).detach().double()[rows] if b is not None else None
        if g == 1:
            if x_shrinks:
                spatial = tuple(range(2, W.dim()))
                wsum = Wr.double().sum(dim=spatial)
                fold = fold_vector(plan, x, wsum, (Wr != 0).any(dim=spatial))
                bias = add_fold(bias, fold)
                Wr = Wr[:, index(plan.kept(x))]
        else:
            Og, Ig = W.shape[0] // g, W.shape[1]
            new_g = len(rows) // Og
            if len(rows) % Og or (x_ok and len(plan.kept(x)) != new_g * Ig):
                raise AssertionError(f"internal: partial group removed in {n.name}")
            set_arg(n, "groups", new_g)
        write_weight_and_bias(gm, n, w, b, Wr, bias)
        changed += 1
    return PassResult(gm, changed > 0, {"conv_rewritten": changed})
