"""Self-check of a minimized model against the masked original.

Inputs: the example inputs, fresh random inputs of the same shapes, and, when the batch dim
is dynamic, random inputs at batch sizes 1 and B+1 (another batch size; B+1 keeps the
activation memory of the check close to the example's). Float inputs are drawn from a normal
distribution matched to the example's mean and spread; integer inputs uniformly from the
example's range.

Tolerance (stated once, used everywhere): for every output tensor y of the original and ŷ of
the minimized model, ``torch.testing.assert_close(ŷ, y, rtol=rtol, atol=atol·max(1, max|y|))``
with rtol = 1e-4, atol = 1e-5 for float32 (1e-10/1e-12 for float64). Removing exact zeros and
folding constants only reorders floating-point sums, so errors are rounding-sized.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils import _pytree as pytree

TOLERANCES = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-10, 1e-12),
              torch.float16: (1e-2, 1e-3), torch.bfloat16: (5e-2, 1e-2)}


@dataclass
class VerifyResult:
    ok: bool
    max_abs_error: float
    checks: int
    message: str = ""


def random_like(t: torch.Tensor, batch: int | None = None, gen: torch.Generator | None = None) -> torch.Tensor:
    shape = list(t.shape)
    if batch is not None and t.dim() > 0:
        shape[0] = batch
    if t.is_floating_point():
        std = float(t.float().std()) if t.numel() > 1 else 1.0
        std = std if std > 0 and std == std else 1.0
        return (torch.randn(shape, generator=gen) * std + float(t.float().mean())).to(t.dtype)
    if t.dtype == torch.bool:
        return torch.rand(shape, generator=gen) > 0.5
    lo, hi = int(t.min()), int(t.max())
    return torch.randint(lo, hi + 1, shape, generator=gen, dtype=t.dtype)


def input_sets(example_inputs: tuple, dynamic_batch: bool, seed: int = 0):
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


def _tensors(out):
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def verify(reference, candidate, example_inputs: tuple, dynamic_batch: bool) -> VerifyResult:
    """Compare ``candidate`` with ``reference`` on several input sets (see module doc)."""
    worst = 0.0
    checks = 0
    with torch.no_grad():
        for label, inputs in input_sets(example_inputs, dynamic_batch):
            try:
                ref = _tensors(reference(*inputs))
            except Exception:  # noqa: BLE001 - the original itself rejects this input set
                if label.startswith("random inputs at batch"):
                    continue
                raise
            try:
                got = _tensors(candidate(*inputs))
            except Exception as exc:  # noqa: BLE001
                return VerifyResult(False, float("inf"), checks, f"minimized model failed on {label}: {exc}")
            if len(ref) != len(got):
                return VerifyResult(False, float("inf"), checks, f"output count differs on {label}")
            for i, (r, g) in enumerate(zip(ref, got)):
                if r.shape != g.shape:
                    return VerifyResult(False, float("inf"), checks,
                                        f"output {i} shape {tuple(g.shape)} != {tuple(r.shape)} on {label}")
                if not r.is_floating_point():
                    if not torch.equal(r, g):
                        return VerifyResult(False, float("inf"), checks, f"output {i} differs on {label}")
                    continue
                rtol, atol = TOLERANCES.get(r.dtype, (1e-4, 1e-5))
                scale = max(1.0, float(r.abs().max())) if r.numel() else 1.0
                err = float((g.double() - r.double()).abs().max()) if r.numel() else 0.0
                worst = max(worst, err if err == err else float("inf"))
                checks += 1
                try:
                    torch.testing.assert_close(g, r, rtol=rtol, atol=atol * scale, equal_nan=True)
                except AssertionError as exc:
                    return VerifyResult(False, worst, checks,
                                        f"output {i} differs on {label}: max abs error {err:.3g} "
                                        f"(tolerance rtol={rtol}, atol={atol * scale:.3g})\n{exc}")
    return VerifyResult(True, worst, checks)
