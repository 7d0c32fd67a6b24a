"""Built-in op rules. Each class docstring states the mathematics the rule relies on.

Notation: x is the input, y the output, c a channel index on the tracked dimension, CONST(v)
an element whose slice is input-independent and equal to v everywhere, LIVE anything else.
"""
from __future__ import annotations

import operator
from typing import Optional

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..compensated import COMPENSATED_LAYER_NORM, compensated_layer_norm
from ..ir import bind, fake, is_tensor, prod_static, shape, static_int, tensor_inputs
from . import register, register_many
from .base import Barrier, Ignore, Rule

aten = torch.ops.aten


def _nd(n) -> int:
    return len(shape(n))


def _nonzero(t: torch.Tensor) -> np.ndarray:
    """t != 0 as a numpy bool array (numpy's compare is much faster than torch's on one thread)."""
    if t.dtype in (torch.float32, torch.float64, torch.float16):
        return t.numpy() != 0
    return (t != 0).numpy()


# --------------------------------------------------------------------------- contractions
class _Contraction(Rule):
    """Shared math of Linear and convolution: y_j = b_j + Σ_i W_ji ⊛ x_i.

    Value: y_j is CONST iff W_ji = 0 for every LIVE input i; then
    v_j = b_j + Σ_{i CONST} v_i · ΣW_ji (ΣW_ji sums W_ji over the kernel window). For a padded
    convolution that sum is only uniform if v_i = 0 or W_ji = 0, otherwise y_j is LIVE.
    Use: input i is required iff some kept output j reads it (W_ji ≠ 0) and i is LIVE, or i is
    CONST(v≠0) under zero padding. Other removed CONST inputs fold exactly into the bias:
    b'_j = b_j + Σ_{i removed} v_i · ΣW_ji.
    """

    in_axis = 1
    #: an empty layer is not a valid conv and zero-size tensors are fragile downstream, so the
    #: analysis keeps one channel of a layer that would otherwise lose all of them
    keeps_one = True

    def params(self, n):  # -> (x, weight_node, bias_node)
        raise NotImplementedError

    def ok(self, a, n) -> bool:
        x, w, b = self.params(n)
        if a.tensor(w) is None or (b is not None and a.tensor(b) is None):
            a.hint_barrier(n, "weight or bias is not a constant tensor")
            return False
        return True

    def x_axis(self, n) -> int:
        return self.in_axis

    def matrices(self, a, n):
        """(NZ, bias, padded): the (O, C_in) nonzero pattern (bool), kept for the analysis.

        Only the pattern is cached, in numpy (the fixpoint reads it many times; torch's per-op
        overhead dominates on small matrices). The kernel sums ΣW_ji needed to fold constants
        are computed on demand for the CONST columns only (:meth:`kernel_sums`), so the
        analysis holds no float copy of the weights.
        """
        key = ("mat", n)
        if key not in a.cache:
            nz, bias, padded = self.build(a, n)
            a.cache[key] = (nz if isinstance(nz, np.ndarray) else nz.numpy(),
                            None if bias is None else bias.numpy(), padded)
        return a.cache[key]

    def kernel_sums(self, a, n, cols: np.ndarray) -> np.ndarray:
        """(O, len(cols)) float64: Σ over the kernel window of W[:, c] for input columns c."""
        raise NotImplementedError

    def x_tracked(self, a, n) -> bool:
        x = self.params(n)[0]
        return a.axis_of(x) == self.x_axis(n) % _nd(x)

    def axis(self, a, n):
        return self.in_axis % _nd(n) if self.ok(a, n) else None

    def declare(self, a, n, inp):
        if inp is self.params(n)[0] and self.ok(a, n):
            return self.x_axis(n) % _nd(inp)
        return None

    def value(self, a, n):
        x = self.params(n)[0]
        nz, bias, padded = self.matrices(a, n)
        O = nz.shape[0]
        if not self.x_tracked(a, n):
            a.set_value(n, np.zeros(O, bool), np.zeros(O))
            return
        cin, vin = a.const_of(x)
        const = ~(nz[:, ~cin] if cin.any() else nz).any(1)
        if padded:
            const &= ~nz[:, cin & (vin != 0)].any(1)
        cols = np.nonzero(cin)[0]
        val = self.kernel_sums(a, n, cols) @ vin[cols] if len(cols) else np.zeros(O)
        if bias is not None:
            val = val + bias
        a.set_value(n, const, val)

    def weight_axes(self, a, n):
        if not self.ok(a, n) or (getattr(self, "groups", None) and self.groups(n) != 1):
            return []
        x, w, _ = self.params(n)
        out_dim, in_dim = (1, 0) if getattr(self, "transposed", False) else (0, 1)
        return [(w, out_dim, n if n in a.off else None),
                (w, in_dim, x if self.x_tracked(a, n) and x in a.off else None)]

    def require(self, a, n, kept):
        if not self.ok(a, n):
            return Rule.require(self, a, n, kept)
        x = self.params(n)[0]
        if not self.x_tracked(a, n):
            a.need(x, None, n)
            return
        nz, _, padded = self.matrices(a, n)
        read = (nz[kept] if kept is not None else nz).any(0)
        cin, vin = a.const_of(x)
        needed = ~cin
        if padded:
            needed = needed | (vin != 0)
        a.need(x, read & needed, n)


class LinearRule(_Contraction):
    """Linear: y = x Wᵀ + b, channels on the last dim of x and y (see _Contraction)."""

    kind = "linear"
    in_axis = -1

    def params(self, n):
        p = bind(n)
        return p["input"], p["weight"], p["bias"]

    def build(self, a, n):
        _, w, b = self.params(n)
        bias = a.tensor(b).detach().double() if b is not None else None
        return _nonzero(a.tensor(w).detach()), bias, False

    def kernel_sums(self, a, n, cols):
        return a.tensor(self.params(n)[1]).detach()[:, torch.from_numpy(cols)].double().numpy()


register(nn.Linear, F.linear, torch._C._nn.linear, aten.linear.default)(LinearRule)


class ConvRule(_Contraction):
    """Convolution (1d/2d/3d, stride, dilation, padding, groups) with channels on dim 1.

    Groups: with g > 1, all input and output channels of one group form one unit, so groups
    are removed whole and the grouped structure (equal group sizes) survives; depthwise is
    g = C_in, where a unit is input channel i with its output channels.
    """

    kind = "conv"
    in_axis = 1

    def params(self, n):
        p = bind(n)
        return p["input"], p["weight"], p["bias"]

    def ok(self, a, n):
        if not super().ok(a, n):
            return False
        if "transposed" in bind(n) and bind(n)["transposed"]:
            a.hint_barrier(n, "transposed convolution has no rule yet")
            return False
        return True

    def groups(self, n) -> int:
        return int(bind(n).get("groups") or 1)

    def padded(self, a, n) -> bool:
        p = bind(n)
        pad = p.get("padding", 0)
        w = a.tensor(self.params(n)[1])
        if isinstance(pad, str):
            return pad == "same" and any(k > 1 for k in w.shape[2:])
        pad = [pad] if isinstance(pad, int) else list(pad)
        return any(int(v) != 0 for v in pad)

    def build(self, a, n):
        x, w, b = self.params(n)
        W = a.tensor(w).detach()
        g = self.groups(n)
        O, Ig = W.shape[0], W.shape[1]
        nz_l = _nonzero(W).reshape(O, Ig, -1).any(2)
        if g == 1:
            nz = nz_l
        else:
            Og = O // g
            rows = np.broadcast_to(np.arange(O)[:, None], (O, Ig))
            cols = (np.arange(O) // Og)[:, None] * Ig + np.arange(Ig)[None, :]
            nz = np.zeros((O, Ig * g), dtype=bool)
            nz[rows, cols] = nz_l
        bias = a.tensor(b).detach().double() if b is not None else None
        return nz, bias, self.padded(a, n)

    def kernel_sums(self, a, n, cols):
        W = a.tensor(self.params(n)[1]).detach()
        spatial = tuple(range(2, W.dim()))
        g = self.groups(n)
        O, Ig = W.shape[0], W.shape[1]
        if g == 1:
            Wc = W[:, torch.from_numpy(cols)].double()
            return (Wc.sum(dim=spatial) if spatial else Wc).numpy()
        Og = O // g
        out = np.zeros((O, len(cols)))
        for j, c in enumerate(cols):  # column c lives in group c // Ig, local input c % Ig
            k, i = divmod(int(c), Ig)
            blk = W[k * Og:(k + 1) * Og, i].double()
            out[k * Og:(k + 1) * Og, j] = (blk.sum(dim=tuple(range(1, blk.dim()))) if blk.dim() > 1 else blk).numpy()
        return out

    def couple(self, a, n):
        g = self.groups(n)
        x = self.params(n)[0]
        if g == 1 or not self.x_tracked(a, n):
            return
        O, Cin = a.size[n], a.size[x]
        Og, Ig = O // g, Cin // g
        # chain every channel of group k (inputs then outputs) to the group's first input
        ox = np.arange(Cin)
        a.couple(x, x, (ox // Ig) * Ig, ox, "group")
        oy = np.arange(O)
        a.couple(x, n, (oy // Og) * Ig, oy, "group")

    def require(self, a, n, kept):
        super().require(a, n, kept)
        if self.ok(a, n) and self.groups(n) > 1 and not self.x_tracked(a, n):
            a.need(n, None, n)  # cannot drop whole groups of an untracked input


register(nn.Conv1d, nn.Conv2d, nn.Conv3d, F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d,
         aten.conv1d.default, aten.conv2d.default, aten.conv3d.default, aten.conv1d.padding,
         aten.conv2d.padding, aten.conv3d.padding, aten.convolution.default)(ConvRule)


# --------------------------------------------------------------------------- per-channel maps
class _Channelwise(Rule):
    """Ops mapping channel c of x to channel c of y (same dim), coupling them one to one."""

    def src(self, n) -> fx.Node:
        return n.args[0]

    def out_axis(self, a, n, ax: int) -> Optional[int]:
        return ax

    def axis(self, a, n):
        ax = a.axis_of(self.src(n))
        return None if ax is None else self.out_axis(a, n, ax)

    def couple(self, a, n):
        a.couple_identity(self.src(n), n, self.kind)

    def fmap(self, a, n, v: np.ndarray) -> Optional[np.ndarray]:
        """Image of CONST(v) under the op (None: the result is not uniform, so LIVE)."""
        return v

    def value(self, a, n):
        m, v = a.const_of(self.src(n))
        out = self.fmap(a, n, v) if m.any() else v
        if out is None:
            m = np.zeros_like(m)
            out = v
        a.set_value(n, m, out)

    def require(self, a, n, kept):
        a.need(self.src(n), kept, n)


class UnaryRule(_Channelwise):
    """Elementwise f: CONST(v) ↦ CONST(f(v)); ZERO ↦ CONST(f(0)) (sigmoid(0) = 0.5, not 0).

    f(v) is evaluated by calling the very aten op of the node on the constants (float64), so
    every argument of the node (GELU's approximation, LeakyReLU's slope) is honoured.
    """

    kind = "elementwise"

    def fmap(self, a, n, v):
        t = torch.from_numpy(v.copy())
        args = (t,) + tuple(n.args[1:])
        try:
            out = n.target(*args, **n.kwargs)
        except Exception:  # noqa: BLE001 - e.g. an op without float64 kernel
            try:
                out = n.target(t.float(), *n.args[1:], **n.kwargs).double()
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
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Identity, F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.hardswish,
    F.hardsigmoid, torch.relu, torch.sigmoid, torch.tanh,
]
register_many(UnaryRule(), UNARY_TARGETS)


class DropoutRule(UnaryRule):
    """Dropout in eval mode is the identity; in training mode it is random (barrier)."""

    kind = "dropout"

    def axis(self, a, n):
        if bind(n).get("train"):
            a.hint_barrier(n, "dropout in training mode is random")
            return None
        return super().axis(a, n)

    def fmap(self, a, n, v):
        return v


register(nn.Dropout, F.dropout, aten.dropout.default)(DropoutRule)


class BatchNormRule(_Channelwise):
    """Eval BatchNorm is per-channel affine: y_c = (x_c − μ_c)/√(σ²_c + ε)·γ_c + β_c.

    CONST(v) ↦ CONST((v − μ)/√(σ²+ε)·γ + β); ZERO ↦ CONST(β − γμ/√(σ²+ε)).
    The rewrite slices γ, β, μ, σ² to the kept channels.
    """

    kind = "batchnorm"

    def params(self, n):
        p = bind(n)
        return p["input"], p["weight"], p["bias"], p["running_mean"], p["running_var"], p

    def ok(self, a, n):
        x, w, b, m, v, p = self.params(n)
        if p.get("training", False):
            a.hint_barrier(n, "BatchNorm in training mode")
            return False
        if m is None or v is None or any(t is not None and a.tensor(t) is None for t in (w, b, m, v)):
            a.hint_barrier(n, "BatchNorm statistics are not constant tensors")
            return False
        return True

    def axis(self, a, n):
        if not self.ok(a, n):
            return None
        return 1 if a.axis_of(self.src(n)) == 1 else None

    def declare(self, a, n, inp):
        return 1 if inp is self.src(n) and self.ok(a, n) else None

    def fmap(self, a, n, v):
        x, w, b, m, var, p = self.params(n)
        eps = float(p["eps"])
        mean = a.tensor(m).double().numpy()
        rstd = 1.0 / np.sqrt(a.tensor(var).double().numpy() + eps)
        g = a.tensor(w).double().numpy() if w is not None else 1.0
        bb = a.tensor(b).double().numpy() if b is not None else 0.0
        return (v - mean) * rstd * g + bb


register(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, F.batch_norm, aten.batch_norm.default)(BatchNormRule)


class NoTrainingBatchNormRule(BatchNormRule):
    """aten._native_batch_norm_legit_no_training returns (y, mean, rstd); item 0 is y."""

    def params(self, n):
        x, w, b, m, v, mom, eps = (list(n.args) + [None] * 7)[:7]
        return x, w, b, m, v, {"eps": eps if eps is not None else 1e-5, "training": False}

    def axis(self, a, n):
        return None

    def item_axis(self, a, n, idx):
        return 1 if idx == 0 and self.ok(a, n) and a.axis_of(n.args[0]) == 1 else None

    def item_couple(self, a, n, idx, item):
        a.couple_identity(n.args[0], item, self.kind)

    def item_value(self, a, n, idx, item):
        m, v = a.const_of(n.args[0])
        a.set_value(item, m, self.fmap(a, n, v))

    def item_require(self, a, n, idx, item, kept):
        a.need(n.args[0], kept, item)

    def require(self, a, n, kept):
        if not any(a.axis_of(u) is not None for u in n.users):
            Rule.require(self, a, n, kept)


register(aten._native_batch_norm_legit_no_training.default)(NoTrainingBatchNormRule)


class PoolRule(_Channelwise):
    """Max/avg/adaptive pooling acts on the trailing spatial dims, channel by channel.

    CONST(v) stays CONST(v) (a window of equal values has max and mean v), except average
    pooling that counts zero padding (or ceil-mode partial windows), which is not uniform
    unless v = 0.
    """

    kind = "pool"
    spatial = 2

    def out_axis(self, a, n, ax):
        return ax if ax < _nd(n) - self.spatial else None

    def fmap(self, a, n, v):
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
register_many(_pool, [aten.max_pool2d.default, aten.avg_pool2d.default, aten.adaptive_avg_pool2d.default,
                      nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, F.max_pool2d, F.avg_pool2d,
                      F.adaptive_avg_pool2d])


class Pool1dRule(PoolRule):
    spatial = 1


register_many(Pool1dRule(), [aten.max_pool1d.default, aten.avg_pool1d.default, aten.adaptive_avg_pool1d.default,
                             nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d])


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

    def over_channels(self, a, n) -> bool:
        ax = a.axis_of(self.src(n))
        return ax is not None and ax in self.dims(n)[0]

    def out_axis(self, a, n, ax):
        dims, keep = self.dims(n)
        if ax in dims:
            return None
        return ax if keep else ax - sum(1 for d in dims if d < ax)

    def fmap(self, a, n, v):
        if n.target in (aten.sum.dim_IntList,):
            dims, _ = self.dims(n)
            count = prod_static(shape(n.args[0])[d] for d in dims)
            return None if count is None else v * count
        return v

    def require(self, a, n, kept):
        x = self.src(n)
        if self.over_channels(a, n) and n.target in self.compensable \
                and all(static_int(shape(x)[d]) is not None for d in self.dims(n)[0]):
            cin, _ = a.const_of(x)
            a.need(x, ~cin, n)
            return
        if self.over_channels(a, n):
            a.mark_barrier(n, "reduces over the channel dimension")
        a.need(x, kept, n)


register_many(ReduceRule(), [aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, torch.mean, torch.sum])


class SoftmaxRule(_Channelwise):
    """softmax along a non-channel dim acts channel by channel (values become LIVE)."""

    kind = "softmax"

    def out_axis(self, a, n, ax):
        if int(n.args[1]) % _nd(n) == ax:
            a.hint_barrier(n, "softmax over the channel dimension")
            return None
        return ax

    def fmap(self, a, n, v):
        return None


register_many(SoftmaxRule(), [aten.softmax.int, aten._softmax.default, aten.log_softmax.int, F.softmax])


class LayerNormRule(_Channelwise):
    """LayerNorm over the last dim, made exact under channel removal by CompensatedLayerNorm.

    y_c = γ_c (x_c − μ)/√(σ² + ε) + β_c with μ, σ² over all C channels. A CONST(v_r) input
    channel r may leave: the compensated form keeps C, s1 = Σ_R v_r and s2 = Σ_R v_r² and
    recomputes μ and σ² exactly (:mod:`fxminimize.compensated`). Its own output
    γ_r (v_r − μ)/σ + β_r is per-row, so channel r goes only when no consumer reads it (input r
    and output r are coupled), or when γ_r = 0: then output r is CONST(β_r) and folds downstream.
    A LIVE input channel is always required while any output is kept (it moves μ and σ²).
    """

    kind = "layernorm"

    def norm_dim(self, n) -> Optional[int]:
        """The normalised dim when it is the single channel dim, else None."""
        return _nd(n) - 1 if len(bind(n)["normalized_shape"]) == 1 else None

    def out_axis(self, a, n, ax):
        p = bind(n)
        if ax != self.norm_dim(n):
            a.hint_barrier(n, "layer_norm over more than the channel dim")
            return None
        for t in (p["weight"], p["bias"]):
            if t is not None and a.tensor(t) is None:
                a.hint_barrier(n, "layer_norm weight or bias is not a constant tensor")
                return None
        return ax

    def declare(self, a, n, inp):
        return -1 if inp is n.args[0] else None

    def full(self, p, v, w, b):
        """The op on one row of constant inputs ``v`` (float64 tensors, channels last)."""
        return F.layer_norm(v[None], (len(v),), w, b, float(p["eps"]))[0]

    def value(self, a, n):
        p = bind(n)
        C = a.size[n]
        m, v = a.const_of(self.src(n))
        w = a.tensor(p["weight"])
        b = a.tensor(p["bias"])
        w = np.ones(C) if w is None else w.detach().double().numpy()
        b = np.zeros(C) if b is None else b.detach().double().numpy()
        if m.all():  # every channel constant: the whole output is constant
            y = self.full(p, torch.from_numpy(v.copy()), torch.from_numpy(w), torch.from_numpy(b)).numpy()
            a.set_value(n, np.ones(C, bool), y)
            return
        a.set_value(n, w == 0, b)

    def require(self, a, n, kept):
        x = self.src(n)
        if kept is None:
            return a.need(x, None, n)
        cin, _ = a.const_of(x)
        a.need(x, kept | ~cin, n)


register(nn.LayerNorm, F.layer_norm, aten.layer_norm.default)(LayerNormRule)


class CompensatedLayerNormRule(LayerNormRule):
    """``fxminimize::compensated_layer_norm`` (a LayerNorm this tool already shrank), re-reduced.

    It is LayerNorm over C = ``count`` channels of which the K present ones are its input and
    the C − K absent ones are accounted for by s1 = Σ v_r and s2 = Σ v_r² (see
    :mod:`fxminimize.compensated`). Removing a further set R' of CONST(v_r) present channels is
    the same formula with R ∪ R': C stays, s1 += Σ_R' v_r, s2 += Σ_R' v_r² (pass ``layernorm``).
    The channel dim is ``dim`` (channels-last −1, or channels-first 1). Values, coupling and use
    are those of LayerNorm: output c is CONST(β_c) where γ_c = 0; a LIVE input is always needed.
    """

    def norm_dim(self, n) -> Optional[int]:
        return int(bind(n)["dim"]) % _nd(n)

    def declare(self, a, n, inp):
        return self.norm_dim(n) if inp is n.args[0] else None

    def full(self, p, v, w, b):
        return compensated_layer_norm(v[None], p["count"], p["s1"], p["s2"], w, b, float(p["eps"]))[0]


register(COMPENSATED_LAYER_NORM)(CompensatedLayerNormRule)


# --------------------------------------------------------------------------- binary elementwise
class BinaryRule(Rule):
    """Broadcasting elementwise a ∘ b (add, sub, mul, div; residual adds, layer scale, gates).

    Channel c of every tracked operand is coupled to channel c of the result (a residual stream
    channel goes only if it goes in every writer and reader). A constant-tensor operand that is
    full size on the channel dim is a per-channel parameter, sliced by the rewrite. Values:
    CONST ∘ CONST = CONST; for mul, CONST(0)·x = 0 (finite x).
    """

    kind = "binary"

    def operands(self, n):
        return [x for x in n.args[:2]]

    def aligned(self, n, x, out_ax) -> Optional[int]:
        """Dim of operand x that broadcasts onto out dim ``out_ax`` (None: x has no such dim)."""
        k = out_ax - (_nd(n) - _nd(x))
        return k if k >= 0 else None

    def axis(self, a, n):
        out_ax = None
        for x in self.operands(n):
            ax = a.axis_of(x)
            if ax is not None:
                oa = ax + (_nd(n) - _nd(x))
                if out_ax is not None and oa != out_ax:
                    a.hint_barrier(n, "operands have channels on different dims")
                    return None
                out_ax = oa
        if out_ax is None:
            return None
        C = shape(n)[out_ax]
        for x in self.operands(n):
            if isinstance(x, fx.Node) and is_tensor(x):
                k = self.aligned(n, x, out_ax)
                size = 1 if k is None else shape(x)[k]
                if a.axis_of(x) is None and a.tensor(x) is None and static_int(size) != 1:
                    a.hint_barrier(n, "an untracked operand is full size on the channel dim")
                    return None
                if a.axis_of(x) is not None and shape(x)[a.axis_of(x)] != C:
                    return None
        return out_ax

    def couple(self, a, n):
        for x in self.operands(n):
            if a.axis_of(x) is not None:
                a.couple_identity(x, n, "residual" if n.target in (aten.add.Tensor, aten.sub.Tensor) else self.kind)

    def operand_value(self, a, n, x, C):
        ax = a.ax[n]
        if isinstance(x, (int, float, bool)):
            return np.ones(C, bool), np.full(C, float(x))
        if a.axis_of(x) is not None:
            return a.const_of(x)
        t = a.tensor(x)
        if t is None:
            return np.zeros(C, bool), np.zeros(C)
        k = self.aligned(n, x, ax)
        t = t.detach().double()
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

    def value(self, a, n):
        C = a.size[n]
        vs = [self.operand_value(a, n, x, C) for x in self.operands(n)]
        m = np.logical_and.reduce([v[0] for v in vs])
        args = [torch.from_numpy(np.asarray(v[1], dtype=np.float64)) for v in vs]
        try:
            val = n.target(*args, *n.args[2:], **n.kwargs).double().numpy()
        except Exception:  # noqa: BLE001
            val = np.zeros(C)
            m = np.zeros(C, bool)
        if n.target in (aten.mul.Tensor,):
            zero = np.logical_or.reduce([v[0] & (v[1] == 0) for v in vs])
            m = m | zero
            val = np.where(zero, 0.0, val)
        a.set_value(n, m, val)

    def require(self, a, n, kept):
        for x in self.operands(n):
            a.need(x, kept, n)


register_many(BinaryRule(), [aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor,
                             aten.add.Scalar, aten.sub.Scalar, aten.mul.Scalar, aten.div.Scalar,
                             aten.rsub.Scalar, aten.maximum.default, aten.minimum.default,
                             operator.add, operator.sub, operator.mul, torch.add, torch.mul, torch.sub])


# --------------------------------------------------------------------------- layout ops
class PermuteRule(_Channelwise):
    """permute/transpose rename dimensions: the channel moves to its new position."""

    kind = "permute"

    def out_axis(self, a, n, ax):
        nd = _nd(n)
        if n.target is aten.permute.default:
            dims = [int(d) % nd for d in n.args[1]]
            return dims.index(ax)
        if n.target is aten.t.default:
            return 1 - ax if nd == 2 else ax
        d0, d1 = int(n.args[1]) % nd, int(n.args[2]) % nd
        return d1 if ax == d0 else d0 if ax == d1 else ax


register_many(PermuteRule(), [aten.permute.default, aten.transpose.int, aten.t.default, torch.permute,
                              torch.transpose])


class SqueezeRule(_Channelwise):
    """unsqueeze/squeeze insert or drop size-1 dims; the channel dim shifts accordingly."""

    kind = "squeeze"

    def out_axis(self, a, n, ax):
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

    def match(self, a, n):
        key = ("reshape", n)
        if key in a.cache:
            return a.cache[key]
        res = self._match(a, n)
        a.cache[key] = res
        return res

    def _match(self, a, n):
        x = n.args[0]
        ax = a.axis_of(x)
        if ax is None:
            return None
        si, so = shape(x), shape(n)
        C = static_int(si[ax])
        tail_in = prod_static(si[ax + 1:])
        if C is None or tail_in is None:
            return None
        idx = self.out_shape_arg(n)
        for b in range(len(so)):
            tail_out = prod_static(so[b + 1:])
            sb = static_int(so[b])
            if tail_out is None or sb is None or tail_out == 0:
                continue
            if tail_in % tail_out == 0:
                inner = tail_in // tail_out
                if sb % (C * inner) == 0:
                    res = ("merge", b, inner, C, sb)
                else:
                    continue
            elif tail_out % tail_in == 0:
                inner = tail_out // tail_in
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
                    a.hint_barrier(n, "the channel size is computed at run time")
                    return None
            return res
        a.hint_barrier(n, "reshape mixes the channel dim with other dims")
        return None

    def axis(self, a, n):
        m = self.match(a, n)
        return None if m is None else m[1]

    def couple(self, a, n):
        mode, b, inner, small, big = self.match(a, n)
        f = np.arange(big)
        ch = (f // inner) % small
        if mode == "merge":
            a.couple(n.args[0], n, ch, f, "reshape")
        else:
            a.couple(n.args[0], n, f, ch, "reshape")

    def value(self, a, n):
        mode, b, inner, small, big = self.match(a, n)
        m, v = a.const_of(n.args[0])
        ch = (np.arange(big) // inner) % small
        if mode == "merge":
            a.set_value(n, m[ch], v[ch])
        else:
            order = np.argsort(ch, kind="stable")
            mm = m[order].reshape(small, -1)
            vv = v[order].reshape(small, -1)
            om = mm.all(1) & (vv == vv[:, :1]).all(1)
            a.set_value(n, om, vv[:, 0])

    def require(self, a, n, kept):
        m = self.match(a, n)
        if m is None:
            return Rule.require(self, a, n, kept)
        mode, b, inner, small, big = m
        ch = (np.arange(big) // inner) % small
        if mode == "merge":
            need = np.zeros(small, bool)
            need[ch[kept]] = True
            a.need(n.args[0], need, n)
        else:
            a.need(n.args[0], kept[ch], n)


register_many(ReshapeRule(), [aten.view.default, aten.reshape.default, aten._unsafe_view.default,
                              aten.flatten.using_ints, aten.unflatten.int, torch.flatten, torch.reshape])


class CatRule(Rule):
    """torch.cat on the channel dim: input i's channel k is output channel offset_i + k.

    On another dim, every input must carry the same channels (coupled one to one); constant
    tensors among them (also ``expand`` of a constant: a class token broadcast over the batch)
    are sliced by the rewrite, and their channel c is CONST(v) when uniform over other dims.
    """

    kind = "concat"

    @staticmethod
    def const_input(a, x):
        """The constant tensor behind input x (a get_attr, or expand of one), else None."""
        t = a.tensor(x)
        if t is None and isinstance(x, fx.Node) and x.op == "call_function" and x.target is aten.expand.default \
                and a.tensor(x.args[0]) is not None and a.tensor(x.args[0]).dim() == _nd(x):
            t = a.tensor(x.args[0])
        return t

    def dim(self, n):
        return int(bind(n).get("dim", 0)) % _nd(n)

    def inputs(self, n):
        return list(n.args[0])

    def axis(self, a, n):
        d = self.dim(n)
        xs = self.inputs(n)
        axes = {a.axis_of(x) for x in xs if a.tensor(x) is None}
        if axes == {d}:
            return d
        axes = {a.axis_of(x) for x in xs if self.const_input(a, x) is None}
        if len(axes) == 1 and None not in axes:
            ax = axes.pop()
            if all(self.const_input(a, x) is None or self.const_input(a, x).shape[ax] == shape(n)[ax] for x in xs):
                return ax
        a.hint_barrier(n, "concat inputs do not share a channel dim")
        return None

    def declare(self, a, n, inp):
        if a.tensor(inp) is not None:
            return None
        if self.const_input(a, inp) is not None and any(
                a.axis_of(x) is not None and a.axis_of(x) != self.dim(n) for x in self.inputs(n)):
            return None  # a broadcast constant beside inputs tracked on another dim (class token)
        return self.dim(n)

    def offsets(self, a, n):
        offs, o = [], 0
        for x in self.inputs(n):
            offs.append(o)
            o += static_int(shape(x)[self.dim(n)]) or 0
        return offs

    def couple(self, a, n):
        if a.ax[n] == self.dim(n):
            for x, o in zip(self.inputs(n), self.offsets(a, n)):
                if x in a.off:
                    k = np.arange(a.size[x])
                    a.couple(x, n, k, o + k, "concat")
        else:
            for x in self.inputs(n):
                a.couple_identity(x, n, "concat")

    def value(self, a, n):
        xs = self.inputs(n)
        if a.ax[n] == self.dim(n):
            ms, vs = [], []
            for x in xs:
                if x in a.off:
                    m, v = a.const_of(x)
                else:
                    k = static_int(shape(x)[self.dim(n)])
                    m, v = np.zeros(k, bool), np.zeros(k)
                ms.append(m)
                vs.append(v)
            a.set_value(n, np.concatenate(ms), np.concatenate(vs))
        else:
            C, ax = a.size[n], a.ax[n]
            vals = []
            for x in xs:
                t = self.const_input(a, x)
                if x in a.off:
                    vals.append(a.const_of(x))
                elif t is not None:
                    tm = t.detach().double().movedim(ax, 0).reshape(C, -1)
                    vals.append(((tm == tm[:, :1]).all(1).numpy(), tm[:, 0].numpy()))
                else:
                    a.set_value(n, np.zeros(C, bool), np.zeros(C))
                    return
            m = np.logical_and.reduce([mv[0] for mv in vals])
            v0 = vals[0][1]
            for _, v in vals[1:]:
                m &= v == v0
            a.set_value(n, m, v0)

    def require(self, a, n, kept):
        xs = self.inputs(n)
        if a.ax.get(n) == self.dim(n) and a.native.get(n):
            for x, o in zip(xs, self.offsets(a, n)):
                k = static_int(shape(x)[self.dim(n)])
                if x in a.off:
                    a.need(x, kept[o:o + k], n)
                else:  # an untracked input (a constant) cannot shrink: its section stays
                    pin = np.zeros(a.size[n], bool)
                    pin[o:o + k] = True
                    a.need(n, pin, n)
        elif a.native.get(n):
            for x in xs:
                a.need(x, kept, n)
        else:
            Rule.require(self, a, n, kept)


register(torch.cat, aten.cat.default)(CatRule)


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

    def item_axis(self, a, n, idx):
        ax = a.axis_of(n.args[0])
        if ax is None:
            return None
        d, sec = self.sections(n)
        if sec is None:
            a.hint_barrier(n, "split sizes are not static")
            return None
        return ax

    def item_couple(self, a, n, idx, item):
        x = n.args[0]
        d, sec = self.sections(n)
        if a.ax[x] == d:
            o, s = sec[idx]
            k = np.arange(s)
            a.couple(x, item, o + k, k, "split")
        else:
            a.couple_identity(x, item, "split")

    def item_value(self, a, n, idx, item):
        x = n.args[0]
        d, sec = self.sections(n)
        m, v = a.const_of(x)
        if a.ax[x] == d:
            o, s = sec[idx]
            a.set_value(item, m[o:o + s], v[o:o + s])
        else:
            a.set_value(item, m, v)

    def item_require(self, a, n, idx, item, kept):
        x = n.args[0]
        d, sec = self.sections(n)
        if a.ax[x] == d:
            o, s = sec[idx]
            need = np.zeros(a.size[x], bool)
            need[o:o + s] = kept
            a.need(x, need, item)
        else:
            a.need(x, kept, item)

    def require(self, a, n, kept):
        if a.axis_of(n.args[0]) is None:
            return None
        d, sec = self.sections(n)
        if sec is None:
            Rule.require(self, a, n, kept)


register(torch.split, torch.chunk, aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default)(SplitRule)


class GetItemRule(Rule):
    """operator.getitem on a tuple-producing op delegates to that op's rule (item_*)."""

    kind = "getitem"

    def producer(self, a, n):
        src = n.args[0]
        if isinstance(src, fx.Node) and src.op == "call_function":
            return src, a.rule(src), int(n.args[1])
        return None, None, None

    def axis(self, a, n):
        src, r, i = self.producer(a, n)
        return None if r is None else r.item_axis(a, src, i)

    def couple(self, a, n):
        src, r, i = self.producer(a, n)
        r.item_couple(a, src, i, n)

    def value(self, a, n):
        src, r, i = self.producer(a, n)
        r.item_value(a, src, i, n)

    def require(self, a, n, kept):
        src, r, i = self.producer(a, n)
        if r is None or not a.native.get(n):
            if src is not None and n in a.off:
                r.require(a, src, None)
            return None
        r.item_require(a, src, i, n, kept)


register(operator.getitem)(GetItemRule)


class SizeRule(Ignore):
    """x.size(d): reads no values; reading the channel dim's size pins the channel count."""

    kind = "size"

    def require(self, a, n, kept):
        x = n.args[0]
        if len(n.args) > 1 and a.axis_of(x) is not None and int(n.args[1]) % _nd(x) == a.ax[x]:
            a.mark_barrier(n, "reads the channel count at run time")
            a.need(x, None, n)


register(aten.sym_size.int)(SizeRule)
register_many(Ignore(), [aten._assert_tensor_metadata.default])


# --------------------------------------------------------------------------- in-place variants
class _InPlace:
    """In-place ``x.op_(...)``: the node's value is the new x. It behaves like the functional op
    as long as nothing reads x again after the mutation (otherwise that read would see the
    mutated value under the old node's name): then it is a barrier."""

    def axis(self, a, n):
        x = n.args[0]
        order = {m: i for i, m in enumerate(a.nodes)} if "order" not in a.cache else a.cache["order"]
        a.cache["order"] = order
        if any(order[u] > order[n] for u in x.users if u is not n):
            a.hint_barrier(n, "in-place op whose input is read again afterwards")
            return None
        return super().axis(a, n)

    def value(self, a, n):
        t = n.target
        n.target = _FUNCTIONAL[t]
        try:
            super().value(a, n)
        finally:
            n.target = t


class InPlaceBinaryRule(_InPlace, BinaryRule):
    pass


class InPlaceUnaryRule(_InPlace, UnaryRule):
    pass


_FUNCTIONAL = {aten.add_.Tensor: aten.add.Tensor, aten.mul_.Tensor: aten.mul.Tensor,
               aten.sub_.Tensor: aten.sub.Tensor, aten.div_.Tensor: aten.div.Tensor,
               aten.relu_.default: aten.relu.default, aten.hardtanh_.default: aten.hardtanh.default,
               aten.silu_.default: aten.silu.default, aten.sigmoid_.default: aten.sigmoid.default,
               aten.leaky_relu_.default: aten.leaky_relu.default, aten.hardswish_.default: aten.hardswish.default}
register_many(InPlaceBinaryRule(), [aten.add_.Tensor, aten.mul_.Tensor, aten.sub_.Tensor, aten.div_.Tensor])
register_many(InPlaceUnaryRule(), [aten.relu_.default, aten.hardtanh_.default, aten.silu_.default,
                                   aten.sigmoid_.default, aten.leaky_relu_.default, aten.hardswish_.default])
