"""Linear: y = x Wᵀ + b, channels on the last dim of x and y; and ``addmm(b, x, W) = b + x W``
with W stored (in, out) (GPT-2's Conv1D and torch.compile's decomposed Linear).

Analysis: the contraction math of :class:`~fxminimize.passes.ops.contraction.Contraction`.
Rewrite: kept output rows R and kept input columns K give W' = W[R][:, K]. Every removed
input column i is either never read by a kept row (W[R, i] = 0) or CONST(v_i), folded exactly
into the bias: b'_R = b_R + W[R][:, removed] · v_removed (a bias is created when there was none
and the fold is nonzero).
"""
from __future__ import annotations

import numpy as np
import torch

from fxminimize.ir import bind
from ..infra import add_fold, fold_removed_columns, take
from ..registry import register
from .common import _nonzero
from .contraction import Contraction

aten = torch.ops.aten


@register(aten.linear.default)
class LinearRule(Contraction):
    kind = "linear"
    in_axis = -1
    transposed = False

    def params(self, n):
        p = bind(n)
        return p["input"], p["weight"], p["bias"]

    def weight(self, cx, n) -> torch.Tensor:
        """W as (out, in), whatever the storage order."""
        w = cx.tensor(self.params(n)[1]).detach()
        return w.t() if self.transposed else w

    def build(self, cx, n):
        b = self.params(n)[2]
        bias = cx.tensor(b).detach().double() if b is not None else None
        return _nonzero(self.weight(cx, n)), bias, False

    def kernel_sums(self, cx, n, cols):
        W = self.weight(cx, n)
        return W[:, torch.from_numpy(cols).to(W.device)].double().cpu().numpy()

    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        x, w, b = self.params(n)
        if not plan.tracked(n.name):
            return False
        x_ok = plan.tracked(x.name) and plan.axis[x.name] == len(x.meta["val"].shape) - 1
        narrow = self.kept_const_columns(ctx, n, x, w) if x_ok else None
        if not plan.shrinks(n) and not (x_ok and plan.shrinks(x)) and narrow is None:
            return False
        W = self.weight(ctx, n)
        rows = ctx.index(plan.kept(n), W)
        bias = ctx.tensor(b).detach().double()[rows] if b is not None else None
        Wr = take(W, 0, rows)   # a dim kept whole is not copied
        if x_ok and plan.shrinks(x):
            bias = add_fold(bias, fold_removed_columns(plan, x, Wr))
            Wr = take(Wr, 1, ctx.index(plan.kept(x), W))
        if narrow is not None:  # CONST channels x keeps for other readers: fold, read the rest
            const_pos, values, live_pos = narrow
            fold = Wr[:, ctx.index(const_pos, W)].double() @ torch.from_numpy(values).to(W.device)
            bias = add_fold(bias, fold)
            Wr = Wr[:, ctx.index(live_pos, W)]
            idx = ctx.add_const(n, f"fxm_cols_{n.name}", ctx.index(live_pos, W))
            with ctx.gm.graph.inserting_before(n):
                g = ctx.gm.graph.call_function(aten.index_select.default, (x, -1, idx))
            n.replace_input_with(x, g)
        self.write_weight_and_bias(ctx, n, w, b, Wr.t() if self.transposed else Wr, bias)
        return True

    def write_weight_and_bias(self, ctx, n, w, b, weight, bias) -> None:
        """Make ``n`` read the shrunk weight and bias (a form without a bias argument overrides)."""
        ctx.write_weight_and_bias(n, w, b, weight, bias)

    def kept_const_columns(self, ctx, n, x, w):
        """Channels of x that x keeps (another reader needs them: a residual stream, a LayerNorm's
        statistics) but that are CONST(v): this Linear need not read them. Its columns fold into
        the bias (b' = b + W[:, c]·v_c) and it reads x through an index_select of the rest.
        Made only where it pays (rows × folded columns > the index's length) and when the
        weight is not shared (a tied weight keeps its shape). Returns (const positions, values,
        live positions) within x's kept channels, or None."""
        plan = ctx.plan
        if len(w.users) > 1 or not ctx.structural:  # module mode: the module reads its whole input
            return None
        keep_x = plan.kept(x)
        cm, cv = plan.const_mask[x.name][keep_x], plan.const_val[x.name][keep_x]
        if not cm.any() or cm.all():
            return None
        rows = len(plan.kept(n))
        if rows * int(cm.sum()) <= int((~cm).sum()):
            return None
        return np.nonzero(cm)[0], cv[cm], np.nonzero(~cm)[0]


@register(aten.addmm.default)
class AddmmRule(LinearRule):
    """addmm(bias, x, W): a Linear whose weight is stored transposed, (in, out)."""

    transposed = True

    def params(self, n):
        return n.args[1], n.args[2], n.args[0]

    def ok(self, cx, n):
        if len(n.args) != 3 or n.kwargs.get("beta", 1) != 1 or n.kwargs.get("alpha", 1) != 1:
            cx.hint(n, "addmm with alpha/beta")
            return False
        b = cx.tensor(n.args[0])
        if b is not None and b.dim() != 1:
            cx.hint(n, "addmm with a non-vector bias")
            return False
        return super().ok(cx, n)
