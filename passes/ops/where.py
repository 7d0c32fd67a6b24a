"""Selection ``where(cond, a, b)`` (``aten.where.self``, ``.ScalarOther``, ``.ScalarSelf``), and
``masked_fill(x, mask, value)`` = where(mask, value, x) (``aten.masked_fill.Scalar``).

y = a where cond else b, elementwise with broadcasting. With the channel dim c of y carried by
the value operands a and/or b (each either tracked on the same dim of y with the same size, or
broadcast there: size 1, absent, a scalar) and cond untracked and broadcast on it (a mask over
positions, as causal and padding masks are), channel c of y reads channel c of the tracked
operands only, so channels map one to one (coupled).

Value: y_c = CONST(v) iff a_c and b_c are both CONST(v) with the same v (a scalar or a 0-d
constant tensor is CONST everywhere); otherwise which one is picked depends on cond, so LIVE.
Use: identity for the tracked operands; cond and untracked operands are read whole.

Rewrite: a 0-d constant operand (``torch.export`` lifts the ``torch.tensor(min_value)`` that
hand-written attention masks with, e.g. GPT-Neo, into a stored constant the original model
does not store) becomes the Python scalar it holds (``where.ScalarOther`` / ``ScalarSelf``),
when its dtype is the output's: the same values are selected and the result type is the same,
and the graph stores one element less.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx

from fxminimize.ir import shape, static_int
from ..registry import register
from ..rule import Rule
from .common import _nd

aten = torch.ops.aten


@register(aten.where.self, aten.where.ScalarOther, aten.where.ScalarSelf, aten.masked_fill.Scalar)
class WhereRule(Rule):
    kind = "where"

    def values(self, n):
        if n.target is aten.masked_fill.Scalar:
            return [n.args[2], n.args[0]]
        return [n.args[1], n.args[2]]

    def cond(self, n):
        return n.args[1] if n.target is aten.masked_fill.Scalar else n.args[0]

    def axis(self, cx, n):
        cond = self.cond(n)
        tracked = [x for x in self.values(n) if cx.axis_of(x) is not None]
        if not tracked:
            return None
        if cx.axis_of(cond) is not None:
            cx.hint(n, "where with a condition that has channels")
            return None
        ny = _nd(n)
        outs = {cx.axis_of(x) + ny - _nd(x) for x in tracked}
        if len(outs) != 1:
            cx.hint(n, "where operands with channels on different dims")
            return None
        ax = outs.pop()
        size = static_int(shape(n)[ax])
        for x in [cond] + self.values(n):
            if isinstance(x, fx.Node) and x not in tracked:
                d = ax - (ny - _nd(x))
                if d >= 0 and static_int(shape(x)[d]) != 1:
                    cx.hint(n, "where operand with the channel dim but no channels")
                    return None
        if any(static_int(shape(x)[cx.axis_of(x)]) != size for x in tracked):
            cx.hint(n, "where operands broadcast on the channel dim")
            return None
        return ax

    def couple(self, cx, n):
        for x in self.values(n):
            if cx.has_space(x):
                cx.couple_identity(x, n, "where")

    def _const(self, cx, x, C):
        if cx.has_space(x):
            return cx.const_of(x)
        t = cx.tensor(x) if isinstance(x, fx.Node) else None
        if isinstance(x, (int, float, bool)) or (t is not None and t.dim() == 0):
            v = float(x) if t is None else float(t)
            return np.ones(C, bool), np.full(C, v)
        return np.zeros(C, bool), np.zeros(C)

    def value(self, cx, n):
        C = cx.size_of(n)
        (ma, va), (mb, vb) = (self._const(cx, x, C) for x in self.values(n))
        m = ma & mb & (va == vb)
        cx.set_value(n, m, va)

    def require(self, cx, n, kept):
        if not cx.is_native(n):
            return Rule.require(self, cx, n, kept)
        for x in self.values(n):
            cx.need(x, kept, n)
        cx.need(self.cond(n), None, n)

    def rewrite(self, ctx, n) -> bool:
        if n.target is not aten.where.self:
            return False
        out = n.meta.get("val")
        for i, target in ((2, aten.where.ScalarOther), (1, aten.where.ScalarSelf)):
            x = n.args[i]
            if getattr(x, "op", None) != "get_attr" or not isinstance(out, torch.Tensor):
                continue
            t = ctx.tensor(x)
            if t.dim() != 0 or t.dtype != out.dtype or not t.dtype.is_floating_point:
                continue
            args = list(n.args)
            args[i] = float(t)
            n.args = tuple(args)
            n.target = target
            return True
        return False
