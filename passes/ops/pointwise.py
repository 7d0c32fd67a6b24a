"""Pointwise ops: unary elementwise maps, eval dropout, softmax on another dim, broadcasting
binary ops (residual adds, layer scale, gates) and their in-place forms.

Each class docstring states its math. The rewrite of a binary op slices its per-channel
constant operands: for y = x ∘ p with p a constant broadcast on the channel dim, y_c = x_c ∘ p_c,
so keeping channels K needs p[K] along the dim of p that aligns with y's channel dim (operands
of size 1 there broadcast and stay as they are).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx

from fxminimize.ir import bind, is_tensor, shape, static_int
from ..registry import register, register_many
from ..rule import Rule
from .common import _Channelwise, _nd
from .norm import gather_outputs

aten = torch.ops.aten


class UnaryRule(_Channelwise):
    """Elementwise f: CONST(v) ↦ CONST(f(v)); ZERO ↦ CONST(f(0)) (sigmoid(0) = 0.5, not 0).

    f(v) is evaluated by calling the very aten op of the node on the constants (float64), so
    every argument of the node (GELU's approximation, LeakyReLU's slope) is honoured.
    """

    kind = "elementwise"

    def op(self, n):
        """The functional op whose math this node has (in-place forms override it)."""
        return n.target

    def fmap(self, cx, n, v):
        t = torch.from_numpy(v.copy())
        args = (t,) + tuple(n.args[1:])
        try:
            out = self.op(n)(*args, **n.kwargs)
        except Exception:  # noqa: BLE001 - e.g. an op without float64 kernel
            try:
                out = self.op(n)(t.float(), *n.args[1:], **n.kwargs).double()
            except Exception:  # noqa: BLE001 - cannot evaluate on a vector: treat as LIVE
                return None
        if tuple(out.shape) != tuple(t.shape):
            return None
        return out.double().numpy()


UNARY_TARGETS = [
    aten.relu.default, aten.relu6.default, aten.hardtanh.default, aten.leaky_relu.default,
    aten.gelu.default, aten.silu.default, aten.sigmoid.default, aten.tanh.default,
    aten.hardswish.default, aten.hardsigmoid.default, aten.elu.default, aten.mish.default,
    aten.softplus.default, aten.clamp.default, aten.clamp_min.default, aten.clamp_max.default,
    aten.clone.default, aten.contiguous.default, aten.alias.default, aten.detach.default,
    aten.neg.default, aten.abs.default, aten.exp.default, aten.cos.default, aten.sin.default,
    aten.to.dtype, aten._to_copy.default, aten.square.default, aten.to.dtype_layout, aten.to.device,
    aten.pow.Tensor_Scalar, aten.rsqrt.default, aten.sqrt.default,
]
register_many(UnaryRule(), UNARY_TARGETS)


class DropoutRule(UnaryRule):
    """Dropout in eval mode is the identity; in training mode it is random (barrier)."""

    kind = "dropout"

    def axis(self, cx, n):
        if bind(n).get("train"):
            cx.hint(n, "dropout in training mode is random")
            return None
        return super().axis(cx, n)

    def fmap(self, cx, n, v):
        return v


register(aten.dropout.default)(DropoutRule)


@register(aten.type_as.default)
class TypeAsRule(UnaryRule):
    """x.type_as(other): a cast of x to other's dtype, channel by channel (other's values are not
    read, only its dtype). CONST(v) ↦ CONST(v rounded to that dtype)."""

    kind = "cast"

    def fmap(self, cx, n, v):
        dtype = n.meta["val"].dtype
        if not dtype.is_floating_point:
            return None
        return torch.from_numpy(v.copy()).to(dtype).double().numpy()



class SoftmaxRule(_Channelwise):
    """softmax along a non-channel dim acts channel by channel (values become LIVE)."""

    kind = "softmax"

    def out_axis(self, cx, n, ax):
        if int(n.args[1]) % _nd(n) == ax:
            cx.hint(n, "softmax over the channel dimension")
            return None
        return ax

    def fmap(self, cx, n, v):
        return None


register_many(SoftmaxRule(), [aten.softmax.int, aten._softmax.default, aten.log_softmax.int])



class BinaryRule(Rule):
    """Broadcasting elementwise a ∘ b (add, sub, mul, div; residual adds, layer scale, gates).

    Channel c of every tracked operand is coupled to channel c of the result (a residual stream
    channel goes only if it goes in every writer and reader). A constant-tensor operand that is
    full size on the channel dim is a per-channel parameter, sliced by the rewrite. Values:
    CONST ∘ CONST = CONST; for mul, CONST(0)·x = 0 (finite x).

    Scale-zero channels of a mul (:meth:`zero_scale`): y = x · p with p a constant whose slice
    on channel c is all zero gives y_c = 0 whatever x_c is (the γ of a hand-written LayerNorm
    ``w[:, None, None] * x̂ + b`` or RMSNorm ``w * x·rsqrt(mean x²)``, a zeroed layer scale).
    There output c and input c are *not* coupled: output c goes when its consumers fold the
    constant, input c stays while something else needs it (the norm's statistics). Kept outputs
    need their inputs (K_out ⊆ K_in); when K_out ≠ K_in the rewrite computes x_K_in · p_K_in and
    gathers K_out after it (:func:`~.norm.gather_outputs`).
    """

    kind = "binary"

    def op(self, n):
        """The functional op whose math this node has (in-place forms override it)."""
        return n.target

    def operands(self, n):
        return [x for x in n.args[:2]]

    def aligned(self, n, x, out_ax) -> Optional[int]:
        """Dim of operand x that broadcasts onto out dim ``out_ax`` (None: x has no such dim)."""
        k = out_ax - (_nd(n) - _nd(x))
        return k if k >= 0 else None

    def axis(self, cx, n):
        out_ax = None
        for x in self.operands(n):
            ax = cx.axis_of(x)
            if ax is not None:
                oa = ax + (_nd(n) - _nd(x))
                if out_ax is not None and oa != out_ax:
                    cx.hint(n, "operands have channels on different dims")
                    return None
                out_ax = oa
        if out_ax is None:
            return None
        C = shape(n)[out_ax]
        for x in self.operands(n):
            if isinstance(x, fx.Node) and is_tensor(x):
                k = self.aligned(n, x, out_ax)
                size = 1 if k is None else shape(x)[k]
                if cx.axis_of(x) is None and cx.tensor(x) is None and static_int(size) != 1:
                    cx.hint(n, "an untracked operand is full size on the channel dim")
                    return None
                if cx.axis_of(x) is not None and shape(x)[cx.axis_of(x)] != C:
                    return None
        return out_ax

    def zero_scale(self, cx, n):
        """(x, mask) for ``mul.Tensor`` of one tracked operand x by a constant tensor p that is
        full size on the channel dim, mask[c] = p's slice on channel c is all zero; else None.
        (Only the functional mul: an in-place form keeps its operands coupled.)"""
        if n.target is not aten.mul.Tensor:
            return None
        xs = [x for x in self.operands(n) if isinstance(x, fx.Node) and cx.axis_of(x) is not None]
        ps = [x for x in self.operands(n) if isinstance(x, fx.Node) and cx.axis_of(x) is None]
        if len(xs) != 1 or len(ps) != 1 or cx.tensor(ps[0]) is None:
            return None
        out_ax, C = cx.axis_of(n), cx.size_of(n)
        k = self.aligned(n, ps[0], out_ax)
        t = cx.tensor(ps[0])
        if k is None or t.shape[k] != C or C == 1 or shape(xs[0])[cx.axis_of(xs[0])] != C:
            return None

        def mask():
            flat = t.detach().movedim(k, 0).reshape(C, -1)
            return ~(flat != 0).any(1).cpu().numpy()
        z = cx.memo(("zero_scale", n), mask)
        return (xs[0], z) if z.any() else None

    def couple(self, cx, n):
        zs = self.zero_scale(cx, n)
        if zs is not None:  # scale-zero outputs are their own units (class docstring)
            idx = np.nonzero(~zs[1])[0]
            cx.couple(zs[0], n, idx, idx, self.kind)
            return
        for x in self.operands(n):
            if cx.axis_of(x) is not None:
                cx.couple_identity(x, n, "residual" if self.op(n) in (aten.add.Tensor, aten.sub.Tensor) else self.kind)

    def operand_value(self, cx, n, x, C):
        ax = cx.axis_of(n)
        if isinstance(x, (int, float, bool)):
            return np.ones(C, bool), np.full(C, float(x))
        if cx.axis_of(x) is not None:
            return cx.const_of(x)
        t = cx.tensor(x)
        if t is None:
            return np.zeros(C, bool), np.zeros(C)
        k = self.aligned(n, x, ax)
        t = t.detach().to(device="cpu", dtype=torch.float64)
        if k is None:
            flat = t.reshape(-1)
            if flat.numel() and bool((flat == flat[0]).all()):
                return np.ones(C, bool), np.full(C, float(flat[0]))
            return np.zeros(C, bool), np.zeros(C)
        tm = t.movedim(k, 0).reshape(t.shape[k], -1)
        uniform = (tm == tm[:, :1]).all(1) if tm.shape[1] else torch.ones(tm.shape[0], dtype=torch.bool)
        vals = tm[:, 0] if tm.shape[1] else torch.zeros(tm.shape[0], dtype=torch.float64)
        if tm.shape[0] == 1:
            return np.full(C, bool(uniform[0])), np.full(C, float(vals[0]))
        return uniform.numpy(), vals.numpy()

    def value(self, cx, n):
        C = cx.size_of(n)
        vs = [self.operand_value(cx, n, x, C) for x in self.operands(n)]
        m = np.logical_and.reduce([v[0] for v in vs])
        args = [torch.from_numpy(np.asarray(v[1], dtype=np.float64)) for v in vs]
        try:
            val = self.op(n)(*args, *n.args[2:], **n.kwargs).double().numpy()
        except Exception:  # noqa: BLE001
            val = np.zeros(C)
            m = np.zeros(C, bool)
        if self.op(n) in (aten.mul.Tensor,):
            zero = np.logical_or.reduce([v[0] & (v[1] == 0) for v in vs])
            m = m | zero
            val = np.where(zero, 0.0, val)
        cx.set_value(n, m, val)

    def require(self, cx, n, kept):
        for x in self.operands(n):
            cx.need(x, kept, n)

    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        # a source space (the rule declined: e.g. x·(1 + s) with x a model input) is shrunk by
        # the gather after it, which reads the whole op: its constants stay whole
        if not plan.tracked(n.name) or not plan.native[n.name] or not plan.shrinks(n):
            return False
        out_ax, nd, C = plan.axis[n.name], len(n.meta["val"].shape), plan.size[n.name]
        # a decoupled scale-zero mul (class docstring) computes on its input's kept channels
        src = [x for x in n.args[:2] if isinstance(x, fx.Node) and plan.tracked(x.name)
               and plan.size[x.name] == C]
        keep = plan.kept(src[0]) if n.target is aten.mul.Tensor and len(src) == 1 else plan.kept(n)
        changed = False
        for x in list(n.args[:2]):
            if getattr(x, "op", None) != "get_attr":
                continue
            t = ctx.tensor(x).detach()
            k = out_ax - (nd - t.dim())
            if k < 0 or t.shape[k] != C or C == 1:
                continue
            ctx.replace_const(n, x, t.index_select(k, ctx.index(keep, t)))
            changed = True
        if not np.array_equal(keep, plan.kept(n)):
            gather_outputs(ctx, n, out_ax, keep, plan.kept(n))
            changed = True
        return changed


register_many(BinaryRule(), [aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor,
                             aten.add.Scalar, aten.sub.Scalar, aten.mul.Scalar, aten.div.Scalar,
                             aten.rsub.Scalar, aten.maximum.default, aten.minimum.default])




class _InPlace:
    """In-place ``x.op_(...)``: the node's value is the new x. It behaves like the functional op
    as long as nothing reads x again after the mutation (otherwise that read would see the
    mutated value under the old node's name): then it is a barrier."""

    def op(self, n):
        return _FUNCTIONAL[n.target]

    def axis(self, cx, n):
        x = n.args[0]
        if any(cx.is_after(u, n) for u in x.users if u is not n):
            cx.hint(n, "in-place op whose input is read again afterwards")
            return None
        return super().axis(cx, n)



class InPlaceBinaryRule(_InPlace, BinaryRule):
    pass


class InPlaceUnaryRule(_InPlace, UnaryRule):
    pass


class InPlaceDropoutRule(_InPlace, DropoutRule):
    """``dropout_(x, p, train=False)`` (torchvision's EfficientNet, MNASNet, MobileNetV3 in eval):
    the identity, as long as x is not read again afterwards."""


_FUNCTIONAL = {aten.add_.Tensor: aten.add.Tensor, aten.mul_.Tensor: aten.mul.Tensor,
               aten.sub_.Tensor: aten.sub.Tensor, aten.div_.Tensor: aten.div.Tensor,
               aten.relu_.default: aten.relu.default, aten.hardtanh_.default: aten.hardtanh.default,
               aten.silu_.default: aten.silu.default, aten.sigmoid_.default: aten.sigmoid.default,
               aten.leaky_relu_.default: aten.leaky_relu.default, aten.hardswish_.default: aten.hardswish.default,
               aten.dropout_.default: aten.dropout.default}
register_many(InPlaceDropoutRule(), [aten.dropout_.default])
register_many(InPlaceBinaryRule(), [aten.add_.Tensor, aten.mul_.Tensor, aten.sub_.Tensor, aten.div_.Tensor])
register_many(InPlaceUnaryRule(), [aten.relu_.default, aten.hardtanh_.default, aten.silu_.default,
                                   aten.sigmoid_.default, aten.leaky_relu_.default, aten.hardswish_.default])
