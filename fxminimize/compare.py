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

**Ill-conditioned outputs.** Where a float output (not float64) fails that check and the caller
can evaluate the reference in float64 (``exact``: a callable returning the reference's outputs
on the same inputs, computed in float64), the output is judged once more, against that float64
evaluation y*: it passes if

    ``assert_close(ŷ, y*, rtol=rtol, atol=atol·max(1, max|y*|) + max|y − y*|)``

that is, if the candidate is within the usual tolerance of the exact function, widened by the
rounding error the reference model itself makes in its own dtype on these very inputs (the
max over that output tensor). Why: a norm over an input that is constant up to rounding (a
GroupNorm with one channel per group after a dead depthwise conv) divides float32 rounding
noise by √ε ≈ 3e-3, and two such norms in a row turn 1e-7 into 1e-2; the *reference* is then
off by more than the tolerance while a correct rewrite (which computes the same function with
other roundings, often folding the noise away) is closer to the exact values than the
reference is. A wrong rewrite is still refused unless its error is no larger than the
reference's own rounding error on those inputs, where the output holds no information at that
precision. Each output judged this way is recorded in ``Comparison.rounding`` (one line each:
the reference's own error and the candidate's error against float64), and verification puts
those lines into the report's notes. :func:`float64_evaluator` builds ``exact`` for a model (a
float64 deep copy, made on first use only: it costs twice the float32 parameter memory, and
only when the plain check has already failed).

A :class:`Comparison` accumulates over several input sets: the worst max |ŷ − y|
(``max_abs_error``), the number of float comparisons (``checks``), the input sets compared and
the ones skipped, with the reason. :func:`compare_outputs` is the one-shot form for two output
structures (or two lists of outputs).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Optional

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
    rounding: list = field(default_factory=list)          # outputs judged against float64 (module doc)
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

    def check(self, reference, candidate, label: str = "", exact: Optional[Callable] = None) -> bool:
        """Compare the outputs ``candidate`` with ``reference`` (structures or lists whose tensor
        leaves are compared in order). True when they match; otherwise ``failure`` says how.
        ``exact``: optional, called at most once, when a float output fails: the reference's
        outputs on the same inputs computed in float64 (or None when they cannot be); see the
        module doc (ill-conditioned outputs)."""
        on = f" on {label}" if label else ""
        ref, got = tensor_leaves(reference), tensor_leaves(candidate)
        exact_leaves: list = []
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
                if exact is not None and r.dtype != torch.float64:
                    if not exact_leaves:
                        exact_leaves.append(_leaves_or_none(exact))
                    if self._within_rounding(i, r, g, exact_leaves[0], rtol, atol, on):
                        continue
                return self._fail(f"output {i} differs{on}: max abs error {err:.3g} "
                                  f"(tolerance rtol={rtol}, atol={atol * scale:.3g})\n{exc}", inf=False)
        if label:
            self.compared.append(label)
        return True


    def _within_rounding(self, i: int, r, g, exact, rtol: float, atol: float, on: str) -> bool:
        """Output ``i`` judged against its float64 evaluation (module doc, ill-conditioned outputs)."""
        if exact is None or i >= len(exact) or tuple(exact[i].shape) != tuple(r.shape):
            return False
        e = exact[i].double()
        if not bool(torch.isfinite(e).all()):
            return False
        own = float((r.double() - e).abs().max()) if e.numel() else 0.0
        err = float((g.double() - e).abs().max()) if e.numel() else 0.0
        scale = max(1.0, float(e.abs().max())) if e.numel() else 1.0
        try:
            torch.testing.assert_close(g.double(), e, rtol=rtol, atol=atol * scale + own, equal_nan=False)
        except AssertionError:
            return False
        self.rounding.append(f"output {i}{on} is ill-conditioned: the original's own {str(r.dtype)[6:]} rounding "
                             f"error is {own:.3g}; the result is {err:.3g} from a float64 evaluation of the "
                             f"original (allowed: rtol={rtol:g}, atol={atol * scale:.3g} + {own:.3g})")
        return True


def _leaves_or_none(exact: Callable):
    try:
        out = exact()
    except Exception:  # noqa: BLE001 - the reference cannot run in float64: no second judgement
        return None
    return None if out is None else tensor_leaves(out)


def float64_evaluator(model) -> Callable:
    """``f(inputs) -> outputs``: ``model`` run in float64 on ``inputs`` (a tuple of positional
    arguments; float tensors are cast to float64, others passed as they are), for the
    ``exact`` argument of :meth:`Comparison.check`. The float64 copy is a deep copy made on
    the first call (``model`` itself is never changed) and reused; if it cannot be made or
    run, the call raises and the comparison makes no second judgement."""
    held: list = []

    def run(inputs):
        if not held:
            held.append(copy.deepcopy(model).to(torch.float64))
        cast = pytree.tree_map(lambda t: t.double() if isinstance(t, torch.Tensor) and t.is_floating_point()
                               else t, inputs)
        return held[0](*cast)
    return run


def compare_outputs(reference, candidate, *, label: str = "", rtol: Optional[float] = None,
                    atol: Optional[float] = None, exact: Optional[Callable] = None) -> Comparison:
    """One-shot comparison of two model outputs (or two lists of outputs).

    Returns a :class:`Comparison`: ``ok``, ``max_abs_error``, ``checks``, ``failure``
    (the first mismatch, empty when ok), ``rounding``. ``exact``: see :meth:`Comparison.check`."""
    c = Comparison(rtol=rtol, atol=atol)
    c.check(reference, candidate, label, exact)
    return c
