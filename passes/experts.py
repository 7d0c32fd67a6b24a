"""Align the dead hidden units of mixture-of-experts layers across experts (a canonicalization run
at capture, before the analysis).

transformers 5.x computes every expert of a MoE block with two grouped matrix products over the
fused 3-D weights (:mod:`fxminimize.passes.ops.grouped_mm`)::

    h = grouped_mm(x, A, offs)            # A (E, H, 2I): gate | up, per expert
    g, u = h.chunk(2, -1)
    y = grouped_mm(act(g) · u, B, offs)   # B (E, I, H)

The channel analysis has one kept set for the hidden dim, so a hidden unit leaves only where it
is dead in *every* expert (the union of the experts' patterns). Experts pruned independently
have different dead units, and almost nothing goes. But the hidden units of one expert can be
permuted freely: with a permutation π_e per expert, A'[e][:, j] = A[e][:, π_e(j)] (gate and up
halves alike) and B'[e][j] = B[e][π_e(j)] compute the same y (the same products, summed in
another order: float rounding only). This pass chooses π_e to put expert e's dead units first,
so the first r = min_e d_e positions (d_e the number of dead units of expert e) are dead in
every expert: the rectangle of the grouped-conv rule, per expert. The remaining d_e − r dead
units of an expert stay (the report's size says so; a ragged layout would need one matrix
shape per expert).

Unit j of expert e is *dead* when its contribution act(g_j)·u_j·B[e][j] is zero for every
input: its up column is zero (act(g)·0 = 0 for finite g), or its down row is zero, or its gate
column is zero and act(0) = 0 (relu, silu, gelu). The r aligned units get zero gate and up
columns and a zero down row in every expert (exact: each was dead), so the analysis sees them
ZERO and removes them like any dead channel.

Only this exact pattern is changed: A and B constant and read by nothing else, the chunk's two
halves read only by ``act(g) · u`` (through casts), both products sharing ``offs``.
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn as nn

from .registry import _qualname

aten = torch.ops.aten
_ACT_ZERO = {aten.silu.default, aten.relu.default, aten.gelu.default}   # act(0) = 0
_CAST = {aten.to.dtype, aten._to_copy.default, aten.to.dtype_layout, aten.clone.default}
_IGNORED = {aten._assert_tensor_metadata.default}


def _is_grouped_mm(n) -> bool:
    return n.op == "call_function" and _qualname(n.target) == "transformers::grouped_mm_fallback.default"


def _tensor(gm, node):
    if not isinstance(node, fx.Node) or node.op != "get_attr":
        return None
    obj = gm
    for part in str(node.target).split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, torch.Tensor) else None


def _users(n):
    return [u for u in n.users if u.target not in _IGNORED]


def _through_casts(n):
    while True:
        us = _users(n)
        if len(us) != 1 or us[0].target not in _CAST:
            return n, us
        n = us[0]


def _match(gm, a: fx.Node):
    """(A node, B node, act) for the pattern in the module docstring starting at grouped_mm ``a``."""
    A = _tensor(gm, a.args[1])
    if A is None or A.dim() != 3 or A.shape[2] % 2 or len(a.args[1].users) != 1:
        return None
    us = _users(a)
    if len(us) != 1 or us[0].target not in (aten.chunk.default, aten.split.Tensor):
        return None
    ch = us[0]
    I = A.shape[2] // 2
    if ch.target is aten.chunk.default and list(ch.args[1:]) not in ([2, -1], [2, 2]):
        return None
    if ch.target is aten.split.Tensor and list(ch.args[1:]) not in ([I, -1], [I, 2]):
        return None
    items = {u.args[1]: u for u in ch.users if u.target is operator.getitem}
    if set(items) != {0, 1} or len(ch.users) != 2:
        return None
    g, u = items[0], items[1]
    gu, uu = _users(g), _users(u)
    if len(gu) != 1 or len(uu) != 1 or gu[0].target not in _ACT_ZERO:
        return None
    act = gu[0]
    mul = uu[0]
    if mul.target is not aten.mul.Tensor or set(mul.args[:2]) != {act, u} or _users(act) != [mul]:
        return None
    end, nxt = _through_casts(mul)
    if len(nxt) != 1 or not _is_grouped_mm(nxt[0]) or nxt[0].args[0] is not end or nxt[0].args[2] is not a.args[2]:
        return None
    b = nxt[0]
    B = _tensor(gm, b.args[1])
    if B is None or B.dim() != 3 or B.shape[0] != A.shape[0] or B.shape[1] != I or len(b.args[1].users) != 1:
        return None
    return a.args[1], b.args[1], act


def _set(gm, node: fx.Node, value: torch.Tensor) -> None:
    *path, leaf = str(node.target).split(".")
    mod = gm
    for p in path:
        mod = getattr(mod, p)
    old = getattr(mod, leaf)
    delattr(mod, leaf)
    if isinstance(old, nn.Parameter):
        mod.register_parameter(leaf, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        mod.register_buffer(leaf, value)


def align_expert_units(gm: fx.GraphModule) -> int:
    """Permute each expert's hidden units so that dead ones come first (module docstring); new
    tensors replace the old (never written in place). Returns the number of units per expert made
    removable, summed over MoE layers."""
    total = 0
    for a in list(gm.graph.nodes):
        if not _is_grouped_mm(a):
            continue
        m = _match(gm, a)
        if m is None:
            continue
        a_node, b_node, act = m
        A, B = _tensor(gm, a_node).detach(), _tensor(gm, b_node).detach()
        I = A.shape[2] // 2
        gate, up = A[:, :, :I], A[:, :, I:]
        dead = (up == 0).all(1) | (B == 0).all(2)                    # (E, I)
        if act.target in _ACT_ZERO:
            dead |= (gate == 0).all(1)
        r = int(dead.sum(1).min())
        common = dead.all(0)                                          # dead in every expert
        if r == 0:
            continue
        if int(common.sum()) >= r:   # the rectangle is already at the same positions: no permutation
            perm, zero = torch.arange(I, device=A.device).expand(A.shape[0], I), common
        else:
            perm = torch.argsort((~dead).to(torch.int8), dim=1, stable=True)  # (E, I): dead first
            zero = torch.arange(I, device=A.device) < r
        ga = torch.gather(gate, 2, perm[:, None, :].expand_as(gate)).clone()
        ua = torch.gather(up, 2, perm[:, None, :].expand_as(up)).clone()
        Bp = torch.gather(B, 1, perm[:, :, None].expand_as(B)).clone()
        ga[:, :, zero] = 0
        ua[:, :, zero] = 0
        Bp[:, zero, :] = 0
        newA = torch.cat([ga, ua], 2)
        if torch.equal(newA, A) and torch.equal(Bp, B):
            continue   # already aligned and zeroed: nothing changes
        _set(gm, a_node, newA.contiguous())
        _set(gm, b_node, Bp.contiguous())
        total += r
    return total
