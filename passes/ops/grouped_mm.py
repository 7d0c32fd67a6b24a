"""Grouped matrix product of mixture-of-experts layers: transformers'
``grouped_mm_fallback(x, W, offs)`` (Mixtral, Qwen2-MoE, … in transformers 5.x).

x (S, C_in) holds the routed tokens sorted by expert, W (E, C_in, C_out) one matrix per expert,
offs the cumulative token counts: rows offs[e−1] … offs[e] − 1 of y are x's rows times W[e].
For every row, y_j = Σ_i x_i W[e, i, j] for its expert e: a contraction whose weight depends on
the row. Channels are the last dims of x and y, and the analysis uses the union of the
experts' nonzero patterns, NZ_ji = ∃e W[e, i, j] ≠ 0:

* Value: y_j is ZERO iff every input i that any expert reads into j (NZ_ji) is ZERO. A CONST(v)
  input with v ≠ 0 adds v·W[e, i, j], which differs between experts, so it is treated as LIVE
  (the ``padded`` case of :class:`~fxminimize.passes.ops.contraction.Contraction`: it is never
  folded, so no bias is needed, and it is required wherever a kept output reads it).
* Use: input i is required iff some kept output j reads it in some expert (NZ_ji) and i is not
  ZERO.
* Rewrite: W' = W[:, K][:, :, R] (every expert keeps the same rows and columns). Removed inputs
  are ZERO or unread, so nothing is folded (checked: a removed input read by a kept output
  with a nonzero value is an internal error, and ``minimize`` refuses).

This is where the planted MoE mask goes: the up half of every expert's ``gate_up_proj`` zeroed
makes ``silu(gate) · up`` ZERO, and the down projection's inputs there leave with the rows.
"""
from __future__ import annotations

import numpy as np
import torch

from ..infra import fold_vector
from ..registry import register_named
from .contraction import Contraction


@register_named("transformers::grouped_mm_fallback.default")
class GroupedMMRule(Contraction):
    kind = "grouped_mm"
    in_axis = -1

    def params(self, n):
        return n.args[0], n.args[1], None

    def ok(self, cx, n) -> bool:
        if not super().ok(cx, n):
            return False
        if cx.tensor(n.args[1]).dim() != 3:
            cx.hint(n, "grouped matmul weight is not (experts, in, out)")
            return False
        return True

    def build(self, cx, n):
        W = cx.tensor(n.args[1]).detach()
        return (W != 0).any(0).t().cpu().numpy(), None, True  # (out, in) union pattern; no folding

    def kernel_sums(self, cx, n, cols):
        # Only multiplied by CONST values; with padded = True an output reading a nonzero CONST
        # input is LIVE, so only v = 0 entries reach a CONST output: the sums do not matter there.
        return np.zeros((self.matrices(cx, n)[0].shape[0], len(cols)))

    def weight_axes(self, cx, n):
        if not self.ok(cx, n):
            return []
        x, w, _ = self.params(n)
        return [(w, 2, n if cx.has_space(n) else None),
                (w, 1, x if self.x_tracked(cx, n) and cx.has_space(x) else None)]

    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        x, w, _ = self.params(n)
        if not plan.tracked(n.name):
            return False
        x_ok = plan.tracked(x.name) and plan.axis[x.name] == len(x.meta["val"].shape) - 1
        if not plan.shrinks(n) and not (x_ok and plan.shrinks(x)):
            return False
        W = ctx.tensor(w).detach()
        W = W[:, :, ctx.index(plan.kept(n), W)]
        if x_ok and plan.shrinks(x):
            W0 = W.abs().sum(0).t()  # (out, in): nonzero where some expert reads i into j
            fold = fold_vector(plan, x, W0.double(), W0 != 0)  # raises if a LIVE input is still read
            if bool(fold.abs().max() > 0) if fold.numel() else False:
                raise AssertionError(f"internal: nonzero constant removed from grouped matmul {n.name}")
            W = W[:, ctx.index(plan.kept(x), W), :]
        ctx.replace_const(n, w, W)
        return True
