"""Apply the rewrite passes of :mod:`fxminimize.passes` to a copy of the canonical module."""
from __future__ import annotations

import os

import torch.fx as fx

from .analysis import Plan


def rewrite(gm: fx.GraphModule, plan: Plan, check: bool | None = None) -> tuple[fx.GraphModule, dict]:
    """A new GraphModule computing the same function with the plan's channels removed, and the
    passes' counters. ``check`` (default: the ``FXMINIMIZE_DEBUG`` environment variable) lints
    the graph and re-derives its shapes after every pass."""
    from fxminimize.passes.pipeline import run_pipeline

    if check is None:
        check = os.environ.get("FXMINIMIZE_DEBUG", "") not in ("", "0")
    return run_pipeline(gm, plan, check=check)
