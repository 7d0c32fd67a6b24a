"""Canonical form of a fused qkv projection split by ``reshape → permute → unbind`` (timm's
``Attention``, and the ViT/DeiT/Swin/XCiT/PVT/EdgeNeXt code written after it)::

    qkv = self.qkv(x).reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)                                   # each (B, H, N, D)

is rewritten, at capture, into the form Hugging Face writes with ``chunk``, which the attention
region (:mod:`fxminimize.passes.ops.attention_match`) already matches::

    q, k, v = [t.view(B, N, H, D).permute(0, 2, 1, 3) for t in y.split(H·D, dim=-1)]

Math: with y = qkv(x) of shape (B, N, K·H·D), item i of the unbind is
u_i[b, h, n, d] = y[b, n, i·H·D + h·D + d] (row-major reshape, then the permutation), and item i
of the split, viewed and permuted, is the same element y[b, n, i·H·D + h·D + d]: the two graphs
compute identical tensors (data movement only, no arithmetic), so the rewrite is exact by
construction, and the verification step checks the result as for any model. Any K (3 for qkv,
2 for a fused kv) is handled; other layouts are left as they are (the unbind is then a barrier
on the channel dim, as before).
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
from torch._guards import detect_fake_mode

aten = torch.ops.aten
_VIEW = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)


def _val(a):
    return a.meta.get("val") if isinstance(a, fx.Node) else a


def _call(graph: fx.Graph, target, args: tuple, mode) -> fx.Node:
    """A new node with its ``meta["val"]`` computed on the fake values of its arguments."""
    node = graph.call_function(target, args)
    vals = fx.node.map_aggregate(args, _val)
    with mode:
        node.meta["val"] = target(*vals)
    return node


def _match(ub: fx.Node):
    """(y, B, N, K, H, D) when ``ub`` is unbind(permute(reshape(y, [B, N, K, H, D]), [2, 0, 3, 1, 4]), 0)."""
    if ub.op != "call_function" or ub.target is not aten.unbind.int:
        return None
    perm = ub.args[0]
    dim = ub.args[1] if len(ub.args) > 1 else ub.kwargs.get("dim", 0)
    if dim != 0 or not isinstance(perm, fx.Node) or perm.target is not aten.permute.default \
            or [int(d) for d in perm.args[1]] != [2, 0, 3, 1, 4] or len(perm.users) != 1:
        return None
    rs = perm.args[0]
    if not isinstance(rs, fx.Node) or rs.target not in _VIEW or len(rs.users) != 1:
        return None
    y, sizes = rs.args[0], list(rs.args[1])
    yv = _val(y)
    if not isinstance(yv, torch.Tensor) or yv.dim() != 3 or len(sizes) != 5:
        return None
    K, H, D = sizes[2:]
    if not all(isinstance(s, int) for s in (K, H, D)) or not isinstance(yv.shape[2], int) \
            or yv.shape[2] != K * H * D:
        return None
    if any(u.target is not operator.getitem for u in ub.users):
        return None
    return y, sizes[0], sizes[1], K, H, D


def split_fused_qkv(gm: fx.GraphModule) -> int:
    """Rewrite every fused-qkv ``reshape → permute → unbind`` of ``gm`` into the split form (in
    place); returns how many."""
    graph, count = gm.graph, 0
    for ub in list(graph.nodes):
        m = _match(ub)
        if m is None:
            continue
        y, B, N, K, H, D = m
        mode = detect_fake_mode([y.meta["val"]])
        if mode is None:
            continue
        perm = ub.args[0]
        rs = perm.args[0]
        with graph.inserting_before(ub):
            sp = _call(graph, aten.split.Tensor, (y, H * D, 2), mode)
            items = []
            for i in range(K):
                g = graph.call_function(operator.getitem, (sp, i))
                g.meta["val"] = sp.meta["val"][i]
                v = _call(graph, aten.view.default, (g, [B, N, H, D]), mode)
                items.append(_call(graph, aten.permute.default, (v, [0, 2, 1, 3]), mode))
        for u in list(ub.users):
            u.replace_all_uses_with(items[int(u.args[1])])
            graph.erase_node(u)
        for dead in (ub, perm, rs):
            graph.erase_node(dead)
        count += 1
    if count:
        graph.eliminate_dead_code()
        graph.lint()
        gm.recompile()
    return count
