"""Normalizations: eval BatchNorm (a per-channel affine map) and LayerNorm over the channel dim
(exact under channel removal through CompensatedLayerNorm, :mod:`fxminimize.compensated`);
GroupNorm lives in :mod:`.groupnorm` and shares :func:`scale_zero_mask` and :func:`gather_outputs`.

Scale-zero outputs of a norm with statistics (LayerNorm, GroupNorm). γ_c = 0 makes output c
CONST(β_c) whatever the input, but input c still enters the statistics of the other channels.
So output c and input c are *not* coupled there: output c goes whenever its consumers fold the
constant, input c stays while the statistics need it (a LIVE channel of a group with a kept
output). Kept outputs need their inputs (K_out ⊆ K_in). When K_out ≠ K_in the norm is computed on
K_in and its output gathered: ``index_select(norm(x_K_in), dim, pos)`` (:func:`gather_outputs`; an
int64 index of |K_out| elements, paid for by the consumers' columns; "never larger" is checked by
``minimize``).

Rewrites. BatchNorm: slice γ, β, running mean and running variance to the kept channels
(per-channel affine maps commute with channel selection). LayerNorm: where CONST channels R
(values v_r) leave its input, ``layer_norm(x, [C], γ, β, ε)`` becomes
``compensated_layer_norm(x_K, C, s1, s2, γ_K, β_K, ε, dim)`` with s1 = Σ_R v_r, s2 = Σ_R v_r²
(float64); a node that is already compensated keeps its C and dim and accumulates
s1 + Σ_R' v_r, s2 + Σ_R' v_r². The node is changed in place (same name), so later rewrites
still find it in the plan.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from fxminimize.compensated import COMPENSATED_LAYER_NORM, compensated_layer_norm
from fxminimize.ir import bind
from ..registry import register
from ..rule import Rule
from .common import _Channelwise, _f64, _nd

aten = torch.ops.aten


def scale_zero_mask(cx, w, C: int) -> np.ndarray:
    """γ_c = 0 (bool, per channel) for a norm's weight node ``w`` (None: no weight, no zero)."""
    t = cx.tensor(w) if w is not None else None
    if t is None or t.numel() != C:
        return np.zeros(C, bool)
    return _f64(t).reshape(-1) == 0


def couple_scaled(cx, x, n, zero: np.ndarray, kind: str) -> None:
    """Couple input c with output c only where γ_c ≠ 0 (a scale-zero output is its own unit)."""
    idx = np.nonzero(~zero)[0]
    cx.couple(x, n, idx, idx, kind)


def gather_outputs(ctx, n, dim: int, keep_in: np.ndarray, keep_out: np.ndarray) -> None:
    """``n`` (already rewritten to compute its op on the kept input channels ``keep_in``) must
    output only ``keep_out`` ⊆ ``keep_in``: the op moves to a new node before ``n`` and ``n``
    becomes ``index_select(new, dim, pos)`` (same name, so later rewrites find it in the plan)."""
    if np.array_equal(keep_in, keep_out):
        return
    pos = np.searchsorted(keep_in, keep_out)
    if pos.size and (pos.max() >= len(keep_in) or not np.array_equal(keep_in[pos], keep_out)):
        raise AssertionError(f"internal: {n.name} keeps an output whose input is removed")
    g = ctx.gm.graph
    with g.inserting_before(n):
        full = g.call_function(n.target, tuple(n.args), dict(n.kwargs))
    full.meta = dict(n.meta)
    val = n.meta.get("val")
    dev = val.device if isinstance(val, torch.Tensor) and val.device.type != "meta" else None
    idx = ctx.add_const(n, f"fxm_out_{n.name}", ctx.index(pos) if dev is None else ctx.index(pos).to(dev))
    n.target, n.args, n.kwargs = aten.index_select.default, (full, dim, idx), {}
    ctx.stats["norm_outputs_gathered"] += 1


class BatchNormRule(_Channelwise):
    """Eval BatchNorm is per-channel affine: y_c = (x_c − μ_c)/√(σ²_c + ε)·γ_c + β_c.

    CONST(v) ↦ CONST((v − μ)/√(σ²+ε)·γ + β); ZERO ↦ CONST(β − γμ/√(σ²+ε)); and γ_c = 0 ↦
    CONST(β_c) whatever the input, so a scale-pruned channel folds downstream and the producer
    rows that fed only it go too.
    The rewrite slices γ, β, μ, σ² to the kept channels.
    """

    kind = "batchnorm"

    def params(self, n):
        p = bind(n)
        return p["input"], p["weight"], p["bias"], p["running_mean"], p["running_var"], p

    def ok(self, cx, n):
        x, w, b, m, v, p = self.params(n)
        if p.get("training", False):
            cx.hint(n, "BatchNorm in training mode")
            return False
        if m is None or v is None or any(t is not None and cx.tensor(t) is None for t in (w, b, m, v)):
            cx.hint(n, "BatchNorm statistics are not constant tensors")
            return False
        return True

    def axis(self, cx, n):
        if not self.ok(cx, n):
            return None
        return 1 if cx.axis_of(self.src(n)) == 1 else None

    def declare(self, cx, n, inp):
        return 1 if inp is self.src(n) and self.ok(cx, n) else None

    def fmap(self, cx, n, v):
        x, w, b, m, var, p = self.params(n)
        eps = float(p["eps"])
        mean = _f64(cx.tensor(m))
        rstd = 1.0 / np.sqrt(_f64(cx.tensor(var)) + eps)
        g = _f64(cx.tensor(w)) if w is not None else 1.0
        bb = _f64(cx.tensor(b)) if b is not None else 0.0
        return (v - mean) * rstd * g + bb

    def scale_zero(self, cx, n, C: int):
        """γ_c = 0 makes output c CONST(β_c) whatever the input (what Network Slimming leaves):
        y_c = (x_c − μ_c)·rstd_c·0 + β_c. Returns (mask, β)."""
        x, w, b, m, var, p = self.params(n)
        if w is None:
            return np.zeros(C, bool), np.zeros(C)
        bb = _f64(cx.tensor(b)) if b is not None else np.zeros(C)
        return _f64(cx.tensor(w)) == 0, bb

    def with_scale_zero(self, cx, n, m, v):
        """The value lattice of the output: CONST inputs mapped by the affine map, and every
        channel with γ = 0 CONST(β) (its input is then not needed: the coupled producer row
        goes with the channel when no consumer needs it)."""
        out = self.fmap(cx, n, v)
        z, beta = self.scale_zero(cx, n, len(m))
        return m | z, np.where(z, beta, out)

    def value(self, cx, n):
        m, v = cx.const_of(self.src(n))
        cx.set_value(n, *self.with_scale_zero(cx, n, m, v))

    def out_node(self, n):
        """The node whose channels the plan tracks (item 0 for the tuple-returning form)."""
        return n

    def rewrite(self, ctx, n) -> bool:
        out = self.out_node(n)
        if out is None or not ctx.plan.tracked(out.name) or not ctx.plan.shrinks(out):
            return False
        for attr in n.args[1:5]:
            if attr is not None:
                t = ctx.tensor(attr).detach()
                ctx.replace_const(n, attr, t[ctx.index(ctx.plan.kept(out), t)])
        return True


register(aten.batch_norm.default)(BatchNormRule)


class NoTrainingBatchNormRule(BatchNormRule):
    """aten._native_batch_norm_legit_no_training returns (y, mean, rstd); item 0 is y."""

    def params(self, n):
        x, w, b, m, v, mom, eps = (list(n.args) + [None] * 7)[:7]
        return x, w, b, m, v, {"eps": eps if eps is not None else 1e-5, "training": False}

    def axis(self, cx, n):
        return None

    def out_node(self, n):
        items = [u for u in n.users if u.args[1] == 0]
        return items[0] if items else None

    def item_axis(self, cx, n, idx):
        return 1 if idx == 0 and self.ok(cx, n) and cx.axis_of(n.args[0]) == 1 else None

    def item_couple(self, cx, n, idx, item):
        cx.couple_identity(n.args[0], item, self.kind)

    def item_value(self, cx, n, idx, item):
        m, v = cx.const_of(n.args[0])
        cx.set_value(item, *self.with_scale_zero(cx, n, m, v))

    def item_require(self, cx, n, idx, item, kept):
        cx.need(n.args[0], kept, item)

    def require(self, cx, n, kept):
        if not any(cx.axis_of(u) is not None for u in n.users):
            Rule.require(self, cx, n, kept)


register(aten._native_batch_norm_legit_no_training.default)(NoTrainingBatchNormRule)



class LayerNormRule(_Channelwise):
    """LayerNorm over the last dim, made exact under channel removal by CompensatedLayerNorm.

    y_c = γ_c (x_c − μ)/√(σ² + ε) + β_c with μ, σ² over all C channels. A CONST(v_r) input
    channel r may leave: the compensated form keeps C, s1 = Σ_R v_r and s2 = Σ_R v_r² and
    recomputes μ and σ² exactly (:mod:`fxminimize.compensated`). Its own output
    γ_r (v_r − μ)/σ + β_r is per-row, so channel r goes only when no consumer reads it (input r
    and output r are coupled where γ_r ≠ 0). Where γ_r = 0, output r is CONST(β_r) and is not
    coupled to input r: it goes when its consumers fold β_r, while input r stays if LIVE (module
    docstring). A LIVE input channel is required while any output is kept (it moves μ and σ²);
    a kept output requires its input.
    """

    kind = "layernorm"

    def norm_dim(self, n) -> Optional[int]:
        """The normalised dim when it is the single channel dim, else None."""
        return _nd(n) - 1 if len(bind(n)["normalized_shape"]) == 1 else None

    def out_axis(self, cx, n, ax):
        p = bind(n)
        if ax != self.norm_dim(n):
            cx.hint(n, "layer_norm over more than the channel dim")
            return None
        for t in (p["weight"], p["bias"]):
            if t is not None and cx.tensor(t) is None:
                cx.hint(n, "layer_norm weight or bias is not a constant tensor")
                return None
        return ax

    def declare(self, cx, n, inp):
        return -1 if inp is n.args[0] else None

    def couple(self, cx, n):
        couple_scaled(cx, self.src(n), n, scale_zero_mask(cx, bind(n)["weight"], cx.size_of(n)), self.kind)

    def full(self, p, v, w, b):
        """The op on one row of constant inputs ``v`` (float64 tensors, channels last)."""
        return F.layer_norm(v[None], (len(v),), w, b, float(p["eps"]))[0]

    def value(self, cx, n):
        p = bind(n)
        C = cx.size_of(n)
        m, v = cx.const_of(self.src(n))
        w = cx.tensor(p["weight"])
        b = cx.tensor(p["bias"])
        w = np.ones(C) if w is None else _f64(w)
        b = np.zeros(C) if b is None else _f64(b)
        if m.all():  # every channel constant: the whole output is constant
            y = self.full(p, torch.from_numpy(v.copy()), torch.from_numpy(w), torch.from_numpy(b)).numpy()
            cx.set_value(n, np.ones(C, bool), y)
            return
        cx.set_value(n, w == 0, b)

    def require(self, cx, n, kept):
        x = self.src(n)
        if kept is None:
            return cx.need(x, None, n)
        if not kept.any():  # no output read: the statistics are not needed either
            return
        cin, _ = cx.const_of(x)
        cx.need(x, kept | ~cin, n)

    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        x = n.args[0]
        if not plan.tracked(n.name) or not plan.tracked(x.name):
            return False
        if not plan.shrinks(x):
            if not plan.shrinks(n):
                return False
            gather_outputs(ctx, n, self.out_dim(n), plan.kept(x), plan.kept(n))
            return True
        rem = plan.removed(x)
        cm, cv = plan.const_mask[x.name][rem], plan.const_val[x.name][rem]
        if not cm.all():
            raise AssertionError(f"internal: LIVE channel removed from the input of {n.name}")
        p = bind(n)
        w, b = p["weight"], p["bias"]
        for t in (w, b):
            if t is not None:
                v = ctx.tensor(t).detach()
                ctx.replace_const(n, t, v[ctx.index(plan.kept(x), v)])
        w, b = bind(n)["weight"], bind(n)["bias"]
        s1, s2 = float(cv.sum()), float((cv * cv).sum())
        if n.target is COMPENSATED_LAYER_NORM:  # already compensated: the removed set grows
            count, s1, s2, dim = int(p["count"]), float(p["s1"]) + s1, float(p["s2"]) + s2, int(p["dim"])
        else:
            count, dim = plan.size[x.name], -1
        n.target = COMPENSATED_LAYER_NORM
        n.args, n.kwargs = (x, count, s1, s2, w, b, float(p["eps"]), dim), {}
        gather_outputs(ctx, n, dim, plan.kept(x), plan.kept(n))
        return True

    def out_dim(self, n) -> int:
        """The channel dim of the output, as the gather after the norm indexes it."""
        return -1


register(aten.layer_norm.default)(LayerNormRule)


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

    def declare(self, cx, n, inp):
        return self.norm_dim(n) if inp is n.args[0] else None

    def out_dim(self, n) -> int:
        return int(bind(n)["dim"])

    def full(self, p, v, w, b):
        return compensated_layer_norm(v[None], p["count"], p["s1"], p["s2"], w, b, float(p["eps"]))[0]


register(COMPENSATED_LAYER_NORM)(CompensatedLayerNormRule)


