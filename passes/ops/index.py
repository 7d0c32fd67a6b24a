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

One constant 1-D integer index on the channel dim itself (Falcon's packed heads:
``fused[..., [-2], :]`` picks the key head) is a gather of channels, exactly as ``index_select``
below: output j is input idx[j] (negatives taken mod C), the index is re-based by the rewrite.

Declined (the op is then a barrier with the reason): any other index on the channel dim
("indexes the channel dimension"), boolean masks (their result size depends on the data), and non-adjacent
index tensors (torch moves the gathered dims to the front).

``index_select(x, d, idx)`` (:class:`IndexSelectRule`), the gather every rewrite of this tool
emits (input gathers, a Linear reading only its live columns, norm outputs gathered), so that a
minimized model can be minimized again (Squeeze-Release does, every cycle):

* d is not the channel dim: channel c of y is channel c of x at other positions (identity map,
  CONST(v) stays CONST(v)); ``idx`` need not be constant.
* d is the channel dim and ``idx`` is a constant 1-D tensor: y_j = x_{idx[j]}. Output j is
  coupled with input idx[j] (a repeated index puts its outputs in one unit); CONST(v) ↦
  CONST(v[idx]); kept outputs K_out need the inputs idx[K_out], and nothing else. An input
  channel no index selects is not read. Rewrite: with the input reduced to its kept channels
  K_in, the new index is idx'[j] = position of idx[K_out[j]] in K_in; when idx' is 0 … |K_in| − 1
  the gather is the identity, and the ``cleanup`` pass makes its readers read x directly
  (:func:`~fxminimize.passes.gathers.drop_identity_gathers`). An untracked input (a model
  input) becomes a source space on d; an input whose size on d is symbolic has no channel space:
  it is read whole and only idx shrinks (idx' = idx[K_out]).
"""
from __future__ import annotations

import torch

import numpy as np

from fxminimize.ir import shape, static_int, tensor_inputs
from ..registry import register
from ..rule import Rule
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
        if pos == [ax] and self.channel_index(cx, n) is not None:
            return ax   # one constant 1-D index on the channel dim: a gather of channels
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

    def channel_index(self, cx, n):
        """The index as int64 numpy (negatives resolved) when ``n`` is ``x[..., idx, ...]`` with one
        constant 1-D integer index on x's channel dim; else None."""
        idx = list(n.args[1])
        pos = [d for d, i in enumerate(idx) if i is not None]
        x = self.src(n)
        if len(pos) != 1 or pos[0] != cx.axis_of(x):
            return None
        C = static_int(shape(x)[pos[0]])
        t = cx.tensor(idx[pos[0]])
        if C is None or t is None or t.dim() != 1 or t.dtype in (torch.bool, torch.uint8) or t.is_floating_point():
            return None
        return t.detach().cpu().numpy().astype(np.int64) % C

    def couple(self, cx, n):
        idx = self.channel_index(cx, n)
        if idx is None:
            return super().couple(cx, n)
        cx.couple(self.src(n), n, idx, np.arange(len(idx)), self.kind)

    def value(self, cx, n):
        idx = self.channel_index(cx, n)
        if idx is None:
            return super().value(cx, n)
        m, v = cx.const_of(self.src(n))
        cx.set_value(n, m[idx], v[idx])

    def require(self, cx, n, kept):
        idx = self.channel_index(cx, n) if cx.is_native(n) else None
        if idx is None:
            super().require(cx, n, kept)
        else:
            mask = np.zeros(cx.size_of(self.src(n)), bool)
            mask[idx if kept is None else idx[kept]] = True
            cx.need(self.src(n), mask, n)
        for i in tensor_inputs(n)[1:]:
            cx.need(i, None, n)  # index tensors are read whole

    def rewrite(self, ctx, n) -> bool:
        """On the channel dim: the index re-based on the input's kept channels (as index_select)."""
        plan, x = ctx.plan, self.src(n)
        if not plan.tracked(n.name) or not plan.tracked(x.name) or plan.axis[x.name] != plan.axis[n.name]:
            return False
        idx = list(n.args[1])
        pos = [d for d, i in enumerate(idx) if i is not None]
        if pos != [plan.axis[x.name]] or (not plan.shrinks(n) and not plan.shrinks(x)):
            return False
        node = idx[pos[0]]
        t = ctx.tensor(node).detach()
        full = t.cpu().numpy().astype(np.int64) % plan.size[x.name]
        want, k_in = full[plan.kept(n)], plan.kept(x)
        new = np.searchsorted(k_in, want)
        if new.size and (new.max() >= len(k_in) or not np.array_equal(k_in[new], want)):
            raise AssertionError(f"internal: {n.name} keeps an output whose input is removed")
        ctx.replace_const(n, node, ctx.index(new, t).to(t.dtype))
        return True


@register(aten.index_select.default)
class IndexSelectRule(Rule):
    """``index_select(x, dim, idx)``; the math is in the module docstring."""

    kind = "index_select"

    def dim(self, n) -> int:
        return int(n.args[1]) % _nd(n)

    def channel_index(self, cx, n):
        """The constant 1-D index as int64 numpy, or None."""
        t = cx.tensor(n.args[2])
        if t is None or t.dim() != 1:
            return None
        return t.detach().cpu().numpy().astype(np.int64)

    def on_channels(self, cx, n) -> bool:
        return cx.axis_of(n.args[0]) == self.dim(n)

    def axis(self, cx, n):
        ax = cx.axis_of(n.args[0])
        if ax is None:
            return None
        if ax == self.dim(n) and self.channel_index(cx, n) is None:
            cx.hint(n, "index_select on the channel dimension with an index that is not constant")
            return None
        return ax

    def declare(self, cx, n, inp):
        if inp is n.args[0] and self.channel_index(cx, n) is not None:
            return self.dim(n)
        return None

    def couple(self, cx, n):
        x = n.args[0]
        if not cx.has_space(x):
            return None
        if not self.on_channels(cx, n):
            return cx.couple_identity(x, n, self.kind)
        idx = self.channel_index(cx, n)
        cx.couple(x, n, idx, np.arange(len(idx)), self.kind)

    def value(self, cx, n):
        if not cx.has_space(n.args[0]):  # a symbolic-size input: no channel space, LIVE
            return None
        m, v = cx.const_of(n.args[0])
        if self.on_channels(cx, n):
            idx = self.channel_index(cx, n)
            m, v = m[idx], v[idx]
        cx.set_value(n, m, v)

    def require(self, cx, n, kept):
        x = n.args[0]
        if cx.tensor(n.args[2]) is None:
            cx.need(n.args[2], None, n)  # an index computed from activations is read whole
        if kept is None and not cx.is_native(n) and cx.has_space(x):
            cx.barrier(n, None)  # declined (the hint says why): every input channel is kept
            return cx.need(x, None, n)
        if not cx.has_space(x):
            return cx.need(x, None, n)
        if not self.on_channels(cx, n):
            return cx.need(x, kept, n)
        idx = self.channel_index(cx, n)
        mask = np.zeros(cx.size_of(x), bool)
        mask[idx if kept is None else idx[kept]] = True
        cx.need(x, mask, n)

    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        x, idx_node = n.args[0], n.args[2]
        if not plan.tracked(n.name) or plan.axis[n.name] != int(n.args[1]) % len(n.meta["val"].shape):
            return False  # off the channel dim: nothing to change
        x_in = plan.tracked(x.name) and plan.axis[x.name] == plan.axis[n.name]
        if not plan.shrinks(n) and not (x_in and plan.shrinks(x)):
            return False
        t = ctx.tensor(idx_node).detach()
        idx = t.cpu().numpy().astype(np.int64)[plan.kept(n)]
        new = idx
        if x_in:
            k_in = plan.kept(x)
            new = np.searchsorted(k_in, idx)
            if new.size and (new.max() >= len(k_in) or not np.array_equal(k_in[new], idx)):
                raise AssertionError(f"internal: {n.name} keeps an output whose input is removed")
        ctx.replace_const(n, idx_node, ctx.index(new, t))
        if x_in and np.array_equal(new, np.arange(len(k_in))):
            ctx.identity_gathers.add(n.name)  # cleanup makes the readers read x
        return True
