"""Output comparison: one tolerance table and one matching rule for every check fxminimize makes.

Used by :func:`fxminimize.verify.verify` (minimized vs masked original) and
:func:`fxminimize.export_onnx` (onnxruntime vs torch). For every reference output tensor y and
candidate output ŷ, matched by position among the tensor leaves of the two outputs:

- the candidate must return as many tensor leaves as the reference, of the same shapes;
- non-float outputs must be ``torch.equal``;
- float outputs are checked with
  ``torch.testing.assert_close(ŷ, y, rtol=rtol, atol=atol·max(1, max|y|), equal_nan=True)``,
  rtol/atol per dtype from :data:`TOLERANCES` (float32 and unlisted float dtypes:
  :data:`DEFAULT_TOLERANCE`).

A :class:`Comparison` accumulates over several input sets: the worst max |ŷ − y|
(``max_abs_error``), the number of float comparisons (``checks``), the input sets compared and
the ones skipped, with the reason. :func:`compare_outputs` is the one-shot form for two output
structures (or two lists of outputs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.utils import _pytree as pytree

#: dtype → (rtol, atol); atol is scaled by max(1, max|y|) of the reference output
TOLERANCES = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-10, 1e-12),
              torch.float16: (1e-2, 1e-3), torch.bfloat16: (5e-2, 1e-2)}
#: tolerance of float dtypes not in :data:`TOLERANCES`
DEFAULT_TOLERANCE = (1e-4, 1e-5)


def tolerance(dtype: torch.dtype, rtol: Optional[float] = None, atol: Optional[float] = None) -> tuple:
    """(rtol, atol) for ``dtype``; ``rtol``/``atol`` override the table when given."""
    r, a = TOLERANCES.get(dtype, DEFAULT_TOLERANCE)
    return (r if rtol is None else rtol), (a if atol is None else atol)


def tensor_leaves(out) -> list:
    """The tensor leaves of a model output (tuples, dicts, Hugging Face output objects, lists)."""
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


@dataclass
class SkippedCheck:
    """An input set that was not compared, and why."""

    label: str
    reason: str

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


@dataclass
class Comparison:
    """Accumulated result of comparing a candidate with a reference over input sets.

    ``rtol``/``atol`` override the per-dtype table for every float output. ``cast`` converts
    each candidate output to the reference's dtype before comparing (onnxruntime returns numpy
    dtypes); without it a dtype change fails the float check. :meth:`check` stops at the first
    mismatch and stores it in ``failure``; ``ok`` is False from then on.
    """

    rtol: Optional[float] = None
    atol: Optional[float] = None
    cast: bool = False
    max_abs_error: float = 0.0
    checks: int = 0
    compared: list = field(default_factory=list)          # labels of the input sets compared
    skipped: list = field(default_factory=list)           # SkippedCheck per input set not compared
    tolerances: set = field(default_factory=set)          # "rtol=…, atol=…·max(1, max|y|)" used
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure

    @property
    def tolerance_text(self) -> str:
        return "; ".join(sorted(self.tolerances))

    def skip(self, label: str, reason: str) -> None:
        """Record that input set ``label`` was not compared, and why."""
        self.skipped.append(SkippedCheck(label, reason))

    def _fail(self, message: str, inf: bool = True) -> bool:
        self.failure = message
        if inf:
            self.max_abs_error = float("inf")
        return False

    def check(self, reference, candidate, label: str = "") -> bool:
        """Compare the outputs ``candidate`` with ``reference`` (structures or lists whose tensor
        leaves are compared in order). True when they match; otherwise ``failure`` says how."""
        on = f" on {label}" if label else ""
        ref, got = tensor_leaves(reference), tensor_leaves(candidate)
        if len(ref) != len(got):
            return self._fail(f"output count differs{on}: {len(got)} tensor outputs, expected {len(ref)}")
        for i, (r, g) in enumerate(zip(ref, got)):
            if tuple(r.shape) != tuple(g.shape):
                return self._fail(f"output {i} shape {tuple(g.shape)} != {tuple(r.shape)}{on}")
            if self.cast and g.dtype != r.dtype:
                g = g.to(r.dtype)
            if not r.is_floating_point():
                if not torch.equal(r, g):
                    return self._fail(f"output {i} differs{on}")
                continue
            rtol, atol = tolerance(r.dtype, self.rtol, self.atol)
            scale = max(1.0, float(r.abs().max())) if r.numel() else 1.0
            err = float((g.double() - r.double()).abs().max()) if r.numel() else 0.0
            self.max_abs_error = max(self.max_abs_error, err if err == err else float("inf"))
            self.checks += 1
            self.tolerances.add(f"rtol={rtol:g}, atol={atol:g}·max(1, max|y|)")
            try:
                torch.testing.assert_close(g, r, rtol=rtol, atol=atol * scale, equal_nan=True)
            except AssertionError as exc:
                return self._fail(f"output {i} differs{on}: max abs error {err:.3g} "
                                  f"(tolerance rtol={rtol}, atol={atol * scale:.3g})\n{exc}", inf=False)
        if label:
            self.compared.append(label)
        return True


def compare_outputs(reference, candidate, *, label: str = "", rtol: Optional[float] = None,
                    atol: Optional[float] = None) -> Comparison:
    """One-shot comparison of two model outputs (or two lists of outputs).

    Returns a :class:`Comparison`: ``ok``, ``max_abs_error``, ``checks``, ``failure``
    (the first mismatch, empty when ok)."""
    c = Comparison(rtol=rtol, atol=atol)
    c.check(reference, candidate, label)
    return c
