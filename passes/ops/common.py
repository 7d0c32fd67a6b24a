"""Helpers shared by the op families: dims, nonzero patterns, and the per-channel base rule.

Notation in every op module: x is the input, y the output, c a channel index on the tracked
dimension, CONST(v) an element whose slice is input-independent and equal to v everywhere,
LIVE anything else.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.fx as fx

from fxminimize.ir import shape
from ..rule import Rule

aten = torch.ops.aten


def _nd(n) -> int:
    return len(shape(n))


def _nonzero(t: torch.Tensor) -> np.ndarray:
    """t != 0 as a numpy bool array on the CPU (numpy's compare is much faster than torch's on
    one thread). Only the pattern moves to the CPU, never the weights."""
    if t.device.type != "cpu":
        return (t != 0).cpu().numpy()
    if t.dtype in (torch.float32, torch.float64, torch.float16):
        return t.numpy() != 0
    return (t != 0).numpy()


def _f64(t: torch.Tensor) -> np.ndarray:
    """A (small) constant as float64 numpy on the CPU, for the value lattice."""
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


class _Channelwise(Rule):
    """Ops mapping channel c of x to channel c of y (same dim), coupling them one to one."""

    def src(self, n) -> fx.Node:
        return n.args[0]

    def out_axis(self, cx, n, ax: int) -> Optional[int]:
        return ax

    def axis(self, cx, n):
        ax = cx.axis_of(self.src(n))
        return None if ax is None else self.out_axis(cx, n, ax)

    def couple(self, cx, n):
        cx.couple_identity(self.src(n), n, self.kind)

    def fmap(self, cx, n, v: np.ndarray) -> Optional[np.ndarray]:
        """Image of CONST(v) under the op (None: the result is not uniform, so LIVE)."""
        return v

    def value(self, cx, n):
        m, v = cx.const_of(self.src(n))
        out = self.fmap(cx, n, v) if m.any() else v
        if out is None:
            m = np.zeros_like(m)
            out = v
        cx.set_value(n, m, out)

    def require(self, cx, n, kept):
        if kept is None and not cx.is_native(n) and cx.has_space(self.src(n)):
            cx.barrier(n, None)  # declined (the hint says why): every input channel is kept
        cx.need(self.src(n), kept, n)


