"""Shrink Linear layers: y = x Wᵀ + b (and addmm(b, x, W), whose W is stored transposed).

Kept output rows R and kept input columns K: W' = W[R][:, K]. Every removed input column i
is either never read by a kept row (W[R, i] = 0) or CONST(v_i), folded exactly into the bias:
b'_R = b_R + W[R][:, removed] · v_removed (a bias is created when there was none).
"""
from __future__ import annotations

from fxminimize.rules import lookup
from .base import nodes_of_kind, PassResult, add_fold, fold_vector, get_tensor, index, write_weight_and_bias


def run(gm, plan) -> PassResult:
    changed = 0
    for n in nodes_of_kind(gm, plan, "linear"):
        rule = lookup(n.target)
        x, w, b = rule.params(n)
        transposed = getattr(rule, "transposed", False)
        if not plan.tracked(n.name):
            continue
        W = get_tensor(gm, str(w.target)).detach()
        if transposed:
            W = W.t()
        x_ok = plan.tracked(x.name) and plan.axis[x.name] == len(x.meta["val"].shape) - 1
        rows = index(plan.kept(n))
        if not plan.shrinks(n) and not (x_ok and plan.shrinks(x)):
            continue
        Wr = W[rows]
        bias = get_tensor(gm, str(b.target)).detach().double()[rows] if b is not None else None
        if x_ok and plan.shrinks(x):
            fold = fold_vector(plan, x, Wr.double(), Wr != 0)
            bias = add_fold(bias, fold)
            Wr = Wr[:, index(plan.kept(x))]
        write_weight_and_bias(gm, n, w, b, Wr.t() if transposed else Wr, bias)
        changed += 1
    return PassResult(gm, changed > 0, {"linear_rewritten": changed})
