"""``einsum`` with an explicit output (``aten.einsum.default``, e.g. "bhqd,bhkd->bhqk").

y[out letters] = Σ over the other letters of Π_i X_i[letters of operand i]: one product-sum, so
every letter plays the role of a matmul dim (:mod:`.matmul`): a letter of the output is a
*carried* dim, a letter absent from it is *contracted*. Each operand has at most one channel
dim, so its channel is one letter L:

* L in the output: channel c of every operand holding L is channel c of y (y_c reads those
  operands' channel c only). All holders must be tracked on L (a holder of size 1 on L
  broadcasts and carries nothing); they and y are coupled one to one. Value: y_c is ZERO if
  some holder is ZERO on c (a factor of every term), otherwise LIVE. Use: identity.
* L contracted: the holders' channels c are coupled (removed together). Term c vanishes if
  some holder is ZERO on c, so c is required unless one is. y has no channel dim from L.
* y carries one channel dim only: a second carried letter, or a letter whose holders are not
  all tracked on it, keeps every channel of the operands tracked on it (a barrier, with the
  reason).

Rewrite: none (letters do not change; the operands arrive shrunk consistently). Declined:
equations with an ellipsis or without "->", and operands that repeat a letter (diagonals).

Weight form: "…c,cd->…d" with a constant 2-D second operand W is x @ W, a Linear without bias
stored (in, out): the matmul weight form applies (:data:`.matmul.WEIGHT`'s math and rewrite,
W' = W[K][:, R], a nonzero fold added after the product as y + b).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from fxminimize.ir import shape, static_int
from ..registry import register
from ..rule import Rule
from .matmul import WeightFormDispatch, _WeightForm

aten = torch.ops.aten


def _parse(eq: str) -> Optional[tuple[list, str]]:
    eq = eq.replace(" ", "")
    if "->" not in eq or "." in eq:
        return None
    ins, out = eq.split("->")
    ins = ins.split(",")
    if any(len(set(s)) != len(s) for s in ins + [out]):
        return None
    return ins, out


def _is_weight_form(cx, n) -> bool:
    """"…c,cd->…d" with a constant 2-D W as the second operand and a computed first one."""
    p = _parse(n.args[0])
    xs = list(n.args[1])
    if p is None or len(xs) != 2 or cx.tensor(xs[1]) is None or cx.tensor(xs[0]) is not None:
        return False
    (s0, s1), out = p
    return (len(s1) == 2 and cx.tensor(xs[1]).dim() == 2 and s0[-1:] == s1[0] and s1[1] not in s0
            and out == s0[:-1] + s1[1])


class _EinsumWeight(_WeightForm):
    kind = "einsum"

    def params(self, n):
        return n.args[1][0], n.args[1][1], None


WEIGHT = _EinsumWeight()


class _Letters:
    def __init__(self, cx, n):
        self.out_axis: Optional[int] = None
        self.carried: list = []      # operands coupled one to one with y
        self.contracted: list = []   # lists of operands coupled on a contracted letter
        self.whole: list = []        # (operand, reason)
        self.reason: Optional[str] = None
        p = _parse(n.args[0])
        xs = list(n.args[1])
        if p is None or len(p[0]) != len(xs):
            self.reason = "einsum with an ellipsis, no output or a repeated letter"
            return
        ins, out = p
        letter = {}
        for x, s in zip(xs, ins):
            ax = cx.axis_of(x)
            if ax is not None and len(s) == len(shape(x)):
                letter.setdefault(s[ax], []).append(x)
        for L, tracked in letter.items():
            holders = [(x, s) for x, s in zip(xs, ins) if L in s]
            fits = all(x in tracked or static_int(shape(x)[s.index(L)]) == 1 for x, s in holders)
            size = {static_int(shape(x)[s.index(L)]) for x, s in holders if x in tracked}
            if not fits or len(size) != 1:
                self.whole += [(x, f"einsum letter {L} is not a channel dim of every operand") for x in tracked]
            elif L not in out:
                self.contracted.append(tracked)
            elif self.out_axis is None:
                self.out_axis, self.carried = out.index(L), tracked
            else:
                self.whole += [(x, "einsum output carries one channel dim only") for x in tracked]


@register(aten.einsum.default)
class EinsumRule(WeightFormDispatch):
    kind = "einsum"
    weight = WEIGHT

    def is_weight_form(self, cx, n) -> bool:
        return _is_weight_form(cx, n)

    def rel(self, cx, n) -> _Letters:
        return cx.memo(("einsum", n), lambda: _Letters(cx, n))

    def activation_axis(self, cx, n):
        r = self.rel(cx, n)
        if r.reason:
            cx.hint(n, r.reason)
        return r.out_axis

    def activation_couple(self, cx, n):
        r = self.rel(cx, n)
        for x in r.carried:
            cx.couple_identity(x, n, "einsum")
        for group in r.contracted:
            for x in group[1:]:
                cx.couple_identity(group[0], x, "einsum")

    @staticmethod
    def _zero(cx, xs):
        return np.logical_or.reduce([m & (v == 0) for m, v in (cx.const_of(x) for x in xs)])

    def activation_value(self, cx, n):
        zero = self._zero(cx, self.rel(cx, n).carried)
        cx.set_value(n, zero, np.zeros(len(zero)))

    def activation_require(self, cx, n, kept):
        r = self.rel(cx, n)
        if r.reason:
            return Rule.require(self, cx, n, kept)
        covered = set(r.carried) | {x for g in r.contracted for x in g}
        for x, reason in r.whole:
            cx.barrier(n, reason)
            cx.need(x, None, n)
        for x in n.args[1]:
            if x not in covered:
                cx.need(x, None, n)  # untracked (no-op) or a letter the rule did not place
        for group in r.contracted:
            needed = ~self._zero(cx, group)
            for x in group:
                cx.need(x, needed, n)
        for x in r.carried:
            cx.need(x, kept if cx.is_native(n) else None, n)

    def rewrite(self, ctx, n) -> bool:
        p = _parse(n.args[0])
        w = n.args[1][1] if len(n.args[1]) == 2 else None
        if p is None or getattr(w, "op", None) != "get_attr" or getattr(n.args[1][0], "op", None) == "get_attr":
            return False
        (s0, s1), out = p
        if len(s1) == 2 and ctx.tensor(w).dim() == 2 and s0[-1:] == s1[0] and s1[1] not in s0 \
                and out == s0[:-1] + s1[1]:
            return WEIGHT.rewrite(ctx, n)
        return False
