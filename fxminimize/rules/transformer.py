"""Rules for the ops transformers add: embeddings and the decomposed Linear of GPT-2's Conv1D.

Embedding: y[..., c] = E[ids, c]. Output channel c is CONST(v) iff column c of E equals v in
every row (ZERO when the column is zero); removing channel c slices column c of E. The ids are
not channels.

addmm(b, x, W) = b + x W with W stored (in, out) (GPT-2's Conv1D, and ``torch.compile``'s
decomposed Linear): the Linear rule with Wᵀ; the rewrite slices W[K_in][:, K_out].
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ir import bind
from . import register
from .base import Rule
from .ops import LinearRule, _nonzero

aten = torch.ops.aten


class EmbeddingRule(Rule):
    """Embedding lookup; the channel dim is the last one (see module docstring)."""

    kind = "embedding"

    def axis(self, a, n):
        w = bind(n)["weight"]
        if a.tensor(w) is None:
            a.hint_barrier(n, "embedding table is not a constant tensor")
            return None
        return -1

    def value(self, a, n):
        E = a.tensor(bind(n)["weight"]).detach().double()
        uniform = (E == E[:1]).all(0).numpy() if E.shape[0] else np.ones(E.shape[1], bool)
        a.set_value(n, uniform, E[0].numpy() if E.shape[0] else np.zeros(E.shape[1]))

    def require(self, a, n, kept):
        return None  # reads only indices

    def weight_axes(self, a, n):
        return [(bind(n)["weight"], 1, n if n in a.off else None)]


register(nn.Embedding, F.embedding, aten.embedding.default)(EmbeddingRule)


class AddmmRule(LinearRule):
    """addmm(bias, x, W): a Linear whose weight is stored transposed, (in, out)."""

    kind = "linear"
    transposed = True

    def params(self, n):
        return n.args[1], n.args[2], n.args[0]

    def ok(self, a, n):
        if len(n.args) != 3 or n.kwargs.get("beta", 1) != 1 or n.kwargs.get("alpha", 1) != 1:
            a.hint_barrier(n, "addmm with alpha/beta")
            return False
        b = a.tensor(n.args[0])
        if b is not None and b.dim() != 1:
            a.hint_barrier(n, "addmm with a non-vector bias")
            return False
        return super().ok(a, n)

    def build(self, a, n):
        _, w, b = self.params(n)
        bias = a.tensor(b).detach().double() if b is not None else None
        return _nonzero(a.tensor(w).detach()).T, bias, False

    def kernel_sums(self, a, n, cols):
        return a.tensor(self.params(n)[1]).detach()[torch.from_numpy(cols)].t().double().numpy()


register(aten.addmm.default)(AddmmRule)


class SliceRule(Rule):
    """x[..., a:b:s] on a dim that is not the channel dim keeps channels one to one (sequence
    slicing before an LM head, cls-token selection). Slicing the channel dim itself is a
    barrier: the rewrite would have to renumber the slice bounds."""

    kind = "slice"
    what = "slices"

    def out_axis(self, ax: int, d: int) -> int:
        return ax

    def axis(self, a, n):
        x = n.args[0]
        ax = a.axis_of(x)
        if ax is None:
            return None
        d = int(n.args[1]) % len(x.meta["val"].shape) if len(n.args) > 1 else 0
        if d == ax:
            a.hint_barrier(n, f"{self.what} the channel dimension")
            return None
        return self.out_axis(ax, d)

    def couple(self, a, n):
        a.couple_identity(n.args[0], n, "slice")

    def value(self, a, n):
        m, v = a.const_of(n.args[0])
        a.set_value(n, m, v)

    def require(self, a, n, kept):
        a.need(n.args[0], kept, n)


register(aten.slice.Tensor)(SliceRule)


class SelectRule(SliceRule):
    """x.select(d, i) on a non-channel dim: the channel dim shifts down when d < channel dim."""

    kind = "select"
    what = "selects along"

    def out_axis(self, ax: int, d: int) -> int:
        return ax - 1 if d < ax else ax


register(aten.select.int)(SelectRule)
