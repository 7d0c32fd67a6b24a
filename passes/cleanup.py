"""Remove dead nodes and the constants no node reads any more, then regenerate the code.
Runs last (every other pass is declared before it)."""
from __future__ import annotations

from fxminimize.ir import drop_unread_attributes

from .infra_pass import RewritePass


class Cleanup(RewritePass):
    name = "cleanup"
    after = ("ops", "gather", "restore", "tie")

    def call(self, gm):
        before = len(gm.graph.nodes)
        gm.graph.eliminate_dead_code()
        removed = drop_unread_attributes(gm)
        gm.recompile()
        self.ctx.stats["nodes_removed"] += before - len(gm.graph.nodes)
        self.ctx.stats["constants_dropped"] += removed
        return self.result(gm, before != len(gm.graph.nodes) or removed > 0)
