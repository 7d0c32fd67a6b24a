"""Apply the rewrite passes of :mod:`fxminimize.passes` to a copy of the canonical module."""
from __future__ import annotations

import copy
import logging

import torch.fx as fx

from .analysis import Plan

log = logging.getLogger(__name__)


def rewrite(gm: fx.GraphModule, plan: Plan) -> tuple[fx.GraphModule, dict]:
    """A new GraphModule computing the same function with the plan's channels removed.

    The canonical module is not modified: the copy shares unchanged tensors with it and every
    pass replaces (never mutates) the tensors it shrinks.
    """
    from fxminimize.passes import PIPELINE

    graph = copy.deepcopy(gm.graph)
    out = fx.GraphModule(gm, graph, class_name="MinimizedModule")
    stats: dict = {}
    for p in PIPELINE:
        res = p(out, plan)
        out = res.module
        stats.update(res.stats)
        log.debug("pass %s: modified=%s %s", p.__module__, res.modified, res.stats)
    return out, stats
