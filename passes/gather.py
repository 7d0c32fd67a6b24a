"""Source spaces: a tensor whose producer has no channel rule (a model input, the output of a
barrier, a flatten of an untracked image) but whose consumers read channels on a dim (e.g. a
Linear reading 784 pixels). Elements none of its consumers need are dropped with
``index_select(x, dim, kept)`` right after the producer, so the model's interface (input
shape) is unchanged while the consumers' weights shrink."""
from __future__ import annotations

import torch

from .infra_pass import RewritePass

aten = torch.ops.aten


class GatherInputs(RewritePass):
    name = "gather"
    after = ("ops",)

    def call(self, gm):
        ctx, plan = self.ctx, self.ctx.plan
        changed = 0
        for n in list(gm.graph.nodes):
            if not plan.tracked(n.name) or plan.native[n.name] or not plan.shrinks(n):
                continue
            users = list(n.users)
            after = n.next
            while after.op == "placeholder":
                after = after.next
            val = n.meta.get("val")
            dev = val.device if isinstance(val, torch.Tensor) and val.device.type != "meta" else None
            keep = ctx.index(plan.kept(n))
            idx = ctx.add_const(after, f"fxm_keep_{n.name}", keep if dev is None else keep.to(dev))
            with gm.graph.inserting_after(idx):
                g = gm.graph.call_function(aten.index_select.default, (n, plan.axis[n.name], idx))
            for u in users:
                u.replace_input_with(n, g)
            changed += 1
        ctx.stats["gathers_inserted"] += changed
        return self.result(gm, changed > 0)
