"""Public entry points: :func:`minimize`, :class:`MinimizeResult`, :func:`load`."""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.fx as fx
import torch.nn as nn

from .analysis import Plan, analyze
from .canonicalize import canonicalize
from .capture import _batch_is_dynamic, batch_dynamic_shapes, capture
from .errors import MinimizationError
from .explain import describe_graph
from .masks import check_model, masked_copy, needs_copy, unshare
from .report import Report
from .rewrite import rewrite
from .size import stored_elements
from .verify import verify

log = logging.getLogger(__name__)


@dataclass
class MinimizeResult:
    """``module``: the minimized model (a GraphModule, called like the original).
    ``report``: what was removed and kept, and why. ``plan``: the analysis result."""

    module: fx.GraphModule
    report: Report
    plan: Plan
    example_inputs: tuple
    dynamic_batch: bool

    def save(self, path: str) -> None:
        """Write the minimized model as a torch.export program (``.pt2``)."""
        shapes = batch_dynamic_shapes(self.example_inputs) if self.dynamic_batch else None
        ep = torch.export.export(self.module, self.example_inputs, dynamic_shapes=shapes, strict=False)
        torch.export.save(ep, path)


def load(path: str) -> nn.Module:
    """Load a model written by :meth:`MinimizeResult.save` (no arbitrary unpickling)."""
    return torch.export.load(path).module()


def minimize(model, example_inputs: tuple, masks: Optional[Mapping[str, torch.Tensor]] = None, *,
             verify_result: bool = True, dynamic_batch: bool = True) -> MinimizeResult:
    """Rewrite a masked model into a smaller dense model computing the same function.

    ``model``: an ``nn.Module`` (weights with exact zeros, ``torch.nn.utils.prune``
    reparametrisations, or any model plus ``masks``), a ``torch.fx.GraphModule`` or a
    ``torch.export.ExportedProgram``. ``example_inputs``: a tuple of positional arguments.
    ``masks``: optional ``{parameter name: bool tensor}`` (True keeps).

    The result is checked against the masked model on the example inputs and fresh random
    inputs (also at other batch sizes); if any output differs beyond the tolerance stated in
    :mod:`fxminimize.verify`, :class:`MinimizationError` is raised. The user's model is never
    modified.
    """
    if not isinstance(example_inputs, tuple):
        raise MinimizationError("example_inputs must be a tuple of positional arguments, "
                                f"got {type(example_inputs).__name__}")
    t0 = time.perf_counter()
    if isinstance(model, torch.export.ExportedProgram):
        # keep the program's own batch-size contract: dynamic only if it was exported so
        dynamic_batch = dynamic_batch and _batch_is_dynamic(model.graph_module)
        model = model.module()
    if not isinstance(model, nn.Module):
        raise MinimizationError(f"expected an nn.Module, GraphModule or ExportedProgram, got {type(model).__name__}")
    check_model(model)
    copied = needs_copy(model, masks)
    work = masked_copy(model, masks) if copied else model
    check_model(work)
    canon, canon_notes = work, []
    if any(type(m) is nn.MultiheadAttention for m in work.modules()):
        canon = copy.deepcopy(work)  # verification still compares against the unchanged copy
        canon_notes = canonicalize(canon)
    cap = capture(canon, example_inputs, dynamic_batch=dynamic_batch)
    t1 = time.perf_counter()
    try:
        plan = analyze(cap.gm)
        t2 = time.perf_counter()
        small, stats = rewrite(cap.gm, plan)
        small.train(model.training)  # same mode as the user's model (check_model: eval-safe)
    except Exception as exc:  # noqa: BLE001 - an internal failure must not surface half-done
        raise MinimizationError(f"internal error while minimizing ({type(exc).__name__}: {exc}); "
                                "the model was not changed. Please report this model.") from exc
    t3 = time.perf_counter()
    removed = {name: (plan.size[name], len(plan.keep[name])) for name in plan.keep
               if len(plan.keep[name]) < plan.size[name]}
    report = Report(params_before=stored_elements(work), params_after=stored_elements(small), groups=plan.groups,
                    barriers=plan.barriers, removed=removed, plan=plan, graph=describe_graph(cap.gm))
    report.notes.extend(canon_notes)
    if not plan.anything_removed:
        report.notes.append("nothing to remove: no channel is unused or constant-foldable; "
                            "the returned model is equal to the input")
    if verify_result:
        res = verify(work, small, example_inputs, cap.dynamic_batch)
        if not res.ok:
            raise MinimizationError("the minimized model does not match the original; refusing to return it. "
                                    + res.message)
        report.max_abs_error = res.max_abs_error
        report.verified_checks = res.checks
        report.skipped_checks = list(res.skipped)
        for c in res.skipped:
            log.info("verification skipped %s", c)
    if not copied:
        unshare(small, model)  # the result owns its tensors (only now: no full copy held before)
    t4 = time.perf_counter()
    report.timings = {"capture": t1 - t0, "analysis": t2 - t1, "rewrite": t3 - t2, "verify": t4 - t3}
    log.info("minimized: %d -> %d params", report.params_before, report.params_after)
    return MinimizeResult(small, report, plan, example_inputs, cap.dynamic_batch)
