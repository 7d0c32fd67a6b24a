"""Pass contracts, in the style of ``torch.fx.passes.infra``.

Every rewrite pass is a :class:`RewritePass` (a ``PassBase``): it declares its ``name`` and
the passes that must run before it (``after``), reads the immutable plan and edits the working
module through the shared :class:`~fxminimize.passes.infra.RewriteContext` (its only channel to
other passes), and adds its counters to ``ctx.stats``. ``requires`` checks that the declared
predecessors ran; ``ensures`` records that the pass ran. :func:`fxminimize.passes.pipeline.run_pipeline`
orders the passes with ``PassManager`` constraints built from ``after`` and, in debug mode,
lints the graph and checks its shapes after each pass; otherwise ``cleanup`` lints it once, at
the end (a lint per pass cost as much as a third of the rewrite's code generation).
"""
from __future__ import annotations

from torch.fx.passes.infra.pass_base import PassBase, PassResult

from .infra import RewriteContext


class RewritePass(PassBase):
    name = "pass"
    after: tuple = ()
    #: passes that complete this one's edits: until they ran, the graph may be inconsistent
    #: (debug mode checks shapes only once none is pending)
    completed_by: tuple = ()

    def __init__(self, ctx: RewriteContext):
        self.ctx = ctx

    def requires(self, gm) -> None:
        missing = [p for p in self.after if p not in self.ctx.done]
        if missing:
            raise AssertionError(f"internal: pass {self.name} needs {missing} to run first")

    def ensures(self, gm) -> None:
        self.ctx.done.append(self.name)

    def result(self, gm, modified: bool) -> PassResult:
        return PassResult(gm, modified)

    def __repr__(self) -> str:
        return f"<pass {self.name}>"


class OpRewrites(RewritePass):
    """Every node's own rewrite (:meth:`Rule.rewrite` of its op family), in graph order."""

    name = "ops"
    #: a consumer whose weight lost input channels reads a source space (a model input, a
    #: barrier's output) at full width until the gather pass narrows it
    completed_by = ("gather",)

    def call(self, gm):
        ctx = self.ctx
        changed = 0
        for n in list(gm.graph.nodes):
            if n.op != "call_function" or n.graph is not gm.graph:
                continue
            rule = ctx.rule_of(n)
            if rule.rewrite(ctx, n):
                changed += 1
                ctx.stats[f"{rule.kind}_rewritten"] += 1
        return self.result(gm, changed > 0)
