"""Self-check of a minimized model against the masked original.

Inputs: the example inputs, fresh random inputs of the same shapes, when the batch dim is
dynamic random inputs at batch sizes 1 and B+1 (another batch size; B+1 keeps the activation
memory of the check close to the example's), and when the graph keeps other sizes symbolic
(a sequence length, an image size) random inputs at other values of those: about a quarter
(``v // 4`` for sizes ≥ 64: 56×56 for a 224×224 image, a sixteenth of the example's work) or
half (``v // 2`` for sizes 8–63), or, when the original model rejects that (a minimum size, a
divisibility constraint), the next of: half, one less (one more for sizes ≤ 2). Inputs are drawn on the example's
device, in its dtype. Float inputs are drawn from a normal distribution matched to the
example's mean and spread; integer inputs uniformly from the example's range.

The original model runs once per input set; on the example inputs its outputs can be passed
in (``reference_outputs``: :func:`fxminimize.api.minimize` has already run it there, to refuse
inputs the model itself rejects), so it does not run again.

Tolerance and output matching: :mod:`fxminimize.compare` (rtol = 1e-4, atol = 1e-5·max(1, max|y|)
for float32; 1e-10/1e-12 for float64). Removing exact zeros and folding constants only reorders
floating-point sums, so errors are rounding-sized. An output that fails is judged once more
against the original run in float64 (:func:`fxminimize.compare.float64_evaluator`, a deep copy
made only then), with the tolerance widened by the original's own rounding error on those
inputs (:mod:`fxminimize.compare`, ill-conditioned outputs); each output passed that way is a
line of ``VerifyResult.rounding`` and of the report's ``rounding`` and ``notes``.

An input set at another batch size on which the *original* model raises (a model that only
works at the example batch size) is skipped, and recorded with the reason in
``VerifyResult.skipped`` (and so in ``Report.skipped_checks``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch.utils import _pytree as pytree

from .compare import TOLERANCES, Comparison, SkippedCheck, float64_evaluator, tensor_leaves  # noqa: F401

__all__ = ["TOLERANCES", "VerifyResult", "SkippedCheck", "random_like", "input_sets", "other_sizes", "at_sizes", "size_fallbacks", "reference_at_other_sizes", "verify"]


@dataclass
class VerifyResult:
    ok: bool
    max_abs_error: float
    checks: int
    message: str = ""
    skipped: list = field(default_factory=list)   # SkippedCheck per input set not compared
    rounding: list = field(default_factory=list)  # outputs passed against float64 (ill-conditioned)


def random_like(t: torch.Tensor, batch: int | None = None, gen: torch.Generator | None = None) -> torch.Tensor:
    """Random values like ``t`` (its dtype, device, distribution or range), at batch ``batch``."""
    shape = list(t.shape)
    if batch is not None and t.dim() > 0:
        shape[0] = batch
    return _random_shaped(t, shape, gen)


def other_sizes(sizes: dict, smaller: bool = True, quarter: bool = True) -> dict:
    """Another value for each symbolic size. ``smaller``: about a quarter (``v // 4`` for v ≥ 64,
    with ``quarter``) or half (``v // 2`` for v ≥ 8; a cheap check, and a model with a maximum
    length still accepts it); otherwise, and for small sizes, one less (one more for sizes ≤ 2),
    the value a constrained model most likely accepts."""
    def one(v):
        if smaller and quarter and v >= 64:
            return v // 4
        if smaller and v >= 8:
            return v // 2
        return v - 1 if v > 2 else v + 1
    return {k: one(v) for k, v in sizes.items()}


def size_fallbacks(sizes: dict) -> list:
    """The other sizes to try, in order, when the original rejects the first (module doc):
    half, then one less; each only if it differs from those before it."""
    tries = [other_sizes(sizes)]
    for t in (other_sizes(sizes, quarter=False), other_sizes(sizes, False)):
        if t not in tries:
            tries.append(t)
    return tries[1:]


def at_sizes(example_inputs: tuple, symbols, new: dict, gen=None):
    """(label, inputs): random inputs like the example with the symbolic sizes set to ``new``."""
    leaves, spec = pytree.tree_flatten(example_inputs)
    it = iter(symbols)
    x = []
    for t in leaves:
        if isinstance(t, torch.Tensor):
            dims = next(it)
            x.append(_random_shaped(t, [new.get(dims.get(d), s) for d, s in enumerate(t.shape)], gen))
        else:
            x.append(t)
    label = "random inputs at other sizes (" + ", ".join(f"{k}={v}" for k, v in new.items()) + ")"
    return label, pytree.tree_unflatten(x, spec)


def input_sets(example_inputs: tuple, dynamic_batch: bool, seed: int = 0, symbols=None, sizes=None):
    """The labelled input sets (module doc). ``symbols`` (per tensor input, {dim: symbol}) and
    ``sizes`` ({symbol: example size}) add a set at other sizes of the dims the graph keeps
    symbolic beyond the batch (sequence length, image size)."""
    gen = torch.Generator().manual_seed(seed)
    yield "example inputs", example_inputs
    leaves, spec = pytree.tree_flatten(example_inputs)
    fresh = [random_like(t, None, gen) if isinstance(t, torch.Tensor) else t for t in leaves]
    yield "random inputs", pytree.tree_unflatten(fresh, spec)
    if dynamic_batch:
        b = next((t.shape[0] for t in leaves if isinstance(t, torch.Tensor) and t.dim() > 0), None)
        if b is not None:
            for nb in (1, b + 1):
                x = [random_like(t, nb, gen) if isinstance(t, torch.Tensor) else t for t in leaves]
                yield f"random inputs at batch {nb}", pytree.tree_unflatten(x, spec)
    tensors = [t for t in leaves if isinstance(t, torch.Tensor)]
    if sizes and symbols is not None and len(symbols) == len(tensors):
        yield at_sizes(example_inputs, symbols, other_sizes(sizes), gen)


def _random_shaped(t: torch.Tensor, shape: list, gen) -> torch.Tensor:
    """Random values like ``t`` (same distribution or range) in another shape."""
    if t.is_floating_point():
        std = float(t.float().std()) if t.numel() > 1 else 1.0
        std = std if std > 0 and std == std else 1.0
        return (torch.randn(shape, generator=gen) * std + float(t.float().mean())).to(t.dtype).to(t.device)
    if t.dtype == torch.bool:
        return (torch.rand(shape, generator=gen) > 0.5).to(t.device)
    lo, hi = int(t.min()), int(t.max())
    return torch.randint(lo, hi + 1, shape, generator=gen, dtype=t.dtype).to(t.device)


def reference_at_other_sizes(reference, label, inputs, example_inputs: tuple, symbols, sizes):
    """(label, inputs, outputs) of ``reference`` on the set at other sizes (``label``, ``inputs``)
    or, where it rejects that, at the first of :func:`size_fallbacks` it accepts (each drawn with
    its own seeded generator, only when needed). Raises the last refusal when it accepts none.
    The one home of this retry, for :func:`verify` and for the ONNX export's check."""
    tries = itertools.chain([(label, inputs)], (at_sizes(example_inputs, symbols, new, torch.Generator().manual_seed(1 + i))
                                                for i, new in enumerate(size_fallbacks(sizes))))
    refusal = None
    for lab, x in tries:
        try:
            return lab, x, reference(*x)
        except Exception as exc:  # noqa: BLE001 - the model rejects these sizes: the next ones
            refusal = exc
    raise refusal


def verify(reference, candidate, example_inputs: tuple, dynamic_batch: bool, symbols=None, sizes=None,
           reference_outputs=None) -> VerifyResult:
    """Compare ``candidate`` with ``reference`` on several input sets (see module doc).
    ``reference_outputs``: ``reference``'s outputs on the example inputs, when already known."""
    cmp = Comparison()
    exact = float64_evaluator(reference)

    def result(ok: bool, message: str = "") -> VerifyResult:
        return VerifyResult(ok, cmp.max_abs_error, cmp.checks, message, list(cmp.skipped), list(cmp.rounding))

    def run_reference(label, inputs):
        """(label, inputs, outputs), or None when the original rejects an optional input set
        (the set at other sizes is retried at the next of :func:`size_fallbacks`)."""
        if label == "example inputs" and reference_outputs is not None:
            return label, inputs, tensor_leaves(reference_outputs)
        try:
            if label.startswith("random inputs at other sizes"):
                label, inputs, out = reference_at_other_sizes(reference, label, inputs, example_inputs,
                                                              symbols, sizes)
                return label, inputs, tensor_leaves(out)
            return label, inputs, tensor_leaves(reference(*inputs))
        except Exception as exc:  # noqa: BLE001 - the original itself rejects this input set
            if not label.startswith(("random inputs at batch", "random inputs at other sizes")):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            cmp.skip(label, f"the original model raises {type(exc).__name__}" + (f": {first}" if first else ""))
            return None

    with torch.no_grad():
        for label, inputs in input_sets(example_inputs, dynamic_batch, symbols=symbols, sizes=sizes):
            done = run_reference(label, inputs)
            if done is None:
                continue
            label, inputs, ref = done
            try:
                got = tensor_leaves(candidate(*inputs))
            except Exception as exc:  # noqa: BLE001
                cmp.max_abs_error = float("inf")
                return result(False, f"minimized model failed on {label}: {exc}")
            if not cmp.check(ref, got, label, exact=lambda: exact(inputs)):
                return result(False, cmp.failure)
    return result(True)
