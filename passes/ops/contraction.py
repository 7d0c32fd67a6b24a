"""The shared math of Linear and convolution (see :class:`Contraction`); each has its own module."""
from __future__ import annotations

import numpy as np
import torch

from ..rule import Rule
from .common import _nd

aten = torch.ops.aten


class Contraction(Rule):
    """Shared math of Linear and convolution: y_j = b_j + Σ_i W_ji ⊛ x_i.

    Value: y_j is CONST iff W_ji = 0 for every LIVE input i; then
    v_j = b_j + Σ_{i CONST} v_i · ΣW_ji (ΣW_ji sums W_ji over the kernel window). For a padded
    convolution that sum is only uniform if v_i = 0 or W_ji = 0, otherwise y_j is LIVE.
    Use: input i is required iff some kept output j reads it (W_ji ≠ 0) and i is LIVE, or i is
    CONST(v≠0) under zero padding. Other removed CONST inputs fold exactly into the bias:
    b'_j = b_j + Σ_{i removed} v_i · ΣW_ji.
    """

    in_axis = 1

    def params(self, n):  # -> (x, weight_node, bias_node)
        raise NotImplementedError

    def ok(self, cx, n) -> bool:
        x, w, b = self.params(n)
        if cx.tensor(w) is None or (b is not None and cx.tensor(b) is None):
            cx.hint(n, "weight or bias is not a constant tensor")
            return False
        return True

    def x_axis(self, n) -> int:
        return self.in_axis

    def matrices(self, cx, n):
        """(NZ, bias, padded): the (O, C_in) nonzero pattern (bool), kept for the analysis.

        Only the pattern is cached, in numpy (the fixpoint reads it many times; torch's per-op
        overhead dominates on small matrices). The kernel sums ΣW_ji needed to fold constants
        are computed on demand for the CONST columns only (:meth:`kernel_sums`), so the
        analysis holds no float copy of the weights.
        """
        def build():
            nz, bias, padded = self.build(cx, n)
            return (nz if isinstance(nz, np.ndarray) else nz.numpy(),
                    None if bias is None else bias.cpu().numpy(), padded)
        return cx.memo(("matrices", n), build)

    def kernel_sums(self, cx, n, cols: np.ndarray) -> np.ndarray:
        """(O, len(cols)) float64: Σ over the kernel window of W[:, c] for input columns c."""
        raise NotImplementedError

    def x_tracked(self, cx, n) -> bool:
        x = self.params(n)[0]
        return cx.axis_of(x) == self.x_axis(n) % _nd(x)

    def axis(self, cx, n):
        return self.in_axis % _nd(n) if self.ok(cx, n) else None

    def declare(self, cx, n, inp):
        if inp is self.params(n)[0] and self.ok(cx, n):
            return self.x_axis(n) % _nd(inp)
        return None

    def value(self, cx, n):
        x = self.params(n)[0]
        nz, bias, padded = self.matrices(cx, n)
        O = nz.shape[0]
        if not self.x_tracked(cx, n):
            cx.set_value(n, np.zeros(O, bool), np.zeros(O))
            return
        cin, vin = cx.const_of(x)
        const = ~(nz[:, ~cin] if cin.any() else nz).any(1)
        if padded:
            const &= ~nz[:, cin & (vin != 0)].any(1)
        cols = np.nonzero(cin)[0]
        val = self.kernel_sums(cx, n, cols) @ vin[cols] if len(cols) else np.zeros(O)
        if bias is not None:
            val = val + bias
        cx.set_value(n, const, val)

    def weight_axes(self, cx, n):
        if not self.ok(cx, n) or (getattr(self, "groups", None) and self.groups(n) != 1):
            return []
        x, w, _ = self.params(n)
        out_dim, in_dim = (1, 0) if getattr(self, "transposed", False) else (0, 1)
        return [(w, out_dim, n if cx.has_space(n) else None),
                (w, in_dim, x if self.x_tracked(cx, n) and cx.has_space(x) else None)]

    def require(self, cx, n, kept):
        if not self.ok(cx, n):
            return Rule.require(self, cx, n, kept)
        x = self.params(n)[0]
        if not self.x_tracked(cx, n):
            cx.need(x, None, n)
            return
        nz, _, padded = self.matrices(cx, n)
        read = (nz[kept] if kept is not None else nz).any(0)
        cin, vin = cx.const_of(x)
        needed = ~cin
        if padded:
            needed = needed | (vin != 0)
        cx.need(x, read & needed, n)


