"""The interface every op rule implements, and the two trivial rules.

A rule is the one home of an op family: it answers the analysis' questions about one FX node
``n`` and rewrites that node once the plan is made. The analysis hands it a narrow
:class:`fxminimize.analysis.context.RuleContext` ``cx`` (its only window on the analysis):

``cx.tensor(x)``                   the constant tensor behind ``x`` (None if not a constant)
``cx.axis_of(x)``, ``cx.size_of(x)`` the channel dim of ``x`` and its channel count (None: untracked)
``cx.has_space(x)``, ``cx.is_native(x)`` whether ``x`` has channel elements, and whether its own rule made them
``cx.couple(x, y, ix, iy, kind)``  element ``ix[k]`` of ``x`` goes with element ``iy[k]`` of ``y``
``cx.const_of(x)``, ``cx.set_value(n, mask, val)`` the value lattice (CONST(v) or LIVE per channel)
``cx.need(x, mask, by)``           mark channels of ``x`` required by ``by``
``cx.kept(x)``                     the channels of ``x`` kept so far (during ``require``)
``cx.hint(n, reason)``, ``cx.barrier(n, reason)`` why a rule declines; record a barrier
``cx.memo(key, fn)``               a per-analysis cache for what a rule computes once per node
``cx.rule_of(x)``, ``cx.is_after(u, n)`` another node's rule; topological order

The analysis questions:

``axis(cx, n)``
    Which dimension of ``n``'s output is a *channel space* (or None: not tracked).
``declare(cx, n, inp)``
    Which dimension of input ``inp`` the op reads as channels. An untracked input that a
    consumer declares becomes a *source* space: the rewrite may drop its elements by inserting
    a gather right after it (e.g. input features that no weight reads).
``couple(cx, n)``
    Coupling edges between elements of ``n`` and of its inputs: coupled elements are removed
    together or not at all (a residual add couples channel ``c`` of both operands and of the
    sum; a concat couples input ``i``'s channel ``k`` with output channel ``offset_i + k``).
``value(cx, n)``
    Forward value lattice for the output elements: CONST(v) (input-independent and uniform over
    every other dimension; ZERO is CONST(0)) or LIVE.
``require(cx, n, kept)``
    Backward use: given which of ``n``'s output elements are kept, which input elements must
    exist in the rewritten model. Anything the rewrite cannot absorb exactly must be required.

And the rewrite, run by the ``ops`` pass (:mod:`fxminimize.passes.pipeline`) on every node of
the working copy whose rule this is:

``rewrite(ctx, n) -> bool``
    Apply the plan to ``n``: slice its constants, fold removed constants into a bias, fix size
    arguments. ``ctx`` is the :class:`fxminimize.passes.infra.RewriteContext` (module, plan,
    side tables). Returns whether anything changed.

A rule that cannot handle a node falls back to :class:`Barrier` behaviour with a reason.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch.fx as fx

from fxminimize.ir import tensor_inputs

if TYPE_CHECKING:  # pragma: no cover
    from fxminimize.analysis.context import RuleContext
    from .infra import RewriteContext


class Rule:
    """Base rule: behaves as a barrier. Subclasses override what they understand."""

    kind = "barrier"
    targets: tuple = ()

    def axis(self, cx: "RuleContext", n: fx.Node) -> Optional[int]:
        return None

    def declare(self, cx: "RuleContext", n: fx.Node, inp: fx.Node) -> Optional[int]:
        return None

    def couple(self, cx: "RuleContext", n: fx.Node) -> None:
        return None

    def value(self, cx: "RuleContext", n: fx.Node) -> None:
        return None

    def require(self, cx: "RuleContext", n: fx.Node, kept: Optional[np.ndarray]) -> None:
        xs = tensor_inputs(n)
        if any(cx.has_space(x) for x in xs):  # a barrier is reported only where it keeps channels
            cx.barrier(n, None)
        for x in xs:
            cx.need(x, None, n)

    def kept_deps(self, cx: "RuleContext", n: fx.Node) -> tuple:
        """Other spaces whose kept channels ``require`` reads (besides ``n``'s own)."""
        return ()

    def weight_axes(self, cx: "RuleContext", n: fx.Node) -> list:
        """``(const node, tensor dim, space node or None)`` for each dim of a constant this op slices
        by a channel space (None: that dim is never sliced). Used to keep tied weights tied."""
        return []

    # tuple-producing ops (split/chunk) describe their items through these
    def item_axis(self, cx, n: fx.Node, idx: int) -> Optional[int]:
        return None

    def item_couple(self, cx, n, idx, item) -> None:
        return None

    def item_value(self, cx, n, idx, item) -> None:
        return None

    def item_require(self, cx, n, idx, item, kept) -> None:
        cx.need(n.args[0], None, item)

    def rewrite(self, ctx: "RewriteContext", n: fx.Node) -> bool:
        """Apply the plan to ``n`` in the working copy (nothing to do by default)."""
        return False


class Barrier(Rule):
    """An op without a rule: every channel it reads is kept; its output is untracked."""

    kind = "barrier"


class Ignore(Rule):
    """Ops that read no channel values (size queries, metadata assertions)."""

    kind = "ignore"

    def require(self, cx, n, kept) -> None:
        return None
