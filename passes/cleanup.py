"""Remove dead nodes and the constants no node reads any more, drop the passes' bookkeeping,
then regenerate the code."""
from __future__ import annotations

from .base import PassResult, get_tensor


def run(gm, plan) -> PassResult:
    # the passes' bookkeeping (node → plan name, attribute → origin) is for the rewrite only;
    # node objects in gm.meta would also make the result impossible to deepcopy
    gm.meta.pop("fxminimize_renamed", None)
    gm.meta.pop("fxminimize_origin", None)
    before = len(gm.graph.nodes)
    gm.graph.eliminate_dead_code()
    used = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    removed = 0
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            *path, leaf = name.split(".")
            mod = gm
            for p in path:
                mod = getattr(mod, p)
            delattr(mod, leaf)
            removed += 1
    gm.graph.lint()
    gm.recompile()
    return PassResult(gm, before != len(gm.graph.nodes) or removed > 0,
                      {"nodes_removed": before - len(gm.graph.nodes), "constants_dropped": removed})
