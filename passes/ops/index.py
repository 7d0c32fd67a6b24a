"""Advanced indexing ``x[..., idx, ...]`` (``aten.index.Tensor``) off the channel dim: the
gathers of tokens and rows that mixture-of-experts routing does (Mixtral, Qwen2-MoE:
``hidden[token_idx]``), and position gathers.

``index(x, [None, …, i_1, …, i_m])`` with integer index tensors i_1 … i_m on *adjacent* dims
d … d + m − 1 replaces those dims by the broadcast shape of the indices:
y[…, p, …] = x[…, i_1[p], …, i_m[p], …]. If the channel dim a of x is not among them, every
element of y's channel c is an element of x's channel c, so channels map one to one:
y's channel dim is a when a < d, a − m + r (r = the indices' broadcast rank) when a > d + m − 1.
CONST(v) stays CONST(v) (a gather of values all equal to v). Use: identity. Rewrite: none (the
indices address non-channel dims, which do not change).

Declined (the op is then a barrier with the reason): an index on the channel dim ("indexes the
channel dimension"), boolean masks (their result size depends on the data), and non-adjacent
index tensors (torch moves the gathered dims to the front).
"""
from __future__ import annotations

import torch

from fxminimize.ir import tensor_inputs
from ..registry import register
from .common import _Channelwise, _nd

aten = torch.ops.aten


@register(aten.index.Tensor)
class IndexRule(_Channelwise):
    kind = "index"

    def out_axis(self, cx, n, ax):
        idx = list(n.args[1])
        pos = [d for d, i in enumerate(idx) if i is not None]
        if not pos:
            return ax
        if pos != list(range(pos[0], pos[-1] + 1)):
            cx.hint(n, "index tensors on non-adjacent dims")
            return None
        if pos[0] <= ax <= pos[-1]:
            cx.hint(n, "indexes the channel dimension")
            return None
        for i in idx:
            if i is None:
                continue
            val = cx.tensor(i) if cx.tensor(i) is not None else getattr(i, "meta", {}).get("val")
            if not isinstance(val, torch.Tensor) or val.dtype in (torch.bool, torch.uint8):
                cx.hint(n, "boolean or unknown index")
                return None
        if ax < pos[0]:
            return ax
        return ax + (_nd(n) - _nd(self.src(n)))

    def require(self, cx, n, kept):
        super().require(cx, n, kept)
        for i in tensor_inputs(n)[1:]:
            cx.need(i, None, n)  # index tensors are read whole
