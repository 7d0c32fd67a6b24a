"""Layout ops: permute/transpose (the channel dim moves), squeeze/unsqueeze, view/reshape/
flatten/unflatten (block index maps), and slice/select on a non-channel dim.

Rewrite of view/reshape/unflatten: the analysis matched the tracked dim to output dim b (merge
or split); the kept elements along b are exactly the output's kept channels, so the new size
of dim b is their count. A ``-1`` stays ``-1``; flatten needs no change.
"""
from __future__ import annotations

import numpy as np
import torch

from fxminimize.ir import prod_static, shape, static_int
from ..registry import register, register_many
from ..rule import Rule
from .common import _Channelwise, _nd

aten = torch.ops.aten


class PermuteRule(_Channelwise):
    """permute/transpose rename dimensions: the channel moves to its new position."""

    kind = "permute"

    def out_axis(self, cx, n, ax):
        nd = _nd(n)
        if n.target is aten.permute.default:
            dims = [int(d) % nd for d in n.args[1]]
            return dims.index(ax)
        if n.target is aten.t.default:
            return 1 - ax if nd == 2 else ax
        d0, d1 = int(n.args[1]) % nd, int(n.args[2]) % nd
        return d1 if ax == d0 else d0 if ax == d1 else ax


register_many(PermuteRule(), [aten.permute.default, aten.transpose.int, aten.t.default, aten.swapaxes.default])


class SqueezeRule(_Channelwise):
    """unsqueeze/squeeze insert or drop size-1 dims; the channel dim shifts accordingly."""

    kind = "squeeze"

    def out_axis(self, cx, n, ax):
        x = n.args[0]
        if n.target is aten.unsqueeze.default:
            d = int(n.args[1]) % _nd(n)
            return ax + 1 if d <= ax else ax
        dims = n.args[1] if len(n.args) > 1 else [i for i, s in enumerate(shape(x)) if s == 1]
        dims = [dims] if isinstance(dims, int) else list(dims)
        dims = [int(d) % _nd(x) for d in dims if shape(x)[int(d) % _nd(x)] == 1]
        if ax in dims:
            return None
        return ax - sum(1 for d in dims if d < ax)


register_many(SqueezeRule(), [aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default])


def _size_expr(dims):
    """The product of sizes: an int when all are static, else a sympy expression (spatial or
    sequence dims kept symbolic by the capture)."""
    p = prod_static(dims)
    if p is not None:
        return p
    import sympy
    out = sympy.Integer(1)
    for d in dims:
        v = static_int(d)
        out = out * (sympy.Integer(v) if v is not None else d.node.expr)
    return out


def _ratio(a, b):
    """a / b when it is a positive integer whatever the symbolic sizes are (H·W / (H·W) = 1,
    4·H·W / (H·W) = 4), else None."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b if b and a % b == 0 else None
    import sympy
    r = sympy.cancel(sympy.sympify(a) / sympy.sympify(b))
    return int(r) if getattr(r, "is_Integer", False) and int(r) > 0 else None


class ReshapeRule(Rule):
    """view/reshape/flatten/unflatten: a block index map between a big and a small dim.

    Row-major reshape maps flat offsets identically, so if the tracked input dim a (size C)
    ends up inside output dim b with ``inner`` elements of faster dims after it, output index f
    on b belongs to input channel (f // inner) mod C (merge, e.g. C×H×W → features); if the
    input dim is split into output dims, output channel c on b owns input features
    {f : (f // inner) mod C = c} (split, e.g. features → C×H×W, hidden → heads × head_dim,
    where the outermost factor is tracked and whole heads go together). Each output index is
    coupled with its channel, so channels leave with all their features. The rewrite only
    changes the size argument of dim b.
    """

    kind = "reshape"

    def out_shape_arg(self, n):
        t = n.target
        if t in (aten.view.default, aten.reshape.default, aten._unsafe_view.default):
            return 1
        return None

    def match(self, cx, n):
        return cx.memo(("reshape", n), lambda: self._match(cx, n))

    def _match(self, cx, n):
        x = n.args[0]
        ax = cx.axis_of(x)
        if ax is None:
            return None
        si, so = shape(x), shape(n)
        C = static_int(si[ax])
        tail_in = _size_expr(si[ax + 1:])
        if C is None:
            return None
        idx = self.out_shape_arg(n)
        for b in range(len(so)):
            tail_out = _size_expr(so[b + 1:])
            sb = static_int(so[b])
            if sb is None or tail_out == 0:
                continue
            merge, split = _ratio(tail_in, tail_out), _ratio(tail_out, tail_in)
            if merge is not None:
                inner = merge
                if sb % (C * inner) == 0:
                    res = ("merge", b, inner, C, sb)
                else:
                    continue
            elif split is not None:
                inner = split
                if sb == 1 and C > 1:
                    continue  # a size-1 dim carries no channels
                if C % (sb * inner) == 0:
                    res = ("split", b, inner, sb, C)
                else:
                    continue
            else:
                continue
            if idx is not None:
                arg = n.args[idx][b]
                if not (isinstance(arg, int)):
                    cx.hint(n, "the channel size is computed at run time")
                    return None
            return res
        cx.hint(n, "reshape mixes the channel dim with other dims")
        return None

    def axis(self, cx, n):
        m = self.match(cx, n)
        return None if m is None else m[1]

    def couple(self, cx, n):
        mode, b, inner, small, big = self.match(cx, n)
        f = np.arange(big)
        ch = (f // inner) % small
        if mode == "merge":
            cx.couple(n.args[0], n, ch, f, "reshape")
        else:
            cx.couple(n.args[0], n, f, ch, "reshape")

    def value(self, cx, n):
        mode, b, inner, small, big = self.match(cx, n)
        m, v = cx.const_of(n.args[0])
        ch = (np.arange(big) // inner) % small
        if mode == "merge":
            cx.set_value(n, m[ch], v[ch])
        else:
            order = np.argsort(ch, kind="stable")
            mm = m[order].reshape(small, -1)
            vv = v[order].reshape(small, -1)
            om = mm.all(1) & (vv == vv[:, :1]).all(1)
            cx.set_value(n, om, vv[:, 0])

    def require(self, cx, n, kept):
        m = self.match(cx, n)
        if m is None:
            return Rule.require(self, cx, n, kept)
        mode, b, inner, small, big = m
        ch = (np.arange(big) // inner) % small
        if mode == "merge":
            need = np.zeros(small, bool)
            need[ch[kept]] = True
            cx.need(n.args[0], need, n)
        else:
            cx.need(n.args[0], kept[ch], n)

    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        if not plan.tracked(n.name) or not plan.shrinks(n):
            return False
        b, new = plan.axis[n.name], len(plan.kept(n))
        if n.target in (aten.view.default, aten.reshape.default, aten._unsafe_view.default):
            sizes = list(n.args[1])
            if sizes[b] != -1:
                sizes[b] = new
                n.args = (n.args[0], sizes) + tuple(n.args[2:])
                return True
        elif n.target is aten.unflatten.int:
            dim = int(n.args[1]) % len(n.args[0].meta["val"].shape)
            sizes = list(n.args[2])
            if dim <= b < dim + len(sizes) and sizes[b - dim] != -1:
                sizes[b - dim] = new
                n.args = (n.args[0], n.args[1], sizes)
                return True
        return False


register_many(ReshapeRule(), [aten.view.default, aten.reshape.default, aten._unsafe_view.default,
                              aten.flatten.using_ints, aten.unflatten.int])



class SliceRule(Rule):
    """x[..., a:b:s] on a dim that is not the channel dim keeps channels one to one (sequence
    slicing before an LM head, cls-token selection). Slicing the channel dim itself is a
    barrier: the rewrite would have to renumber the slice bounds."""

    kind = "slice"
    what = "slices"

    def out_axis(self, ax: int, d: int) -> int:
        return ax

    def axis(self, cx, n):
        x = n.args[0]
        ax = cx.axis_of(x)
        if ax is None:
            return None
        d = int(n.args[1]) % len(x.meta["val"].shape) if len(n.args) > 1 else 0
        if d == ax:
            cx.hint(n, f"{self.what} the channel dimension")
            return None
        return self.out_axis(ax, d)

    def couple(self, cx, n):
        cx.couple_identity(n.args[0], n, "slice")

    def value(self, cx, n):
        m, v = cx.const_of(n.args[0])
        cx.set_value(n, m, v)

    def require(self, cx, n, kept):
        cx.need(n.args[0], kept, n)


register(aten.slice.Tensor)(SliceRule)


class SelectRule(SliceRule):
    """x.select(d, i) on a non-channel dim: the channel dim shifts down when d < channel dim."""

    kind = "select"
    what = "selects along"

    def out_axis(self, ax: int, d: int) -> int:
        return ax - 1 if d < ax else ax


register(aten.select.int)(SelectRule)


@register(aten.roll.default)
class RollRule(_Channelwise):
    """roll(x, shifts, dims) over dims that are not the channel dim (Swin's shifted windows).

    y[..., i, ...] = x[..., (i − s) mod L, ...] along each rolled dim: channel c of y is a
    permutation of channel c of x, so the channel dim is unchanged and CONST(v) stays CONST(v)
    (a slice equal to v everywhere is still v everywhere after a permutation). Rolling the
    channel dim itself (or the flattened tensor, ``dims=[]``) would renumber channels: declined.
    """

    kind = "roll"

    def out_axis(self, cx, n, ax):
        dims = n.args[2] if len(n.args) > 2 else []
        dims = [dims] if isinstance(dims, int) else list(dims)
        if not dims or ax in [int(d) % _nd(n) for d in dims]:
            cx.hint(n, "roll over the channel dimension")
            return None
        return ax


class ResampleRule(_Channelwise):
    """upsample_*/interpolate: each output position is a convex combination (nearest: a copy) of
    input positions of the same channel over the trailing spatial dims, so channels map one to
    one and CONST(v) stays CONST(v) (a combination of equal values with weights summing to 1)."""

    kind = "resample"
    spatial = 2

    def out_axis(self, cx, n, ax):
        if ax >= _nd(n) - self.spatial:
            cx.hint(n, "resampling along the channel dimension")
            return None
        return ax


register_many(ResampleRule(), [aten.upsample_nearest2d.vec, aten.upsample_bilinear2d.vec,
                               aten.upsample_nearest2d.default, aten.upsample_bilinear2d.default])


@register(aten.pad.default, aten.constant_pad_nd.default)
class PadRule(_Channelwise):
    """pad(x, [l_last, r_last, l_prev, r_prev, ...], mode, value) on dims that are not the channel
    dim: channels map one to one. CONST(v) stays CONST(v) under reflect/replicate/circular padding
    and under constant padding with value v; otherwise the padded border differs (LIVE)."""

    kind = "pad"

    def padded_dims(self, n):
        pads = list(n.args[1])
        return [_nd(n) - 1 - i for i in range(len(pads) // 2) if pads[2 * i] or pads[2 * i + 1]]

    def out_axis(self, cx, n, ax):
        if ax in self.padded_dims(n):
            cx.hint(n, "pads the channel dimension")
            return None
        return ax

    def fmap(self, cx, n, v):
        if n.target is aten.constant_pad_nd.default:
            mode, value = "constant", (n.args[2] if len(n.args) > 2 else 0.0)
        else:
            mode = n.args[2] if len(n.args) > 2 else n.kwargs.get("mode", "constant")
            value = n.args[3] if len(n.args) > 3 else n.kwargs.get("value", None)
            value = 0.0 if value is None else value
        if mode != "constant" or not self.padded_dims(n):
            return v
        return None if np.any(v != float(value)) else v


@register(aten.reshape_as.default)
class ReshapeAsRule(ReshapeRule):
    """x.reshape_as(other) (LeViT's BatchNorm on flattened tokens): a reshape to other's shape,
    read at run time. It is exact after channels leave only if other loses the same channels on
    the same dim, so the output's channel is coupled one to one with other's; if other is not
    tracked on that dim, the rule declines."""

    kind = "reshape"

    def match(self, cx, n):
        m = super().match(cx, n)
        if m is None:
            return None
        other = n.args[1]
        if cx.axis_of(other) != m[1] or shape(other)[m[1]] != shape(n)[m[1]]:
            cx.hint(n, "reshape_as a tensor whose channels are not the output's")
            return None
        return m

    def couple(self, cx, n):
        super().couple(cx, n)
        cx.couple_identity(n.args[1], n, "reshape")
