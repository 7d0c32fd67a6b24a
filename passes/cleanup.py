"""Remove dead nodes and the constants no node reads any more, then regenerate the code."""
from __future__ import annotations

from .base import PassResult, get_tensor


def run(gm, plan) -> PassResult:
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
