"""Pruning criteria and masks for Squeeze-Release.

A criterion is ``callable(model, {name: param}) -> {name: scores}`` (higher scores are kept):
:func:`magnitude_scores` (``|w|``), :func:`lamp_scores`, :func:`unit_scores` and
:class:`TaylorScores`. :func:`global_prune_masks` turns scores into masks (ranked globally),
:func:`apply_masks` / :func:`hold_masks` apply and hold them, and :func:`release` turns exact
zeros back into small trainable weights.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, Optional

import torch
import torch.nn as nn

from .loops import _unwrap

__all__ = ["Scores", "Criterion", "prunable_parameters", "magnitude_scores", "lamp_scores", "unit_scores",
           "TaylorScores", "global_prune_masks", "apply_masks", "hold_masks", "release"]

Scores = Dict[str, torch.Tensor]
Criterion = Callable[[nn.Module, Dict[str, torch.Tensor]], Scores]


def prunable_parameters(model: nn.Module) -> Dict[str, nn.Parameter]:
    """Floating-point parameters with at least two dims (Linear / conv weights), by name."""
    return {n: p for n, p in _unwrap(model).named_parameters() if p.is_floating_point() and p.dim() >= 2}


def magnitude_scores(model: nn.Module, params: Dict[str, torch.Tensor]) -> Scores:
    """Magnitude criterion: the score of an entry is ``|w|``."""
    return {n: p.detach().abs().float() for n, p in params.items()}


def lamp_scores(model: nn.Module, params: Dict[str, torch.Tensor]) -> Scores:
    """Layer-adaptive magnitude (LAMP, Lee et al. 2021): with a tensor's entries sorted by
    ``|w|`` ascending, the score of entry ``u`` is ``w_u² / Σ_{v ≥ u} w_v²``. Makes global
    ranking fair across tensors of different scale: each tensor's largest entry scores 1, so no
    tensor is ever emptied, and small layers (the ones whose units die first) are not spared."""
    out = {}
    for n, p in params.items():
        w2 = p.detach().float().reshape(-1) ** 2
        order = torch.argsort(w2, stable=True)
        sorted_w2 = w2[order]
        tail = torch.flip(torch.cumsum(torch.flip(sorted_w2, [0]), 0), [0])
        s = torch.empty_like(w2)
        s[order] = sorted_w2 / tail.clamp_min(1e-30)
        out[n] = s.reshape(p.shape)
    return out


def unit_scores(model: nn.Module, params: Dict[str, torch.Tensor]) -> Scores:
    """Magnitude weighted towards whole units: the score of ``W[i, j, ...]`` is
    ``|w| · (r_i / mean r) · (c_j / mean c)`` with ``r_i`` the L2 norm of output row ``i`` and
    ``c_j`` that of input column ``j`` of the same tensor. Entries of weak rows and columns rank
    lower together, so a prune fraction empties more whole rows (units) and columns (inputs),
    which is what the squeeze can remove; within a unit the order is still by magnitude."""
    out = {}
    for n, p in params.items():
        w = p.detach().float().abs()
        w2 = w.reshape(w.shape[0], w.shape[1], -1) ** 2
        r = w2.sum((1, 2)).sqrt()
        c = w2.sum((0, 2)).sqrt()
        r = r / r.mean().clamp_min(1e-30)
        c = c / c.mean().clamp_min(1e-30)
        shape = [-1, 1] + [1] * (w.dim() - 2)
        out[n] = w * r.reshape(shape) * c.reshape([1, -1] + [1] * (w.dim() - 2))
    return out


class TaylorScores:
    """First-order Taylor criterion: ``|w · ∂L/∂w|`` summed over ``batches`` (Molchanov et al.).

    ``loss_fn(model, batch) -> scalar loss``; ``batches``: an iterable re-iterated on each call
    (a list, or a loader), of which the first ``max_batches`` are used. Estimates how much the
    loss changes when the entry is set to zero.
    """

    def __init__(self, loss_fn: Callable[[nn.Module, Any], torch.Tensor], batches: Iterable, max_batches: int = 8):
        self.loss_fn, self.batches, self.max_batches = loss_fn, batches, max_batches

    def __call__(self, model: nn.Module, params: Dict[str, torch.Tensor]) -> Scores:
        scores = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
        for i, batch in enumerate(self.batches):
            if i >= self.max_batches:
                break
            for p in params.values():
                p.grad = None
            self.loss_fn(model, batch).backward()
            for n, p in params.items():
                if p.grad is not None:
                    scores[n] += (p.detach() * p.grad.detach()).abs().float()
        model.zero_grad(set_to_none=True)
        return scores


def global_prune_masks(scores: Scores, fraction: float, current: Optional[Dict[str, torch.Tensor]] = None
                       ) -> Dict[str, torch.Tensor]:
    """Masks (True keeps) dropping ``fraction`` of the entries still kept in ``current`` (default:
    all), the lowest scores first, ranked together across all tensors. Ties broken by order.
    Entries scored ``+inf`` are never dropped (a criterion's way to protect them)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"prune fraction must be in [0, 1], got {fraction}")
    names = list(scores)
    cur = {n: (current[n].bool() if current is not None and n in current else torch.ones_like(scores[n], dtype=torch.bool))
           for n in names}
    flat = torch.cat([torch.where(cur[n], scores[n].float(), torch.full_like(scores[n], math.inf, dtype=torch.float32)).reshape(-1)
                      for n in names])
    alive = int(sum(int(c.sum()) for c in cur.values()))
    n_drop = min(int(round(fraction * alive)), int(torch.isfinite(flat).sum()))  # +inf: never pruned
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if n_drop > 0:
        keep[torch.argsort(flat, stable=True)[:n_drop]] = False
    masks, off = {}, 0
    for n in names:
        k = scores[n].numel()
        masks[n] = keep[off:off + k].reshape(scores[n].shape) & cur[n]
        off += k
    return masks


def apply_masks(model: nn.Module, masks: Dict[str, torch.Tensor]) -> None:
    """Multiply each named parameter by its mask, in place."""
    params = dict(_unwrap(model).named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(m.to(params[n].dtype))


def hold_masks(optimizer: torch.optim.Optimizer, model: nn.Module, masks: Dict[str, torch.Tensor]):
    """Reapply ``masks`` after every ``optimizer.step()``; returns the hook handle."""
    def _hook(opt, args, kwargs):
        apply_masks(model, masks)
    return optimizer.register_step_post_hook(_hook)


def release(model: nn.Module, scale: float, generator: Optional[torch.Generator] = None) -> Dict[str, Any]:
    """Set every exact zero of every prunable tensor to ``N(0, (scale·σ)²)``, σ = std of the
    tensor's nonzero entries (``1/sqrt(fan_in)`` if it has fewer than two). Returns counts."""
    released, total = 0, 0
    per_tensor = {}
    with torch.no_grad():
        for n, p in prunable_parameters(model).items():
            zero = p == 0
            nz = p[~zero]
            total += p.numel()
            if not bool(zero.any()):
                continue
            fan_in = p[0].numel()
            sigma = float(nz.float().std()) if nz.numel() >= 2 else 1.0 / math.sqrt(max(fan_in, 1))
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.dtype) * (scale * sigma)
            p.copy_(torch.where(zero, noise, p))
            k = int(zero.sum())
            released += k
            per_tensor[n] = {"released": k, "of": p.numel(), "sigma": sigma}
    return {"released": released, "of": total, "per_tensor": per_tensor}
