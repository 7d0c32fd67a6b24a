"""Remove identity gathers (a re-minimized model's gather that now selects everything), dead
nodes and the constants no node reads any more, lint the graph and generate the code (the
pipeline's only code generation: :func:`~fxminimize.passes.pipeline.working_copy`).
Runs last (every other pass is declared before it)."""
from __future__ import annotations

from fxminimize.ir import drop_unread_attributes

from .gathers import drop_identity_gathers
from .infra_pass import RewritePass


class Cleanup(RewritePass):
    name = "cleanup"
    after = ("ops", "gather", "restore", "tie")

    def call(self, gm):
        before = len(gm.graph.nodes)
        self.ctx.stats["gathers_dropped"] += drop_identity_gathers(gm, self.ctx.identity_gathers)
        gm.graph.eliminate_dead_code()
        removed = drop_unread_attributes(gm)
        gm.graph.lint()
        gm.recompile()
        self.ctx.stats["nodes_removed"] += before - len(gm.graph.nodes)
        self.ctx.stats["constants_dropped"] += removed
        return self.result(gm, before != len(gm.graph.nodes) or removed > 0)
