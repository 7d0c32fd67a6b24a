"""Slice per-channel constant operands of elementwise ops (layer scale γ·x, bias adds,
per-channel gates, division by constants).

For y = x ∘ p with p a constant broadcast on the channel dim, y_c = x_c ∘ p_c, so keeping
channels K needs p[K] along the dim of p that aligns with y's channel dim. Operands of size 1
there broadcast and stay as they are.
"""
from __future__ import annotations

from .base import nodes_of_kind, PassResult, get_tensor, index, replace_const


def run(gm, plan) -> PassResult:
    changed = 0
    for n in nodes_of_kind(gm, plan, "binary"):
        if not plan.tracked(n.name) or not plan.shrinks(n):
            continue
        out_ax = plan.axis[n.name]
        nd = len(n.meta["val"].shape)
        C = plan.size[n.name]
        keep = index(plan.kept(n))
        for x in list(n.args[:2]):
            if getattr(x, "op", None) != "get_attr":
                continue
            t = get_tensor(gm, str(x.target)).detach()
            k = out_ax - (nd - t.dim())
            if k < 0 or t.shape[k] != C or C == 1:
                continue
            replace_const(gm, n, x, t.index_select(k, keep))
            changed += 1
    return PassResult(gm, changed > 0, {"channel_params_sliced": changed})
