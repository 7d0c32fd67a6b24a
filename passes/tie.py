"""Keep tied weights tied: one tensor read by several ops (GPT-2's token embedding and LM head).

A pass that shrinks a shared constant gives its reader a fresh attribute (``replace_const``)
and records where it came from. When the readers of one original tensor end up with equal
tensors (same shape and values: the analysis couples the channel spaces they are sliced by),
they are made to read one attribute again, so the minimized model has one parameter where the
original had one. Readers left with different tensors are counted in ``ties_broken``.
"""
from __future__ import annotations

import torch

from .base import PassResult, get_tensor


def run(gm, plan) -> PassResult:
    origins = gm.meta.get("fxminimize_origin", {})
    groups: dict[str, list] = {}
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            root = origins.get(str(n.target), str(n.target))
            groups.setdefault(root, []).append(n)
    merged = broken = 0
    for root, nodes in groups.items():
        if len({str(n.target) for n in nodes}) < 2:
            continue
        reps: list = []
        for n in nodes:
            t = get_tensor(gm, str(n.target))
            for r in reps:
                rt = get_tensor(gm, str(r.target))
                if str(r.target) == str(n.target) or (rt.shape == t.shape and rt.dtype == t.dtype
                                                       and torch.equal(rt, t)):
                    if r is not n:
                        n.replace_all_uses_with(r)
                        gm.graph.erase_node(n)
                        merged += 1
                    break
            else:
                reps.append(n)
        broken += len({str(r.target) for r in reps}) > 1
    return PassResult(gm, merged > 0, {"ties_restored": merged, "ties_broken": broken})
