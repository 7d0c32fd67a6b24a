"""Keep the model's output width: channels of an output that are CONST(v) are not computed
but restored at the end, y = where(kept, x_K[pos], v) along the channel dim, where pos maps
each original channel to its place among the kept ones. ``where`` selects, so the kept channels
are bit-identical and the restored ones are exactly v."""
from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx

from .base import PassResult, add_const

aten = torch.ops.aten


def run(gm, plan) -> PassResult:
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
        nd = len(x.meta["val"].shape)
        bshape = [1] * nd
        bshape[ax] = C
        dtype = x.meta["val"].dtype
        const = torch.from_numpy(np.where(mask, 0.0, plan.const_val[x.name])).to(dtype).reshape(bshape)
        if not plan.const_mask[x.name][~mask].all():
            raise AssertionError(f"internal: output {x.name} lost a channel that is not CONST")
        i = add_const(gm, out, f"fxm_out_pos_{x.name}", torch.from_numpy(pos))
        m = add_const(gm, out, f"fxm_out_mask_{x.name}", torch.from_numpy(mask).reshape(bshape))
        c = add_const(gm, out, f"fxm_out_const_{x.name}", const)
        with gm.graph.inserting_before(out):
            g = gm.graph.call_function(aten.index_select.default, (x, ax, i))
            full = gm.graph.call_function(aten.where.self, (m, g, c))
        done[x] = full
    if done:
        out.args = fx.node.map_arg(out.args, lambda v: done.get(v, v))
    return PassResult(gm, bool(done), {"outputs_restored": len(done)})
