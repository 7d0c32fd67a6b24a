"""Keep tied weights tied: one tensor read by several ops (GPT-2's token embedding and LM head).

A rewrite that shrinks a shared constant gives its reader a fresh attribute
(:meth:`RewriteContext.replace_const`) and records where it came from in ``ctx.origin``. When
the readers of one original tensor end up with equal tensors (same shape and values: the
analysis couples the channel spaces they are sliced by), they are made to read one attribute
again, so the minimized model has one parameter where the original had one. Readers left with
different tensors are counted in ``ties_broken``.
"""
from __future__ import annotations

import torch

from .infra_pass import RewritePass


class RetieWeights(RewritePass):
    name = "tie"
    after = ("ops", "gather", "restore")

    def call(self, gm):
        ctx = self.ctx
        groups: dict[str, list] = {}
        for n in gm.graph.nodes:
            if n.op == "get_attr":
                groups.setdefault(ctx.origin.get(str(n.target), str(n.target)), []).append(n)
        merged = broken = 0
        for root, nodes in groups.items():
            if len({str(n.target) for n in nodes}) < 2:
                continue
            reps: list = []
            for n in nodes:
                t = ctx.tensor(n)
                for r in reps:
                    rt = ctx.tensor(r)
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
        ctx.stats["ties_restored"] += merged
        ctx.stats["ties_broken"] += broken
        return self.result(gm, merged > 0)
