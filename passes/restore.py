"""Model outputs: which channels they need, and the pass that restores the CONST ones.

Rule (the ``output`` node): model outputs are used, except channels that are CONST(v): those
are not computed but restored at the end, so the model's interface keeps its full width.

Pass: y = where(kept, x_K[pos], v) along the channel dim, where pos maps each original channel
to its place among the kept ones. ``where`` selects, so the kept channels are bit-identical and
the restored ones are exactly v.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx

from fxminimize.ir import tensor_inputs
from .infra_pass import RewritePass
from .rule import Rule

aten = torch.ops.aten


class OutputRule(Rule):
    kind = "output"

    def require(self, cx, n, kept):
        for x in tensor_inputs(n):
            if cx.has_space(x) and cx.is_native(x):
                cx.need(x, ~cx.const_of(x)[0], n)
            else:
                cx.need(x, None, n)


OUTPUT = OutputRule()


class RestoreOutputs(RewritePass):
    """Restore the CONST channels of shrunk model outputs (the interface keeps its width)."""

    name = "restore"
    after = ("ops",)

    def call(self, gm):
        ctx, plan = self.ctx, self.ctx.plan
        out = next(n for n in gm.graph.nodes if n.op == "output")
        done: dict = {}
        for x in list(out.all_input_nodes):
            if not plan.tracked(x.name) or not plan.native[x.name] or not plan.shrinks(x):
                continue
            C, ax = plan.size[x.name], plan.axis[x.name]
            keep = plan.kept(x)
            pos = np.zeros(C, dtype=np.int64)
            pos[keep] = np.arange(len(keep))
            mask = np.zeros(C, dtype=bool)
            mask[keep] = True
            bshape = [1] * len(x.meta["val"].shape)
            bshape[ax] = C
            val = x.meta["val"]
            dev = val.device if val.device.type != "meta" else torch.device("cpu")
            const = torch.from_numpy(np.where(mask, 0.0, plan.const_val[x.name])).to(val.dtype).reshape(bshape)
            if not plan.const_mask[x.name][~mask].all():
                raise AssertionError(f"internal: output {x.name} lost a channel that is not CONST")
            i = ctx.add_const(out, f"fxm_out_pos_{x.name}", torch.from_numpy(pos).to(dev))
            m = ctx.add_const(out, f"fxm_out_mask_{x.name}", torch.from_numpy(mask).reshape(bshape).to(dev))
            c = ctx.add_const(out, f"fxm_out_const_{x.name}", const.to(dev))
            with gm.graph.inserting_before(out):
                g = gm.graph.call_function(aten.index_select.default, (x, ax, i))
                full = gm.graph.call_function(aten.where.self, (m, g, c))
            done[x] = full
        if done:
            out.args = fx.node.map_arg(out.args, lambda v: done.get(v, v))
        ctx.stats["outputs_restored"] += len(done)
        return self.result(gm, bool(done))
