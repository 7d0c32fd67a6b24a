"""Pooling and reductions: per-channel over spatial/other dims, compensated over the channel dim.

Rewrite of a mean/sum over the channel dim that lost CONST channels R (N elements reduced per
channel, kept K of C): sum = sum_K + N·Σ_R v_r, mean = mean_K · |K|/C + Σ_R v_r / C. The reduce
node keeps its arguments and is followed by this affine correction (skipped when it is the
identity). RMSNorm's mean of x² is the common case.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from fxminimize.ir import bind, prod_static, shape, static_int
from ..registry import register_many
from .common import _Channelwise, _nd

aten = torch.ops.aten


class PoolRule(_Channelwise):
    """Max/avg/adaptive pooling acts on the trailing spatial dims, channel by channel.

    CONST(v) stays CONST(v) (a window of equal values has max and mean v), except average
    pooling that counts zero padding (or ceil-mode partial windows), which is not uniform
    unless v = 0.
    """

    kind = "pool"
    spatial = 2

    def out_axis(self, cx, n, ax):
        return ax if ax < _nd(n) - self.spatial else None

    def fmap(self, cx, n, v):
        t = n.target
        if t in (aten.avg_pool2d.default, aten.avg_pool1d.default, aten.avg_pool3d.default):
            p = bind(n)
            pad = p.get("padding", 0)
            pad = [pad] if isinstance(pad, int) else list(pad)
            if (any(pad) and p.get("count_include_pad", True)) or p.get("ceil_mode", False) \
                    or p.get("divisor_override") is not None:
                return None if np.any(v != 0) else v
        return v


_pool = PoolRule()
register_many(_pool, [aten.max_pool2d.default, aten.avg_pool2d.default, aten.adaptive_avg_pool2d.default])


class Pool1dRule(PoolRule):
    spatial = 1


register_many(Pool1dRule(), [aten.max_pool1d.default, aten.avg_pool1d.default, aten.adaptive_avg_pool1d.default])


class ReduceRule(_Channelwise):
    """mean/sum/amax over non-channel dims keep channels; mean/sum over the channel dim compensate.

    Over other dims: mean and amax of CONST(v) are v; sum is v·N (N the number of reduced
    elements, if static). Over the channel dim (and possibly others, N elements per channel) the
    output is untracked, and a CONST(v_r) channel may leave because its contribution is known:
    sum = sum_K + N·Σ_R v_r and mean = mean_K·|K|/C + Σ_R v_r / C (the rewrite, pass
    ``reduce``, applies exactly this; RMSNorm's mean of x² is the common case). LIVE channels are
    required; amax over the channel dim requires every channel.
    """

    kind = "reduce"
    compensable = (aten.mean.dim, aten.sum.dim_IntList)

    def dims(self, n):
        p = bind(n)
        d = p.get("dim")
        nd = _nd(n.args[0])
        if d is None or (isinstance(d, (list, tuple)) and len(d) == 0):
            return list(range(nd)), bool(p.get("keepdim", False))
        d = [d] if isinstance(d, int) else list(d)
        return [int(x) % nd for x in d], bool(p.get("keepdim", False))

    def over_channels(self, cx, n) -> bool:
        ax = cx.axis_of(self.src(n))
        return ax is not None and ax in self.dims(n)[0]

    def out_axis(self, cx, n, ax):
        dims, keep = self.dims(n)
        if ax in dims:
            return None
        return ax if keep else ax - sum(1 for d in dims if d < ax)

    def fmap(self, cx, n, v):
        if n.target in (aten.sum.dim_IntList,):
            dims, _ = self.dims(n)
            count = prod_static(shape(n.args[0])[d] for d in dims)
            return None if count is None else v * count
        return v

    def require(self, cx, n, kept):
        x = self.src(n)
        if self.over_channels(cx, n) and n.target in self.compensable \
                and all(static_int(shape(x)[d]) is not None for d in self.dims(n)[0]):
            cin, _ = cx.const_of(x)
            cx.need(x, ~cin, n)
            return
        if self.over_channels(cx, n):
            cx.barrier(n, "reduces over the channel dimension")
        cx.need(x, kept, n)

    def rewrite(self, ctx, n) -> bool:
        plan, gm = ctx.plan, ctx.gm
        x = n.args[0]
        if plan.tracked(n.name) or not plan.tracked(x.name) or not plan.shrinks(x):
            return False
        ax = plan.axis[x.name]
        dims, _ = self.dims(n)
        if ax not in dims:
            return False
        rem = plan.removed(x)
        cm, cv = plan.const_mask[x.name][rem], plan.const_val[x.name][rem]
        if not cm.all():
            raise AssertionError(f"internal: LIVE channel removed from the input of {n.name}")
        C, K = plan.size[x.name], len(plan.kept(x))
        per_channel = math.prod(int(shape(x)[d]) for d in dims if d != ax)
        if n.target is aten.mean.dim:
            scale, shift = K / C, float(cv.sum()) / C
        else:
            scale, shift = 1.0, per_channel * float(cv.sum())
        users = list(n.users)
        out = n
        for op, c in ((aten.mul.Tensor, scale), (aten.add.Tensor, shift)):
            if c != (1.0 if op is aten.mul.Tensor else 0.0):
                with gm.graph.inserting_after(out):
                    out = gm.graph.call_function(op, (out, c))
                out.meta = dict(n.meta)
        for u in users:
            u.replace_input_with(n, out)
        return True


register_many(ReduceRule(), [aten.mean.dim, aten.sum.dim_IntList, aten.amax.default])

