"""Convolution (1d/2d/3d; stride, dilation, padding, groups, depthwise), channels on dim 1.

Analysis: the contraction math of :class:`~fxminimize.passes.ops.contraction.Contraction`,
with ΣW_ji summed over the kernel window; a nonzero CONST input under zero padding is not
uniform at the borders, so it is kept. Groups: with g > 1, all input and output channels of one
group form one unit, so groups are removed whole and the grouped structure (equal group
sizes) survives; depthwise is g = C_in, where a unit is input channel i with its outputs.

Rewrite. groups = 1: W' = W[R][:, K] with b'_R = b_R + Σ_{i removed CONST} v_i·ΣW[R, i] (exact
at every output position: only v = 0 or unpadded convs fold). groups = g > 1: whole groups
leave, so W' = W[R] with the per-group input slice unchanged and groups' = |R| / (O/g); a
removed group's inputs only feed that group's outputs, so nothing folds.
"""
from __future__ import annotations

import numpy as np
import torch

from fxminimize.ir import bind, set_arg
from ..infra import add_fold, fold_vector
from ..registry import register
from .common import _nonzero
from .contraction import Contraction

aten = torch.ops.aten


@register(aten.conv1d.default, aten.conv2d.default, aten.conv3d.default, aten.conv1d.padding,
          aten.conv2d.padding, aten.conv3d.padding, aten.convolution.default)
class ConvRule(Contraction):
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

    def ok(self, cx, n):
        if not super().ok(cx, n):
            return False
        if "transposed" in bind(n) and bind(n)["transposed"]:
            cx.hint(n, "transposed convolution has no rule yet")
            return False
        return True

    def groups(self, n) -> int:
        return int(bind(n).get("groups") or 1)

    def padded(self, cx, n) -> bool:
        p = bind(n)
        pad = p.get("padding", 0)
        w = cx.tensor(self.params(n)[1])
        if isinstance(pad, str):
            return pad == "same" and any(k > 1 for k in w.shape[2:])
        pad = [pad] if isinstance(pad, int) else list(pad)
        return any(int(v) != 0 for v in pad)

    def build(self, cx, n):
        x, w, b = self.params(n)
        W = cx.tensor(w).detach()
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
        bias = cx.tensor(b).detach().double() if b is not None else None
        return nz, bias, self.padded(cx, n)

    def kernel_sums(self, cx, n, cols):
        W = cx.tensor(self.params(n)[1]).detach()
        spatial = tuple(range(2, W.dim()))
        g = self.groups(n)
        O, Ig = W.shape[0], W.shape[1]
        if g == 1:
            Wc = W[:, torch.from_numpy(cols).to(W.device)].double()
            return (Wc.sum(dim=spatial) if spatial else Wc).cpu().numpy()
        Og = O // g
        out = np.zeros((O, len(cols)))
        for j, c in enumerate(cols):  # column c lives in group c // Ig, local input c % Ig
            k, i = divmod(int(c), Ig)
            blk = W[k * Og:(k + 1) * Og, i].double()
            out[k * Og:(k + 1) * Og, j] = (blk.sum(dim=tuple(range(1, blk.dim()))) if blk.dim() > 1 else blk).cpu().numpy()
        return out

    def couple(self, cx, n):
        g = self.groups(n)
        x = self.params(n)[0]
        if g == 1 or not self.x_tracked(cx, n):
            return
        O, Cin = cx.size_of(n), cx.size_of(x)
        Og, Ig = O // g, Cin // g
        # chain every channel of group k (inputs then outputs) to the group's first input
        ox = np.arange(Cin)
        cx.couple(x, x, (ox // Ig) * Ig, ox, "group")
        oy = np.arange(O)
        cx.couple(x, n, (oy // Og) * Ig, oy, "group")

    def require(self, cx, n, kept):
        super().require(cx, n, kept)
        if self.ok(cx, n) and self.groups(n) > 1 and not self.x_tracked(cx, n):
            cx.need(n, None, n)  # cannot drop whole groups of an untracked input


    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        if not plan.tracked(n.name):
            return False
        x, w, b = self.params(n)
        g = self.groups(n)
        x_ok = plan.tracked(x.name) and plan.axis[x.name] == 1
        x_shrinks = x_ok and plan.shrinks(x)
        if not plan.shrinks(n) and not x_shrinks:
            return False
        W = ctx.tensor(w).detach()
        rows = ctx.index(plan.kept(n), W)
        Wr = W[rows]
        bias = ctx.tensor(b).detach().double()[rows] if b is not None else None
        if g == 1:
            if x_shrinks:
                spatial = tuple(range(2, W.dim()))
                wsum = Wr.double().sum(dim=spatial)
                bias = add_fold(bias, fold_vector(plan, x, wsum, (Wr != 0).any(dim=spatial)))
                Wr = Wr[:, ctx.index(plan.kept(x), W)]
        else:
            Og, Ig = W.shape[0] // g, W.shape[1]
            new_g = len(rows) // Og
            if len(rows) % Og or (x_ok and len(plan.kept(x)) != new_g * Ig):
                raise AssertionError(f"internal: partial group removed in {n.name}")
            set_arg(n, "groups", new_g)
        ctx.write_weight_and_bias(n, w, b, Wr, bias)
        return True
