"""Remove dead nodes and the constants no node reads any more, then regenerate the code.
Runs last (every other pass is declared before it)."""
from __future__ import annotations

from .infra_pass import RewritePass


class Cleanup(RewritePass):
    name = "cleanup"
    after = ("ops", "gather", "restore", "tie")

    def call(self, gm):
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
        gm.recompile()
        self.ctx.stats["nodes_removed"] += before - len(gm.graph.nodes)
        self.ctx.stats["constants_dropped"] += removed
        return self.result(gm, before != len(gm.graph.nodes) or removed > 0)
