"""``torch.linalg.vector_norm`` over non-channel dims (ConvNeXt-V2's Global Response Normalization).

GRN (``transformers`` ConvNextV2GRN, channels last)::

    g = ‖x‖₂ over (H, W)            (N, 1, 1, C)   this rule: channel by channel
    n = g / (mean_c(g) + 1e-6)      (N, 1, 1, C)   mean over channels: :class:`~.reduce.ReduceRule`
    y = w·(x·n) + b + x                            binary rules

Math. ``vector_norm(x, p, dims)`` over dims that exclude the channel dim maps channel c of x to
channel c of the result (identity coupling and use, as a reduction over spatial dims). If x_c is
CONST(v) over the M = ∏ reduced sizes elements, the norm is input-independent:
‖v·1_M‖_p = |v|·M^{1/p} for finite p > 0, |v| for p = ±∞, M·[v ≠ 0] for p = 0 (and for p < 0,
|v|·M^{1/p}, which is 0 at v = 0). When M is symbolic (``minimize`` keeps image sizes dynamic by
default) only the values that do not depend on M are CONST: ZERO ↦ ZERO for every p, and |v| for
p = ±∞; any other CONST input gives a LIVE channel. With the channel dim among the reduced dims
the rule declines ("reduces over the channel dimension") and the node is a barrier. A ``dtype``
argument makes every channel LIVE (conservative).

What is removable in GRN, exactly. The mean over channels couples every channel: a LIVE g_c moves
the mean, so its channel is required while the mean is. A CONST g_c (from a CONST x_c) leaves the
mean through the reduce rule's compensation mean = mean_K·|K|/C + Σ_R v_r/C. Its own output
y_c = w_c·v·n_c + b_c + v is per-sample (n_c divides by the live mean) unless v = 0 or w_c = 0;
then y_c = CONST(b_c + v) and folds into the next Linear. So a hidden unit whose pwconv1 row and
bias are zero (x_c = GELU(0) = 0) goes entirely; a unit with CONST v ≠ 0 and w_c ≠ 0 stays.
There is no rewrite: the output's shape follows the input.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from fxminimize.ir import bind, prod_static, shape
from ..registry import register_many
from .reduce import ReduceRule

aten = torch.ops.aten


class VectorNormRule(ReduceRule):
    """‖x‖_p over non-channel dims, channel by channel; CONST(v) ↦ CONST(‖v·1_M‖_p)."""

    kind = "vector_norm"
    compensable = ()  # a norm over the channel dim does not split into kept + removed parts

    def fmap(self, cx, n, v):
        p = bind(n)
        if p.get("dtype") is not None:
            return None
        dims, _ = self.dims(n)
        M = prod_static(shape(n.args[0])[d] for d in dims)
        order = float(p.get("ord", 2))
        a = np.abs(v)
        if math.isinf(order):
            return a.copy()
        if M is None:  # the image size is a run-time input: only ‖0‖ = 0 is input-independent
            return np.where(v == 0, 0.0, np.nan)  # nan is not finite: set_value makes it LIVE
        if order == 0:
            return np.where(v != 0, float(M), 0.0)
        return a * float(M) ** (1.0 / order)


register_many(VectorNormRule(), [aten.linalg_vector_norm.default])
