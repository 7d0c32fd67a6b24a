"""The interface every op rule implements, and the two trivial rules.

A rule answers five questions about one FX node ``n`` for the channel analysis
(:class:`fxminimize.analysis.ChannelAnalysis`, passed as ``a``):

``axis(a, n)``
    Which dimension of ``n``'s output is a *channel space* (or None: not tracked).
``declare(a, n, inp)``
    Which dimension of input ``inp`` the op reads as channels. An untracked input that a
    consumer declares becomes a *source* space: the rewrite may drop its elements by inserting
    a gather right after it (e.g. input features that no weight reads).
``couple(a, n)``
    Coupling edges between elements of ``n`` and of its inputs: coupled elements are removed
    together or not at all (a residual add couples channel ``c`` of both operands and of the
    sum; a concat couples input ``i``'s channel ``k`` with output channel ``offset_i + k``).
``value(a, n)``
    Forward value lattice for the output elements: CONST(v) (input-independent and uniform over
    every other dimension; ZERO is CONST(0)) or LIVE.
``require(a, n, kept)``
    Backward use: given which of ``n``'s output elements are kept, which input elements must
    exist in the rewritten model. Anything the rewrite cannot absorb exactly must be required.

A rule that cannot handle a node falls back to :class:`Barrier` behaviour with a reason.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch.fx as fx

from ..ir import tensor_inputs

if TYPE_CHECKING:  # pragma: no cover
    from ..analysis import ChannelAnalysis


class Rule:
    """Base rule: behaves as a barrier. Subclasses override what they understand."""

    kind = "barrier"
    targets: tuple = ()

    def axis(self, a: "ChannelAnalysis", n: fx.Node) -> Optional[int]:
        return None

    def declare(self, a: "ChannelAnalysis", n: fx.Node, inp: fx.Node) -> Optional[int]:
        return None

    def couple(self, a: "ChannelAnalysis", n: fx.Node) -> None:
        return None

    def value(self, a: "ChannelAnalysis", n: fx.Node) -> None:
        return None

    def require(self, a: "ChannelAnalysis", n: fx.Node, kept: Optional[np.ndarray]) -> None:
        reason = a.barrier_reason(n) or f"no rule for op {getattr(n.target, '__name__', n.target)}"
        a.mark_barrier(n, reason)
        for x in tensor_inputs(n):
            a.need(x, None, n)

    def kept_deps(self, a: "ChannelAnalysis", n: fx.Node) -> tuple:
        """Other spaces whose kept channels ``require`` reads (besides ``n``'s own)."""
        return ()

    def weight_axes(self, a: "ChannelAnalysis", n: fx.Node) -> list:
        """``(const node, tensor dim, space node or None)`` for each dim of a constant this op slices
        by a channel space (None: that dim is never sliced). Used to keep tied weights tied."""
        return []

    # tuple-producing ops (split/chunk) describe their items through these
    def item_axis(self, a: "ChannelAnalysis", n: fx.Node, idx: int) -> Optional[int]:
        return None

    def item_couple(self, a, n, idx, item) -> None:
        return None

    def item_value(self, a, n, idx, item) -> None:
        return None

    def item_require(self, a, n, idx, item, kept) -> None:
        a.need(n.args[0], None, item)


class Barrier(Rule):
    """An op without a rule: every channel it reads is kept; its output is untracked."""

    kind = "barrier"


class Ignore(Rule):
    """Ops that read no channel values (size queries, metadata assertions)."""

    kind = "ignore"

    def require(self, a, n, kept) -> None:
        return None
