"""The rewrite pipeline: a copy of the canonical module, the passes in their declared order.

    ops      each node's own rewrite (passes/ops/<family>.py)
    gather   index_select after shrinking source spaces          (after ops)
    restore  CONST channels of model outputs restored            (after ops)
    tie      readers of one original tensor share it again       (after ops, gather, restore)
    cleanup  dead code, unread constants, recompile              (last)

``PassManager`` checks the order against the constraints each pass declares (``after``); with
``check=True`` (debug mode, and the tests) the graph is linted and its shapes re-derived with
fake tensors after every pass, so a rewrite that leaves inconsistent shapes fails at once,
naming the pass. Without it the graph is linted once, by ``cleanup`` before it generates the
code.

Cost: the working copy's Python code is generated once, by ``cleanup``'s recompile
(:func:`working_copy`); ``fx.GraphModule(gm, graph)`` would generate it a first time for the
unrewritten graph, which nothing runs.
"""
from __future__ import annotations

import copy
import logging

import torch
import torch.fx as fx
from torch.fx.passes.infra.pass_manager import PassManager, this_before_that_pass_constraint

from .cleanup import Cleanup
from .gather import GatherInputs
from .infra import RewriteContext
from .infra_pass import OpRewrites
from .restore import RestoreOutputs
from .tie import RetieWeights

log = logging.getLogger(__name__)

PASSES = (OpRewrites, GatherInputs, RestoreOutputs, RetieWeights, Cleanup)


def check_shapes(gm: fx.GraphModule) -> None:
    """Lint, then propagate fake tensors (the placeholders' recorded shapes, symbolic batch
    included) through the graph: every op must accept its rewritten inputs."""
    from torch._guards import detect_fake_mode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    gm.graph.lint()
    vals = [n.meta.get("val") for n in gm.graph.nodes if n.op == "placeholder"]
    mode = detect_fake_mode(vals)
    if mode is None or any(v is None for v in vals):
        return
    with mode:
        saved = mode.allow_non_fake_inputs
        mode.allow_non_fake_inputs = True
        try:
            FakeTensorProp(gm, mode).propagate_dont_convert_inputs(*vals)
        finally:
            mode.allow_non_fake_inputs = saved


def working_copy(gm: fx.GraphModule, class_name: str = "MinimizedModule") -> fx.GraphModule:
    """A GraphModule over a deep copy of ``gm``'s graph, sharing ``gm``'s submodules and tensors
    (as ``fx.GraphModule(gm, copy.deepcopy(gm.graph))``), whose code is not generated yet: its
    ``forward`` is not the graph's until ``recompile()`` (the ``cleanup`` pass, always run last).
    The passes read and edit only the graph (debug mode's shape check interprets the graph)."""
    from torch.fx.graph_module import _copy_attr

    graph = copy.deepcopy(gm.graph)
    out = fx.GraphModule(gm, fx.Graph(), class_name=class_name)  # the code of an empty graph
    for n in graph.nodes:
        if n.op in ("get_attr", "call_module"):
            _copy_attr(gm, out, n.target)
    out._graph = graph
    graph.owning_module = out
    if graph._tracer_cls and "<locals>" not in graph._tracer_cls.__qualname__:
        out._tracer_cls = graph._tracer_cls
    if graph._tracer_extras:
        out._tracer_extras = graph._tracer_extras
    return out


def run_pipeline(gm: fx.GraphModule, plan, check: bool = False, structural: bool = True,
                 origin: dict | None = None) -> tuple[fx.GraphModule, dict]:
    """A new GraphModule computing the same function with the plan's channels removed, and the
    passes' counters. The canonical module is not modified: the copy shares unchanged tensors
    with it and every rewrite replaces (never mutates) the tensors it shrinks.
    ``structural=False`` (module mode) forbids rewrites that add ops a module cannot express;
    ``origin``, when given, receives the context's fresh-attribute → original-attribute table."""
    out = working_copy(gm)
    ctx = RewriteContext(out, plan, structural=structural)
    if origin is not None:
        ctx.origin = origin
    passes = [p(ctx) for p in PASSES]
    by_name = {p.name: p for p in passes}
    constraints = [this_before_that_pass_constraint(by_name[a], p) for p in passes for a in p.after]
    pm = PassManager(passes, constraints)
    pm.validate_constraints()
    pending: set = set()     # passes whose completion is still to run (``completed_by``)
    since: list = []         # passes run since the last shape check
    for p in pm.passes:
        res = p(out)
        out = res.graph_module
        log.debug("pass %s: modified=%s", p.name, res.modified)
        pending = (pending | set(p.completed_by)) - {p.name}
        since.append(p.name)
        if check and not pending:
            try:
                check_shapes(out)
            except Exception as exc:  # noqa: BLE001 - name the pass that broke the graph
                raise AssertionError(f"internal: graph inconsistent after pass {' + '.join(since)}: {exc}") from exc
            since = []
    return out, dict(ctx.stats)
