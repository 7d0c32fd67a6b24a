"""Prune schedules for Squeeze-Release: a fixed fraction, a per-cycle sequence
(:func:`per_cycle`), or :class:`ShrinkTarget`, which searches each cycle's fraction so that the
squeeze reaches a set deployable size."""
from __future__ import annotations

from typing import Optional, Sequence

import torch.nn as nn

from ..api import minimize
from ..passes.gathers import compose_gathers
from .criteria import Scores, apply_masks, global_prune_masks
from .loops import _unwrap
from .measure import deployable_size

__all__ = ["ShrinkTarget", "per_cycle"]


class ShrinkTarget:
    """A schedule that picks each cycle's prune fraction by bisection so that the squeeze keeps
    about ``keep`` of the cycle's deployable size (e.g. 0.6: each cycle removes ~40%).

    For a candidate fraction the masks are applied to a copy and the copy is minimized without
    verification (``steps`` times per cycle, between ``lo`` and ``hi``); the smallest fraction
    reaching the size is used. The fraction found is recorded in the history. How many units a
    fraction kills changes from cycle to cycle (after release the surviving weights are dense
    again and evenly spread), so a fixed fraction shrinks less and less; this one does not.

    ``sizes``: absolute deployable sizes to aim at, one per cycle (cycle ``k`` aims at
    ``sizes[k-1]``; later cycles fall back to ``keep``), e.g. ``[round(n0 / r) for r in (2, 5,
    10, 39)]`` to measure a model at exactly those compressions. A target at or above the
    current size falls back to ``keep`` too (a cycle always shrinks).
    """

    def __init__(self, keep: float = 0.6, lo: float = 0.5, hi: float = 0.9995, steps: int = 7,
                 sizes: Optional[Sequence[int]] = None):
        if not 0 < keep < 1:
            raise ValueError(f"keep must be in (0, 1), got {keep}")
        if sizes is not None and any(int(v) <= 0 for v in sizes):
            raise ValueError(f"sizes must be positive element counts, got {list(sizes)}")
        self.keep, self.lo, self.hi, self.steps = keep, lo, hi, steps
        self.sizes = [int(v) for v in sizes] if sizes is not None else None

    def __repr__(self) -> str:
        extra = f", sizes={self.sizes}" if self.sizes else ""
        return f"ShrinkTarget(keep={self.keep}, lo={self.lo}, hi={self.hi}, steps={self.steps}{extra})"

    def target(self, current: int, cycle: Optional[int] = None) -> float:
        """The deployable size cycle ``cycle`` aims at, from the ``current`` size."""
        if self.sizes and cycle is not None and 1 <= cycle <= len(self.sizes) and self.sizes[cycle - 1] < current:
            return float(self.sizes[cycle - 1])
        return self.keep * current

    def search(self, module: nn.Module, scores: Scores, example_inputs: tuple, cycle: Optional[int] = None) -> float:
        import copy

        target = self.target(deployable_size(module), cycle)
        lo, hi = self.lo, self.hi

        def size_at(f: float) -> int:
            trial = copy.deepcopy(_unwrap(module)).eval()
            apply_masks(trial, global_prune_masks(scores, f))
            small = minimize(trial, example_inputs, verify_result=False).module
            compose_gathers(small)
            return deployable_size(small)

        if size_at(hi) > target:
            return hi
        for _ in range(self.steps):
            mid = (lo + hi) / 2
            if size_at(mid) <= target:
                hi = mid
            else:
                lo = mid
        return hi


def per_cycle(value, cycle: int):
    """``value`` itself, or item ``cycle``-1 of a sequence (the last repeating)."""
    if isinstance(value, (list, tuple)):
        return value[min(cycle - 1, len(value) - 1)]
    return value
