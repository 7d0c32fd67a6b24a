"""Concatenation, split/chunk and the items of tuple-producing ops, and size queries.

Rewrites. cat on the channel dim: nothing changes (the inputs arrive already shrunk and the
offsets follow); on another dim (a class token prepended along the sequence) constant inputs
carry the channel dim too and are sliced to the kept channels. split/chunk on the channel dim:
section i keeps |K ∩ [o_i, o_i + s_i)| channels, so the op becomes ``split_with_sizes`` with
those counts (chunk's equal sizes may no longer hold).
"""
from __future__ import annotations

import operator

import numpy as np
import torch
import torch.fx as fx

from fxminimize.ir import bind, shape, static_int
from ..registry import register, register_many
from ..rule import Ignore, Rule
from .common import _nd

aten = torch.ops.aten


class CatRule(Rule):
    """torch.cat on the channel dim: input i's channel k is output channel offset_i + k.

    On another dim, every input must carry the same channels (coupled one to one); constant
    tensors among them (also ``expand`` of a constant: a class token broadcast over the batch)
    are sliced by the rewrite, and their channel c is CONST(v) when uniform over other dims.
    """

    kind = "concat"

    @staticmethod
    def const_input(cx, x):
        """The constant tensor behind input x (a get_attr, or expand of one), else None."""
        t = cx.tensor(x)
        if t is None and isinstance(x, fx.Node) and x.op == "call_function" and x.target is aten.expand.default \
                and cx.tensor(x.args[0]) is not None and cx.tensor(x.args[0]).dim() == _nd(x):
            t = cx.tensor(x.args[0])
        return t

    def dim(self, n):
        return int(bind(n).get("dim", 0)) % _nd(n)

    def inputs(self, n):
        return list(n.args[0])

    def axis(self, cx, n):
        d = self.dim(n)
        xs = self.inputs(n)
        axes = {cx.axis_of(x) for x in xs if cx.tensor(x) is None}
        if axes == {d}:
            return d
        axes = {cx.axis_of(x) for x in xs if self.const_input(cx, x) is None}
        if len(axes) == 1 and None not in axes:
            ax = axes.pop()
            if all(self.const_input(cx, x) is None or self.const_input(cx, x).shape[ax] == shape(n)[ax] for x in xs):
                return ax
        cx.hint(n, "concat inputs do not share a channel dim")
        return None

    def declare(self, cx, n, inp):
        if cx.tensor(inp) is not None:
            return None
        if self.const_input(cx, inp) is not None and any(
                cx.axis_of(x) is not None and cx.axis_of(x) != self.dim(n) for x in self.inputs(n)):
            return None  # a broadcast constant beside inputs tracked on another dim (class token)
        return self.dim(n)

    def offsets(self, cx, n):
        offs, o = [], 0
        for x in self.inputs(n):
            offs.append(o)
            o += static_int(shape(x)[self.dim(n)]) or 0
        return offs

    def couple(self, cx, n):
        if cx.axis_of(n) == self.dim(n):
            for x, o in zip(self.inputs(n), self.offsets(cx, n)):
                if cx.has_space(x):
                    k = np.arange(cx.size_of(x))
                    cx.couple(x, n, k, o + k, "concat")
        else:
            for x in self.inputs(n):
                cx.couple_identity(x, n, "concat")

    def value(self, cx, n):
        xs = self.inputs(n)
        if cx.axis_of(n) == self.dim(n):
            ms, vs = [], []
            for x in xs:
                if cx.has_space(x):
                    m, v = cx.const_of(x)
                else:
                    k = static_int(shape(x)[self.dim(n)])
                    m, v = np.zeros(k, bool), np.zeros(k)
                ms.append(m)
                vs.append(v)
            cx.set_value(n, np.concatenate(ms), np.concatenate(vs))
        else:
            C, ax = cx.size_of(n), cx.axis_of(n)
            vals = []
            for x in xs:
                t = self.const_input(cx, x)
                if cx.has_space(x):
                    vals.append(cx.const_of(x))
                elif t is not None:
                    tm = t.detach().double().movedim(ax, 0).reshape(C, -1)
                    vals.append(((tm == tm[:, :1]).all(1).numpy(), tm[:, 0].numpy()))
                else:
                    cx.set_value(n, np.zeros(C, bool), np.zeros(C))
                    return
            m = np.logical_and.reduce([mv[0] for mv in vals])
            v0 = vals[0][1]
            for _, v in vals[1:]:
                m &= v == v0
            cx.set_value(n, m, v0)

    def require(self, cx, n, kept):
        xs = self.inputs(n)
        if cx.axis_of(n) == self.dim(n) and cx.is_native(n):
            for x, o in zip(xs, self.offsets(cx, n)):
                k = static_int(shape(x)[self.dim(n)])
                if cx.has_space(x):
                    cx.need(x, kept[o:o + k], n)
                else:  # an untracked input (a constant) cannot shrink: its section stays
                    pin = np.zeros(cx.size_of(n), bool)
                    pin[o:o + k] = True
                    cx.need(n, pin, n)
        elif cx.is_native(n):
            for x in xs:
                cx.need(x, kept, n)
        else:
            Rule.require(self, cx, n, kept)

    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        if not plan.tracked(n.name) or not plan.shrinks(n):
            return False
        ax = plan.axis[n.name]
        if ax == self.dim(n):
            return False  # on the channel dim the (already shrunk) inputs need no change
        changed = False
        for x in list(n.args[0]):
            user, attr = n, x
            if getattr(x, "op", None) == "call_function" and getattr(x.args[0], "op", None) == "get_attr":
                user, attr = x, x.args[0]  # expand(constant): slice the constant, fix the size
                sizes = list(x.args[1])
                if isinstance(sizes[ax], int) and sizes[ax] != -1:
                    sizes[ax] = len(plan.kept(n))
                    x.args = (x.args[0], sizes) + tuple(x.args[2:])
            if getattr(attr, "op", None) == "get_attr":
                t = ctx.tensor(attr).detach()
                ctx.replace_const(user, attr, t.index_select(ax, ctx.index(plan.kept(n), t)))
                changed = True
        return changed


register(aten.cat.default)(CatRule)


class SplitRule(Rule):
    """split/chunk return a tuple; item i covers [offset_i, offset_i + size_i) of the dim.

    On the channel dim, item i's channel k is input channel offset_i + k; the rewrite passes
    the kept count of every section as the new split sizes. On another dim, items carry the
    input's channels one to one.
    """

    kind = "split"

    def sections(self, n):
        x = n.args[0]
        p = bind(n)
        d = int(p.get("dim", 0)) % _nd(x)
        L = static_int(shape(x)[d])
        if L is None:
            return d, None
        if n.target is aten.split_with_sizes.default:
            sizes = [static_int(s) for s in p["split_sizes"]]
        elif n.target is aten.chunk.default:
            k = int(p["chunks"])
            step = -(-L // k)
            sizes = [min(step, L - i) for i in range(0, L, step)]
        else:
            s = static_int(p["split_size"])
            sizes = [min(s, L - i) for i in range(0, L, s)] if s else None
        if sizes is None or any(v is None for v in sizes):
            return d, None
        offs = list(np.cumsum([0] + sizes[:-1]))
        return d, list(zip(offs, sizes))

    def item_axis(self, cx, n, idx):
        ax = cx.axis_of(n.args[0])
        if ax is None:
            return None
        d, sec = self.sections(n)
        if sec is None:
            cx.hint(n, "split sizes are not static")
            return None
        return ax

    def item_couple(self, cx, n, idx, item):
        x = n.args[0]
        d, sec = self.sections(n)
        if cx.axis_of(x) == d:
            o, s = sec[idx]
            k = np.arange(s)
            cx.couple(x, item, o + k, k, "split")
        else:
            cx.couple_identity(x, item, "split")

    def item_value(self, cx, n, idx, item):
        x = n.args[0]
        d, sec = self.sections(n)
        m, v = cx.const_of(x)
        if cx.axis_of(x) == d:
            o, s = sec[idx]
            cx.set_value(item, m[o:o + s], v[o:o + s])
        else:
            cx.set_value(item, m, v)

    def item_require(self, cx, n, idx, item, kept):
        x = n.args[0]
        d, sec = self.sections(n)
        if cx.axis_of(x) == d:
            o, s = sec[idx]
            need = np.zeros(cx.size_of(x), bool)
            need[o:o + s] = kept
            cx.need(x, need, item)
        else:
            cx.need(x, kept, item)

    def require(self, cx, n, kept):
        if cx.axis_of(n.args[0]) is None:
            return None
        d, sec = self.sections(n)
        if sec is None:
            Rule.require(self, cx, n, kept)

    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        x = n.args[0]
        if not plan.tracked(x.name) or not plan.shrinks(x):
            return False
        dim, sections = self.sections(n)
        if plan.axis[x.name] != dim:
            return False
        keep = plan.kept(x)
        sizes = [int(np.count_nonzero((keep >= o) & (keep < o + s))) for o, s in sections]
        n.target = aten.split_with_sizes.default
        n.args = (x, sizes, dim)
        n.kwargs = {}
        return True


register(aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default)(SplitRule)


class GetItemRule(Rule):
    """operator.getitem on a tuple-producing op delegates to that op's rule (item_*)."""

    kind = "getitem"

    def producer(self, cx, n):
        src = n.args[0]
        if isinstance(src, fx.Node) and src.op == "call_function":
            return src, cx.rule_of(src), int(n.args[1])
        return None, None, None

    def axis(self, cx, n):
        src, r, i = self.producer(cx, n)
        return None if r is None else r.item_axis(cx, src, i)

    def couple(self, cx, n):
        src, r, i = self.producer(cx, n)
        r.item_couple(cx, src, i, n)

    def value(self, cx, n):
        src, r, i = self.producer(cx, n)
        r.item_value(cx, src, i, n)

    def require(self, cx, n, kept):
        src, r, i = self.producer(cx, n)
        if r is None or not cx.is_native(n):
            if src is not None and cx.has_space(n):
                r.require(cx, src, None)
            return None
        r.item_require(cx, src, i, n, kept)


register(operator.getitem)(GetItemRule)


class SizeRule(Ignore):
    """x.size(d): reads no values; reading the channel dim's size pins the channel count."""

    kind = "size"

    def require(self, cx, n, kept):
        x = n.args[0]
        if len(n.args) > 1 and cx.axis_of(x) is not None and int(n.args[1]) % _nd(x) == cx.axis_of(x):
            cx.barrier(n, "reads the channel count at run time")
            cx.need(x, None, n)


register(aten.sym_size.int)(SizeRule)
register_many(Ignore(), [aten._assert_tensor_metadata.default])


