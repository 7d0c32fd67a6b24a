"""``stack`` and ``unbind`` on a dim that is not the channel dim (fused projections packed and
unpacked along a new leading dim, e.g. q/k/v or gate/up stacked and split again).

stack(x_1 … x_m, d) inserts a new dim d of size m: y[…, i, …] = x_i. When every x_i carries its
channels on the same dim a with the same count, y's channel c is {x_i's channel c}: the inputs
and y are coupled one to one, y's channel dim is a (a < d) or a + 1. Value: y_c = CONST(v) iff
every x_i is CONST(v) on c with the same v. Use: identity. Rewrite: none. Inputs that do not
share a channel dim (an untracked input among tracked ones) decline: "stack inputs do not share
a channel dim".

unbind(x, d) returns the m slices along d: item i's channel c is x's channel c (coupled), the
channel dim shifts down by one when d < a. Value: x's, except that the items of
unbind(stack(x_1 … x_m, d), d) are the x_i themselves and take their values (the stack's merged
lattice would lose a ZERO that only one x_i has). Use: identity. Rewrite: none. Unbinding
the channel dim itself would make every item one channel: declined ("unbind of the channel
dimension"), x's channels are all kept. (A fused qkv reshaped to (B, N, 3, H, D) is tracked on
the q/k/v dim of size 3 by the reshape rule, so its ``unbind(0)`` after the permute meets this
case.)
"""
from __future__ import annotations

import numpy as np
import torch

from fxminimize.ir import bind, shape, static_int
from ..registry import register
from ..rule import Rule
from .common import _nd

aten = torch.ops.aten


@register(aten.stack.default)
class StackRule(Rule):
    kind = "stack"

    def dim(self, n):
        return int(bind(n).get("dim", 0)) % _nd(n)

    def axis(self, cx, n):
        xs = list(n.args[0])
        axes = {cx.axis_of(x) for x in xs}
        sizes = {static_int(shape(x)[cx.axis_of(x)]) for x in xs if cx.axis_of(x) is not None}
        if len(axes) != 1 or None in axes or len(sizes) != 1:
            if any(cx.axis_of(x) is not None for x in xs):
                cx.hint(n, "stack inputs do not share a channel dim")
            return None
        a = axes.pop()
        return a if a < self.dim(n) else a + 1

    def couple(self, cx, n):
        for x in n.args[0]:
            cx.couple_identity(x, n, "stack")

    def value(self, cx, n):
        ms = [cx.const_of(x) for x in n.args[0]]
        m = np.logical_and.reduce([mv[0] for mv in ms])
        v0 = ms[0][1]
        for _, v in ms[1:]:
            m &= v == v0
        cx.set_value(n, m, v0)

    def require(self, cx, n, kept):
        if not cx.is_native(n):
            return Rule.require(self, cx, n, kept)
        for x in n.args[0]:
            cx.need(x, kept, n)


@register(aten.unbind.int)
class UnbindRule(Rule):
    kind = "unbind"

    def dim(self, n):
        return int(bind(n).get("dim", 0)) % _nd(n.args[0])

    def item_axis(self, cx, n, idx):
        ax = cx.axis_of(n.args[0])
        if ax is None:
            return None
        d = self.dim(n)
        if ax == d:
            cx.hint(n, "unbind of the channel dimension")
            return None
        return ax - 1 if d < ax else ax

    def item_couple(self, cx, n, idx, item):
        cx.couple_identity(n.args[0], item, "unbind")

    def item_value(self, cx, n, idx, item):
        x = n.args[0]
        src = x
        if getattr(x, "target", None) is aten.stack.default and StackRule().dim(x) == self.dim(n) \
                and cx.has_space(x.args[0][idx]):
            src = x.args[0][idx]  # unbind(stack(x_1 … x_m, d), d)[i] is x_i itself: its own values
        m, v = cx.const_of(src)
        cx.set_value(item, m, v)

    def item_require(self, cx, n, idx, item, kept):
        cx.need(n.args[0], kept, item)

    def require(self, cx, n, kept):
        x = n.args[0]
        if cx.axis_of(x) is not None and cx.axis_of(x) == self.dim(n):
            Rule.require(self, cx, n, kept)
