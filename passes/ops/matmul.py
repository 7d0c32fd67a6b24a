"""Matrix products outside a matched attention region: ``matmul``, ``bmm``, ``mm``.

Notation: y = A @ B with A (..., M, K), B (..., K, N), y (..., M, N); the leading dims are
*batch* dims (broadcast as in torch.matmul), K is *contracted*, M and N are *free*.

Two forms, decided per node:

* **Weight form.** B is a constant 2-D tensor (Falcon's ``x @ W.T``, folded to a stored
  (in, out) matrix): y_j = Σ_i A_i W_ij is a Linear without bias whose weight is stored
  (in, out), so the contraction math of
  :class:`~fxminimize.passes.ops.contraction.Contraction` holds unchanged (y_j is CONST iff
  W_ij = 0 for every LIVE input i; removed CONST inputs fold into a bias
  b_j = Σ_{i removed} v_i W_ij). The rewrite slices W to W[K][:, R]; a nonzero fold is added
  after the product as ``y + b`` (one new constant vector of |R| elements).

* **Activation form** (both operands computed, e.g. q @ kᵀ and p @ v written by hand). Each
  operand has at most one channel dim; how it relates to y decides the rule:

  - *batch*: channel h of A and of B on the same batch dim is channel h of y
    (y_h = A_h @ B_h); A, B and y are coupled one to one. An operand that broadcasts on
    that dim (size 1 or absent) carries no channels there. y_h is ZERO if A_h or B_h is
    ZERO; CONST(v_A · v_B · K) if both are CONST (a uniform matrix times a uniform matrix);
    LIVE otherwise. Use: identity (channel h of each tracked operand is required iff y_h is kept).
  - *free*: A tracked on M (or B on N) gives y's channel on M (on N): row m of y reads row m
    of A only. y_m is ZERO if A_m is ZERO, otherwise LIVE (A_m CONST(v) gives v · Σ_k B_kn,
    which varies along N). Use: identity.
  - *contracted*: A tracked on K and B tracked on K: element k of A is coupled with element k
    of B (they are removed together). y = Σ_k A_k B_k, so k is required unless A_k or B_k is
    ZERO (its term is 0 whatever the other holds). y has no channel dim from this relation.
  - anything else (one operand tracked on K, the other not; both free dims tracked, where y
    can carry only one; a batch dim tracked in one operand but not in the other one of equal
    size) keeps every channel of the operand that does not fit: a barrier for it, with the
    reason.

  The rewrite changes nothing: the operands arrive shrunk consistently, and y's shape follows.

1-D operands (vector products) are declined: their dims do not follow the rules above.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.fx as fx

from fxminimize.ir import shape, static_int
from ..infra import add_fold, fold_vector
from ..registry import register
from ..rule import Rule
from .common import _nd
from .linear import LinearRule

aten = torch.ops.aten


class _WeightForm(LinearRule):
    """y = A @ W with W a constant (in, out) matrix: a Linear without bias, stored transposed."""

    kind = "matmul"
    transposed = True

    def params(self, n):
        return n.args[0], n.args[1], None

    def write_weight_and_bias(self, ctx, n, w, b, W, bias) -> None:
        """Replace W; a nonzero folded bias is added after the product (matmul has no bias)."""
        orig = ctx.tensor(w)
        ctx.replace_const(n, w, W)
        if bias is None:
            return
        b = ctx.add_const(n, f"{w.target}_bias", bias.to(device=orig.device, dtype=orig.dtype))
        graph = ctx.gm.graph
        with graph.inserting_after(n):
            add = graph.call_function(aten.add.Tensor, (n, b))
        n.replace_all_uses_with(add, delete_user_cb=lambda u: u is not add)
        add.meta = dict(n.meta)


WEIGHT = _WeightForm()


def _is_weight_form(cx, n) -> bool:
    a, b = n.args[0], n.args[1]
    t = cx.tensor(b)
    return t is not None and t.dim() == 2 and cx.tensor(a) is None and _nd(a) >= 1


class _Relations:
    """How the channel dims of A and B relate to y (see the module docstring)."""

    def __init__(self, cx, n: fx.Node):
        A, B = n.args[0], n.args[1]
        self.A, self.B = A, B
        na, nb, ny = _nd(A), _nd(B), _nd(n)
        a, b = cx.axis_of(A), cx.axis_of(B)
        self.out: Optional[int] = None
        self.identity: list = []     # operands coupled one to one with y
        self.contract = False        # A's K coupled with B's K
        self.whole: list = []        # (operand, reason): every channel kept
        self.k = static_int(shape(A)[-1])
        if a is not None and a == na - 1 and b is not None and b == nb - 2:
            self.contract = True
            return
        ra = self._place(a, na, ny, "A")
        rb = self._place(b, nb, ny, "B")
        if ra is not None and ra[0] == "batch" and rb == ra \
                and static_int(shape(A)[a]) == static_int(shape(B)[b]):
            self.out = ra[1]
            self.identity = [A, B]
            return
        for x, r, other, on in ((A, ra, B, nb), (B, rb, A, na)):
            if r is None:
                if cx.axis_of(x) is not None:
                    self.whole.append((x, "matmul reads this channel dim as contracted with an untracked one"))
                continue
            if self.out is not None:
                self.whole.append((x, "matmul output carries one channel dim only"))
                continue
            if r[0] == "batch":
                od = r[1] - (ny - on)
                if od >= 0 and static_int(shape(other)[od]) != 1:
                    self.whole.append((x, "batch channel dim not carried by the other matmul operand"))
                    continue
            self.out = r[1]
            self.identity = [x]

    @staticmethod
    def _place(ax, nd, ny, which):
        """("batch" | "free", y dim) for an operand's channel dim, None when it is contracted."""
        if ax is None:
            return None
        if ax < nd - 2:
            return "batch", ax + (ny - nd)
        free = nd - 2 if which == "A" else nd - 1
        if ax == free:
            return "free", ny - 2 if which == "A" else ny - 1
        return None


class WeightFormDispatch(Rule):
    """A contraction whose second operand may be a constant weight: in that form (``is_weight_form``)
    every analysis question goes to the Linear view ``weight``; otherwise to the ``activation_*``
    methods of the subclass (matmul and einsum share this dispatch)."""

    weight: LinearRule

    def is_weight_form(self, cx, n) -> bool:
        raise NotImplementedError

    def axis(self, cx, n):
        return self.weight.axis(cx, n) if self.is_weight_form(cx, n) else self.activation_axis(cx, n)

    def declare(self, cx, n, inp):
        return self.weight.declare(cx, n, inp) if self.is_weight_form(cx, n) else None

    def weight_axes(self, cx, n):
        return self.weight.weight_axes(cx, n) if self.is_weight_form(cx, n) else []

    def couple(self, cx, n):
        return self.weight.couple(cx, n) if self.is_weight_form(cx, n) else self.activation_couple(cx, n)

    def value(self, cx, n):
        return self.weight.value(cx, n) if self.is_weight_form(cx, n) else self.activation_value(cx, n)

    def require(self, cx, n, kept):
        if self.is_weight_form(cx, n):
            return self.weight.require(cx, n, kept)
        return self.activation_require(cx, n, kept)


@register(aten.matmul.default, aten.bmm.default, aten.mm.default)
class MatmulRule(WeightFormDispatch):
    """matmul/bmm/mm: the weight form (delegated to :data:`WEIGHT`) or the activation form."""

    kind = "matmul"
    weight = WEIGHT

    def is_weight_form(self, cx, n) -> bool:
        return _is_weight_form(cx, n)

    def rel(self, cx, n) -> _Relations:
        return cx.memo(("matmul", n), lambda: _Relations(cx, n))

    def form_ok(self, cx, n) -> bool:
        if min(_nd(n.args[0]), _nd(n.args[1])) < 2:
            cx.hint(n, "matmul of a 1-D operand")
            return False
        return True

    def activation_axis(self, cx, n):
        return self.rel(cx, n).out if self.form_ok(cx, n) else None

    def activation_couple(self, cx, n):
        r = self.rel(cx, n)
        for x in r.identity:
            cx.couple_identity(x, n, "matmul")

    def activation_value(self, cx, n):
        r = self.rel(cx, n)
        ms = [cx.const_of(x) for x in r.identity]
        zero = np.logical_or.reduce([m & (v == 0) for m, v in ms])
        mask, val = zero.copy(), np.zeros(len(zero))
        if len(ms) == 2 and r.k is not None:  # batch: CONST(a) @ CONST(b) = CONST(a·b·K)
            both = ms[0][0] & ms[1][0]
            mask |= both
            val = np.where(both, ms[0][1] * ms[1][1] * r.k, 0.0)
        cx.set_value(n, mask, val)

    def activation_require(self, cx, n, kept):
        if not self.form_ok(cx, n):
            return Rule.require(self, cx, n, kept)
        r = self.rel(cx, n)
        for x, reason in r.whole:
            cx.barrier(n, reason)
            cx.need(x, None, n)
        if r.contract:
            (ma, va), (mb, vb) = cx.const_of(r.A), cx.const_of(r.B)
            needed = ~((ma & (va == 0)) | (mb & (vb == 0)))
            cx.need(r.A, needed, n)
            cx.need(r.B, needed, n)
            return
        for x in r.identity:
            cx.need(x, kept if cx.is_native(n) else None, n)

    def rewrite(self, ctx, n) -> bool:
        w = n.args[1]
        if getattr(w, "op", None) == "get_attr" and getattr(n.args[0], "op", None) != "get_attr" \
                and ctx.tensor(w).dim() == 2:
            return WEIGHT.rewrite(ctx, n)
        return False
