"""The narrow window a rule has on the analysis (see :mod:`fxminimize.passes.rule`).

A rule never sees :class:`~fxminimize.analysis.channels.ChannelAnalysis`: it gets this object,
whose methods are the whole interface. The analysis itself sits behind a name-mangled slot, and
``tests/test_rule_interface.py`` checks that no rule module reaches past these methods.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.fx as fx


class RuleContext:
    __slots__ = ("__a",)

    def __init__(self, analysis) -> None:
        self.__a = analysis

    # ------------------------------------------------------------ reading the graph
    def tensor(self, n) -> Optional[torch.Tensor]:
        """The constant tensor behind a get_attr node (None otherwise)."""
        return self.__a.tensor(n)

    def axis_of(self, n) -> Optional[int]:
        """The channel dim of ``n`` (None: untracked)."""
        return self.__a.axis_of(n)

    def size_of(self, n) -> int:
        """The number of channels of a node that has a space."""
        return self.__a.size[n]

    def has_space(self, n) -> bool:
        """Whether ``n`` has channel elements (a tracked dim of static size)."""
        return isinstance(n, fx.Node) and n in self.__a.off

    def is_native(self, n) -> bool:
        """True when ``n``'s own rule made its space (False for source spaces)."""
        return bool(self.__a.native.get(n))

    def rule_of(self, n):
        return self.__a.rule(n)

    def is_after(self, u: fx.Node, n: fx.Node) -> bool:
        """Whether ``u`` comes after ``n`` in topological order."""
        return self.__a.index[u] > self.__a.index[n]

    def memo(self, key, fn: Callable[[], object]):
        """``fn()`` computed once per analysis for ``key`` (e.g. a weight's nonzero pattern)."""
        memo = self.__a.memo
        if key not in memo:
            memo[key] = fn()
        return memo[key]

    # ------------------------------------------------------------ coupling and values
    def couple(self, x, y, ix: np.ndarray, iy: np.ndarray, kind: str) -> None:
        """Element ``ix[k]`` of ``x`` is removed together with element ``iy[k]`` of ``y``."""
        self.__a.couple(x, y, ix, iy, kind)

    def couple_identity(self, x, y, kind: str = "elementwise") -> None:
        self.__a.couple_identity(x, y, kind)

    def const_of(self, n) -> tuple[np.ndarray, np.ndarray]:
        """(CONST mask, values) of ``n``'s channels."""
        return self.__a.const_of(n)

    def set_value(self, n, mask, val) -> None:
        self.__a.set_value(n, mask, val)

    # ------------------------------------------------------------ use
    def need(self, x, mask: Optional[np.ndarray], by: fx.Node) -> None:
        """Mark channels of ``x`` required by ``by`` (all of them when ``mask`` is None)."""
        self.__a.need(x, mask, by)

    def kept(self, n) -> np.ndarray:
        """Which channels of ``n`` are kept in the current round of the use fixpoint."""
        return self.__a.kept_now[self.__a.sl(n)]

    def hint(self, n: fx.Node, reason: str) -> None:
        """Why the rule declines ``n`` (reported if it then acts as a barrier)."""
        self.__a.hint_barrier(n, reason)

    def barrier(self, n: fx.Node, reason: Optional[str]) -> None:
        """Record ``n`` as a barrier (reason: the given one, the hint, or "no rule for op X")."""
        reason = reason or self.__a.barrier_reason(n) or f"no rule for op {getattr(n.target, '__name__', n.target)}"
        self.__a.mark_barrier(n, reason)
