"""expand / expand_as where the channel dim is carried through, not broadcast.

``y = x.expand(sizes)`` prepends ``lead = len(sizes) − x.dim()`` new dims and repeats the
size-1 dims of ``x``: y[i_0 … i_lead−1, j_0, …] = x[j_0', …] with j_k' = 0 where x has size 1,
else j_k. If the tracked dim a of x has its full size C in y (output dim a + lead, size C),
channel c of y is a copy of channel c of x at every other index: the two couple one to one,
CONST(v) stays CONST(v), and removing channels from x removes the same ones from y. The
rewrite sets the size argument at a + lead to −1 ("keep x's size"), so it holds whatever
channels x keeps. A channel dim of size 1 broadcast to C (one value read C times) is no
channel map: declined (a barrier, with that reason).

``y = x.expand_as(other)`` is ``x.expand(other.shape)`` read at run time (Swinv2's
``q / ‖q‖.clamp_min(ε).expand_as(q)``): the output's channel dim is also other's, so after the
rewrite the shapes agree only if other loses the same channels on that dim. The output is
therefore coupled one to one with other too; if other is not tracked on that dim (its size
would stay C), the rule declines. Other's values are not read: only x's channels are required.
"""
from __future__ import annotations

import torch

from fxminimize.ir import shape, static_int
from ..registry import register
from .common import _Channelwise, _nd

aten = torch.ops.aten


@register(aten.expand.default, aten.expand_as.default)
class ExpandRule(_Channelwise):
    kind = "expand"

    def out_axis(self, cx, n, ax):
        x = n.args[0]
        out = ax + _nd(n) - _nd(x)
        c_in, c_out = static_int(shape(x)[ax]), static_int(shape(n)[out])
        if c_in is None or c_in != c_out:
            cx.hint(n, "expand broadcasts the channel dimension")
            return None
        if n.target is aten.expand_as.default:
            other = n.args[1]
            if not isinstance(other, torch.fx.Node) or cx.axis_of(other) != out:
                cx.hint(n, "expand_as a tensor whose channels are not the output's")
                return None
        return out

    def couple(self, cx, n):
        super().couple(cx, n)
        if n.target is aten.expand_as.default:
            cx.couple_identity(n.args[1], n, "expand")

    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        if n.target is not aten.expand.default or not plan.tracked(n.name) or not plan.shrinks(n):
            return False
        b = plan.axis[n.name]
        sizes = list(n.args[1])
        if sizes[b] == -1:
            return False
        sizes[b] = -1
        n.args = (n.args[0], sizes) + tuple(n.args[2:])
        return True
