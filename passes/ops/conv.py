"""Convolution (1d/2d/3d; stride, dilation, padding, groups, depthwise), channels on dim 1.

Analysis: the contraction math of :class:`~fxminimize.passes.ops.contraction.Contraction`,
with ΣW_ji summed over the kernel window; a nonzero CONST input under zero padding is not
uniform at the borders, so it is kept.

Groups (g > 1, O = g·Og outputs, C_in = g·Ig inputs): the kept channels form a *rectangle*.
A group is alive when it keeps an output or an input channel; every alive group keeps the same
number Og' of output rows and Ig' of input channels (the maxima over alive groups of what the
group keeps, at least 1), and a dead group keeps neither. ``require`` pads each alive group up
to (Og', Ig') by requiring extra channels: output rows that read the fewest inputs the group
does not keep yet (then lowest index), and the lowest-index inputs. The targets only grow with
``kept`` and requirements are only ever added, so the use fixpoint still terminates. The positions need not match across groups:
an output row is its own filter, and each group reads its own input slice.

Rewrite. groups = 1: W' = W[R][:, K] with b'_R = b_R + Σ_{i removed CONST} v_i·ΣW[R, i] (exact
at every output position: only v = 0 or unpadded convs fold). groups = g > 1: with R_k and
K_k the kept rows and inputs of alive group k (|R_k| = Og', |K_k| = Ig'),
W' = cat_k W[R_k][:, K_k − k·Ig], groups' = the number of alive groups, and
b'_j = b_j + Σ_{i removed, i in group(j)} v_i·ΣW[j, i − k·Ig] (removed CONST inputs fold within
their own group; a dead group's inputs feed only its own, removed, rows).
"""
from __future__ import annotations

import numpy as np
import torch

from fxminimize.ir import bind, set_arg
from ..infra import add_fold, fold_removed_columns, fold_vector, take
from ..registry import register
from .common import _nonzero
from .contraction import Contraction

aten = torch.ops.aten


def _pad(have: np.ndarray, alive: np.ndarray, want: int, key: np.ndarray) -> np.ndarray:
    """(g, m) mask of extra entries so each alive row of ``have`` has ``want`` set: the unset
    entries with the smallest ``key`` (ties: lowest index)."""
    missing = np.where(alive, want - have.sum(1), 0)
    if not (missing > 0).any():
        return np.zeros_like(have)
    m = have.shape[1]
    k = np.where(have, np.inf, key * (m + 1) + np.arange(m)[None, :])
    rank = np.argsort(np.argsort(k, axis=1, kind="stable"), axis=1, kind="stable")
    return ~have & (rank < missing[:, None])


@register(aten.conv1d.default, aten.conv2d.default, aten.conv3d.default, aten.conv1d.padding,
          aten.conv2d.padding, aten.conv3d.padding, aten.convolution.default)
class ConvRule(Contraction):
    """Convolution (1d/2d/3d, stride, dilation, padding, groups) with channels on dim 1.

    Groups: with g > 1, every alive group keeps the same number of output rows and of input
    channels (a rectangle, positions free per group); whole groups go when nothing of them is
    kept, so ``groups`` shrinks. Depthwise (g = C_in) is the case Ig = 1: a group is input
    channel c with its channel-multiplier outputs.
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

    def local_nz(self, cx, n) -> np.ndarray:
        """(O, Ig) bool: output row j reads local input i of its group with a nonzero weight."""
        def build():
            W = cx.tensor(self.params(n)[1]).detach()
            return _nonzero(W).reshape(W.shape[0], W.shape[1], -1).any(2)
        return cx.memo(("conv_local_nz", n), build)

    def build(self, cx, n):
        x, w, b = self.params(n)
        W = cx.tensor(w).detach()
        g = self.groups(n)
        O, Ig = W.shape[0], W.shape[1]
        nz_l = self.local_nz(cx, n)
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

    def x_shrinkable(self, cx, n) -> bool:
        x = self.params(n)[0]
        return self.x_tracked(cx, n) and cx.has_space(x)

    def kept_deps(self, cx, n):
        # the rectangle reads the input's kept channels
        if self.ok(cx, n) and self.groups(n) > 1 and self.x_shrinkable(cx, n):
            return (self.params(n)[0],)
        return ()

    def require(self, cx, n, kept):
        super().require(cx, n, kept)
        g = self.groups(n)
        if g == 1 or not self.ok(cx, n) or not cx.has_space(n):
            return
        x = self.params(n)[0]
        nzl = self.local_nz(cx, n)
        O, Ig = nzl.shape
        Og = O // g
        out = np.ones(O, bool) if kept is None else np.asarray(kept, bool)
        outk = out.reshape(g, Og)
        if self.x_shrinkable(cx, n):
            nz, _, padded = self.matrices(cx, n)
            cin, vin = cx.const_of(x)
            needed = ~cin | ((vin != 0) if padded else False)
            ink = (cx.kept(x) | (nz[out].any(0) & needed)).reshape(g, Ig)
            alive = ink.any(1) | outk.any(1)
        else:  # the input keeps every channel, so every group stays
            needed = np.ones(g * Ig, bool)
            ink = np.ones((g, Ig), bool)
            alive = np.ones(g, bool)
        if not alive.any():
            return  # nothing kept yet (the fixpoint keeps channel 0 of an empty space)
        o_want = max(1, int(outk[alive].sum(1).max()))
        i_want = max(1, int(ink[alive].sum(1).max()))
        # an extra row costs the inputs of its group it reads that are needed and not kept yet
        new_in = (needed.reshape(g, Ig) & ~ink)[np.arange(O) // Og]
        cost = (nzl & new_in).sum(1).reshape(g, Og)
        extra_out = _pad(outk, alive, o_want, cost)
        if extra_out.any():
            cx.need(n, extra_out.reshape(-1), n)
        if self.x_shrinkable(cx, n):
            extra_in = _pad(ink, alive, i_want, np.zeros(ink.shape))
            if extra_in.any():
                cx.need(x, extra_in.reshape(-1), n)

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
        R = np.asarray(plan.kept(n), dtype=np.int64)
        rows = ctx.index(R, W)
        Wr = take(W, 0, rows)
        bias = ctx.tensor(b).detach().double()[rows] if b is not None else None
        spatial = tuple(range(2, W.dim()))
        if g == 1:
            if x_shrinks:
                bias = add_fold(bias, fold_removed_columns(plan, x, Wr))
                Wr = take(Wr, 1, ctx.index(plan.kept(x), W))
        else:
            O, Ig = W.shape[0], W.shape[1]
            Og = O // g
            K = np.asarray(plan.kept(x), dtype=np.int64) if x_ok else np.arange(g * Ig)
            alive = np.unique(R // Og)
            Gn = len(alive)
            if (not np.array_equal(alive, np.unique(K // Ig)) or len(R) % Gn or len(K) % Gn
                    or not (np.bincount(R // Og, minlength=g)[alive] == len(R) // Gn).all()
                    or not (np.bincount(K // Ig, minlength=g)[alive] == len(K) // Gn).all()):
                raise AssertionError(f"internal: kept channels of grouped {n.name} are not a rectangle")
            Op, Ip = len(R) // Gn, len(K) // Gn
            local = (K % Ig).reshape(Gn, Ip)                         # group slot s reads local[s]
            sel = ctx.index(np.repeat(local, Op, axis=0), W)          # (len(R), Ip)
            Wn = Wr[torch.arange(len(R), device=W.device)[:, None], sel]
            if x_shrinks:
                # block-diagonal (len(R), C_in) kernel sums and pattern of the kept rows
                cols = ctx.index(((R // Og) * Ig)[:, None] + np.arange(Ig)[None, :], W)
                ridx = torch.arange(len(R), device=W.device)[:, None].expand(-1, Ig)
                wsum = torch.zeros(len(R), g * Ig, dtype=torch.float64, device=W.device)
                wsum[ridx, cols] = Wr.double().sum(dim=spatial) if spatial else Wr.double()
                nzr = torch.zeros(len(R), g * Ig, dtype=torch.bool, device=W.device)
                nzr[ridx, cols] = (Wr != 0).any(dim=spatial) if spatial else (Wr != 0)
                bias = add_fold(bias, fold_vector(plan, x, wsum, nzr))
            Wr = Wn
            if Gn != g:
                set_arg(n, "groups", Gn)
        ctx.write_weight_and_bias(n, w, b, Wr, bias)
        return True
